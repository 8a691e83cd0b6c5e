"""A configurable video U-Net for diffusion: residual (2+1)-D conv blocks, attention where it pays.

``VideoUNet(VideoUNetConfig(...))`` or ``VideoUNet.from_preset("small")``. Input and output
``(B, C, T, H, W)``; ``forward(x, t)`` with ``t (B,)`` diffusion timesteps.

The stem folds ``patch x patch`` pixels into channels (pixel-unshuffle), so the first level already
works at a coarse grid; each further level halves H and W. Every level has ``blocks`` residual
blocks (GroupNorm, SiLU, a 3x3 spatial conv then a ``temporal_kernel`` conv over frames, the
timestep as a scale and shift); a level whose ``attention`` entry names a pattern adds a
pre-norm transformer block (:class:`~spacetime.blocks.TransformerBlock`) after each residual
block, with sinusoidal (frame, row, column) positions added first so attention knows where and
when each token is. ``"factorized"`` is spatial then temporal attention; the other names are the
core patterns (``"joint"``, ``"spatial"``, ``"temporal"``, ``"window"``, ``"cross_frame"``).
``rope="t"|"thw"`` also rotates queries and keys by frame (and row, column), so attention scores
depend on the offset between tokens: "the disk one frame later sits ``v`` pixels further" is the
same relation everywhere.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..blocks.transformer import TransformerBlock
from ..ops.encodings import ROPE_AXES, sinusoidal_table
from ..ops.layout import check_video
from ..ops.patterns import PATTERNS, Spatial, Temporal
from .configs import DictConfig

__all__ = ["VideoUNetConfig", "VideoUNet", "PRESETS", "ATTENTION_CHOICES"]

ATTENTION_CHOICES = ("factorized", *PATTERNS)


@dataclass
class VideoUNetConfig(DictConfig):
    """Shape of a :class:`VideoUNet`. Lists have one entry per level (finest first)."""

    in_channels: int = 1
    patch: int = 2
    channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    blocks: int = 1
    attention: list[str | None] = field(default_factory=lambda: [None, "joint", "joint"])
    head_dim: int = 16
    temporal_kernel: int = 3
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    rope: str | None = None  # rotary positions in every attention stage: None, "t" or "thw"

    def __post_init__(self):
        self.channels, self.attention = list(self.channels), list(self.attention)
        for name in ("in_channels", "patch", "blocks", "head_dim", "temporal_kernel"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        if self.temporal_kernel % 2 == 0:
            raise ValueError(f"temporal_kernel must be odd (same-length output); got {self.temporal_kernel}")
        if not self.channels or any(not isinstance(c, int) or c < 8 or c % 8 for c in self.channels):
            raise ValueError(f"channels must be a non-empty list of multiples of 8; got {self.channels!r}")
        if len(self.attention) != len(self.channels):
            raise ValueError(f"attention needs one entry per level ({len(self.channels)}); got {self.attention!r}")
        for a, c in zip(self.attention, self.channels):
            if a is not None and a not in ATTENTION_CHOICES:
                raise ValueError(f"attention entries must be None or one of {ATTENTION_CHOICES}; got {a!r}")
            if a is not None and c % self.head_dim:
                raise ValueError(f"channels {c} of an attention level must be a multiple of head_dim={self.head_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}")
        if self.rope is not None and self.rope not in ROPE_AXES:
            raise ValueError(f"rope must be None or one of {ROPE_AXES}; got {self.rope!r}")

    @property
    def downsample(self) -> int:
        """H and W must be multiples of this."""
        return self.patch * 2 ** (len(self.channels) - 1)


#: named configurations; "small" (the defaults) is the model of ``spacetime train``/``demo``
PRESETS: dict[str, VideoUNetConfig] = {
    "tiny": VideoUNetConfig(patch=4, channels=[16, 32], attention=[None, "joint"], head_dim=16),
    "small": VideoUNetConfig(),
    "base": VideoUNetConfig(channels=[64, 128, 128], head_dim=32),
    "large": VideoUNetConfig(channels=[64, 128, 192], blocks=2, head_dim=32),
}


def _groups(c: int) -> int:
    return min(32, c // 4)


class SpaceTimeConv(nn.Sequential):
    """A 3x3 conv within each frame, then a ``k``-tap conv across frames, on ``(b, c, t, h, w)``."""

    def __init__(self, c_in: int, c_out: int, temporal_kernel: int):
        super().__init__(nn.Conv3d(c_in, c_out, (1, 3, 3), padding=(0, 1, 1)),
                         nn.Conv3d(c_out, c_out, (temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0)))


class ResBlock(nn.Module):
    """Pre-activation residual block with the timestep embedding as a per-channel scale and shift."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, temporal_kernel: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = SpaceTimeConv(c_in, c_out, temporal_kernel)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = SpaceTimeConv(c_out, c_out, temporal_kernel)
        nn.init.zeros_(self.conv2[1].weight), nn.init.zeros_(self.conv2[1].bias)
        self.skip = nn.Conv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None, None].chunk(2, dim=1)  # (b, c, 1, 1, 1) each
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(self.drop(F.silu(h)))


class AttentionStage(nn.Module):
    """Positions (frame, row, column) added to the tokens, then a transformer block with the level's pattern."""

    def __init__(self, dim: int, pattern: str, head_dim: int, mlp_ratio: float, rope: str | None = None):
        super().__init__()
        patterns = (Spatial(), Temporal()) if pattern == "factorized" else (PATTERNS[pattern](),)
        self.pos_dim = 32
        self.pos = nn.Linear(3 * self.pos_dim, dim)
        nn.init.zeros_(self.pos.weight)
        self.block = TransformerBlock(dim, dim // head_dim, patterns, mlp_ratio=mlp_ratio, rope=rope)

    def positions(self, t: int, h: int, w: int, device) -> Tensor:
        """``(t, h, w, dim)`` learned mix of sinusoidal features of each token's frame, row and column."""
        feats = [sinusoidal_table(torch.arange(n, device=device), self.pos_dim, base=100.0) for n in (t, h, w)]
        grid = torch.cat([feats[0][:, None, None].expand(t, h, w, -1), feats[1][None, :, None].expand(t, h, w, -1),
                          feats[2][None, None, :].expand(t, h, w, -1)], dim=-1)
        return self.pos(grid)

    def forward(self, x: Tensor) -> Tensor:
        _, _, t, h, w = x.shape
        tokens = rearrange(x, "b c t h w -> b t h w c") + self.positions(t, h, w, x.device)
        return rearrange(self.block.forward_channels_last(tokens), "b t h w c -> b c t h w")


class Level(nn.Module):
    """``blocks`` residual blocks, each followed by an attention stage when the level has one."""

    def __init__(self, c_in: int, c_out: int, blocks: int, emb_dim: int, cfg: VideoUNetConfig, pattern: str | None):
        super().__init__()
        self.res = nn.ModuleList(
            ResBlock(c_in if i == 0 else c_out, c_out, emb_dim, cfg.temporal_kernel, cfg.dropout) for i in range(blocks)
        )
        self.attn = nn.ModuleList(
            AttentionStage(c_out, pattern, cfg.head_dim, cfg.mlp_ratio, cfg.rope)
            for _ in range(blocks if pattern else 0)
        )

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        for i, res in enumerate(self.res):
            x = res(x, emb)
            if self.attn:
                x = self.attn[i](x)
        return x


class VideoUNet(nn.Module):
    """The default denoiser of the diffusion pipeline (see the module docstring and :class:`VideoUNetConfig`)."""

    def __init__(self, config: VideoUNetConfig | None = None):
        super().__init__()
        cfg = config if config is not None else VideoUNetConfig()
        if not isinstance(cfg, VideoUNetConfig):
            raise TypeError(f"config must be a VideoUNetConfig; got {type(cfg).__name__}")
        self.config = cfg
        ch = cfg.channels
        emb_dim = 4 * ch[0]
        self.time_mlp = nn.Sequential(nn.Linear(ch[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.stem = nn.Conv3d(cfg.in_channels * cfg.patch**2, ch[0], (1, 3, 3), padding=(0, 1, 1))
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, c in enumerate(ch):
            self.down.append(Level(ch[max(i - 1, 0)], c, cfg.blocks, emb_dim, cfg, cfg.attention[i]))
            if i < len(ch) - 1:
                self.downsample.append(nn.Conv3d(c, c, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)))
        self.mid = Level(ch[-1], ch[-1], 1, emb_dim, cfg, cfg.attention[-1])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(ch))):
            c_below = ch[-1] if i == len(ch) - 1 else ch[i + 1]
            self.up.append(Level(c_below + ch[i], ch[i], cfg.blocks, emb_dim, cfg, cfg.attention[i]))
            if i > 0:
                self.upsample.append(nn.Conv3d(ch[i], ch[i], (1, 3, 3), padding=(0, 1, 1)))
        self.out_norm = nn.GroupNorm(_groups(ch[0]), ch[0])
        self.out = nn.Conv3d(ch[0], cfg.in_channels * cfg.patch**2, (1, 3, 3), padding=(0, 1, 1))
        nn.init.zeros_(self.out.weight), nn.init.zeros_(self.out.bias)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> VideoUNet:
        """A model from :data:`PRESETS` with optional field overrides: ``from_preset("small", in_channels=3)``."""
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}; got {name!r}")
        return cls(dataclasses.replace(PRESETS[name], **overrides))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        cfg = self.config
        b, _, h, w = check_video(x, "bcthw", cfg.in_channels)
        if h % cfg.downsample or w % cfg.downsample:
            raise ValueError(f"x needs H and W divisible by {cfg.downsample} (patch {cfg.patch}, {len(cfg.channels)} "
                             f"levels); got H={h}, W={w}")
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(b)
        if t.shape != (b,):
            raise ValueError(f"t must be a scalar or a (B,) tensor of timesteps with B={b}; got shape {tuple(t.shape)}")
        emb = self.time_mlp(sinusoidal_table(t, cfg.channels[0]))
        p = cfg.patch
        x = rearrange(x, "b c t (h p1) (w p2) -> b (c p1 p2) t h w", p1=p, p2=p)
        x = self.stem(x)
        skips = []
        for i, level in enumerate(self.down):
            x = level(x, emb)
            skips.append(x)
            if i < len(self.downsample):
                x = self.downsample[i](x)
        x = self.mid(x, emb)
        for j, level in enumerate(self.up):
            x = level(torch.cat([x, skips.pop()], dim=1), emb)
            if j < len(self.upsample):
                x = self.upsample[j](F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest"))
        x = self.out(F.silu(self.out_norm(x)))
        return rearrange(x, "b (c p1 p2) t h w -> b c t (h p1) (w p2)", p1=p, p2=p)
