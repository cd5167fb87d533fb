"""SR baselines against analytic cases and independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon_engine.registry import ReconError, ReconInput, get_method
from recon_engine.sr.baselines import bicubic_upsample, bspline_upsample, zero_fill_upsample


def _bandlimited(shape: tuple[int, int, int], band: tuple[int, int], seed: int) -> torch.Tensor:
    """Complex image whose spectrum is zero outside a centred ``band`` block."""
    g = torch.Generator().manual_seed(seed)
    s, h, w = shape
    spec = torch.zeros(shape, dtype=torch.complex64)
    bh, bw = band
    block = torch.randn(s, bh, bw, 2, generator=g)
    spec[:, h // 2 - bh // 2 : h // 2 - bh // 2 + bh, w // 2 - bw // 2 : w // 2 - bw // 2 + bw] = (
        torch.view_as_complex(block)
    )
    return torch.fft.fftshift(
        torch.fft.ifft2(torch.fft.ifftshift(spec, (-2, -1)), norm="ortho"), (-2, -1)
    )


def test_zero_fill_recovers_bandlimited_image_exactly() -> None:
    high = _bandlimited((2, 32, 40), band=(15, 19), seed=0)
    spec = torch.fft.fftshift(
        torch.fft.fft2(torch.fft.ifftshift(high, (-2, -1)), norm="ortho"), (-2, -1)
    )
    low_spec = spec[:, 16 - 8 : 16 + 8, 20 - 10 : 20 + 10] / 2.0  # crop: orthonormal rescale
    low = torch.fft.fftshift(
        torch.fft.ifft2(torch.fft.ifftshift(low_spec, (-2, -1)), norm="ortho"), (-2, -1)
    )
    up = zero_fill_upsample(low, 2)
    assert up.shape == high.shape
    torch.testing.assert_close(up, high, rtol=0, atol=1e-5)
    # samples on the coarse grid are kept (sinc interpolation through the samples)
    torch.testing.assert_close(up[:, ::2, ::2], low, rtol=0, atol=1e-5)


def test_zero_fill_through_plane_matches_in_plane_on_transposed_volume() -> None:
    vol = _bandlimited((8, 6, 10), band=(5, 7), seed=3)
    up = zero_fill_upsample(vol, 2, dims=(0,))
    assert up.shape == (16, 6, 10)
    ref = zero_fill_upsample(vol.permute(1, 0, 2), 2, dims=(1,)).permute(1, 0, 2)
    torch.testing.assert_close(up, ref, rtol=0, atol=1e-6)


def _keys_1d(x: np.ndarray, factor: int, axis: int, a: float = -0.75) -> np.ndarray:
    """Direct cubic convolution (Keys 1981) with replicated edges, area-aligned grid."""
    n = x.shape[axis]
    out_pos = (np.arange(n * factor) + 0.5) / factor - 0.5
    base = np.floor(out_pos).astype(int)
    t = out_pos - base
    result = 0.0
    for k in range(-1, 3):
        d = np.abs(t - k)
        wgt = np.where(
            d <= 1,
            (a + 2) * d**3 - (a + 3) * d**2 + 1,
            np.where(d < 2, a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a, 0.0),
        )
        idx = np.clip(base + k, 0, n - 1)
        shape = [1] * x.ndim
        shape[axis] = -1
        result = result + np.take(x, idx, axis=axis) * wgt.reshape(shape)
    return result


def test_bicubic_matches_direct_keys_convolution() -> None:
    rng = np.random.default_rng(0)
    img = rng.standard_normal((2, 9, 12)).astype(np.float64)
    ref = _keys_1d(_keys_1d(img, 3, axis=1), 3, axis=2)
    got = bicubic_upsample(torch.from_numpy(img).float(), 3).double().numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)
    ref_s = _keys_1d(img, 2, axis=0)
    got_s = bicubic_upsample(torch.from_numpy(img).float(), 2, dims=(0,)).double().numpy()
    np.testing.assert_allclose(got_s, ref_s, atol=1e-5)


def test_bspline_reproduces_cubic_polynomial_in_interior() -> None:
    h, w, f = 24, 28, 2
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")

    def poly(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return 0.01 * y**3 - 0.2 * y * x + 0.05 * x**2 + 3.0

    img = torch.from_numpy(poly(yy, xx)[None]).double()
    up = bspline_upsample(img, f).numpy()[0]
    coords = (np.arange(h * f) + 0.5) / f - 0.5
    xcoords = (np.arange(w * f) + 0.5) / f - 0.5
    ref = poly(*np.meshgrid(coords, xcoords, indexing="ij"))
    inner = (slice(8 * f, (h - 8) * f), slice(8 * f, (w - 8) * f))
    np.testing.assert_allclose(up[inner], ref[inner], rtol=0, atol=1e-3)
    # and bicubic (a = -0.75) does not reproduce the cubic term: the test can tell them apart
    bic = bicubic_upsample(img.float(), f).double().numpy()[0]
    assert np.abs(bic[inner] - ref[inner]).max() > 1e-2


def test_sr_methods_registered_and_run() -> None:
    img = torch.rand(3, 16, 20)
    data = ReconInput(
        kspace=torch.zeros(3, 1, 16, 20, dtype=torch.complex64),
        mask=torch.ones(1, 1, 1, 20),
        metadata={"image": img},
    )
    for name in ("sr_zero_fill", "sr_bicubic", "sr_bspline"):
        spec = get_method(name)
        assert spec.family == "super_resolution"
        out = spec.run(data, spec.validate({"factor": 2}))
        assert out.image.shape == (3, 32, 40)
        out = spec.run(data, spec.validate({"factor": 3, "direction": "through_plane"}))
        assert out.image.shape == (9, 16, 20)


def test_sr_bad_input() -> None:
    with pytest.raises(ReconError, match="NaN"):
        bicubic_upsample(torch.full((1, 4, 4), float("nan")), 2)
    with pytest.raises(ReconError, match=r"\(S, H, W\)"):
        zero_fill_upsample(torch.zeros(4, 4), 2)


def test_espcn_zero_residual_is_bicubic_and_method_needs_weights(tmp_path, monkeypatch) -> None:
    from recon_engine.dl.weights import save_model
    from recon_engine.sr.espcn import ESPCN

    net = ESPCN(factor=2, features=8, mid=4)
    with torch.no_grad():
        net.body[-1].weight.zero_()
        net.body[-1].bias.zero_()
    img = torch.rand(2, 10, 12)
    torch.testing.assert_close(net(img), bicubic_upsample(img, 2), rtol=1e-5, atol=1e-6)
    monkeypatch.setenv("RECON_MODEL_PATH", str(tmp_path))
    spec = get_method("sr_espcn")
    data = ReconInput(
        kspace=torch.zeros(2, 1, 10, 12, dtype=torch.complex64),
        mask=torch.ones(1, 1, 1, 12),
        metadata={"image": img},
    )
    # a site model name not shipped (the shipped sr_espcn weights would be found)
    with pytest.raises(ReconError, match=r"site_sr\.pt"):
        spec.run(data, spec.validate({"model": "site_sr"}))
    arch = {"factor": 2, "features": 8, "mid": 4}
    save_model(net.state_dict(), {"architecture": arch}, tmp_path, "site_sr")
    out = spec.run(data, spec.validate({"model": "site_sr"}))
    torch.testing.assert_close(out.image, bicubic_upsample(img, 2), rtol=1e-5, atol=1e-6)
