"""The shared battery every video module passes, plus layout handling and input errors."""

import pytest
import torch

import spacetime
from spacetime import CrossFrame, Joint, Spatial, Temporal, Window
from spacetime.ops import use_backend

PATTERNS = [Spatial(), Temporal(), Temporal(causal=True), Temporal(window=1), Joint(),
            Window((2, 2, 3)), Window((2, 4, 4), shift=(1, 2, 2)), CrossFrame(1)]


def video_modules():
    """(id, factory, input shape) for every public video module and design-text class."""
    cases = []
    for p in PATTERNS:
        cases.append((f"SpaceTimeAttention-{p}", lambda p=p: spacetime.SpaceTimeAttention(16, 2, p, layout="bcthw"),
                      (2, 16, 3, 5, 4)))
        cases.append((f"AttentionBlock-{p}", lambda p=p: spacetime.AttentionBlock(16, 4, p, qk_norm=True), (1, 4, 3, 5, 16)))
    cases += [
        ("TransformerBlock-divided", lambda: spacetime.TransformerBlock(16, 2, (Temporal(), Spatial()), layout="btchw"),
         (2, 3, 16, 4, 5)),
        ("FactorizedAttention-time_space", lambda: spacetime.FactorizedAttention(16, 2, order="time_space"), (1, 3, 4, 5, 16)),
        ("Factorized000", lambda: spacetime.FactorizedSpatioTemporalAttention(16, 4), (2, 3, 16, 4, 4)),
        ("Window001", lambda: spacetime.SpatioTemporalWindowAttention(16, 2, (2, 3, 3)), (1, 16, 3, 5, 4)),
        ("TemporalTransformer003", lambda: spacetime.TemporalTransformer(16, 2), (5, 2, 16)),
        ("MiniSpaceTime003", lambda: spacetime.MiniSpaceTimeTransformer(8, 2), (2, 3, 5, 8)),
        ("MHSA004", lambda: spacetime.MultiHeadSelfAttention(16), (2, 7, 16)),
        ("Spatial004", lambda: spacetime.SpatialAttentionBlock(16), (1, 2, 3, 3, 16)),
        ("Temporal004", lambda: spacetime.TemporalAttentionBlock(16), (1, 3, 3, 2, 16)),
        ("Causal004", lambda: spacetime.CausalTemporalAttention(16), (1, 3, 2, 3, 16)),
        ("Full3D004", lambda: spacetime.Full3DAttention(16), (1, 2, 3, 3, 16)),
        ("FactorizedBlock004", lambda: spacetime.FactorizedSpaceTimeBlock(16), (2, 3, 2, 3, 16)),
    ]
    return cases


CASES = video_modules()
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("name, make, shape", CASES, ids=IDS)
def test_battery(name, make, shape):
    module = make()
    x = torch.randn(shape, requires_grad=True)
    out = module(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out).all()
    out.pow(2).mean().backward()
    missing = [n for n, p in module.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without a finite gradient: {missing}"
    assert all(p.grad.abs().sum() > 0 for p in module.parameters()), "a parameter got an all-zero gradient"
    module.eval()
    with torch.no_grad():
        assert torch.equal(module(x), module(x))
        with use_backend("math"):
            reference = module(x)
        torch.testing.assert_close(module(x), reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pattern", PATTERNS, ids=repr)
def test_layouts_give_the_same_answer(pattern):
    torch.manual_seed(0)
    base = spacetime.SpaceTimeAttention(8, 2, pattern, layout="bthwc")
    x = torch.randn(2, 3, 4, 5, 8)  # (b, t, h, w, c)
    want = base(x)
    for layout, perm in (("bcthw", (0, 4, 1, 2, 3)), ("btchw", (0, 1, 4, 2, 3))):
        other = spacetime.SpaceTimeAttention(8, 2, pattern, layout=layout)
        other.load_state_dict(base.state_dict())
        torch.testing.assert_close(other(x.permute(perm)), want.permute(perm), atol=1e-6, rtol=1e-6)


def test_dropout_only_in_training():
    module = spacetime.SpaceTimeAttention(16, 2, Spatial(), attn_drop=0.5, proj_drop=0.5)
    x = torch.randn(1, 2, 4, 4, 16)
    module.train()
    assert not torch.equal(module(x), module(x))
    module.eval()
    assert torch.equal(module(x), module(x))


def test_mha_style_loads_torch_multihead_attention_weights():
    mha = torch.nn.MultiheadAttention(16, 4, batch_first=True)
    ours = spacetime.MHAStyleAttention(16, 4, Joint())
    ours.load_state_dict(mha.state_dict(), strict=True)
    x = torch.randn(2, 1, 6, 1, 16)
    seq = x.reshape(2, 6, 16)
    torch.testing.assert_close(ours(x).reshape(2, 6, 16), mha(seq, seq, seq)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "x, message",
    [
        (torch.randn(2, 8, 4, 4), "5-D video in layout 'bcthw'"),
        (torch.randn(2, 8, 3, 4, 4), "channels on axis 1 of size 8, but the module expects dim=16"),
        (torch.randn(2, 16, 0, 4, 4), "T=0"),
        (torch.randn(2, 16, 3, 0, 4), "H=0"),
        (torch.randn(0, 16, 3, 4, 4), "B=0"),
        (torch.ones(2, 16, 3, 4, 4, dtype=torch.int32), "floating point"),
    ],
)
def test_bad_video_input(x, message):
    module = spacetime.SpaceTimeAttention(16, 2, Spatial(), layout="bcthw")
    with pytest.raises(ValueError, match=__import__("re").escape(message)):
        module(x)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: spacetime.SpaceTimeAttention(10, 3), "dim must be divisible by num_heads; got dim=10, num_heads=3"),
        (lambda: spacetime.SpaceTimeAttention(16, 0), "num_heads"),
        (lambda: spacetime.SpaceTimeAttention(16, 2, layout="tchw"), "layout must be one of"),
        (lambda: spacetime.SpaceTimeAttention(16, 2, "diagonal"), "pattern must be"),
        (lambda: spacetime.TransformerBlock(16, 2, ()), "at least one"),
        (lambda: spacetime.FactorizedAttention(16, 2, order="sideways"), "order must be"),
        (lambda: spacetime.MHAStyleAttention(16, 2, head_dim=4), "head_dim"),
    ],
)
def test_bad_constructor_arguments(make, message):
    with pytest.raises(ValueError, match=__import__("re").escape(message)):
        make()


def test_head_dim_decoupled_from_dim():
    module = spacetime.SpaceTimeAttention(12, 4, Temporal(), head_dim=5)
    assert module.qkv.out_features == 60 and module.proj.in_features == 20
    assert module(torch.randn(1, 3, 2, 2, 12)).shape == (1, 3, 2, 2, 12)


@pytest.mark.slow
@pytest.mark.parametrize("pattern", [Spatial(), Temporal(causal=True), Window((2, 3, 3), shift=(1, 1, 1))], ids=repr)
def test_torch_compile_fullgraph(pattern):
    module = spacetime.AttentionBlock(16, 2, pattern).eval()
    x = torch.randn(1, 4, 5, 5, 16)
    compiled = torch.compile(module, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), module(x), atol=1e-5, rtol=1e-5)


def test_rotary_positions_override_the_grid_and_need_rope():
    from spacetime.layers.attention import SpaceTimeAttention
    from spacetime.ops.patterns import Joint

    torch.manual_seed(0)
    layer = SpaceTimeAttention(16, 2, Joint(), rope="thw")
    x = torch.randn(2, 3, 4, 5, 16)
    grid = torch.stack(torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in (3, 4, 5)), indexing="ij"), -1)
    grid = grid.expand(2, 3, 4, 5, 3)
    assert torch.allclose(layer.forward_channels_last(x, positions=grid), layer.forward_channels_last(x), atol=1e-6)
    # a common offset changes nothing (relative positions), an offset of one frame's tokens does
    moved = grid + torch.tensor([0.0, 2.5, -1.25])
    assert torch.allclose(layer.forward_channels_last(x, positions=moved), layer.forward_channels_last(x), atol=1e-5)
    one = grid.clone()
    one[:, 1, ..., 2] += 1.5
    assert not torch.allclose(layer.forward_channels_last(x, positions=one), layer.forward_channels_last(x), atol=1e-4)
    with pytest.raises(ValueError, match=r"positions must have shape \(b, t, h, w, 3\)"):
        layer.forward_channels_last(x, positions=grid[:1])
    with pytest.raises(ValueError, match="build the layer with rope"):
        SpaceTimeAttention(16, 2, Joint()).forward_channels_last(x, positions=grid)
