"""Our VarNet loads a fastMRI VarNet state dict unchanged and gives the same output."""

from __future__ import annotations

import pytest
import torch

from recon_engine.dl.varnet import VarNet

fastmri_varnet = pytest.importorskip("fastmri.models.varnet")


def _masked_input(width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    kspace = torch.randn(2, 4, 30, width, 2, generator=g)
    line = torch.zeros(width, dtype=torch.bool)
    line[::3] = True
    centre = width // 2
    line[centre - 4 : centre + 4] = True
    mask = line.view(1, 1, 1, width, 1).expand(2, 1, 1, width, 1)
    return kspace * mask, mask


@pytest.mark.parametrize("width", [24, 27])
def test_fastmri_state_dict_loads_and_matches(width: int) -> None:
    torch.manual_seed(1)
    reference = fastmri_varnet.VarNet(num_cascades=3, sens_chans=4, sens_pools=2, chans=6, pools=2)
    with torch.no_grad():  # dc_weight starts at 1 in both: randomise it too
        for p in reference.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ours = VarNet(num_cascades=3, sens_chans=4, sens_pools=2, chans=6, pools=2)
    ours.load_state_dict(reference.state_dict(), strict=True)
    reference.eval()
    ours.eval()
    masked, mask = _masked_input(width, seed=2)
    with torch.no_grad():
        expected = reference(masked, mask)
        got = ours(masked, mask)
    assert got.shape == expected.shape == (2, 30, width)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    with torch.no_grad():
        expected_maps = reference.sens_net(masked, mask)
        got_maps = ours.sens_net(masked, mask)
    torch.testing.assert_close(got_maps, expected_maps, rtol=0, atol=1e-5)


def test_state_dict_keys_identical() -> None:
    reference = fastmri_varnet.VarNet(num_cascades=2, sens_chans=4, sens_pools=2, chans=4, pools=2)
    ours = VarNet(num_cascades=2, sens_chans=4, sens_pools=2, chans=4, pools=2)
    assert list(ours.state_dict()) == list(reference.state_dict())
    assert "cascades.1.dc_weight" in ours.state_dict()
    assert any(k.startswith("sens_net.norm_unet.unet.") for k in ours.state_dict())


def test_fastmri_unet_state_dict_matches_odd_size() -> None:
    fastmri_unet = pytest.importorskip("fastmri.models.unet")
    from recon_engine.dl.unet import Unet

    torch.manual_seed(3)
    reference = fastmri_unet.Unet(1, 1, chans=4, num_pool_layers=3).eval()
    ours = Unet(1, 1, chans=4, num_pool_layers=3).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 1, 27, 33)  # odd sizes exercise the reflect padding
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-6)
