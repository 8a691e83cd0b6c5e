"""torchvision's Video Swin (``swin3d_t``, ``swin3d_s``, ``swin3d_b``) as a spacetime :class:`VideoSwin`, and back.

:func:`from_torchvision` takes a ``torchvision.models.video.SwinTransformer3d`` (any of the three builders,
or the class with other sizes), or its ``state_dict`` with its config (the keyword arguments of
``SwinTransformer3d``, or the builder's name), and returns a :class:`~spacetime.models.swin.VideoSwin` in
eval mode with the same weights, on the device and in the dtype of the originals, whose
``forward(x)`` takes the same ``(B, C, T, H, W)`` clips and returns the same logits.
:func:`to_torchvision_state_dict` gives the weights back under torchvision's names, in its order, with
its ``relative_position_index`` buffers; :func:`torchvision_config` gives the keyword arguments that
build the matching ``SwinTransformer3d``. Nothing here imports torchvision.

What is exact, and what is not:

* the converted model uses Video Swin's rules where spacetime's differ (``padding="zeros"``: the
  normalised features are zero-padded before the qkv projection and padded tokens are keys;
  ``clipped_bias="leading"``: a window clipped to a short axis takes the leading block of the full
  window's relative-position index), and pads clips, windows and patch merging where torchvision does.
  In eval mode the logits agree to float32 rounding (below ``1e-6`` on logits of order 1 on the ``math``
  and default backends; ``docs/interop-torchvision.md`` has the numbers), and so do the gradients of the
  input and of every weight;
* shifted windows: torchvision adds ``-100.0`` to the scores of pairs from different regions, spacetime
  removes them (``-inf``); :mod:`spacetime.layers.window` says why the two agree to float32 rounding;
* training: the rates are carried (``dropout`` -> ``drop``, ``attention_dropout`` -> ``attn_drop``,
  ``stochastic_depth_prob`` -> ``drop_path``, the same per-block rates). Stochastic depth, attention
  dropout, the dropout after the patch embedding, after each attention's projection and after each
  MLP are where torchvision has them; torchvision's MLP also drops out its hidden activations (after
  the GELU) and spacetime's :class:`~spacetime.layers.mlp.Mlp` does not. With ``dropout > 0`` a
  training step is therefore a different random function; with ``dropout = 0`` only the random draws
  may differ;
* refused, each by name: any other architecture (torchvision's 2-D Swin, MViT, R3D, ...); a custom
  ``block`` (``SwinTransformerBlockV2``), ``downsample_layer`` (``PatchMergingV2``) or ``patch_embed``;
  a ``norm_layer`` other than ``nn.LayerNorm`` (any epsilon); projections without biases; a GELU other
  than the exact one; ``num_classes < 1``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ..layers.window import relative_position_index
from ..models.swin import VideoSwin, VideoSwinConfig, drop_path_rates

__all__ = ["from_torchvision", "to_torchvision_state_dict", "torchvision_config", "torchvision_key_pairs",
           "TORCHVISION_ARCHITECTURES"]

#: torchvision's builders and the keyword arguments they give ``SwinTransformer3d`` (Kinetics-400 heads)
TORCHVISION_ARCHITECTURES: dict[str, dict] = {
    "swin3d_t": {"patch_size": [2, 4, 4], "embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24],
                 "window_size": [8, 7, 7], "stochastic_depth_prob": 0.1},
    "swin3d_s": {"patch_size": [2, 4, 4], "embed_dim": 96, "depths": [2, 2, 18, 2], "num_heads": [3, 6, 12, 24],
                 "window_size": [8, 7, 7], "stochastic_depth_prob": 0.1},
    "swin3d_b": {"patch_size": [2, 4, 4], "embed_dim": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32],
                 "window_size": [8, 7, 7], "stochastic_depth_prob": 0.1},
}
_REQUIRED = ("patch_size", "embed_dim", "depths", "num_heads", "window_size")
#: ``SwinTransformer3d``'s optional keyword arguments and their defaults
_DEFAULTS = {"mlp_ratio": 4.0, "dropout": 0.0, "attention_dropout": 0.0, "stochastic_depth_prob": 0.1,
             "num_classes": 400, "norm_layer": None, "block": None, "downsample_layer": "PatchMerging",
             "patch_embed": None}
#: (torchvision, spacetime) names inside one Swin block, in torchvision's state_dict order; ``None``: the index buffer
_BLOCK_KEYS = (("norm1.weight", "norm.weight"), ("norm1.bias", "norm.bias"),
               ("attn.relative_position_bias_table", "attn.relative_position_bias_table"),
               ("attn.relative_position_index", None),
               ("attn.qkv.weight", "attn.qkv.weight"), ("attn.qkv.bias", "attn.qkv.bias"),
               ("attn.proj.weight", "attn.proj.weight"), ("attn.proj.bias", "attn.proj.bias"),
               ("norm2.weight", "norm_mlp.weight"), ("norm2.bias", "norm_mlp.bias"),
               ("mlp.0.weight", "mlp.0.weight"), ("mlp.0.bias", "mlp.0.bias"),
               ("mlp.3.weight", "mlp.2.weight"), ("mlp.3.bias", "mlp.2.bias"))
_MERGE_KEYS = (("reduction.weight", "reduction.weight"), ("norm.weight", "norm.weight"), ("norm.bias", "norm.bias"))


def torchvision_key_pairs(config: VideoSwinConfig) -> list[tuple[str, str | None]]:
    """``(torchvision key, spacetime key)`` for every tensor of the state_dict, in torchvision's order.

    The spacetime key is ``None`` for torchvision's ``relative_position_index`` buffers (spacetime does not
    save them: they follow from the window).
    """
    pairs = [("patch_embed.proj.weight", "patch_embed.proj.weight"), ("patch_embed.proj.bias", "patch_embed.proj.bias"),
             ("patch_embed.norm.weight", "patch_norm.weight"), ("patch_embed.norm.bias", "patch_norm.bias")]
    for i, depth in enumerate(config.depths):
        for j in range(depth):
            pairs += [(f"features.{2 * i}.{j}.{tv}", st and f"stages.{i}.{j}.{st}") for tv, st in _BLOCK_KEYS]
        if i < len(config.depths) - 1:
            pairs += [(f"features.{2 * i + 1}.{tv}", f"merges.{i}.{st}") for tv, st in _MERGE_KEYS]
    pairs += [("norm.weight", "norm.weight"), ("norm.bias", "norm.bias")]
    if config.num_classes:
        pairs += [("head.weight", "head.weight"), ("head.bias", "head.bias")]
    return pairs


def from_torchvision(model_or_state_dict, config=None) -> VideoSwin:
    """A torchvision ``SwinTransformer3d`` (or its ``state_dict`` and ``config``) as a :class:`VideoSwin` in eval mode.

    ``config`` (a state_dict only): the keyword arguments of ``SwinTransformer3d`` (``patch_size``, ``embed_dim``,
    ``depths``, ``num_heads``, ``window_size``, and optionally ``mlp_ratio``, ``dropout``, ``attention_dropout``,
    ``stochastic_depth_prob``, ``num_classes``, ``norm_layer``, ``block``, ``downsample_layer``, ``patch_embed``),
    or a builder's name, ``"swin3d_t"``, ``"swin3d_s"``, ``"swin3d_b"`` (400 classes). See the module docstring for
    what is exact and what is refused.
    """
    if isinstance(model_or_state_dict, nn.Module):
        if config is not None:
            raise ValueError(f"config is for a state_dict (a model carries its own); pass config=None with a model, "
                             f"got config={config!r}")
        spacetime_config = _config_from_module(model_or_state_dict)
        state = model_or_state_dict.state_dict()
    elif isinstance(model_or_state_dict, Mapping):
        if config is None:
            raise ValueError(f"a state_dict needs config=: SwinTransformer3d's keyword arguments (a dict) or one of "
                             f"{sorted(TORCHVISION_ARCHITECTURES)}; got None")
        spacetime_config = _config_from_kwargs(config)
        state = model_or_state_dict
    else:
        raise TypeError(f"model_or_state_dict must be torchvision's SwinTransformer3d or its state_dict (a mapping); "
                        f"got {type(model_or_state_dict).__name__}")
    model = VideoSwin(spacetime_config)
    _load(model, state)
    return model.eval()


def to_torchvision_state_dict(model: VideoSwin) -> dict[str, Tensor]:
    """``model``'s weights under torchvision's ``SwinTransformer3d`` names, in its order (copies), with the
    ``relative_position_index`` buffers; ``load_state_dict(..., strict=True)`` takes it.

    The weights map one to one whatever the model's rules; a model built with spacetime's ``padding`` or
    ``clipped_bias`` (not ``"zeros"`` / ``"leading"``) computes differently in torchvision wherever a window is
    padded or clipped.
    """
    if not isinstance(model, VideoSwin):
        raise TypeError(f"model must be a spacetime VideoSwin; got {type(model).__name__}")
    if model.config.num_classes < 1:
        raise ValueError("model.config.num_classes must be >= 1: torchvision's SwinTransformer3d always has a head; "
                         f"got {model.config.num_classes}")
    weights = model.state_dict()
    device = weights["patch_embed.proj.weight"].device
    index = relative_position_index(model.config.window_size).to(device)
    return {tv: index.clone() if st is None else weights[st].detach().clone()
            for tv, st in torchvision_key_pairs(model.config)}


def torchvision_config(model_or_config: VideoSwin | VideoSwinConfig) -> dict:
    """The keyword arguments of the ``SwinTransformer3d`` whose state_dict :func:`to_torchvision_state_dict` gives.

    ``norm_layer`` is ``functools.partial(nn.LayerNorm, eps=norm_eps)``. Raises ``ValueError`` for what torchvision
    cannot build: ``in_channels != 3``, ``num_classes < 1``.
    """
    c = model_or_config.config if isinstance(model_or_config, VideoSwin) else model_or_config
    if not isinstance(c, VideoSwinConfig):
        raise TypeError(f"model_or_config must be a VideoSwin or a VideoSwinConfig; got {type(c).__name__}")
    if c.in_channels != 3 or c.num_classes < 1:
        raise ValueError(f"torchvision's SwinTransformer3d takes 3-channel clips and has a head: in_channels must be 3 "
                         f"and num_classes >= 1; got in_channels={c.in_channels}, num_classes={c.num_classes}")
    return {"patch_size": list(c.tubelet), "embed_dim": c.dim, "depths": list(c.depths),
            "num_heads": list(c.num_heads), "window_size": list(c.window_size), "mlp_ratio": c.mlp_ratio,
            "dropout": c.drop, "attention_dropout": c.attn_drop, "stochastic_depth_prob": c.drop_path,
            "num_classes": c.num_classes, "norm_layer": functools.partial(nn.LayerNorm, eps=c.norm_eps)}


def _name(obj) -> str:
    """A readable name of a class, a function or a ``functools.partial``."""
    if isinstance(obj, functools.partial):
        return f"partial({_name(obj.func)}, ...)"
    return getattr(obj, "__qualname__", None) or type(obj).__name__


def _layer_norm_eps(norm_layer) -> float:
    """The epsilon of a ``norm_layer`` argument that builds an ``nn.LayerNorm``; anything else is refused."""
    if norm_layer is None or norm_layer is nn.LayerNorm:
        return 1e-5
    if isinstance(norm_layer, functools.partial) and norm_layer.func is nn.LayerNorm and not norm_layer.args \
            and set(norm_layer.keywords) <= {"eps"}:
        return float(norm_layer.keywords.get("eps", 1e-5))
    raise ValueError(f"norm_layer must be None, nn.LayerNorm or functools.partial(nn.LayerNorm, eps=...) (spacetime's "
                     f"VideoSwin has LayerNorms); got the unsupported {_name(norm_layer)}")


def _check_default(option: str, value, allowed: tuple) -> None:
    """``value`` must be one of torchvision's own choices for ``option``: ``None``, or a class named in ``allowed``
    (or a ``functools.partial`` of one whose only keyword is ``attn_layer=ShiftedWindowAttention3d``, the block
    ``SwinTransformer3d`` builds by default)."""
    if value is None or (isinstance(value, str) and value in allowed) or \
            (isinstance(value, type) and value.__name__ in allowed):
        return
    if isinstance(value, functools.partial) and getattr(value.func, "__name__", None) in allowed and not value.args \
            and set(value.keywords) <= {"attn_layer"} \
            and getattr(value.keywords.get("attn_layer"), "__name__", "ShiftedWindowAttention3d") == \
            "ShiftedWindowAttention3d":
        return
    raise ValueError(f"{option} must be torchvision's default ({' or '.join(allowed) or 'None'}); got the unsupported "
                     f"{_name(value)}")


def _config_from_kwargs(kwargs) -> VideoSwinConfig:
    """The :class:`VideoSwinConfig` of ``SwinTransformer3d(**kwargs)`` (or of a builder's name)."""
    if isinstance(kwargs, str):
        if kwargs not in TORCHVISION_ARCHITECTURES:
            raise ValueError(f"config must name one of {sorted(TORCHVISION_ARCHITECTURES)} or be SwinTransformer3d's "
                             f"keyword arguments; got the unknown architecture {kwargs!r}")
        kwargs = TORCHVISION_ARCHITECTURES[kwargs]
    if not isinstance(kwargs, Mapping):
        raise TypeError(f"config must be SwinTransformer3d's keyword arguments (a dict) or a builder's name; got "
                        f"{type(kwargs).__name__}")
    unknown = sorted(set(kwargs) - set(_REQUIRED) - set(_DEFAULTS))
    missing = [k for k in _REQUIRED if k not in kwargs]
    if unknown or missing:
        raise ValueError(f"config must hold SwinTransformer3d's keyword arguments {list(_REQUIRED)} and optionally "
                         f"{sorted(_DEFAULTS)}; got unknown {unknown}, missing {missing}")
    args = {**_DEFAULTS, **kwargs}
    _check_default("block", args["block"], ("SwinTransformerBlock",))
    _check_default("downsample_layer", args["downsample_layer"], ("PatchMerging",))
    _check_default("patch_embed", args["patch_embed"], ("PatchEmbed3d",))
    return _spacetime_config(
        num_classes=args["num_classes"], tubelet=args["patch_size"], dim=args["embed_dim"], depths=args["depths"],
        num_heads=args["num_heads"], window_size=args["window_size"], mlp_ratio=args["mlp_ratio"],
        drop=args["dropout"], attn_drop=args["attention_dropout"], drop_path=args["stochastic_depth_prob"],
        norm_eps=_layer_norm_eps(args["norm_layer"]))


def _spacetime_config(**fields) -> VideoSwinConfig:
    """A :class:`VideoSwinConfig` with torchvision's rules; its errors say which torchvision names they mean."""
    if not (isinstance(fields["num_classes"], int) and fields["num_classes"] >= 1):
        raise ValueError(f"num_classes must be an int >= 1 (SwinTransformer3d always has a head); got "
                         f"{fields['num_classes']!r}")
    try:
        return VideoSwinConfig(**fields, padding="zeros", clipped_bias="leading")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config: {exc} (spacetime's names for torchvision's: tubelet=patch_size, dim=embed_dim, "
                         f"drop=dropout, attn_drop=attention_dropout, drop_path=stochastic_depth_prob)") from None


def _is(module, class_name: str) -> bool:
    return type(module).__name__ == class_name


def _require(where: str, module, class_name: str) -> None:
    if not _is(module, class_name):
        raise ValueError(f"{where} must be torchvision's {class_name}; got the unsupported {type(module).__name__}")


def _config_from_module(model: nn.Module) -> VideoSwinConfig:
    """The :class:`VideoSwinConfig` of a torchvision ``SwinTransformer3d``, every option it carries checked."""
    if "SwinTransformer3d" not in [cls.__name__ for cls in type(model).__mro__]:
        raise TypeError(f"model_or_state_dict must be torchvision's SwinTransformer3d (swin3d_t, swin3d_s, swin3d_b) "
                        f"or its state_dict; got the unknown architecture {type(model).__name__}")
    embed = model.patch_embed
    _require("patch_embed", embed, "PatchEmbed3d")
    conv = embed.proj
    if conv.kernel_size != conv.stride or any(conv.padding) or conv.dilation != (1, 1, 1) or conv.groups != 1 \
            or conv.bias is None:
        raise ValueError(f"patch_embed.proj must be a Conv3d with stride = kernel, no padding and a bias; got {conv}")
    stages = _stages(model.features)
    options = [_block_options(f"features.{2 * i}.{j}", block) for i, stage in enumerate(stages)
               for j, block in enumerate(stage)]
    dim, window = options[0]["dim"], options[0]["window"]
    mlp_ratio = options[0]["hidden"] / dim
    _check_blocks(options, [len(stage) for stage in stages], dim, window, mlp_ratio)
    rate = _drop_path_rate(options)
    drops = {model.pos_drop.p, *(p for o in options for p in o["drop"])}
    if len(drops) != 1:
        raise ValueError(f"dropout must be one rate everywhere (pos_drop, attention projections, MLPs); got {drops}")
    head = model.head
    if not isinstance(head, nn.Linear) or head.bias is None:
        raise ValueError(f"head must be an nn.Linear with a bias; got the unsupported {type(head).__name__}")
    return _spacetime_config(
        num_classes=head.out_features, in_channels=conv.in_channels, tubelet=conv.kernel_size, dim=conv.out_channels,
        depths=[len(stage) for stage in stages], num_heads=[stage[0].attn.num_heads for stage in stages],
        window_size=window, mlp_ratio=mlp_ratio, drop=drops.pop(), attn_drop=options[0]["attn_drop"],
        drop_path=rate, norm_eps=_norm_eps(model, stages))


def _drop_path_rate(options: list[dict]) -> float:
    """``stochastic_depth_prob``: the last block's rate (less the rounding of the rule), every block's checked."""
    rate = float(f"{options[-1]['drop_path']:.12g}")
    for option, want in zip(options, drop_path_rates(len(options), rate)):
        if not math.isclose(option["drop_path"], want, rel_tol=1e-9, abs_tol=1e-12):
            raise ValueError(f"{option['where']}.stochastic_depth.p must rise linearly to {rate} (SwinTransformer3d's "
                             f"rule); got {option['drop_path']} where the rule gives {want}")
    return rate


def _stages(features: nn.Module) -> list[list[nn.Module]]:
    """The blocks of each stage of ``features`` (stages of blocks, a ``PatchMerging`` between two), checked."""
    if not isinstance(features, nn.Sequential) or len(features) % 2 == 0:
        raise ValueError(f"features must alternate stages and patch mergings (an odd-length nn.Sequential); got "
                         f"{type(features).__name__} of {len(features) if hasattr(features, '__len__') else '?'}")
    stages = []
    for i, layer in enumerate(features):
        if i % 2:
            _require(f"features.{i} (downsample_layer)", layer, "PatchMerging")
            continue
        if not isinstance(layer, nn.Sequential) or len(layer) == 0:
            raise ValueError(f"features.{i} must be a stage: an nn.Sequential of Swin blocks; got "
                             f"{type(layer).__name__}")
        for j, block in enumerate(layer):
            _require(f"features.{i}.{j} (block)", block, "SwinTransformerBlock")
            _require(f"features.{i}.{j}.attn (attn_layer)", block.attn, "ShiftedWindowAttention3d")
        stages.append(list(layer))
    return stages


def _block_options(where: str, block: nn.Module) -> dict:
    """What one torchvision Swin block carries besides its weights, checked against what spacetime builds."""
    attn, mlp = block.attn, block.mlp
    kinds = [type(m).__name__ for m in mlp]
    if kinds != ["Linear", "GELU", "Dropout", "Linear", "Dropout"] or mlp[1].approximate != "none":
        raise ValueError(f"{where}.mlp must be torchvision's MLP (Linear, exact GELU, Dropout, Linear, Dropout); got "
                         f"the unsupported {kinds}")
    if attn.qkv.bias is None or attn.proj.bias is None:
        raise ValueError(f"{where}.attn must have biases on qkv and proj (qkv_bias=True, proj_bias=True); got a "
                         f"projection without one")
    if block.stochastic_depth.mode != "row":
        raise ValueError(f"{where}.stochastic_depth.mode must be 'row' (per sample); got "
                         f"{block.stochastic_depth.mode!r}")
    return {"where": where, "dim": attn.qkv.in_features, "heads": attn.num_heads, "window": tuple(attn.window_size),
            "shift": tuple(attn.shift_size), "hidden": mlp[0].out_features, "drop": (attn.dropout, mlp[2].p, mlp[4].p),
            "attn_drop": attn.attention_dropout, "drop_path": block.stochastic_depth.p}


def _check_blocks(options: list[dict], depths: list[int], dim: int, window: tuple, mlp_ratio: float) -> None:
    """Every block as ``SwinTransformer3d`` builds them: widths doubling, one window, shifts alternating, one
    MLP ratio, one attention dropout, one head count per stage."""
    stage_of = [i for i, depth in enumerate(depths) for _ in range(depth)]
    index_in = [j for depth in depths for j in range(depth)]
    shifted = tuple(ws // 2 for ws in window)
    for option, i, j in zip(options, stage_of, index_in):
        where, width = option["where"], dim * 2 ** i
        checks = {"width (qkv.in_features)": (option["dim"], width), "window_size": (option["window"], window),
                  "shift_size": (option["shift"], shifted if j % 2 else (0, 0, 0)),
                  "mlp hidden width": (option["hidden"], int(width * mlp_ratio)),
                  "attention_dropout": (option["attn_drop"], options[0]["attn_drop"]),
                  "num_heads": (option["heads"], options[sum(depths[:i])]["heads"])}
        for what, (got, want) in checks.items():
            if got != want:
                raise ValueError(f"{where}: {what} must be {want} as SwinTransformer3d builds it; got the unsupported "
                                 f"{got}")


def _norm_eps(model: nn.Module, stages: list[list[nn.Module]]) -> float:
    """The one epsilon of every norm of ``model``, each an affine ``nn.LayerNorm`` with a bias."""
    norms = {"patch_embed.norm": model.patch_embed.norm, "norm": model.norm}
    for i, stage in enumerate(stages):
        for j, block in enumerate(stage):
            norms.update({f"features.{2 * i}.{j}.norm1": block.norm1, f"features.{2 * i}.{j}.norm2": block.norm2})
        if i < len(stages) - 1:
            norms[f"features.{2 * i + 1}.norm"] = model.features[2 * i + 1].norm
    for name, module in norms.items():
        if type(module) is not nn.LayerNorm or not module.elementwise_affine or module.bias is None:
            raise ValueError(f"{name} must be an nn.LayerNorm with weight and bias (norm_layer); got the unsupported "
                             f"{type(module).__name__}")
    eps = sorted({module.eps for module in norms.values()})
    if len(eps) != 1:
        raise ValueError(f"norm_layer must give every norm one epsilon; got {eps}")
    return eps[0]


def _load(model: VideoSwin, state: Mapping) -> None:
    """Copy torchvision's ``state`` into ``model``, checking every key, shape and index buffer first."""
    pairs = torchvision_key_pairs(model.config)
    expected = {tv for tv, _ in pairs}
    missing = [tv for tv, _ in pairs if tv not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ValueError(f"state_dict does not match the config's SwinTransformer3d: missing keys {_few(missing)}, "
                         f"unexpected keys {_few(unexpected)}")
    own, weights = model.state_dict(), {}
    index = relative_position_index(model.config.window_size)
    for tv, st in pairs:
        value = state[tv]
        if not isinstance(value, Tensor):
            raise TypeError(f"state_dict[{tv!r}] must be a torch.Tensor; got {type(value).__name__}")
        want = index if st is None else own[st]
        if tuple(value.shape) != tuple(want.shape):
            raise ValueError(f"state_dict[{tv!r}] must have shape {tuple(want.shape)} for the config; got "
                             f"{tuple(value.shape)}")
        if st is None:
            if value.is_floating_point() or not torch.equal(value.detach().to("cpu", torch.int64), index):
                raise ValueError(f"state_dict[{tv!r}] must be torchvision's relative position index of the window "
                                 f"{model.config.window_size}; got other values")
        elif not value.is_floating_point():
            raise ValueError(f"state_dict[{tv!r}] must be floating point; got {value.dtype}")
        else:
            weights[st] = value
    first = state["patch_embed.proj.weight"]
    model.to(device=first.device, dtype=first.dtype)
    model.load_state_dict(weights, strict=True)


def _few(keys: list[str], limit: int = 8) -> str:
    """The first ``limit`` keys, and how many there are in all."""
    return str(keys) if len(keys) <= limit else f"{keys[:limit]} (and {len(keys) - limit} more)"
