"""A site's own network through the registry: TorchScript and ONNX exports of one PyTorch
model give its output within 1e-4; corrupt, mismatched and contract-breaking models get a
clear error."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

from recon_engine import registry
from recon_engine.fft import ifftc, rss
from recon_engine.pipeline import reconstruct_kspace
from recon_engine.registry import ReconError
from recon_engine.sampling import make_mask
from recon_engine.simulation import simulate_multicoil

H = W = 32


def centred_inverse_dft(n: int) -> np.ndarray:
    """Matrix of the centred orthonormal inverse DFT (recon_engine.fft.ifftc along one axis)."""
    eye = torch.eye(n, dtype=torch.complex64)
    shifted = torch.fft.ifft(torch.fft.ifftshift(eye, dim=0), dim=0, norm="ortho")
    return torch.fft.fftshift(shifted, dim=0).numpy()


class TinyRecon(torch.nn.Module):
    """Zero-filled RSS in real arithmetic (DFT as matrix products, so ONNX can export it)
    followed by a fixed 3x3 smoothing residual: a stand-in for a site's network."""

    def __init__(self, h: int = H, w: int = W) -> None:
        super().__init__()
        fh, fw = centred_inverse_dft(h), centred_inverse_dft(w)
        self.register_buffer("fh_r", torch.tensor(fh.real, dtype=torch.float32))
        self.register_buffer("fh_i", torch.tensor(fh.imag, dtype=torch.float32))
        self.register_buffer("fw_r", torch.tensor(fw.real.T, dtype=torch.float32))
        self.register_buffer("fw_i", torch.tensor(fw.imag.T, dtype=torch.float32))
        self.smooth = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
        with torch.no_grad():
            self.smooth.weight.fill_(0.01)

    def forward(self, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        xr, xi = kspace[..., 0] * mask, kspace[..., 1] * mask
        yr = self.fh_r @ xr - self.fh_i @ xi  # along H
        yi = self.fh_r @ xi + self.fh_i @ xr
        zr = yr @ self.fw_r - yi @ self.fw_i  # along W
        zi = yr @ self.fw_i + yi @ self.fw_r
        image = torch.sqrt((zr**2 + zi**2).sum(dim=1))
        return image + self.smooth(image[:, None])[:, 0]


def write_card(directory, name, fmt, filename, **extra) -> dict:
    path = directory / filename
    card = {
        "format": fmt,
        "io": "kspace-mask-v1",
        "weights": filename,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "title": f"Tiny {fmt} net",
        "description": "Zero-filled RSS plus a fixed smoothing residual (test model).",
        "training_data": "none (test model)",
        "coils": 4,
        "matrix": [H, W],
        **extra,
    }
    (directory / f"{name}.json").write_text(json.dumps(card))
    return card


@pytest.fixture
def site_models(tmp_path, monkeypatch):
    monkeypatch.setenv("RECON_MODEL_PATH", str(tmp_path))
    yield tmp_path
    monkeypatch.delenv("RECON_MODEL_PATH")
    registry.refresh_external_methods()


@pytest.fixture
def case():
    image = torch.zeros(2, H, W)
    image[:, 8:24, 6:26] = 1.0
    image[:, 12:18, 10:20] = 2.0
    sim = simulate_multicoil(image, n_coils=4, snr=50, seed=4)
    sampling = make_mask("equispaced", (H, W), 2, seed=0, center_fraction=0.25)
    return sim.kspace * sampling.mask, sampling.mask


def export_both(model: torch.nn.Module, directory) -> None:
    example = (torch.randn(1, 4, H, W, 2), torch.ones(1, 1, 1, W))
    torch.jit.trace(model, example).save(str(directory / "tiny_ts.pt"))
    torch.onnx.export(
        model,
        example,
        str(directory / "tiny_onnx.onnx"),
        input_names=["kspace", "mask"],
        output_names=["image"],
        dynamic_axes={"kspace": {0: "batch"}, "mask": {0: "batch"}, "image": {0: "batch"}},
        dynamo=False,
    )


def test_torchscript_and_onnx_round_trip_within_1e_4(site_models, case):
    model = TinyRecon().eval()
    export_both(model, site_models)
    write_card(site_models, "tiny_ts", "torchscript", "tiny_ts.pt")
    write_card(site_models, "tiny_onnx", "onnx", "tiny_onnx.onnx")
    names = registry.refresh_external_methods()
    assert set(names) == {"ext_tiny_ts", "ext_tiny_onnx"}
    kspace, mask = case
    with torch.no_grad():
        expected = model(torch.view_as_real(kspace), mask.expand(2, 1, 1, W)).numpy()
    zero_filled = rss(ifftc(kspace), coil_dim=1).numpy()
    assert np.abs(expected - zero_filled).max() > 1e-3  # the network does something
    for method in names:
        out = reconstruct_kspace(kspace, mask, method, progress=False).volume
        assert np.abs(out - expected).max() <= 1e-4 * np.abs(expected).max(), method
    spec = registry.get_method("ext_tiny_onnx")
    assert spec.family == "deep_learning" and "kspace-mask-v1" in spec.description


def test_a_replaced_file_is_refused_by_its_sha256(site_models, case):
    export_both(TinyRecon().eval(), site_models)
    write_card(site_models, "tiny_ts", "torchscript", "tiny_ts.pt")
    registry.refresh_external_methods()
    with open(site_models / "tiny_ts.pt", "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(ReconError, match="corrupt or was replaced"):
        reconstruct_kspace(*case, "ext_tiny_ts", progress=False)


def test_a_corrupt_model_file_gets_a_clear_error(site_models, case):
    (site_models / "broken.onnx").write_bytes(b"not an onnx protobuf at all")
    write_card(site_models, "broken", "onnx", "broken.onnx")
    registry.refresh_external_methods()
    with pytest.raises(ReconError, match="not a loadable ONNX model"):
        reconstruct_kspace(*case, "ext_broken", progress=False)


class WrongShape(torch.nn.Module):
    def forward(self, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return kspace[..., 0].sum(dim=1)[:, :, : W // 2]


def test_a_model_breaking_the_contract_or_made_for_other_data_is_refused(site_models, case):
    example = (torch.randn(1, 4, H, W, 2), torch.ones(1, 1, 1, W))
    torch.jit.trace(WrongShape(), example).save(str(site_models / "half.pt"))
    write_card(site_models, "half", "torchscript", "half.pt")
    export_both(TinyRecon().eval(), site_models)
    shutil.copyfile(site_models / "tiny_ts.pt", site_models / "eight_coil.pt")
    write_card(site_models, "eight_coil", "torchscript", "eight_coil.pt", coils=8)
    shutil.copyfile(site_models / "tiny_ts.pt", site_models / "old_io.pt")
    write_card(site_models, "old_io", "torchscript", "old_io.pt", io="image-v0")
    names = registry.refresh_external_methods()
    assert "ext_old_io" not in names  # an unsupported contract never becomes a method
    with pytest.raises(ReconError, match=r"contract needs \(2, 32, 32\)"):
        reconstruct_kspace(*case, "ext_half", progress=False)
    with pytest.raises(ReconError, match="made for 8 coils"):
        reconstruct_kspace(*case, "ext_eight_coil", progress=False)


def test_cli_registers_a_model_after_a_smoke_run_and_refuses_one_that_breaks(
    site_models, tmp_path_factory, capsys
):
    from recon_engine.cli import main

    scratch = tmp_path_factory.mktemp("downloads")
    example = (torch.randn(1, 4, H, W, 2), torch.ones(1, 1, 1, W))
    torch.jit.trace(TinyRecon().eval(), example).save(str(scratch / "net.pt"))
    torch.jit.trace(WrongShape(), example).save(str(scratch / "bad.pt"))
    common = ["--format", "torchscript", "--coils", "4", "--matrix", str(H), str(W)]
    assert (
        main(
            [
                "register-model",
                str(scratch / "net.pt"),
                "--name",
                "site_net",
                "--title",
                "Site",
                "--description",
                "Our knee net.",
                *common,
            ]
        )
        == 0
    )
    card = json.loads((site_models / "site_net.json").read_text())
    assert card["sha256"] == hashlib.sha256((site_models / "site_net.pt").read_bytes()).hexdigest()
    capsys.readouterr()
    assert main(["methods"]) == 0
    assert "ext_site_net  [deep_learning]" in capsys.readouterr().out

    status = main(
        [
            "register-model",
            str(scratch / "bad.pt"),
            "--name",
            "bad_net",
            "--title",
            "Bad",
            "--description",
            "Half the matrix.",
            *common,
        ]
    )
    assert status == 2
    assert "contract needs" in capsys.readouterr().err
    assert not (site_models / "bad_net.json").exists() and not (site_models / "bad_net.pt").exists()


def test_a_fastmri_varnet_state_dict_becomes_varnet_weights(site_models, tmp_path_factory):
    from recon_engine.cli import main
    from recon_engine.dl.site_models import FASTMRI_VARNET_ARCHITECTURE
    from recon_engine.dl.unet import Unet
    from recon_engine.dl.varnet import VarNet
    from recon_engine.dl.weights import load_state_dict

    scratch = tmp_path_factory.mktemp("fastmri")
    arch = {k: v for k, v in FASTMRI_VARNET_ARCHITECTURE.items() if k != "type"}
    torch.save(VarNet(**arch).state_dict(), scratch / "knee_leaderboard_state_dict.pt")
    assert (
        main(
            [
                "import-fastmri-varnet",
                str(scratch / "knee_leaderboard_state_dict.pt"),
                "--name",
                "fastmri_knee",
            ]
        )
        == 0
    )
    state, card = load_state_dict("fastmri_knee")  # sha256-checked like the shipped weights
    VarNet(**arch).load_state_dict(state, strict=True)
    assert card["architecture"]["num_cascades"] == 12

    torch.save(Unet(1, 1, 8, 2).state_dict(), scratch / "unet.pt")
    assert main(["import-fastmri-varnet", str(scratch / "unet.pt"), "--name", "wrong"]) == 2
    assert not (site_models / "wrong.json").exists()


class ReadsAServerFile(torch.nn.Module):
    """A hostile network: maps a server file into a tensor and returns it as the image."""

    def forward(self, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        stolen = torch.from_file("/etc/hostname", shared=False, size=1, dtype=torch.uint8)
        return kspace[..., 0].sum(dim=1) * 0 + stolen.to(torch.float32).sum()


def test_a_network_that_reads_server_files_is_refused(site_models, case):
    torch.jit.script(ReadsAServerFile()).save(str(site_models / "thief.pt"))
    write_card(site_models, "thief", "torchscript", "thief.pt")
    registry.refresh_external_methods()
    with pytest.raises(ReconError, match="aten::from_file"):
        reconstruct_kspace(*case, "ext_thief", progress=False)


def test_names_and_file_names_stay_inside_the_model_folder(site_models, tmp_path_factory):
    from recon_engine.cli import main
    from recon_engine.dl.external import external_cards

    outside = tmp_path_factory.mktemp("outside") / "precious.pt"
    outside.write_bytes(b"keep me")
    export_both(TinyRecon().eval(), site_models)
    card = write_card(site_models, "tiny_ts", "torchscript", "tiny_ts.pt")
    card["weights"] = str(outside)  # a card naming a file elsewhere is never followed
    (site_models / "tiny_ts.json").write_text(json.dumps(card))
    assert external_cards()["tiny_ts"][1] == site_models / "tiny_ts.pt"
    assert "ext_tiny_ts" not in registry.refresh_external_methods()  # and it is invalid

    for name in ("../precious", "unet", "Bad-Name"):
        args = [
            "register-model",
            str(site_models / "tiny_ts.pt"),
            "--name",
            name,
            "--format",
            "torchscript",
            "--title",
            "t",
            "--description",
            "d",
        ]
        assert main(args) == 2
    assert outside.read_bytes() == b"keep me"
    assert not (site_models / "unet.json").exists()
