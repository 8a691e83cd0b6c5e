"""Camera geometry: poses, conventions, intrinsics and Plücker ray maps (pure functions).

The one convention of spacetime
-------------------------------
* **Axes** are OpenCV's: camera ``x`` right, ``y`` down, ``z`` forward (the camera looks
  along ``+z``). With every angle zero the camera axes coincide with the world axes.
* **A camera vector** is ``(pitch, yaw, roll, tx, ty, tz)``: three angles in **radians**
  and the camera centre ``C = (tx, ty, tz)`` in world coordinates.
* **Rotation order**: camera-to-world rotation ``R = R_y(yaw) @ R_x(pitch) @ R_z(roll)``,
  i.e. yaw about the down axis, then pitch about the camera's new right axis, then roll
  about its new viewing axis (intrinsic y-x-z). Signs: positive yaw turns the view to the
  right (``+z`` toward ``+x``), positive pitch tilts it up (``+z`` toward ``-y``), positive
  roll turns the camera clockwise as seen from behind it (``+x`` toward ``+y``).
  Euler angles are unique for ``|pitch| < pi/2``.
* **Matrices**: ``camera_to_world = [[R, C], [0, 1]]`` maps camera coordinates to world
  coordinates; ``world_to_camera`` is its inverse ``[[R^T, -R^T C], [0, 1]]``.
* **Pixels**: the pixel in row ``i``, column ``j`` has its centre at image coordinates
  ``(u, v) = (j + 0.5, i + 0.5)``; intrinsics ``K`` map a camera point ``p`` to ``K p = z (u, v, 1)``.
* **Plücker rays** of a pixel: ``(o x d, d)`` with ``o`` the camera centre and ``d`` the unit
  world direction of the ray through the pixel centre (channels 0-2 the moment, 3-5 the
  direction, as CameraCtrl orders them).

OpenGL/Blender/NeRF camera-to-world matrices (``x`` right, ``y`` up, camera looking along
``-z``) convert with :func:`opengl_to_opencv` and back with :func:`opencv_to_opengl`.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor

from ..checks import float_tensor, positive_int

__all__ = [
    "check_cameras",
    "rotation_from_euler",
    "euler_from_rotation",
    "camera_to_world",
    "world_to_camera",
    "invert_pose",
    "params_from_pose",
    "opencv_to_opengl",
    "opengl_to_opencv",
    "intrinsics_from_fov",
    "relative_to_first",
    "normalize_translation",
    "plucker_rays",
]

#: flips the camera's y and z axes: OpenCV (y down, +z forward) <-> OpenGL (y up, -z forward)
_CV_GL_FLIP = (1.0, -1.0, -1.0, 1.0)


def _check_tensor(x, name: str, trailing: tuple[int, ...], form: str) -> Tensor:
    """A floating-point, finite tensor whose last axes are ``trailing``."""
    float_tensor(name, x, form=f"of shape {form}")
    k = len(trailing)
    if x.ndim < k or tuple(x.shape[x.ndim - k:]) != trailing:
        raise ValueError(f"{name} must have shape {form}; got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).nonzero()[0].tolist()
        raise ValueError(f"{name} must be finite (no NaN or inf); got a non-finite value at index {bad}")
    return x


def check_cameras(cams, name: str = "cameras", *, trailing: tuple[int, ...] = (4, 4), batch: int | None = None,
                  frames: int | None = None) -> tuple[int, int]:
    """Validate per-frame cameras ``(B, T, *trailing)`` against a video's ``B`` and ``T``.

    ``trailing`` is ``(4, 4)`` for pose matrices and ``(D,)`` for camera vectors (``(-1,)``
    accepts any ``D``). Raises ``ValueError`` naming ``name`` for a wrong rank, a batch or
    frame count that differs from the video's, or a NaN/inf. Returns ``(B, T)``.
    """
    form = "(B, T, " + ", ".join("D" if s < 0 else str(s) for s in trailing) + ")"
    if not isinstance(cams, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {form}; got {type(cams).__name__}")
    if cams.ndim != 2 + len(trailing) or any(s >= 0 and c != s for c, s in zip(cams.shape[2:], trailing)):
        raise ValueError(f"{name} must have shape {form}; got {tuple(cams.shape)}")
    b, t = cams.shape[:2]
    if batch is not None and b != batch:
        raise ValueError(f"{name} has batch size B={b} but the video has B={batch}; got shape {tuple(cams.shape)}")
    if frames is not None and t != frames:
        raise ValueError(f"{name} has T={t} frames but the video has T={frames}; got shape {tuple(cams.shape)}")
    _check_tensor(cams, name, tuple(cams.shape[2:]), form)
    return b, t


def _rot_x(a: Tensor) -> Tensor:
    c, s, o, z = a.cos(), a.sin(), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([o, z, z, z, c, -s, z, s, c], -1).unflatten(-1, (3, 3))


def _rot_y(a: Tensor) -> Tensor:
    c, s, o, z = a.cos(), a.sin(), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, z, s, z, o, z, -s, z, c], -1).unflatten(-1, (3, 3))


def _rot_z(a: Tensor) -> Tensor:
    c, s, o, z = a.cos(), a.sin(), torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, -s, z, s, c, z, z, z, o], -1).unflatten(-1, (3, 3))


def rotation_from_euler(angles: Tensor) -> Tensor:
    """``(..., 3)`` angles ``(pitch, yaw, roll)`` in radians -> ``(..., 3, 3)`` camera-to-world rotation.

    ``R = R_y(yaw) @ R_x(pitch) @ R_z(roll)`` (see the module docstring for the signs).
    """
    _check_tensor(angles, "angles", (3,), "(..., 3) = (pitch, yaw, roll) in radians")
    pitch, yaw, roll = angles.unbind(-1)
    return _rot_y(yaw) @ _rot_x(pitch) @ _rot_z(roll)


def euler_from_rotation(rotation: Tensor) -> Tensor:
    """``(..., 3, 3)`` rotation -> ``(..., 3)`` angles ``(pitch, yaw, roll)`` in radians.

    Inverse of :func:`rotation_from_euler` for ``|pitch| < pi/2``; at ``|pitch| = pi/2``
    (gimbal lock) yaw and roll are not separable and the split returned is arbitrary.
    """
    _check_tensor(rotation, "rotation", (3, 3), "(..., 3, 3)")
    r = rotation
    # R = Ry(yaw) Rx(pitch) Rz(roll) has R[1,2] = -sin(pitch), R[0,2] / R[2,2] = tan(yaw),
    # R[1,0] / R[1,1] = tan(roll) (each pair scaled by cos(pitch) > 0).
    pitch = torch.asin((-r[..., 1, 2]).clamp(-1.0, 1.0))
    yaw = torch.atan2(r[..., 0, 2], r[..., 2, 2])
    roll = torch.atan2(r[..., 1, 0], r[..., 1, 1])
    return torch.stack([pitch, yaw, roll], -1)


def _pose(rotation: Tensor, centre: Tensor) -> Tensor:
    top = torch.cat([rotation, centre[..., :, None]], -1)  # (..., 3, 4)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], -2)


def camera_to_world(params: Tensor) -> Tensor:
    """``(..., 6)`` camera vectors ``(pitch, yaw, roll, tx, ty, tz)`` -> ``(..., 4, 4)`` camera-to-world."""
    _check_tensor(params, "params", (6,), "(..., 6) = (pitch, yaw, roll, tx, ty, tz)")
    return _pose(rotation_from_euler(params[..., :3]), params[..., 3:])


def world_to_camera(params: Tensor) -> Tensor:
    """``(..., 6)`` camera vectors -> ``(..., 4, 4)`` world-to-camera (the inverse of :func:`camera_to_world`)."""
    return invert_pose(camera_to_world(params))


def invert_pose(pose: Tensor) -> Tensor:
    """Inverse of rigid ``(..., 4, 4)`` poses: ``[[R, t], [0, 1]] -> [[R^T, -R^T t], [0, 1]]``.

    Turns camera-to-world into world-to-camera and back; exact for rotations (no ``inverse``).
    """
    _check_tensor(pose, "pose", (4, 4), "(..., 4, 4)")
    rt = pose[..., :3, :3].transpose(-1, -2)
    return _pose(rt, -(rt @ pose[..., :3, 3:])[..., 0])


def params_from_pose(c2w: Tensor) -> Tensor:
    """``(..., 4, 4)`` camera-to-world -> ``(..., 6)`` camera vectors (inverse of :func:`camera_to_world`)."""
    _check_tensor(c2w, "c2w", (4, 4), "(..., 4, 4)")
    return torch.cat([euler_from_rotation(c2w[..., :3, :3]), c2w[..., :3, 3]], -1)


def _flip_camera_axes(c2w: Tensor, name: str) -> Tensor:
    _check_tensor(c2w, name, (4, 4), "(..., 4, 4) camera-to-world")
    return c2w * c2w.new_tensor(_CV_GL_FLIP)  # scales columns: negates the camera y and z axes


def opencv_to_opengl(c2w: Tensor) -> Tensor:
    """OpenCV camera-to-world (``y`` down, looks along ``+z``) -> OpenGL (``y`` up, looks along ``-z``).

    The world frame is unchanged; the camera's ``y`` and ``z`` axes are negated. For
    world-to-camera matrices use ``invert_pose(opencv_to_opengl(invert_pose(w2c)))``.
    """
    return _flip_camera_axes(c2w, "c2w")


def opengl_to_opencv(c2w: Tensor) -> Tensor:
    """OpenGL/Blender/NeRF camera-to-world -> OpenCV (the inverse of :func:`opencv_to_opengl`)."""
    return _flip_camera_axes(c2w, "c2w")


def intrinsics_from_fov(fov, height: int, width: int, *, axis: str = "horizontal") -> Tensor:
    """Pinhole intrinsics ``(..., 3, 3)`` of a ``height x width`` image from a field of view.

    Args:
        fov: field of view in radians, ``0 < fov < pi``; a float or a tensor of any shape.
        height, width: image size in pixels.
        axis: ``"horizontal"`` (``fov`` spans the width) or ``"vertical"`` (the height).

    Square pixels, principal point at the image centre ``(width / 2, height / 2)``.
    """
    for name, size in (("height", height), ("width", width)):
        positive_int(name, size, note=" (pixels)")
    if axis not in ("horizontal", "vertical"):
        raise ValueError(f"axis must be 'horizontal' or 'vertical'; got {axis!r}")
    fov = fov if isinstance(fov, Tensor) else torch.tensor(float(fov))
    if not fov.is_floating_point():
        fov = fov.float()
    if not ((fov > 0) & (fov < math.pi)).all():
        bad = fov[~((fov > 0) & (fov < math.pi))].flatten()[0].item()
        raise ValueError(f"fov must be in (0, pi) radians; got {bad} (convert degrees with math.radians)")
    span = width if axis == "horizontal" else height
    focal = (span / 2) / torch.tan(fov / 2)
    k = torch.zeros(*fov.shape, 3, 3, dtype=fov.dtype, device=fov.device)
    k[..., 0, 0] = focal
    k[..., 1, 1] = focal
    k[..., 0, 2] = width / 2
    k[..., 1, 2] = height / 2
    k[..., 2, 2] = 1.0
    return k


def relative_to_first(c2w: Tensor) -> Tensor:
    """``(..., T, 4, 4)`` camera-to-world -> the same cameras in the frame of camera 0.

    ``out[t] = inv(c2w[0]) @ c2w[t]``: the first camera becomes the identity and the result
    is invariant to any rigid transform applied to the whole trajectory.
    """
    _check_tensor(c2w, "c2w", (4, 4), "(..., T, 4, 4)")
    if c2w.ndim < 3:
        raise ValueError(f"c2w must have shape (..., T, 4, 4); got {tuple(c2w.shape)}")
    return invert_pose(c2w[..., :1, :, :]) @ c2w


def normalize_translation(c2w: Tensor, *, eps: float = 1e-8) -> tuple[Tensor, Tensor]:
    """Scale each trajectory so its farthest camera centre from camera 0 is at distance 1.

    Args:
        c2w: ``(..., T, 4, 4)`` camera-to-world.
        eps: trajectories whose cameras all sit within ``eps`` of camera 0 are left unscaled.

    Returns:
        ``(c2w_scaled, scale)``: rotations untouched, every centre ``C_t`` replaced by
        ``C_0 + (C_t - C_0) / scale``; ``scale`` has shape ``(...)`` (multiply back to undo).
    """
    _check_tensor(c2w, "c2w", (4, 4), "(..., T, 4, 4)")
    if c2w.ndim < 3:
        raise ValueError(f"c2w must have shape (..., T, 4, 4); got {tuple(c2w.shape)}")
    centres = c2w[..., :3, 3]  # (..., T, 3)
    offsets = centres - centres[..., :1, :]
    scale = offsets.norm(dim=-1).amax(dim=-1)  # (...)
    scale = torch.where(scale > eps, scale, torch.ones_like(scale))
    out = c2w.clone()
    out[..., :3, 3] = centres[..., :1, :] + offsets / scale[..., None, None]
    return out, scale


def plucker_rays(c2w: Tensor, intrinsics: Tensor, height: int, width: int) -> Tensor:
    """Per-pixel Plücker ray maps ``(B, T, 6, H, W)`` of cameras ``(B, T, 4, 4)``.

    Args:
        c2w: camera-to-world ``(B, T, 4, 4)`` (OpenCV axes; see the module docstring).
        intrinsics: ``(3, 3)`` or broadcastable to ``(B, T, 3, 3)``, for a ``height x width`` image.
        height, width: the ray map's size (compute the intrinsics at this resolution).

    Returns:
        channels 0-2 the moment ``o x d``, channels 3-5 the unit direction ``d`` of the ray
        from camera centre ``o`` through each pixel centre.
    """
    b, t = check_cameras(c2w, "c2w")
    _check_tensor(intrinsics, "intrinsics", (3, 3), "(3, 3) or (B, T, 3, 3)")
    for name, size in (("height", height), ("width", width)):
        positive_int(name, size, note=" (pixels)")
    try:
        k = intrinsics.to(c2w.dtype).expand(b, t, 3, 3)
    except RuntimeError:
        got = tuple(intrinsics.shape)
        raise ValueError(f"intrinsics must broadcast to (B, T, 3, 3) = {(b, t, 3, 3)}; got {got}") from None
    if not ((k[..., 0, 0] > 0) & (k[..., 1, 1] > 0)).all():
        raise ValueError("intrinsics must have positive focal lengths fx = K[0, 0] and fy = K[1, 1]")
    v, u = torch.meshgrid(
        torch.arange(height, dtype=c2w.dtype, device=c2w.device) + 0.5,
        torch.arange(width, dtype=c2w.dtype, device=c2w.device) + 0.5,
        indexing="ij",
    )
    pixels = torch.stack([u, v, torch.ones_like(u)], -1).reshape(-1, 3)  # (h*w, 3) homogeneous
    to_world = c2w[..., :3, :3] @ torch.linalg.inv(k)  # (b, t, 3, 3): pixel -> world direction
    dirs = pixels @ to_world.transpose(-1, -2)  # (b, t, h*w, 3)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = c2w[..., None, :3, 3].expand_as(dirs)
    rays = torch.cat([torch.linalg.cross(origins, dirs, dim=-1), dirs], -1)
    return rearrange(rays, "b t (h w) c -> b t c h w", h=height, w=width)
