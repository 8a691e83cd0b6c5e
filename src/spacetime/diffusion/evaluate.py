"""Scoring samples: plausibility and diversity of bouncing disks and moving digits, and how well a camera model
follows its path.

Each scorer reads a ``.npy`` of videos (or a sample folder holding ``samples.npy``), writes a JSON
report beside it (or where asked) and returns the report; the ``format_*`` functions turn a report
into the lines ``spacetime eval`` prints.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..data.bouncing import context_ceiling
from ..data.camera_pan import positions_from_cameras
from ..data.digits import DIGIT_SIZE, create_digit_dataset, load_digit_images
from ..data.diversity import compare, diversity_report, format_diversity
from ..data.plausibility import DiskDetector, count_law, score_videos
from ..io.files import atomic_write_text
from ..ops.motion import camera_translation
from .digit_judge import DigitJudge

__all__ = ["evaluate_samples", "evaluate_videos", "evaluate_digits", "evaluate_camera", "data_settings", "load_videos",
           "format_report", "format_camera_report"]


def _videos_file(path) -> Path:
    path = Path(path)
    return path / "samples.npy" if path.is_dir() else path


def _write_report(report: dict, target: Path) -> dict:
    atomic_write_text(target, json.dumps(report, indent=2) + "\n")
    return {**report, "report_path": str(target)}


def _sample_config(videos_path) -> dict:
    """``sample_config.json`` beside the videos (what ``spacetime sample`` recorded), ``{}`` when there is none."""
    path = _videos_file(videos_path).parent / "sample_config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def data_settings(videos_path) -> dict:
    """The training data's settings that scoring needs (``data``, ``digit_size``, ``objects``, ``max_speed``), as
    ``spacetime sample`` recorded them in ``sample_config.json`` beside the videos; ``{}`` when there is none."""
    return dict(_sample_config(videos_path).get("data", {}))


def _context_ceiling(videos_path, digit_size: int, objects: int, max_speed: int) -> dict:
    """``{"context_ceiling": ...}`` when a next-frame model made the videos from nothing (``sample_config.json`` says
    so): the share of such videos a perfect model with its context keeps lawful
    (:func:`~spacetime.data.bouncing.context_ceiling`), the bound their plausibility is read against; else ``{}``."""
    config = _sample_config(videos_path)
    context, frames = config.get("context_frames"), config.get("shape", [0, 0])[1]
    if not context or config.get("given_frames") or context >= frames:
        return {}
    share = context_ceiling(config["shape"][-1], digit_size, max_speed, frames, context, objects)
    return {"context_ceiling": {"context_frames": context, "share": share}}


def load_videos(videos_path) -> tuple[Path, np.ndarray]:
    """``(path, videos)`` of a ``.npy`` of ``(N, T, H, W)`` or ``(N, 1, T, H, W)`` videos (or a sample folder's)."""
    path = _videos_file(videos_path)
    if not path.is_file():
        raise FileNotFoundError(f"videos {path}: not found (give a .npy of (N, 1, T, H, W) videos or a sample folder)")
    try:
        videos = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"videos {path}: not a readable .npy array: {exc}") from None
    if videos.ndim not in (4, 5):
        raise ValueError(f"videos {path}: expected (N, T, H, W) or (N, 1, T, H, W); got shape {videos.shape}")
    return path, videos


def evaluate_videos(videos_path, out_json=None, *, digit_size: int = 12, objects: int = 1, max_speed: int = 2,
                    tol: float | None = None) -> dict:
    """Plausibility and diversity of ``(N, T, H, W)`` or ``(N, 1, T, H, W)`` bouncing-disk videos in [0, 1] against
    the law of data with ``objects`` disks of ``digit_size`` px at up to ``max_speed`` px/frame
    (:mod:`spacetime.data.plausibility`, :mod:`spacetime.data.diversity`); the report goes to ``out_json`` or
    ``eval.json`` beside them. ``tol``: the pixels per frame that may differ from the fitted disks, as a fraction of
    one disk's area (default 0.15)."""
    path, videos = load_videos(videos_path)
    tol = 0.15 if tol is None else tol
    detector = DiskDetector(size=videos.shape[-1], digit_size=digit_size, objects=objects, max_speed=max_speed, tol=tol)
    report = score_videos(videos, detector)
    law = count_law(detector, videos.shape[-3])
    report["diversity"] = diversity_report(report["verdicts"], size=videos.shape[-1], digit_size=digit_size,
                                           max_speed=max_speed, count_law=law)
    report.update({"videos": str(path), "data": "disks", "digit_size": digit_size, "objects": objects,
                   "max_speed": max_speed, "tol": tol, **_context_ceiling(path, digit_size, objects, max_speed)})
    return _write_report(report, Path(out_json) if out_json else path.parent / "eval.json")


def evaluate_digits(videos_path, out_json=None, *, digit_size: int = DIGIT_SIZE, objects: int = 1, max_speed: int = 2,
                    tol: float | None = None, judge: DigitJudge | None = None) -> dict:
    """Plausibility, identity, diversity and the Frechet distance of moving-digit videos (:mod:`.digit_judge`, its
    networks trained once and cached); the report goes to ``out_json`` or ``eval.json`` beside them."""
    if digit_size != DIGIT_SIZE:
        raise ValueError(f"digit_size: moving digits are {DIGIT_SIZE} px; got {digit_size}")
    if tol is not None:
        raise ValueError(f"tol applies to disks; the digit judge keeps its own tolerances (got tol={tol})")
    path, videos = load_videos(videos_path)
    videos = videos[:, None] if videos.ndim == 4 else videos
    judge = judge if judge is not None else DigitJudge.load_or_train()
    n, _, t, size = videos.shape[:4]
    reference, _ = create_digit_dataset(n, t, size, objects=objects, max_speed=max_speed, seed=0, split="train")
    report = judge.score(videos, objects, max_speed, reference=reference)
    report["diversity"] = diversity_report(report["verdicts"], size=size, digit_size=DIGIT_SIZE, max_speed=max_speed)
    report["diversity"] = _with_classes(report["diversity"], report["verdicts"])
    report.update({"videos": str(path), "data": "digits", "digit_size": DIGIT_SIZE, "objects": objects,
                   "max_speed": max_speed, **_context_ceiling(path, DIGIT_SIZE, objects, max_speed)})
    return _write_report(report, Path(out_json) if out_json else path.parent / "eval.json")


def evaluate_samples(videos_path, out_json=None, *, data: str = "disks", **settings) -> dict:
    """Score videos against their training data of kind ``data``: :func:`evaluate_digits` for ``"digits"``,
    :func:`evaluate_videos` (disks) otherwise; ``settings`` are their keywords (``digit_size``, ``objects``,
    ``max_speed``, ``tol``)."""
    evaluate = evaluate_digits if data == "digits" else evaluate_videos
    return evaluate(videos_path, out_json, **settings)


def _with_classes(diversity: dict, verdicts: list[dict]) -> dict:
    """``diversity`` with the ``class`` statistic: each digit's commonest class over its frames, against the shares
    of the classes among the training digits."""
    _, labels = load_digit_images("train")
    named = [np.bincount(classes, minlength=10).argmax() for v in verdicts for classes in v["classes"]]
    stat = compare("class", named, np.bincount(labels, minlength=10) / len(labels))
    statistics = {**diversity["statistics"], "class": asdict(stat)}
    return {"ok": diversity["ok"] and stat.ok, "statistics": statistics}


def evaluate_camera(videos_path, cameras_path=None, out_json=None) -> dict:
    """Camera-following error of camera-conditioned samples: the requested translation per frame against
    the one phase correlation measures in the videos (``cameras.npy`` beside them unless given)."""
    path = _videos_file(videos_path)
    folder = path.parent
    cameras_path = Path(cameras_path) if cameras_path else folder / "cameras.npy"
    for name, p in (("videos", path), ("cameras", cameras_path)):
        if not p.is_file():
            raise FileNotFoundError(f"{name} {p}: not found")
    videos = torch.from_numpy(np.load(path, allow_pickle=False)).float()
    cams = torch.from_numpy(np.load(cameras_path, allow_pickle=False)).float()
    if videos.ndim != 5 or cams.shape != (videos.shape[0], videos.shape[2], 6):
        raise ValueError(f"cameras {cameras_path}: expected (N, T, 6) = {(videos.shape[0], videos.shape[2], 6)} for "
                         f"videos of shape {tuple(videos.shape)}; got {tuple(cams.shape)}")
    requested = positions_from_cameras(cams).diff(dim=1)  # (n, t-1, 2) camera translation per frame
    estimated = camera_translation(videos)
    error = (estimated - requested).norm(dim=-1)  # (n, t-1)
    report = {"kind": "camera", "videos": str(path), "cameras": str(cameras_path), "num_videos": len(videos),
              "mean_error_px_per_frame": error.mean().item(), "per_video_error": error.mean(1).tolist(),
              "requested_mean_translation": requested.mean(0).tolist(),
              "estimated_mean_translation": estimated.mean(0).tolist()}
    return _write_report(report, Path(out_json) if out_json else folder / "eval.json")


def format_report(report: dict) -> str:
    """The plausible share, the five commonest reasons for failing (numbers and frames left out), and diversity
    (digits: identity, motion and the Frechet distance beside the data's)."""
    n = report["num_videos"]
    k = round(report["plausible_fraction"] * n)
    if report.get("data") == "digits":
        acc = report["classifier_accuracy"]
        lines = [f"plausible (bouncing motion and one legible identity per digit): {k}/{n} = "
                 f"{report['plausible_fraction']:.1%} (motion {report['motion_fraction']:.1%}, identity "
                 f"{report['identity_fraction']:.1%}; the classifier: {acc['heldout_images']:.1%} of held-out digits, "
                 f"{acc['heldout_frames']:.1%} in held-out videos)",
                 f"Frechet distance to the training data: {report['frechet']:.2f} (held-out data at this count: "
                 f"{report['frechet_data']:.2f})"]
    else:
        lines = [f"plausible: {k}/{n} = {report['plausible_fraction']:.1%} "
                 f"(frames that alone hold the data's objects: {report['one_disk_frame_fraction']:.1%})"]
    ceiling = report.get("context_ceiling")
    if ceiling and ceiling["share"] < 0.9995:
        lines.append(f"  (even a perfect next-frame model with {ceiling['context_frames']} frames of context keeps the "
                     f"data's law in only {ceiling['share']:.1%} of such videos: spacetime.data.bouncing)")
    # group the reasons: "frame 3: not the training disks (12 px differ ...)" -> "not the training disks (N px ...)"
    reasons = Counter(re.sub(r"[-+]?\d+(\.\d+)?", "N", re.sub(r"^frame \d+: ", "", v["reason"]))
                      for v in report["verdicts"] if not v["plausible"])
    lines += [f"  {count:3d} x {reason}" for reason, count in reasons.most_common(5)]
    if "diversity" in report:
        lines += format_diversity(report["diversity"])
    lines.append(f"report: {report['report_path']}")
    return "\n".join(lines)


def format_camera_report(report: dict) -> str:
    """The mean camera-following error and, per step, the requested and the measured mean translation."""
    lines = [f"camera following: mean error {report['mean_error_px_per_frame']:.3f} px/frame over "
             f"{report['num_videos']} videos (phase correlation vs requested translation)",
             "  step  requested (dx, dy)   estimated mean (dx, dy)"]
    for k, (r, e) in enumerate(zip(report["requested_mean_translation"], report["estimated_mean_translation"])):
        lines.append(f"  {k:2d}->{k + 1:<2d} ({r[0]:+5.2f}, {r[1]:+5.2f})      ({e[0]:+5.2f}, {e[1]:+5.2f})")
    lines.append(f"report: {report['report_path']}")
    return "\n".join(lines)
