"""The judge of moving-digit videos (:mod:`spacetime.data.digits`): motion, identity and a Frechet distance.

* Motion: :func:`fit_digit_tracks` finds, object after object, the bouncing-law path along which the most
  ink stays in the 16x16 crop in every frame. The motion is plausible when the objects' templates placed
  on their paths explain every frame within ``tol`` of a digit's ink and nothing bright is left elsewhere.
* Identity: a small CNN (:class:`DigitClassifier`, trained here on the train split) names each object's
  digit in each frame. An object keeps its identity when one class wins every judged frame with
  probability >= 0.5. With two objects a frame is judged only where the two 16x16 boxes overlap by less
  than half their area (else on the least overlapping frames): a digit more than half hidden has no
  reliable identity; pixels the other digit covers are filled from the object's own template.
* Distribution: :class:`VideoFeatures`, a small 3D CNN trained here to say which digit classes and which
  starting velocities a video holds, gives features for :func:`frechet_distance` (the FVD idea).

:meth:`DigitJudge.load_or_train` trains both networks (deterministic under the seed) and caches them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import int_in, positive_int
from ..data.bouncing import speeds
from ..data.digits import (DIGIT_SIZE, FAINT, MAX_DIGITS, DigitTrack, MovingDigits, as_digit_video, box_overlap,
                           create_digit_dataset, digit_crops, fit_digit_tracks, load_digit_images, render_digits,
                           unoccluded_crops)
from ..io import CheckpointError, load_weights, save_weights
from ..training import optimizer_step, progress_bar

__all__ = ["DigitClassifier", "train_digit_classifier", "classifier_accuracy", "VideoFeatures",
           "train_video_features", "frechet_distance", "DigitTrack", "fit_digit_tracks", "judge_digit_video",
           "DigitJudge", "VERSION"]

VERSION = "digit-judge-1"  #: part of the cache key: change it when training changes
CLASSIFIER_STEPS, FEATURE_STEPS = 800, 500
MIN_INK = 20.0  # ink an object's template needs (the faintest training digit holds 46)
HALF = DIGIT_SIZE * DIGIT_SIZE // 2  # overlap area (px) from which a frame's identity is not judged


def _train(model: nn.Module, steps: int, batch, loss_fn, *, lr: float, progress, desc: str) -> nn.Module:
    """A plain AdamW loop with a cosine learning rate: ``batch(step) -> (x, y)``; returns ``model`` in eval mode."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    model.train()
    with progress_bar(steps, 0, desc, progress) as bar:
        for step in range(steps):
            x, y = batch(step)
            optimizer_step(opt, loss_fn(model(x), y))
            sched.step()
            bar.update(1)
    return model.eval()


# --- digit classifier -----------------------------------------------------------------------------------


class DigitClassifier(nn.Module):
    """A small CNN naming the digit in a ``(b, 1, 16, 16)`` crop: ``(b, 10)`` logits."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = positive_int("width", width)
        self.net = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),  # 16 -> 8
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 8 -> 4
            nn.Flatten(), nn.Linear(2 * w * 16, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def predict(self, crops) -> tuple[np.ndarray, np.ndarray]:
        """``(..., 16, 16)`` crops -> ``(...)`` int classes and ``(...)`` their probabilities."""
        crops = torch.as_tensor(np.asarray(crops, dtype=np.float32))
        probs = self.eval()(crops.reshape(-1, 1, DIGIT_SIZE, DIGIT_SIZE)).softmax(-1)  # (n, 1, 16, 16) -> (n, 10)
        p, c = probs.max(-1)
        return c.reshape(crops.shape[:-2]).numpy(), p.reshape(crops.shape[:-2]).numpy()


def _shift(images: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """``(b, 16, 16)`` images moved by integer ``(b,)`` offsets in ``[-16, 16]``, zeros filling in."""
    s = DIGIT_SIZE
    padded = F.pad(images, (s, s, s, s))  # (b, 48, 48)
    rows = torch.arange(s)[None, :] + s - dy[:, None]  # (b, 16)
    cols = torch.arange(s)[None, :] + s - dx[:, None]
    return padded[torch.arange(len(images))[:, None, None], rows[:, :, None], cols[:, None, :]]


def _overlap_offsets(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n,)`` offsets ``dx, dy`` of a second digit whose 16x16 box overlaps the first by less than half."""
    s = DIGIT_SIZE
    major = torch.randint(0, s, (n,), generator=gen)
    low = (s - HALF / (s - major)).floor().long().clamp(min=0) + 1  # (s - |a|)(s - |b|) < HALF
    minor = (low + torch.rand(n, generator=gen) * (s - low)).long().clamp(max=s - 1)
    signs = torch.randint(0, 2, (2, n), generator=gen) * 2 - 1
    swap = torch.rand(n, generator=gen) < 0.5
    dx, dy = torch.where(swap, minor, major) * signs[0], torch.where(swap, major, minor) * signs[1]
    return dx, dy


def _augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Crops as the judge sees them: 0-2 px shifts, brightness 0.7-1.0, half with a partly overlapping second
    digit (overlap under half, itself 0.7-1.0 bright), light noise."""
    n = len(images)
    shift = torch.randint(-2, 3, (2, n), generator=gen)
    x = _shift(images, shift[0], shift[1]) * (0.7 + 0.3 * torch.rand(n, 1, 1, generator=gen))
    other = images[torch.randperm(n, generator=gen)] * (0.7 + 0.3 * torch.rand(n, 1, 1, generator=gen))
    other = _shift(other, *_overlap_offsets(n, gen))
    x = torch.where(torch.rand(n, 1, 1, generator=gen) < 0.5, torch.maximum(x, other), x)
    return (x + 0.03 * torch.randn(x.shape, generator=gen)).clamp(0.0, 1.0)


def train_digit_classifier(seed: int = 0, steps: int = CLASSIFIER_STEPS, progress: bool | None = False,
                           batch_size: int = 128) -> DigitClassifier:
    """A :class:`DigitClassifier` trained on the train split's digits (augmented by :func:`_augment`), fp32 on
    CPU, deterministic under ``seed`` (the global torch RNG is left as it was)."""
    positive_int("steps", steps)
    positive_int("batch_size", batch_size)
    images, labels = (torch.from_numpy(a) for a in load_digit_images("train"))
    gen = torch.Generator().manual_seed(seed)

    def batch(step):
        idx = torch.randint(0, len(images), (batch_size,), generator=gen)
        return _augment(images[idx], gen)[:, None], labels[idx]  # (b, 16, 16) -> (b, 1, 16, 16)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitClassifier()
    return _train(model, steps, batch, F.cross_entropy, lr=3e-3, progress=progress, desc="digit classifier")


def classifier_accuracy(classifier: DigitClassifier, videos: int = 64) -> dict:
    """Accuracy on the held-out digits (``heldout_images``) and on crops of ``videos`` held-out moving-digit
    videos (half with one digit, half with two) at their true positions, on the frames the judge judges
    (``heldout_frames``)."""
    images, labels = load_digit_images("heldout")
    right, total = 0, 0
    for objects in (1, 2):
        data = MovingDigits(videos // 2, objects=objects, seed=1, split="heldout")
        for i in range(len(data)):
            tracks = data.positions(i)
            keep = box_overlap(tracks) < HALF
            classes, _ = classifier.predict(digit_crops(data[i][0].numpy(), tracks)[keep])
            right, total = right + int((classes == data.labels(i)).sum()), total + classes.size
    return {"heldout_images": float((classifier.predict(images)[0] == labels).mean()),
            "heldout_frames": right / max(total, 1)}


# --- video features and the Frechet distance ------------------------------------------------------------


class VideoFeatures(nn.Module):
    """A small 3D CNN on ``(b, 1, T, H, W)`` clips (any ``T >= 2``: it pools globally): ``(b, outputs)`` logits
    from ``(b, dim)`` features (:meth:`features`). It sees each frame and its difference to the previous one
    (zero for the first); batch norm lets a few hundred steps train it."""

    def __init__(self, width: int = 16, dim: int = 64, outputs: int = 10 + 16):
        super().__init__()
        w = positive_int("width", width)
        self.body = nn.Sequential(
            nn.Conv3d(2, w, 3, stride=(1, 2, 2), padding=1), nn.BatchNorm3d(w), nn.ReLU(),  # 32 -> 16
            nn.Conv3d(w, 2 * w, 3, stride=(1, 2, 2), padding=1), nn.BatchNorm3d(2 * w), nn.ReLU(),  # 16 -> 8
            nn.Conv3d(2 * w, 4 * w, 3, stride=(1, 2, 2), padding=1), nn.BatchNorm3d(4 * w), nn.ReLU(),  # 8 -> 4
            nn.AdaptiveMaxPool3d(1), nn.Flatten(), nn.Linear(4 * w, positive_int("dim", dim)), nn.ReLU())
        self.head = nn.Linear(dim, positive_int("outputs", outputs))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, 1, t, h, w)`` -> ``(b, dim)`` features."""
        change = torch.cat([torch.zeros_like(x[:, :, :1]), x[:, :, 1:] - x[:, :, :-1]], 2)  # (b, 1, t, h, w)
        return self.body(torch.cat([x, change], 1))  # (b, 2, t, h, w) -> (b, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    @torch.no_grad()
    def features(self, videos, batch_size: int = 64) -> np.ndarray:
        """``(N, 1, T, H, W)`` or ``(N, T, H, W)`` videos -> ``(N, dim)`` float64 penultimate features."""
        videos = torch.as_tensor(np.asarray(videos, dtype=np.float32))
        videos = videos[:, None] if videos.ndim == 4 else videos  # (n, t, h, w) -> (n, 1, t, h, w)
        self.eval()
        chunks = [self.embed(videos[i:i + batch_size]) for i in range(0, len(videos), batch_size)]
        return torch.cat(chunks).double().numpy()


def _video_targets(data: MovingDigits, index: int) -> torch.Tensor:
    """Multi-hot ``(10 + V * V,)``: the digit classes in video ``index`` and the cells ``(vx, vy)`` of the objects'
    starting velocities."""
    choices = speeds(data.max_speed)
    target = torch.zeros(10 + len(choices) ** 2)
    target[data.labels(index)] = 1.0
    for vx, vy in data.velocities(index):
        target[10 + choices.index(vx) * len(choices) + choices.index(vy)] = 1.0
    return target


def train_video_features(seed: int = 0, steps: int = FEATURE_STEPS, progress: bool | None = False,
                         batch_size: int = 32, num_frames: int = 8, size: int = 32) -> VideoFeatures:
    """A :class:`VideoFeatures` trained with BCE on train-split moving digits (one and two digits mixed, top
    speed 2) to say which classes and which starting-velocity cells a video holds; deterministic under ``seed``."""
    positive_int("steps", steps)
    positive_int("batch_size", batch_size)
    sets = [MovingDigits(num_frames=num_frames, size=size, objects=k, seed=seed) for k in (1, 2)]
    gen = torch.Generator().manual_seed(seed)

    def batch(step):
        idx = torch.randint(0, len(sets[0]), (batch_size,), generator=gen).tolist()
        picks = [(sets[j % 2], i) for j, i in enumerate(idx)]
        return torch.stack([d[i] for d, i in picks]), torch.stack([_video_targets(d, i) for d, i in picks])

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VideoFeatures()
    return _train(model, steps, batch, F.binary_cross_entropy_with_logits, lr=3e-3, progress=progress,
                  desc="video features")


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix (negative round-off clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(a, b) -> float:
    """The Frechet distance between Gaussians fitted to ``(N, F)`` and ``(M, F)`` feature sets:
    ``|mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2))``.

    ``tr (C_a C_b)^(1/2)`` is taken as ``tr (R C_b R)^(1/2)`` with ``R = C_a^(1/2)``: the same eigenvalues, but
    of a symmetric matrix, so no complex round-off appears (what ``scipy.linalg.sqrtm`` of the product
    would leave as tiny imaginary parts). When a set has no more rows than features its covariance is
    singular; a ridge of 1e-6 of the mean variance is then added to both covariances.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    for name, x in (("a", a), ("b", b)):
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"{name} must be an (N, F) array of features with N >= 2; got shape {x.shape}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same number of features; got {a.shape[1]} and {b.shape[1]}")
    ca, cb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    dim = a.shape[1]
    if min(len(a), len(b)) <= dim:
        ridge = 1e-6 * max((np.trace(ca) + np.trace(cb)) / (2 * dim), 1e-12)
        ca, cb = ca + ridge * np.eye(dim), cb + ridge * np.eye(dim)
    root = _sqrt_psd(ca)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ cb @ root), 0, None)).sum()
    value = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(ca) + np.trace(cb) - 2 * cross
    return float(max(value, 0.0))


# --- tracks and verdicts --------------------------------------------------------------------------------


def _motion_fault(video: np.ndarray, tracks: list[DigitTrack], tol: float, stray: float) -> str | None:
    """Why the fitted digits do not explain the frames (``None`` when they do)."""
    inks = [float(track.template.sum()) for track in tracks]
    if min(inks) < MIN_INK:
        return f"object {int(np.argmin(inks))} holds ink {min(inks):.1f} < {MIN_INK}: no digit on a bouncing path"
    positions = np.stack([track.positions for track in tracks], 1)  # (T, K, 2)
    size, k = video.shape[-1], len(tracks)
    error = np.abs(video - render_digits(positions, size, np.stack([tr.template for tr in tracks]))).sum((1, 2))
    boxes = render_digits(positions, size, np.ones((k, DIGIT_SIZE, DIGIT_SIZE), dtype=np.float32)) > 0
    strays = ((video > FAINT) & ~boxes).sum((1, 2))
    for t in range(len(video)):
        if error[t] > tol * np.mean(inks):
            share = error[t] / np.mean(inks)
            return f"frame {t}: the digits on their paths leave {share:.0%} of a digit's ink unexplained"
        if strays[t] > stray * DIGIT_SIZE ** 2:
            return f"frame {t}: {strays[t]} bright px off the digits' paths"
    return None


def judge_digit_video(video, objects: int, classifier: DigitClassifier, max_speed: int = 2, *, tol: float = 0.25,
                      stray: float = 0.03) -> dict:
    """The verdict on one ``(T, S, S)`` video in [0, 1] holding ``objects`` digits at up to ``max_speed`` px/frame.

    Motion is plausible when the median crops on the fitted paths (:func:`fit_digit_tracks`) explain every
    frame to within ``tol`` of a digit's ink (L1) and at most ``stray`` of a 16x16 box is bright (> 0.25) off
    the paths. Identity is kept when each object's class is the same, with probability >= 0.5, in every
    judged frame (all frames, or with two digits those whose crops overlap by less than half).
    Returns ``plausible`` (both), ``motion_plausible``, ``keeps_identity``, per object the ``classes`` and
    ``probabilities`` per frame, ``judged_frames``, ``starts`` and ``velocities`` (``[x, y]`` per object)
    and ``reason`` ("ok" or the first fault).
    """
    video = as_digit_video(video)
    tracks = fit_digit_tracks(video, objects, max_speed)
    motion = _motion_fault(video, tracks, tol, stray)
    overlap = box_overlap(np.stack([track.positions for track in tracks], 1))  # (T,)
    classes, probs = classifier.predict(unoccluded_crops(video, tracks))  # (T, K) each
    judged = overlap < HALF if overlap.min() < HALF else overlap == overlap.min()
    identity = None
    for k in range(objects):
        seen, low = np.unique(classes[judged, k]), probs[judged, k].min()
        if len(seen) > 1 or low < 0.5:
            identity = f"object {k}: classes {seen.tolist()} over the judged frames, lowest probability {low:.2f}"
            break
    return {"plausible": motion is None and identity is None, "motion_plausible": motion is None,
            "keeps_identity": identity is None, "classes": classes.T.tolist(),
            "probabilities": np.round(probs.T, 4).tolist(), "judged_frames": np.flatnonzero(judged).tolist(),
            "starts": [list(tr.start) for tr in tracks], "velocities": [list(tr.velocity) for tr in tracks],
            "reason": motion or identity or "ok"}


# --- the judge -------------------------------------------------------------------------------------------


def _cache_dir(cache_dir) -> Path:
    """``cache_dir``, else ``$SPACETIME_CACHE/digit_judge``, else ``~/.cache/spacetime/digit_judge``."""
    root = os.environ.get("SPACETIME_CACHE")
    default = (Path(root) if root else Path.home() / ".cache" / "spacetime") / "digit_judge"
    return default if cache_dir is None else Path(cache_dir)


def _as_videos(videos) -> np.ndarray:
    """``(N, 1, T, S, S)`` or ``(N, T, S, S)`` videos -> float32 ``(N, T, S, S)``."""
    videos = np.asarray(videos.detach().cpu() if isinstance(videos, torch.Tensor) else videos, dtype=np.float32)
    videos = videos[:, 0] if videos.ndim == 5 and videos.shape[1] == 1 else videos  # (n, 1, t, h, w) -> (n, t, h, w)
    if videos.ndim != 4 or len(videos) == 0:
        raise ValueError(f"videos must be (N, 1, T, S, S) or (N, T, S, S) with N >= 1; got shape {videos.shape}")
    return videos


class DigitJudge:
    """The digit classifier and the video feature network, trained together, with what they measured.

    ``accuracy`` is :func:`classifier_accuracy` of the classifier (``heldout_images``, ``heldout_frames``).
    """

    def __init__(self, classifier: DigitClassifier, features: VideoFeatures, accuracy: dict):
        self.classifier, self.features, self.accuracy = classifier.eval(), features.eval(), dict(accuracy)

    @classmethod
    def train(cls, seed: int = 0, progress: bool | None = None, *, classifier_steps: int = CLASSIFIER_STEPS,
              feature_steps: int = FEATURE_STEPS) -> DigitJudge:
        """Train both networks under ``seed`` (about half a minute on 2 CPU cores at the default steps)."""
        classifier = train_digit_classifier(seed, classifier_steps, progress)
        features = train_video_features(seed, feature_steps, progress)
        return cls(classifier, features, classifier_accuracy(classifier))

    @classmethod
    def load_or_train(cls, cache_dir=None, seed: int = 0, progress: bool | None = None, *,
                      classifier_steps: int = CLASSIFIER_STEPS, feature_steps: int = FEATURE_STEPS) -> DigitJudge:
        """The judge of ``seed`` from ``cache_dir`` (see :func:`_cache_dir`), trained and cached there (an atomic
        safetensors write) when absent or unreadable. The file is keyed by :data:`VERSION`, the seed and any
        non-default step counts."""
        steps = "" if (classifier_steps, feature_steps) == (CLASSIFIER_STEPS, FEATURE_STEPS) else \
            f"-steps{classifier_steps}-{feature_steps}"
        path = _cache_dir(cache_dir) / f"{VERSION}-seed{seed}{steps}.safetensors"
        if path.is_file():
            try:
                tensors, meta = load_weights(path, kind="digit_judge")
                nets = DigitClassifier(), VideoFeatures()
                for prefix, net in zip(("classifier.", "features."), nets):
                    net.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
                return cls(*nets, meta["accuracy"])
            except (CheckpointError, RuntimeError, KeyError):
                pass  # a damaged or foreign cache file: train again and replace it
        judge = cls.train(seed, progress, classifier_steps=classifier_steps, feature_steps=feature_steps)
        nets = {"classifier": judge.classifier, "features": judge.features}
        tensors = {f"{prefix}.{k}": v for prefix, net in nets.items() for k, v in net.state_dict().items()}
        save_weights(path, tensors, {"kind": "digit_judge", "version": VERSION, "seed": seed,
                                     "steps": [classifier_steps, feature_steps], "accuracy": judge.accuracy})
        return judge

    def score(self, videos, objects: int, max_speed: int = 2, reference=None) -> dict:
        """Judge ``(N, 1, T, S, S)`` or ``(N, T, S, S)`` videos in [0, 1] of ``objects`` digits at up to
        ``max_speed`` px/frame (:func:`judge_digit_video`).

        Returns ``plausible_fraction`` (motion plausible and identity kept), ``identity_fraction``,
        ``motion_fraction``, ``num_videos``, the per-video ``verdicts`` and ``classifier_accuracy``. With
        ``reference`` videos (the training data) also ``frechet`` (the videos against the reference) and
        ``frechet_data`` (as many held-out-split videos, of the same shape, objects and speed, against the
        same reference: the value the data itself reaches at this sample count).
        """
        videos = _as_videos(videos)
        int_in("objects", objects, 1, MAX_DIGITS + 1, note=" (digits per video)")
        speeds(max_speed)
        verdicts = [judge_digit_video(video, objects, self.classifier, max_speed) for video in videos]
        report = {"num_videos": len(videos),
                  "plausible_fraction": float(np.mean([v["plausible"] for v in verdicts])),
                  "identity_fraction": float(np.mean([v["keeps_identity"] for v in verdicts])),
                  "motion_fraction": float(np.mean([v["motion_plausible"] for v in verdicts])),
                  "classifier_accuracy": dict(self.accuracy), "verdicts": verdicts}
        if reference is not None:
            ref = self.features.features(_as_videos(reference))
            n, t, s = videos.shape[:3]
            held, _ = create_digit_dataset(n, t, s, objects=objects, max_speed=max_speed, seed=1, split="heldout")
            report["frechet"] = frechet_distance(self.features.features(videos), ref)
            report["frechet_data"] = frechet_distance(self.features.features(held), ref)
        return report
