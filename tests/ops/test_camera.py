"""Camera geometry: the convention, round trips, invariances, Plücker rays and input errors."""

import math

import pytest
import torch

from spacetime.ops import camera as cam

F64 = torch.float64


def axis_rotation(axis, angle):
    """Rotation by ``angle`` about a unit axis, as the exponential of its skew matrix (independent of ops)."""
    x, y, z = axis
    skew = torch.tensor([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]], dtype=F64)
    return torch.linalg.matrix_exp(angle * skew)


def random_params(*shape, max_pitch=1.4, generator=None):
    angles = (torch.rand(*shape, 3, dtype=F64, generator=generator) * 2 - 1) * math.pi
    angles[..., 0] *= max_pitch / math.pi
    return torch.cat([angles, torch.randn(*shape, 3, dtype=F64, generator=generator) * 3], -1)


def random_rigid(generator=None):
    q = torch.linalg.qr(torch.randn(3, 3, dtype=F64, generator=generator))[0]
    q = q * torch.linalg.det(q).sign()  # a proper rotation
    g = torch.eye(4, dtype=F64)
    g[:3, :3], g[:3, 3] = q, torch.randn(3, dtype=F64, generator=generator) * 5
    return g


def test_rotation_order_and_axes_follow_the_documented_convention():
    pitch, yaw, roll = 0.3, -1.1, 2.0
    expected = axis_rotation((0, 1, 0), yaw) @ axis_rotation((1, 0, 0), pitch) @ axis_rotation((0, 0, 1), roll)
    got = cam.rotation_from_euler(torch.tensor([pitch, yaw, roll], dtype=F64))
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("which, axis_in, axis_out, sign", [
    (1, 2, 0, 1.0),  # positive yaw turns the view (+z) toward +x (right)
    (0, 2, 1, -1.0),  # positive pitch tilts the view toward -y (up, y is down)
    (2, 0, 1, 1.0),  # positive roll turns +x toward +y (clockwise seen from behind)
])
def test_angle_signs(which, axis_in, axis_out, sign):
    angles = torch.zeros(3, dtype=F64)
    angles[which] = 0.2
    rotated = cam.rotation_from_euler(angles)[:, axis_in]
    assert sign * rotated[axis_out] > 0.19


def test_euler_angles_round_trip_through_matrices():
    g = torch.Generator().manual_seed(1)
    angles = random_params(500, generator=g)[..., :3]
    rot = cam.rotation_from_euler(angles)
    torch.testing.assert_close(rot @ rot.transpose(-1, -2), torch.eye(3, dtype=F64).expand_as(rot))
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(500, dtype=F64))
    torch.testing.assert_close(cam.euler_from_rotation(rot), angles)


def test_pose_matrices_round_trip_and_invert():
    params = random_params(4, 7, generator=torch.Generator().manual_seed(2))
    c2w, w2c = cam.camera_to_world(params), cam.world_to_camera(params)
    torch.testing.assert_close(c2w @ w2c, torch.eye(4, dtype=F64).expand_as(c2w))
    torch.testing.assert_close(cam.invert_pose(c2w), torch.linalg.inv(c2w))
    torch.testing.assert_close(cam.params_from_pose(c2w), params)
    torch.testing.assert_close(c2w[..., :3, 3], params[..., 3:])  # translation is the camera centre
    # a point 2 units ahead of the camera is at (0, 0, 2) in camera coordinates
    ahead = c2w[..., :3, 3] + 2 * c2w[..., :3, 2]
    in_cam = w2c @ torch.cat([ahead, torch.ones_like(ahead[..., :1])], -1)[..., None]
    torch.testing.assert_close(in_cam[..., :3, 0], torch.tensor([0.0, 0, 2], dtype=F64).expand_as(ahead))


def test_opencv_opengl_round_trip_and_meaning():
    c2w = cam.camera_to_world(random_params(3, 5, generator=torch.Generator().manual_seed(3)))
    gl = cam.opencv_to_opengl(c2w)
    torch.testing.assert_close(cam.opengl_to_opencv(gl), c2w)
    torch.testing.assert_close(gl[..., :, 2], -c2w[..., :, 2])  # GL looks along -z: same viewing direction
    torch.testing.assert_close(gl[..., :, 1], -c2w[..., :, 1])  # GL y is up
    torch.testing.assert_close(gl[..., :, [0, 3]], c2w[..., :, [0, 3]])  # right axis and centre unchanged
    # a world point in front of the camera: z > 0 in OpenCV camera coordinates, z < 0 in OpenGL ones
    point = c2w[..., :, 3] + 1.5 * c2w[..., :, 2]
    z_cv = (cam.invert_pose(c2w) @ point[..., None])[..., 2, 0]
    z_gl = (cam.invert_pose(gl) @ point[..., None])[..., 2, 0]
    assert (z_cv > 0).all() and (z_gl < 0).all()


@pytest.mark.parametrize("axis", ["horizontal", "vertical"])
def test_intrinsics_from_fov_put_the_fov_edge_on_the_image_edge(axis):
    h, w, fov = 24, 40, math.radians(70)
    k = cam.intrinsics_from_fov(fov, h, w, axis=axis).double()
    edge = torch.tensor([math.tan(fov / 2), 0.0, 1.0], dtype=F64) if axis == "horizontal" else \
        torch.tensor([0.0, math.tan(fov / 2), 1.0], dtype=F64)
    u, v, one = k @ edge
    assert one == 1.0
    expected = (w, h / 2) if axis == "horizontal" else (w / 2, h)
    assert (u.item(), v.item()) == pytest.approx(expected, rel=1e-6)
    assert k[0, 0] == k[1, 1]  # square pixels
    batch = cam.intrinsics_from_fov(torch.tensor([0.5, 1.0]), h, w)
    assert batch.shape == (2, 3, 3) and batch[0, 0, 0] > batch[1, 0, 0]  # narrower fov, longer focal length


@pytest.mark.parametrize("fov", [0.0, -0.3, math.pi, 4.0, float("nan"), torch.tensor([0.5, -1.0])])
def test_non_positive_or_impossible_fov_is_an_error(fov):
    with pytest.raises(ValueError, match="fov"):
        cam.intrinsics_from_fov(fov, 8, 8)


def test_relative_poses_are_invariant_to_a_global_rigid_transform():
    g = torch.Generator().manual_seed(4)
    c2w = cam.camera_to_world(random_params(2, 6, generator=g))
    moved = random_rigid(g) @ c2w
    rel = cam.relative_to_first(c2w)
    torch.testing.assert_close(cam.relative_to_first(moved), rel)
    torch.testing.assert_close(rel[:, 0], torch.eye(4, dtype=F64).expand(2, 4, 4))
    assert not torch.allclose(moved, c2w)


def test_normalize_translation():
    g = torch.Generator().manual_seed(5)
    c2w = cam.camera_to_world(random_params(3, 5, generator=g))
    c2w[2, :, :3, 3] = c2w[2, :1, :3, 3]  # a camera that only rotates: nothing to scale
    out, scale = cam.normalize_translation(c2w)
    offsets = out[..., :3, 3] - out[..., :1, :3, 3]
    torch.testing.assert_close(offsets[:2].norm(dim=-1).amax(-1), torch.ones(2, dtype=F64))
    torch.testing.assert_close(out[..., :3, :3], c2w[..., :3, :3])
    torch.testing.assert_close(scale[2], torch.tensor(1.0, dtype=F64))
    torch.testing.assert_close(out[2], c2w[2])
    undo = out[..., :3, 3] - out[..., :1, :3, 3]
    torch.testing.assert_close(undo * scale[:, None, None], c2w[..., :3, 3] - c2w[..., :1, :3, 3])


def test_plucker_rays_equal_rays_cast_through_pixel_centres():
    g = torch.Generator().manual_seed(6)
    b, t, h, w = 2, 3, 5, 7
    c2w = cam.camera_to_world(random_params(b, t, generator=g))
    k = cam.intrinsics_from_fov(torch.tensor([[0.8], [1.3]], dtype=F64), h, w).expand(b, t, 3, 3)
    rays = cam.plucker_rays(c2w, k, h, w)
    assert rays.shape == (b, t, 6, h, w) and rays.dtype == F64
    for bi in range(b):
        for ti in range(t):
            fx, fy, cx, cy = k[bi, ti, 0, 0], k[bi, ti, 1, 1], k[bi, ti, 0, 2], k[bi, ti, 1, 2]
            centre = c2w[bi, ti, :3, 3]
            for i in range(h):
                for j in range(w):
                    through = torch.stack([(j + 0.5 - cx) / fx, (i + 0.5 - cy) / fy, torch.tensor(1.0, dtype=F64)])
                    world = c2w[bi, ti, :3, :3] @ through + centre  # the pixel centre on the plane z=1
                    d = (world - centre) / (world - centre).norm()
                    torch.testing.assert_close(rays[bi, ti, 3:, i, j], d)
                    torch.testing.assert_close(rays[bi, ti, :3, i, j], torch.linalg.cross(centre, d))
    # the moment is the same from any point on the ray
    d, m = rays[:, :, 3:], rays[:, :, :3]
    point = c2w[..., :3, 3, None, None] + 2.5 * d
    torch.testing.assert_close(torch.linalg.cross(point, d, dim=2), m)


def test_plucker_centre_pixel_of_identity_camera_looks_forward():
    rays = cam.plucker_rays(torch.eye(4).expand(1, 1, 4, 4), cam.intrinsics_from_fov(1.0, 5, 5), 5, 5)
    torch.testing.assert_close(rays[0, 0, :, 2, 2], torch.tensor([0.0, 0, 0, 0, 0, 1]))


def test_check_cameras_names_the_argument_and_the_mismatch():
    c2w = torch.eye(4).expand(2, 3, 4, 4).clone()
    assert cam.check_cameras(c2w, "c2w", batch=2, frames=3) == (2, 3)
    with pytest.raises(ValueError, match=r"c2w has batch size B=2 but the video has B=3"):
        cam.check_cameras(c2w, "c2w", batch=3)
    with pytest.raises(ValueError, match=r"c2w has T=3 frames but the video has T=4"):
        cam.check_cameras(c2w, "c2w", frames=4)
    with pytest.raises(ValueError, match=r"c2w must have shape \(B, T, 4, 4\)"):
        cam.check_cameras(c2w[0], "c2w")
    c2w[1, 2, 0, 3] = float("nan")
    with pytest.raises(ValueError, match="c2w must be finite"):
        cam.check_cameras(c2w, "c2w")
    with pytest.raises(ValueError, match="c2w must be finite"):
        cam.plucker_rays(c2w, cam.intrinsics_from_fov(1.0, 4, 4), 4, 4)
    with pytest.raises(TypeError, match="cams"):
        cam.check_cameras([[0.0]], "cams")


def test_nan_pose_parameters_and_bad_intrinsics_are_errors():
    params = torch.zeros(2, 6)
    params[1, 0] = float("nan")
    with pytest.raises(ValueError, match="params must be finite"):
        cam.camera_to_world(params)
    with pytest.raises(ValueError, match=r"params must have shape \(\.\.\., 6\)"):
        cam.camera_to_world(torch.zeros(2, 5))
    c2w = torch.eye(4).expand(1, 2, 4, 4)
    with pytest.raises(ValueError, match="intrinsics must broadcast"):
        cam.plucker_rays(c2w, torch.eye(3).expand(3, 2, 3, 3), 4, 4)
    with pytest.raises(ValueError, match="positive focal"):
        cam.plucker_rays(c2w, torch.diag(torch.tensor([-1.0, 1.0, 1.0])), 4, 4)
    with pytest.raises(ValueError, match="height"):
        cam.plucker_rays(c2w, torch.eye(3), 0, 4)
