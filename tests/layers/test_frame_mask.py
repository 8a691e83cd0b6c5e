"""Per-sample frame masks: padded frames are never keys, padded outputs are zero, a padded batch equals each clip alone."""

import pytest
import torch
from einops import rearrange

import spacetime
from spacetime import CrossFrame, Joint, Spatial, Temporal, Window
from spacetime.ops import attention
from spacetime.ops.patterns import Pattern

MASKABLE = [Spatial(), Temporal(), Temporal(causal=True), Temporal(window=1), Joint(), Window((2, 2, 3)),
            Window((2, 2, 2), shift=(1, 1, 1)), CrossFrame(1)]
# patterns whose grouping of real frames does not depend on the clip length
LENGTH_FREE = [Spatial(), Temporal(), Temporal(causal=True), Temporal(window=1), Joint(), CrossFrame(1)]
LENGTHS = [5, 2, 7, 1]


def _mask(lengths, t):
    return torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]  # (b, t), real frames first


def _dense_reference(pattern, q, k, v, frame_mask):
    """Joint math attention under dense_mask & real keys; padded queries give zero."""
    b, t, h, w = q.shape[:4]
    seq = lambda x: rearrange(x, "b t h w heads d -> b heads (t h w) d")  # noqa: E731
    real = frame_mask[:, :, None, None].expand(b, t, h, w).reshape(b, 1, 1, t * h * w)
    mask = pattern.dense_mask(t, h, w)[None, None] & real
    out = attention(seq(q), seq(k), seq(v), mask=mask, backend="math")
    out = rearrange(out, "b heads (t h w) d -> b t h w heads d", t=t, h=h)
    return out * frame_mask[:, :, None, None, None, None]


@pytest.mark.parametrize("pattern", MASKABLE, ids=repr)
@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_masked_pattern_equals_the_dense_definition(pattern, backend):
    q, k, v = (torch.randn(4, 7, 3, 5, 2, 8) for _ in range(3))
    fm = _mask(LENGTHS, 7)
    out = pattern(q, k, v, frame_mask=fm, backend=backend)
    torch.testing.assert_close(out, _dense_reference(pattern, q, k, v, fm), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pattern", MASKABLE, ids=repr)
def test_padded_frames_never_reach_real_frames(pattern):
    """Any content in the padded frames, even huge, leaves the real frames' outputs unchanged."""
    q, k, v = (torch.randn(3, 6, 2, 3, 2, 4) for _ in range(3))
    fm = _mask([4, 6, 2], 6)
    out = pattern(q, k, v, frame_mask=fm)
    pad = ~fm[:, :, None, None, None, None]
    q2, k2, v2 = (x.masked_fill(pad, 1e4) for x in (q, k, v))
    out2 = pattern(q2, k2, v2, frame_mask=fm)
    torch.testing.assert_close(out2, out, atol=1e-5, rtol=1e-5)
    assert (out.masked_select(pad) == 0).all()  # padded queries give zeros


@pytest.mark.parametrize("pattern", LENGTH_FREE, ids=repr)
def test_padded_batch_equals_each_clip_alone_layer(pattern):
    layer = spacetime.SpaceTimeAttention(16, 2, pattern, layout="bcthw")
    x = torch.randn(len(LENGTHS), 16, 7, 3, 4)
    batch = layer(x, frame_mask=_mask(LENGTHS, 7))
    for i, n in enumerate(LENGTHS):
        alone = layer(x[i:i + 1, :, :n])
        torch.testing.assert_close(batch[i:i + 1, :, :n], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("patterns", [(Temporal(), Spatial()), (Joint(),), (Temporal(causal=True), Spatial())], ids=str)
def test_padded_batch_equals_each_clip_alone_block(patterns):
    block = spacetime.TransformerBlock(16, 2, patterns, rope="thw", layout="btchw")
    x = torch.randn(len(LENGTHS), 7, 16, 3, 3)
    batch = block(x, frame_mask=_mask(LENGTHS, 7))
    for i, n in enumerate(LENGTHS):
        torch.testing.assert_close(batch[i:i + 1, :n], block(x[i:i + 1, :n]), atol=1e-5, rtol=1e-5)


def test_window_padded_batch_equals_clip_alone_when_longer_than_the_window():
    layer = spacetime.SpaceTimeAttention(8, 2, Window((2, 2, 2), shift=(1, 1, 1)))
    x = torch.randn(2, 8, 4, 4, 8)
    batch = layer(x, frame_mask=_mask([5, 8], 8))
    torch.testing.assert_close(batch[:1, :5], layer(x[:1, :5]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pattern", MASKABLE, ids=repr)
def test_fully_masked_clip_is_finite_with_finite_gradients(pattern):
    layer = spacetime.AttentionBlock(8, 2, pattern)
    x = torch.randn(2, 3, 2, 4, 8, requires_grad=True)
    fm = torch.tensor([[False, False, False], [True, False, True]])
    out = layer(x, frame_mask=fm)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0], x[0])  # no real frame: the residual only
    out.square().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


def test_all_true_mask_equals_no_mask():
    block = spacetime.TransformerBlock(16, 2, (Temporal(window=1), Spatial()))
    x = torch.randn(2, 4, 3, 3, 16)
    torch.testing.assert_close(block(x, frame_mask=torch.ones(2, 4, dtype=torch.bool)), block(x), atol=1e-6, rtol=1e-6)


def test_factorized_attention_takes_a_frame_mask():
    layer = spacetime.FactorizedAttention(8, 2, order="time_space")
    x = torch.randn(2, 5, 3, 3, 8)
    batch = layer(x, frame_mask=_mask([3, 5], 5))
    torch.testing.assert_close(batch[:1, :3], layer(x[:1, :3]), atol=1e-5, rtol=1e-5)


def test_bad_frame_masks_are_clear_errors():
    layer = spacetime.SpaceTimeAttention(8, 2, Temporal(), layout="bcthw")
    x = torch.randn(2, 8, 5, 3, 3)
    with pytest.raises(ValueError, match=r"frame_mask must have shape \(b, t\) = \(2, 5\)"):
        layer(x, frame_mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="dtype torch.bool"):
        layer(x, frame_mask=torch.ones(2, 5))
    with pytest.raises(TypeError, match="frame_mask must be a bool torch.Tensor"):
        layer(x, frame_mask=[[True] * 5] * 2)
    with pytest.raises(ValueError, match=r"frame_mask must have shape \(b, t\)"):
        spacetime.TransformerBlock(8, 2, layout="bcthw")(x, frame_mask=torch.ones(5, 2, dtype=torch.bool))


def test_pattern_without_mask_support_refuses_one():
    class Custom(Pattern):
        def _attend(self, q, k, v, attend):
            return v

    q = torch.randn(1, 2, 2, 2, 1, 4)
    assert torch.equal(Custom()(q, q, q), q)
    with pytest.raises(ValueError, match="does not support frame_mask"):
        Custom()(q, q, q, frame_mask=torch.ones(1, 2, dtype=torch.bool))
