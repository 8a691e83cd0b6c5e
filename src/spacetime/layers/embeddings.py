"""Token embeddings for video transformers: tubelet patches and position encodings of any size.

``TubeletEmbedding``
    non-overlapping ``(tt, ph, pw)`` tubes of pixels -> one token each (ViViT's tubelet
    embedding; ``tt = 1`` is per-frame patches as in TimeSformer).
``PositionEmbedding``
    an additive encoding over one axis (time), two (rows, columns) or three (a table over every
    token of the clip, ViViT's and VideoMAE's): ``"learned"`` (a table resampled linearly when
    asked for another size) or ``"sinusoidal"`` (computed for any size, one or two axes).
    Rotary encodings are not added to tokens: see ``SpaceTimeAttention(rope=...)``.
``SinusoidalTimeEmbed``
    text 004's embedding of diffusion timesteps: sinusoids, then a two-layer GELU MLP.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..checks import int_tuple, one_of
from ..ops.encodings import resample_table, sinusoidal_table
from ..ops.layout import check_layout, check_video, to_channels_last

__all__ = ["TubeletEmbedding", "PositionEmbedding", "SinusoidalTimeEmbed", "POSITION_KINDS"]

#: the kinds :class:`PositionEmbedding` builds
POSITION_KINDS = ("learned", "sinusoidal")


class TubeletEmbedding(nn.Module):
    """Split a video into ``(tt, ph, pw)`` tubes and project each to ``dim`` channels.

    Args:
        in_channels: channels of the input video.
        dim: token width.
        tubelet: ``(tt, ph, pw)`` or one int for a cube.
        layout: axis order of the input video (``"bcthw"``, ``"btchw"``, ``"bthwc"``).

    ``forward(x) -> (b, t // tt, h // ph, w // pw, dim)`` (channels-last token grid). The clip
    must be at least one tubelet long and every axis divisible by the tubelet: a leftover frame
    or pixel is an error, not silently dropped. Parameters: ``proj`` (a ``Conv3d``).
    """

    def __init__(self, in_channels: int, dim: int, tubelet=(2, 16, 16), *, layout: str = "bcthw",
                 device=None, dtype=None):
        super().__init__()
        self.in_channels, self.dim = in_channels, dim
        self.tubelet = int_tuple("tubelet", tubelet, 3, axes="(tt, ph, pw)")
        self.layout = check_layout(layout)
        self.proj = nn.Conv3d(in_channels, dim, self.tubelet, stride=self.tubelet, device=device, dtype=dtype)

    def grid_size(self, t: int, h: int, w: int) -> tuple[int, int, int]:
        """Token grid ``(t', h', w')`` of a ``t x h x w`` clip; raises ``ValueError`` if it does not tile."""
        for axis, n, p in zip(("T (frames)", "H", "W"), (t, h, w), self.tubelet):
            if n < p:
                raise ValueError(f"the clip is shorter than the tubelet {self.tubelet} on {axis}: got {n} < {p}")
            if n % p:
                raise ValueError(
                    f"{axis}={n} is not a multiple of the tubelet {self.tubelet} ({p}); "
                    f"crop or pad the clip to a multiple of {p}"
                )
        return t // self.tubelet[0], h // self.tubelet[1], w // self.tubelet[2]

    def forward(self, x: Tensor) -> Tensor:
        _, t, h, w = check_video(x, self.layout, self.in_channels)
        self.grid_size(t, h, w)
        x = to_channels_last(x, self.layout).permute(0, 4, 1, 2, 3)  # (b, c, t, h, w) for Conv3d
        return self.proj(x).permute(0, 2, 3, 4, 1)  # (b, t', h', w', dim)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, dim={self.dim}, tubelet={self.tubelet}, layout={self.layout!r}"


class PositionEmbedding(nn.Module):
    """Additive position encoding over a grid of one axis (time), two (rows, columns) or three (all).

    Args:
        dim: channels of the tokens it is added to.
        size: the grid it is built for: ``T``, ``(H, W)`` or ``(T, H, W)``. A learned table has this
            size and is resampled for any other; a sinusoidal one is computed for any size.
        kind: ``"learned"`` (trunc-normal init, std 0.02, as timm) or ``"sinusoidal"``.
        base: longest sinusoidal period.

    ``forward(*sizes, device=None)`` returns ``(*sizes, dim)``: ``emb(t)`` is ``(t, dim)``, ``emb(h, w)`` is
    ``(h, w, dim)``, ``emb(t, h, w)`` is ``(t, h, w, dim)``. The 2-D sinusoidal code puts rows in the first half of the channels and
    columns in the second (``dim`` divisible by 4). Parameters (learned only): ``weight``.
    """

    def __init__(self, dim: int, size, kind: str = "learned", *, base: float = 10000.0, device=None, dtype=None):
        super().__init__()
        one_of("kind", kind, POSITION_KINDS)
        self.size = int_tuple("size", size, 1 if isinstance(size, int) else len(tuple(size)))
        if len(self.size) not in (1, 2, 3) or (len(self.size) == 3 and kind != "learned"):
            raise ValueError(f"size must be T, (H, W), or (T, H, W) for a learned table; got {self.size} "
                             f"for kind {kind!r}")
        if not isinstance(dim, int) or dim < 2 or (len(self.size) == 2 and kind == "sinusoidal" and dim % 4):
            need = "divisible by 4 (2-D sinusoidal)" if len(self.size) == 2 and kind == "sinusoidal" else "an int >= 2"
            raise ValueError(f"dim must be {need}; got {dim!r}")
        self.dim, self.kind, self.base = dim, kind, float(base)
        if kind == "learned":
            self.weight = nn.Parameter(torch.empty(*self.size, dim, device=device, dtype=dtype))
            nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, *sizes: int, device=None) -> Tensor:
        if len(sizes) != len(self.size) or not all(isinstance(s, int) and s >= 1 for s in sizes):
            raise ValueError(f"expected {len(self.size)} size(s) >= 1 for a grid like {self.size}; got {sizes}")
        if self.kind == "learned":
            return resample_table(self.weight, sizes)
        if len(sizes) == 1:
            return sinusoidal_table(torch.arange(sizes[0], device=device), self.dim, base=self.base)
        h, w = sizes
        rows = sinusoidal_table(torch.arange(h, device=device), self.dim // 2, base=self.base)  # (h, dim/2)
        cols = sinusoidal_table(torch.arange(w, device=device), self.dim // 2, base=self.base)  # (w, dim/2)
        return torch.cat([rows[:, None, :].expand(h, w, -1), cols[None, :, :].expand(h, w, -1)], dim=-1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, size={self.size}, kind={self.kind!r}"


class SinusoidalTimeEmbed(nn.Module):
    """Text 004's timestep embedding: sinusoids of ``t`` then ``Linear(dim, 4 dim) -> GELU -> Linear(4 dim, dim)``.

    ``forward(t)`` takes ``(B,)`` timesteps (ints or floats) and returns ``(B, dim)``.
    Parameters ``mlp.0.*`` and ``mlp.2.*``.
    """

    def __init__(self, dim: int):
        super().__init__()
        if not isinstance(dim, int) or dim < 2 or dim % 2:
            raise ValueError(f"dim must be an even int >= 2; got {dim!r}")
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 4), nn.GELU(), nn.Linear(dim * 4, dim))

    def forward(self, t: Tensor) -> Tensor:
        if not isinstance(t, Tensor) or t.ndim != 1:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"t must be a 1-D tensor of timesteps (B,); got {shape}")
        return self.mlp(sinusoidal_table(t, self.dim))
