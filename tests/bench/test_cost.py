"""The cost model: exact pair counts, FLOPs against torch's FLOP counter, the texts' figures."""

import pytest
from torch.utils.flop_counter import FlopCounterMode

from spacetime.bench.cases import PATTERN_NAMES, Case, make_patterns
from spacetime.bench.cost import (
    VideoShape,
    attention_memory,
    attention_pairs,
    layer_cost,
    speedup,
)
from spacetime.ops.patterns import CrossFrame, Joint, Spatial, Temporal, Window

AWKWARD = [(1, 1, 1), (5, 7, 3), (4, 4, 4), (7, 5, 6), (2, 9, 9), (3, 1, 11)]
OPTIONS = [
    {},
    {"window": (3, 2, 5), "shift": (1, 1, 2), "local": 2, "cross": 2},
    {"window": (1, 4, 4), "local": 0, "cross": 0},
    {"window": (4, 3, 3), "shift": (2, 0, 1), "local": 5, "cross": 9},
]


@pytest.mark.parametrize("name", PATTERN_NAMES)
def test_useful_pairs_equal_the_dense_mask(name):
    for opts in OPTIONS:
        patterns = make_patterns(name, opts)
        for t, h, w in AWKWARD:
            expected = sum(int(p.dense_mask(t, h, w).sum()) for p in patterns)
            pairs = attention_pairs(patterns, t, h, w)
            assert pairs.useful == expected, (name, opts, (t, h, w))
            assert pairs.executed >= pairs.useful


def test_executed_pairs_count_the_padded_and_masked_work():
    # 5 frames, window 2: 3 tubes along t (the last one padded), 2 x 2 along h, w
    assert attention_pairs(Window((2, 4, 4)), 5, 8, 8).executed == 3 * 2 * 2 * (2 * 4 * 4) ** 2
    assert attention_pairs(Window((2, 4, 4)), 5, 8, 8).useful == (2 * 2 + 2 * 2 + 1) * (4 * 4 * 2) ** 2
    # causal: the kernel is handed the full t x t square, half of it is used
    p = attention_pairs(Temporal(causal=True), 8, 2, 2)
    assert (p.useful, p.executed) == (4 * 8 * 9 // 2, 4 * 64)
    # cross-frame k=1 on 3 frames: every frame's keys are 3 frames wide, the edge frames use 2
    p = attention_pairs(CrossFrame(1), 3, 2, 2)
    assert (p.useful, p.executed) == (16 * (2 + 3 + 2), 3 * 4 * 3 * 4)
    # a local window wider than the clip is plain temporal attention
    assert attention_pairs(Temporal(window=10), 4, 3, 3) == attention_pairs(Temporal(), 4, 3, 3)


def test_text_004_figures():
    # 16 frames of 32 x 32: 16,384^2 ~ 268 million pairs vs ~17 million, "a 16x reduction"
    joint = attention_pairs(Joint(), 16, 32, 32)
    fact = attention_pairs((Spatial(), Temporal()), 16, 32, 32)
    assert joint.useful == 16_384**2 == 268_435_456
    assert fact.useful == 16 * 1024**2 + 1024 * 16**2 == 17_039_360
    shape = VideoShape(1, 16, 32, 32, 128, 4)
    assert round(speedup((Spatial(), Temporal()), Joint(), shape, projections=False)) == 16
    # the text's "over 1000x at 256 x 256" does not hold for 16 frames: the ratio is T*HW/(HW+T) < T
    big = VideoShape(1, 16, 256, 256, 128, 4)
    ratio = speedup((Spatial(), Temporal()), Joint(), big, projections=False)
    assert ratio == pytest.approx(16 * 65536 / (65536 + 16))
    assert 15.9 < ratio < 16
    # what is over 1000x there: joint vs temporal attention alone (HW = 65,536x)
    assert speedup(Temporal(), Joint(), big, projections=False) == pytest.approx(65536)


def test_projections_shrink_the_factorized_advantage():
    shape = VideoShape(2, 16, 32, 32, 128, 4)
    attn_only = speedup((Spatial(), Temporal()), Joint(), shape, projections=False)
    with_proj = speedup((Spatial(), Temporal()), Joint(), shape)
    assert attn_only == pytest.approx(15.7538, rel=1e-4)
    assert with_proj == pytest.approx(10.7216, rel=1e-4)


def _counted_flops(spec, mode):
    case = Case(spec)
    with FlopCounterMode(display=False) as counter:
        case.run(mode)
    return counter.get_total_flops()


@pytest.mark.parametrize("name", PATTERN_NAMES)
@pytest.mark.parametrize("impl", ["layer", "op"])
def test_flops_match_torch_flop_counter_on_the_math_backend(name, impl):
    # the math backend multiplies exactly the executed rectangles: torch counts the same FLOPs
    opts = {"window": (2, 3, 3), "local": 1, "cross": 1}
    spec = {"impl": impl, "pattern": name, "backend": "math", "shape": [2, 3, 4, 5, 16, 2], "options": opts}
    cost = layer_cost(make_patterns(name, opts), VideoShape(2, 3, 4, 5, 16, 2), "math", projections=impl == "layer")
    assert _counted_flops(spec, "fwd") == cost.flops("fwd")
    assert _counted_flops(spec, "fwdbwd") == cost.flops("fwdbwd")


def test_memory_model_orders_backends_and_modes():
    shape = VideoShape(1, 16, 32, 32, 128, 4)
    math_fwd = attention_memory(Joint(), shape, "math", "fwd")
    sdpa_fwd = attention_memory(Joint(), shape, "sdpa", "fwd")
    # the math backend holds scores and probabilities: 2 x heads x n^2 fp32
    assert math_fwd - sdpa_fwd > 2 * 4 * 16_384**2 * 4 * 0.99
    assert attention_memory(Joint(), shape, "math", "fwdbwd") > math_fwd
    assert attention_memory(Joint(), shape, "sdpa", "fwdbwd") > sdpa_fwd
    # a chunked backend keeps one cache-sized block in the forward, all probabilities for the backward
    assert attention_memory(Temporal(), shape, "short", "fwd") < attention_memory(Temporal(), shape, "math", "fwd")
    short_bwd = attention_memory(Temporal(), shape, "short", "fwdbwd")
    assert short_bwd > attention_memory(Temporal(), shape, "sdpa", "fwdbwd")
    # an unknown backend is modelled as materializing: the safe side for skipping shapes
    assert attention_memory(Joint(), shape, "my_new_kernel", "fwd") == math_fwd
    # without projections the qkv / output projection buffers are not counted
    assert attention_memory(Spatial(), shape, "sdpa", projections=False) < attention_memory(Spatial(), shape, "sdpa")


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="t must be a positive int"):
        VideoShape(1, 0, 4, 4)
    with pytest.raises(ValueError, match="dim must be divisible by heads"):
        VideoShape(1, 2, 4, 4, dim=10, heads=4)
    with pytest.raises(TypeError, match="pattern must be"):
        attention_pairs("joint", 2, 2, 2)
    with pytest.raises(ValueError, match="mode must be one of"):
        attention_memory(Joint(), VideoShape(1, 2, 2, 2), "sdpa", "train")
    with pytest.raises(TypeError, match="shape must be a VideoShape"):
        layer_cost(Joint(), (1, 2, 2, 2))
    with pytest.raises(ValueError, match="pattern must be one of"):
        make_patterns("axial")
