"""Radiomic features of a region in a reconstructed slice (pyradiomics, IBSI-aligned).

Features come from pyradiomics 3.0.1 (van Griethuysen et al., Cancer Res 2017; PyPI
``pyradiomics``; built by ``scripts/lib.sh`` because there is no Python 3.11 wheel): the
first-order and texture classes (GLCM, GLRLM, GLSZM, GLDM, NGTDM) in 2D on the slice, with a
fixed bin count (MR intensities have no absolute scale, so a fixed bin width would mean
different things for different reconstructions). Shape features are left out: they depend
only on the mask, which is the same in every arm.

The agreement of each feature across reconstructions (ICC, CCC) is computed on the platform
side (``fidelity.services``), with the project's tested ICC.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from recon_engine.registry import ParameterError

FEATURE_CLASSES = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
BIN_COUNT = 32
MIN_MASK_PIXELS = 16


def _extractor(bin_count: int):
    try:
        from radiomics import featureextractor
    except ImportError:  # pragma: no cover - depends on the installation
        raise ParameterError(
            "radiomic features need pyradiomics 3.0.1: run scripts/lib.sh's ensure_venv "
            "(pip install --no-build-isolation pyradiomics==3.0.1)"
        ) from None
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    extractor = featureextractor.RadiomicsFeatureExtractor(
        binCount=bin_count, force2D=True, force2Ddimension=0, label=1
    )
    extractor.disableAllFeatures()
    for name in FEATURE_CLASSES:
        extractor.enableFeatureClassByName(name)
    return extractor


def radiomic_features(
    image: np.ndarray | torch.Tensor, mask: np.ndarray, pixel_mm: float, bin_count: int = BIN_COUNT
) -> dict[str, float]:
    """``{"glcm_Contrast": ..., ...}`` for one ``(H, W)`` magnitude image and bool mask.

    Raises ParameterError for shapes that differ, a mask under 16 pixels or a flat region.
    """
    import SimpleITK as sitk

    array = np.abs(np.asarray(image.cpu() if torch.is_tensor(image) else image, np.float64))
    roi = np.asarray(mask, dtype=bool)
    if array.ndim != 2 or roi.shape != array.shape:
        raise ParameterError(f"image {array.shape} and mask {roi.shape} must be one (H, W)")
    if int(roi.sum()) < MIN_MASK_PIXELS:
        raise ParameterError(f"the feature mask has {int(roi.sum())} pixels; need >= 16")
    if not np.isfinite(array).all():
        raise ParameterError("the image contains NaN or infinite values")
    if np.ptp(array[roi]) == 0:
        raise ParameterError("the image is flat inside the mask: no texture to measure")
    sitk_image = sitk.GetImageFromArray(array[None])
    sitk_mask = sitk.GetImageFromArray(roi[None].astype(np.uint8))
    for item in (sitk_image, sitk_mask):
        item.SetSpacing((float(pixel_mm), float(pixel_mm), 1.0))
    result = _extractor(bin_count).execute(sitk_image, sitk_mask)
    return {
        key.removeprefix("original_"): float(value)
        for key, value in result.items()
        if key.startswith("original_")
    }


def feature_table(
    images: np.ndarray | torch.Tensor, masks: np.ndarray, pixel_mm: float
) -> tuple[list[str], np.ndarray]:
    """``(feature names, (N, F) values)`` for ``(N, H, W)`` images and ``(N, H, W)`` or
    ``(H, W)`` masks (one region per image)."""
    stack = np.asarray(images.cpu() if torch.is_tensor(images) else images)
    masks = np.asarray(masks, dtype=bool)
    if stack.ndim != 3:
        raise ParameterError(f"images must be (N, H, W), got {stack.shape}")
    masks = np.broadcast_to(masks, stack.shape) if masks.ndim == 2 else masks
    rows = [radiomic_features(img, m, pixel_mm) for img, m in zip(stack, masks, strict=True)]
    names = sorted(rows[0])
    return names, np.array([[row[name] for name in names] for row in rows])
