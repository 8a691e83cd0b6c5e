"""Position encodings for any clip length: sinusoidal tables, rotary, resampled learned tables."""

import math

import pytest
import torch

import spacetime
from spacetime.layers.embeddings import PositionEmbedding, TubeletEmbedding
from spacetime.ops.encodings import apply_rotary, resample_table, rope_cos_sin, rope_grid, rope_split, sinusoidal_table


@pytest.mark.parametrize("n", [1, 8, 100])
def test_sinusoidal_table_matches_the_formula_for_any_length(n):
    dim = 10
    table = sinusoidal_table(n, dim)
    assert table.shape == (n, dim) and torch.isfinite(table).all()
    for p in {0, n - 1, n // 2}:
        for i in range(dim // 2):
            f = 10000.0 ** (-i / (dim // 2))
            assert table[p, i].item() == pytest.approx(math.sin(p * f), abs=1e-5)
            assert table[p, dim // 2 + i].item() == pytest.approx(math.cos(p * f), abs=1e-5)


def test_sinusoidal_table_takes_fractional_positions_and_odd_dims():
    table = sinusoidal_table(torch.tensor([0.0, 0.5, 1.0]), 7)
    assert table.shape == (3, 7)
    assert torch.equal(table[:, -1], torch.zeros(3))  # the odd column is zero
    assert torch.allclose(table[1, :3], torch.tensor([math.sin(0.5), math.sin(0.5 * 10000 ** (-1 / 3)),
                                                      math.sin(0.5 * 10000 ** (-2 / 3))]), atol=1e-6)


@pytest.mark.parametrize("bad", [0, torch.zeros(2, 2)])
def test_sinusoidal_table_rejects_bad_positions(bad):
    with pytest.raises(ValueError, match="positions"):
        sinusoidal_table(bad, 8)


def _scores(q, k):
    return torch.einsum("...d,...d->...", q, k)


@pytest.mark.parametrize("n", [1, 9, 64])
def test_rotary_scores_depend_only_on_the_offset(n):
    """q at position i and k at position j score the same as at i+s and j+s, for any length."""
    d = 16
    q, k = torch.randn(d), torch.randn(d)
    cos, sin = rope_cos_sin(torch.arange(n + 5), d)
    rq = apply_rotary(q.expand(n + 5, d), cos, sin)
    rk = apply_rotary(k.expand(n + 5, d), cos, sin)
    grid = _scores(rq[:, None], rk[None, :])  # (n+5, n+5)
    for s in (1, 5):
        torch.testing.assert_close(grid[s:s + n, s:s + n], grid[:n, :n], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(rq.norm(dim=-1), q.norm().expand(n + 5), atol=1e-5, rtol=1e-5)  # a rotation


def test_rotary_3d_scores_depend_only_on_the_offset_on_each_axis():
    d = 18
    parts = rope_split(d, "thw")
    assert sum(parts) == d and all(p % 2 == 0 for p in parts)
    cos, sin = rope_grid(4, 5, 6, d, "thw")  # (t, h, w, 1, d)
    assert cos.shape == (4, 5, 6, 1, d)
    q, k = torch.randn(d), torch.randn(d)
    rq = apply_rotary(q.expand(4, 5, 6, 1, d), cos, sin, parts)[..., 0, :]
    rk = apply_rotary(k.expand(4, 5, 6, 1, d), cos, sin, parts)[..., 0, :]
    a = _scores(rq[0, 1, 2], rk[1, 3, 0])
    b = _scores(rq[2, 2, 5], rk[3, 4, 3])  # both shifted by (2, 1, 3)
    c = _scores(rq[2, 2, 5], rk[3, 4, 4])  # another offset
    assert a.item() == pytest.approx(b.item(), abs=1e-4)
    assert abs(a.item() - c.item()) > 1e-4


def test_rope_split_errors():
    assert rope_split(64, "thw") == (24, 20, 20) and rope_split(8, "t") == (8,)
    with pytest.raises(ValueError, match="even head_dim"):
        rope_split(7, "t")
    with pytest.raises(ValueError, match="head_dim >= 6"):
        rope_split(4, "thw")
    with pytest.raises(ValueError, match="rope axes"):
        rope_split(8, "hw")


def test_rope_with_spatial_attention_changes_nothing():
    """Every token of a frame is rotated by the same time angle: spatial scores are unchanged."""
    plain = spacetime.SpaceTimeAttention(16, 2, spacetime.Spatial())
    rotary = spacetime.SpaceTimeAttention(16, 2, spacetime.Spatial(), rope="t")
    rotary.load_state_dict(plain.state_dict())
    x = torch.randn(2, 5, 3, 4, 16)
    torch.testing.assert_close(rotary(x), plain(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rope", ["t", "thw"])
@pytest.mark.parametrize("pattern", [spacetime.Temporal(), spacetime.Joint(), spacetime.Window((2, 2, 2), shift=(1, 1, 1)),
                                     spacetime.CrossFrame(1)], ids=repr)
@pytest.mark.parametrize("t", [1, 3, 17])
def test_rope_runs_with_every_pattern_at_any_length(rope, pattern, t):
    layer = spacetime.SpaceTimeAttention(24, 2, pattern, rope=rope)
    x = torch.randn(1, t, 3, 2, 24)
    out = layer(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    with spacetime.use_backend("math"):
        torch.testing.assert_close(layer(x), out, atol=1e-5, rtol=1e-5)


def test_temporal_rope_is_shift_equivariant():
    """With rotary time and temporal attention, the frames of a clip give the same outputs wherever they start."""
    layer = spacetime.SpaceTimeAttention(16, 2, spacetime.Temporal(), rope="t")
    x = torch.randn(1, 6, 2, 2, 16)
    frames = torch.ones(1, 9, dtype=torch.bool)
    frames[:, :3] = False  # the same clip after 3 padded frames
    shifted = torch.cat([torch.zeros(1, 3, 2, 2, 16), x], dim=1)
    torch.testing.assert_close(layer(shifted, frame_mask=frames)[:, 3:], layer(x), atol=1e-5, rtol=1e-5)


def test_rope_bad_values():
    with pytest.raises(ValueError, match="rope must be None or one of"):
        spacetime.SpaceTimeAttention(16, 2, rope="xy")
    with pytest.raises(ValueError, match="even head_dim"):
        spacetime.SpaceTimeAttention(15, 3, rope="t")


def test_resample_table_sizes():
    table = torch.randn(8, 4)
    assert resample_table(table, 8) is table
    for n in (1, 5, 16):
        out = resample_table(table, n)
        assert out.shape == (n, 4) and torch.isfinite(out).all()
    ramp = torch.arange(4.0)[:, None]  # a linear ramp stays a ramp between the end cells
    torch.testing.assert_close(resample_table(ramp, 8)[1:-1, 0], torch.linspace(0.25, 2.75, 6) + 0.0, atol=1e-5, rtol=0)
    assert resample_table(torch.randn(4, 5, 3), (2, 7)).shape == (2, 7, 3)
    with pytest.raises(ValueError, match="cannot be resampled"):
        resample_table(table, (2, 2))


@pytest.mark.parametrize("kind", ["learned", "sinusoidal"])
@pytest.mark.parametrize("t", [1, 8, 32])
def test_time_position_embedding_for_any_length(kind, t):
    emb = PositionEmbedding(16, 8, kind)
    out = emb(t)
    assert out.shape == (t, 16) and torch.isfinite(out).all()
    if kind == "learned" and t == 8:
        assert out is emb.weight
    if kind == "sinusoidal":
        torch.testing.assert_close(out, sinusoidal_table(t, 16))


def test_space_position_embedding_2d():
    emb = PositionEmbedding(8, (4, 4), "sinusoidal")
    out = emb(3, 5)
    assert out.shape == (3, 5, 8)
    torch.testing.assert_close(out[:, 0, :4], sinusoidal_table(3, 4))  # rows in the first half
    torch.testing.assert_close(out[0, :, 4:], sinusoidal_table(5, 4))  # columns in the second
    assert PositionEmbedding(8, (4, 4))(2, 6).shape == (2, 6, 8)
    with pytest.raises(ValueError, match="divisible by 4"):
        PositionEmbedding(6, (4, 4), "sinusoidal")
    with pytest.raises(ValueError, match="kind must be one of"):
        PositionEmbedding(8, 4, "rope")
    with pytest.raises(ValueError, match="expected 2 size"):
        PositionEmbedding(8, (4, 4))(3)


def test_tubelet_embedding_is_a_linear_map_of_each_tube():
    emb = TubeletEmbedding(3, 8, (2, 4, 4), layout="bcthw")
    x = torch.randn(2, 3, 4, 8, 12)
    out = emb(x)
    assert out.shape == (2, 2, 2, 3, 8)
    tube = x[1, :, 2:4, 4:8, 8:12]  # token (1, 1, 2) of sample 1
    want = (emb.proj.weight * tube).sum(dim=(1, 2, 3, 4)) + emb.proj.bias
    torch.testing.assert_close(out[1, 1, 1, 2], want, atol=1e-5, rtol=1e-5)


def test_tubelet_embedding_errors():
    emb = TubeletEmbedding(1, 8, (2, 4, 4))
    with pytest.raises(ValueError, match="shorter than the tubelet"):
        emb(torch.randn(1, 1, 1, 8, 8))
    with pytest.raises(ValueError, match="not a multiple of the tubelet"):
        emb(torch.randn(1, 1, 3, 8, 8))
    with pytest.raises(ValueError, match="expects dim=1"):
        emb(torch.randn(1, 3, 2, 8, 8))
    with pytest.raises(ValueError, match="tubelet must be"):
        TubeletEmbedding(1, 8, (2, 0, 4))


def test_rope_at_equals_the_grid_on_integers_and_depends_on_offsets_only():
    from spacetime.ops.encodings import apply_rotary, rope_at, rope_grid, rope_split

    t, h, w, d = 3, 4, 5, 12
    grid = torch.stack(torch.meshgrid(*(torch.arange(n) for n in (t, h, w)), indexing="ij"), -1)
    for axes in ("t", "thw"):
        cos, sin = rope_at(grid.float(), d, axes)
        ref_cos, ref_sin = rope_grid(t, h, w, d, axes)
        assert torch.allclose(cos, ref_cos) and torch.allclose(sin, ref_sin)
    # moving every token by the same fractional offset leaves every q.k unchanged
    q, k = torch.randn(2, d), torch.randn(2, d)
    pos = torch.tensor([[0.0, 1.25, -2.5], [2.0, 3.5, 0.75]])
    parts = rope_split(d, "thw")

    def scores(p):
        cos, sin = rope_at(p, d, "thw")
        return apply_rotary(q, cos[:, 0], sin[:, 0], parts) @ apply_rotary(k, cos[:, 0], sin[:, 0], parts).T

    assert torch.allclose(scores(pos), scores(pos + torch.tensor([1.0, -0.3, 4.2])), atol=1e-5)
    assert not torch.allclose(scores(pos), scores(pos * torch.tensor([1.0, 1.5, 1.0])), atol=1e-3)
    with pytest.raises(ValueError, match=r"positions must have shape \(..., 3\)"):
        rope_at(torch.zeros(4, 2), d)
