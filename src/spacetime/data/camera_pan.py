"""Synthetic camera motion: a static random scene seen through a window that follows a camera path.

Each video shows a random textured scene larger than the frame; frame ``t`` is the
``H x W`` window whose top-left corner sits at the camera position ``p_t = (x_t, y_t)``
(pixels, ``x`` right, ``y`` down, ``p_0 = (0, 0)``). A camera moving right by one pixel
moves the content left by one pixel, so the per-frame global shift of the video
(:func:`spacetime.ops.motion.camera_translation`) recovers ``p_{t+1} - p_t``. Fractional
positions are rendered by bilinear sampling.

Camera paths come from named presets (:data:`PRESETS`), from a random mix of pans,
diagonals, stops and reversals (:func:`random_positions`, for training) or from a JSON file
of per-frame poses (:func:`load_camera_path`). As camera vectors (:mod:`spacetime.ops.camera`)
a position is ``(pitch, yaw, roll, tx, ty, tz) = (0, 0, 0, x, y, 0)``: the scene is a plane
facing the camera and one world unit is one scene pixel.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from ..checks import int_at_least, number_in, positive_int
from ..io.files import atomic_write_text
from ..ops.camera import check_cameras, opengl_to_opencv, params_from_pose

__all__ = [
    "PRESETS",
    "CameraPanBatch",
    "CameraPans",
    "preset_positions",
    "random_positions",
    "reverse_positions",
    "random_scene",
    "render_pan",
    "camera_pan_batch",
    "cameras_from_positions",
    "positions_from_cameras",
    "camera_path",
    "load_camera_path",
    "save_camera_path",
]


def _segments(*parts: tuple[float, tuple[float, float]]) -> Callable[[int, float], Tensor]:
    """A preset from ``(fraction of the steps, (vx, vy) in units of speed)`` segments."""

    def velocities(steps: int, speed: float) -> Tensor:
        out = torch.zeros(steps, 2, dtype=torch.float64)
        start = 0
        for i, (fraction, v) in enumerate(parts):
            stop = steps if i == len(parts) - 1 else start + round(fraction * steps)
            out[start:stop] = torch.tensor(v, dtype=torch.float64) * speed
            start = stop
        return out

    return velocities


#: name -> per-frame camera velocities ``(steps, 2)`` given ``(steps, speed)``; speed is pixels per frame per axis
PRESETS: dict[str, Callable[[int, float], Tensor]] = {
    "static": _segments((1.0, (0, 0))),
    "pan_right": _segments((1.0, (1, 0))),
    "pan_left": _segments((1.0, (-1, 0))),
    "pan_down": _segments((1.0, (0, 1))),
    "pan_up": _segments((1.0, (0, -1))),
    "diagonal_down_right": _segments((1.0, (1, 1))),
    "diagonal_down_left": _segments((1.0, (-1, 1))),
    "diagonal_up_right": _segments((1.0, (1, -1))),
    "diagonal_up_left": _segments((1.0, (-1, -1))),
    "pan_right_stop": _segments((0.5, (1, 0)), (0.5, (0, 0))),
    "stop_pan_down": _segments((0.5, (0, 0)), (0.5, (0, 1))),
    "pan_right_reverse": _segments((0.5, (1, 0)), (0.5, (-1, 0))),
    "pan_up_reverse": _segments((0.5, (0, -1)), (0.5, (0, 1))),
    "right_then_down": _segments((0.5, (1, 0)), (0.5, (0, 1))),
}



def _integrate(velocities: Tensor) -> Tensor:
    """``(..., T-1, 2)`` velocities -> ``(..., T, 2)`` positions starting at the origin."""
    start = torch.zeros_like(velocities[..., :1, :])
    return torch.cat([start, velocities.cumsum(-2)], -2)


def preset_positions(name: str, num_frames: int, speed: float = 1.0) -> Tensor:
    """Camera positions ``(T, 2)`` (pixels, float32) of the named preset; see :data:`PRESETS`."""
    if name not in PRESETS:
        raise ValueError(f"camera path preset must be one of {sorted(PRESETS)}; got {name!r}")
    if not math.isfinite(speed):
        raise ValueError(f"speed must be finite (pixels per frame); got {speed}")
    return _integrate(PRESETS[name](positive_int("num_frames", num_frames) - 1, float(speed))).float()


def random_positions(batch_size: int, num_frames: int, *, max_speed: float = 2.0,
                     generator: torch.Generator | None = None) -> Tensor:
    """Random training paths ``(B, T, 2)``: one to three segments of pans, diagonals, stops and reversals.

    Each segment moves at a constant velocity: a stop (10%), a pan along one axis (30%), a
    diagonal (20%), a free direction (20%), or the previous segment reversed (20%).
    Speeds are uniform in ``[0.25, 1] * max_speed`` per moving axis.
    """
    steps = positive_int("num_frames", num_frames) - 1
    positive_int("batch_size", batch_size)
    number_in("max_speed", max_speed, 0, math.inf, low_open=True, high_open=True, note=" (pixels per frame)")
    g = generator
    out = torch.zeros(batch_size, steps, 2, dtype=torch.float64)
    for i in range(batch_size):
        num_cuts = int(torch.randint(0, 3, (1,), generator=g)) if steps > 1 else 0
        cuts = sorted(torch.randint(1, max(steps, 2), (num_cuts,), generator=g).tolist())
        bounds = [0, *cuts, steps]
        previous = torch.zeros(2, dtype=torch.float64)
        for start, stop in zip(bounds[:-1], bounds[1:]):
            kind = torch.rand((), generator=g).item()
            sign = torch.randint(0, 2, (2,), generator=g).double() * 2 - 1
            speed = (0.25 + 0.75 * torch.rand(2, generator=g).double()) * max_speed
            if kind < 0.1:
                v = torch.zeros(2, dtype=torch.float64)
            elif kind < 0.4:
                v = sign * speed * (torch.arange(2) == torch.randint(0, 2, (1,), generator=g)).double()
            elif kind < 0.6:
                v = sign * speed[0]
            elif kind < 0.8 or not previous.any():
                v = sign * speed
            else:
                v = -previous
            out[i, start:stop] = v
            previous = v
    return _integrate(out).float()


def reverse_positions(positions: Tensor) -> Tensor:
    """The path with every per-frame translation reversed (``p_t -> -p_t``, so ``p_0`` stays at the origin)."""
    return positions[..., :1, :] - (positions - positions[..., :1, :])


def random_scene(batch_size: int, channels: int, height: int, width: int, *,
                 generator: torch.Generator | None = None) -> Tensor:
    """Random textured scenes ``(B, C, height, width)`` in ``[-1, 1]``: smooth blobs plus fine texture."""
    for name, value in (("batch_size", batch_size), ("channels", channels), ("height", height), ("width", width)):
        positive_int(name, value)
    scene = torch.zeros(batch_size, channels, height, width)
    for cell, weight in ((8, 1.0), (4, 0.6), (2, 0.35)):
        coarse = torch.randn(batch_size, channels, height // cell + 2, width // cell + 2, generator=generator)
        scene += weight * F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    scene = scene / scene.std(dim=(-2, -1), keepdim=True).clamp_min(1e-6)
    return torch.tanh(scene)


def render_pan(scene: Tensor, positions: Tensor, height: int, width: int,
               origin: tuple[float, float] = (0.0, 0.0)) -> Tensor:
    """Videos ``(B, C, T, height, width)``: frame ``t`` is the window of ``scene`` at ``origin + positions[:, t]``.

    Args:
        scene: ``(B, C, Hs, Ws)``.
        positions: ``(B, T, 2)`` camera positions ``(x, y)`` in pixels.
        origin: scene coordinates ``(x, y)`` of the window's top-left pixel at position ``(0, 0)``.

    Every window must lie inside the scene (a ``ValueError`` says which axis leaves it).
    Integer positions copy pixels exactly; fractional ones interpolate bilinearly.
    """
    if not isinstance(scene, Tensor) or scene.ndim != 4:
        got = tuple(scene.shape) if isinstance(scene, Tensor) else type(scene).__name__
        raise ValueError(f"scene must have shape (B, C, Hs, Ws); got {got}")
    b, _ = check_cameras(positions, "positions", trailing=(2,), batch=scene.shape[0])
    hs, ws = scene.shape[-2:]
    x0 = origin[0] + positions[..., 0].double()
    y0 = origin[1] + positions[..., 1].double()
    spans = (("x", x0.min(), x0.max() + width - 1, ws - 1), ("y", y0.min(), y0.max() + height - 1, hs - 1))
    for axis, low, high, limit in spans:
        if low < 0 or high > limit:
            raise ValueError(
                f"positions take the window outside the scene along {axis}: window spans [{low:.2f}, {high:.2f}], "
                f"scene spans [0, {limit}]"
            )
    xs = x0[..., None, None] + torch.arange(width, dtype=torch.float64)  # (b, t, 1, w)
    ys = y0[..., None, None] + torch.arange(height, dtype=torch.float64)[:, None]  # (b, t, h, 1)
    xs, ys = torch.broadcast_tensors(xs, ys)
    grid = torch.stack([2 * xs / (ws - 1) - 1, 2 * ys / (hs - 1) - 1], -1).to(scene.dtype)  # align_corners=True
    frames = F.grid_sample(scene, rearrange(grid, "b t h w xy -> b (t h) w xy"), mode="bilinear", align_corners=True)
    return rearrange(frames, "b c (t h) w -> b c t h w", b=b, h=height)


class CameraPanBatch(NamedTuple):
    """A batch of camera-pan videos with the paths that made them."""

    video: Tensor  #: (B, C, T, H, W) in [-1, 1]
    positions: Tensor  #: (B, T, 2) camera positions (x, y) in pixels, starting at (0, 0)
    cameras: Tensor  #: (B, T, 6) camera vectors (pitch, yaw, roll, tx, ty, tz), translation in pixels


def camera_pan_batch(batch_size: int, num_frames: int = 8, size: int | tuple[int, int] = 32, *, channels: int = 1,
                     max_speed: float = 2.0, positions: Tensor | None = None,
                     generator: torch.Generator | None = None) -> CameraPanBatch:
    """Render a batch of static random scenes seen by moving cameras.

    Args:
        batch_size, num_frames: ``B`` and ``T``.
        size: frame size ``H`` (square) or ``(H, W)``.
        channels: ``C``.
        max_speed: top speed per axis of random paths (pixels per frame).
        positions: ``(B, T, 2)`` or ``(T, 2)`` paths to render instead of random ones
            (presets, JSON files, reversed paths); a ``(T, 2)`` path is used for every video.
        generator: the source of all randomness (scenes and paths).
    """
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if positions is None:
        positions = random_positions(batch_size, num_frames, max_speed=max_speed, generator=generator)
    elif isinstance(positions, Tensor) and positions.ndim == 2:
        positions = positions.expand(batch_size, *positions.shape)
    frames = positive_int("num_frames", num_frames)
    check_cameras(positions, "positions", trailing=(2,), batch=batch_size, frames=frames)
    positions = positions.float()
    low = positions.amin(dim=(0, 1)).floor()  # (2,) as (x, y)
    high = positions.amax(dim=(0, 1)).ceil()
    extent = (high - low).int().tolist()
    scene = random_scene(batch_size, channels, h + extent[1] + 1, w + extent[0] + 1, generator=generator)
    video = render_pan(scene, positions, h, w, origin=(-low[0].item(), -low[1].item()))
    return CameraPanBatch(video, positions, cameras_from_positions(positions))


class CameraPans(torch.utils.data.Dataset):
    """A seeded, map-style dataset of camera pans for training camera-conditioned models.

    Item ``i`` is ``(video, cameras)``: ``video (C, T, H, W)`` in ``[0, 1]`` and ``cameras (T, 6)``
    (:func:`camera_pan_batch` with ``torch.Generator().manual_seed(seed * 2**32 + i)``): the same
    index always gives the same pan. ``length`` is how many distinct videos an epoch holds.
    """

    def __init__(self, length: int = 1_000_000, num_frames: int = 8, size: int = 32, *, channels: int = 1,
                 max_speed: float = 2.0, seed: int = 0):
        for name, value, low in (("length", length, 1), ("num_frames", num_frames, 1), ("size", size, 1),
                                 ("channels", channels, 1), ("seed", seed, 0)):
            int_at_least(name, value, low)
        number_in("max_speed", max_speed, 0, math.inf, low_open=True, high_open=True, note=" (pixels per frame)")
        self.length, self.num_frames, self.size, self.channels = length, num_frames, size, channels
        self.max_speed, self.seed = float(max_speed), seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index must be in [0, {self.length}); got {index}")
        gen = torch.Generator().manual_seed(self.seed * 2**32 + int(index))
        batch = camera_pan_batch(1, self.num_frames, self.size, channels=self.channels, max_speed=self.max_speed,
                                 generator=gen)
        return (batch.video[0] + 1) / 2, batch.cameras[0]


def cameras_from_positions(positions: Tensor, *, scale: float = 1.0) -> Tensor:
    """``(..., 2)`` positions ``(x, y)`` -> ``(..., 6)`` camera vectors ``(0, 0, 0, x/scale, y/scale, 0)``."""
    if not isinstance(positions, Tensor) or positions.ndim < 1 or positions.shape[-1] != 2:
        got = tuple(positions.shape) if isinstance(positions, Tensor) else type(positions).__name__
        raise ValueError(f"positions must have shape (..., 2) = (x, y); got {got}")
    if not (isinstance(scale, (int, float)) and scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a positive number; got {scale!r}")
    zeros = positions.new_zeros(*positions.shape[:-1], 3)
    return torch.cat([zeros, positions / scale, zeros[..., :1]], -1)


def positions_from_cameras(cameras: Tensor, *, scale: float = 1.0, atol: float = 1e-5) -> Tensor:
    """``(..., 6)`` camera vectors -> ``(..., 2)`` window positions; the pan dataset renders x/y translation only.

    A camera with a rotation or a ``tz`` beyond ``atol`` is an error naming the frame.
    """
    if not isinstance(cameras, Tensor) or cameras.ndim < 1 or cameras.shape[-1] != 6:
        got = tuple(cameras.shape) if isinstance(cameras, Tensor) else type(cameras).__name__
        raise ValueError(f"cameras must have shape (..., 6) = (pitch, yaw, roll, tx, ty, tz); got {got}")
    if not torch.isfinite(cameras).all():
        raise ValueError("cameras must be finite (no NaN or inf)")
    unsupported = cameras[..., [0, 1, 2, 5]].abs() > atol
    if unsupported.any():
        where = unsupported.nonzero()[0].tolist()
        raise ValueError(
            "cameras for the camera-pan dataset may only translate in x and y (pitch, yaw, roll and tz must be 0); "
            f"got a non-zero entry at index {where}"
        )
    return cameras[..., 3:5] * scale


# --- camera paths on disk ------------------------------------------------------------------------


def _frame_params(frame, index: int, convention: str, to_radians: float) -> list[float]:
    if isinstance(frame, dict) and "c2w" in frame:
        c2w = torch.tensor(frame["c2w"], dtype=torch.float64)
        if c2w.shape != (4, 4):
            raise ValueError(f"frames[{index}].c2w must be a 4x4 matrix; got shape {tuple(c2w.shape)}")
        if convention == "opengl":
            c2w = opengl_to_opencv(c2w)
        return params_from_pose(c2w).tolist()
    if isinstance(frame, dict) and "translation" in frame:
        t = frame["translation"]
        if not (isinstance(t, list) and len(t) == 3):
            raise ValueError(f"frames[{index}].translation must be a list [x, y, z]; got {t!r}")
        angles = [float(frame.get(k, 0.0)) * to_radians for k in ("pitch", "yaw", "roll")]
        return angles + [float(x) for x in t]
    raise ValueError(
        f"frames[{index}] must be an object with 'c2w' (4x4) or 'translation' [x, y, z] (and optional "
        f"'pitch', 'yaw', 'roll'); got {frame!r}"
    )


def load_camera_path(file: str | os.PathLike) -> Tensor:
    """Read per-frame poses from JSON: ``(T, 6)`` camera vectors (radians, OpenCV axes).

    The file is an object ``{"angle_unit": "degrees" | "radians", "convention": "opencv" |
    "opengl", "frames": [...]}`` or just the list of frames. Each frame is either
    ``{"pitch": .., "yaw": .., "roll": .., "translation": [x, y, z]}`` (angles in
    ``angle_unit``, default degrees; spacetime's convention) or ``{"c2w": 4x4 list}`` (a
    camera-to-world matrix in ``convention``, default ``"opencv"``).
    """
    path = Path(file)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"camera path file {str(path)!r} does not exist") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"camera path file {str(path)!r} is not valid JSON: {err}") from None
    if isinstance(data, list):
        data = {"frames": data}
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list) or not data["frames"]:
        raise ValueError(f"camera path file {str(path)!r} must hold a non-empty list 'frames'")
    unit, convention = data.get("angle_unit", "degrees"), data.get("convention", "opencv")
    if unit not in ("degrees", "radians"):
        raise ValueError(f"angle_unit in {str(path)!r} must be 'degrees' or 'radians'; got {unit!r}")
    if convention not in ("opencv", "opengl"):
        raise ValueError(f"convention in {str(path)!r} must be 'opencv' or 'opengl'; got {convention!r}")
    factor = math.pi / 180 if unit == "degrees" else 1.0
    params = torch.tensor([_frame_params(f, i, convention, factor) for i, f in enumerate(data["frames"])])
    if not torch.isfinite(params).all():
        raise ValueError(f"camera path file {str(path)!r} holds a non-finite pose")
    return params.float()


def save_camera_path(file: str | os.PathLike, cameras: Tensor) -> None:
    """Write ``(T, 6)`` camera vectors as a JSON camera path (degrees), atomically."""
    if not isinstance(cameras, Tensor) or cameras.ndim != 2 or cameras.shape[1] != 6:
        got = tuple(cameras.shape) if isinstance(cameras, Tensor) else type(cameras).__name__
        raise ValueError(f"cameras must have shape (T, 6) = (pitch, yaw, roll, tx, ty, tz); got {got}")
    if not torch.isfinite(cameras).all():
        raise ValueError("cameras must be finite (no NaN or inf)")
    frames = [
        {"pitch": math.degrees(p), "yaw": math.degrees(y), "roll": math.degrees(r), "translation": [tx, ty, tz]}
        for p, y, r, tx, ty, tz in cameras.double().tolist()
    ]
    text = json.dumps({"angle_unit": "degrees", "convention": "opencv", "frames": frames}, indent=1)
    atomic_write_text(file, text)


def camera_path(spec: str | os.PathLike, num_frames: int, *, speed: float = 1.0) -> Tensor:
    """A camera path as ``(T, 6)`` camera vectors: a preset name (with ``speed``) or a JSON file.

    A JSON file must hold exactly ``num_frames`` frames; its translation is used as given.
    """
    positive_int("num_frames", num_frames)
    if isinstance(spec, str) and spec in PRESETS:
        return cameras_from_positions(preset_positions(spec, num_frames, speed))
    if isinstance(spec, (str, os.PathLike)) and str(spec).endswith(".json"):
        cams = load_camera_path(spec)
        if cams.shape[0] != num_frames:
            raise ValueError(
                f"camera path {str(spec)!r} has {cams.shape[0]} frames; the video has num_frames={num_frames}"
            )
        return cams
    raise ValueError(f"camera path must be a preset ({', '.join(sorted(PRESETS))}) or a .json file; got {spec!r}")
