import numpy as np
import pytest
import torch

from spacetime.compat import FactorizedVideoUNet, SinusoidalTimeEmbed
from spacetime.data.bouncing import create_dataset
from spacetime.diffusion.schedules import cosine_beta_schedule
from spacetime.ops import use_backend
from tests.compat.unet_reference import RefFactorizedVideoUNet, RefTimeEmbed


def _close(a, b, tol=1e-5):
    return (a - b).abs().max().item() <= tol * max(1.0, b.abs().max().item())


def test_same_module_tree_as_the_text():
    ours, ref = FactorizedVideoUNet(), RefFactorizedVideoUNet()
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert [v.shape for v in ours.state_dict().values()] == [v.shape for v in ref.state_dict().values()]


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("shape", [(2, 1, 3, 8, 6), (1, 1, 1, 4, 4)])
def test_reference_weights_load_strict_and_match(mode, shape):
    ref = RefFactorizedVideoUNet(in_channels=1, base_dim=16, num_heads=2)
    for p in ref.parameters():  # break the zero-bias init so every parameter matters
        torch.nn.init.normal_(p, std=0.2)
    ours = FactorizedVideoUNet(in_channels=1, base_dim=16, num_heads=2)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref.train(mode == "train"), ours.train(mode == "train")
    x, t = torch.randn(shape), torch.randint(0, 500, (shape[0],))
    assert _close(ours(x, t), ref(x, t))
    with use_backend("math"):
        assert _close(ours(x, t), ref(x, t))


def test_our_weights_load_into_the_reference_and_gradients_match():
    ours, ref = FactorizedVideoUNet(base_dim=8, num_heads=2), RefFactorizedVideoUNet(base_dim=8, num_heads=2)
    ref.load_state_dict(ours.state_dict(), strict=True)
    x, t = torch.randn(2, 1, 4, 8, 8), torch.tensor([3, 400])
    ours(x, t).square().mean().backward()
    ref(x, t).square().mean().backward()
    for (name, a), b in zip(ours.named_parameters(), ref.parameters()):
        assert a.grad is not None, name
        assert _close(a.grad, b.grad, 1e-4), name


def test_time_embed_matches_reference():
    ours, ref = SinusoidalTimeEmbed(32), RefTimeEmbed(32)
    ours.load_state_dict(ref.state_dict(), strict=True)
    t = torch.tensor([0, 1, 250, 499])
    assert _close(ours(t), ref(t))


def test_one_training_step_on_the_unet_gives_a_finite_loss():
    model = FactorizedVideoUNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = create_dataset(2, 2, 16, rng=np.random.default_rng(0))
    alphas_cumprod = torch.cumprod(1 - cosine_beta_schedule(500), 0)
    t = torch.randint(0, 500, (2,))
    noise = torch.randn_like(batch)
    a = alphas_cumprod[t].view(-1, 1, 1, 1, 1)
    loss = torch.nn.functional.mse_loss(model(a.sqrt() * batch + (1 - a).sqrt() * noise, t), noise)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and 0 < loss.item() < 10
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("x, t, message", [
    (torch.randn(1, 2, 4, 8, 8), torch.tensor([1]), "channels on axis 1"),
    (torch.randn(1, 1, 4, 7, 8), torch.tensor([1]), "even H and W"),
    (torch.randn(1, 1, 8, 8), torch.tensor([1]), "5-D video"),
    (torch.randn(2, 1, 4, 8, 8), torch.tensor([1]), "t must be a (B,) tensor"),
])
def test_bad_input(x, t, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FactorizedVideoUNet()(x, t)


def test_bad_arguments():
    with pytest.raises(ValueError, match="base_dim must be a multiple of 4"):
        FactorizedVideoUNet(base_dim=30)
    with pytest.raises(ValueError, match="dim must be an even int"):
        SinusoidalTimeEmbed(7)
