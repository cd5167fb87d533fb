"""Protocols: validated against the engine's registry, immutable, versioned, timed."""

import pytest
from django.core.exceptions import ValidationError

from mriplatform.protocols.models import Protocol, ProtocolImmutableError
from tests.factories import ProtocolFactory

pytestmark = pytest.mark.django_db


def test_params_validated_and_completed_from_the_method_schema():
    p = Protocol(
        name="GRAPPA R4",
        method="grappa",
        params={"kernel_ry": "5"},
        mask_pattern="uniform",
        acceleration=4,
    )
    p.full_clean()
    assert p.params["kernel_ry"] == 5  # coerced from the string
    assert set(p.params) == {q.name for q in p.method_spec.params}  # defaults filled in


@pytest.mark.parametrize(
    "params, field",
    [
        ({"kernel_ry": 0}, "params"),  # below the schema's minimum
        ({"no_such_param": 1}, "params"),  # unknown parameter
    ],
)
def test_bad_params_are_refused(params, field):
    p = Protocol(name="x", method="grappa", params=params, mask_pattern="uniform", acceleration=4)
    with pytest.raises(ValidationError) as info:
        p.full_clean()
    assert field in info.value.message_dict


def test_unknown_method_is_refused():
    with pytest.raises(ValidationError) as info:
        Protocol(name="x", method="magic", mask_pattern="uniform", acceleration=2).full_clean()
    assert "unknown method" in info.value.message_dict["method"][0]


def test_acceleration_below_one_and_as_acquired_with_r_refused():
    with pytest.raises(ValidationError):
        Protocol(name="x", method="grappa", acceleration=0.5, mask_pattern="uniform").full_clean()
    with pytest.raises(ValidationError):
        Protocol(name="x", method="grappa", acceleration=4, mask_pattern="as_acquired").full_clean()


def test_saved_versions_are_immutable():
    p = ProtocolFactory()
    p.acceleration = 8
    with pytest.raises(ProtocolImmutableError):
        p.save()
    p.refresh_from_db()
    assert p.acceleration == 4


def test_new_version_keeps_lineage_and_old_version():
    v1 = ProtocolFactory()
    v2 = v1.new_version(acceleration=6)
    v1.refresh_from_db()
    assert (v2.lineage, v2.version, v2.acceleration) == (v1.lineage, 2, 6)
    assert v2.is_current and not v1.is_current
    assert v1.acceleration == 4  # the old version, which a study may use, is unchanged
    v3 = v2.new_version(name="renamed")
    assert v3.version == 3
    assert Protocol.objects.filter(lineage=v1.lineage, is_current=True).get() == v3


def test_acquisition_time_and_reduction_follow_the_formula():
    # TA = phase encodes x TR x NSA / (R x SMS x ETL); 256 x 3 s / 4 = 192 s
    reference = ProtocolFactory(
        mask_pattern="as_acquired", acceleration=1, phase_encodes=256, tr_ms=3000, nsa=1
    )
    fast = ProtocolFactory(
        acceleration=4, phase_encodes=256, tr_ms=3000, nsa=1, reference=reference
    )
    assert reference.acquisition_time_s == pytest.approx(768.0)
    assert fast.acquisition_time_s == pytest.approx(192.0)
    assert fast.time_reduction == pytest.approx(0.75)
    sms = ProtocolFactory(
        acceleration=2, sms_factor=2, echo_train_length=4, nsa=2, reference=reference
    )
    assert sms.acquisition_time_s == pytest.approx(256 * 3.0 * 2 / (2 * 2 * 4))
    assert reference.time_reduction is None


def test_acquisition_time_counts_the_lines_the_mask_acquires():
    # Uniform R=4 plus round(256 x 0.08) = 20 ACS lines acquires 79 of 256 lines, not 64:
    # TA = 79 x 3 s, and the nominal R=4 would understate it by 23 %.
    from recon_engine.sampling import make_mask

    uniform = ProtocolFactory(
        mask_pattern="uniform", acceleration=4, center_fraction=0.08, phase_encodes=256
    )
    acquired = int(make_mask("uniform", (1, 256), 4, center_fraction=0.08).mask.sum())
    assert acquired == 79
    assert uniform.effective_acceleration == pytest.approx(256 / 79)
    assert uniform.acquisition_time_s == pytest.approx(79 * 3.0)
    # Data sampled as acquired keeps its nominal R; so do 2D patterns on a 2D acquisition.
    assert ProtocolFactory(mask_pattern="as_acquired", acceleration=3).effective_acceleration == 3
    poisson_2d = ProtocolFactory(mask_pattern="poisson", acceleration=4, partitions=1)
    assert poisson_2d.effective_acceleration == 4
    poisson_3d = ProtocolFactory(mask_pattern="poisson", acceleration=4, partitions=64)
    assert 3.5 < poisson_3d.effective_acceleration < 4.5


def test_sms_factor_must_match_the_methods_multiband():
    p = Protocol(
        name="SMS",
        method="sms_slice_grappa",
        params={"multiband": 3},
        mask_pattern="as_acquired",
        acceleration=1,
        sms_factor=2,
    )
    with pytest.raises(ValidationError) as info:
        p.full_clean()
    assert "sms_factor" in info.value.message_dict
    p.sms_factor = 3
    p.full_clean()
