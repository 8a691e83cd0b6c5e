"""Video layouts: validation and conversion to the channels-last working form.

Public video modules take ``layout=`` one of :data:`LAYOUTS`. Internally every module
works on channels-last ``(b, t, h, w, c)`` tensors, which is what ``nn.Linear`` and
``nn.LayerNorm`` act on without copies.
"""

from __future__ import annotations

from torch import Tensor

from ..checks import float_tensor

__all__ = ["LAYOUTS", "check_layout", "check_video", "to_channels_last", "from_channels_last"]

#: layout -> permutation taking that layout to (b, t, h, w, c)
_TO_BTHWC = {"bcthw": (0, 2, 3, 4, 1), "btchw": (0, 1, 3, 4, 2), "bthwc": (0, 1, 2, 3, 4)}
#: layout -> permutation taking (b, t, h, w, c) back to that layout
_FROM_BTHWC = {"bcthw": (0, 4, 1, 2, 3), "btchw": (0, 1, 4, 2, 3), "bthwc": (0, 1, 2, 3, 4)}
LAYOUTS = tuple(_TO_BTHWC)


def check_layout(layout: str) -> str:
    if layout not in _TO_BTHWC:
        raise ValueError(f"layout must be one of {LAYOUTS}; got {layout!r}")
    return layout


def check_video(x: Tensor, layout: str, dim: int | None = None, name: str = "x") -> tuple[int, int, int, int]:
    """Validate a video tensor and return its ``(b, t, h, w)``.

    Raises ``ValueError`` naming the argument, the layout and the offending axis.
    """
    float_tensor(name, x, 5, form=f"a 5-D video in layout {check_layout(layout)!r}")
    sizes = dict(zip(layout, x.shape))
    if dim is not None and sizes["c"] != dim:
        axis = layout.index("c")
        raise ValueError(
            f"{name} in layout {layout!r} has channels on axis {axis} of size {sizes['c']}, "
            f"but the module expects dim={dim}; got shape {tuple(x.shape)}"
        )
    for axis_name in "bthw":
        if sizes[axis_name] == 0:
            raise ValueError(
                f"{name} must have non-empty {axis_name.upper()} (layout {layout!r}); "
                f"got {axis_name.upper()}=0 in shape {tuple(x.shape)}"
            )
    return sizes["b"], sizes["t"], sizes["h"], sizes["w"]


def to_channels_last(x: Tensor, layout: str) -> Tensor:
    """``x`` in ``layout`` -> ``(b, t, h, w, c)`` (a view; no copy)."""
    return x.permute(*_TO_BTHWC[check_layout(layout)])


def from_channels_last(x: Tensor, layout: str) -> Tensor:
    """``(b, t, h, w, c)`` -> ``layout`` (a view; no copy)."""
    return x.permute(*_FROM_BTHWC[check_layout(layout)])
