"""Bouncing disks: text 004's toy video data, and a seeded dataset of it for training.

White disks on black move with constant integer velocities and bounce off the walls (a velocity
component flips, the position is clamped to the frame). Text 004 calls these videos "Moving
MNIST"; its "digit" is one disk at up to 2 px/frame. ``objects`` and ``max_speed`` widen the law:
up to 3 disks (drawn as the union of their stamps; they pass through each other) at up to 4 px/frame.

A wall clamps a coordinate, so two frames do not always determine the next (``1, 0`` goes on to ``1`` at 1 px/frame
and to ``2`` at 2 px/frame): :func:`frames_to_predict` is the context a next-frame model needs, and
:func:`context_ceiling` the share of videos even a perfect model with less keeps lawful.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..checks import int_in, positive_int

__all__ = ["disk_stamp", "speeds", "bounce_axis", "axis_paths", "bounce_positions", "bounce_tracks",
           "frames_to_predict", "context_ceiling", "render_disks", "create_moving_mnist_video", "create_dataset",
           "BouncingDisks", "SPEEDS", "MAX_OBJECTS", "MAX_SPEED"]

#: the velocities text 004 draws from, per axis
SPEEDS = (-2, -1, 1, 2)
MAX_OBJECTS, MAX_SPEED = 3, 4


def speeds(max_speed: int = 2) -> tuple[int, ...]:
    """The per-axis velocities of the data at top speed ``max_speed``: ``-S .. -1, 1 .. S`` (text 004: S = 2)."""
    int_in("max_speed", max_speed, 1, MAX_SPEED + 1, note=" (pixels per frame)")
    return tuple(range(-max_speed, 0)) + tuple(range(1, max_speed + 1))


def disk_stamp(digit_size: int = 12) -> np.ndarray:
    """``(digit_size, digit_size)`` float32: 1 where the distance to ``(s//2, s//2)`` is below ``s//2``."""
    if not isinstance(digit_size, (int, np.integer)) or digit_size < 2:
        raise ValueError(f"digit_size must be an int >= 2; got {digit_size!r}")
    center = digit_size // 2
    ii, jj = np.mgrid[0:digit_size, 0:digit_size]
    return (np.sqrt((ii - center) ** 2 + (jj - center) ** 2) < center).astype(np.float32)


def _draw(rng, low: int, high: int) -> int:
    """An int in ``[low, high)`` from a ``np.random.Generator`` or a legacy ``RandomState``/``np.random``."""
    return int(rng.integers(low, high) if hasattr(rng, "integers") else rng.randint(low, high))


def bounce_axis(start, velocity, num_frames: int, limit: int) -> np.ndarray:
    """The law along one axis, for arrays of starts and velocities at once: ``(..., num_frames)`` int coordinates.

    After each frame the coordinate moves by the velocity; one that reaches ``<= 0`` or ``>= limit``
    flips its velocity and is clamped to ``[0, limit]``.
    """
    x, v = np.array(start, dtype=np.int64), np.array(velocity, dtype=np.int64)
    x, v = np.broadcast_arrays(x, v)
    x, v = x.copy(), v.copy()
    out = np.empty(x.shape + (num_frames,), dtype=np.int64)
    for t in range(num_frames):
        out[..., t] = x
        x = x + v
        hit = (x <= 0) | (x >= limit)
        v = np.where(hit, -v, v)
        x = np.clip(x, 0, limit)
    return out


def axis_paths(limit: int, max_speed: int, num_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every path of one axis between walls at 0 and ``limit``: ``(C, num_frames)`` coordinates from
    :func:`bounce_axis`, one per start ``0 .. limit`` and velocity of :func:`speeds` (start-major), and the ``(C,)``
    start and velocity of each."""
    choices = speeds(max_speed)
    starts, velocities = np.repeat(np.arange(limit + 1), len(choices)), np.tile(choices, limit + 1)
    return bounce_axis(starts, velocities, num_frames, limit), starts, velocities


def frames_to_predict(size: int, digit_size: int, max_speed: int = 2, horizon: int = 64) -> int:
    """The fewest consecutive frames that always determine the next one under this law: the context a next-frame
    model needs to continue any of the data's videos (its first move, which the law draws at random, aside).

    Found by listing every path of one axis (:func:`axis_paths`, ``horizon`` frames; the axes and objects are
    independent) and every window of ``k`` positions on them: the answer is the smallest ``k`` after which each
    window has one next position. One position never does (it holds no velocity); two do at 1 px/frame, but not
    faster: a coordinate clamped at a wall (``1, 0``) may have moved at 1 px/frame, next ``1``, or at 2 clamped,
    next ``2``; three positions always do.
    """
    if size <= digit_size:
        raise ValueError(f"size must exceed digit_size; got size={size}, digit_size={digit_size}")
    paths, _, _ = axis_paths(size - digit_size, max_speed, horizon)
    for k in range(1, horizon):
        windows = np.lib.stride_tricks.sliding_window_view(paths, k + 1, axis=1).reshape(-1, k + 1)
        seen: dict[tuple, int] = {}
        if all(seen.setdefault(tuple(w[:k]), int(w[k])) == w[k] for w in np.unique(windows, axis=0)):
            return k
    raise ValueError(f"no window of fewer than horizon={horizon} frames determines the next; raise horizon")


def context_ceiling(size: int, digit_size: int, max_speed: int, frames: int, context: int, objects: int = 1) -> float:
    """The share of videos that keep the law when a perfect next-frame model with ``context`` frames makes them.

    The model draws each position after the first ``context`` frames from the data's own distribution of the next
    position given the ``context`` before it (pooled over the clip's frames, as a next-frame model is trained);
    where those do not determine the next (:func:`frames_to_predict`), it may continue at another speed than the
    one it came with, and the video leaves every path of the law. Exact: a sum over the law's paths of one axis,
    to the power of the ``2 * objects`` independent axes. 1.0 when ``context >= frames_to_predict(...)``.
    """
    if size <= digit_size:
        raise ValueError(f"size must exceed digit_size; got size={size}, digit_size={digit_size}")
    int_in("context", context, 1, frames, high_label=f"frames={frames}")
    limit = size - digit_size
    paths, starts, _ = axis_paths(limit, max_speed, frames)
    paths = paths[starts < limit]  # the data's starts, each with each velocity equally likely
    windows: dict[tuple, dict[int, int]] = {}
    for path in paths:
        for t in range(context, frames):
            after = windows.setdefault(tuple(path[t - context:t]), {})
            after[int(path[t])] = after.get(int(path[t]), 0) + 1
    kept = 0.0
    for path in np.unique(paths, axis=0):
        first = np.mean(np.all(paths[:, :context] == path[:context], axis=1))
        chance = [windows[tuple(path[t - context:t])] for t in range(context, frames)]
        kept += first * np.prod([after[int(path[t])] / sum(after.values()) for t, after in
                                 zip(range(context, frames), chance)])
    return float(kept ** (2 * objects))


def bounce_positions(num_frames: int, size: int, digit_size: int, rng=None, max_speed: int = 2) -> np.ndarray:
    """``(num_frames, 2)`` int top-left ``(x, y)`` of one stamp in each frame, with the text's physics.

    Draws, in this order, ``x``, ``y`` in ``[0, size - digit_size)`` and ``vx``, ``vy`` from
    :func:`speeds` (text 004: :data:`SPEEDS`), then follows :func:`bounce_axis` on each axis.
    ``rng`` is a ``np.random.Generator``, a ``RandomState``, or ``None`` for the global ``np.random``.
    """
    if size <= digit_size:
        raise ValueError(f"size must exceed digit_size; got size={size}, digit_size={digit_size}")
    positive_int("num_frames", num_frames)
    choices = speeds(max_speed)
    rng = np.random if rng is None else rng
    limit = size - digit_size
    x, y = _draw(rng, 0, limit), _draw(rng, 0, limit)
    vx, vy = choices[_draw(rng, 0, len(choices))], choices[_draw(rng, 0, len(choices))]
    return bounce_axis([x, y], [vx, vy], num_frames, limit).T


def bounce_tracks(num_frames: int, size: int, digit_size: int, rng=None, objects: int = 1,
                  max_speed: int = 2) -> np.ndarray:
    """``(num_frames, objects, 2)`` top-left ``(x, y)`` of ``objects`` independent disks (each drawn as
    :func:`bounce_positions` draws one, in turn)."""
    int_in("objects", objects, 1, MAX_OBJECTS + 1)
    return np.stack([bounce_positions(num_frames, size, digit_size, rng, max_speed) for _ in range(objects)], axis=1)


def render_disks(positions: np.ndarray, size: int, stamp: np.ndarray) -> np.ndarray:
    """``(T, 2)`` or ``(T, K, 2)`` top-left ``(x, y)`` -> ``(T, size, size)`` float32 frames: the union of the
    stamps (their maximum where they overlap)."""
    positions = np.asarray(positions)
    positions = positions[:, None] if positions.ndim == 2 else positions
    s = stamp.shape[0]
    video = np.zeros((len(positions), size, size), dtype=np.float32)
    for t, frame_positions in enumerate(positions):
        for x, y in frame_positions:
            np.maximum(video[t, y:y + s, x:x + s], stamp, out=video[t, y:y + s, x:x + s])
    return video


def create_moving_mnist_video(num_frames: int = 16, size: int = 32, digit_size: int = 12, rng=None) -> np.ndarray:
    """Text 004: one ``(num_frames, size, size)`` float32 video of a bouncing disk.

    With ``rng=None`` it draws from the global ``np.random`` exactly as the text does, so
    ``np.random.seed(s)`` reproduces the text's videos; pass a ``np.random.Generator`` for a
    private stream.
    """
    positions = bounce_positions(num_frames, size, digit_size, rng)
    return render_disks(positions, size, disk_stamp(digit_size))


# ``rng`` may name a legacy RandomState; keep the text's positional signature first.
def create_dataset(num_videos: int = 512, num_frames: int = 16, size: int = 32, rng=None, *, digit_size: int = 12,
                   objects: int = 1, max_speed: int = 2) -> Tensor:
    """Text 004: ``(num_videos, 1, num_frames, size, size)`` float32 tensor of bouncing-disk videos in [0, 1]
    (the keyword arguments widen the text's law; their defaults are the text's)."""
    positive_int("num_videos", num_videos)
    stamp = disk_stamp(digit_size)
    videos = np.stack([render_disks(bounce_tracks(num_frames, size, digit_size, rng, objects, max_speed), size, stamp)
                       for _ in range(num_videos)])
    return torch.from_numpy(videos).unsqueeze(1)


class BouncingDisks(Dataset):
    """A seeded, map-style dataset of bouncing-disk videos, ``(1, T, size, size)`` in [0, 1].

    Item ``i`` is generated from ``np.random.default_rng([seed, i])``: the same index always gives
    the same video, whatever the order, process or worker that asks for it. ``length`` is how many
    distinct videos an epoch holds (a large number gives fresh data every step). ``objects`` disks
    (1-3) move at up to ``max_speed`` (1-4) pixels per frame per axis.
    """

    def __init__(self, length: int = 1_000_000, num_frames: int = 8, size: int = 32, digit_size: int = 12,
                 seed: int = 0, objects: int = 1, max_speed: int = 2):
        for name, value, low in (("length", length, 1), ("num_frames", num_frames, 1), ("seed", seed, 0)):
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an int >= {low}; got {value!r}")
        if size <= digit_size:
            raise ValueError(f"size must exceed digit_size; got size={size}, digit_size={digit_size}")
        int_in("objects", objects, 1, MAX_OBJECTS + 1)
        speeds(max_speed)
        self.length, self.num_frames, self.size, self.digit_size, self.seed = length, num_frames, size, digit_size, seed
        self.objects, self.max_speed = objects, max_speed
        self.stamp = disk_stamp(digit_size)

    def __len__(self) -> int:
        return self.length

    def positions(self, index: int) -> np.ndarray:
        """``(T, objects, 2)`` top-left ``(x, y)`` of the disks in video ``index``."""
        if not 0 <= index < self.length:
            raise IndexError(f"index must be in [0, {self.length}); got {index}")
        rng = np.random.default_rng([self.seed, int(index)])
        return bounce_tracks(self.num_frames, self.size, self.digit_size, rng, self.objects, self.max_speed)

    def __getitem__(self, index: int) -> Tensor:
        video = render_disks(self.positions(index), self.size, self.stamp)
        return torch.from_numpy(video).unsqueeze(0)
