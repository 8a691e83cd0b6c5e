"""WindowAttention: Swin's window attention with a relative-position bias.

With torchvision's rules (``padding="zeros"``, ``clipped_bias="leading"``) it equals torchvision's own
``ShiftedWindowAttention3d`` (run from the torchvision wheel, see ``tests/interop/test_torchvision.py``) over clipped,
padded and shifted windows; with spacetime's it keeps padding out of every key set and gives a clipped window its
true offsets; and it passes the battery every module passes.
"""

import contextlib

import pytest
import torch
from einops import rearrange

from spacetime.layers.window import WindowAttention, relative_position_index
from spacetime.ops import Window, use_backend
from tests.interop.test_torchvision import tv  # noqa: F401  (the fixture: torchvision's video swin_transformer module)

#: (window, grid (t, h, w)): a window that divides the grid, one that does not (padding), axes shorter than the
#: window (clipped: in time only, then in rows and columns, where the leading bias block differs), one frame
SHAPES = [((2, 3, 3), (4, 6, 9)), ((2, 3, 3), (3, 5, 4)), ((8, 7, 7), (5, 10, 9)), ((8, 7, 7), (5, 5, 5)),
          ((3, 3, 3), (7, 2, 11)), ((2, 4, 4), (1, 6, 7))]


def randomized(layer, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return layer.eval()


def grid(b, t, h, w, c, seed=1):
    return torch.randn(b, t, h, w, c, generator=torch.Generator().manual_seed(seed))


def torchvision_rules(window, shift, dim=16, heads=2):
    return randomized(WindowAttention(dim, heads, window, shift, padding="zeros", clipped_bias="leading"))


@pytest.mark.parametrize("window, size", SHAPES)
@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("backend", ["math", None])
def test_torchvisions_rules_equal_its_shifted_window_attention(tv, window, size, shifted, backend):  # noqa: F811
    shift = tuple(ws // 2 if shifted else 0 for ws in window)
    layer = torchvision_rules(window, shift)
    original = tv.ShiftedWindowAttention3d(16, list(window), list(shift), 2).eval()
    missing, unexpected = original.load_state_dict(layer.state_dict(), strict=False)
    assert missing == ["relative_position_index"] and unexpected == []  # the one buffer spacetime does not save
    assert torch.equal(original.relative_position_index, layer.relative_position_index)
    x = grid(2, *size, 16)
    with torch.no_grad(), use_backend(backend) if backend else contextlib.nullcontext():
        got = layer.forward_channels_last(x)
    with torch.no_grad():
        want = original(x)
    torch.testing.assert_close(got, want, atol=5e-5 if backend is None else 2e-5, rtol=1e-5)


def test_torchvisions_minus_100_agrees_with_removing_the_pairs(tv, monkeypatch):  # noqa: F811
    """torchvision adds -100.0 to pairs from different regions of a shifted window; spacetime removes them (-inf).
    Both give one output to float32 rounding at these scores."""
    window, shift, size = (2, 3, 3), (1, 1, 1), (3, 5, 4)
    original = tv.ShiftedWindowAttention3d(16, list(window), list(shift), 2).eval()
    original.load_state_dict(torchvision_rules(window, shift).state_dict(), strict=False)
    x = grid(2, *size, 16)
    with torch.no_grad():
        minus_100 = original(x)
        mask_of = tv._compute_attention_mask_3d
        monkeypatch.setattr(tv, "_compute_attention_mask_3d",
                            lambda *args: mask_of(*args).masked_fill(mask_of(*args) != 0, float("-inf")))
        removed = original(x)
    assert torch.isfinite(removed).all()
    torch.testing.assert_close(minus_100, removed, atol=1e-6, rtol=0)


def test_the_index_is_torchvisions(tv):  # noqa: F811
    for window in [(2, 3, 3), (8, 7, 7), (1, 4, 2), (3, 1, 5)]:
        original = tv.ShiftedWindowAttention3d(8, list(window), [0, 0, 0], 2)
        assert torch.equal(relative_position_index(window), original.relative_position_index)


def _dense_reference(layer, x):
    """Joint attention over a clip within one window (the window clipped to it) with the bias of each pair's true
    offset, written out: a loop over token pairs for the bias, one softmax per head."""
    t, h, w = x.shape[1:4]
    heads, d = layer.num_heads, layer.head_dim
    q, k, v = rearrange(layer.qkv(x), "b t h w (three heads d) -> three b heads (t h w) d", three=3, heads=heads)
    coords = [(i, j, m) for i in range(t) for j in range(h) for m in range(w)]
    wt, wh, ww = layer.window_size
    rows = torch.tensor([[((a[0] - z[0] + wt - 1) * (2 * wh - 1) + a[1] - z[1] + wh - 1) * (2 * ww - 1) + a[2] - z[2]
                          + ww - 1 for z in coords] for a in coords])
    bias = rearrange(layer.relative_position_bias_table[rows], "n m heads -> heads n m")
    probs = (q @ k.transpose(-1, -2) * d ** -0.5 + bias).softmax(-1)
    return layer.proj(rearrange(probs @ v, "b heads (t h w) d -> b t h w (heads d)", t=t, h=h))


@pytest.mark.parametrize("size", [(2, 3, 3), (1, 2, 3), (3, 3, 1)])
def test_a_window_over_the_whole_clip_is_joint_attention_with_the_true_offsets(size):
    layer = randomized(WindowAttention(12, 3, (3, 4, 3)))  # every axis at least as long as the clip
    x = grid(2, *size, 12)
    with torch.no_grad(), use_backend("math"):
        torch.testing.assert_close(layer.forward_channels_last(x), _dense_reference(layer, x), atol=2e-5, rtol=1e-5)


def test_the_leading_block_is_the_true_offsets_when_only_time_is_clipped():
    relative = randomized(WindowAttention(8, 2, (4, 3, 3)))
    leading = WindowAttention(8, 2, (4, 3, 3), clipped_bias="leading")
    leading.load_state_dict(relative.state_dict())
    torch.testing.assert_close(relative.attention_bias(2, 6, 6), leading.attention_bias(2, 6, 6), atol=0, rtol=0)
    assert not torch.equal(relative.attention_bias(4, 2, 6), leading.attention_bias(4, 2, 6))  # rows clipped


def test_spacetimes_padding_is_never_a_key_and_torchvisions_is():
    """Without padding both rules are one function; where padding happens, only torchvision's sees it."""
    exclude = randomized(WindowAttention(8, 2, (2, 3, 3), (1, 1, 1)))
    zeros = WindowAttention(8, 2, (2, 3, 3), (1, 1, 1), padding="zeros")
    zeros.load_state_dict(exclude.state_dict())
    with torch.no_grad():
        x = grid(1, 4, 6, 3, 8)
        torch.testing.assert_close(exclude.forward_channels_last(x), zeros.forward_channels_last(x))
        x = grid(1, 3, 5, 4, 8)
        assert not torch.allclose(exclude.forward_channels_last(x), zeros.forward_channels_last(x), atol=1e-3)


def test_a_padded_position_changes_nothing_under_spacetimes_rule():
    layer = randomized(WindowAttention(8, 2, (2, 3, 3), (1, 1, 1)))
    x = grid(1, 3, 5, 4, 8)
    mask = torch.tensor([[True, True, True, False]])  # a padded fourth frame, whatever its contents
    padded = torch.cat([x, grid(1, 1, 5, 4, 8, seed=3)], dim=1)
    with torch.no_grad():
        within = layer.forward_channels_last(padded, frame_mask=mask)[:, :3]
        # the pattern pads the 3-frame clip to 4 itself: the same keys, so the same output
        torch.testing.assert_close(within, layer.forward_channels_last(x), atol=1e-6, rtol=1e-6)


def test_the_battery():
    layer = randomized(WindowAttention(16, 4, (2, 3, 3), (1, 1, 1), layout="bcthw"))
    x = torch.randn(2, 16, 3, 7, 5, requires_grad=True)
    out = layer(x)
    assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())
    with torch.no_grad():
        torch.testing.assert_close(layer(x), layer(x), atol=0, rtol=0)
        with use_backend("math"):
            reference = layer(x)
        with use_backend("sdpa"):
            torch.testing.assert_close(layer(x), reference, atol=1e-5, rtol=1e-5)
    assert "relative_position_index" not in layer.state_dict()
    assert layer.relative_position_bias_table.shape == (3 * 5 * 5, 4)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="padding must be one of"):
        WindowAttention(8, 2, padding="reflect")
    with pytest.raises(ValueError, match="clipped_bias must be one of"):
        WindowAttention(8, 2, clipped_bias="nearest")
    with pytest.raises(TypeError, match="builds its own Window pattern"):
        WindowAttention(8, 2, pattern=Window())
    with pytest.raises(ValueError, match="shift"):
        WindowAttention(8, 2, (2, 3, 3), (2, 0, 0))
    with pytest.raises(ValueError, match="frame_mask must be None with padding='zeros'"):
        WindowAttention(8, 2, padding="zeros").forward_channels_last(grid(1, 2, 3, 3, 8),
                                                                    frame_mask=torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"size \(3, 3, 3\) must fit in the table's window \(2, 3, 3\)"):
        relative_position_index((3, 3, 3), (2, 3, 3))
