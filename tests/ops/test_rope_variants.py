"""Rotary variants: interleaved pairs, V-JEPA 2's tiled-interleaved layout, explicit per-axis widths with an unrotated
rest. Checked against transformers' V-JEPA 2 and diffusers' Wan code run on random input, against hand-written
references, and for the properties a rotation has (scores depend only on offsets, the rest is untouched)."""

import math

import pytest
import torch
from einops import rearrange

import spacetime
from spacetime.ops import CrossFrame, Joint, Spatial, Temporal, Window
from spacetime.ops.encodings import ROPE_PAIRS, apply_rotary, rope_at, rope_cos_sin, rope_grid, rope_split


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def vjepa2_dims(head_dim):
    """V-JEPA 2's rotated channels per axis: 2 * ((head_dim // 3) // 2) each of t, h, w."""
    part = 2 * ((head_dim // 3) // 2)
    return (part, part, part)


def grid_positions(t, h, w):
    return torch.stack(torch.meshgrid(*(torch.arange(n) for n in (t, h, w)), indexing="ij"), -1)  # (t, h, w, 3)


def reference_rotation(x, positions, dims, pairs, base=10000.0):
    """Each rotated channel written out from its angle, in float64: ``x (..., d)``, ``positions (..., 3)``."""
    out, x64, start = x.double().clone(), x.double(), 0
    for axis, p in enumerate(dims):
        for j in range(p):
            if pairs == "halves":  # partner j +- p/2, frequency j mod p/2
                i, partner, sign = j % (p // 2), (j + p // 2) % p, -1.0 if j < p // 2 else 1.0
            else:  # partner j ^ 1; frequency of the pair (interleaved) or of the channel (tiled)
                i = j // 2 if pairs == "interleaved" else j % (p // 2)
                partner, sign = j ^ 1, -1.0 if j % 2 == 0 else 1.0
            angle = positions[..., axis].double() * base ** (-i / (p // 2))
            out[..., start + j] = x64[..., start + j] * angle.cos() + sign * x64[..., start + partner] * angle.sin()
        start += p
    return out


# --- transformers' V-JEPA 2 -----------------------------------------------------------------------------------------


def vjepa2_attention(head_dim, heads=2, grid=4, patch=2, seed=0):
    from transformers import VJEPA2Config
    from transformers.models.vjepa2.modeling_vjepa2 import VJEPA2RopeAttention

    config = VJEPA2Config(hidden_size=heads * head_dim, num_attention_heads=heads, crop_size=grid * patch,
                          patch_size=patch, frames_per_clip=8, tubelet_size=2)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return VJEPA2RopeAttention(config, heads * head_dim, heads).eval()


@pytest.mark.parametrize("head_dim", [16, 20, 24, 64])  # rests of 4, 2, 0, 4 channels
def test_interleaved_tiled_equals_vjepa2s_rotation(head_dim):
    attn = vjepa2_attention(head_dim)
    t, g = 3, 4  # V-JEPA 2's grid is square (crop_size // patch_size); 3 frames
    x = randn(2, 2, t * g * g, head_dim)  # (b, heads, (t h w), d)
    ids = attn.get_position_ids(torch.zeros(2, t * g * g, 2 * head_dim))
    theirs = attn.apply_rotary_embeddings(x, ids)
    dims = vjepa2_dims(head_dim)
    cos, sin = rope_grid(t, g, g, head_dim, "thw", dims=dims, pairs="interleaved_tiled")  # (t, h, w, 1, r)
    grid = rearrange(x, "b heads (t h w) d -> b t h w heads d", t=t, h=g)
    ours = apply_rotary(grid, cos, sin, rope_split(head_dim, "thw", dims), pairs="interleaved_tiled")
    torch.testing.assert_close(rearrange(ours, "b t h w heads d -> b heads (t h w) d"), theirs, atol=1e-6, rtol=0)
    ref = reference_rotation(grid, grid_positions(t, g, g)[:, :, :, None], dims, "interleaved_tiled")
    torch.testing.assert_close(ours.double(), ref, atol=1e-6, rtol=0)


def test_interleaved_tiled_equals_vjepa2_at_masked_token_positions():
    """V-JEPA 2's ``position_mask`` keeps some tokens: their positions are their (t, h, w) on the full grid."""
    head_dim, t, g = 20, 5, 4
    attn = vjepa2_attention(head_dim)
    keep = torch.stack([torch.randperm(t * g * g, generator=torch.Generator().manual_seed(s))[:17].sort().values
                        for s in range(2)])  # (b, kept) token indices
    x = randn(2, 2, 17, head_dim)
    theirs = attn.apply_rotary_embeddings(x, attn.get_position_ids(x, masks=keep))
    positions = grid_positions(t, g, g).reshape(-1, 3)[keep]  # (b, kept, 3)
    cos, sin = rope_at(positions.float(), head_dim, "thw", dims=vjepa2_dims(head_dim), pairs="interleaved_tiled")
    ours = apply_rotary(x.transpose(1, 2), cos, sin, vjepa2_dims(head_dim), pairs="interleaved_tiled").transpose(1, 2)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


@pytest.mark.parametrize("head_dim", [16, 24])
def test_spacetime_attention_equals_vjepa2s_rope_attention(head_dim):
    attn = vjepa2_attention(head_dim, seed=1)
    t, g, heads = 3, 4, 2
    ours = spacetime.SpaceTimeAttention(heads * head_dim, heads, Joint(), rope="thw", rope_pairs="interleaved_tiled",
                                        rope_dims=vjepa2_dims(head_dim), backend="math").eval()
    with torch.no_grad():
        ours.qkv.weight.copy_(torch.cat([attn.query.weight, attn.key.weight, attn.value.weight]))
        ours.qkv.bias.copy_(torch.cat([attn.query.bias, attn.key.bias, attn.value.bias]))
        ours.proj.load_state_dict(attn.proj.state_dict())
    tokens = randn(2, t * g * g, heads * head_dim, seed=2)
    with torch.no_grad():
        theirs = attn(tokens)[0]
        out = ours(rearrange(tokens, "b (t h w) c -> b t h w c", t=t, h=g))
    torch.testing.assert_close(rearrange(out, "b t h w c -> b (t h w) c"), theirs, atol=1e-5, rtol=0)


# --- diffusers' Wan -------------------------------------------------------------------------------------------------


def wan_rotation(x, cos, sin, monkeypatch):
    """Queries and keys ``x`` ``(b, n, heads, d)`` as diffusers' ``WanAttnProcessor`` rotates them (projections and
    norms taken out; the attention call captured)."""
    from diffusers.models.transformers import transformer_wan
    from torch import nn

    b, n, heads, d = x.shape
    attn = transformer_wan.WanAttention(heads * d, heads, d)
    attn.to_q = attn.to_k = attn.norm_q = attn.norm_k = nn.Identity()
    seen = {}

    def capture(query, key, value, **kwargs):
        seen.update(query=query, key=key)
        return value

    monkeypatch.setattr(transformer_wan, "dispatch_attention_fn", capture)
    transformer_wan.WanAttnProcessor()(attn, x.flatten(2), None, None, (cos, sin))
    assert torch.equal(seen["query"], seen["key"])
    return seen["query"]


@pytest.mark.parametrize("head_dim, patch, latent", [(16, (1, 2, 2), (5, 6, 10)), (20, (1, 2, 2), (3, 7, 9)),
                                                     (22, (2, 1, 2), (4, 3, 6))])
def test_interleaved_equals_wans_rotation(head_dim, patch, latent, monkeypatch):
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    rope = WanRotaryPosEmbed(head_dim, patch, max_seq_len=32)
    cos, sin = rope(torch.zeros(1, 4, *latent))  # (1, (t h w), 1, d)
    t, h, w = (n // p for n, p in zip(latent, patch))  # diffusers' patchify floors
    ours_cos, ours_sin = rope_grid(t, h, w, head_dim, "thw", pairs="interleaved")  # (t, h, w, 1, d)
    torch.testing.assert_close(ours_cos.reshape(1, -1, 1, head_dim), cos, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours_sin.reshape(1, -1, 1, head_dim), sin, atol=1e-6, rtol=0)
    assert rope_split(head_dim, "thw") == (rope.t_dim, rope.h_dim, rope.w_dim)  # Wan's split is spacetime's default
    x = randn(2, t * h * w, 3, head_dim)
    theirs = wan_rotation(x, cos, sin, monkeypatch)
    grid = rearrange(x, "b (t h w) heads d -> b t h w heads d", t=t, h=h)
    ours = apply_rotary(grid, ours_cos, ours_sin, rope_split(head_dim, "thw"), pairs="interleaved")
    torch.testing.assert_close(rearrange(ours, "b t h w heads d -> b (t h w) heads d"), theirs, atol=1e-6, rtol=0)
    given = apply_rotary(x, cos, sin, pairs="interleaved")  # diffusers' own tables: the same arithmetic, bit for bit
    assert torch.equal(given, theirs)


# --- spacetime's layer against a hand-written reference -------------------------------------------------------------


def dense_reference(layer, x, pattern, positions, dims, pairs):
    """Joint attention under ``pattern.dense_mask``, q and k rotated channel by channel (float64)."""
    b, t, h, w, _ = x.shape
    q, k, v = layer.qkv(x).unflatten(-1, (3, layer.num_heads, layer.head_dim)).unbind(-3)  # (b, t, h, w, heads, d)
    q, k = (reference_rotation(z, positions[..., None, :], dims, pairs) for z in (q, k))
    q, k, v = (rearrange(z.double(), "b t h w heads d -> b heads (t h w) d") for z in (q, k, v))
    scores = (q @ k.transpose(-1, -2) * layer.head_dim ** -0.5).masked_fill(~pattern.dense_mask(t, h, w), -math.inf)
    out = rearrange(scores.softmax(-1) @ v, "b heads (t h w) d -> b t h w (heads d)", t=t, h=h)
    return layer.proj(out.float())


PATTERNS = [Joint(), Window((2, 2, 3)), Window((2, 2, 2), shift=(1, 1, 1)), CrossFrame(1), Temporal(causal=True),
            Spatial()]


@pytest.mark.parametrize("pairs, dims", [("interleaved", None), ("interleaved", (4, 2, 4)),
                                         ("interleaved_tiled", (4, 4, 4)), ("halves", (6, 0, 4))])
@pytest.mark.parametrize("pattern", PATTERNS, ids=["joint", "window", "shifted", "cross-frame", "causal", "spatial"])
@pytest.mark.parametrize("moved", [False, True], ids=["grid", "positions"])
def test_layer_with_rope_options_equals_a_hand_written_reference(pattern, pairs, dims, moved):
    head_dim = 14  # default split (6, 4, 4); the explicit ones leave 4 or 2 channels unrotated
    layer = spacetime.SpaceTimeAttention(2 * head_dim, 2, pattern, rope="thw", rope_pairs=pairs, rope_dims=dims,
                                         backend="math").eval()
    x = randn(2, 3, 3, 5, 2 * head_dim, seed=1)  # (b, t, h, w, c): 3 frames, 3 x 5 pixels
    positions = grid_positions(3, 3, 5).float().expand(2, 3, 3, 5, 3)
    if moved:  # fractional positions, per clip: a camera's shift
        positions = positions + randn(2, 3, 1, 1, 3, seed=2)
    with torch.no_grad():
        out = layer.forward_channels_last(x, positions=positions if moved else None)
        ref = dense_reference(layer, x, pattern, positions, dims or rope_split(head_dim, "thw"), pairs)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_time_only_rope_with_a_rest_equals_the_reference():
    layer = spacetime.SpaceTimeAttention(24, 2, Temporal(), rope="t", rope_pairs="interleaved", rope_dims=(8,),
                                         backend="math").eval()
    x = randn(2, 6, 2, 3, 24)
    positions = grid_positions(6, 2, 3).float().expand(2, 6, 2, 3, 3)
    with torch.no_grad():
        ref = dense_reference(layer, x, Temporal(), positions, (8, 0, 0), "interleaved")
        torch.testing.assert_close(layer(x), ref, atol=1e-5, rtol=0)


def test_layer_math_equals_sdpa_and_every_parameter_gets_a_gradient():
    layer = spacetime.SpaceTimeAttention(24, 2, Window((2, 2, 2)), rope="thw", rope_pairs="interleaved",
                                         rope_dims=(4, 4, 2), qk_norm=True)
    x = randn(2, 3, 4, 5, 24)
    out = layer(x)
    layer.backend = "math"
    torch.testing.assert_close(out, layer(x), atol=1e-5, rtol=1e-5)
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())


# --- properties -----------------------------------------------------------------------------------------------------


def _rotated(x, positions, dims, pairs, head_dim):
    cos, sin = rope_at(positions, head_dim, "thw", dims=dims, pairs=pairs)  # (n, 1, r)
    return apply_rotary(x, cos[:, 0], sin[:, 0], rope_split(head_dim, "thw", dims), pairs=pairs)


@pytest.mark.parametrize("dims", [None, (4, 4, 4), (0, 6, 2)])
def test_interleaved_scores_depend_only_on_offsets(dims):
    d = 16
    q, k = randn(6, d), randn(6, d, seed=1)
    pos = randn(6, 3, seed=2) * 4  # fractional positions on each axis

    def scores(p):
        return _rotated(q, p, dims, "interleaved", d) @ _rotated(k, p, dims, "interleaved", d).T

    torch.testing.assert_close(scores(pos), scores(pos + torch.tensor([3.0, -1.5, 7.25])), atol=1e-4, rtol=0)
    assert not torch.allclose(scores(pos), scores(pos * torch.tensor([1.5, 1.5, 1.5])), atol=1e-3)
    torch.testing.assert_close(_rotated(q, pos, dims, "interleaved", d).norm(dim=-1), q.norm(dim=-1))  # a rotation
    cos, sin = rope_cos_sin(torch.arange(40), 8, pairs="interleaved")  # 1-D: the whole head
    rq = apply_rotary(q[0, :8].expand(40, 8), cos, sin, pairs="interleaved")
    rk = apply_rotary(k[0, :8].expand(40, 8), cos, sin, pairs="interleaved")
    grid = rq @ rk.T
    torch.testing.assert_close(grid[7:27, 7:27], grid[:20, :20], atol=1e-4, rtol=0)


def test_interleaved_tiled_is_not_a_rotation():
    """What the docs say of V-JEPA 2's layout: norms change, and shifting both tokens changes their score."""
    d = 16
    q, k = randn(4, d), randn(4, d, seed=1)
    pos = randn(4, 3, seed=2) * 4
    dims = (4, 4, 4)
    rotated = _rotated(q, pos, dims, "interleaved_tiled", d)
    assert (rotated.norm(dim=-1) - q.norm(dim=-1)).abs().max() > 1e-2
    a = rotated @ _rotated(k, pos, dims, "interleaved_tiled", d).T
    shift = pos + torch.tensor([3.0, 1.0, 2.0])
    b = _rotated(q, shift, dims, "interleaved_tiled", d) @ _rotated(k, shift, dims, "interleaved_tiled", d).T
    assert (a - b).abs().max() > 1e-2


@pytest.mark.parametrize("pairs", ROPE_PAIRS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_rest_of_the_head_is_untouched(pairs, dtype):
    d, dims = 22, (6, 4, 4)  # 8 channels unrotated
    x = randn(2, 3, 4, 5, 2, d).to(dtype)
    cos, sin = rope_grid(3, 4, 5, d, "thw", dims=dims, pairs=pairs)
    assert cos.shape == (3, 4, 5, 1, 14)
    out = apply_rotary(x, cos, sin, dims, pairs=pairs)
    assert out.dtype == dtype and torch.equal(out[..., 14:], x[..., 14:])
    assert not torch.allclose(out[..., :14].float(), x[..., :14].float())
    layer = spacetime.SpaceTimeAttention(2 * d, 2, Joint(), rope="thw", rope_pairs=pairs, rope_dims=dims)
    q, k = x.float(), x.float() * 2
    rq, rk = layer._rotate(q, k, None)
    assert torch.equal(rq[..., 14:], q[..., 14:]) and torch.equal(rk[..., 14:], k[..., 14:])


def test_an_axis_left_out_changes_nothing_along_it():
    """dims (0, dh, dw): no time rotation, so temporal attention (one pixel's frames) is the unrotated one."""
    plain = spacetime.SpaceTimeAttention(24, 2, Temporal(), backend="math")
    rotary = spacetime.SpaceTimeAttention(24, 2, Temporal(), rope="thw", rope_pairs="interleaved", rope_dims=(0, 6, 4),
                                          backend="math")
    rotary.load_state_dict(plain.state_dict())
    x = randn(2, 5, 3, 4, 24)
    torch.testing.assert_close(rotary(x), plain(x), atol=1e-5, rtol=1e-5)


def test_defaults_are_todays_rope():
    layer = spacetime.SpaceTimeAttention(24, 2, Joint(), rope="thw")
    assert layer.rope_pairs == "halves" and layer.rope_dims is None and layer.rope_parts == rope_split(12, "thw")
    explicit = spacetime.SpaceTimeAttention(24, 2, Joint(), rope="thw", rope_pairs="halves", rope_dims=(4, 4, 4))
    explicit.load_state_dict(layer.state_dict())
    x = randn(1, 2, 3, 4, 24)
    assert torch.equal(explicit(x), layer(x))  # (4, 4, 4) is the default split of 12
    assert "rope_pairs" not in repr(layer)
    layer = spacetime.SpaceTimeAttention(24, 2, Joint(), rope="thw", rope_pairs="interleaved", rope_dims=(4, 2, 2))
    assert "rope='thw', rope_pairs='interleaved', rope_dims=(4, 2, 2)" in repr(layer)


# --- errors ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    ({"rope": "thw", "rope_pairs": "pairs"}, "rope_pairs must be one of"),
    ({"rope": "thw", "rope_dims": (4, 4)}, r"rope_dims must be None or 3 even int\(s\) >= 0, one per axis of 'thw'"),
    ({"rope": "t", "rope_dims": (4, 4, 4)}, r"rope_dims must be None or 1 even int\(s\)"),
    ({"rope": "thw", "rope_dims": (4, 3, 4)}, "rope_dims must be"),
    ({"rope": "thw", "rope_dims": (4, -2, 4)}, "rope_dims must be"),
    ({"rope": "thw", "rope_dims": 4}, "rope_dims must be"),
    ({"rope": "thw", "rope_dims": (8, 4, 2)}, r"rope_dims \(8, 4, 2\) must rotate 2 to head_dim=12 channels"),
    ({"rope": "thw", "rope_dims": (0, 0, 0)}, "rope_dims .* must rotate 2 to head_dim=12"),
    ({"rope_dims": (4, 4, 4)}, "rope_dims and rope_pairs .* rope='t' or rope='thw'"),
    ({"rope_pairs": "interleaved"}, "rope_pairs='interleaved'"),
])
def test_layer_errors_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        spacetime.SpaceTimeAttention(24, 2, Joint(), **kwargs)


def test_op_errors_name_the_argument():
    with pytest.raises(ValueError, match="pairs must be one of"):
        rope_cos_sin(torch.arange(3), 8, pairs="rotate")
    with pytest.raises(ValueError, match="dims must be"):
        rope_split(12, "thw", (4, 4))
    with pytest.raises(ValueError, match="dims must be"):
        rope_grid(2, 2, 2, 12, "thw", dims=(4, 4, 5))
    with pytest.raises(ValueError, match="rope axes"):
        rope_split(12, "hw", (4, 4))
    cos, sin = rope_cos_sin(torch.arange(3), 8)
    with pytest.raises(ValueError, match="pairs must be one of"):
        apply_rotary(torch.zeros(3, 8), cos, sin, pairs="rotate")
    with pytest.raises(ValueError, match=r"at most the last axis of x \(6\)"):
        apply_rotary(torch.zeros(3, 6), cos, sin)
    with pytest.raises(ValueError, match=r"rotary parts \(4, 2\) .* cos/sin width 8"):
        apply_rotary(torch.zeros(3, 8), cos, sin, (4, 2))
    with pytest.raises(ValueError, match="each even"):
        apply_rotary(torch.zeros(3, 8), cos, sin, (3, 5))
