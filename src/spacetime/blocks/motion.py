"""AnimateDiff's motion module built from spacetime's blocks: a residual temporal transformer over a video latent.

``x + proj_out(blocks(proj_in(group_norm(x))))``: a ``GroupNorm`` over the whole clip (each group's channels, every
frame and pixel), a linear projection to the blocks' width, :class:`~spacetime.blocks.TransformerBlock` s whose
attention sub-blocks run :class:`~spacetime.ops.Temporal` patterns (two per block in AnimateDiff: its "double
self-attention"), and a linear projection back. AnimateDiff adds a fixed sinusoidal position of each frame to the
tokens right after each attention sub-block's LayerNorm: :class:`FramePositionNorm` is that LayerNorm.
``spacetime.interop.diffusers.from_diffusers`` converts diffusers' motion modules to this one, exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

from einops import rearrange
from torch import Tensor, nn

from ..checks import int_at_least, positive_int
from ..layers.attention import check_heads
from ..ops.encodings import sinusoidal_table
from ..ops.layout import check_layout, check_video, from_channels_last, to_channels_last
from ..ops.patterns import Pattern, Temporal
from .transformer import TransformerBlock

__all__ = ["FramePositionNorm", "MotionModule"]


class FramePositionNorm(nn.LayerNorm):
    """A LayerNorm over the channels of ``(b, t, h, w, c)`` tokens, then the sinusoidal position of each frame added.

    The position table is :func:`~spacetime.ops.sinusoidal_table` with its sines and cosines interleaved (``sin f_0,
    cos f_0, sin f_1, ...``, AnimateDiff's order), ``max_frames`` rows: frame ``i`` of a clip gets row ``i``. It is
    a buffer, ``table``, derived from the sizes and not saved in the ``state_dict``.
    """

    def __init__(self, dim: int, max_frames: int, eps: float = 1e-5, *, device=None, dtype=None):
        super().__init__(dim, eps=eps, device=device, dtype=dtype)
        if not isinstance(dim, int) or dim < 2 or dim % 2:
            raise ValueError(f"dim must be an even int >= 2 (sine and cosine pairs); got {dim!r}")
        self.max_frames = positive_int("max_frames", max_frames)
        table = rearrange(sinusoidal_table(max_frames, dim), "n (two half) -> n (half two)", two=2)
        self.register_buffer("table", table.to(device=device, dtype=dtype), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """``(b, t, h, w, c)`` -> the same shape; ``t <= max_frames``."""
        t = x.shape[1]
        if t > self.max_frames:
            raise ValueError(f"the clip has {t} frames; this module's positions cover max_frames={self.max_frames}")
        return super().forward(x) + self.table[:t, None, None, :].to(x.dtype)  # (t, 1, 1, c) over (b, t, h, w, c)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, max_frames={self.max_frames}"


class MotionModule(nn.Module):
    """A residual temporal transformer over a video latent (AnimateDiff's motion module, diffusers'
    ``AnimateDiffTransformer3D`` and ``TransformerTemporalModel``).

    Args:
        channels: channels of the latent (``C``).
        num_heads: attention heads.
        head_dim: per-head width; ``channels // num_heads`` by default. The blocks' width is ``num_heads * head_dim``.
        depth: transformer blocks.
        patterns: the attention sub-blocks of each block (two ``Temporal()`` by default, AnimateDiff's).
        groups, group_eps: the ``GroupNorm`` over the clip.
        norm_eps: every LayerNorm's epsilon.
        act, mlp_ratio: the blocks' MLP (``"geglu"``, 4: AnimateDiff's feed-forward).
        qkv_bias: bias on the attention's query, key and value projections.
        max_frames: the longest clip the frame positions cover; ``None``: no positions.
        layout: axis order of the input and output (``"bcthw"``: diffusers' latents).
        backend: attention backend of every block; ``None`` follows the global default.

    Submodules: ``norm`` (``GroupNorm``), ``proj_in``, ``blocks`` (a ``ModuleList`` of
    :class:`~spacetime.blocks.TransformerBlock`; with positions, each attention sub-block's ``norm`` is a
    :class:`FramePositionNorm`), ``proj_out``. ``forward(x)`` returns ``x`` plus the transformer's output.
    """

    def __init__(self, channels: int, num_heads: int = 8, *, head_dim: int | None = None, depth: int = 1,
                 patterns: Sequence[Pattern] = (Temporal(), Temporal()), groups: int = 32, group_eps: float = 1e-6,
                 norm_eps: float = 1e-5, act: str = "geglu", mlp_ratio: float = 4.0, qkv_bias: bool = False,
                 max_frames: int | None = 32, layout: str = "bcthw", backend: str | None = None, device=None,
                 dtype=None):
        super().__init__()
        self.channels, self.layout = positive_int("channels", channels), check_layout(layout)
        head_dim = check_heads(channels, num_heads, head_dim)
        int_at_least("depth", depth, 1)
        positive_int("groups", groups)
        if channels % groups:
            raise ValueError(f"groups must divide channels ({channels}); got groups={groups}")
        self.inner_dim = inner = num_heads * head_dim
        self.max_frames = positive_int("max_frames", max_frames, none_ok=True, note=" (None: no frame positions)")
        factory = {"device": device, "dtype": dtype}
        self.norm = nn.GroupNorm(groups, channels, eps=group_eps, **factory)
        self.proj_in = nn.Linear(channels, inner, **factory)
        self.blocks = nn.ModuleList(
            TransformerBlock(inner, num_heads, tuple(patterns), mlp_ratio=mlp_ratio, norm_eps=norm_eps, act=act,
                             head_dim=head_dim, qkv_bias=qkv_bias, backend=backend, **factory)
            for _ in range(depth)
        )
        if max_frames is not None:
            for block in self.blocks:
                for sub in block.attn:
                    sub.norm = FramePositionNorm(inner, max_frames, eps=norm_eps, **factory)
        self.proj_out = nn.Linear(inner, channels, **factory)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` in ``self.layout`` -> the same shape."""
        check_video(x, self.layout, self.channels)
        x = to_channels_last(x, self.layout)  # (b, t, h, w, c)
        normed = self.norm(rearrange(x, "b t h w c -> b c t h w"))  # groups over (c/g, t, h, w)
        tokens = self.proj_in(rearrange(normed, "b c t h w -> b t h w c"))
        for block in self.blocks:
            tokens = block.forward_channels_last(tokens)
        return from_channels_last(x + self.proj_out(tokens), self.layout).contiguous()

    def extra_repr(self) -> str:
        return f"channels={self.channels}, inner_dim={self.inner_dim}, max_frames={self.max_frames}, " \
               f"layout={self.layout!r}"
