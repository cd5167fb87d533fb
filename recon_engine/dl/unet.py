"""2D U-Net with fastMRI's module and parameter names (so fastMRI state dicts load).

Layout: ``down_sample_layers`` (ConvBlocks, avg-pool between), a bottleneck ``conv``,
then ``up_transpose_conv`` / ``up_conv`` with skip concatenation; the last ``up_conv``
ends with a 1x1 convolution. Odd sizes are reflect-padded after each up-sampling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBlock(nn.Module):
    """Two 3x3 convolutions, each followed by instance norm, LeakyReLU(0.2), dropout."""

    def __init__(self, in_chans: int, out_chans: int, drop_prob: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_chans, out_chans, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm2d(out_chans),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
            nn.Dropout2d(drop_prob),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm2d(out_chans),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
            nn.Dropout2d(drop_prob),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_chans, H, W)`` -> ``(N, out_chans, H, W)``."""
        return self.layers(x)


class TransposeConvBlock(nn.Module):
    """2x up-sampling by a stride-2 transposed convolution, instance norm, LeakyReLU."""

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.ConvTranspose2d(in_chans, out_chans, kernel_size=2, stride=2, bias=False),
            nn.InstanceNorm2d(out_chans),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_chans, H, W)`` -> ``(N, out_chans, 2H, 2W)``."""
        return self.layers(x)


class Unet(nn.Module):
    """U-Net (Ronneberger et al. 2015) as used by fastMRI (Zbontar et al. 2018)."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        chans: int = 32,
        num_pool_layers: int = 4,
        drop_prob: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_chans, self.out_chans = in_chans, out_chans
        self.down_sample_layers = nn.ModuleList([ConvBlock(in_chans, chans, drop_prob)])
        ch = chans
        for _ in range(num_pool_layers - 1):
            self.down_sample_layers.append(ConvBlock(ch, ch * 2, drop_prob))
            ch *= 2
        self.conv = ConvBlock(ch, ch * 2, drop_prob)
        self.up_conv = nn.ModuleList()
        self.up_transpose_conv = nn.ModuleList()
        for _ in range(num_pool_layers - 1):
            self.up_transpose_conv.append(TransposeConvBlock(ch * 2, ch))
            self.up_conv.append(ConvBlock(ch * 2, ch, drop_prob))
            ch //= 2
        self.up_transpose_conv.append(TransposeConvBlock(ch * 2, ch))
        self.up_conv.append(
            nn.Sequential(
                ConvBlock(ch * 2, ch, drop_prob),
                nn.Conv2d(ch, out_chans, kernel_size=1, stride=1),
            )
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(N, in_chans, H, W)`` -> ``(N, out_chans, H, W)``."""
        stack = []
        out = image
        for layer in self.down_sample_layers:
            out = layer(out)
            stack.append(out)
            out = F.avg_pool2d(out, kernel_size=2, stride=2, padding=0)
        out = self.conv(out)
        for tconv, conv in zip(self.up_transpose_conv, self.up_conv, strict=True):
            skip = stack.pop()
            out = tconv(out)
            pad = [0, int(out.shape[-1] != skip.shape[-1]), 0, int(out.shape[-2] != skip.shape[-2])]
            if sum(pad):
                out = F.pad(out, pad, "reflect")
            out = conv(torch.cat([out, skip], dim=1))
        return out
