"""diffusers' temporal transformers as spacetime modules with the same outputs, and spacetime's attention in diffusers.

:func:`from_diffusers` converts AnimateDiff's motion modules (``AnimateDiffTransformer3D``, alone or a whole
``MotionAdapter``, nesting kept) and ``TransformerTemporalModel`` into :class:`~spacetime.blocks.motion.MotionModule` s
that take diffusers' inputs and return its outputs; a module, or its ``state_dict`` with its ``config.json`` dict.
:func:`to_diffusers_state_dict` gives the tensors back exactly. The attention processors
(:class:`SpacetimeAttnProcessor` for diffusers' ``Attention``, :class:`SpacetimeWanAttnProcessor` for Wan's
``WanAttention``) live in :mod:`spacetime.interop.diffusers_processor` and are importable from here.
docs/interop-diffusers.md says what is supported.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Mapping

import torch
from einops import rearrange
from torch import Tensor, nn

from ..blocks.motion import MotionModule
from ..checks import float_tensor, one_of, positive_int
from ..ops.patterns import Temporal
from .diffusers_processor import (
    TOKEN_ORDERS,
    SpacetimeAttnProcessor,
    SpacetimeWanAttnProcessor,
    set_spacetime_processor,
)

__all__ = ["ACTIVATIONS", "TOKEN_ORDERS", "DiffusersMotionAdapter", "DiffusersMotionModule", "SpacetimeAttnProcessor",
           "SpacetimeWanAttnProcessor", "from_diffusers", "set_spacetime_processor", "to_diffusers_state_dict"]

#: diffusers' ``activation_fn`` -> spacetime's ``Mlp(act=...)`` (``"geglu-approximate"`` is diffusers' ungated
#: ``x * sigmoid(1.702 x)``, spacetime's ``"quick_gelu"``); others (``"swiglu"``) are refused
ACTIVATIONS = {"geglu": "geglu", "gelu": "gelu", "gelu-approximate": "gelu_tanh", "geglu-approximate": "quick_gelu",
               "linear-silu": "silu"}
_CLASS_NAMES = ("MotionAdapter", "AnimateDiffTransformer3D", "TransformerTemporalModel")


def _classes() -> dict[str, type]:
    from diffusers import MotionAdapter, TransformerTemporalModel
    from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

    return {"MotionAdapter": MotionAdapter, "TransformerTemporalModel": TransformerTemporalModel,
            "AnimateDiffTransformer3D": AnimateDiffTransformer3D}


class DiffusersMotionModule(nn.Module):
    """A converted motion module with diffusers' call: ``forward(hidden_states, num_frames=...)`` on
    ``(batch*frames, C, H, W)`` latents, frames inner, returns the same shape (``TransformerTemporalModel``: its
    output object, or ``(sample,)`` with ``return_dict=False``). ``module`` is the :class:`MotionModule` doing the
    work on ``(B, C, T, H, W)``. ``timestep`` and ``class_labels`` are ignored, as the original's LayerNorm blocks do;
    ``encoder_hidden_states`` and ``cross_attention_kwargs`` are refused (the converted blocks are self-attention)."""

    def __init__(self, module: MotionModule, source_class: str = "AnimateDiffTransformer3D"):
        super().__init__()
        self.module, self.source_class = module, one_of("source_class", source_class, _CLASS_NAMES[1:])

    def forward(self, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None, timestep=None,
                class_labels=None, num_frames: int = 1, cross_attention_kwargs: dict | None = None,
                return_dict: bool = True):
        for name, value in (("encoder_hidden_states", encoder_hidden_states), ("cross_attention_kwargs",
                                                                                 cross_attention_kwargs or None)):
            if value is not None:  # the converted blocks are self-attention with spacetime's own attention
                raise ValueError(f"{name} must be None for a converted motion module; got {type(value).__name__}")
        float_tensor("hidden_states", hidden_states, 4, form="a (batch*frames, C, H, W) tensor")
        if hidden_states.shape[0] % positive_int("num_frames", num_frames):
            raise ValueError(f"hidden_states' first axis ({hidden_states.shape[0]}) must be batch*frames, a multiple "
                             f"of num_frames={num_frames}")
        out = self.module(rearrange(hidden_states, "(b t) c h w -> b c t h w", t=num_frames))
        out = rearrange(out, "b c t h w -> (b t) c h w")
        if self.source_class == "TransformerTemporalModel":
            from diffusers.models.transformers.transformer_temporal import TransformerTemporalModelOutput as Output

            return Output(sample=out) if return_dict else (out,)
        return out


class _MotionModules(nn.Module):
    """One U-Net level's motion modules (``motion_modules[j]``), diffusers' ``MotionModules``."""

    def __init__(self, modules: list[DiffusersMotionModule]):
        super().__init__()
        self.motion_modules = nn.ModuleList(modules)


class DiffusersMotionAdapter(nn.Module):
    """A converted ``MotionAdapter``, a container like the original: ``down_blocks[i].motion_modules[j]``, ``mid_block``
    (``None`` without one), ``up_blocks``, each a :class:`DiffusersMotionModule`; ``conv_in`` (``nn.Conv2d`` or
    ``None``) kept as it is; ``source_config``, the adapter's config."""

    def __init__(self, down: list[_MotionModules], mid: _MotionModules | None, up: list[_MotionModules],
                 conv_in: nn.Conv2d | None = None, source_config: dict | None = None):
        super().__init__()
        self.conv_in, self.mid_block = conv_in, mid  # registered in the original's order
        self.down_blocks, self.up_blocks = nn.ModuleList(down), nn.ModuleList(up)
        self.source_config = dict(source_config or {})


def from_diffusers(module, config: Mapping | None = None, *, backend: str | None = None):
    """A diffusers ``MotionAdapter``, ``AnimateDiffTransformer3D`` or ``TransformerTemporalModel`` as spacetime modules.

    ``module`` is the diffusers module, or its ``state_dict`` with ``config``, the dict of its ``config.json``
    (``_class_name`` names the class; a lone ``AnimateDiffTransformer3D``: its constructor's keywords). ``backend``: the
    attention backend of every block. Returns a :class:`DiffusersMotionAdapter` or :class:`DiffusersMotionModule` in
    eval mode, on the weights' device and dtype. Unknown classes, unsupported options, and missing, unexpected or
    wrongly shaped tensors are refused with an error naming them.
    """
    if isinstance(module, nn.Module) and config is None:
        source, state = module, module.state_dict()
    elif isinstance(module, Mapping) and config is not None:
        source, state = _build(config), dict(module)
    else:
        raise (ValueError if isinstance(module, (nn.Module, Mapping)) else TypeError)(
            "module must be a diffusers module (and config None) or a state_dict with its config dict (config.json, "
            f"with '_class_name'); got a {type(module).__name__} and config {type(config).__name__}")
    name = type(source).__name__
    if name not in _classes() or not isinstance(source, _classes()[name]):
        raise TypeError(f"from_diffusers converts {sorted(_classes())}; got {name}")
    for where, part in source.named_modules():  # options first, then the tensors they make
        if type(part).__name__ in _CLASS_NAMES[1:]:
            _spec(part, where or name)
    _check_keys(state, {k: tuple(v.shape) for k, v in source.state_dict().items()}, name)
    if name == "MotionAdapter":
        return _adapter(source, state, backend).eval()
    return DiffusersMotionModule(_motion_module(source, state, "", backend, name), name).eval()


def _build(config: Mapping) -> nn.Module:
    """The diffusers module a config describes, on the meta device (its structure, no memory)."""
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict (config.json); got {type(config).__name__}")
    name, classes = config.get("_class_name"), _classes()
    if name not in classes:
        raise ValueError(f"config['_class_name'] must be one of {sorted(classes)}; got {name!r}")
    options = {k: v for k, v in config.items() if not k.startswith("_")}
    if unknown := sorted(set(options) - set(inspect.signature(classes[name].__init__).parameters)):
        raise ValueError(f"config: {name} has no option(s) {unknown}")
    with torch.device("meta"):
        return classes[name](**options)


def _check_keys(state: Mapping, expected: dict[str, tuple], where: str) -> None:
    if missing := sorted(set(expected) - set(state)):
        raise ValueError(f"{where} state_dict: missing keys {missing[:8]}")
    if unexpected := sorted(set(state) - set(expected)):
        raise ValueError(f"{where} state_dict: unexpected keys {unexpected[:8]}")
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise ValueError(f"{where} state_dict: {key!r} has shape {tuple(state[key].shape)}; expected {shape}")


def _adapter(source, state: Mapping, backend) -> DiffusersMotionAdapter:
    def level(prefix: str, stage) -> _MotionModules:
        return _MotionModules([DiffusersMotionModule(_motion_module(m, state, f"{prefix}.motion_modules.{j}.", backend))
                               for j, m in enumerate(stage.motion_modules)])

    down = [level(f"down_blocks.{i}", s) for i, s in enumerate(source.down_blocks)]
    up = [level(f"up_blocks.{i}", s) for i, s in enumerate(source.up_blocks)]
    mid = None if source.mid_block is None else level("mid_block", source.mid_block)
    conv_in, conv = None, source.conv_in
    if conv is not None:  # carried as it is (diffusers' PIA-style input convolution)
        conv_in = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding)
        conv_in.to(state["conv_in.weight"]).load_state_dict({p: state[f"conv_in.{p}"] for p in ("weight", "bias")})
    return DiffusersMotionAdapter(down, mid, up, conv_in, {k: v for k, v in source.config.items() if k[0] != "_"})


def _spec(module, where: str) -> dict:
    """The :class:`MotionModule` keywords of a diffusers motion module; unsupported options raise, naming them."""
    blocks = module.transformer_blocks
    if len(blocks) == 0:
        raise ValueError(f"{where}: num_layers must be >= 1; got 0")
    first = blocks[0]
    checks = (("cross_attention_dim", None), ("dropout", 0.0), ("norm_elementwise_affine", True),
              ("norm_type", "layer_norm"), ("only_cross_attention", False), ("activation_fn", first.activation_fn))
    for (option, supported), block in itertools.product(checks, blocks):  # dropout 0: spacetime's MLP drops elsewhere
        if getattr(block, option) != supported:
            raise ValueError(f"{where}: {option} must be {supported!r} for spacetime's motion module; got "
                             f"{getattr(block, option)!r}")
    one_of(f"{where}: activation_fn", first.activation_fn, ACTIVATIONS, note=" (spacetime's MLP activations)")
    one_of(f"{where}: positional_embeddings", first.positional_embeddings, ("sinusoidal",), none_ok=True)
    from diffusers.models.attention_processor import Attention

    for name, attn in blocks.named_modules():
        if isinstance(attn, Attention) and not (
                attn.group_norm is attn.spatial_norm is attn.norm_q is attn.norm_cross is attn.added_kv_proj_dim is None
                and not attn.residual_connection and attn.rescale_output_factor == 1.0 and attn.scale_qk):
            raise ValueError(f"{where}.transformer_blocks.{name}: an Attention with extra norms, a residual, rescaled "
                             "output, added projections or unscaled scores has no spacetime counterpart")
    return {"channels": module.in_channels, "num_heads": first.num_attention_heads, "depth": len(blocks),
            "head_dim": first.attention_head_dim, "patterns": (Temporal(),) * (1 if first.attn2 is None else 2),
            "groups": module.norm.num_groups, "group_eps": module.norm.eps, "norm_eps": first.norm1.eps,
            "act": ACTIVATIONS[first.activation_fn], "qkv_bias": first.attention_bias,
            "max_frames": None if first.pos_embed is None else first.num_positional_embeddings}


def _renames(depth: int, n_attn: int) -> dict[str, str]:
    """diffusers' module paths -> spacetime's, for the tensors copied as they are (each ``.weight`` and ``.bias``)."""
    names = {"norm": "norm", "proj_in": "proj_in", "proj_out": "proj_out"}
    for i in range(depth):
        d, s = f"transformer_blocks.{i}", f"blocks.{i}"
        for j in range(n_attn):
            names[f"{d}.norm{j + 1}"] = f"{s}.attn.{j}.norm"
            names[f"{d}.attn{j + 1}.to_out.0"] = f"{s}.attn.{j}.attn.proj"
        names.update({f"{d}.norm3": f"{s}.norm_mlp", f"{d}.ff.net.0.proj": f"{s}.mlp.0", f"{d}.ff.net.2": f"{s}.mlp.2"})
    return names


def _motion_module(source, state: Mapping, prefix: str, backend, where: str | None = None) -> MotionModule:
    """A :class:`MotionModule` with the weights of ``source``'s tensors in ``state`` (keys under ``prefix``)."""
    where = where or prefix.rstrip(".")
    spec, weight = _spec(source, where), state[f"{prefix}proj_in.weight"]
    module = MotionModule(**spec, backend=backend, device=weight.device, dtype=weight.dtype)
    n_attn, biases = len(spec["patterns"]), ("weight", "bias") if spec["qkv_bias"] else ("weight",)
    ours = {f"{s}.{p}": state[f"{prefix}{d}.{p}"] for d, s in _renames(spec["depth"], n_attn).items()
            for p in ("weight", "bias")}
    for i, j, p in itertools.product(range(spec["depth"]), range(n_attn), biases):  # q, k, v rows, heads inner
        parts = [state[f"{prefix}transformer_blocks.{i}.attn{j + 1}.to_{x}.{p}"] for x in "qkv"]
        ours[f"blocks.{i}.attn.{j}.attn.qkv.{p}"] = torch.cat(parts)
    module.load_state_dict(ours, strict=True)
    if spec["max_frames"] is not None:
        for i, block in enumerate(module.blocks):
            key = f"{prefix}transformer_blocks.{i}.pos_embed.pe"
            table = state[key][0].to(block.attn[0].norm.table)  # (max_frames, dim)
            if not torch.allclose(table, block.attn[0].norm.table, rtol=0.0, atol=1e-5):
                raise ValueError(f"{key!r} is not the sinusoidal table of {table.shape[0]} frames x {table.shape[1]} "
                                 "channels that spacetime's FramePositionNorm adds")
            for sub in block.attn:
                sub.norm.table.copy_(table)  # diffusers' values, to the last bit
    return module


def _export(module: MotionModule, tensors: Mapping[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """spacetime tensors of one motion module (its state, or its gradients) in diffusers' names."""
    depth, n_attn = len(module.blocks), len(module.blocks[0].attn)
    out = {f"{prefix}{d}.{p}": tensors.get(f"{s}.{p}") for d, s in _renames(depth, n_attn).items()
           for p in ("weight", "bias")}
    for i, j, p in itertools.product(range(depth), range(n_attn), ("weight", "bias")):
        qkv = tensors.get(f"blocks.{i}.attn.{j}.attn.qkv.{p}")  # absent: no biases, or no gradients
        for x, part in zip("qkv", () if qkv is None else qkv.chunk(3)):
            out[f"{prefix}transformer_blocks.{i}.attn{j + 1}.to_{x}.{p}"] = part
    for i in range(depth):
        if (table := tensors.get(f"blocks.{i}.attn.0.norm.table")) is not None:
            out[f"{prefix}transformer_blocks.{i}.pos_embed.pe"] = table[None]
    return out


def to_diffusers_state_dict(converted: DiffusersMotionModule | DiffusersMotionAdapter, *,
                            gradients: bool = False) -> dict[str, Tensor]:
    """The diffusers ``state_dict`` of a converted module: the original's tensors, exactly (copies).

    ``gradients=True`` gives each parameter's ``.grad`` in diffusers' names instead (buffers left out).
    """
    if not isinstance(converted, (DiffusersMotionModule, DiffusersMotionAdapter)):
        raise TypeError(f"converted must come from from_diffusers; got {type(converted).__name__}")
    out = {}
    for name, wrapper in converted.named_modules():
        if isinstance(wrapper, DiffusersMotionModule):
            m = wrapper.module
            tensors = {n: p.grad for n, p in m.named_parameters()} if gradients else {**m.state_dict(),
                                                                                    **dict(m.named_buffers())}
            out.update(_export(m, {k: v for k, v in tensors.items() if v is not None}, f"{name}." if name else ""))
    if isinstance(converted, DiffusersMotionAdapter) and converted.conv_in is not None:
        out.update({f"conv_in.{n}": p.grad if gradients else p for n, p in converted.conv_in.named_parameters()})
    return {k: v.detach().clone() for k, v in out.items() if v is not None}
