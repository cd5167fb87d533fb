"""End-to-end variational network (Sriram et al., MICCAI 2020), fastMRI-compatible.

Module and parameter names match ``fastmri.models.VarNet`` (``sens_net.norm_unet.unet...``,
``cascades.N.model.unet...``, ``cascades.N.dc_weight``) so a fastMRI state dict loads with
``strict=True`` and gives the same output. Tensors use fastMRI's real representation:
complex values as a trailing dimension of size 2, k-space ``(B, C, H, W, 2)``, mask
``(B, 1, 1, W, 1)`` boolean. The FFTs are :func:`recon_engine.fft.fftc` / ``ifftc``
(centred, orthonormal), identical to fastMRI's ``fft2c`` / ``ifft2c``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from recon_engine.dl.unet import Unet
from recon_engine.fft import fftc, ifftc


def fft2c_real(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D FFT over dims (-3, -2) of a ``(..., H, W, 2)`` real tensor."""
    return torch.view_as_real(fftc(torch.view_as_complex(x.contiguous())))


def ifft2c_real(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`fft2c_real`."""
    return torch.view_as_real(ifftc(torch.view_as_complex(x.contiguous())))


def complex_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Product of two complex tensors in the trailing-2 representation."""
    re = a[..., 0] * b[..., 0] - a[..., 1] * b[..., 1]
    im = a[..., 0] * b[..., 1] + a[..., 1] * b[..., 0]
    return torch.stack((re, im), dim=-1)


def complex_conj(a: torch.Tensor) -> torch.Tensor:
    """Complex conjugate in the trailing-2 representation."""
    return torch.stack((a[..., 0], -a[..., 1]), dim=-1)


class NormUnet(nn.Module):
    """U-Net on complex images: real/imag as channels, per-sample group normalisation
    (mean/std over real and imaginary parts separately), zero-padding to multiples of 16."""

    def __init__(
        self,
        chans: int,
        num_pools: int,
        in_chans: int = 2,
        out_chans: int = 2,
        drop_prob: float = 0.0,
    ) -> None:
        super().__init__()
        self.unet = Unet(in_chans, out_chans, chans, num_pools, drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W, 2)`` -> same shape."""
        if x.shape[-1] != 2:
            raise ValueError("last dimension must be 2 (real, imaginary)")
        b, c, h, w, _ = x.shape
        x = x.permute(0, 4, 1, 2, 3).reshape(b, 2 * c, h, w)
        flat = x.reshape(b, 2, c * h * w)
        mean = flat.mean(dim=2).view(b, 2, 1, 1)
        std = flat.std(dim=2).view(b, 2, 1, 1)
        x = (x - _rep(mean, c)) / _rep(std, c)
        w_mult, h_mult = ((w - 1) | 15) + 1, ((h - 1) | 15) + 1
        w_pad = [math.floor((w_mult - w) / 2), math.ceil((w_mult - w) / 2)]
        h_pad = [math.floor((h_mult - h) / 2), math.ceil((h_mult - h) / 2)]
        x = self.unet(F.pad(x, w_pad + h_pad))
        x = x[..., h_pad[0] : h_mult - h_pad[1], w_pad[0] : w_mult - w_pad[1]]
        x = x * _rep(std, c) + _rep(mean, c)
        return x.view(b, 2, c, h, w).permute(0, 2, 3, 4, 1).contiguous()


def _rep(stat: torch.Tensor, c: int) -> torch.Tensor:
    """Broadcast a ``(B, 2, 1, 1)`` statistic to the ``2*C`` channel layout (real first)."""
    return stat.repeat_interleave(c, dim=1)


class SensitivityModel(nn.Module):
    """Learned coil sensitivities: ACS-only k-space -> coil images -> NormUnet per coil
    -> division by the root-sum-of-squares over coils."""

    def __init__(
        self,
        chans: int,
        num_pools: int,
        in_chans: int = 2,
        out_chans: int = 2,
        drop_prob: float = 0.0,
        mask_center: bool = True,
    ) -> None:
        super().__init__()
        self.mask_center = mask_center
        self.norm_unet = NormUnet(chans, num_pools, in_chans, out_chans, drop_prob)

    @staticmethod
    def low_frequency_band(
        mask: torch.Tensor, num_low_frequencies: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Start column and width of the symmetric fully sampled centre, per batch item.

        The width is twice the distance from the centre to the nearest unsampled column
        (at least 1), as in fastMRI.
        """
        if not num_low_frequencies:
            line = mask[:, 0, 0, :, 0].to(torch.int8)
            cent = line.shape[1] // 2
            left = torch.argmin(line[:, :cent].flip(1), dim=1)
            right = torch.argmin(line[:, cent:], dim=1)
            num_low = torch.max(2 * torch.min(left, right), torch.ones_like(left))
        else:
            num_low = num_low_frequencies * torch.ones(
                mask.shape[0], dtype=mask.dtype, device=mask.device
            )
        pad = (mask.shape[-2] - num_low + 1) // 2
        return pad.long(), num_low.long()

    def forward(
        self,
        masked_kspace: torch.Tensor,
        mask: torch.Tensor,
        num_low_frequencies: int | None = None,
    ) -> torch.Tensor:
        """``(B, C, H, W, 2)`` k-space -> ``(B, C, H, W, 2)`` RSS-normalised maps."""
        if self.mask_center:
            start, width = self.low_frequency_band(mask, num_low_frequencies)
            cols = torch.arange(masked_kspace.shape[-2], device=masked_kspace.device)
            keep = (cols[None] >= start[:, None]) & (cols[None] < (start + width)[:, None])
            masked_kspace = masked_kspace * keep[:, None, None, :, None].to(masked_kspace)
        b, c, h, w, two = masked_kspace.shape
        images = ifft2c_real(masked_kspace).reshape(b * c, 1, h, w, two)
        maps = self.norm_unet(images).reshape(b, c, h, w, two)
        rss = maps.pow(2).sum(dim=-1).sum(dim=1).sqrt()
        return maps / rss[:, None, :, :, None]


class VarNetBlock(nn.Module):
    """One cascade: ``k - dc_weight * M(k - k0) - F S R(S^H F^H k)`` with R a NormUnet."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.dc_weight = nn.Parameter(torch.ones(1))

    def forward(
        self,
        current_kspace: torch.Tensor,
        ref_kspace: torch.Tensor,
        mask: torch.Tensor,
        sens_maps: torch.Tensor,
    ) -> torch.Tensor:
        """All k-space tensors ``(B, C, H, W, 2)``; ``mask`` boolean ``(B, 1, 1, W, 1)``."""
        zero = torch.zeros((), dtype=current_kspace.dtype, device=current_kspace.device)
        soft_dc = torch.where(mask, current_kspace - ref_kspace, zero) * self.dc_weight
        reduced = complex_mul(ifft2c_real(current_kspace), complex_conj(sens_maps))
        refined = self.model(reduced.sum(dim=1, keepdim=True))
        model_term = fft2c_real(complex_mul(refined, sens_maps))
        return current_kspace - soft_dc - model_term


class VarNet(nn.Module):
    """Cascades of soft data consistency plus NormUnet refinement in k-space, with a
    learned sensitivity network; output is the RSS magnitude image ``(B, H, W)``."""

    def __init__(
        self,
        num_cascades: int = 12,
        sens_chans: int = 8,
        sens_pools: int = 4,
        chans: int = 18,
        pools: int = 4,
        mask_center: bool = True,
    ) -> None:
        super().__init__()
        self.sens_net = SensitivityModel(sens_chans, sens_pools, mask_center=mask_center)
        self.cascades = nn.ModuleList(
            [VarNetBlock(NormUnet(chans, pools)) for _ in range(num_cascades)]
        )

    def forward(
        self,
        masked_kspace: torch.Tensor,
        mask: torch.Tensor,
        num_low_frequencies: int | None = None,
    ) -> torch.Tensor:
        """``(B, C, H, W, 2)`` masked k-space, boolean mask -> ``(B, H, W)`` magnitude."""
        coil_images = ifft2c_real(self.predict_kspace(masked_kspace, mask, num_low_frequencies))
        return coil_images.pow(2).sum(dim=-1).sum(dim=1).sqrt()

    def predict_kspace(
        self,
        masked_kspace: torch.Tensor,
        mask: torch.Tensor,
        num_low_frequencies: int | None = None,
    ) -> torch.Tensor:
        """The final cascade's coil k-space ``(B, C, H, W, 2)`` (for data-consistency maps)."""
        sens_maps = self.sens_net(masked_kspace, mask, num_low_frequencies)
        kspace_pred = masked_kspace.clone()
        for cascade in self.cascades:
            kspace_pred = cascade(kspace_pred, masked_kspace, mask, sens_maps)
        return kspace_pred
