"""Scoring samples: physical plausibility of bouncing-disk videos, and how well a camera model follows its path.

Each scorer reads a ``.npy`` of videos (or a sample folder holding ``samples.npy``), writes a JSON
report beside it (or where asked) and returns the report; the ``format_*`` functions turn a report
into the lines ``spacetime eval`` prints.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ..data.camera_pan import positions_from_cameras
from ..data.plausibility import DiskDetector, score_videos
from ..io.files import atomic_write_text
from ..ops.motion import camera_translation

__all__ = ["evaluate_videos", "evaluate_camera", "format_report", "format_camera_report"]


def _videos_file(path) -> Path:
    path = Path(path)
    return path / "samples.npy" if path.is_dir() else path


def _write_report(report: dict, target: Path) -> dict:
    atomic_write_text(target, json.dumps(report, indent=2) + "\n")
    return {**report, "report_path": str(target)}


def evaluate_videos(videos_path, out_json=None, digit_size: int = 12, tol: float = 0.5) -> dict:
    """Plausibility of ``(N, T, H, W)`` or ``(N, 1, T, H, W)`` bouncing-disk videos in [0, 1]
    (:mod:`spacetime.data.plausibility`); the report goes to ``out_json`` or ``eval.json`` beside them."""
    path = _videos_file(videos_path)
    if not path.is_file():
        raise FileNotFoundError(f"videos {path}: not found (give a .npy of (N, 1, T, H, W) videos or a sample folder)")
    try:
        videos = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"videos {path}: not a readable .npy array: {exc}") from None
    if videos.ndim not in (4, 5):
        raise ValueError(f"videos {path}: expected (N, T, H, W) or (N, 1, T, H, W); got shape {videos.shape}")
    report = score_videos(videos, DiskDetector(size=videos.shape[-1], digit_size=digit_size, tol=tol))
    report.update({"videos": str(path), "digit_size": digit_size, "tol": tol})
    return _write_report(report, Path(out_json) if out_json else path.parent / "eval.json")


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
    """The plausible share, and the five commonest reasons for failing (numbers and frames left out)."""
    n = report["num_videos"]
    k = round(report["plausible_fraction"] * n)
    lines = [f"plausible: {k}/{n} = {report['plausible_fraction']:.1%} "
             f"(frames with one training-size disk: {report['one_disk_frame_fraction']:.1%})"]
    # group the reasons: "frame 3: no disk" -> "no disk", "x: jump of +5.0 px at frame 4" -> "x: jump of N px"
    reasons = Counter(re.sub(r"[-+]?\d+(\.\d+)?", "N", re.sub(r"^frame \d+: ", "", v["reason"]).split(" at frame")[0])
                      for v in report["verdicts"] if not v["plausible"])
    lines += [f"  {count:3d} x {reason}" for reason, count in reasons.most_common(5)]
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
