"""Radiomic features (pyradiomics) against numpy's own statistics and their definitions."""

import numpy as np
import pytest

from recon_engine.fidelity.radiomics import feature_table, radiomic_features
from recon_engine.registry import ParameterError


@pytest.fixture(scope="module")
def textured():
    rng = np.random.default_rng(0)
    image = rng.uniform(0.0, 1.0, (32, 32))
    mask = np.zeros((32, 32), dtype=bool)
    mask[8:24, 8:24] = True
    return image, mask


def test_first_order_features_are_the_region_statistics(textured):
    image, mask = textured
    features = radiomic_features(image, mask, pixel_mm=0.5)
    values = image[mask]
    assert features["firstorder_Mean"] == pytest.approx(values.mean(), rel=1e-6)
    assert features["firstorder_Variance"] == pytest.approx(values.var(), rel=1e-6)
    assert features["firstorder_Maximum"] == pytest.approx(values.max(), rel=1e-6)
    # 256 uniform values in 32 equal bins: entropy close to log2(32) = 5 bits (IBSI 3.4.18)
    assert features["firstorder_Entropy"] == pytest.approx(5.0, abs=0.15)
    assert not any(name.startswith("shape") for name in features)


def test_texture_does_not_depend_on_the_intensity_scale_with_a_fixed_bin_count(textured):
    image, mask = textured
    names, table = feature_table(np.stack([image, 3.0 * image]), mask, pixel_mm=0.5)
    texture = [i for i, name in enumerate(names) if name.startswith(("glcm", "glrlm", "glszm"))]
    assert len(texture) > 40
    np.testing.assert_allclose(table[0, texture], table[1, texture], rtol=1e-6)


def test_bad_regions_are_refused(textured):
    image, mask = textured
    with pytest.raises(ParameterError, match="need >= 16"):
        radiomic_features(image, np.zeros_like(mask), 1.0)
    with pytest.raises(ParameterError, match="flat"):
        radiomic_features(np.ones((32, 32)), mask, 1.0)
    with pytest.raises(ParameterError, match="must be one"):
        radiomic_features(image, mask[:8], 1.0)
