"""How transformers' VideoMAE, TimeSformer and ViViT map onto :class:`~spacetime.models.VideoTransformer`: the config
of each (unsupported options refused by name) and its tensors, both ways (:mod:`spacetime.interop.transformers`)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..models.classifier import VideoTransformerConfig

__all__ = ["ARCHITECTURES", "spacetime_config", "spacetime_weights", "transformers_layer", "videomae_position_table",
           "LAYERS", "TOP_KEYS"]

#: model_type -> the attribute holding the base model inside ``...ForVideoClassification``
ARCHITECTURES = {"videomae": "videomae", "timesformer": "timesformer", "vivit": "vivit"}
#: transformers' activation names -> spacetime's (``layers.mlp.ACTIVATIONS``)
_ACTIVATIONS = {"gelu": "gelu", "gelu_fast": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                "quick_gelu": "quick_gelu", "silu": "silu", "swish": "silu"}


# --- configs -----------------------------------------------------------------------------------------


def _common(cfg, kind: str) -> dict:
    """The VideoTransformerConfig fields the three architectures set alike."""
    act = cfg.hidden_act
    if act not in _ACTIVATIONS:
        raise ValueError(f"{kind}: hidden_act={act!r} has no spacetime activation; supported: {sorted(_ACTIVATIONS)}")
    hidden_drop = getattr(cfg, "hidden_dropout_prob", 0.0)
    if hidden_drop:
        raise ValueError(f"{kind}: hidden_dropout_prob={hidden_drop} (dropout on the blocks' outputs) has no spacetime "
                         f"counterpart; set it to 0.0 (outputs in eval mode do not depend on it)")
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


def spacetime_config(cfg, kind: str, num_classes: int) -> VideoTransformerConfig:
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
LAYERS = {"videomae": "encoder.layer", "timesformer": "encoder.layer", "vivit": "layers"}
TOP_KEYS = {"videomae": {"patch_embed.proj": "embeddings.patch_embeddings.projection"},
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
            raise ValueError(f"{self.kind} state_dict: missing key {full!r}")
        self.used.add(full)
        return self.state[full]

    def check_all_used(self) -> None:
        unused = sorted(set(self.state) - self.used)
        if unused:
            raise ValueError(f"{self.kind} state_dict: unexpected keys {unused[:8]}{' ...' if len(unused) > 8 else ''}")


def _grid(config: VideoTransformerConfig) -> tuple[int, int, int]:
    tt, ph, pw = config.tubelet
    return config.num_frames // tt, config.image_size[0] // ph, config.image_size[1] // pw


def _layer_weights(read: _Keys, kind: str, config: VideoTransformerConfig, i: int) -> dict[str, Tensor]:
    """Block ``i``'s spacetime weights from the transformers layer ``i``."""
    layer = f"{LAYERS[kind]}.{i}."
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


def spacetime_weights(state: dict, kind: str, config: VideoTransformerConfig, classification: bool) -> dict:
    """The spacetime state_dict of a transformers one (every key read, none left over)."""
    read = _Keys(state, ARCHITECTURES[kind] + "." if classification else "", kind)
    out = {f"{ours}.{p}": read(f"{theirs}.{p}") for ours, theirs in TOP_KEYS[kind].items() for p in ("weight", "bias")}
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


def transformers_layer(ours: dict, kind: str, config: VideoTransformerConfig, i: int) -> dict[str, Tensor]:
    """The transformers layer ``i`` of spacetime's block ``i`` (the inverse of :func:`_layer_weights`)."""
    layer, block = f"{LAYERS[kind]}.{i}.", f"blocks.{i}."
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
