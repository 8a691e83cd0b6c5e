import itertools

import pytest
import torch
from einops import rearrange

from spacetime.ops import CrossFrame, Joint, Spatial, Temporal, Window, attention

PATTERNS = [
    Spatial(),
    Temporal(),
    Temporal(causal=True),
    Temporal(window=1),
    Temporal(causal=True, window=2),
    Joint(),
    Window((2, 3, 3)),
    Window((2, 2, 3), shift=(1, 1, 2)),
    Window((3, 4, 4), shift=(1, 2, 2)),
    Window((8, 8, 8)),
    CrossFrame(0),
    CrossFrame(1),
    CrossFrame(2),
]
# (b, t, h, w, heads, d): T=1, prime sizes, sizes windows do not divide, one head, batch 1
GRIDS = [(1, 1, 5, 7, 1, 8), (2, 5, 7, 3, 2, 4), (1, 3, 2, 5, 3, 16), (2, 4, 6, 6, 1, 8)]


def grid(b, t, h, w, heads, d, requires_grad=False):
    return [torch.randn(b, t, h, w, heads, d, requires_grad=requires_grad) for _ in range(3)]


def dense_reference(pattern, q, k, v):
    """Joint attention under the pattern's dense who-sees-whom mask, in fp32 explicit softmax."""
    b, t, h, w = q.shape[:4]
    seq = lambda x: rearrange(x, "b t h w heads d -> b heads (t h w) d")  # noqa: E731
    out = attention(seq(q), seq(k), seq(v), mask=pattern.dense_mask(t, h, w), backend="math")
    return rearrange(out, "b heads (t h w) d -> b t h w heads d", t=t, h=h)


@pytest.mark.parametrize("pattern", PATTERNS, ids=repr)
@pytest.mark.parametrize("shape", GRIDS, ids=str)
def test_pattern_equals_its_dense_definition_on_both_backends(pattern, shape):
    q, k, v = grid(*shape)
    want = dense_reference(pattern, q, k, v)
    for backend in ("math", "sdpa"):
        torch.testing.assert_close(pattern(q, k, v, backend=backend), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pattern", PATTERNS, ids=repr)
@pytest.mark.parametrize("shape", GRIDS[1:], ids=str)
def test_sdpa_equals_math_gradients(pattern, shape):
    results = []
    upstream = torch.randn(*shape)
    for backend in ("math", "sdpa"):
        torch.manual_seed(3)
        q, k, v = grid(*shape, requires_grad=True)
        out = pattern(q, k, v, backend=backend)
        out.backward(upstream)
        results.append((out, q.grad, k.grad, v.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def perturbed_output(pattern, index):
    """Outputs before and after changing the value/key/query tokens at ``index`` (t, h, w)."""
    q, k, v = grid(2, 6, 5, 5, 2, 8)
    before = pattern(q, k, v)
    q2, k2, v2 = (x.clone() for x in (q, k, v))
    for x in (q2, k2, v2):
        x[:, index[0], index[1], index[2]] += torch.randn_like(x[:, index[0], index[1], index[2]])
    after = pattern(q2, k2, v2)
    return (after - before).abs().amax(dim=(0, 4, 5))  # (t, h, w) change map


def test_spatial_never_mixes_frames():
    changed = perturbed_output(Spatial(), (3, 2, 2))
    assert changed[3].amax() > 1e-3
    assert changed[[0, 1, 2, 4, 5]].amax() == 0


def test_temporal_never_mixes_pixels():
    changed = perturbed_output(Temporal(), (1, 2, 3))
    assert changed[:, 2, 3].amax() > 1e-3
    changed[:, 2, 3] = 0
    assert changed.amax() == 0


def test_causal_ignores_later_frames():
    changed = perturbed_output(Temporal(causal=True), (4, 1, 1))
    assert changed[:4].amax() == 0 and changed[4:, 1, 1].amin() > 1e-4


def test_local_window_ignores_frames_beyond_k():
    changed = perturbed_output(Temporal(window=1), (3, 0, 0))[:, 0, 0]
    assert changed[[0, 1, 5]].amax() == 0 and changed[2:5].amin() > 1e-4


def test_cross_frame_reaches_exactly_k_neighbours():
    changed = perturbed_output(CrossFrame(1), (3, 0, 0))
    assert changed[[0, 1, 5]].amax() == 0 and changed[2:5].amin() > 1e-5


def test_window_never_sees_its_neighbour():
    changed = perturbed_output(Window((2, 3, 3)), (1, 1, 1))  # inside tube t 0-1, h 0-2, w 0-2
    assert changed[:2, :3, :3].amin() > 1e-6
    changed[:2, :3, :3] = 0
    assert changed.amax() == 0


def test_shifted_window_never_joins_opposite_edges():
    # With a shift the last tube of the rolled grid holds both clip edges: they must stay apart.
    changed = perturbed_output(Window((2, 4, 4), shift=(1, 2, 2)), (0, 0, 0))
    assert changed[0, 0, 0] > 0
    assert changed[:, 3:, :].amax() == 0 and changed[:, :, 3:].amax() == 0 and changed[5].amax() == 0


@pytest.mark.parametrize("window", [(5, 7, 3), (9, 9, 9)])
def test_window_covering_the_whole_clip_equals_joint(window):
    q, k, v = grid(2, 5, 7, 3, 2, 8)
    torch.testing.assert_close(Window(window)(q, k, v), Joint()(q, k, v), atol=1e-6, rtol=1e-6)


def test_padded_window_sees_exactly_the_real_tokens_of_its_tube():
    b, t, h, w, heads, d = 2, 5, 7, 4, 2, 8
    size = (2, 3, 3)
    q, k, v = grid(b, t, h, w, heads, d)
    out = Window(size)(q, k, v)
    for t0, h0, w0 in itertools.product(range(0, t, 2), range(0, h, 3), range(0, w, 3)):
        sl = (slice(None), slice(t0, t0 + 2), slice(h0, h0 + 3), slice(w0, w0 + 3))
        tube = lambda x: rearrange(x[sl], "b t h w heads d -> b heads (t h w) d")  # noqa: E731
        real_only = attention(tube(q), tube(k), tube(v), backend="math")
        got = tube(out)
        torch.testing.assert_close(got, real_only, atol=1e-5, rtol=1e-5)


def test_window_clips_to_short_axes_and_drops_their_shift():
    size, shift = Window((4, 4, 4), shift=(2, 2, 2)).effective(3, 8, 4)
    assert size == (3, 4, 4) and shift == (0, 2, 0)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Window((0, 7, 7)), "window_size"),
        (lambda: Window((2, 7)), "window_size"),
        (lambda: Window((2, 4, 4), shift=(2, 0, 0)), "shift"),
        (lambda: Window((2, 4, 4), shift=(0, -1, 0)), "shift"),
        (lambda: Temporal(window=-1), "window"),
        (lambda: CrossFrame(-2), "window must be an int >= 0"),
    ],
)
def test_bad_pattern_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_grid_shape_errors():
    q = torch.randn(1, 2, 3, 3, 2, 4)
    with pytest.raises(ValueError, match=r"\(b, t, h, w, heads, d\)"):
        Spatial()(q[0], q[0], q[0])
    with pytest.raises(ValueError, match="share"):
        Spatial()(q, q[:, :1], q)
