"""Argument checks shared by every layer of the library.

Each check raises ``ValueError`` whose message names the argument, the expected form and what
was given, and returns the value, so that a config's ``__post_init__`` reads as a table::

    positive_int("frames", self.frames)              # frames must be a positive int; got 0
    int_at_least("motion_head", self.motion_head, 0)  # motion_head must be an int >= 0; got -1
    number_in("lr", self.lr, low=0, low_open=True)   # lr must be a number > 0; got 0
    fraction("copy_blend", self.copy_blend)          # copy_blend must be a fraction in [0, 1]; got 2
    one_of("sampler", self.sampler, SAMPLERS)        # sampler must be one of ('ddpm', ...); got 'x'
    int_tuple("window_size", size, 3, axes="(wT, wH, wW)")

``note`` adds a parenthesis after the expectation (``" (0: none)"``). A ``bool`` is never an
int or a number here (``True`` would otherwise pass as 1). :func:`float_tensor` checks the
tensors every layer takes (a ``TypeError`` for a non-tensor).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch

__all__ = ["is_int", "is_number", "positive_int", "int_at_least", "int_in", "number_in", "fraction", "one_of",
           "int_tuple", "float_tensor"]


def is_int(value) -> bool:
    """Whether ``value`` is an integer (Python or numpy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value) -> bool:
    """Whether ``value`` is a real number (Python or numpy int or float), not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _fail(name: str, expected: str, value, note: str):
    raise ValueError(f"{name} must be {expected}{note}; got {value!r}")


def positive_int(name: str, value, *, none_ok: bool = False, note: str = ""):
    """``value`` if it is an int >= 1 (or ``None`` with ``none_ok``)."""
    if none_ok and value is None:
        return value
    if not is_int(value) or value < 1:
        _fail(name, "a positive int" + (" or None" if none_ok else ""), value, note)
    return value


def int_at_least(name: str, value, low: int, *, note: str = ""):
    """``value`` if it is an int >= ``low``."""
    if not is_int(value) or value < low:
        _fail(name, f"an int >= {low}", value, note)
    return value


def int_in(name: str, value, low: int, high: int, *, high_label: str | None = None, note: str = ""):
    """``value`` if it is an int with ``low <= value < high``; ``high_label`` names the bound (``"frames=8"``)."""
    if not is_int(value) or not low <= value < high:
        _fail(name, f"an int in [{low}, {high if high_label is None else high_label})", value, note)
    return value


def number_in(name: str, value, low: float | None = None, high: float | None = None, *, low_open: bool = False,
              high_open: bool = False, none_ok: bool = False, what: str = "a number", high_label: str | None = None,
              note: str = ""):
    """``value`` if it is a number within the bounds given (``None`` bounds are open ends; NaN never passes).

    The expectation reads ``"> 0"``, ``">= 0"``, ``"<= 1"`` or ``"in [0, 1)"`` as the bounds say;
    ``what`` names the kind (``"a fraction"``), ``high_label`` the upper bound.
    """
    if none_ok and value is None:
        return value
    ok = is_number(value) and not math.isnan(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        top = f"{high:g}" if high_label is None and high is not None else high_label
        if low is not None and high is not None:
            bounds = f"in {'(' if low_open else '['}{low:g}, {top}{')' if high_open else ']'}"
        elif low is not None:
            bounds = f"{'>' if low_open else '>='} {low:g}"
        elif high is not None:
            bounds = f"{'<' if high_open else '<='} {top}"
        else:
            bounds = "(finite or infinite, not NaN)"
        _fail(name, f"{what} {bounds}" + (" or None" if none_ok else ""), value, note)
    return value


def fraction(name: str, value, high: float = 1.0, *, high_label: str | None = None, open_ends: bool = False,
             note: str = ""):
    """``value`` if it is a number in ``[0, high]`` (``(0, high)`` with ``open_ends``)."""
    return number_in(name, value, 0, high, low_open=open_ends, high_open=open_ends, what="a fraction",
                     high_label=high_label, note=note)


def one_of(name: str, value, choices: Iterable, *, none_ok: bool = False, note: str = ""):
    """``value`` if it is one of ``choices`` (a tuple, list, or the keys of a dict, listed sorted), or ``None``
    with ``none_ok``."""
    if none_ok and value is None:
        return value
    options = tuple(choices) if isinstance(choices, (tuple, list)) else tuple(sorted(choices))
    if value not in options:
        _fail(name, f"{'None or ' if none_ok else ''}one of {options}", value, note)
    return value


def int_tuple(name: str, value, n: int, *, low: int = 1, axes: str = "", note: str = "") -> tuple[int, ...]:
    """An int (repeated ``n`` times) or ``n`` ints, each >= ``low``, as a tuple; ``axes`` names them (``"(T, H, W)"``)."""
    items = (value,) * n if is_int(value) else value
    try:
        items = tuple(items)
    except TypeError:
        items = None
    if items is None or len(items) != n or not all(is_int(v) and v >= low for v in items):
        _fail(name, f"an int or {n} ints{' ' + axes if axes else ''}, each >= {low}", value, note)
    return tuple(int(v) for v in items)


def float_tensor(name: str, x, ndim: int | None = None, *, form: str = "a tensor") -> torch.Tensor:
    """``x`` if it is a floating-point ``torch.Tensor`` (with ``ndim`` axes when given); ``form`` names the
    expected shape after "must be" (``"a (b, heads, n, d) tensor"``)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor ({form}); got {type(x).__name__}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {form}; got {x.ndim} dims {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be floating point; got dtype {x.dtype}")
    return x
