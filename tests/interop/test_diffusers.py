"""diffusers' motion modules converted to spacetime (same outputs, gradients, weights back, errors), and spacetime's
attention inside diffusers' models through SpacetimeAttnProcessor (same outputs, masks, batch split, pattern swaps).
Every reference is a diffusers model built from a small config with random weights; nothing is downloaded."""

import contextlib
import json

import pytest
import torch
from diffusers import (
    LatteTransformer3DModel,
    MotionAdapter,
    Transformer2DModel,
    TransformerTemporalModel,
    UNetMotionModel,
)
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.transformers.transformer_temporal import TransformerSpatioTemporalModel
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from einops import rearrange
from safetensors.torch import load_file
from torch import nn

from spacetime.interop.diffusers import (
    DiffusersMotionAdapter,
    DiffusersMotionModule,
    SpacetimeAttnProcessor,
    from_diffusers,
    set_spacetime_processor,
    to_diffusers_state_dict,
)
from spacetime.ops import CrossFrame, Joint, Temporal, Window, use_backend

#: (backend, tolerance): spacetime's reference backend, and the default dispatch
BACKENDS = [("math", 1e-5), (None, 1e-4)]
ADAPTER = {"block_out_channels": (16, 24), "motion_layers_per_block": 1, "motion_transformer_layers_per_block": (1, 2),
           "motion_num_attention_heads": 2, "motion_norm_num_groups": 8, "motion_max_seq_length": 12}
#: AnimateDiff adapters scaled down: the v1/v2 layout, and one without a mid block, with an input convolution
ADAPTERS = [ADAPTER, {**ADAPTER, "motion_layers_per_block": (1, 2), "use_motion_mid_block": False,
                      "conv_in_channels": 4, "motion_max_seq_length": 8}]
TEMPORAL = {"num_attention_heads": 2, "attention_head_dim": 8, "in_channels": 24, "norm_num_groups": 8, "num_layers": 2}
#: TransformerTemporalModel's options (inner width 16 != 24 channels): its defaults, one attention with biases, frame
#: positions, and every activation spacetime has
TEMPORALS = [{}, {"double_self_attention": False, "activation_fn": "gelu", "attention_bias": True},
             {"positional_embeddings": "sinusoidal", "num_positional_embeddings": 9,
              "activation_fn": "gelu-approximate"},
             {"activation_fn": "geglu-approximate", "num_layers": 1}, {"activation_fn": "linear-silu"}]
UNET = {"block_out_channels": (16, 32), "layers_per_block": 1, "norm_num_groups": 8, "cross_attention_dim": 8,
        "num_attention_heads": 2, "motion_num_attention_heads": 2, "motion_max_seq_length": 8,
        "down_block_types": ("CrossAttnDownBlockMotion", "DownBlockMotion"),
        "up_block_types": ("UpBlockMotion", "CrossAttnUpBlockMotion")}


def randomize(module, std=0.2, seed=0):
    """Random weights everywhere (norms and biases too), so that every tensor matters; eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return module.eval()


def randn(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def close(out, ref, tol):
    """Max abs difference within ``tol`` times the reference's scale (at least 1)."""
    scale = max(1.0, ref.abs().max().item())
    diff = (out - ref).abs().max().item()
    assert diff <= tol * scale, f"max abs difference {diff:.3g} > {tol:g} x {scale:.3g}"


def run(module, *args, backend=None, **kwargs):
    """``module(*args, **kwargs)`` without gradients, with ``backend`` as the default when given."""
    with torch.no_grad(), use_backend(backend) if backend else contextlib.nullcontext():
        return module(*args, **kwargs)


# --- diffusers -> spacetime -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend, tol", BACKENDS)
@pytest.mark.parametrize("config", ADAPTERS, ids=["v1-layout", "no-mid-conv-in"])
def test_motion_adapter_modules_match_diffusers(config, backend, tol):
    adapter = randomize(MotionAdapter(**config))
    converted = from_diffusers(adapter)
    assert isinstance(converted, DiffusersMotionAdapter)
    assert (converted.mid_block is None) == (adapter.mid_block is None)
    theirs = {n: m for n, m in adapter.named_modules() if isinstance(m, AnimateDiffTransformer3D)}
    ours = {n: m for n, m in converted.named_modules() if isinstance(m, DiffusersMotionModule)}
    assert list(ours) == list(theirs)  # the adapter's nesting, in its order
    for i, (name, original) in enumerate(theirs.items()):
        frames = (5, 7)[i % 2]  # not powers of two; batch 2; a non-square latent
        x = randn(2 * frames, original.in_channels, 3, 5, seed=i)
        close(run(ours[name], x, num_frames=frames, backend=backend), run(original, x, num_frames=frames), tol)


@pytest.mark.parametrize("backend, tol", BACKENDS)
@pytest.mark.parametrize("options", TEMPORALS, ids=["defaults", "single-attn-bias-gelu", "positions-gelu-tanh",
                                                    "quick-gelu", "silu"])
def test_transformer_temporal_model_matches_diffusers(options, backend, tol):
    model = randomize(TransformerTemporalModel(**{**TEMPORAL, **options}))
    converted = from_diffusers(model)
    x = randn(3 * 6, 24, 4, 5)
    close(run(converted, x, num_frames=6, backend=backend).sample, run(model, x, num_frames=6).sample, tol)
    close(run(converted, x, num_frames=6, return_dict=False)[0], run(model, x, num_frames=6, return_dict=False)[0], tol)


def test_gradients_match_diffusers():
    original = randomize(AnimateDiffTransformer3D(num_attention_heads=2, attention_head_dim=8, in_channels=16,
                                                  norm_num_groups=4, num_layers=2, attention_bias=True,
                                                  positional_embeddings="sinusoidal", num_positional_embeddings=8))
    converted = from_diffusers(original)
    x = randn(2 * 5, 16, 3, 4)
    weights = randn(2 * 5, 16, 3, 4, seed=2)
    grads = []
    for module in (original, converted):
        xi = x.clone().requires_grad_(True)
        with use_backend("math"):
            (module(xi, num_frames=5) * weights).sum().backward()
        grads.append(xi.grad)
    close(grads[1], grads[0], 1e-5)
    ours = to_diffusers_state_dict(converted, gradients=True)
    theirs = {n: p.grad for n, p in original.named_parameters()}
    assert set(ours) == set(theirs)
    largest = max(g.abs().max() for g in theirs.values())
    for name, ref in theirs.items():  # a key bias shifts every score of a query alike: its true gradient is zero
        scale = largest if ".to_k.bias" in name else ref.abs().max()
        assert (ours[name] - ref).abs().max() <= 1e-5 * scale, name


@pytest.mark.parametrize("make", [lambda: MotionAdapter(**ADAPTERS[1]),
                                  lambda: TransformerTemporalModel(**TEMPORAL, **TEMPORALS[2])],
                         ids=["adapter", "temporal"])
def test_state_dict_round_trips_exactly(make):
    original = randomize(make())
    back = to_diffusers_state_dict(from_diffusers(original))
    state = original.state_dict()
    assert set(back) == set(state)
    assert all(torch.equal(back[k], state[k]) for k in state)
    fresh = make()
    fresh.load_state_dict(back, strict=True)  # diffusers takes it back as it is


@pytest.mark.parametrize("make, frames", [(lambda: MotionAdapter(**ADAPTER), 5),
                                          (lambda: TransformerTemporalModel(**TEMPORAL, **TEMPORALS[2]), 7)],
                         ids=["adapter", "temporal"])
def test_converts_a_downloaded_checkpoint(tmp_path, make, frames):
    original = randomize(make())
    original.save_pretrained(tmp_path)  # what the hub serves: config.json and safetensors weights
    config = json.loads((tmp_path / "config.json").read_text())
    converted = from_diffusers(load_file(tmp_path / "diffusion_pytorch_model.safetensors"), config)
    module = converted.down_blocks[0].motion_modules[0] if isinstance(converted, DiffusersMotionAdapter) else converted
    reference = original.down_blocks[0].motion_modules[0] if isinstance(original, MotionAdapter) else original
    x = randn(2 * frames, reference.in_channels, 3, 5)
    out, ref = run(module, x, num_frames=frames, backend="math"), run(reference, x, num_frames=frames)
    close(getattr(out, "sample", out), getattr(ref, "sample", ref), 1e-5)
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in to_diffusers_state_dict(converted).items())


def test_converts_a_lone_motion_module_from_its_keywords():
    options = {"num_attention_heads": 2, "attention_head_dim": 6, "in_channels": 12, "norm_num_groups": 4,
               "positional_embeddings": "sinusoidal", "num_positional_embeddings": 6}
    original = randomize(AnimateDiffTransformer3D(**options))
    converted = from_diffusers(original.state_dict(), {"_class_name": "AnimateDiffTransformer3D", **options})
    x = randn(3 * 6, 12, 2, 3)
    close(run(converted, x, num_frames=6, backend="math"), run(original, x, num_frames=6), 1e-5)


def test_converted_modules_drop_into_a_unet_motion_model():
    unet = randomize(UNetMotionModel(**UNET))
    x, text = randn(2, 4, 5, 6, 10), randn(2 * 5, 3, 8, seed=2)
    ref = run(unet, x, 3, text).sample
    for name, module in list(unet.named_modules()):
        if isinstance(module, AnimateDiffTransformer3D):
            parent, index = name.rsplit(".", 1)
            unet.get_submodule(parent)[int(index)] = from_diffusers(module)
    assert not any(isinstance(m, AnimateDiffTransformer3D) for m in unet.modules())
    close(run(unet, x, 3, text, backend="math").sample, ref, 1e-5)


@pytest.mark.parametrize("option, changes", [
    ("cross_attention_dim", {"cross_attention_dim": 8}), ("dropout", {"dropout": 0.1}),
    ("activation_fn", {"activation_fn": "swiglu"}), ("norm_elementwise_affine", {"norm_elementwise_affine": False}),
    ("positional_embeddings", {"positional_embeddings": "rotary", "num_positional_embeddings": 8}),
])
def test_unsupported_options_are_refused(option, changes):
    with pytest.raises(ValueError, match=option):
        from_diffusers(TransformerTemporalModel(**TEMPORAL, **changes))
    config = {"_class_name": "TransformerTemporalModel", **TEMPORAL, **changes}
    with pytest.raises(ValueError, match=option):
        from_diffusers(TransformerTemporalModel(**TEMPORAL).state_dict(), config)


def test_modules_changed_after_construction_are_refused():
    model = TransformerTemporalModel(**TEMPORAL)
    model.transformer_blocks[1].norm_type = "ada_norm"  # what no config of these classes builds
    with pytest.raises(ValueError, match="norm_type"):
        from_diffusers(model)
    model = TransformerTemporalModel(**TEMPORAL)
    model.transformer_blocks[0].attn2.residual_connection = True
    with pytest.raises(ValueError, match=r"transformer_blocks\.0\.attn2"):
        from_diffusers(model)


def test_unknown_classes_and_configs_are_refused():
    with pytest.raises(TypeError, match="Linear"):
        from_diffusers(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="UNet2DModel"):
        from_diffusers({}, {"_class_name": "UNet2DModel"})
    with pytest.raises(ValueError, match="motion_flavour"):
        from_diffusers({}, {"_class_name": "MotionAdapter", **ADAPTER, "motion_flavour": 1})
    with pytest.raises(ValueError, match="config"):
        from_diffusers(MotionAdapter(**ADAPTER).state_dict())
    with pytest.raises(TypeError, match="list"):
        from_diffusers([1, 2])


def test_bad_state_dicts_are_refused_naming_the_key():
    adapter = MotionAdapter(**ADAPTER)
    config = {"_class_name": "MotionAdapter", **ADAPTER}
    key = "down_blocks.1.motion_modules.0.transformer_blocks.1.attn2.to_k.weight"
    state = adapter.state_dict()
    with pytest.raises(ValueError, match=f"missing keys.*{key}"):
        from_diffusers({k: v for k, v in state.items() if k != key}, config)
    with pytest.raises(ValueError, match=r"unexpected keys.*mid_block\.extra\.weight"):
        from_diffusers({**state, "mid_block.extra.weight": torch.zeros(1)}, config)
    with pytest.raises(ValueError, match=f"{key}.*shape \\(24, 23\\)"):
        from_diffusers({**state, key: torch.zeros(24, 23)}, config)
    pe = "mid_block.motion_modules.0.transformer_blocks.0.pos_embed.pe"
    with pytest.raises(ValueError, match=pe):
        from_diffusers({**state, pe: state[pe] + 0.1}, config)


def test_the_converted_call_refuses_what_it_cannot_serve():
    module = from_diffusers(AnimateDiffTransformer3D(num_attention_heads=2, attention_head_dim=4, in_channels=8,
                                                     norm_num_groups=4, positional_embeddings="sinusoidal",
                                                     num_positional_embeddings=4))
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        module(randn(4, 8, 2, 2), encoder_hidden_states=randn(4, 3, 8), num_frames=2)
    with pytest.raises(ValueError, match="max_frames=4"):
        module(randn(5, 8, 2, 2), num_frames=5)
    with pytest.raises(ValueError, match="num_frames=3"):
        module(randn(4, 8, 2, 2), num_frames=3)


# --- spacetime's attention inside diffusers -------------------------------------------------------------------------


@pytest.mark.parametrize("backend, tol", BACKENDS)
def test_processor_in_a_unet_motion_model(backend, tol):
    unet = randomize(UNetMotionModel(**UNET))
    assert all(isinstance(p, AttnProcessor2_0) for p in unet.attn_processors.values())
    x, text = randn(2, 4, 5, 6, 10), randn(2 * 5, 3, 8, seed=2)
    ref = run(unet, x, 3, text).sample
    unet.set_attn_processor(SpacetimeAttnProcessor(backend=backend))  # self-attention (spatial, temporal) and cross
    assert all(isinstance(p, SpacetimeAttnProcessor) for p in unet.attn_processors.values())
    close(run(unet, x, 3, text).sample, ref, tol)
    unet.set_attn_processor(SpacetimeAttnProcessor(backend=backend, batch_limit=3))  # split in chunks of 1 sequence
    close(run(unet, x, 3, text).sample, ref, tol)


@pytest.mark.parametrize("backend, tol", BACKENDS)
def test_processor_in_a_transformer_temporal_model(backend, tol):
    model = randomize(TransformerTemporalModel(**TEMPORAL, **TEMPORALS[2]))
    x = randn(2 * 5, 24, 3, 4)
    ref = run(model, x, num_frames=5).sample
    names = set_spacetime_processor(model, SpacetimeAttnProcessor(backend=backend))
    assert names == ["transformer_blocks.0.attn1", "transformer_blocks.0.attn2", "transformer_blocks.1.attn1",
                     "transformer_blocks.1.attn2"]
    close(run(model, x, num_frames=5).sample, ref, tol)


@pytest.mark.parametrize("backend, tol", BACKENDS)
def test_processor_in_stable_video_diffusions_transformer(backend, tol):
    model = randomize(TransformerSpatioTemporalModel(num_attention_heads=2, attention_head_dim=16, in_channels=32,
                                                     num_layers=1, cross_attention_dim=16))
    x, context, images = randn(2 * 3, 32, 4, 5), randn(2 * 3, 2, 16, seed=2), torch.tensor([[0.0] * 3, [1.0] * 3])
    ref = run(model, x, context, image_only_indicator=images).sample
    assert len(set_spacetime_processor(model, SpacetimeAttnProcessor(backend=backend))) == 4  # per Attention
    close(run(model, x, context, image_only_indicator=images).sample, ref, tol)


@pytest.mark.parametrize("backend, tol", BACKENDS)
def test_processor_in_latte(backend, tol):
    options = {"num_attention_heads": 2, "attention_head_dim": 8, "in_channels": 4, "out_channels": 8, "num_layers": 1,
               "sample_size": 8, "patch_size": 2, "cross_attention_dim": 16, "caption_channels": 12, "video_length": 3}
    model = randomize(LatteTransformer3DModel(**options))
    x, steps, text = randn(2, 4, 3, 8, 8), torch.tensor([3, 5]), randn(2, 5, 12, seed=2)
    ref = run(model, x, timestep=steps, encoder_hidden_states=text).sample
    assert len(set_spacetime_processor(model, SpacetimeAttnProcessor(backend=backend))) == 3  # spatial, text, temporal
    close(run(model, x, timestep=steps, encoder_hidden_states=text).sample, ref, tol)


@pytest.mark.parametrize("backend, tol", BACKENDS)
def test_processor_applies_diffusers_masks_exactly(backend, tol):
    attn = randomize(Attention(query_dim=8, cross_attention_dim=6, heads=2, dim_head=4, bias=True))
    x, context = randn(3, 5, 8), randn(3, 4, 6, seed=2)
    keep = torch.tensor([[1, 1, 0, 1], [1, 0, 0, 0], [0, 1, 1, 1]], dtype=torch.bool)
    rows = torch.zeros(3, 5, 4)
    rows[0, 2] = float("-inf")  # a query with no key: zeros from both
    rows[1] = torch.where(randn(5, 4, seed=3) > 0, 0.0, -10000.0)
    masks = {"bool": keep[:, None], "additive": (1.0 - keep[:, None].float()) * -10000.0, "per-query": rows}
    for name, mask in masks.items():
        attn.set_processor(AttnProcessor2_0())
        ref = run(attn, x, context, attention_mask=mask)
        attn.set_processor(SpacetimeAttnProcessor(backend=backend))
        close(run(attn, x, context, attention_mask=mask), ref, tol)
    model = randomize(Transformer2DModel(num_attention_heads=2, attention_head_dim=4, in_channels=8, norm_num_groups=4,
                                         cross_attention_dim=6))
    image, text, text_mask = randn(3, 8, 3, 5), randn(3, 4, 6, seed=2), keep.float()  # (b, m) as pipelines pass it
    ref = run(model, image, text, encoder_attention_mask=text_mask).sample
    set_spacetime_processor(model, SpacetimeAttnProcessor(backend=backend))
    close(run(model, image, text, encoder_attention_mask=text_mask).sample, ref, tol)


@pytest.mark.parametrize("backend", ["math", None])
def test_processor_splits_batches_above_the_kernel_limit(backend):
    attn = randomize(Attention(query_dim=4, heads=2, dim_head=2))
    x = randn(33_000, 2, 4)  # a temporal attention of 2 frames: batch x heads = 66,000 > 65,535
    attn.set_processor(AttnProcessor2_0())
    ref = run(attn, x)
    attn.set_processor(SpacetimeAttnProcessor(backend=backend))
    split = run(attn, x)
    attn.set_processor(SpacetimeAttnProcessor(backend=backend, batch_limit=10**6))
    assert torch.equal(split, run(attn, x))  # the split equals one chunk
    close(split, ref, 1e-5)


def dense_reference(attn, grid, pattern):
    """Joint attention of ``Attention`` ``attn`` over a ``(b, t, h, w, c)`` grid under ``pattern.dense_mask``."""
    _, t, h, w, _ = grid.shape
    tokens = rearrange(grid, "b t h w c -> b (t h w) c")
    q, k, v = (rearrange(f(tokens), "b n (heads d) -> b heads n d", heads=attn.heads)
               for f in (attn.to_q, attn.to_k, attn.to_v))
    scores = (q @ k.transpose(-1, -2) * attn.scale).masked_fill(~pattern.dense_mask(t, h, w), float("-inf"))
    out = attn.to_out[0](rearrange(scores.softmax(-1) @ v, "b heads n d -> b n (heads d)"))
    return rearrange(out, "b (t h w) c -> b t h w c", t=t, h=h)


ORDERS = {"spatial": "(b t) (h w) c", "temporal": "(b h w) t c", "joint": "b (t h w) c"}
PATTERNS = [Window((2, 2, 3)), Window((2, 2, 2), shift=(1, 1, 1)), CrossFrame(1), Temporal(window=1), Joint()]


@pytest.mark.parametrize("tokens", list(ORDERS))
@pytest.mark.parametrize("pattern", PATTERNS, ids=["window", "shifted-window", "cross-frame", "temporal-band", "joint"])
def test_pattern_swap_equals_the_patterns_definition(tokens, pattern):
    attn = randomize(Attention(query_dim=8, heads=2, dim_head=4, bias=True))
    grid = randn(2, 3, 3, 5, 8)  # (b, t, h, w, c): 3 frames, 3 x 5 pixels
    attn.set_processor(SpacetimeAttnProcessor(backend="math", pattern=pattern, tokens=tokens, latent=(2, 3, 3, 5)))
    out = run(attn, rearrange(grid, f"b t h w c -> {ORDERS[tokens]}"))
    ref = rearrange(dense_reference(attn, grid, pattern), f"b t h w c -> {ORDERS[tokens]}")
    close(out, ref, 1e-5)


class DenseProcessor:
    """The test's own processor: a self-attention as joint attention under a pattern's dense mask, each call's
    ``(b, t, h, w)`` looked up in ``grids`` by its ``(batch, tokens)``."""

    def __init__(self, pattern, tokens, grids):
        self.pattern, self.order, self.grids = pattern, ORDERS[tokens], grids

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        b, t, h, w = self.grids[tuple(hidden_states.shape[:2])]
        grid = rearrange(hidden_states, f"{self.order} -> b t h w c", b=b, t=t, h=h, w=w)
        return rearrange(dense_reference(attn, grid, self.pattern), f"b t h w c -> {self.order}")


#: a latent of 2 clips x 5 frames x 6 x 10 pixels: every attention call of UNET's levels, (batch, tokens) -> grid
UNET_GRIDS = {(10, 60): (2, 5, 6, 10), (10, 15): (2, 5, 3, 5), (120, 5): (2, 5, 6, 10), (30, 5): (2, 5, 3, 5)}
SELECT = {"spatial": lambda name, _: ".attentions." in name and name.endswith("attn1"),  # not the text cross-attention
          "temporal": lambda name, _: ".motion_modules." in name}  # both motion self-attentions


@pytest.mark.parametrize("tokens, same, pattern", [("spatial", CrossFrame(0), Window((2, 2, 3))),
                                                    ("temporal", Temporal(), CrossFrame(1))])
def test_pattern_swap_in_a_unet_reads_the_grid_from_the_latent(tokens, same, pattern):
    unet = randomize(UNetMotionModel(**UNET))
    x, text = randn(2, 4, 5, 6, 10), randn(2 * 5, 3, 8, seed=2)
    ref = run(unet, x, 3, text).sample
    processor = SpacetimeAttnProcessor(backend="math", pattern=same, tokens=tokens)  # the module's own attention
    handle = processor.watch(unet)
    installed = set_spacetime_processor(unet, processor, select=SELECT[tokens])
    assert len(installed) == {"spatial": 4, "temporal": 14}[tokens]  # 4 transformers, 7 motion modules x 2
    close(run(unet, x, 3, text).sample, ref, 1e-5)  # such a swap gives diffusers' output
    assert processor.latent == (2, 5, 6, 10)
    processor.pattern = pattern
    swapped = run(unet, x, 3, text).sample
    handle.remove()
    set_spacetime_processor(unet, DenseProcessor(pattern, tokens, UNET_GRIDS), select=SELECT[tokens])
    close(swapped, run(unet, x, 3, text).sample, 1e-5)  # the pattern's definition at every level
    assert (swapped - ref).abs().max() > 1e-3  # and the swap changed the model


def test_processor_refuses_what_it_cannot_serve():
    cross = randomize(Attention(query_dim=8, cross_attention_dim=6, heads=2, dim_head=4))
    attn = randomize(Attention(query_dim=8, heads=2, dim_head=4))
    x, context = randn(6, 4, 8), randn(6, 3, 6)
    swap = SpacetimeAttnProcessor(pattern=CrossFrame(1), tokens="spatial", latent=(2, 3, 2, 2))
    cross.set_processor(swap)
    attn.set_processor(swap)
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        cross(x, context)
    with pytest.raises(ValueError, match="attention_mask"):
        attn(x, attention_mask=torch.ones(6, 1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="latent"):
        attn(randn(6, 5, 8))  # 5 pixels: no frame size of the 2 x 2 latent
    attn.set_processor(SpacetimeAttnProcessor(pattern=CrossFrame(1), tokens="spatial"))
    with pytest.raises(ValueError, match="latent"):
        attn(x)
    with pytest.raises(ValueError, match="tokens"):
        SpacetimeAttnProcessor(pattern=Joint())
    with pytest.raises(ValueError, match="tokens"):
        SpacetimeAttnProcessor(pattern=Joint(), tokens="diagonal")
    with pytest.raises(TypeError, match="pattern"):
        SpacetimeAttnProcessor(pattern="joint", tokens="joint")
    with pytest.raises(ValueError, match="backend"):
        SpacetimeAttnProcessor(backend="flash")
    with pytest.raises(ValueError, match="kv_heads"):
        grouped = Attention(query_dim=8, heads=4, kv_heads=2, dim_head=2, processor=SpacetimeAttnProcessor())
        grouped(x)
    with pytest.raises(TypeError, match="Linear"):
        SpacetimeAttnProcessor()(nn.Linear(2, 2), x)
    with pytest.raises(ValueError, match="no diffusers Attention"):
        set_spacetime_processor(nn.Linear(2, 2))
