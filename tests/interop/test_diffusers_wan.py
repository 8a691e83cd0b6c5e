"""spacetime's attention inside diffusers' Wan (WanTransformer3DModel) through SpacetimeWanAttnProcessor: the same
outputs as diffusers' WanAttnProcessor (text-to-video, I2V's image tokens, fused projections), pattern swaps of the
self-attention equal to joint attention under the pattern's dense mask, cross-attention untouched, refusals.
Models are scaled down from small configs with random weights; nothing is downloaded. ``-s`` prints the measured
differences that docs/interop-diffusers.md quotes."""

import contextlib

import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanAttention, WanAttnProcessor
from torch import nn

from spacetime.interop.diffusers import SpacetimeAttnProcessor, SpacetimeWanAttnProcessor, set_spacetime_processor
from spacetime.ops import CrossFrame, Joint, Spatial, Temporal, Window, use_backend
from spacetime.ops.encodings import rope_split

#: (backend, tolerance): spacetime's reference backend, and the default dispatch
BACKENDS = [("math", 1e-5), (None, 1e-4)]
#: Wan scaled down: 2 layers, 2 heads of 20 channels (rotary split (8, 6, 6): time takes the rest of 20 // 6)
WAN = {"patch_size": (1, 2, 2), "num_attention_heads": 2, "attention_head_dim": 20, "in_channels": 4,
       "out_channels": 4, "text_dim": 12, "freq_dim": 16, "ffn_dim": 32, "num_layers": 2, "rope_max_seq_len": 32}
#: (config changes, latent (b, c, t, h, w)): 5 frames of 6 x 10 (a 5 x 3 x 5 grid); a temporal patch of 2 over 6
#: frames of 7 x 9 (diffusers' patchify floors: 3 x 3 x 4)
CASES = [({}, (2, 4, 5, 6, 10)), ({"patch_size": (2, 2, 2), "attention_head_dim": 16}, (1, 4, 6, 7, 9))]
#: Wan 2.1's I2V layout: image features through the image embedder, their keys and values through add_k_proj
I2V = {"image_dim": 8, "added_kv_proj_dim": 40}


def randomize(module, std=0.2, seed=0):
    """Random weights everywhere (norms, biases and modulation tables too), so that every tensor matters; eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return module.eval()


def randn(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def close(out, ref, tol, what=""):
    """Max abs difference within ``tol`` times the reference's scale (at least 1); prints it (``pytest -s``)."""
    scale = max(1.0, ref.abs().max().item())
    diff = (out - ref).abs().max().item()
    largest = ref.abs().max().item()
    print(f"\n{what}: max abs difference {diff:.2g}, relative to the largest output {diff / largest:.2g}")
    assert diff <= tol * scale, f"max abs difference {diff:.3g} > {tol:g} x {scale:.3g}"


def run(model, *args, backend=None, **kwargs):
    with torch.no_grad(), use_backend(backend) if backend else contextlib.nullcontext():
        return model(*args, **kwargs).sample


def inputs(latent, text_tokens=7, seed=1):
    return randn(*latent, seed=seed), torch.tensor([3, 700][:latent[0]]), randn(latent[0], text_tokens, 12, seed=2)


def wan(changes=None):
    return randomize(WanTransformer3DModel(**{**WAN, **(changes or {})}))


@pytest.mark.parametrize("backend, tol", BACKENDS)
@pytest.mark.parametrize("fused", [False, True], ids=["separate", "fused"])
@pytest.mark.parametrize("changes, latent", CASES, ids=["t2v", "patch-2-odd"])
def test_processor_matches_diffusers_wan(changes, latent, fused, backend, tol):
    model = wan(changes)
    x, timestep, text = inputs(latent)
    ref = run(model, x, timestep, text)
    if fused:
        model.fuse_qkv_projections()
    model.set_attn_processor(SpacetimeWanAttnProcessor(backend=backend))
    assert all(isinstance(p, SpacetimeWanAttnProcessor) for p in model.attn_processors.values())
    assert len(model.attn_processors) == 4  # self- and cross-attention of 2 blocks
    close(run(model, x, timestep, text), ref, tol, f"wan {changes or 't2v'} fused={fused} backend={backend}")


@pytest.mark.parametrize("backend, tol", BACKENDS)
def test_processor_matches_diffusers_wan_i2v(backend, tol):
    model = wan(I2V)
    x, timestep, text = inputs((2, 4, 3, 4, 6), text_tokens=512)  # diffusers fixes the text at 512 tokens
    image = randn(2, 5, 8, seed=3)
    ref = run(model, x, timestep, text, encoder_hidden_states_image=image)
    model.set_attn_processor(SpacetimeWanAttnProcessor(backend=backend))
    close(run(model, x, timestep, text, encoder_hidden_states_image=image), ref, tol, f"wan i2v backend={backend}")


class DenseWanProcessor(WanAttnProcessor):
    """The test's reference: diffusers' own processor, each self-attention masked by the pattern's dense mask (joint
    attention over the whole (t, h, w) grid); cross-attention as it is."""

    def __init__(self, pattern, grid):
        super().__init__()
        self.pattern, self.grid = pattern, grid

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        if encoder_hidden_states is None:
            attention_mask = self.pattern.dense_mask(*self.grid)  # (n, n), True: may attend
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)


PATTERNS = [Window((2, 2, 3)), Window((2, 2, 2), shift=(1, 1, 1)), CrossFrame(1), Temporal(), Temporal(causal=True),
            Spatial()]


@pytest.mark.parametrize("pattern", PATTERNS, ids=["window", "shifted-window", "cross-frame", "temporal", "causal",
                                                   "spatial"])
@pytest.mark.parametrize("changes, latent", CASES, ids=["t2v", "patch-2-odd"])
def test_pattern_swap_equals_the_patterns_definition(changes, latent, pattern):
    model = wan(changes)
    x, timestep, text = inputs(latent)
    ref = run(model, x, timestep, text)
    processor = SpacetimeWanAttnProcessor(backend="math", pattern=pattern)
    handle = processor.watch(model)
    model.set_attn_processor(processor)
    swapped = run(model, x, timestep, text)
    grid = tuple(n // p for n, p in zip(latent[2:], model.config.patch_size))
    assert processor.grid == grid  # read from the latent and the patch size
    handle.remove()
    model.set_attn_processor(DenseWanProcessor(pattern, grid))
    close(swapped, run(model, x, timestep, text), 1e-5, f"wan swap {pattern} {grid}")
    assert (swapped - ref).abs().max() > 1e-3  # and the swap changed the model


def test_a_joint_swap_is_wans_own_attention():
    model = wan()
    x, timestep, text = inputs(CASES[0][1])
    ref = run(model, x, timestep, text)
    processor = SpacetimeWanAttnProcessor(backend="math", pattern=Joint(), grid=(5, 3, 5))
    model.set_attn_processor(processor)
    close(run(model, x, timestep, text), ref, 1e-5, "wan swap Joint()")


def test_cross_attention_is_never_swapped():
    model = wan()
    attn = model.blocks[0].attn2
    x, context = randn(2, 75, 40), randn(2, 7, 40, seed=2)
    with torch.no_grad():
        ref = WanAttnProcessor()(attn, x, context)
        out = SpacetimeWanAttnProcessor(backend="math", pattern=CrossFrame(0), grid=(5, 3, 5))(attn, x, context)
    close(out, ref, 1e-5, "wan cross-attention under a pattern processor")


@pytest.mark.parametrize("backend", ["math", None])
def test_masks_are_passed_on_as_diffusers_passes_them(backend):
    model = wan()
    attn1, attn2 = model.blocks[1].attn1, model.blocks[1].attn2
    x, context = randn(2, 75, 40), randn(2, 7, 40, seed=2)
    rotary = model.rope(randn(2, 4, 5, 6, 10))
    keep = (randn(75, 75, seed=3) > 0) | torch.eye(75, dtype=torch.bool)  # (n, n) boolean, True: may attend
    text = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])[:, None, None, :]  # (b, 1, 1, m): padded text
    for attn, args in ((attn1, (x, None, keep, rotary)), (attn1, (x, None, randn(2, 1, 75, 75, seed=4), rotary)),
                       (attn2, (x, context, text, None))):
        with torch.no_grad():
            ref = WanAttnProcessor()(attn, *args)
            out = SpacetimeWanAttnProcessor(backend=backend)(attn, *args)
        close(out, ref, 1e-5, f"wan masked {tuple(args[2].shape)} {args[2].dtype}")


def test_set_spacetime_processor_selects_wan_modules():
    model = wan()
    x, timestep, text = inputs(CASES[0][1])
    ref = run(model, x, timestep, text)
    swap = SpacetimeWanAttnProcessor(backend="math", pattern=Window((2, 2, 2)), grid=(5, 3, 5))
    names = set_spacetime_processor(model, swap, select=lambda name, _: name.endswith("attn1"))
    assert names == ["blocks.0.attn1", "blocks.1.attn1"]
    assert isinstance(model.blocks[0].attn2.processor, WanAttnProcessor)  # cross-attention keeps diffusers' processor
    swapped = run(model, x, timestep, text)
    model.set_attn_processor(DenseWanProcessor(Window((2, 2, 2)), (5, 3, 5)))
    close(swapped, run(model, x, timestep, text), 1e-5, "wan swap on attn1 only")
    assert (swapped - ref).abs().max() > 1e-3


def test_wans_rotary_is_spacetimes_interleaved_split():
    model = wan()
    assert rope_split(20, "thw") == (model.rope.t_dim, model.rope.h_dim, model.rope.w_dim) == (8, 6, 6)


def test_processor_refuses_what_it_cannot_serve():
    model = wan()
    attn1, attn2 = model.blocks[0].attn1, model.blocks[0].attn2
    x, context = randn(2, 75, 40), randn(2, 7, 40, seed=2)
    cos, sin = model.rope(randn(2, 4, 5, 6, 10))
    swap = SpacetimeWanAttnProcessor(pattern=CrossFrame(1), grid=(5, 3, 5))
    with pytest.raises(ValueError, match="attention_mask"):
        swap(attn1, x, None, torch.ones(75, 75, dtype=torch.bool), (cos, sin))
    with pytest.raises(ValueError, match=r"grid \(t, h, w\) = \(5, 3, 4\) holds 60 tokens"):
        SpacetimeWanAttnProcessor(pattern=CrossFrame(1), grid=(5, 3, 4))(attn1, x, rotary_emb=(cos, sin))
    with pytest.raises(ValueError, match="grid: a pattern swap needs"):
        SpacetimeWanAttnProcessor(pattern=CrossFrame(1))(attn1, x, rotary_emb=(cos, sin))
    with pytest.raises(ValueError, match=r"rotary_emb must be \(cos, sin\), each \(1, n, 1, d\) = \(1, 75, 1, 20\)"):
        swap(attn1, x, rotary_emb=(cos[:, :60], sin[:, :60]))
    with pytest.raises(ValueError, match="rotary_emb"):
        swap(attn1, x, rotary_emb=cos)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['temb'\]"):
        swap(attn2, x, context, temb=torch.zeros(2, 40))
    i2v = wan(I2V).blocks[0].attn2
    with pytest.raises(ValueError, match="encoder_hidden_states of an I2V cross-attention .* 512 text tokens"):
        SpacetimeWanAttnProcessor()(i2v, x, context)
    parallel = SpacetimeWanAttnProcessor()
    parallel._parallel_config = object()  # what diffusers' enable_parallelism sets on processors
    with pytest.raises(ValueError, match="_parallel_config: diffusers' context parallelism"):
        parallel(attn1, x, rotary_emb=(cos, sin))
    with pytest.raises(TypeError, match="WanAttention; got Linear"):
        SpacetimeWanAttnProcessor()(nn.Linear(2, 2), x)
    with pytest.raises(TypeError, match="pattern"):
        SpacetimeWanAttnProcessor(pattern="window")
    with pytest.raises(ValueError, match="backend"):
        SpacetimeWanAttnProcessor(backend="flash")
    with pytest.raises(ValueError, match="grid must be"):
        SpacetimeWanAttnProcessor(grid=(5, 3))
    with pytest.raises(ValueError, match="batch_limit"):
        SpacetimeWanAttnProcessor(batch_limit=0)
    with pytest.raises(ValueError, match="model.config.patch_size"):
        SpacetimeWanAttnProcessor().watch(nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"Attention \(WanAttention: SpacetimeWanAttnProcessor\)"):
        SpacetimeAttnProcessor()(attn1, x)
    with pytest.raises(ValueError, match="no diffusers WanAttention module"):
        set_spacetime_processor(nn.Linear(2, 2), SpacetimeWanAttnProcessor())
    assert isinstance(attn1, WanAttention)
