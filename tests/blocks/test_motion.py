"""MotionModule (AnimateDiff's motion module from spacetime blocks) and FramePositionNorm: the shared battery, layouts,
the frame positions, the invariances, the errors. Equality with diffusers is in tests/interop/test_diffusers.py."""

import math

import pytest
import torch
from einops import rearrange

from spacetime.blocks.motion import FramePositionNorm, MotionModule
from spacetime.ops import Temporal, use_backend


def randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("make, shape", [
    (lambda: MotionModule(16, 2, groups=4, max_frames=8), (2, 16, 5, 3, 4)),
    (lambda: MotionModule(12, 2, head_dim=4, depth=2, patterns=(Temporal(),), groups=3, act="gelu", qkv_bias=True,
                          max_frames=None, layout="btchw"), (3, 7, 12, 2, 5)),
], ids=["animatediff", "temporal-model"])
def test_battery(make, shape):
    module = make()
    x = randn(*shape).requires_grad_(True)
    out = module(x)
    assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()
    out.pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    module.eval()
    with torch.no_grad():
        assert torch.equal(module(x), module(x))
        with use_backend("math"):
            reference = module(x)
        for backend in ("sdpa", "short"):
            with use_backend(backend):
                torch.testing.assert_close(module(x), reference, atol=1e-5, rtol=1e-5)


def test_layouts_give_the_same_values():
    module = MotionModule(8, 2, groups=2, max_frames=6).eval()
    x = randn(2, 8, 5, 3, 4)  # (b, c, t, h, w)
    with torch.no_grad():
        ref = module(x)
        for layout, pattern in (("btchw", "b c t h w -> b t c h w"), ("bthwc", "b c t h w -> b t h w c")):
            module.layout = layout  # the same weights read another layout
            out = module(rearrange(x, pattern))
            torch.testing.assert_close(out, rearrange(ref, pattern), atol=0, rtol=0)


def test_frame_positions_are_interleaved_sinusoids_after_the_norm():
    norm = FramePositionNorm(6, max_frames=5, eps=1e-6)
    assert "table" not in norm.state_dict()  # derived from the sizes
    for p in range(5):
        for i in range(3):
            freq = 10000.0 ** (-2 * i / 6)
            assert abs(norm.table[p, 2 * i].item() - math.sin(p * freq)) < 1e-6
            assert abs(norm.table[p, 2 * i + 1].item() - math.cos(p * freq)) < 1e-6
    x = randn(2, 4, 3, 2, 6)  # (b, t, h, w, c)
    expected = torch.nn.functional.layer_norm(x, (6,), norm.weight, norm.bias, 1e-6) + norm.table[:4, None, None]
    torch.testing.assert_close(norm(x), expected, atol=0, rtol=0)
    assert norm.to(torch.float64)(x.double()).dtype == torch.float64


def test_without_positions_frames_are_exchangeable():
    """Temporal attention and a clip-wide GroupNorm do not see frame order; the frame positions do."""
    x, order = randn(1, 8, 5, 2, 3), torch.tensor([3, 0, 4, 1, 2])
    for max_frames, equivariant in ((None, True), (5, False)):
        module = MotionModule(8, 2, groups=2, max_frames=max_frames).eval()
        with torch.no_grad():
            moved = module(x[:, :, order])
            same = torch.allclose(moved, module(x)[:, :, order], atol=1e-5)
        assert same == equivariant


def test_pixels_are_attended_apart():
    """Only the GroupNorm's statistics cross pixels: with the norm's input fixed, a pixel's output is its own."""
    module = MotionModule(8, 2, groups=2, max_frames=4).eval()
    module.norm = torch.nn.Identity()
    x = randn(1, 8, 4, 3, 3)
    y = x.clone()
    y[..., 0, 0] += 1.0  # change one pixel, every frame
    with torch.no_grad():
        diff = (module(x) - module(y)).abs().amax(dim=(0, 1, 2))  # (h, w)
    assert diff[0, 0] > 0 and diff.flatten()[1:].max() == 0


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="groups must divide channels"):
        MotionModule(12, 2, groups=8)
    with pytest.raises(ValueError, match="depth"):
        MotionModule(8, 2, groups=2, depth=0)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MotionModule(9, 2, groups=3)
    with pytest.raises(ValueError, match="max_frames"):
        MotionModule(8, 2, groups=2, max_frames=0)
    with pytest.raises(ValueError, match="even"):
        FramePositionNorm(5, 4)
    module = MotionModule(8, 2, groups=2, max_frames=3)
    with pytest.raises(ValueError, match="max_frames=3"):
        module(randn(1, 8, 4, 2, 2))
    with pytest.raises(ValueError, match="dim=8"):
        module(randn(1, 6, 3, 2, 2))
