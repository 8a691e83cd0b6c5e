"""The blocks of a video U-Net: space-time convolutions, a timestep-conditioned residual block, and an
attention stage that adds (frame, row, column) positions before a transformer block.

All take and return ``(b, c, t, h, w)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..layers.conv import Conv3d
from ..ops.encodings import sinusoidal_table
from ..ops.patterns import PATTERNS, Spatial, Temporal
from .transformer import TransformerBlock

__all__ = ["SpaceTimeConv", "ResBlock", "AttentionStage", "CONV_KINDS", "group_count"]

#: residual convolutions: 3x3 in the frame then over time, or one k x 3 x 3 conv
CONV_KINDS = ("2+1d", "3d")


def group_count(channels: int) -> int:
    """GroupNorm groups for ``channels``: 4 channels a group, at most 32 groups."""
    return min(32, channels // 4)


class SpaceTimeConv(nn.Sequential):
    """On ``(b, c, t, h, w)``: a 3x3 conv within each frame, then a ``k``-tap conv across frames
    (``kind="2+1d"``), or one ``k x 3 x 3`` conv (``"3d"``: filters oriented in space-time, motion
    detectors, in one layer)."""

    def __init__(self, c_in: int, c_out: int, temporal_kernel: int, kind: str = "2+1d"):
        k = temporal_kernel
        if kind == "3d":
            super().__init__(Conv3d(c_in, c_out, (k, 3, 3), padding=(k // 2, 1, 1)))
        else:
            super().__init__(Conv3d(c_in, c_out, (1, 3, 3), padding=(0, 1, 1)),
                             Conv3d(c_out, c_out, (k, 1, 1), padding=(k // 2, 0, 0)))


class ResBlock(nn.Module):
    """Pre-activation residual block with the timestep embedding as a per-channel scale and shift.

    The last conv starts at zero, so a fresh block is the identity (or its 1x1 skip projection).
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, temporal_kernel: int, dropout: float, conv: str = "2+1d"):
        super().__init__()
        self.norm1 = nn.GroupNorm(group_count(c_in), c_in)
        self.conv1 = SpaceTimeConv(c_in, c_out, temporal_kernel, conv)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(group_count(c_out), c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = SpaceTimeConv(c_out, c_out, temporal_kernel, conv)
        nn.init.zeros_(self.conv2[-1].weight), nn.init.zeros_(self.conv2[-1].bias)
        self.skip = Conv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None, None].chunk(2, dim=1)  # (b, c, 1, 1, 1) each
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(self.drop(F.silu(h)))


class AttentionStage(nn.Module):
    """Positions (frame, row, column) added to the tokens, then a transformer block with one pattern.

    ``pattern`` is ``"factorized"`` (spatial then temporal attention) or a name of
    :data:`~spacetime.ops.patterns.PATTERNS`. The positions are a learned, zero-initialised mix of
    sinusoidal features of each coordinate, so a fresh stage adds nothing.
    """

    def __init__(self, dim: int, pattern: str, head_dim: int, mlp_ratio: float, rope: str | None = None):
        super().__init__()
        patterns = (Spatial(), Temporal()) if pattern == "factorized" else (PATTERNS[pattern](),)
        self.pos_dim = 32
        self.pos = nn.Linear(3 * self.pos_dim, dim)
        nn.init.zeros_(self.pos.weight)
        self.block = TransformerBlock(dim, dim // head_dim, patterns, mlp_ratio=mlp_ratio, rope=rope)

    def positions(self, t: int, h: int, w: int, device) -> Tensor:
        """``(t, h, w, dim)`` learned mix of sinusoidal features of each token's frame, row and column."""
        return self.pos(self._features(self._grid(t, h, w, device)))

    @staticmethod
    def _grid(t: int, h: int, w: int, device) -> Tensor:
        """``(t, h, w, 3)`` float (frame, row, column) of every token."""
        axes = (torch.arange(n, device=device, dtype=torch.float32) for n in (t, h, w))
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)

    def _features(self, grid: Tensor) -> Tensor:
        """``(..., 3)`` positions -> ``(..., 3 * pos_dim)`` sinusoidal features."""
        flat = grid.reshape(-1, 3)
        feats = [sinusoidal_table(flat[:, i], self.pos_dim, base=100.0) for i in range(3)]
        return torch.cat(feats, -1).view(*grid.shape[:-1], -1).to(self.pos.weight.dtype)

    def forward(self, x: Tensor, shift: Tensor | None = None) -> Tensor:
        """``shift`` ``(b, t, 2)``: per-frame (row, column) offset of the scene, in fractions of the frame."""
        b, _, t, h, w = x.shape
        tokens = rearrange(x, "b c t h w -> b t h w c")
        if shift is None:
            out = self.block.forward_channels_last(tokens + self.positions(t, h, w, x.device))
        else:  # tokens at their place in the scene: row + dy * h, column + dx * w
            offset = torch.cat([shift.new_zeros(b, t, 1), shift * shift.new_tensor([h, w])], -1)
            grid = self._grid(t, h, w, x.device) + offset[:, :, None, None, :]  # (b, t, h, w, 3)
            rotary = grid if self.block.attn[0].attn.rope is not None else None
            out = self.block.forward_channels_last(tokens + self.pos(self._features(grid)), positions=rotary)
        return rearrange(out, "b t h w c -> b c t h w")
