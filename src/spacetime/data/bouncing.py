"""Bouncing disks: text 004's toy video data, and a seeded dataset of it for training.

One white disk on black moves with a constant integer velocity and bounces off the walls (the
velocity component flips, the position is clamped to the frame). Text 004 calls these videos
"Moving MNIST"; the "digit" is a disk.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["disk_stamp", "bounce_positions", "render_disks", "create_moving_mnist_video", "create_dataset",
           "BouncingDisks", "SPEEDS"]

#: the velocities text 004 draws from, per axis
SPEEDS = (-2, -1, 1, 2)


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


def bounce_positions(num_frames: int, size: int, digit_size: int, rng=None) -> np.ndarray:
    """``(num_frames, 2)`` int top-left ``(x, y)`` of the stamp in each frame, with the text's physics.

    Draws, in this order, ``x``, ``y`` in ``[0, size - digit_size)`` and ``vx``, ``vy`` from
    :data:`SPEEDS`. After each frame the position moves by the velocity; a coordinate that reaches
    ``<= 0`` or ``>= size - digit_size`` flips its velocity and is clamped to the frame.
    ``rng`` is a ``np.random.Generator``, a ``RandomState``, or ``None`` for the global ``np.random``.
    """
    if size <= digit_size:
        raise ValueError(f"size must exceed digit_size; got size={size}, digit_size={digit_size}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1; got {num_frames}")
    rng = np.random if rng is None else rng
    limit = size - digit_size
    x, y = _draw(rng, 0, limit), _draw(rng, 0, limit)
    vx, vy = SPEEDS[_draw(rng, 0, len(SPEEDS))], SPEEDS[_draw(rng, 0, len(SPEEDS))]
    out = np.empty((num_frames, 2), dtype=np.int64)
    for t in range(num_frames):
        out[t] = x, y
        x, y = x + vx, y + vy
        if x <= 0 or x >= limit:
            vx, x = -vx, min(max(x, 0), limit)
        if y <= 0 or y >= limit:
            vy, y = -vy, min(max(y, 0), limit)
    return out


def render_disks(positions: np.ndarray, size: int, stamp: np.ndarray) -> np.ndarray:
    """``(T, 2)`` top-left ``(x, y)`` -> ``(T, size, size)`` float32 frames with the stamp at each position."""
    s = stamp.shape[0]
    video = np.zeros((len(positions), size, size), dtype=np.float32)
    for t, (x, y) in enumerate(positions):
        video[t, y:y + s, x:x + s] = stamp
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
def create_dataset(num_videos: int = 512, num_frames: int = 16, size: int = 32, rng=None) -> Tensor:
    """Text 004: ``(num_videos, 1, num_frames, size, size)`` float32 tensor of bouncing-disk videos in [0, 1]."""
    if num_videos < 1:
        raise ValueError(f"num_videos must be >= 1; got {num_videos}")
    videos = np.stack([create_moving_mnist_video(num_frames, size, rng=rng) for _ in range(num_videos)])
    return torch.from_numpy(videos).unsqueeze(1)


class BouncingDisks(Dataset):
    """A seeded, map-style dataset of bouncing-disk videos, ``(1, T, size, size)`` in [0, 1].

    Item ``i`` is generated from ``np.random.default_rng([seed, i])``: the same index always gives
    the same video, whatever the order, process or worker that asks for it. ``length`` is how many
    distinct videos an epoch holds (a large number gives fresh data every step).
    """

    def __init__(self, length: int = 1_000_000, num_frames: int = 8, size: int = 32, digit_size: int = 12,
                 seed: int = 0):
        for name, value, low in (("length", length, 1), ("num_frames", num_frames, 1), ("seed", seed, 0)):
            if not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an int >= {low}; got {value!r}")
        if size <= digit_size:
            raise ValueError(f"size must exceed digit_size; got size={size}, digit_size={digit_size}")
        self.length, self.num_frames, self.size, self.digit_size, self.seed = length, num_frames, size, digit_size, seed
        self.stamp = disk_stamp(digit_size)

    def __len__(self) -> int:
        return self.length

    def positions(self, index: int) -> np.ndarray:
        """``(T, 2)`` top-left ``(x, y)`` of the disk in video ``index``."""
        if not 0 <= index < self.length:
            raise IndexError(f"index must be in [0, {self.length}); got {index}")
        rng = np.random.default_rng([self.seed, int(index)])
        return bounce_positions(self.num_frames, self.size, self.digit_size, rng)

    def __getitem__(self, index: int) -> Tensor:
        video = render_disks(self.positions(index), self.size, self.stamp)
        return torch.from_numpy(video).unsqueeze(0)
