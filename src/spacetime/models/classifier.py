"""``VideoTransformer``: a TimeSformer / ViViT video classifier built from the library's blocks.

Tokens come from a tubelet embedding, get separate space and time encodings, pass through
:class:`~spacetime.blocks.TransformerBlock` s whose attention pattern is the variant, and a CLS
token reads them out:

``divided``
    TimeSformer's divided space-time attention: in every block, temporal attention (each patch
    across the frames), then spatial attention (the patches of each frame), then the MLP.
``joint``
    ViViT model 1: full attention over all ``t*h*w`` tokens.
``factorized_encoder``
    ViViT model 2: a spatial encoder on each frame, its tokens averaged to one per frame, then a
    temporal encoder over the frame tokens.
``space_only``
    a per-frame image transformer whose tokens are pooled over the whole clip. As in
    TimeSformer's ``space_only``, it gets no time encoding: it sees the clip as an unordered set
    of frames, the baseline that shows whether a task needs time.

Read-outs (``pool``): ``"cls"``, a class-attention read-out (CaiT): after the blocks, one query
token attends to itself and every token; patch tokens never attend to it, which is what lets
every attention pattern run unchanged on the ``(t, h, w)`` grid, and it keeps padded frames out of
the read-out. ``"token"``, a class token in the sequence, as ViT, ViViT and TimeSformer have it: a
prefix token every attention lets every token see (:mod:`spacetime.ops.prefix`); with ``divided``
it skips the temporal attention and joins the spatial attention of every frame, averaged over
frames (TimeSformer's rule); the tokens are normed, then the class token read. ``"mean"``, the
mean of the tokens, then the norm (VideoMAE's).

Time encodings: ``"learned"`` (a table for ``num_frames`` token frames, linearly resampled for
other lengths), ``"sinusoidal"`` (any length), ``"rope"`` (rotary over frame index inside every
attention layer; with ``space_encoding="rope"`` rotary over time, rows and columns) or ``"none"``.
``space_encoding="flat"`` is one learned table over every token of the clip ``(t, h, w)`` (ViViT's
and VideoMAE's position tables), which then carries time too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from ..blocks.transformer import TransformerBlock
from ..checks import int_at_least, int_tuple, number_in, one_of, positive_int
from ..config import Config
from ..layers.attention import check_heads
from ..layers.embeddings import PositionEmbedding, TubeletEmbedding
from ..layers.mlp import ACTIVATIONS
from ..layers.pooling import ClassAttentionPool
from ..ops.layout import check_layout, check_video
from ..ops.patterns import Joint, Spatial, Temporal, check_frame_mask
from .base import Model

__all__ = ["VideoTransformer", "VideoTransformerConfig", "PRESETS", "VARIANTS"]

VARIANTS = ("divided", "joint", "factorized_encoder", "space_only")
TIME_ENCODINGS = ("learned", "sinusoidal", "rope", "none")
SPACE_ENCODINGS = ("learned", "sinusoidal", "rope", "flat")
POOLS = ("cls", "token", "mean")


@dataclass
class VideoTransformerConfig(Config):
    """Everything that defines a :class:`VideoTransformer` (saved as JSON beside checkpoints).

    ``num_frames`` and ``image_size`` are the clip the model is built for: they size the learned
    position tables, which are resampled for other sizes. ``time_encoding=None`` means the
    variant's own: ``"learned"``, or ``"none"`` for ``space_only`` (:attr:`time_kind`).
    ``temporal_depth`` is the temporal encoder of ``factorized_encoder``. ``rope_base`` is the
    longest rotary period (short clips and small grids use the rotation better with a base near
    their length than with the LLM default 10000). ``drop_path`` is the stochastic-depth rate of
    the last block (linearly increasing from 0). ``norm_eps`` is every LayerNorm's epsilon but the
    final one's, ``final_norm_eps`` (``None``: the same); ``act`` the MLPs' activation.
    ``num_classes=0`` builds no head: the model returns the pooled features.
    """

    num_classes: int = 400
    in_channels: int = 3
    num_frames: int = 8
    image_size: tuple[int, int] | int = 224
    tubelet: tuple[int, int, int] = (2, 16, 16)
    variant: str = "divided"
    dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    temporal_depth: int = 4
    time_encoding: str | None = None
    space_encoding: str = "learned"
    pool: str = "cls"
    rope_base: float = 10000.0
    qkv_bias: bool = True
    qk_norm: bool = False
    drop_path: float = 0.0
    attn_drop: float = 0.0
    head_drop: float = 0.0
    layout: str = "bcthw"
    norm_eps: float = 1e-5
    final_norm_eps: float | None = None
    act: str = "gelu"

    def __post_init__(self):
        self.image_size = int_tuple("image_size", self.image_size, 2, axes="(H, W)")
        self.tubelet = int_tuple("tubelet", self.tubelet, 3, axes="(tt, ph, pw)")
        for name in ("in_channels", "num_frames", "dim", "depth", "temporal_depth"):
            positive_int(name, getattr(self, name))
        int_at_least("num_classes", self.num_classes, 0, note=" (0: no head)")
        number_in("norm_eps", self.norm_eps, 0, low_open=True)
        number_in("final_norm_eps", self.final_norm_eps, 0, low_open=True, none_ok=True)
        one_of("act", self.act, ACTIVATIONS)
        clip = (self.num_frames, *self.image_size)
        if any(n < p for n, p in zip(clip, self.tubelet)):
            raise ValueError(f"the clip (num_frames, H, W) = {clip} is shorter than the tubelet {self.tubelet} on "
                             f"some axis")
        check_heads(self.dim, self.num_heads)
        one_of("variant", self.variant, VARIANTS)
        one_of("time_encoding", self.time_encoding, TIME_ENCODINGS, none_ok=True)
        one_of("space_encoding", self.space_encoding, SPACE_ENCODINGS)
        one_of("pool", self.pool, POOLS)
        for name in ("drop_path", "attn_drop", "head_drop"):
            number_in(name, getattr(self, name), 0, 1, high_open=True)
        check_layout(self.layout)
        if self.variant == "space_only" and self.time_kind != "none":
            raise ValueError(
                "variant 'space_only' treats the clip as an unordered set of frames and takes no time encoding; "
                f"got time_encoding={self.time_encoding!r} (use 'none' or another variant)"
            )
        if self.space_encoding == "rope" and self.time_kind != "rope":
            raise ValueError(
                "space_encoding='rope' is 3-D rotary over (t, h, w) and needs time_encoding='rope'; "
                f"got time_encoding={self.time_encoding!r}"
            )
        if self.space_encoding == "flat" and self.time_kind != "none":
            raise ValueError("space_encoding='flat' is one table over (t, h, w) that carries time too: it needs "
                             f"time_encoding=None or 'none'; got time_encoding={self.time_encoding!r}")
        if self.pool == "token" and self.variant not in ("divided", "joint"):
            raise ValueError(f"pool='token' (a class token in the sequence) is built for the 'divided' and 'joint' "
                             f"variants; got variant={self.variant!r} (use pool='cls' or 'mean')")

    @property
    def time_kind(self) -> str:
        """The time encoding the model uses: ``time_encoding``, or the variant's own when that is ``None``."""
        if self.time_encoding is not None:
            return self.time_encoding
        return "none" if self.variant == "space_only" or self.space_encoding == "flat" else "learned"

    @property
    def rope(self) -> str | None:
        """The ``rope=`` of every attention layer."""
        if self.time_kind != "rope":
            return None
        return "thw" if self.space_encoding == "rope" else "t"


#: sizes by name; ``micro`` trains in minutes on a CPU, the others follow ViT/DeiT widths
PRESETS: dict[str, VideoTransformerConfig] = {
    "micro": VideoTransformerConfig(dim=64, depth=4, num_heads=4, mlp_ratio=2.0, temporal_depth=2),
    "tiny": VideoTransformerConfig(dim=192, depth=12, num_heads=3, temporal_depth=4),
    "small": VideoTransformerConfig(dim=384, depth=12, num_heads=6, temporal_depth=4),
    "base": VideoTransformerConfig(dim=768, depth=12, num_heads=12, temporal_depth=4),
}


class VideoTransformer(Model):
    """A video classifier: tubelets -> space/time encodings -> transformer blocks -> CLS -> logits.

    ``model(x, frame_mask=None)``: ``x`` a video in ``config.layout`` (default ``(b, c, t, h, w)``),
    any number of frames that the tubelet divides; ``frame_mask`` bool ``(b, t)`` with ``True`` for
    real frames runs a batch of clips padded to one length (each tubelet must be all real or all
    padding). Returns ``(b, num_classes)`` logits. Build it from a config or a preset:
    ``VideoTransformer(VideoTransformerConfig(...))``,
    ``VideoTransformer.from_preset("tiny", num_classes=10, variant="joint")``.
    """

    config_class = VideoTransformerConfig
    presets = PRESETS

    def __init__(self, config: VideoTransformerConfig):
        super().__init__(config)
        c = config
        self.patch_embed = TubeletEmbedding(c.in_channels, c.dim, c.tubelet, layout=c.layout)
        grid = (c.image_size[0] // c.tubelet[1], c.image_size[1] // c.tubelet[2])
        frames = max(1, c.num_frames // c.tubelet[0])
        flat = c.space_encoding == "flat"
        self.space_embed = None if c.space_encoding == "rope" else \
            PositionEmbedding(c.dim, (frames, *grid) if flat else grid, "learned" if flat else c.space_encoding)
        self.time_embed = (PositionEmbedding(c.dim, frames, c.time_kind)
                           if c.time_kind in ("learned", "sinusoidal") else None)
        token = c.pool == "token"  # the class token and its own position embedding
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim)) if token else None
        self.cls_pos = nn.Parameter(torch.zeros(1, 1, c.dim)) if token else None
        self.blocks, self.temporal_blocks = self._build_blocks(c)
        if c.variant == "factorized_encoder":
            self.norm_space = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.pool = ClassAttentionPool(c.dim, c.num_heads, mlp_ratio=c.mlp_ratio, qkv_bias=c.qkv_bias) \
            if c.pool == "cls" else None
        self.norm = nn.LayerNorm(c.dim, eps=c.norm_eps if c.final_norm_eps is None else c.final_norm_eps)
        self.head_drop = nn.Dropout(c.head_drop)
        self.head = nn.Linear(c.dim, c.num_classes) if c.num_classes else nn.Identity()
        self.apply(_init_weights)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    @staticmethod
    def _build_blocks(c: VideoTransformerConfig) -> tuple[nn.ModuleList, nn.ModuleList]:
        """The variant's transformer blocks, and the temporal encoder's (``factorized_encoder`` only)."""
        rates = torch.linspace(0, c.drop_path, c.depth + (c.temporal_depth if c.variant == "factorized_encoder" else 0))
        common = {"mlp_ratio": c.mlp_ratio, "qkv_bias": c.qkv_bias, "qk_norm": c.qk_norm, "attn_drop": c.attn_drop,
                  "rope": c.rope, "rope_base": c.rope_base, "norm_eps": c.norm_eps, "act": c.act}
        patterns = {"divided": (Temporal(), Spatial()), "joint": (Joint(),), "factorized_encoder": (Spatial(),),
                    "space_only": (Spatial(),)}[c.variant]
        if c.pool == "token" and c.variant == "divided":  # TimeSformer's class token: spatial attention only
            common.update(sees_prefix=(False, True), prefix_mode="mean")
        blocks = nn.ModuleList(
            TransformerBlock(c.dim, c.num_heads, patterns, drop_path=float(rates[i]), **common) for i in range(c.depth)
        )
        temporal = nn.ModuleList()
        if c.variant == "factorized_encoder":
            temporal.extend(
                TransformerBlock(c.dim, c.num_heads, (Temporal(),), drop_path=float(rates[c.depth + i]), **common)
                for i in range(c.temporal_depth)
            )
        return blocks, temporal

    def token_mask(self, frame_mask: Tensor | None, b: int, t: int, device=None) -> Tensor | None:
        """``(b, t)`` frame mask -> ``(b, t // tt)`` mask of token frames (validated)."""
        if frame_mask is None:
            return None
        check_frame_mask(frame_mask, b, t, device)
        tt = self.config.tubelet[0]
        per_tube = rearrange(frame_mask, "b (nt tt) -> b nt tt", tt=tt)
        if tt > 1 and not torch.compiler.is_compiling() and bool((per_tube.any(-1) != per_tube.all(-1)).any()):
            raise ValueError(
                f"frame_mask must be all real or all padding within each tubelet of {tt} frames; "
                f"got real frames per sample {frame_mask.sum(1).tolist()}"
            )
        return per_tube[..., 0]

    def _encode(self, x: Tensor, frame_mask: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """``x -> (tokens (b, t, h, w, dim), class token (b, 1, dim) or None, token-frame mask or None)``."""
        b, t_in, _, _ = check_video(x, self.config.layout, self.config.in_channels)
        tokens = self.patch_embed(x)  # (b, t, h, w, dim); validates the tubelet tiling
        mask = self.token_mask(frame_mask, b, t_in, x.device)  # (b, t) or None
        _, t, h, w, _ = tokens.shape
        if self.config.space_encoding == "flat":
            tokens = tokens + self.space_embed(t, h, w, device=x.device).to(tokens.dtype)
        elif self.space_embed is not None:
            tokens = tokens + self.space_embed(h, w, device=x.device).to(tokens.dtype)
        if self.config.variant == "factorized_encoder":
            for block in self.blocks:
                tokens = block.forward_channels_last(tokens, frame_mask=mask)
            tokens = self.norm_space(tokens.mean(dim=(2, 3)))[:, :, None, None]  # (b, t, 1, 1, dim)
        if self.time_embed is not None:
            tokens = tokens + self.time_embed(t, device=x.device).to(tokens.dtype)[:, None, None, :]
        blocks = self.blocks if self.config.variant != "factorized_encoder" else self.temporal_blocks
        return self._run_blocks(blocks, tokens, mask)

    def _run_blocks(self, blocks: nn.ModuleList, tokens: Tensor, mask: Tensor | None):
        """``blocks`` on ``tokens`` ``(b, t, h, w, dim)``, with the class token as their prefix where the model has one:
        ``(tokens, cls or None, mask)``."""
        if self.cls_token is None:
            for block in blocks:
                tokens = block.forward_channels_last(tokens, frame_mask=mask)
            return tokens, None, mask
        cls = (self.cls_token + self.cls_pos).expand(tokens.shape[0], -1, -1).to(tokens.dtype)
        for block in blocks:
            tokens, cls = block.forward_channels_last(tokens, frame_mask=mask, prefix=cls)
        return tokens, cls, mask

    def forward_tokens(self, x: Tensor, frame_mask: Tensor | None = None) -> Tensor:
        """``x -> (b, p + t*h*w, dim)``: the class token (``pool="token"``, ``p = 1``) and every token in ``(t, h, w)``
        order, as the last block leaves them, normed where the read-out norms them (``pool="token"``)."""
        tokens, cls, _ = self._encode(x, frame_mask)
        seq = rearrange(tokens, "b t h w c -> b (t h w) c")
        return self.norm(torch.cat([cls, seq], dim=1)) if cls is not None else seq

    def forward_features(self, x: Tensor, frame_mask: Tensor | None = None) -> Tensor:
        """``x -> (b, dim)``: the pooled clip representation before the head."""
        tokens, cls, mask = self._encode(x, frame_mask)
        return self.norm(cls[:, 0] if cls is not None else self._pool(tokens, mask))

    def _pool(self, tokens: Tensor, mask: Tensor | None) -> Tensor:
        """``(b, t, h, w, dim)`` tokens and their ``(b, t)`` frame mask -> ``(b, dim)``: the class-attention read-out
        (``pool="cls"``) or the mean over real tokens (an all-padding clip gives zeros)."""
        _, t, h, w, _ = tokens.shape
        seq = rearrange(tokens, "b t h w c -> b (t h w) c")
        seq_mask = None if mask is None else repeat(mask, "b t -> b (t h w)", h=h, w=w)
        if self.pool is not None:
            return self.pool(seq, seq_mask)
        if seq_mask is None:
            return seq.mean(dim=1)
        weights = seq_mask.to(seq.dtype)[:, :, None]
        return (seq * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def forward(self, x: Tensor, frame_mask: Tensor | None = None) -> Tensor:
        """``x`` in ``config.layout`` -> ``(b, num_classes)`` logits."""
        return self.head(self.head_drop(self.forward_features(x, frame_mask)))


def _init_weights(module: nn.Module) -> None:
    """Xavier-uniform linear weights and zero biases, as the original (JAX) ViT.

    timm's trunc-normal(0.02) is close to ``dim ** -0.5`` at width 768, but at the widths that
    train on a CPU (64) it is 6x smaller and starts every attention almost uniform.
    """
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)

