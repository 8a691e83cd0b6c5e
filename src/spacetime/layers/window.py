"""Window attention with Swin's relative-position bias: :class:`SpaceTimeAttention` on a :class:`Window` pattern.

Video Swin (and torchvision's ``swin3d_t/s/b``) adds to every window's scores a bias that depends only on
the relative position of the query and the key inside the window: one learned value per head for each
of the ``(2wt-1)(2wh-1)(2ww-1)`` offsets ``(dt, dh, dw)``, kept in ``relative_position_bias_table``
``((2wt-1)(2wh-1)(2ww-1), heads)`` and looked up through :func:`relative_position_index`.

Two rules differ between spacetime and Video Swin / torchvision; each is a small choice of the layer:

``padding``
    ``"exclude"`` (spacetime's, the default): a clip the window does not divide is padded inside the
    pattern, and a padded position is never a key. ``"zeros"`` (torchvision's): the layer's *input*
    (in a Swin block, the normalised features) is padded with zeros to window multiples before the
    qkv projection, so real tokens also attend to padded keys, whose keys and values are the
    projection's biases; the pattern then sees an unpadded grid, and the output is cropped back.
``clipped_bias``
    an axis no longer than the window gets one window of the axis' length (and no shift, as
    :meth:`Window.effective` says; torchvision's ``_get_window_and_shift_size`` does the same). Its
    ``n`` tokens need an ``(n, n)`` bias. ``"relative"`` (the default) looks up the true offsets of the
    clipped window's tokens. ``"leading"`` (Video Swin's and torchvision's) takes the leading ``n x n``
    block of the full window's index, which is the same when only the first axis (time) is clipped,
    and pairs tokens with other offsets' biases when rows or columns are.

Shifted windows: torchvision marks the pairs of tokens from different regions of a rolled window
with ``-100.0`` added to the score; spacetime's :class:`Window` removes them (``-inf``). The weight of
such a pair is then ``exp(-100)`` (about ``4e-44``) times that of the others in torchvision and exactly
zero here, below float32 resolution whenever the scores of a row lie within about 80 of each other
(``tests/layers/test_window.py`` runs torchvision's layer with both masks: they agree to ``1e-6``, and this
layer agrees with it to float32 rounding).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..checks import int_tuple, one_of
from ..ops.patterns import Window
from .attention import SpaceTimeAttention

__all__ = ["WindowAttention", "relative_position_index", "PADDINGS", "CLIPPED_BIASES"]

#: how a clip the window does not divide is padded (see the module docstring)
PADDINGS = ("exclude", "zeros")
#: which bias a window clipped to a short axis gets (see the module docstring)
CLIPPED_BIASES = ("relative", "leading")


def relative_position_index(size, table=None) -> Tensor:
    """``(n, n)`` int64 rows of ``relative_position_bias_table`` for the ``n = wt*wh*ww`` tokens of a ``size`` window.

    Entry ``[i, j]`` (query ``i``, key ``j``, both in ``(wt wh ww)`` order) is the row of the offset
    ``c_i - c_j`` in a table built for the window ``table`` (``size`` by default; each axis at least as long):
    offsets shifted to start at 0 and flattened time-major, ``(dt, dh, dw) -> (dt*(2TH-1) + dh)*(2TW-1) + dw``.
    """
    size = int_tuple("size", size, 3, axes="(wt, wh, ww)")
    table = size if table is None else int_tuple("table", table, 3, axes="(wt, wh, ww)")
    if any(s > full for s, full in zip(size, table)):
        raise ValueError(f"size {size} must fit in the table's window {table} on every axis")
    return _index(size, table).clone()


@lru_cache(maxsize=64)
def _index(size: tuple[int, int, int], table: tuple[int, int, int]) -> Tensor:
    axes = torch.meshgrid(*(torch.arange(n) for n in size), indexing="ij")
    coords = rearrange(torch.stack(axes), "three wt wh ww -> three (wt wh ww)")
    offsets = coords[:, :, None] - coords[:, None, :]  # (3, n, n): query minus key
    dt, dh, dw = (offsets[i] + table[i] - 1 for i in range(3))  # each >= 0
    return (dt * (2 * table[1] - 1) + dh) * (2 * table[2] - 1) + dw


class WindowAttention(SpaceTimeAttention):
    """Swin's (shifted) window attention with a relative-position bias on the video grid.

    Args:
        dim, num_heads: as :class:`SpaceTimeAttention`.
        window_size: ``(wt, wh, ww)`` (or one int), the window the table is built for.
        shift: ``(st, sh, sw)``, the shifted-window offset (each ``< window``; Video Swin shifts every other
            block by half the window).
        padding: ``"exclude"`` (spacetime's: padding is never a key) or ``"zeros"`` (torchvision's: zero
            features padded before the projection are keys); see the module docstring.
        clipped_bias: ``"relative"`` or ``"leading"`` (Video Swin's and torchvision's), the bias of a window
            clipped to a short axis; see the module docstring.
        **kwargs: :class:`SpaceTimeAttention`'s (``qkv_bias``, ``attn_drop``, ``proj_drop``, ``layout``,
            ``backend``, ...).

    Parameters: ``qkv``, ``proj`` and ``relative_position_bias_table`` (trunc-normal, std 0.02, as
    torchvision); the buffer ``relative_position_index`` (:func:`relative_position_index` of the window)
    is not saved in the state_dict. With ``padding="zeros"``, ``forward`` takes no ``frame_mask``,
    ``positions`` or ``prefix`` (a zero-padded key would contradict them).
    """

    def __init__(self, dim: int, num_heads: int = 8, window_size=(2, 7, 7), shift=(0, 0, 0), *,
                 padding: str = "exclude", clipped_bias: str = "relative", device=None, dtype=None, **kwargs):
        if "pattern" in kwargs:
            raise TypeError("WindowAttention builds its own Window pattern from window_size and shift; got pattern=")
        pattern = Window(window_size, shift)
        super().__init__(dim, num_heads, pattern, device=device, dtype=dtype, **kwargs)
        self.window_size, self.shift = pattern.size, pattern.shift
        self.padding = one_of("padding", padding, PADDINGS)
        self.clipped_bias = one_of("clipped_bias", clipped_bias, CLIPPED_BIASES)
        rows = math.prod(2 * ws - 1 for ws in self.window_size)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(rows, num_heads, device=device, dtype=dtype))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        index = relative_position_index(self.window_size).to(device)
        self.register_buffer("relative_position_index", index, persistent=False)

    def attention_bias(self, t: int, h: int, w: int, device=None) -> Tensor:
        """``(heads, n, n)``: the relative-position bias of the windows the pattern uses on a ``t x h x w`` grid."""
        size, _ = self.pattern.effective(t, h, w)
        n = math.prod(size)
        if size == self.window_size or self.clipped_bias == "leading":
            index = self.relative_position_index[:n, :n]
        else:
            index = _index(size, self.window_size).to(self.relative_position_index.device)
        bias = self.relative_position_bias_table[index.reshape(-1)]  # (n n, heads)
        return rearrange(bias, "(n m) heads -> heads n m", n=n)

    def forward_channels_last(self, x: Tensor, frame_mask: Tensor | None = None, positions: Tensor | None = None,
                              prefix: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """``(b, t, h, w, c) -> (b, t, h, w, c)``; with ``padding="zeros"`` the input is zero-padded to window
        multiples first (torchvision's rule) and the output cropped."""
        if self.padding == "exclude":
            return super().forward_channels_last(x, frame_mask=frame_mask, positions=positions, prefix=prefix)
        for name, value in (("frame_mask", frame_mask), ("positions", positions), ("prefix", prefix)):
            if value is not None:
                raise ValueError(f"{name} must be None with padding='zeros' (torchvision's rule, where zero-padded "
                                 f"tokens are keys); build the layer with padding='exclude' to pass one")
        _, t, h, w, _ = x.shape
        size, _ = self.pattern.effective(t, h, w)
        pads = [(-n) % ws for n, ws in zip((t, h, w), size)]
        if any(pads):  # F.pad pads the last axes first: (c, w, h, t)
            x = F.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
        out = super().forward_channels_last(x)
        return out[:, :t, :h, :w] if any(pads) else out

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, window_size={self.window_size}, shift={self.shift}, "
                f"padding={self.padding!r}, clipped_bias={self.clipped_bias!r}")
