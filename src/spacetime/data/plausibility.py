"""Physical plausibility of bouncing-disk videos: the detector behind ``spacetime eval``.

A video is plausible when the data's own law explains it: there are exactly ``objects`` disks
of the training size, each following :func:`~spacetime.data.bouncing.bounce_axis` on both axes
from some start with some velocity of the data's (integer, at most ``max_speed`` px/frame), and
in every frame

1. the binarized frame (pixels > 0.5, dark specks inside a disk filled) differs from the union
   of those disks by at most ``tol`` of one disk's area,
2. no more than ``stray`` of a disk's area is brighter than 0.25 away from the disks (faint
   copies, blobs and smears count), and
3. the disks are bright (mean > 0.5 over their pixels; a ring fills to a disk but is dim).

The paths are fitted to the whole video at once: for every start and velocity of every axis the
law's path is tabulated, each frame's agreement with a stamp at every position is computed, and
the path that agrees best over all frames is taken, one object after another, each on the pixels
the others leave. The training data therefore scores 100%, overlapping disks included, while a
square, a speed the data has not (1.5 px/frame drifts off every integer path), or a speed changed
at a wall leaves the fitted path. Besides the verdict, each video's fitted starts and velocities
feed :mod:`spacetime.data.diversity`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..checks import int_at_least, int_in, number_in
from .bouncing import MAX_OBJECTS, axis_paths, create_dataset, disk_stamp, speeds

__all__ = ["DiskDetector", "VideoVerdict", "score_videos", "count_law"]

FAINT = 0.25  # brightness above which a pixel off the disks counts as stray


@dataclass
class VideoVerdict:
    plausible: bool
    reason: str  # "ok" or why not
    positions: np.ndarray  # (T, K, 2) top-left (x, y) of the K disks found, on their fitted paths
    frames_with_disk: int  # frames that alone hold exactly `objects` training-size disks and nothing else
    count: int  # disks that stand on their own (DiskDetector.count): the object count diversity compares
    starts: np.ndarray  # (K, 2) frame-0 top-left (x, y) of the K = objects fitted disks
    velocities: np.ndarray  # (K, 2) their first move (vx, vy)


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


def _dilate(mask: np.ndarray) -> np.ndarray:
    """``(F, H, W)`` masks grown by one pixel (8-neighbourhood)."""
    padded = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
    h, w = mask.shape[1:]
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= padded[:, dy:dy + h, dx:dx + w]
    return out


class DiskDetector:
    """Scores videos of bouncing disks against the law of the training data.

    Args:
        size: frame size (square).
        digit_size: side of the disk stamp used in training (text 004: 12).
        objects: disks in every training video (1-3).
        max_speed: the training data's top speed per axis, pixels per frame (text 004: 2).
        tol: pixels per frame that may differ from the fitted disks, as a fraction of one disk's area
            (the default 0.15 lets a few edge pixels go, not a 1-px offset of a 12-px disk).
        stray: pixels brighter than 0.25 away from the disks allowed per frame, as a fraction of one
            disk's area.
    """

    def __init__(self, size: int = 32, digit_size: int = 12, objects: int = 1, max_speed: int = 2,
                 tol: float = 0.15, stray: float = 0.03):
        int_at_least("digit_size", digit_size, 2)
        if not isinstance(size, (int, np.integer)) or size <= digit_size:
            raise ValueError(f"size must be an int exceeding digit_size; got size={size!r}, digit_size={digit_size}")
        int_in("objects", objects, 1, MAX_OBJECTS + 1)
        number_in("tol", tol, 0, 1, note=" (a fraction of a disk's area)")
        number_in("stray", stray, 0, 1, note=" (a fraction of a disk's area)")
        self.speeds = speeds(max_speed)
        self.size, self.digit_size, self.objects, self.max_speed = size, digit_size, objects, max_speed
        self.tol, self.stray = tol, stray
        self.stamp = disk_stamp(digit_size) > 0.5
        self.area = int(self.stamp.sum())
        self.limit = size - digit_size  # walls at top-left coordinate 0 and limit

    @lru_cache(maxsize=8)  # noqa: B019  a handful of clip lengths per detector
    def paths(self, num_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every path of one axis: ``(C, T)`` coordinates, and the ``(C,)`` start and velocity of each."""
        return axis_paths(self.limit, self.max_speed, num_frames)

    def agreement(self, weights: np.ndarray) -> np.ndarray:
        """``(T, L + 1, L + 1)``: at ``[t, y, x]`` the sum of ``(T, H, W)`` weights under the stamp at top-left
        ``(x, y)``."""
        windows = np.lib.stride_tricks.sliding_window_view(weights, self.stamp.shape, axis=(1, 2))
        return np.einsum("tyxij,ij->tyx", windows, self.stamp.astype(weights.dtype), optimize=True)

    def render(self, positions: np.ndarray, num_frames: int) -> np.ndarray:
        """``(T, K, 2)`` top-left positions -> ``(T, size, size)`` bool union of the stamps."""
        out = np.zeros((num_frames, self.size, self.size), dtype=bool)
        s = self.digit_size
        for t in range(num_frames):
            for x, y in positions[t]:
                out[t, y:y + s, x:x + s] |= self.stamp
        return out

    def fit_paths(self, mask: np.ndarray) -> list[tuple[int, int, float]]:
        """Greedy fit of ``(T, H, W)`` bool frames: ``MAX_OBJECTS + 1`` disks, one after another, each on the path
        ``(y path, x path)`` (indices into :meth:`paths`) that agrees best with the pixels the disks before it leave
        (+1 on the mask, -1 off it, 0 under those disks), with that agreement: ``[(iy, ix, score), ...]``.

        The sequence does not depend on how many disks are asked for: :meth:`judge` takes the first ``objects``,
        :meth:`count` those that add more agreeing than disagreeing pixels (half a stamp per frame).
        """
        t = len(mask)
        coords = self.paths(t)[0]
        weights = np.where(mask, 1.0, -1.0).astype(np.float32)
        covered = np.zeros_like(mask)
        found: list[tuple[int, int, float]] = []
        frames = np.arange(t)
        while len(found) <= MAX_OBJECTS:
            agree = self.agreement(np.where(covered, 0.0, weights).astype(np.float32))
            score = agree[frames, coords[:, None, :], coords[None, :, :]].sum(-1)  # (C_y, C_x)
            iy, ix = np.unravel_index(int(np.argmax(score)), score.shape)
            found.append((int(iy), int(ix), float(score[iy, ix])))
            covered |= self.render(np.stack([coords[ix], coords[iy]], -1)[:, None], t)
        return found

    def count(self, fitted: list[tuple[int, int, float]], num_frames: int) -> int:
        """How many of :meth:`fit_paths`'s disks stand on their own: each adds at least half a stamp of agreeing
        pixels per frame (overlapping disks of the data can hide one another; the data's own count is the
        reference, :mod:`spacetime.data.diversity`)."""
        return next((k for k, (_, _, score) in enumerate(fitted) if score < 0.5 * self.area * num_frames),
                    len(fitted))

    def fit_frame(self, mask: np.ndarray) -> np.ndarray:
        """Greedy fit of one ``(H, W)`` bool frame with ``objects`` stamps anywhere: ``(objects, 2)`` top-left
        ``(x, y)``, each where it agrees best with the pixels the ones before it leave."""
        weights = np.where(mask, 1.0, -1.0).astype(np.float32)[None]
        covered = np.zeros_like(weights, dtype=bool)
        found = []
        for _ in range(self.objects):
            agree = self.agreement(np.where(covered, 0.0, weights).astype(np.float32))[0]
            y, x = np.unravel_index(int(np.argmax(agree)), agree.shape)
            found.append((int(x), int(y)))
            covered |= self.render(np.array([[found[-1]]]), 1)
        return np.array(found, dtype=np.int64).reshape(-1, 2)

    def frame_faults(self, video: np.ndarray, mask: np.ndarray, disks: np.ndarray) -> list[str | None]:
        """Per frame, what is wrong with ``(T, H, W)`` frames (and their filled masks) against ``(T, H, W)`` bool
        disks: pixels that differ, stray brightness, dim disks; ``None`` where nothing is."""
        differ = (mask ^ disks).sum((1, 2))
        stray = ((video > FAINT) & ~_dilate(disks)).sum((1, 2))
        faults = []
        for t in range(len(video)):
            if differ[t] > self.tol * self.area:
                faults.append(f"{differ[t]} px differ from the disks")
            elif stray[t] > self.stray * self.area:
                faults.append(f"{stray[t]} px of stray brightness")
            elif disks[t].any() and video[t][disks[t]].mean() < 0.5:
                faults.append("a dim disk or a ring")
            else:
                faults.append(None)
        return faults

    def hidden(self, positions: np.ndarray) -> bool:
        """Whether one of the ``(T, K, 2)`` disks shows no pixel of its own in any frame (the fit puts a disk the
        video lacks exactly on top of another; two of the data's disks coincide for a whole clip about once in
        ``(L * 2S)^2`` videos)."""
        t = len(positions)
        disks = [self.render(positions[:, k:k + 1], t) for k in range(positions.shape[1])]
        return any(not (disk & ~np.logical_or.reduce([d for j, d in enumerate(disks) if j != k])).any()
                   for k, disk in enumerate(disks))

    def locate_all(self, frames: np.ndarray) -> list[tuple[np.ndarray | None, str]]:
        """Per frame of an ``(F, H, W)`` stack, on its own: the ``(objects, 2)`` top-left ``(x, y)`` of its disks,
        or ``None`` and why the frame is not ``objects`` training disks and nothing else."""
        frames = np.asarray(frames, dtype=np.float32)
        masks = _fill_holes(frames > 0.5)
        found = []
        for frame, mask in zip(frames, masks):
            disks = self.fit_frame(mask)
            fault = self.frame_faults(frame[None], mask[None], self.render(disks[None], 1))[0]
            found.append((None, fault) if fault else (disks, "ok"))
        return found

    def judge(self, video: np.ndarray) -> VideoVerdict:
        """Verdict on one ``(T, H, W)`` video with values in [0, 1]."""
        video = np.asarray(video, dtype=np.float32)
        if video.ndim != 3 or video.shape[1:] != (self.size, self.size):
            raise ValueError(f"video must be (T, {self.size}, {self.size}); got shape {video.shape}")
        t = len(video)
        mask = _fill_holes(video > 0.5)
        coords, starts, velocities = self.paths(t)
        fitted = self.fit_paths(mask)
        paths = [(iy, ix) for iy, ix, _ in fitted[:self.objects]]
        positions = np.stack([np.stack([coords[ix], coords[iy]], -1) for iy, ix in paths], 1)  # (T, K, 2)
        located = self.locate_all(video)  # each frame on its own
        verdict = dict(positions=positions, frames_with_disk=sum(why == "ok" for _, why in located),
                       count=self.count(fitted, t),
                       starts=np.array([[starts[ix], starts[iy]] for iy, ix in paths], dtype=np.int64),
                       velocities=np.array([[velocities[ix], velocities[iy]] for iy, ix in paths], dtype=np.int64))
        if self.objects > 1 and self.hidden(positions):
            return VideoVerdict(False, f"fewer disks than the data's {self.objects} (one lies under the others in "
                                       f"every frame)", **verdict)
        for k, fault in enumerate(self.frame_faults(video, mask, self.render(positions, t))):
            if fault:
                alone_ok = located[k][1] == "ok"
                where = "the disks leave the data's bouncing paths" if alone_ok else "not the training disks"
                return VideoVerdict(False, f"frame {k}: {where} ({fault})", **verdict)
        return VideoVerdict(True, "ok", **verdict)


def score_videos(videos, detector: DiskDetector | None = None) -> dict:
    """Judge ``(N, T, H, W)`` (or ``(N, 1, T, H, W)``) videos in [0, 1].

    Returns ``{"plausible_fraction", "one_disk_frame_fraction", "num_videos", "verdicts": [...]}``; each
    verdict holds the ``starts`` and first-move ``velocities`` of the ``objects`` fitted disks (lists of ``[x, y]``)
    and the ``count`` of disks that stand on their own.
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
        "verdicts": [{"plausible": v.plausible, "reason": v.reason, "starts": v.starts.tolist(),
                      "velocities": v.velocities.tolist(), "count": v.count} for v in verdicts],
    }


def count_law(detector: DiskDetector, num_frames: int, num_videos: int = 256, seed: int = 0) -> np.ndarray:
    """The share of the data's own videos in which 0, 1, ..., ``MAX_OBJECTS + 1`` disks stand on their own
    (:meth:`DiskDetector.count`; disks that overlap for a whole clip count as one there too), measured on
    ``num_videos`` videos generated with the detector's law (digit size, objects, top speed)."""
    videos = create_dataset(num_videos, num_frames, detector.size, rng=np.random.default_rng(seed),
                            digit_size=detector.digit_size, objects=detector.objects,
                            max_speed=detector.max_speed).numpy()[:, 0]
    counts = [detector.count(detector.fit_paths(_fill_holes(v > 0.5)), num_frames) for v in videos]
    return np.bincount(counts, minlength=MAX_OBJECTS + 2) / num_videos
