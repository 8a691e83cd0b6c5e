"""Physical plausibility of bouncing-disk videos: the detector behind ``spacetime eval``.

A video is plausible when

1. every frame holds exactly one disk of the training size: one connected bright region (pixels
   > 0.5, dark specks inside it filled, mean brightness > 0.5) whose area and extent match the
   disk stamp, with no other sizeable bright region, and
2. the disk moves with constant velocity, changing it only where it touches a wall: along each
   axis the displacement between frames stays the same except in a step that starts or ends
   at a wall, it stays within the training speeds, and it pauses (zero displacement) only at a
   wall and never twice in a row.

Positions are the disk's centroid, so the rules hold to a tolerance ``tol`` in pixels; the
training data (integer positions) passes with any ``tol >= 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bouncing import SPEEDS, disk_stamp

__all__ = ["DiskDetector", "VideoVerdict", "score_videos"]


@dataclass
class VideoVerdict:
    plausible: bool
    reason: str  # "ok" or why not
    positions: np.ndarray  # (T, 2) stamp top-left (x, y) estimates (NaN where no disk)
    frames_with_disk: int  # frames holding exactly one training-size disk


def _label(mask: np.ndarray) -> np.ndarray:
    """4-connected components of a stack of 2-D bool masks ``(F, H, W)``, all frames at once.

    Returns int labels of the same shape: -1 off the mask; on it, the smallest flat index of the
    pixel's component (so labels are unique across frames).
    """
    big = mask.size
    lab = np.where(mask, np.arange(big).reshape(mask.shape), big)
    while True:
        new = lab.copy()
        np.minimum(new[:, 1:], lab[:, :-1], out=new[:, 1:])
        np.minimum(new[:, :-1], lab[:, 1:], out=new[:, :-1])
        np.minimum(new[:, :, 1:], lab[:, :, :-1], out=new[:, :, 1:])
        np.minimum(new[:, :, :-1], lab[:, :, 1:], out=new[:, :, :-1])
        new = np.where(mask, new, big)
        flat = np.append(new.reshape(-1), big)
        new = flat[new]  # pointer jumping: adopt the label of the pixel the label names
        new = np.where(mask, new, big)
        if np.array_equal(new, lab):
            return np.where(mask, lab, -1)
        lab = new


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``(F, H, W)`` masks with their holes (dark regions not connected to the border) filled."""
    dark = _label(~mask)
    border = np.concatenate([dark[:, 0], dark[:, -1], dark[:, :, 0], dark[:, :, -1]], axis=1).reshape(-1)
    outside = np.isin(dark, border[border >= 0])
    return ~outside


class DiskDetector:
    """Scores videos of one bouncing disk against the physics of the training data.

    Args:
        size: frame size (square).
        digit_size: side of the disk stamp used in training (text 004: 12).
        max_speed: largest per-axis speed in training (text 004: 2 pixels per frame).
        tol: tolerance in pixels on positions and displacements.
        area_tol: allowed relative deviation of the disk's area from the stamp's.
    """

    def __init__(self, size: int = 32, digit_size: int = 12, max_speed: float = max(map(abs, SPEEDS)),
                 tol: float = 0.5, area_tol: float = 0.25):
        if size <= digit_size:
            raise ValueError(f"size must exceed digit_size; got size={size}, digit_size={digit_size}")
        stamp = disk_stamp(digit_size) > 0.5
        rows, cols = np.nonzero(stamp)
        self.size, self.digit_size, self.max_speed, self.tol, self.area_tol = size, digit_size, max_speed, tol, area_tol
        self.area = int(stamp.sum())
        self.extent = (int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1))
        self.center = np.array([cols.mean(), rows.mean()])  # centroid (x, y) within the stamp
        self.limit = size - digit_size  # walls at top-left coordinate 0 and limit

    def locate_all(self, frames: np.ndarray) -> list[tuple[np.ndarray | None, str]]:
        """Per frame of an ``(F, H, W)`` stack (labelled all at once), the top-left ``(x, y)`` of its one disk,
        or ``None`` and why there is none."""
        labels = _label(_fill_holes(frames > 0.5))
        width = frames.shape[2]
        found = []
        for frame, lab in zip(frames, labels):
            ids, sizes = np.unique(lab[lab >= 0], return_counts=True)
            if len(ids) == 0:
                found.append((None, "no disk"))
                continue
            order = np.argsort(-sizes)
            area, stray = int(sizes[order[0]]), int(sizes[order[1:]].sum())
            disk = np.flatnonzero(lab == ids[order[0]])
            ys, xs = np.divmod(disk, width)
            extent = (int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1))
            if stray > 0.1 * self.area:
                found.append((None, f"{len(ids)} bright regions"))
            elif abs(area - self.area) > self.area_tol * self.area:
                found.append((None, f"disk area {area} px, training disk {self.area} px"))
            elif max(abs(extent[0] - self.extent[0]), abs(extent[1] - self.extent[1])) > 2:
                found.append((None, f"disk extent {extent}, training disk {self.extent}"))
            elif frame.flat[disk].mean() < 0.5:
                found.append((None, "a ring, not a disk"))
            else:
                found.append((np.array([xs.mean(), ys.mean()]) - self.center, "ok"))
        return found

    def _axis_ok(self, c: np.ndarray) -> str | None:
        tol, d = self.tol, np.diff(c)
        at_wall = (c <= tol) | (c >= self.limit - tol)
        near = lambda k: at_wall[k] or at_wall[k + 1]  # noqa: E731  step k goes from frame k to k + 1
        for k in range(len(d)):
            if abs(d[k]) > self.max_speed + tol:
                return f"jump of {d[k]:+.1f} px at frame {k + 1}"
            if abs(d[k]) <= tol and (not near(k) or (k > 0 and abs(d[k - 1]) <= tol)):
                return f"stops at frame {k + 1} away from a wall"
            if k > 0 and abs(d[k] - d[k - 1]) > tol and not near(k):
                return f"velocity changes {d[k - 1]:+.1f} -> {d[k]:+.1f} px at frame {k} away from a wall"
        return None

    def judge(self, video: np.ndarray) -> VideoVerdict:
        """Verdict on one ``(T, H, W)`` video with values in [0, 1]."""
        video = np.asarray(video, dtype=np.float32)
        if video.ndim != 3 or video.shape[1:] != (self.size, self.size):
            raise ValueError(f"video must be (T, {self.size}, {self.size}); got shape {video.shape}")
        positions = np.full((len(video), 2), np.nan)
        first_bad = None
        for t, (pos, why) in enumerate(self.locate_all(video)):
            if pos is None:
                first_bad = first_bad or f"frame {t}: {why}"
            else:
                positions[t] = pos
        found = int(np.isfinite(positions[:, 0]).sum())
        if first_bad:
            return VideoVerdict(False, first_bad, positions, found)
        for axis, name in ((0, "x"), (1, "y")):
            why = self._axis_ok(positions[:, axis])
            if why:
                return VideoVerdict(False, f"{name}: {why}", positions, found)
        return VideoVerdict(True, "ok", positions, found)


def score_videos(videos, detector: DiskDetector | None = None) -> dict:
    """Judge ``(N, T, H, W)`` (or ``(N, 1, T, H, W)``) videos in [0, 1].

    Returns ``{"plausible_fraction", "one_disk_frame_fraction", "num_videos", "verdicts": [...]}``.
    """
    videos = np.asarray(videos, dtype=np.float32)
    if videos.ndim == 5 and videos.shape[1] == 1:
        videos = videos[:, 0]
    if videos.ndim != 4 or videos.shape[-1] != videos.shape[-2]:
        raise ValueError(f"videos must be (N, T, S, S) or (N, 1, T, S, S) grayscale; got shape {videos.shape}")
    detector = detector if detector is not None else DiskDetector(size=videos.shape[-1])
    verdicts = [detector.judge(v) for v in videos]
    return {
        "num_videos": len(videos),
        "plausible_fraction": float(np.mean([v.plausible for v in verdicts])),
        "one_disk_frame_fraction": sum(v.frames_with_disk for v in verdicts) / (videos.shape[0] * videos.shape[1]),
        "verdicts": [{"plausible": v.plausible, "reason": v.reason} for v in verdicts],
    }
