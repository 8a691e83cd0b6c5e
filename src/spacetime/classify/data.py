"""The data of a classification run: the synthetic motion task or a folder of videos per class.

Clips are ``(n, c, t, size, size)`` floats in [0, 1]; :func:`normalize` maps them to the model's input
scale (the Kinetics statistics most video models use).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ..data.motion_task import MotionTask
from ..data.video_folder import VideoFolder
from .config import ClassifyConfig

__all__ = ["ClassFolders", "ClassifyData", "normalize", "MEAN", "STD"]

#: inputs in [0, 1] are normalised as ``(x - MEAN) / STD``
MEAN, STD = 0.45, 0.225


def normalize(x: Tensor, mean=MEAN, std=STD) -> Tensor:
    """``(n, c, t, h, w)`` clips in ``[0, 1]`` -> the model's input scale: ``(x - mean) / std``, ``mean`` and ``std``
    one number or one per channel (a converted model's, ImageNet's for most)."""
    if isinstance(mean, (int, float)) and isinstance(std, (int, float)):
        return (x - mean) / std
    per_channel = lambda v: torch.as_tensor(v, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1, 1)  # noqa: E731
    return (x - per_channel(mean)) / per_channel(std)


class ClassFolders(torch.utils.data.Dataset):
    """A folder-per-class video dataset: ``root/<class name>/<videos>``; items ``(clip, label)``.

    Classes are the sub-folders in sorted order. Each class folder is read by
    :class:`~spacetime.data.video_folder.VideoFolder` (non-overlapping clips of ``num_frames``,
    resized to ``size``); a class folder without a usable clip is an error naming it.
    """

    def __init__(self, root, num_frames: int = 8, size: int = 32, grayscale: bool = True):
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"dataset root {root}: not a folder")
        class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if len(class_dirs) < 2:
            raise ValueError(
                f"dataset root {root} must hold one sub-folder per class (at least 2); got "
                f"{[p.name for p in class_dirs]}"
            )
        self.classes = [p.name for p in class_dirs]
        clips, labels = [], []
        for label, class_dir in enumerate(class_dirs):
            try:
                folder = VideoFolder(class_dir, num_frames=num_frames, size=size, grayscale=grayscale)
            except ValueError as exc:
                raise ValueError(f"class {class_dir.name!r} has no usable clip: {exc}") from None
            clips.append(torch.stack([folder[i] for i in range(len(folder))]))
            labels.append(torch.full((len(folder),), label, dtype=torch.long))
        self.clips = torch.cat(clips)  # (n, c, t, size, size) in [0, 1]
        self.labels = torch.cat(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.clips[index], self.labels[index]

    def split(self, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
        """Indices ``(train, test)``: ``test_fraction`` of each class (at least one clip) held out."""
        gen = torch.Generator().manual_seed(seed)
        train_idx, test_idx = [], []
        for label in range(len(self.classes)):
            idx = torch.nonzero(self.labels == label).flatten()
            idx = idx[torch.randperm(len(idx), generator=gen)]
            n_test = max(1, round(test_fraction * len(idx))) if len(idx) > 1 else 0
            test_idx.append(idx[:n_test])
            train_idx.append(idx[n_test:])
        return torch.cat(train_idx), torch.cat(test_idx)


class ClassifyData:
    """A run's data: training batches (:meth:`batch`) and a fixed test set (``test``), from either source."""

    def __init__(self, cfg: ClassifyConfig):
        if cfg.data == "motion":
            self.task = MotionTask(frames=cfg.frames, size=cfg.size)
            self.classes = list(self.task.classes)
            self.channels = 1
            self.test = self.task.fixed_set(cfg.test_size, seed=cfg.seed + 1_000_003)
        else:
            self.task = None
            self.folders = ClassFolders(cfg.data, cfg.frames, cfg.size, grayscale=cfg.grayscale)
            self.classes = self.folders.classes
            self.channels = self.folders.clips.shape[1]
            self.train_idx, test_idx = self.folders.split(cfg.test_fraction, cfg.seed)
            if len(self.train_idx) == 0 or len(test_idx) == 0:
                raise ValueError(f"dataset {cfg.data} has too few clips to hold out a test set ({len(self.folders)} clips)")
            self.test = (self.folders.clips[test_idx], self.folders.labels[test_idx])

    def batch(self, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        if self.task is not None:
            return self.task.sample(n, gen)  # fresh clips every step
        pick = self.train_idx[torch.randint(0, len(self.train_idx), (n,), generator=gen)]
        return self.folders.clips[pick], self.folders.labels[pick]
