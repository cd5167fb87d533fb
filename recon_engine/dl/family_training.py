"""Training of the small DL families: k-space net, AUTOMAP, motion correction, g-factor-aware
denoiser and 3D through-plane super-resolution.

``python -m recon_engine.dl.family_training FAMILY [--steps N] [--output-dir DIR]`` trains
one family on simulated data and writes ``<name>.pt`` + model card (architecture, data,
hyper-parameters, training time, validation metrics against held-out data and against
a classical baseline, sha256) with :func:`recon_engine.dl.weights.save_model`.

Data are split by volume, the same split as the configs of ``configs/train`` (VarNet,
U-Net, deep cascade): training images come from the Colin27 human brain and the INIA19
macaque brain (slices along all three axes, for variety), validation from the MNI152
2009a template, which no model sees in training and ``benchmarks/bench_dl.py`` uses as
its held-out volume. Every random draw (slice, flip, coil noise, mask,
motion, noise map) is seeded from ``(seed, step, index)``, so a run is reproducible.
The shipped weights were trained on one CPU thread with the defaults below (a few
minutes each); they are small demonstrators of each family, not clinical models.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from recon_engine.dl.automap import Automap, dft_initialise, normalise, virtual_coil
from recon_engine.dl.denoise import NoiseMapDenoiser
from recon_engine.dl.kspace_net import KSpaceNet
from recon_engine.dl.motion import MotionCorrectionNet
from recon_engine.dl.weights import SHIPPED_DIR, save_model
from recon_engine.fft import ifftc, rss
from recon_engine.gfactor import sense_gfactor
from recon_engine.metrics import evaluate
from recon_engine.sampling import make_mask
from recon_engine.simulation import (
    coil_sensitivities,
    load_slices,
    load_volume,
    simulate_motion,
    simulate_multicoil,
)
from recon_engine.sr.baselines import bicubic_upsample, bspline_upsample
from recon_engine.sr.espcn3d import ESPCN3D, thick_slices

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "mri"
TRAIN_VOLUMES = ("colin27_t1_1mm.nii.gz", "inia19_macaque_t1_brain.nii.gz")
VAL_VOLUMES = ("mni152_2009a_t1_1mm.nii.gz",)
SPLIT = "by volume (Colin27 human + INIA19 macaque train, MNI152 2009a validation)"
DROP_PROB = 0.05
TIME_BUDGET_S = 300.0  # per family, so each trains in under 6 minutes on one thread


def slice_bank(
    data_dir: Path, volumes: tuple[str, ...], size: int, per_axis: int, axes=(0, 1, 2)
) -> torch.Tensor:
    """``(N, size, size)`` slices in [0, 1] from each volume along each of ``axes``
    (nearly empty slices, whose maximum is below 20 % of the stack's, are left out)."""
    stacks = [
        load_slices(data_dir / v, per_axis, size=(size, size), axis=a, spread=0.7)
        for v in volumes
        for a in axes
    ]
    images = torch.cat(stacks)
    return images[images.amax(dim=(-2, -1)) > 0.2]


def _augment(image: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    if torch.rand((), generator=g) < 0.5:
        image = image.flip(-1)
    if torch.rand((), generator=g) < 0.5:
        image = image.transpose(-2, -1)
    gamma = 0.8 + 0.45 * float(torch.rand((), generator=g))
    return image.clamp_min(0) ** gamma


def fit(
    model: nn.Module,
    batch: Callable[[int], tuple],
    loss: Callable[..., torch.Tensor],
    steps: int,
    lr: float,
    seed: int,
    stop_after: int | None = None,
) -> list[dict]:
    """Adam on ``loss(model, *batch(step))`` with the lr cosine-decayed over ``steps``;
    stops after ``stop_after`` steps or when :data:`TIME_BUDGET_S` seconds have passed
    (the card records the steps done; ``--stop-after`` that number reproduces the run);
    returns the running mean training loss every 10 % of the steps."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    history, window = [], []
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        value = loss(model, *batch(step))
        opt.zero_grad()
        value.backward()
        opt.step()
        sched.step()
        window.append(float(value.detach()))
        out_of_time = time.perf_counter() - start > TIME_BUDGET_S or step + 1 == stop_after
        if (step + 1) % max(1, steps // 10) == 0 or step + 1 == steps or out_of_time:
            history.append({"step": step + 1, "train_loss": sum(window) / len(window)})
            print(f"step {step + 1}/{steps} loss {history[-1]['train_loss']:.5f}", flush=True)
            window = []
        if out_of_time:
            break
    model.eval()
    return history


def _card(model: nn.Module, arch: dict, **facts) -> dict:
    return {
        "architecture": arch,
        "parameters": sum(p.numel() for p in model.parameters()),
        "data": {
            "train_volumes": list(TRAIN_VOLUMES),
            "val_volumes": list(VAL_VOLUMES),
            "split": SPLIT,
        },
        **facts,
    }


def _metrics(gt: torch.Tensor, pred: torch.Tensor) -> dict[str, float]:
    return {k: round(v, 6) for k, v in evaluate(gt.numpy(), pred.numpy()).items()}


# ---------------------------------------------------------------- k-space network
# 8 coils, 128x128, R 4 and 8 with an 8 % ACS: the setting of benchmarks/bench_dl.py
KSPACE = {
    "size": 128,
    "n_coils": 8,
    "snr": 40.0,
    "accelerations": (4, 8),
    "center_fraction": 0.08,
}


def _kspace_sample(image: torch.Tensor, seed: int, augment: bool) -> tuple:
    g = torch.Generator().manual_seed(seed)
    if augment:
        image = _augment(image, g)
    sim = simulate_multicoil(image, n_coils=KSPACE["n_coils"], snr=KSPACE["snr"], seed=seed)
    pattern = "random" if seed % 2 else "equispaced"
    accelerations = KSPACE["accelerations"]
    mask = make_mask(
        pattern,
        image.shape[-2:],
        accelerations[(seed // 2) % len(accelerations)],
        seed=seed,
        center_fraction=KSPACE["center_fraction"],
    ).mask[0]
    target = rss(ifftc(sim.kspace), coil_dim=1)[0]
    scale = target.max()
    return sim.kspace[0] * mask / scale, mask, target / scale


def train_kspace_net(
    data_dir: Path, out: Path, steps: int, seed: int = 0, stop_after: int | None = None
) -> dict:
    """Multi-coil k-space completion network, 8 coils, 128x128, R = 4 or 8 (random or
    equispaced, 8 % ACS)."""
    train = slice_bank(data_dir, TRAIN_VOLUMES, KSPACE["size"], 24)
    val = slice_bank(data_dir, VAL_VOLUMES, KSPACE["size"], 8, axes=(2,))
    arch = {"n_coils": KSPACE["n_coils"], "chans": 16, "num_pool_layers": 2}
    model = KSpaceNet(**arch, drop_prob=DROP_PROB)
    bs = 8

    def batch(step: int):
        idx = torch.randint(len(train), (bs,), generator=torch.Generator().manual_seed(step))
        samples = [
            _kspace_sample(train[i], seed * 7919 + step * bs + j, True)
            for j, i in enumerate(idx.tolist())
        ]
        return [torch.stack(t) for t in zip(*samples, strict=True)]

    def loss(net, k, m, t):
        return nn.functional.l1_loss(net.image(k, m), t)

    start = time.perf_counter()
    history = fit(model, batch, loss, steps, 2e-3, seed, stop_after)
    seconds = time.perf_counter() - start
    samples = [_kspace_sample(val[i], 10_000_000 + i, False) for i in range(len(val))]
    k, m, t = (torch.stack(x) for x in zip(*samples, strict=True))
    with torch.no_grad():
        pred = model.image(k, m)
    zero_filled = rss(ifftc(k), coil_dim=1)
    card = _card(
        model,
        {"type": "KSpaceNet", **arch, "drop_prob": DROP_PROB},
        n_coils=KSPACE["n_coils"],
        matrix=[KSPACE["size"], KSPACE["size"]],
        simulation={"coil_kind": "birdcage", "snr": KSPACE["snr"], "phase": True},
        mask={
            "patterns": ["random", "equispaced"],
            "accelerations": list(KSPACE["accelerations"]),
            "center_fraction": KSPACE["center_fraction"],
        },
        training={
            "steps": history[-1]["step"],
            "max_steps": steps,
            "batch_size": bs,
            "lr": 2e-3,
            "optimiser": "Adam, cosine",
            "loss": "L1 on RSS image",
            "seconds": round(seconds, 1),
            "seed": seed,
            "threads": torch.get_num_threads(),
            "slices": len(train),
        },
        history=history,
        validation={"slices": len(val), **_metrics(t, pred)},
        validation_zero_filled=_metrics(t, zero_filled),
        notes="Fully convolutional: runs at any matrix size, but only with 8 coils.",
    )
    save_model(model.state_dict(), card, out, "kspace_net")
    return card


# ---------------------------------------------------------------- AUTOMAP
AUTOMAP = {"size": 32, "n_coils": 4, "snr": 40.0, "acceleration": 2, "center_fraction": 0.16}


def _automap_sample(image: torch.Tensor, seed: int, augment: bool) -> tuple:
    g = torch.Generator().manual_seed(seed)
    if augment:
        image = _augment(image, g)
    sim = simulate_multicoil(image, n_coils=AUTOMAP["n_coils"], snr=AUTOMAP["snr"], seed=seed)
    mask = make_mask(
        "random",
        image.shape[-2:],
        AUTOMAP["acceleration"],
        seed=seed,
        center_fraction=AUTOMAP["center_fraction"],
    ).mask
    vc, scale = normalise(virtual_coil(sim.kspace * mask))
    target = rss(ifftc(sim.kspace), coil_dim=1) / scale
    return vc[0], target[0], scale[0]


def train_automap(
    data_dir: Path, out: Path, steps: int, seed: int = 0, stop_after: int | None = None
) -> dict:
    """AUTOMAP at 32x32, single virtual coil, random R = 2 masks."""
    n = AUTOMAP["size"]
    train = slice_bank(data_dir, TRAIN_VOLUMES, n, 40)
    val = slice_bank(data_dir, VAL_VOLUMES, n, 8, axes=(2,))
    arch = {"matrix": [n, n], "conv_chans": 32}
    model = Automap(**arch, drop_prob=DROP_PROB)
    dft_initialise(model)
    bs = 16

    def batch(step: int):
        idx = torch.randint(len(train), (bs,), generator=torch.Generator().manual_seed(step))
        samples = [
            _automap_sample(train[i], seed * 7919 + step * bs + j, True)[:2]
            for j, i in enumerate(idx.tolist())
        ]
        return [torch.stack(t) for t in zip(*samples, strict=True)]

    def loss(net, k, t):
        return nn.functional.mse_loss(net(k), t)

    start = time.perf_counter()
    history = fit(model, batch, loss, steps, 1e-4, seed, stop_after)
    seconds = time.perf_counter() - start
    samples = [_automap_sample(val[i], 10_000_000 + i, False) for i in range(len(val))]
    k, t, s = (torch.stack(x) for x in zip(*samples, strict=True))
    with torch.no_grad():
        pred = model(k).abs() * s
    zero_filled = ifftc(k).abs() * s
    card = _card(
        model,
        {"type": "Automap", **arch, "drop_prob": DROP_PROB},
        matrix=[n, n],
        n_coils=None,
        simulation={"coil_kind": "birdcage", "coils": AUTOMAP["n_coils"], "snr": AUTOMAP["snr"]},
        mask={
            "pattern": "random",
            "acceleration": AUTOMAP["acceleration"],
            "center_fraction": AUTOMAP["center_fraction"],
        },
        training={
            "steps": history[-1]["step"],
            "max_steps": steps,
            "batch_size": bs,
            "lr": 1e-4,
            "optimiser": "Adam, cosine",
            "loss": "MSE on RSS image",
            "seconds": round(seconds, 1),
            "seed": seed,
            "threads": torch.get_num_threads(),
            "slices": len(train),
            "weights_dtype": "float16 (computed in float32)",
            "initialisation": "fc layers: inverse DFT (real part) then identity; convs random",
        },
        history=history,
        validation={"slices": len(val), **_metrics(t * s, pred)},
        validation_zero_filled_virtual_coil=_metrics(t * s, zero_filled),
        notes=(
            "Trained and usable ONLY at a 32x32 matrix: the two fully connected layers hold "
            "about 3 N^2 parameters (N = H W), 3.1 M at 32x32 but 50 M (200 MB) at 64x64. "
            "Multi-coil input is compressed to one virtual coil first, so any coil count "
            "works. A demonstrator of direct k-space-to-image mapping, not a clinical model."
        ),
    )
    save_model({k2: v.half() for k2, v in model.state_dict().items()}, card, out, "automap")
    return card


# ---------------------------------------------------------------- motion correction
MOTION = {
    "size": 64,
    "n_coils": 4,
    "snr": 40.0,
    "shots": [4, 8, 16],
    "max_translation_px": 3.0,
    "max_rotation_deg": 3.0,
}


def _motion_sample(image: torch.Tensor, maps: torch.Tensor, seed: int, augment: bool) -> tuple:
    g = torch.Generator().manual_seed(seed)
    if augment:
        image = _augment(image, g)
    sim = simulate_multicoil(image, n_coils=MOTION["n_coils"], snr=None, seed=seed)
    shots = MOTION["shots"][seed % len(MOTION["shots"])]
    ordering = "sequential" if (seed // 3) % 2 == 0 else "interleaved"
    moved = simulate_motion(
        sim.image,
        shots,
        MOTION["max_translation_px"],
        MOTION["max_rotation_deg"],
        seed=seed,
        sensitivities=maps,
        ordering=ordering,
    ).kspace
    std = sim.image.abs()[sim.image.abs() > 0.1 * sim.image.abs().max()].mean() / MOTION["snr"]
    noise = torch.randn(moved.shape, dtype=torch.complex64, generator=g) * std
    corrupted = rss(ifftc(moved + noise), coil_dim=1)[0]
    target = rss(ifftc(sim.kspace), coil_dim=1)[0]
    return corrupted, target


def train_motion(
    data_dir: Path, out: Path, steps: int, seed: int = 0, stop_after: int | None = None
) -> dict:
    """Motion-correction U-Net on simulated multi-shot rigid in-plane motion, 64x64."""
    size = MOTION["size"]
    maps = coil_sensitivities((size, size), MOTION["n_coils"], "birdcage")
    train = slice_bank(data_dir, TRAIN_VOLUMES, size, 24)
    val = slice_bank(data_dir, VAL_VOLUMES, size, 8, axes=(2,))
    arch = {"chans": 16, "num_pool_layers": 3}
    model = MotionCorrectionNet(**arch, drop_prob=DROP_PROB)
    bs = 8

    def batch(step: int):
        idx = torch.randint(len(train), (bs,), generator=torch.Generator().manual_seed(step))
        samples = [
            _motion_sample(train[i], maps, seed * 7919 + step * bs + j, True)
            for j, i in enumerate(idx.tolist())
        ]
        return [torch.stack(t) for t in zip(*samples, strict=True)]

    def loss(net, x, t):
        return nn.functional.l1_loss(net(x), t)

    start = time.perf_counter()
    history = fit(model, batch, loss, steps, 2e-3, seed, stop_after)
    seconds = time.perf_counter() - start
    samples = [_motion_sample(val[i], maps, 10_000_000 + i, False) for i in range(len(val))]
    x, t = (torch.stack(v) for v in zip(*samples, strict=True))
    with torch.no_grad():
        pred = model(x)
    card = _card(
        model,
        {"type": "MotionCorrectionNet", **arch, "drop_prob": DROP_PROB},
        matrix=[size, size],
        n_coils=None,
        simulation={
            **MOTION,
            "coil_kind": "birdcage",
            "orderings": ["sequential", "interleaved"],
            "model": "rigid in-plane motion between shots "
            "(recon_engine.simulation.simulate_motion)",
        },
        training={
            "steps": history[-1]["step"],
            "max_steps": steps,
            "batch_size": bs,
            "lr": 2e-3,
            "optimiser": "Adam, cosine",
            "loss": "L1 on RSS image",
            "seconds": round(seconds, 1),
            "seed": seed,
            "threads": torch.get_num_threads(),
            "slices": len(train),
        },
        history=history,
        validation={"slices": len(val), **_metrics(t, pred)},
        validation_uncorrected=_metrics(t, x),
        notes="Input: RSS magnitude of fully sampled motion-corrupted data; any coil count.",
    )
    save_model(model.state_dict(), card, out, "motion_unet")
    return card


# ---------------------------------------------------------------- g-factor-aware denoiser
DENOISE = {"size": 64, "noise_fraction": [0.01, 0.05]}


def gfactor_bank(size: int) -> torch.Tensor:
    """SENSE ``g x sqrt(R)`` maps (birdcage/loop, 4/8 coils, R 2 and 4 below the coil
    count) plus a uniform map of ones: the shapes of noise the denoiser learns."""
    maps = []
    for kind in ("birdcage", "loop"):
        for coils in (4, 8):
            sens = coil_sensitivities((size, size), coils, kind)[None]
            for r in (2, 4):
                if r < coils:
                    maps.append(sense_gfactor(sens, r)[0] * math.sqrt(r))
    maps.append(torch.ones(size, size))
    return torch.stack(maps).clamp(0, 8)


def _denoise_sample(image: torch.Tensor, bank: torch.Tensor, seed: int, augment: bool) -> tuple:
    g = torch.Generator().manual_seed(seed)
    if augment:
        image = _augment(image, g)
    truth = simulate_multicoil(image, n_coils=1, snr=None, seed=seed).image[0]
    gmap = bank[seed % len(bank)]
    if augment and torch.rand((), generator=g) < 0.5:
        gmap = gmap.flip(-1)
    lo, hi = DENOISE["noise_fraction"]
    level = (lo + (hi - lo) * float(torch.rand((), generator=g))) * float(truth.abs().max())
    sd = gmap * level
    noise = torch.randn(truth.shape, dtype=torch.complex64, generator=g) * sd
    return truth + noise, sd, truth


def train_denoiser(
    data_dir: Path, out: Path, steps: int, seed: int = 0, stop_after: int | None = None
) -> dict:
    """Noise-map denoiser trained on spatially varying (g-factor shaped) complex noise."""
    size = DENOISE["size"]
    bank = gfactor_bank(size)
    train = slice_bank(data_dir, TRAIN_VOLUMES, size, 24)
    val = slice_bank(data_dir, VAL_VOLUMES, size, 8, axes=(2,))
    arch = {"features": 32, "depth": 7}
    model = NoiseMapDenoiser(**arch, drop_prob=DROP_PROB)
    bs = 8

    def batch(step: int):
        idx = torch.randint(len(train), (bs,), generator=torch.Generator().manual_seed(step))
        samples = [
            _denoise_sample(train[i], bank, seed * 7919 + step * bs + j, True)
            for j, i in enumerate(idx.tolist())
        ]
        return [torch.stack(t) for t in zip(*samples, strict=True)]

    def loss(net, x, sd, t):
        scale = t.abs().amax(dim=(-2, -1), keepdim=True)
        return nn.functional.mse_loss(
            torch.view_as_real(net(x, sd) / scale), torch.view_as_real(t / scale)
        )

    start = time.perf_counter()
    history = fit(model, batch, loss, steps, 1e-3, seed, stop_after)
    seconds = time.perf_counter() - start
    samples = [_denoise_sample(val[i], bank, 10_000_000 + i, False) for i in range(len(val))]
    x, sd, t = (torch.stack(v) for v in zip(*samples, strict=True))
    with torch.no_grad():
        pred = model(x, sd)
        uniform = model(x, sd.mean(dim=(-2, -1), keepdim=True).expand_as(sd))
    card = _card(
        model,
        {"type": "NoiseMapDenoiser", **arch, "drop_prob": DROP_PROB},
        matrix=None,
        n_coils=None,
        simulation={
            "noise": "complex Gaussian, SD map = level x (g-factor x sqrt(R)) from "
            "SENSE g-factor maps of birdcage/loop coils (4/8, R 2 or 4) or uniform",
            "level_fraction_of_max": DENOISE["noise_fraction"],
            "size": size,
        },
        training={
            "steps": history[-1]["step"],
            "max_steps": steps,
            "batch_size": bs,
            "lr": 1e-3,
            "optimiser": "Adam, cosine",
            "loss": "MSE on complex image",
            "seconds": round(seconds, 1),
            "seed": seed,
            "threads": torch.get_num_threads(),
            "slices": len(train),
        },
        history=history,
        validation={"slices": len(val), **_metrics(t.abs(), pred.abs())},
        validation_uniform_level=_metrics(t.abs(), uniform.abs()),
        validation_noisy=_metrics(t.abs(), x.abs()),
        notes="Fully convolutional: any matrix size; input is one complex coil-combined image.",
    )
    save_model(model.state_dict(), card, out, "gfactor_denoiser")
    return card


# ---------------------------------------------------------------- 3D super-resolution
SR3D = {"factor": 2, "patch": [16, 40, 40]}


def _volume(data_dir: Path, name: str) -> torch.Tensor:
    """Volume as ``(S, H, W)`` with axial slices first, scaled by its 99.5th percentile,
    at about 1 mm: finer volumes (the 0.5 mm macaque) are averaged over ``n x n x n``
    blocks, ``n = round(1 mm / voxel)``, so every volume has the training resolution."""
    vol, voxel = load_volume(data_dir / name)
    vol = np.nan_to_num(np.moveaxis(vol, 2, 0)).clip(min=0).astype(np.float32)
    out = torch.from_numpy(vol / np.percentile(vol, 99.5)).clamp(0, 1.5)
    block = max(1, round(1.0 / min(float(v) for v in voxel)))
    if block > 1:
        out = nn.functional.avg_pool3d(out[None, None], block)[0, 0]
    return out


def train_sr3d(
    data_dir: Path, out: Path, steps: int, seed: int = 0, stop_after: int | None = None
) -> dict:
    """Through-plane x2 3D ESPCN on 1 mm volumes (thick slices = mean of 2 thin slices)."""
    factor = SR3D["factor"]
    volumes = [_volume(data_dir, v) for v in TRAIN_VOLUMES]
    arch = {"factor": factor, "features": 24, "mid": 16}
    model = ESPCN3D(**arch, drop_prob=DROP_PROB)
    ps, ph, pw = SR3D["patch"]

    def batch(step: int):
        g = torch.Generator().manual_seed(seed * 7919 + step)
        patches = []
        while len(patches) < 4:
            vol = volumes[int(torch.randint(len(volumes), (1,), generator=g))]
            z, y, x = (
                int(torch.randint(n - p + 1, (1,), generator=g))
                for n, p in zip(vol.shape, (ps, ph, pw), strict=True)
            )
            patch = vol[z : z + ps, y : y + ph, x : x + pw]
            if float(patch.mean()) > 0.1:
                patches.append(patch.flip(-1) if torch.rand((), generator=g) < 0.5 else patch)
        return (torch.stack(patches),)

    def loss(net, hr):
        return sum(nn.functional.l1_loss(net(thick_slices(v, factor)), v) for v in hr) / len(hr)

    start = time.perf_counter()
    history = fit(model, batch, loss, steps, 1e-3, seed, stop_after)
    seconds = time.perf_counter() - start
    val = _volume(data_dir, VAL_VOLUMES[0])
    s = val.shape[0] // 2
    hr = val[s - 24 : s + 24]
    lr_vol = thick_slices(hr, factor)
    with torch.no_grad():
        pred = model(lr_vol)
    card = _card(
        model,
        {"type": "ESPCN3D", **arch, "drop_prob": DROP_PROB},
        factor=factor,
        direction="through_plane",
        simulation={
            "degradation": f"thick slice = mean of {factor} consecutive 1 mm slices "
            "(box profile); slice axis = the volume's axial (RAS z) axis",
            "patch": SR3D["patch"],
            "intensity": "volume / 99.5th percentile",
        },
        training={
            "steps": history[-1]["step"],
            "max_steps": steps,
            "batch_size": 4,
            "lr": 1e-3,
            "optimiser": "Adam, cosine",
            "loss": "L1",
            "seconds": round(seconds, 1),
            "seed": seed,
            "threads": torch.get_num_threads(),
        },
        history=history,
        validation={
            "volume": f"48 central axial slices of {VAL_VOLUMES[0]} at 1 mm",
            **_metrics(hr, pred),
        },
        validation_bicubic=_metrics(hr, bicubic_upsample(lr_vol, factor, dims=(0,))),
        validation_bspline=_metrics(hr, bspline_upsample(lr_vol, factor, dims=(0,)).float()),
        notes="Fully convolutional: any in-plane size and slice count >= 2.",
    )
    save_model(model.state_dict(), card, out, "sr_3d")
    return card


FAMILIES = {
    "kspace_net": (train_kspace_net, 800),
    "automap": (train_automap, 4000),
    "motion": (train_motion, 1600),
    "denoiser": (train_denoiser, 4000),
    "sr_3d": (train_sr3d, 900),
}


OUTPUT_NAMES = {
    "kspace_net": "kspace_net",
    "automap": "automap",
    "motion": "motion_unet",
    "denoiser": "gfactor_denoiser",
    "sr_3d": "sr_3d",
}


def main(argv: list[str] | None = None) -> int:
    """Train one family (see :data:`FAMILIES`) and print its model card."""
    parser = argparse.ArgumentParser(prog="python -m recon_engine.dl.family_training")
    parser.add_argument("family", choices=sorted(FAMILIES))
    parser.add_argument("--steps", type=int, help="optimiser steps (default per family)")
    parser.add_argument("--output-dir", default=str(SHIPPED_DIR))
    parser.add_argument("--data-dir", default=str(DATA_DIR))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stop-after", type=int, help="stop after this many of the steps")
    args = parser.parse_args(argv)
    fn, default_steps = FAMILIES[args.family]
    out = Path(args.output_dir)
    steps = args.steps or default_steps
    fn(Path(args.data_dir), out, steps, args.seed, args.stop_after)
    card_path = out / f"{OUTPUT_NAMES[args.family]}.json"
    card = json.loads(card_path.read_text())
    card["reproduce"] = (
        f"OMP_NUM_THREADS=1 python -m recon_engine.dl.family_training {args.family} "
        f"--steps {steps} --stop-after {card['training']['steps']} --seed {args.seed}"
    )
    card_path.write_text(json.dumps(card, indent=2, sort_keys=True))
    print(json.dumps({k: card[k] for k in card if k.startswith(("validation", "training"))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
