"""One demo protocol per classical method, with sampling that suits it.

Timing is that of a 2D T1-weighted turbo spin echo (TR 600 ms, 256 phase encodes,
echo train 4); every accelerated protocol is compared with the fully sampled one.
"""

from __future__ import annotations

from mriplatform.protocols.models import Protocol

REFERENCE = ("Fully sampled (RSS)", "rss", "as_acquired", 1.0, {}, 1)

DEMO_PROTOCOLS = [
    ("Zero-filled R4", "zero_filled", "equispaced", 4.0, {}, 1),
    ("SENSE R2", "sense", "uniform", 2.0, {}, 1),
    # Unregularised CG-SENSE amplifies noise at R4 with 8 coils; a little Tikhonov helps.
    ("CG-SENSE R4", "cg_sense", "random", 4.0, {"lambda": 0.01}, 1),
    ("GRAPPA R3", "grappa", "uniform", 3.0, {}, 1),
    ("CS L1-wavelet R4", "cs_wavelet", "variable_density", 4.0, {}, 1),
    ("CS total variation R4", "cs_tv", "variable_density", 4.0, {}, 1),
    ("SMS-2 slice-GRAPPA", "sms_slice_grappa", "as_acquired", 1.0, {"multiband": 2}, 2),
    ("SMS-2 SENSE", "sms_sense", "as_acquired", 1.0, {"multiband": 2}, 2),
]


def _protocol(name, method, pattern, acceleration, params, sms, reference=None, user=None):
    existing = Protocol.objects.filter(name=name, is_current=True).first()
    if existing is not None:
        return existing
    protocol = Protocol(
        name=name,
        method=method,
        mask_pattern=pattern,
        acceleration=acceleration,
        params=params,
        sms_factor=sms,
        center_fraction=0.08,
        tr_ms=600.0,
        phase_encodes=256,
        echo_train_length=4,
        reference=reference,
        created_by=user,
    )
    protocol.full_clean()
    protocol.save()
    return protocol


def create_demo_protocols(user=None) -> list[Protocol]:
    """The reference protocol followed by one protocol per classical method."""
    reference = _protocol(*REFERENCE, user=user)
    return [reference] + [
        _protocol(*spec, reference=reference, user=user) for spec in DEMO_PROTOCOLS
    ]
