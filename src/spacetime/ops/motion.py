"""Global motion of a video by phase correlation (pure functions).

Shifts are ``(dx, dy)`` in pixels, ``x`` to the right and ``y`` down (the camera axes of
:mod:`spacetime.ops.camera`). Two different things move:

* **content shift**: how the picture moves from frame to frame, ``frame_{t+1}(y, x) ~
  frame_t(y - dy, x - dx)`` (:func:`phase_correlation`, :func:`frame_shifts`);
* **camera translation**: how the camera (the viewing window) moves. A camera moving right
  by ``p`` pixels makes a static scene's content move left by ``p``:
  camera translation = ``-`` content shift (:func:`camera_translation`).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import int_at_least, is_number
from .layout import check_video, to_channels_last

__all__ = ["phase_correlation", "frame_shifts", "camera_translation", "translation_error", "shift_offsets",
           "shifted_copies", "motion_mix"]


def _hann(n: int, like: Tensor) -> Tensor:
    return torch.hann_window(n, periodic=False, dtype=like.dtype, device=like.device) if n > 2 else like.new_ones(n)


def _parabolic(before: Tensor, peak: Tensor, after: Tensor) -> Tensor:
    """Offset in ``[-0.5, 0.5]`` of a parabola's vertex through three neighbouring samples."""
    curvature = before - 2 * peak + after
    offset = 0.5 * (before - after) / torch.where(curvature.abs() > 1e-12, curvature, torch.ones_like(curvature))
    return torch.where(curvature < -1e-12, offset.clamp(-0.5, 0.5), torch.zeros_like(offset))


def phase_correlation(a: Tensor, b: Tensor, *, window: bool = True, eps: float = 1e-8) -> Tensor:
    """Global translation of ``b``'s content relative to ``a`` by phase correlation.

    Args:
        a, b: ``(..., H, W)`` images of one size (any leading batch axes).
        window: apply a Hann window first, which suppresses the edges where content enters
            and leaves (the motion of a moving camera is not circular).
        eps: regulariser of the normalised cross-power spectrum.

    Returns:
        ``(..., 2)`` shifts ``(dx, dy)`` in pixels, sub-pixel by a parabolic fit around the
        correlation peak: ``b(y, x) ~ a(y - dy, x - dx)``. Shifts beyond half the image size
        alias (a shift of ``W - 1`` reads as ``-1``).
    """
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (..., H, W); got {type(x).__name__}")
        if x.ndim < 2 or min(x.shape[-2:]) < 3:
            raise ValueError(f"{name} must have shape (..., H, W) with H, W >= 3; got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be floating point; got dtype {x.dtype}")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")
    h, w = a.shape[-2:]
    dtype = a.dtype
    a = a.double() - a.double().mean((-2, -1), keepdim=True)
    b = b.double() - b.double().mean((-2, -1), keepdim=True)
    if window:
        win = _hann(h, a)[:, None] * _hann(w, a)[None, :]
        a, b = a * win, b * win
    cross = torch.fft.fft2(b) * torch.fft.fft2(a).conj()
    corr = torch.fft.ifft2(cross / (cross.abs() + eps)).real  # (..., h, w), peaks at the shift
    flat = corr.flatten(-2).argmax(-1)
    py, px = flat // w, flat % w

    def at(dy: int, dx: int) -> Tensor:
        index = (((py + dy) % h) * w + (px + dx) % w)[..., None]
        return corr.flatten(-2).gather(-1, index)[..., 0]

    centre = at(0, 0)
    fy = _parabolic(at(-1, 0), centre, at(1, 0))
    fx = _parabolic(at(0, -1), centre, at(0, 1))
    sy = torch.where(py > h // 2, py - h, py).double() + fy
    sx = torch.where(px > w // 2, px - w, px).double() + fx
    return torch.stack([sx, sy], -1).to(dtype)


def frame_shifts(video: Tensor, layout: str = "bcthw", *, window: bool = True) -> Tensor:
    """Content shift ``(dx, dy)`` from each frame to the next: ``(B, T-1, 2)`` pixels.

    ``video`` is ``(B, C, T, H, W)`` (or another ``layout``); channels are averaged first.
    """
    b, t, h, w = check_video(video, layout, name="video")
    if t < 2:
        raise ValueError(f"video needs T >= 2 frames to measure motion; got T={t}")
    gray = to_channels_last(video, layout).mean(-1)  # (b, t, h, w)
    return phase_correlation(gray[:, :-1], gray[:, 1:], window=window)


def camera_translation(video: Tensor, layout: str = "bcthw", *, window: bool = True) -> Tensor:
    """Per-frame camera translation ``(dx, dy)`` of a static scene, ``(B, T-1, 2)`` pixels (``-`` content shift)."""
    return -frame_shifts(video, layout, window=window)


def translation_error(video: Tensor, positions: Tensor, layout: str = "bcthw", *, window: bool = True) -> Tensor:
    """Mean per-frame error (pixels) between a video's camera motion and requested camera positions.

    Args:
        video: ``(B, C, T, H, W)`` (or ``layout``), a static scene seen by a moving camera.
        positions: ``(B, T, 2)`` requested camera positions ``(x, y)`` in pixels; their
            frame-to-frame differences are the requested translations.

    Returns:
        ``(B,)``: for each video the mean over its ``T-1`` steps of the Euclidean distance
        between the estimated and the requested translation (pixels per frame).
    """
    b, t, _, _ = check_video(video, layout, name="video")
    if not isinstance(positions, Tensor) or positions.shape != (b, t, 2):
        got = tuple(positions.shape) if isinstance(positions, Tensor) else type(positions).__name__
        raise ValueError(f"positions must have shape (B, T, 2) = {(b, t, 2)} to match the video; got {got}")
    if not torch.isfinite(positions).all():
        raise ValueError("positions must be finite (no NaN or inf)")
    requested = positions[:, 1:].float() - positions[:, :-1].float()
    estimated = camera_translation(video, layout, window=window).to(requested.device)
    return (estimated - requested).norm(dim=-1).mean(-1)


def shift_offsets(radius: int) -> list[tuple[int, int]]:
    """The ``(2 radius + 1)**2`` integer shifts ``(dx, dy)`` with ``|dx|, |dy| <= radius``, in the order
    :func:`shifted_copies` stacks them (``dy`` major, ``dx`` minor)."""
    int_at_least("radius", radius, 0)
    return [(dx, dy) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]


def _pad_frames(frames: Tensor, radius: int, fill: float | None) -> Tensor:
    """``(n, c, H, W)`` or ``(b, c, t, H, W)`` frames with ``radius`` pixels more on each side of each frame: the
    edge pixel repeated (``fill=None``) or ``fill``."""
    if fill is not None and not is_number(fill):
        raise ValueError(f"fill must be None (repeat the edge) or a number; got {fill!r}")
    if not radius:
        return frames
    pad = (radius,) * 4 + (0, 0) * (frames.ndim - 4)
    return F.pad(frames, pad, mode="replicate") if fill is None else F.pad(frames, pad, value=float(fill))


def shifted_copies(images: Tensor, radius: int, fill: float | None = None) -> Tensor:
    """Every integer shift of ``images`` by up to ``radius`` pixels per axis, as a new axis.

    ``(..., H, W) -> (..., K, H, W)`` with ``K = (2 radius + 1)**2``: copy ``k`` holds the content
    moved by ``(dx, dy) = shift_offsets(radius)[k]``, ``out[..., k, y, x] = images[..., y - dy, x - dx]``.
    Pixels that come from outside the frame repeat its nearest edge pixel (``fill=None``) or take the
    value ``fill`` (the background of the data, e.g. ``-1`` for black in ``[-1, 1]``): an object that
    touches the edge and moves away then leaves background behind, not a smear of itself.
    """
    offsets = shift_offsets(radius)
    if images.ndim < 2:
        raise ValueError(f"images must be (..., H, W); got shape {tuple(images.shape)}")
    h, w = images.shape[-2:]
    lead = images.shape[:-2]
    padded = _pad_frames(images.reshape(-1, 1, h, w), radius, fill)
    r = radius
    copies = [padded[..., r - dy:r - dy + h, r - dx:r - dx + w] for dx, dy in offsets]
    return torch.cat(copies, 1).reshape(*lead, len(offsets), h, w)


@functools.lru_cache(maxsize=16)
def _patch_sources(radius: int, patch: int) -> Tensor:
    """For every shift ``k`` and pixel ``(p1, p2)`` of a patch, in that order, which of the ``(p + 2r)^2``
    pixel offsets within a patch of frames padded by ``r`` its moved copy reads."""
    span = patch + 2 * radius
    return torch.tensor([(p1 - dy + radius) * span + p2 - dx + radius for dx, dy in shift_offsets(radius)
                         for p1 in range(patch) for p2 in range(patch)])


def motion_mix(logits: Tensor, image: Tensor, before: Tensor, radius: int, fill: float | None = None,
               patch: int = 1) -> Tensor:
    """Per pixel, a softmax mix of ``before`` moved by every shift of up to ``radius`` pixels
    (:func:`shifted_copies`, ``fill`` as there) and an ``image`` of its own, from a network's outputs at a
    ``patch``-pixel stride.

    ``logits`` ``(b, (K + 1) p^2, t, h, w)``, ``K = (2 radius + 1)**2`` (channel ``(k p1 p2)``: shift ``k``, the
    last for the image, at pixel ``(p1, p2)`` of each patch); ``image`` ``(b, c p^2, t, h, w)`` (channel
    ``(c p1 p2)``); ``before`` ``(b, c, t, h p, w p)``. Returns ``(b, c, t, h p, w p)``:
    ``sum_k softmax(logits)_k * shifted_copies(before)_k + softmax(logits)_K * image``, pixel by pixel.

    It works in the outputs' own patch order, so the only rearranged tensor is the result: the logits, ``K + 1``
    times larger, are never permuted, and the moved copies are whole rows of ``t h w`` pixels taken from a
    padded frame's ``(p + 2r)^2`` offsets.
    """
    b, c, t, rows, cols = before.shape
    p, r = patch, radius
    shifts, h, w = (2 * r + 1) ** 2, rows // p, cols // p
    if rows % p or cols % p or logits.shape != (b, (shifts + 1) * p * p, t, h, w) or \
            image.shape != (b, c * p * p, t, h, w):
        raise ValueError(f"motion_mix: for before {tuple(before.shape)}, patch {p} and radius {r} the logits must be "
                         f"{(b, (shifts + 1) * p * p, t, h, w)} and the image {(b, c * p * p, t, h, w)}; got "
                         f"{tuple(logits.shape)} and {tuple(image.shape)}")
    padded = _pad_frames(before, r, fill).contiguous()
    span, frame = p + 2 * r, (rows + 2 * r) * (cols + 2 * r)
    offsets = padded.as_strided((b, c, span, span, t, h, w), (c * t * frame, t * frame, cols + 2 * r, 1, frame,
                                                              p * (cols + 2 * r), p), padded.storage_offset())
    moved = offsets.reshape(b, c, span * span, t * h * w).index_select(2, _patch_sources(r, p).to(before.device))
    pixels = p * p * t * h * w
    weights, own = logits.reshape(b, shifts + 1, pixels).softmax(1).split([shifts, 1], dim=1)
    mixed = (weights[:, None] * moved.view(b, c, shifts, pixels)).sum(2) + own * image.reshape(b, c, pixels)
    return mixed.view(b, c, p, p, t, h, w).permute(0, 1, 4, 5, 2, 6, 3).reshape(b, c, t, rows, cols)
