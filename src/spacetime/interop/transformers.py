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

import torch
from einops import rearrange
from torch import Tensor, nn

from ..models.classifier import VideoTransformer, VideoTransformerConfig
from ..ops.attention import attention

__all__ = ["from_transformers", "to_transformers_state_dict", "TransformersVideoModel", "register_transformers",
           "spacetime_attention", "ARCHITECTURES"]

#: model_type -> the attribute holding the base model inside ``...ForVideoClassification``
ARCHITECTURES = {"videomae": "videomae", "timesformer": "timesformer", "vivit": "vivit"}
#: transformers' activation names -> spacetime's (``layers.mlp.ACTIVATIONS``)
_ACTIVATIONS = {"gelu": "gelu", "gelu_fast": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                "quick_gelu": "quick_gelu", "silu": "silu", "swish": "silu"}


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ImportError("spacetime.interop needs transformers: pip install 'spacetime[interop]'") from None
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


def _full_config(cfg: dict):
    """The transformers config object of a dict (the class's defaults fill what the dict leaves out)."""
    transformers = _transformers()
    values = {k: v for k, v in cfg.items() if k not in ("model_type", "transformers_version")}
    return transformers.AutoConfig.for_model(cfg["model_type"], **values)


# --- configs -----------------------------------------------------------------------------------------


def _common(cfg, kind: str) -> dict:
    """The VideoTransformerConfig fields the three architectures set alike."""
    act = cfg.hidden_act
    if act not in _ACTIVATIONS:
        raise ValueError(f"{kind}: hidden_act={act!r} has no spacetime activation; supported: {sorted(_ACTIVATIONS)}")
    dim, heads = cfg.hidden_size, cfg.num_attention_heads
    if dim % heads or getattr(cfg, "head_dim", dim // heads) != dim // heads:
        raise ValueError(f"{kind}: hidden_size={dim} must split evenly into num_attention_heads={heads} heads "
                         f"(head_dim={getattr(cfg, 'head_dim', None)} is not supported)")
    ratio = cfg.intermediate_size / dim
    if int(dim * ratio) != cfg.intermediate_size:  # a ratio the float cannot hold: aim half a unit higher
        ratio = (cfg.intermediate_size + 0.5) / dim
    return {"in_channels": cfg.num_channels, "num_frames": cfg.num_frames, "image_size": cfg.image_size, "dim": dim,
            "depth": cfg.num_hidden_layers, "num_heads": heads, "mlp_ratio": ratio,
            "norm_eps": cfg.layer_norm_eps, "act": _ACTIVATIONS[act], "attn_drop": cfg.attention_probs_dropout_prob,
            "layout": "bcthw", "temporal_depth": 1}


def _spacetime_config(cfg, kind: str, num_classes: int) -> VideoTransformerConfig:
    """The :class:`VideoTransformerConfig` of a transformers config (unsupported options are refused by name)."""
    fields = {**_common(cfg, kind), "num_classes": num_classes}
    if kind == "videomae":
        if not cfg.use_mean_pooling:
            raise ValueError("videomae: use_mean_pooling=False (the first patch token as the read-out) is not "
                             "supported")
        fields.update(tubelet=(cfg.tubelet_size, *_pair(cfg.patch_size)), variant="joint", space_encoding="flat",
                      pool="mean", qkv_bias=cfg.qv_bias, final_norm_eps=1e-5)
    elif kind == "timesformer":
        variants = {"divided_space_time": "divided", "joint_space_time": "joint"}
        if cfg.attention_type not in variants:
            raise ValueError(f"timesformer: attention_type={cfg.attention_type!r} is not supported; supported: "
                             f"{sorted(variants)}")
        if not isinstance(cfg.image_size, int):
            raise ValueError(f"timesformer: image_size must be an int (TimeSformer's frames are square); got "
                             f"{cfg.image_size!r}")
        fields.update(tubelet=(1, *_pair(cfg.patch_size)), variant=variants[cfg.attention_type],
                      space_encoding="learned", time_encoding="learned", pool="token", qkv_bias=cfg.qkv_bias,
                      drop_path=cfg.drop_path_rate)
    else:
        fields.update(tubelet=tuple(cfg.tubelet_size), variant="joint", space_encoding="flat", pool="token",
                      qkv_bias=cfg.qkv_bias)
    return VideoTransformerConfig(**fields)


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


# --- weights -----------------------------------------------------------------------------------------

#: per block: spacetime key (under ``blocks.{i}.``) <- transformers key (under the layer), for plain renames
_LAYER_KEYS = {
    "videomae": {"attn.0.norm": "layernorm_before", "attn.0.attn.proj": "attention.output.dense",
                 "norm_mlp": "layernorm_after", "mlp.0": "intermediate.dense", "mlp.2": "output.dense"},
    "vivit": {"attn.0.norm": "layernorm_before", "attn.0.attn.proj": "attention.o_proj", "norm_mlp": "layernorm_after",
              "mlp.0": "mlp.fc1", "mlp.2": "mlp.fc2"},
    "timesformer_joint": {"attn.0.norm": "layernorm_before", "attn.0.attn.qkv": "attention.attention.qkv",
                          "attn.0.attn.proj": "attention.output.dense", "norm_mlp": "layernorm_after",
                          "mlp.0": "intermediate.dense", "mlp.2": "output.dense"},
    "timesformer_divided": {"attn.0.norm": "temporal_layernorm", "attn.0.attn.qkv": "temporal_attention.attention.qkv",
                            "attn.1.norm": "layernorm_before", "attn.1.attn.qkv": "attention.attention.qkv",
                            "attn.1.attn.proj": "attention.output.dense", "norm_mlp": "layernorm_after",
                            "mlp.0": "intermediate.dense", "mlp.2": "output.dense"},
}
#: where the encoder's layers sit, and the top-level renames, per architecture (under the base model's prefix)
_LAYERS = {"videomae": "encoder.layer", "timesformer": "encoder.layer", "vivit": "layers"}
_TOP_KEYS = {"videomae": {"patch_embed.proj": "embeddings.patch_embeddings.projection"},
             "timesformer": {"patch_embed.proj": "embeddings.patch_embeddings.projection", "norm": "layernorm"},
             "vivit": {"patch_embed.proj": "embeddings.patch_embeddings.projection", "norm": "layernorm"}}


def videomae_position_table(tokens: int, dim: int) -> Tensor:
    """VideoMAE's fixed position table ``(tokens, dim)``: the flat token index ``i`` over ``10000 ** (2 (j // 2) /
    dim)``, sine on even channels, cosine on odd ones; computed in float64, returned as float32."""
    index = torch.arange(tokens, dtype=torch.float64)[:, None]
    channel = torch.arange(dim, dtype=torch.float64)[None, :]
    angles = index / torch.pow(torch.tensor(10000.0, dtype=torch.float64), 2 * torch.div(channel, 2,
                                                                                          rounding_mode="floor") / dim)
    return torch.where(channel.long() % 2 == 0, angles.sin(), angles.cos()).float()


class _Keys:
    """Reads a transformers state_dict under one prefix, naming any missing key and the unused ones at the end."""

    def __init__(self, state: dict, prefix: str, kind: str):
        self.state, self.prefix, self.kind, self.used = state, prefix, kind, set()

    def __call__(self, key: str) -> Tensor:
        full = self.prefix + key
        if full not in self.state:
            raise KeyError(f"{self.kind} state_dict: missing key {full!r}")
        self.used.add(full)
        return self.state[full]

    def check_all_used(self) -> None:
        unused = sorted(set(self.state) - self.used)
        if unused:
            raise KeyError(f"{self.kind} state_dict: unexpected keys {unused[:8]}{' ...' if len(unused) > 8 else ''}")


def _grid(config: VideoTransformerConfig) -> tuple[int, int, int]:
    tt, ph, pw = config.tubelet
    return config.num_frames // tt, config.image_size[0] // ph, config.image_size[1] // pw


def _layer_weights(read: _Keys, kind: str, config: VideoTransformerConfig, i: int) -> dict[str, Tensor]:
    """Block ``i``'s spacetime weights from the transformers layer ``i``."""
    layer = f"{_LAYERS[kind]}.{i}."
    table = _LAYER_KEYS[f"timesformer_{config.variant}" if kind == "timesformer" else kind]
    out = {f"blocks.{i}.{ours}.{p}": read(f"{layer}{theirs}.{p}") for ours, theirs in table.items()
           for p in ("weight", "bias") if p == "weight" or read.prefix + f"{layer}{theirs}.bias" in read.state}
    if kind in ("videomae", "vivit"):  # separate q, k, v projections -> one qkv
        names = ("attention.attention.query", "attention.attention.key", "attention.attention.value") \
            if kind == "videomae" else ("attention.q_proj", "attention.k_proj", "attention.v_proj")
        weights = [read(f"{layer}{n}.weight") for n in names]
        out[f"blocks.{i}.attn.0.attn.qkv.weight"] = torch.cat(weights)
        if config.qkv_bias:  # VideoMAE has no key bias: a zero one, which no softmax can tell from none
            biases = [read(f"{layer}{n}.bias") if read.prefix + f"{layer}{n}.bias" in read.state
                      else weights[0].new_zeros(weights[0].shape[0]) for n in names]
            out[f"blocks.{i}.attn.0.attn.qkv.bias"] = torch.cat(biases)
    if kind == "timesformer" and config.variant == "divided":  # fold temporal_dense into the output projection
        w_o, b_o = (read(f"{layer}temporal_attention.output.dense.{p}") for p in ("weight", "bias"))
        w_d, b_d = (read(f"{layer}temporal_dense.{p}") for p in ("weight", "bias"))
        out[f"blocks.{i}.attn.0.attn.proj.weight"] = w_d @ w_o
        out[f"blocks.{i}.attn.0.attn.proj.bias"] = w_d @ b_o + b_d
    return out


def _spacetime_weights(state: dict, kind: str, config: VideoTransformerConfig, classification: bool) -> dict:
    """The spacetime state_dict of a transformers one (every key read, none left over)."""
    read = _Keys(state, ARCHITECTURES[kind] + "." if classification else "", kind)
    out = {f"{ours}.{p}": read(f"{theirs}.{p}") for ours, theirs in _TOP_KEYS[kind].items() for p in ("weight", "bias")}
    if kind == "timesformer":  # a 2-D convolution per frame: a 3-D one of one frame
        out["patch_embed.proj.weight"] = out["patch_embed.proj.weight"][:, :, None]
    t, h, w = _grid(config)
    if kind == "videomae":
        out["space_embed.weight"] = videomae_position_table(t * h * w, config.dim).reshape(t, h, w, -1)
    else:
        pos = read("embeddings.position_embeddings")[0]  # (1 + n, c): the class token's, then the patches'
        out["cls_token"], out["cls_pos"] = read("embeddings.cls_token"), pos[None, :1]
        out["space_embed.weight"] = pos[1:].reshape(t, h, w, -1) if kind == "vivit" else pos[1:].reshape(h, w, -1)
        if kind == "timesformer":
            out["time_embed.weight"] = read("embeddings.time_embeddings")[0]
    for i in range(config.depth):
        out.update(_layer_weights(read, kind, config, i))
    if classification:
        read.prefix = ""
        if kind == "videomae":
            out.update({f"norm.{p}": read(f"fc_norm.{p}") for p in ("weight", "bias")})
        out.update({f"head.{p}": read(f"classifier.{p}") for p in ("weight", "bias")})
    elif kind == "vivit":  # the pooler (dense + tanh on the class token): kept beside the model, not used
        out.update({f"pooler.{p}": read(f"pooler.dense.{p}") for p in ("weight", "bias")
                    if f"pooler.dense.{p}" in state})
    read.check_all_used()
    return out


def from_transformers(model, config=None) -> TransformersVideoModel:
    """A VideoMAE, TimeSformer or ViViT model (base or ``...ForVideoClassification``) as a spacetime model.

    ``model`` is the transformers model, or its ``state_dict`` with ``config`` (its config object or the
    dict of its ``config.json``). Returns a :class:`TransformersVideoModel` in eval mode whose
    ``forward(pixel_values)`` returns the original's ``logits`` (classification models) or
    ``last_hidden_state`` (base models). Unknown architectures, unsupported options and state_dicts
    with missing or unexpected keys are refused with an error naming them.
    """
    if isinstance(model, nn.Module):
        if config is not None:
            raise ValueError("config: give a model, or a state_dict with its config, not both")
        state, config = model.state_dict(), model.config
    elif isinstance(model, dict):
        if config is None:
            raise ValueError("config: a state_dict needs the model's config (its config object or config.json's dict)")
        state = model
    else:
        raise TypeError(f"model must be a transformers model or a state_dict; got {type(model).__name__}")
    raw = _config_dict(config)
    kind = _model_type(raw)
    cfg = config if not isinstance(config, dict) else _full_config(raw)
    classification = any(k.startswith(ARCHITECTURES[kind] + ".") for k in state)
    num_classes = state["classifier.weight"].shape[0] if classification and "classifier.weight" in state else 0
    if not isinstance(model, nn.Module):
        _check_shapes(state, cfg, classification, num_classes)
    st_config = _spacetime_config(cfg, kind, num_classes)
    network = VideoTransformer(st_config)
    weights = _spacetime_weights(state, kind, st_config, classification)
    pooler = None
    if "pooler.weight" in weights:
        pooler = nn.Linear(st_config.dim, weights["pooler.weight"].shape[0])
        pooler.load_state_dict({p: weights.pop(f"pooler.{p}") for p in ("weight", "bias")})
    unused_norm = kind == "videomae" and not classification  # VideoMAE's base model has no final norm
    expected = {k for k in network.state_dict() if not (unused_norm and k.startswith("norm."))}
    missing = sorted(expected - set(weights))
    if missing:
        raise KeyError(f"{kind}: no weights for spacetime keys {missing}")
    try:
        network.load_state_dict(weights, strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape for the config
        raise ValueError(f"{kind} state_dict does not fit its config: {exc}") from None
    output = "logits" if classification else "last_hidden_state"
    return TransformersVideoModel(network, kind, output, raw, pooler).eval()


def _check_shapes(state: dict, cfg, classification: bool, num_classes: int) -> None:
    """Every tensor of ``state`` against the original architecture's (built on the meta device: no memory)."""
    transformers = _transformers()
    auto = transformers.AutoModelForVideoClassification if classification else transformers.AutoModel
    cfg = cfg.__class__.from_dict({**cfg.to_dict(), "num_labels": max(1, num_classes)})
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in auto.from_config(cfg).state_dict().items()}
    for key, value in state.items():
        if key in expected and tuple(value.shape) != expected[key]:
            raise ValueError(f"{cfg.model_type} state_dict: {key!r} has shape {tuple(value.shape)}; its config makes "
                             f"it {expected[key]}")


def to_transformers_state_dict(converted: TransformersVideoModel) -> dict[str, Tensor]:
    """The transformers state_dict of a converted model: the original's tensors, exactly, except TimeSformer's
    folded temporal projection (given back as ``temporal_attention.output.dense`` = identity and the folded
    product as ``temporal_dense``: the same function)."""
    kind, config, ours = converted.model_type, converted.model.config, converted.model.state_dict()
    classification = converted.output == "logits"
    prefix = ARCHITECTURES[kind] + "." if classification else ""
    out = {f"{prefix}{theirs}.{p}": ours[f"{o}.{p}"] for o, theirs in _TOP_KEYS[kind].items()
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
        out.update({f"{prefix}{k}": v for k, v in _layer_state(ours, kind, config, i).items()})
    if classification:
        if kind == "videomae":
            out.update({f"fc_norm.{p}": ours[f"norm.{p}"] for p in ("weight", "bias")})
        out.update({f"classifier.{p}": ours[f"head.{p}"] for p in ("weight", "bias")})
    if converted.pooler is not None:
        out.update({f"pooler.dense.{p}": v for p, v in converted.pooler.state_dict().items()})
    return {k: v.clone() for k, v in out.items()}


def _layer_state(ours: dict, kind: str, config: VideoTransformerConfig, i: int) -> dict[str, Tensor]:
    """The transformers layer ``i`` of spacetime's block ``i`` (the inverse of :func:`_layer_weights`)."""
    layer, block = f"{_LAYERS[kind]}.{i}.", f"blocks.{i}."
    table = _LAYER_KEYS[f"timesformer_{config.variant}" if kind == "timesformer" else kind]
    out = {f"{layer}{theirs}.{p}": ours[f"{block}{o}.{p}"] for o, theirs in table.items() for p in ("weight", "bias")
           if f"{block}{o}.{p}" in ours}
    if kind in ("videomae", "vivit"):
        names = ("attention.attention.query", "attention.attention.key", "attention.attention.value") \
            if kind == "videomae" else ("attention.q_proj", "attention.k_proj", "attention.v_proj")
        for n, w in zip(names, ours[f"{block}attn.0.attn.qkv.weight"].chunk(3)):
            out[f"{layer}{n}.weight"] = w
        if config.qkv_bias:
            for n, b in zip(names, ours[f"{block}attn.0.attn.qkv.bias"].chunk(3)):
                if not (kind == "videomae" and n.endswith(".key")):
                    out[f"{layer}{n}.bias"] = b
    if kind == "timesformer" and config.variant == "divided":
        w = ours[f"{block}attn.0.attn.proj.weight"]
        out[f"{layer}temporal_attention.output.dense.weight"] = torch.eye(w.shape[1], dtype=w.dtype)
        out[f"{layer}temporal_attention.output.dense.bias"] = w.new_zeros(w.shape[1])
        out[f"{layer}temporal_dense.weight"] = w
        out[f"{layer}temporal_dense.bias"] = ours[f"{block}attn.0.attn.proj.bias"]
    return out


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
