"""Moving MNIST in its standard ``.npy`` layout: ``(T, N, H, W)`` uint8 (``mnist_test_seq.npy``: 20 x 10000 x 64 x 64).

The user supplies the file; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["MovingMNIST"]


class MovingMNIST(Dataset):
    """Clips of ``num_frames`` (from frame 0) of each sequence, ``(1, T, size, size)`` floats in [0, 1].

    Args:
        path: the ``.npy`` file, ``(T, N, H, W)`` (``layout="tnhw"``, the standard) or ``(N, T, H, W)``.
        num_frames: frames per clip (at most the file's T).
        size: resize frames to ``size x size`` (area averaging); ``None`` keeps the file's size.
    """

    def __init__(self, path, num_frames: int = 8, size: int | None = None, layout: str = "tnhw"):
        path = Path(path)
        if layout not in ("tnhw", "nthw"):
            raise ValueError(f"layout must be 'tnhw' (the standard file) or 'nthw'; got {layout!r}")
        if not path.is_file():
            raise FileNotFoundError(f"Moving MNIST file {path}: not found (download mnist_test_seq.npy yourself)")
        try:
            data = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ValueError(f"Moving MNIST file {path}: not a readable .npy array: {exc}") from None
        if data.ndim != 4:
            raise ValueError(f"Moving MNIST file {path}: expected a 4-D {layout.upper()} array; got shape {data.shape}")
        self.data = data if layout == "nthw" else data.transpose(1, 0, 2, 3)  # (N, T, H, W) view
        if not 1 <= num_frames <= self.data.shape[1]:
            raise ValueError(f"num_frames must be in [1, {self.data.shape[1]}] for {path}; got {num_frames}")
        self.num_frames, self.size, self.path = num_frames, size, path

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index: int) -> Tensor:
        clip = np.asarray(self.data[index, : self.num_frames], dtype=np.float32)
        if self.data.dtype == np.uint8:
            clip = clip / 255.0
        video = torch.from_numpy(clip)[None]  # (1, T, H, W)
        if self.size is not None and video.shape[-1] != self.size:
            video = F.interpolate(video, size=(self.size, self.size), mode="area")
        return video.clamp(0, 1)
