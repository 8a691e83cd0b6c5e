"""A folder of the user's videos (mp4, webm, gif, ...) as clips of ``num_frames`` frames.

Files are decoded with PyAV once, at construction; a file that cannot be decoded is skipped and
recorded in :attr:`VideoFolder.skipped`, never fatal. A folder with no usable clip is an error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..checks import int_tuple, positive_int
from ..io.video import VIDEO_SUFFIXES, read_video

__all__ = ["VideoFolder"]


class VideoFolder(Dataset):
    """Non-overlapping clips of ``num_frames`` frames from every video under ``root`` (recursively).

    Items are ``(C, T, H, W)`` floats in [0, 1] (``size`` an int for square frames or ``(H, W)``), ``C = 1`` if
    ``grayscale`` else 3. A video
    shorter than ``num_frames`` gives no clip (it is counted in :attr:`too_short`).
    """

    def __init__(self, root, num_frames: int = 8, size: int | tuple[int, int] = 32, grayscale: bool = True,
                 suffixes: tuple[str, ...] = VIDEO_SUFFIXES):
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"video folder {root}: not a folder")
        positive_int("num_frames", num_frames)
        size = int_tuple("size", size, 2, axes="(H, W)")
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        self.root, self.num_frames, self.size, self.grayscale = root, num_frames, size, grayscale
        self.skipped: list[tuple[str, str]] = []
        self.too_short: list[str] = []
        clips = []
        for path in files:
            try:
                frames = read_video(path, size=size, grayscale=grayscale)
            except ValueError as exc:
                self.skipped.append((str(path), str(exc)))
                continue
            n = len(frames) // num_frames
            if n == 0:
                self.too_short.append(str(path))
            clips.extend(frames[i * num_frames:(i + 1) * num_frames] for i in range(n))
        if not clips:
            raise ValueError(
                f"video folder {root}: no clip of {num_frames} frames among {len(files)} video file(s) "
                f"({len(self.skipped)} undecodable, {len(self.too_short)} too short; suffixes {', '.join(suffixes)})"
            )
        self.clips = np.stack(clips)  # (N, T, H, W) or (N, T, H, W, 3) uint8

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> Tensor:
        clip = torch.from_numpy(self.clips[index]).float() / 255.0
        return clip[None] if self.grayscale else clip.permute(3, 0, 1, 2)  # (C, T, H, W)
