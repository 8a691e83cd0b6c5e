"""Moving digits: real handwritten digits that move with the bouncing law of :mod:`.bouncing`.

The digits are scikit-learn's copy of the UCI optical-recognition set (``sklearn.datasets.load_digits``):
1,797 handwritten digits 0-9, 8x8 pixels with values 0..16, shipped inside the scikit-learn wheel, so no
download is needed. They are scaled to [0, 1] and upsampled 2x to :data:`DIGIT_SIZE` = 16 px.

Frame size: 32x32 frames with 16-px digits keep about Moving MNIST's digit-to-frame ratio (28/64 ~ 0.44;
here 16/32 = 0.5) at the 32x32 frame size the pipeline trains on, and 16 px is an integer (2x) upsampling
of the 8x8 source, so every source pixel maps onto the same 2x2 footprint.

Motion: each of ``objects`` digits (one or two) follows :func:`~.bouncing.bounce_tracks`, the law of the
bouncing disks (integer velocities up to ``max_speed`` px/frame per axis, a velocity flips and the
position is clamped at a wall); the frame is the union (pixelwise maximum) of the digits.

Split: one fixed permutation of the 1,797 digits (``np.random.default_rng(0)``, independent of any user
seed) puts its last :data:`HELD_OUT` = 300 digits in ``"heldout"`` and the rest in ``"train"``; models
train on ``"train"`` and evaluators measure on ``"heldout"``.

Fitting: :func:`fit_digit_tracks` finds the law's path of each digit in a video (the evaluator's motion
check, :mod:`spacetime.diffusion.digit_judge`, and a test of this data's own law).

scikit-learn is an optional extra: ``pip install "spacetime[digits]"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ..checks import int_at_least, int_in, is_int, one_of, positive_int
from .bouncing import axis_paths, bounce_axis, bounce_tracks, speeds

__all__ = ["DIGIT_SIZE", "HELD_OUT", "SPLITS", "MAX_DIGITS", "load_digit_images", "render_digits", "MovingDigits",
           "create_digit_dataset", "digit_crops", "box_overlap", "DigitTrack", "fit_digit_tracks", "unoccluded_crops",
           "as_digit_video"]

DIGIT_SIZE = 16  #: side of a digit in the frames, pixels (2x the 8x8 source)
HELD_OUT = 300  #: digits in the held-out split
SPLITS = ("train", "heldout")
MAX_DIGITS = 2  #: digits per video at most
OFF_CENTRE = 0.005  # share of a path's ink it loses per px its ink's centre lies off the crop's centre
FAINT = 0.25  # brightness from which a pixel counts as ink
EXPLAINED = 0.05  # a pixel at most this much brighter than a fitted digit is that digit's


@lru_cache(maxsize=1)
def _all_digits() -> tuple[np.ndarray, np.ndarray]:
    """Every digit, ``(1797, 16, 16)`` float32 in [0, 1] and ``(1797,)`` int64 labels, read-only.

    Upsampling is bilinear with ``align_corners=False`` at scale 2: a smooth interpolation whose output
    grid is centred on the source grid, so the digit neither shifts nor sharpens into 2x2 blocks.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError('--data digits needs scikit-learn: pip install "spacetime[digits]"') from None
    bunch = load_digits()
    small = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32) / 16.0)  # (n, 8, 8)
    big = F.interpolate(small[:, None], scale_factor=DIGIT_SIZE // 8, mode="bilinear", align_corners=False)
    images = big[:, 0].clamp(0.0, 1.0).numpy()  # (n, 1, 16, 16) -> (n, 16, 16)
    labels = np.asarray(bunch.target, dtype=np.int64)
    return _frozen(images), _frozen(labels)


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


@lru_cache(maxsize=len(SPLITS))
def _split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The read-only ``(images, labels)`` of one split (the cache behind :func:`load_digit_images`)."""
    images, labels = _all_digits()
    order = np.random.default_rng(0).permutation(len(images))
    keep = np.sort(order[-HELD_OUT:] if split == "heldout" else order[:-HELD_OUT])
    return _frozen(images[keep]), _frozen(labels[keep])


def load_digit_images(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of a split: ``(N, 16, 16)`` float32 in [0, 1] and ``(N,)`` int64 classes 0-9.

    ``split`` is ``"train"`` (1,497 digits) or ``"heldout"`` (:data:`HELD_OUT` = 300). The arrays are
    loaded once per process and returned as fresh copies, so a caller may change them freely.
    """
    one_of("split", split, SPLITS)
    images, labels = _split(split)
    return images.copy(), labels.copy()


def render_digits(positions: np.ndarray, size: int, images: np.ndarray) -> np.ndarray:
    """``(T, K, 2)`` top-left ``(x, y)`` and ``(K, s, s)`` images (one per object) -> ``(T, size, size)`` float32
    frames: the union of the images (their maximum where they overlap), as :func:`~.bouncing.render_disks`
    draws one stamp."""
    positions = np.asarray(positions)
    if positions.ndim != 3 or positions.shape[1:] != (len(images), 2):
        raise ValueError(f"positions must be (T, {len(images)}, 2) for {len(images)} images; "
                         f"got shape {positions.shape}")
    s = images.shape[-1]
    video = np.zeros((len(positions), size, size), dtype=np.float32)
    for t, frame_positions in enumerate(positions):
        for (x, y), image in zip(frame_positions, images):
            np.maximum(video[t, y:y + s, x:x + s], image, out=video[t, y:y + s, x:x + s])
    return video


class MovingDigits(Dataset):
    """A seeded, map-style dataset of moving-digit videos, ``(1, T, size, size)`` float32 in [0, 1].

    Item ``i`` is generated from ``np.random.default_rng([seed, i])``: first the tracks of the
    ``objects`` digits (:func:`~.bouncing.bounce_tracks`), then which digits of ``split`` they are
    (``rng.integers``). The same index always gives the same video, in any order, process or worker.

    Args:
        length: distinct videos in an epoch.
        num_frames: frames per video.
        size: frame side, pixels; more than :data:`DIGIT_SIZE`.
        objects: digits per video, 1 or 2.
        max_speed: top speed per axis, 1-4 pixels per frame.
        seed: the stream's seed, an int >= 0.
        split: ``"train"`` or ``"heldout"``.
    """

    def __init__(self, length: int = 1_000_000, num_frames: int = 8, size: int = 32, objects: int = 1,
                 max_speed: int = 2, seed: int = 0, split: str = "train"):
        positive_int("length", length)
        positive_int("num_frames", num_frames)
        int_at_least("seed", seed, 0)
        if not is_int(size) or size <= DIGIT_SIZE:
            raise ValueError(f"size must be an int > {DIGIT_SIZE} (the digit size); got {size!r}")
        int_in("objects", objects, 1, MAX_DIGITS + 1, note=" (digits per video)")
        speeds(max_speed)
        one_of("split", split, SPLITS)
        self.length, self.num_frames, self.size, self.seed = length, num_frames, size, seed
        self.objects, self.max_speed, self.split = objects, max_speed, split
        self.images, self.classes = _split(split)

    def __len__(self) -> int:
        return self.length

    def _draw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(T, K, 2)`` top-left positions and ``(K,)`` indices into the split of video ``index``."""
        if not is_int(index) or not 0 <= index < self.length:
            raise IndexError(f"index must be an int in [0, {self.length}); got {index!r}")
        rng = np.random.default_rng([self.seed, int(index)])
        tracks = bounce_tracks(self.num_frames, self.size, DIGIT_SIZE, rng, self.objects, self.max_speed)
        picks = rng.integers(0, len(self.images), size=self.objects)
        return tracks, picks

    def positions(self, index: int) -> np.ndarray:
        """``(T, objects, 2)`` int top-left ``(x, y)`` of the digits in video ``index``."""
        return self._draw(index)[0]

    def labels(self, index: int) -> np.ndarray:
        """``(objects,)`` int64 classes (0-9) of the digits in video ``index``."""
        return self.classes[self._draw(index)[1]].copy()

    def velocities(self, index: int) -> np.ndarray:
        """``(objects, 2)`` int starting velocities ``(vx, vy)`` of the digits in video ``index`` (the velocity each
        axis's path starts with, read back from :meth:`positions`; with one frame every velocity fits and
        ``-max_speed`` is returned)."""
        choices, limit = speeds(self.max_speed), self.size - DIGIT_SIZE
        tracks = self.positions(index).transpose(1, 2, 0)  # (t, k, 2) -> (k, 2, t)
        paths = bounce_axis(tracks[..., 0], np.array(choices)[:, None, None], self.num_frames, limit)
        return np.array(choices)[np.argmax((paths == tracks).all(-1), axis=0)]  # (v, k, 2, t) -> (k, 2)

    def __getitem__(self, index: int) -> Tensor:
        tracks, picks = self._draw(index)
        video = render_digits(tracks, self.size, self.images[picks])
        return torch.from_numpy(video).unsqueeze(0)  # (t, h, w) -> (1, t, h, w)


def create_digit_dataset(num_videos: int, num_frames: int = 8, size: int = 32, *, objects: int = 1,
                         max_speed: int = 2, seed: int = 0, split: str = "train") -> tuple[Tensor, np.ndarray]:
    """``(videos, labels)``: items ``0 .. num_videos - 1`` of :class:`MovingDigits` with these arguments,
    ``(N, 1, T, size, size)`` float32 in [0, 1], and their ``(N, objects)`` int64 digit classes."""
    positive_int("num_videos", num_videos)
    data = MovingDigits(num_videos, num_frames, size, objects, max_speed, seed, split)
    videos = torch.stack([data[i] for i in range(num_videos)])
    labels = np.stack([data.labels(i) for i in range(num_videos)])
    return videos, labels


# --- fitting the law to a video ------------------------------------------------------------------------


def digit_crops(video: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``(T, S, S)`` frames and ``(T, K, 2)`` top-left ``(x, y)`` -> ``(T, K, 16, 16)`` crops."""
    s = DIGIT_SIZE
    return np.stack([[video[t, y:y + s, x:x + s] for x, y in frame] for t, frame in enumerate(positions)])


def box_overlap(positions: np.ndarray) -> np.ndarray:
    """``(T,)`` int: the largest area (px) two of the ``(T, K, 2)`` digits' 16x16 boxes share in each frame."""
    out = np.zeros(len(positions), dtype=np.int64)
    for a in range(positions.shape[1]):
        for b in range(a + 1, positions.shape[1]):
            gap = np.clip(DIGIT_SIZE - np.abs(positions[:, a] - positions[:, b]), 0, None)  # (T, 2)
            out = np.maximum(out, gap.prod(-1))
    return out


@dataclass
class DigitTrack:
    """One object's fitted path: ``start`` and starting ``velocity`` as ``(x, y)`` (bouncing.py's convention),
    its ``(T, 2)`` top-left ``positions`` and its ``(16, 16)`` ``template`` (the median crop along the path)."""

    start: tuple[int, int]
    velocity: tuple[int, int]
    positions: np.ndarray
    template: np.ndarray


@lru_cache(maxsize=32)
def _axis_paths(size: int, num_frames: int, max_speed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every path of one axis of 16-px digits in ``size``-px frames (:func:`~.bouncing.axis_paths`)."""
    return axis_paths(size - DIGIT_SIZE, max_speed, num_frames)


def _off_centre(crops: np.ndarray) -> np.ndarray:
    """``(K, 16 * 16)`` crops -> ``(K,)`` distance (px) of their centre of mass from the crop's centre."""
    grid = np.arange(DIGIT_SIZE) - (DIGIT_SIZE - 1) / 2
    crops = crops.reshape(len(crops), DIGIT_SIZE, DIGIT_SIZE)  # (k, (i j)) -> (k, i, j)
    mass = crops.sum((1, 2)) + 1e-6
    return np.hypot(crops.sum(2) @ grid / mass, crops.sum(1) @ grid / mass)


def _windows(frames: np.ndarray) -> np.ndarray:
    """``(T, S, S)`` -> ``(T, P, 16 * 16)``: every 16x16 window of every frame, ``P = (S - 15) ** 2`` positions."""
    t, n = len(frames), frames.shape[-1] - DIGIT_SIZE + 1
    windows = np.lib.stride_tricks.sliding_window_view(frames, (DIGIT_SIZE, DIGIT_SIZE), axis=(1, 2))
    return windows.reshape(t, n * n, DIGIT_SIZE * DIGIT_SIZE)  # (t, y, x, i, j) -> (t, (y x), (i j))


def _best_path(frames: np.ndarray, hidden: np.ndarray, coords: np.ndarray, candidates: int = 2048):
    """The ``(y path, x path)`` indices into ``coords`` whose crops of the ``(T, S, S)`` frames hold the most ink in
    every frame, and that ``(16, 16)`` ink.

    The ink held in every frame is the pixelwise minimum of the crops over the frames where ``hidden``
    (bool, like ``frames``: pixels another digit covers) does not hide the pixel: a digit carried along its
    own path keeps all its ink there; along any other path it slides out. The score is its sum, less
    :data:`OFF_CENTRE` of it per pixel its centre of mass lies off the crop's centre (the data's digits are
    centred in their box: of two paths holding one digit whole, which happens while it bounces off no wall,
    the digit's own centres it). Only the ``candidates`` pairs whose crops hold the most ink in total are
    scored in full.
    """
    t, n = len(frames), frames.shape[-1] - DIGIT_SIZE + 1
    windows = _windows(frames)
    where = (coords[:, None, :] * n + coords[None, :, :]).reshape(-1, t)  # (C_y * C_x, t): each pair's windows
    ink = windows.sum(-1)[np.arange(t), where].sum(-1)  # (C_y * C_x,)
    top = np.argpartition(-ink, min(candidates, ink.size) - 1)[:candidates]
    crops = np.where(_windows(hidden)[np.arange(t), where[top]], np.inf, windows[np.arange(t), where[top]])
    floors = crops.min(1)  # (K, t, i j) -> (K, i j)
    floors[np.isinf(floors)] = 0.0
    best = int(np.argmax(floors.sum(-1) * (1 - OFF_CENTRE * _off_centre(floors))))
    iy, ix = np.unravel_index(top[best], (len(coords), len(coords)))
    return int(iy), int(ix), floors[best].reshape(DIGIT_SIZE, DIGIT_SIZE)


def _templates(video: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``(K, 16, 16)``: each object's pixelwise median crop over the frames where no other object's box covers
    that pixel (the minimum over all frames where one always does: the union never darkens a digit)."""
    crops = digit_crops(video, positions)  # (T, K, 16, 16)
    span = np.arange(DIGIT_SIZE)
    out = []
    for k in range(positions.shape[1]):
        covered = np.zeros(crops.shape[:1] + crops.shape[2:], dtype=bool)  # (T, 16, 16)
        for j in set(range(positions.shape[1])) - {k}:
            dx, dy = (positions[:, j] - positions[:, k]).T[..., None]  # (T, 1) each
            inside = [(span >= d) & (span < d + DIGIT_SIZE) for d in (dy, dx)]  # (T, 16) rows, columns
            covered |= inside[0][:, :, None] & inside[1][:, None, :]
        ranked = np.sort(np.where(covered, np.inf, crops[:, k]), axis=0)  # uncovered values first
        count = (~covered).sum(0)
        middle = [np.take_along_axis(ranked, np.maximum(q, 0)[None], 0)[0] for q in ((count - 1) // 2, count // 2)]
        lower, upper = middle
        out.append(np.where(count > 0, (lower + upper) / 2, crops[:, k].min(0)))
    return np.stack(out).astype(np.float32)


def as_digit_video(video, name: str = "video") -> np.ndarray:
    """``video`` as float32 ``(T, S, S)`` frames, checked: ``T >= 2`` (a path needs a move) and ``S > 16``."""
    video = np.asarray(video, dtype=np.float32)
    if video.ndim != 3 or video.shape[1] != video.shape[2] or video.shape[1] <= DIGIT_SIZE or len(video) < 2:
        raise ValueError(f"{name} must be (T, S, S) frames with T >= 2 and S > {DIGIT_SIZE}; "
                         f"got shape {video.shape}")
    return video


def fit_digit_tracks(video, objects: int, max_speed: int = 2) -> list[DigitTrack]:
    """The bouncing-law paths of ``objects`` digits in a ``(T, S, S)`` video, found greedily: the path holding the
    most ink in every frame (:func:`_best_path`, over every path of :func:`~.bouncing.bounce_axis` per axis),
    then the next on the frames with the pixels that digit explains cleared and those it covers hidden; then
    each digit's template (:func:`_templates`)."""
    video = as_digit_video(video)
    int_in("objects", objects, 1, MAX_DIGITS + 1, note=" (digits per video)")
    coords, starts, velocities = _axis_paths(video.shape[-1], len(video), max_speed)
    rest, hidden, found = video.copy(), np.zeros(video.shape, dtype=bool), []
    for _ in range(objects):
        iy, ix, floor = _best_path(rest, hidden, coords)
        found.append((iy, ix))
        placed = render_digits(np.stack([coords[ix], coords[iy]], -1)[:, None], video.shape[-1], floor[None])
        rest, hidden = np.where(rest <= placed + EXPLAINED, 0.0, rest), hidden | (placed > FAINT)
    positions = np.stack([np.stack([coords[ix], coords[iy]], -1) for iy, ix in found], 1)  # (T, K, 2) (x, y)
    templates = _templates(video, positions)
    return [DigitTrack((int(starts[ix]), int(starts[iy])), (int(velocities[ix]), int(velocities[iy])),
                       positions[:, k], templates[k]) for k, (iy, ix) in enumerate(found)]


def unoccluded_crops(video, tracks: list[DigitTrack]) -> np.ndarray:
    """``(T, K, 16, 16)`` crops of a ``(T, S, S)`` video along fitted tracks, each with the pixels the other digits'
    templates cover (brighter than :data:`EXPLAINED` there) taken from its own template: what the digit shows of
    itself."""
    video = as_digit_video(video)
    positions = np.stack([track.positions for track in tracks], 1)  # (T, K, 2)
    crops = digit_crops(video, positions)
    for k, track in enumerate(tracks):
        others = [other for j, other in enumerate(tracks) if j != k]
        if others:
            cover = render_digits(np.stack([o.positions for o in others], 1), video.shape[-1],
                                  np.stack([o.template for o in others]))
            crops[:, k] = np.where(digit_crops(cover, track.positions[:, None])[:, 0] > EXPLAINED, track.template,
                                   crops[:, k])
    return crops
