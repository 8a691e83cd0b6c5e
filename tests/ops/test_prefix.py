"""Prefix tokens and additive biases on every pattern, against dense references."""

import pytest
import torch

from spacetime.blocks import AttentionBlock, TransformerBlock
from spacetime.layers import SpaceTimeAttention
from spacetime.layers.mlp import ACTIVATIONS, Mlp
from spacetime.ops import CrossFrame, Joint, Spatial, Temporal, Window

PATTERNS = [Spatial(), Temporal(), Temporal(causal=True), Temporal(window=1), Joint(), Window((2, 2, 3)),
            Window((2, 2, 2), shift=(1, 1, 1)), CrossFrame(1)]


def grids(b=2, t=3, h=4, w=5, heads=2, d=8, p=2, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    video = [torch.randn(b, t, h, w, heads, d, generator=gen, dtype=dtype) for _ in range(3)]
    prefix = [torch.randn(b, p, heads, d, generator=gen, dtype=dtype) for _ in range(3)]
    return video, prefix


def explicit(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d) + mask) v in the inputs' dtype (fp64 here): the reference."""
    scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    return scores.softmax(-1) @ v


TOL = {"math": 1e-6, "sdpa": 1e-10}  # math computes in fp32 by design; sdpa keeps fp64


def dense_reference(pattern, video, prefix):
    """Joint math attention over [prefix; video] under the pattern's mask: video rows see their pattern's keys and
    the prefix; prefix rows see everything."""
    (q, k, v), (pq, pk, pv) = video, prefix
    b, t, h, w, heads, d = q.shape
    p, n = pq.shape[1], t * h * w
    seq = lambda x, y: torch.cat([y, x.reshape(b, n, heads, d)], 1).transpose(1, 2)  # noqa: E731
    mask = torch.ones(p + n, p + n, dtype=torch.bool)
    mask[p:, p:] = pattern.dense_mask(t, h, w)
    out = explicit(seq(q, pq), seq(k, pk), seq(v, pv), mask=mask).transpose(1, 2)
    return out[:, p:].reshape(q.shape), out[:, :p]


@pytest.mark.parametrize("pattern", PATTERNS, ids=repr)
@pytest.mark.parametrize("backend", ["math", "sdpa"])
def test_every_query_sees_the_prefix_and_the_prefix_sees_the_clip(pattern, backend):
    video, prefix = grids()
    out, prefix_out = pattern(*video, prefix=tuple(prefix), backend=backend)
    ref_out, ref_prefix = dense_reference(pattern, video, prefix)
    torch.testing.assert_close(out, ref_out, atol=TOL[backend], rtol=TOL[backend])
    torch.testing.assert_close(prefix_out, ref_prefix, atol=TOL[backend], rtol=TOL[backend])
    assert torch.equal(pattern(*video, backend=backend), pattern(*video, backend=backend))  # no prefix: as before


def test_mean_mode_answers_the_prefix_per_frame_and_averages():
    """TimeSformer's class token in spatial attention: one softmax over [prefix; frame] per frame, then the mean."""
    (q, k, v), (pq, pk, pv) = grids()
    b, t, h, w, heads, d = q.shape
    out, prefix_out = Spatial()(q, k, v, prefix=(pq, pk, pv), prefix_mode="mean", backend="sdpa")
    per_frame = []
    for f in range(t):
        frame = lambda x, y: torch.cat([y, x[:, f].reshape(b, h * w, heads, d)], 1).transpose(1, 2)  # noqa: E731
        per_frame.append(explicit(frame(q, pq), frame(k, pk), frame(v, pv)).transpose(1, 2))
    expected = torch.stack(per_frame, 1)  # (b, t, p + hw, heads, d)
    torch.testing.assert_close(prefix_out, expected[:, :, :2].mean(1), atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(out, expected[:, :, 2:].reshape(q.shape), atol=1e-10, rtol=1e-10)
    joint_all = Joint()(q, k, v, prefix=(pq, pk, pv), backend="sdpa")
    joint_mean = Joint()(q, k, v, prefix=(pq, pk, pv), prefix_mode="mean", backend="sdpa")
    for a, c in zip(joint_all, joint_mean):  # one sequence: the two modes agree
        torch.testing.assert_close(a, c, atol=1e-10, rtol=1e-10)


def test_prefix_with_frame_masks_ignores_padded_frames():
    video, prefix = grids()
    mask = torch.tensor([[True, True, False], [True, True, True]])
    out, prefix_out = Temporal()(*video, prefix=tuple(prefix), frame_mask=mask, backend="sdpa")
    short = [x[:1, :2] for x in video]
    alone_out, alone_prefix = Temporal()(*short, prefix=tuple(x[:1] for x in prefix), backend="sdpa")
    torch.testing.assert_close(out[:1, :2], alone_out, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(prefix_out[:1], alone_prefix, atol=1e-10, rtol=1e-10)
    assert not out[0, 2].any()
    with pytest.raises(ValueError, match="prefix_mode='mean' .* takes no frame_mask"):
        Spatial()(*video, prefix=tuple(prefix), prefix_mode="mean", frame_mask=mask)


def test_bias_is_added_to_every_window_where_the_mask_allows():
    (q, k, v), _ = grids(t=2, h=4, w=4)
    window = Window((2, 2, 2))
    n = 8
    bias = torch.randn(2, n, n, dtype=torch.float64)
    out = window(q, k, v, bias=bias, backend="sdpa")
    b, t, h, w, heads, d = q.shape
    flat = lambda x: x.reshape(b, t * h * w, heads, d).transpose(1, 2)  # noqa: E731
    scores_bias = torch.full((heads, t * h * w, t * h * w), float("-inf"), dtype=torch.float64)
    index = torch.arange(t * h * w).reshape(t, h, w)
    for wi in range(2):  # tubes of 2 x 2 x 2: rows wi, columns wj
        for wj in range(2):
            tokens = index[:, 2 * wi:2 * wi + 2, 2 * wj:2 * wj + 2].reshape(-1)  # in window order (t, h, w)
            scores_bias[:, tokens[:, None], tokens[None, :]] = bias
    expected = explicit(flat(q), flat(k), flat(v), mask=scores_bias).transpose(1, 2).reshape(q.shape)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=1e-10)
    with pytest.raises(ValueError, match=r"bias must be \(heads, n, m\) for this pattern's sequences of n=8"):
        window(q, k, v, bias=torch.zeros(2, 4, 4, dtype=torch.float64))


def test_prefix_arguments_are_checked():
    video, prefix = grids()
    with pytest.raises(ValueError, match=r"prefix q, k, v must each be \(b, p, heads, d\)"):
        Spatial()(*video, prefix=(prefix[0][:, :, :1],) * 3)
    with pytest.raises(ValueError, match="prefix must be"):
        Spatial()(*video, prefix=prefix[0])
    with pytest.raises(ValueError, match="prefix_mode must be one of"):
        Spatial()(*video, prefix=tuple(prefix), prefix_mode="first")


def test_layers_and_blocks_carry_prefix_tokens():
    torch.manual_seed(0)
    x, cls = torch.randn(2, 3, 4, 4, 16), torch.randn(2, 1, 16)
    layer = SpaceTimeAttention(16, 2, Joint(), layout="bthwc").eval()
    out, cls_out = layer.forward_channels_last(x, prefix=cls)
    # the same as joint attention over the CLS token and the tokens, one sequence
    tokens = torch.cat([cls, x.reshape(2, 48, 16)], 1)[:, :, None, None, :]  # (b, 1 + n, 1, 1, c)
    both = layer.forward_channels_last(tokens)
    torch.testing.assert_close(cls_out, both[:, :1, 0, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, both[:, 1:, 0, 0].reshape(x.shape), atol=1e-5, rtol=1e-5)
    block = TransformerBlock(16, 2, (Temporal(), Spatial()), sees_prefix=(False, True), prefix_mode="mean").eval()
    y, cls_y = block.forward_channels_last(x, prefix=cls)
    assert y.shape == x.shape and cls_y.shape == cls.shape
    skip = AttentionBlock(16, 2, Temporal(), sees_prefix=False)
    assert skip.forward_channels_last(x, prefix=cls)[1] is cls  # a sub-block that does not see the prefix keeps it
    with pytest.raises(ValueError, match=r"prefix must be \(b, p, dim\)"):
        layer.forward_channels_last(x, prefix=torch.randn(2, 1, 8))
    with pytest.raises(ValueError, match="sees_prefix needs one entry per pattern"):
        TransformerBlock(16, 2, (Temporal(), Spatial()), sees_prefix=(True,))


def test_activations_and_norm_eps():
    x = torch.randn(5, 8)
    for act in ACTIVATIONS:
        mlp = Mlp(8, 12, act=act)
        assert mlp(x).shape == x.shape and list(dict(mlp.named_parameters())) == ["0.weight", "0.bias", "2.weight",
                                                                                     "2.bias"]
    geglu = Mlp(8, 12, act="geglu")
    value, gate = geglu[0](x).chunk(2, -1)
    torch.testing.assert_close(geglu(x), geglu[2](value * torch.nn.functional.gelu(gate)))
    quick = Mlp(8, 12, act="quick_gelu")
    h = quick[0](x)
    torch.testing.assert_close(quick(x), quick[2](h * torch.sigmoid(1.702 * h)))
    with pytest.raises(ValueError, match="act must be one of"):
        Mlp(8, act="relu6")
    block = TransformerBlock(16, 2, norm_eps=1e-12, act="gelu_tanh")
    assert block.norm_mlp.eps == 1e-12 and all(a.norm.eps == 1e-12 for a in block.attn)
    assert block.mlp[1].approximate == "tanh"
