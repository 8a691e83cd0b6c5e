"""transformers' video models as spacetime models with the same outputs, and spacetime's attention in theirs.

:func:`from_transformers` converts a VideoMAE, TimeSformer or ViViT model (the base model or the
``...ForVideoClassification`` one; a model object, or its ``state_dict`` with its config) into a
:class:`TransformersVideoModel`: a :class:`~spacetime.models.VideoTransformer` with the weights, whose
``forward(pixel_values)`` takes the same ``(B, T, C, H, W)`` clips and returns the same tensor
(``logits``, or ``last_hidden_state`` for a base model, tokens in the original's order).
:func:`to_transformers_state_dict` goes back. How each architecture maps:

``videomae``
    joint attention, VideoMAE's fixed sinusoidal table over every token as a flat position table
    (``space_encoding="flat"``), queries and values with biases (the key bias is zero, which no
    softmax can tell from none), mean pooling then ``fc_norm`` (its own epsilon, 1e-5).
``timesformer``
    ``divided_space_time`` is the ``divided`` variant with a class token in the sequence
    (``pool="token"``: TimeSformer's rule, spatial attention of each frame, averaged), its
    ``temporal_dense`` folded into the temporal attention's output projection (``W_d W_o``,
    ``W_d b_o + b_d``: exact up to float rounding; the fold is undone when converting back only
    approximately, so TimeSformer's round trip is exact for every other tensor); ``joint_space_time``
    is ``joint``. The class token's position is added to the class token once. The base model's
    tokens come back in TimeSformer's order, patch-major, frames inner.
``vivit``
    joint attention with a class token and a flat learned position table; ``gelu_fast`` is the
    tanh GELU.

Dropout rates are carried where spacetime has the same dropout; equality holds in eval mode.
:func:`register_transformers` makes ``attn_implementation="spacetime"`` run a transformers model's
attention through :func:`spacetime.ops.attention` (models that use transformers' ``AttentionInterface``:
VideoMAE, ViViT, V-JEPA 2; TimeSformer writes its softmax out and has no such hook).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor, nn

from ..models.classifier import VideoTransformer
from ..ops.attention import attention
from .transformers_mapping import (
    ARCHITECTURES,
    TOP_KEYS,
    spacetime_config,
    spacetime_weights,
    transformers_layer,
)

__all__ = ["from_transformers", "load_original", "to_transformers_state_dict", "TransformersVideoModel",
           "register_transformers", "spacetime_attention", "ARCHITECTURES"]



def _transformers():
    try:
        import transformers
    except ImportError:
        raise ImportError("spacetime.interop needs transformers: pip install -c constraints.txt -e '.[interop]' in a "
                          "clone of spacetime, or pip install transformers") from None
    return transformers


class TransformersVideoModel(nn.Module):
    """A converted transformers video model: ``forward(pixel_values)``, ``(B, T, C, H, W)`` clips, returns what the
    original returns: its ``logits`` (``output="logits"``) or its ``last_hidden_state``.

    ``model`` is the :class:`~spacetime.models.VideoTransformer` doing the work, on spacetime's ``(B, C, T, H, W)``
    clips (what ``spacetime classify`` feeds it); ``source_config`` is the
    original's config as a dict. ``pooler`` keeps ViViT's base-model pooler (``pooler_output``, not
    computed here) so that the conversion back is exact.
    """

    def __init__(self, model: VideoTransformer, model_type: str, output: str, source_config: dict | None = None,
                 pooler: nn.Linear | None = None):
        super().__init__()
        if output not in ("logits", "last_hidden_state"):
            raise ValueError(f"output must be 'logits' or 'last_hidden_state'; got {output!r}")
        self.model, self.model_type, self.output, self.pooler = model, model_type, output, pooler
        self.source_config = dict(source_config or {})

    def forward(self, pixel_values: Tensor) -> Tensor:
        x = rearrange(pixel_values, "b t c h w -> b c t h w")  # transformers' layout -> spacetime's (a view)
        if self.output == "logits":
            return self.model(x)
        tokens = self.model.forward_tokens(x)  # (b, p + t h w, c), (t h w) order
        if self.model_type != "timesformer":
            return tokens
        tt, ph, pw = self.model.config.tubelet
        grid = (pixel_values.shape[1] // tt, pixel_values.shape[3] // ph, pixel_values.shape[4] // pw)
        patches = rearrange(tokens[:, 1:], "b (t h w) c -> b (h w t) c", t=grid[0], h=grid[1], w=grid[2])
        return torch.cat([tokens[:, :1], patches], dim=1)  # TimeSformer's order: patch-major, frames inner


def _config_dict(config) -> dict:
    if isinstance(config, dict):
        return dict(config)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    raise TypeError(f"config must be a transformers config or a dict of one; got {type(config).__name__}")


def _model_type(cfg: dict) -> str:
    kind = cfg.get("model_type")
    if kind not in ARCHITECTURES:
        raise ValueError(f"from_transformers converts {sorted(ARCHITECTURES)} models; got model_type={kind!r}")
    return kind


def from_transformers(model, config=None) -> TransformersVideoModel:
    """A VideoMAE, TimeSformer or ViViT model (base or ``...ForVideoClassification``) as a spacetime model.

    ``model`` is the transformers model, a ``state_dict`` with ``config`` (its config object or the dict
    of its ``config.json``), or the path of a checkpoint folder (transformers' ``save_pretrained``
    layout). Checkpoints in the hub's key layout are read through transformers' own loader, so its
    key renames apply. Returns a :class:`TransformersVideoModel` in eval mode whose
    ``forward(pixel_values)`` returns the original's ``logits`` (classification models) or
    ``last_hidden_state`` (base models). Unknown architectures, unsupported options and checkpoints
    with missing, unexpected or wrongly shaped tensors are refused with an error naming them.
    """
    if isinstance(model, nn.Module):
        if config is not None:
            raise ValueError("config: give a model, or a state_dict with its config, not both")
    elif isinstance(model, (dict, str, Path)):
        model = load_original(model, config)
    else:
        raise TypeError(f"model must be a transformers model, a state_dict or a checkpoint folder; got "
                        f"{type(model).__name__}")
    state, raw = model.state_dict(), _config_dict(model.config)
    kind = _model_type(raw)
    classification = any(k.startswith(ARCHITECTURES[kind] + ".") for k in state)
    num_classes = state["classifier.weight"].shape[0] if "classifier.weight" in state else 0
    st_config = spacetime_config(model.config, kind, num_classes)
    network = VideoTransformer(st_config)
    weights = spacetime_weights(state, kind, st_config, classification)
    pooler = None
    if "pooler.weight" in weights:
        pooler = nn.Linear(st_config.dim, weights["pooler.weight"].shape[0])
        pooler.load_state_dict({p: weights.pop(f"pooler.{p}") for p in ("weight", "bias")})
    unused_norm = kind == "videomae" and not classification  # VideoMAE's base model has no final norm
    missing = sorted({k for k in network.state_dict() if not (unused_norm and k.startswith("norm."))} - set(weights))
    if missing:
        raise ValueError(f"{kind}: no weights for spacetime keys {missing}")
    network.load_state_dict(weights, strict=False)
    output = "logits" if classification else "last_hidden_state"
    return TransformersVideoModel(network, kind, output, raw, pooler).eval()


def load_original(source, config=None) -> nn.Module:
    """The transformers model of a checkpoint folder, or of a ``state_dict`` and its ``config`` (either key layout:
    the model's or the hub's), loaded by transformers; missing, unexpected or wrongly shaped tensors are errors."""
    transformers = _transformers()
    if not isinstance(source, dict):
        folder = Path(source)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"checkpoint {folder}: no config.json (transformers' save_pretrained layout)")
        raw = json.loads((folder / "config.json").read_text())
        _model_type(raw)
        return _from_folder(transformers, folder, raw)
    if config is None:
        raise ValueError("config: a state_dict needs the model's config (its config object or config.json's dict)")
    raw = _config_dict(config)
    _model_type(raw)
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:  # transformers' loader reads folders
        save_file({k: v.contiguous() for k, v in source.items()}, f"{tmp}/model.safetensors")
        Path(tmp, "config.json").write_text(json.dumps(raw, default=str))
        return _from_folder(transformers, Path(tmp), raw)


def _from_folder(transformers, folder: Path, raw: dict) -> nn.Module:
    weights = [folder / n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).is_file()]
    if not weights:
        raise FileNotFoundError(f"checkpoint {folder}: no model.safetensors or pytorch_model.bin")
    kind = raw["model_type"]
    classification = any(k.startswith(ARCHITECTURES[kind] + ".") for k in read_keys(weights[0]))
    auto = transformers.AutoModelForVideoClassification if classification else transformers.AutoModel
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the loader's own report: the checks below say what matters
    try:
        model, info = auto.from_pretrained(folder, output_loading_info=True, ignore_mismatched_sizes=True)
    finally:
        transformers.logging.set_verbosity(verbosity)
    if info["mismatched_keys"]:
        key, got, want = sorted(info["mismatched_keys"])[0]
        raise ValueError(f"{kind} checkpoint: {key!r} has shape {tuple(got)}; its config makes it {tuple(want)}")
    if info["missing_keys"]:
        raise ValueError(f"{kind} checkpoint: missing keys {sorted(info['missing_keys'])[:8]}")
    if info["unexpected_keys"]:
        raise ValueError(f"{kind} checkpoint: unexpected keys {sorted(info['unexpected_keys'])[:8]}")
    return model.eval()


def read_keys(path: Path) -> list[str]:
    """The tensor names of a ``.safetensors`` or ``torch.save`` file."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    return list(torch.load(path, map_location="cpu", weights_only=True))


def to_transformers_state_dict(converted: TransformersVideoModel) -> dict[str, Tensor]:
    """The transformers state_dict of a converted model: the original's tensors, exactly, except TimeSformer's
    folded temporal projection (given back as ``temporal_attention.output.dense`` = identity and the folded
    product as ``temporal_dense``: the same function)."""
    kind, config, ours = converted.model_type, converted.model.config, converted.model.state_dict()
    classification = converted.output == "logits"
    prefix = ARCHITECTURES[kind] + "." if classification else ""
    out = {f"{prefix}{theirs}.{p}": ours[f"{o}.{p}"] for o, theirs in TOP_KEYS[kind].items()
           for p in ("weight", "bias")}
    if kind == "timesformer":  # its patches are a 2-D convolution per frame
        key = f"{prefix}embeddings.patch_embeddings.projection.weight"
        out[key] = out[key][:, :, 0]
    if kind != "videomae":
        out[f"{prefix}embeddings.cls_token"] = ours["cls_token"]
        patches = ours["space_embed.weight"].reshape(-1, config.dim)
        out[f"{prefix}embeddings.position_embeddings"] = torch.cat([ours["cls_pos"][0], patches])[None]
        if kind == "timesformer":
            out[f"{prefix}embeddings.time_embeddings"] = ours["time_embed.weight"][None]
    for i in range(config.depth):
        out.update({f"{prefix}{k}": v for k, v in transformers_layer(ours, kind, config, i).items()})
    if classification:
        if kind == "videomae":
            out.update({f"fc_norm.{p}": ours[f"norm.{p}"] for p in ("weight", "bias")})
        out.update({f"classifier.{p}": ours[f"head.{p}"] for p in ("weight", "bias")})
    if converted.pooler is not None:
        out.update({f"pooler.dense.{p}": v for p, v in converted.pooler.state_dict().items()})
    return {k: v.clone() for k, v in out.items()}


# --- spacetime's attention inside transformers' models -----------------------------------------------


def spacetime_attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                        scaling: float | None = None, dropout: float = 0.0, is_causal: bool | None = None,
                        **kwargs) -> tuple[Tensor, None]:
    """An attention function for transformers' ``AttentionInterface``: ``(b, heads, n, d)`` queries and keys (fewer
    key heads are repeated), the additive or boolean ``attention_mask``, through :func:`spacetime.ops.attention`
    (its exact masking and batch split). Returns ``((b, n, heads, d), None)``: no attention weights."""
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    causal = bool(getattr(module, "is_causal", False) if is_causal is None else is_causal)
    if attention_mask is not None:
        attention_mask = attention_mask[..., : key.shape[-2]]  # a mask longer than the keys (a static cache)
    out = attention(query, key, value, mask=attention_mask, causal=causal and attention_mask is None, scale=scaling,
                    dropout_p=dropout if module.training else 0.0)
    return out.transpose(1, 2).contiguous(), None


def register_transformers(name: str = "spacetime") -> str:
    """Register :func:`spacetime_attention` with transformers as ``attn_implementation=name``; returns ``name``.

    Then ``Model.from_pretrained(..., attn_implementation="spacetime")`` or
    ``model.set_attn_implementation("spacetime")`` runs the model's attention through spacetime.
    """
    _transformers().AttentionInterface.register(name, spacetime_attention)
    return name
