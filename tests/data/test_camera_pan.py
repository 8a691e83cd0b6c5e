"""Synthetic camera-pan videos, camera paths on disk, and phase-correlation shift estimation."""

import json
import math

import pytest
import torch

from spacetime.data import camera_pan as cp
from spacetime.ops.camera import camera_to_world, opencv_to_opengl
from spacetime.ops.motion import camera_translation, frame_shifts, phase_correlation, translation_error


def test_phase_correlation_recovers_circular_shifts_exactly():
    g = torch.Generator().manual_seed(0)
    image = torch.randn(6, 20, 24, generator=g)
    shifts = [(3, -2), (-7, 5), (0, 0), (11, -9), (-1, 1), (5, 8)]  # (dx, dy)
    moved = torch.stack([torch.roll(im, (dy, dx), dims=(0, 1)) for im, (dx, dy) in zip(image, shifts)])
    est = phase_correlation(image, moved, window=False)
    torch.testing.assert_close(est, torch.tensor(shifts, dtype=torch.float32), atol=1e-4, rtol=0)


def test_random_paths_are_recovered_within_one_pixel_per_frame():
    batch = cp.camera_pan_batch(16, 12, 32, max_speed=3.0, generator=torch.Generator().manual_seed(1))
    assert batch.video.shape == (16, 1, 12, 32, 32)
    assert batch.video.abs().max() <= 1
    requested = batch.positions.diff(dim=1)
    estimated = camera_translation(batch.video)
    assert (estimated - requested).abs().max() < 1.0  # every frame, every axis
    errors = translation_error(batch.video, batch.positions)
    assert errors.shape == (16,) and errors.mean() < 0.35


@pytest.mark.parametrize("name", sorted(cp.PRESETS))
def test_presets_are_recovered_and_reversing_reverses_the_motion(name):
    g = torch.Generator().manual_seed(2)
    path = cp.preset_positions(name, 9, speed=1.5)
    assert path.shape == (9, 2) and (path[0] == 0).all()
    forward = cp.camera_pan_batch(2, 9, (24, 28), channels=3, positions=path, generator=g)
    backward = cp.camera_pan_batch(2, 9, (24, 28), channels=3, positions=cp.reverse_positions(path), generator=g)
    assert translation_error(forward.video, forward.positions).max() < 1.0
    assert translation_error(backward.video, backward.positions).max() < 1.0
    torch.testing.assert_close(camera_translation(backward.video), -camera_translation(forward.video), atol=1.0, rtol=0)


def test_preset_shapes_of_motion():
    steps = cp.preset_positions("pan_right_reverse", 9, speed=2.0).diff(dim=0)
    torch.testing.assert_close(steps, torch.tensor([[2.0, 0]] * 4 + [[-2.0, 0]] * 4))
    stop = cp.preset_positions("pan_right_stop", 5).diff(dim=0)
    torch.testing.assert_close(stop, torch.tensor([[1.0, 0], [1, 0], [0, 0], [0, 0]]))
    diagonal = cp.preset_positions("diagonal_up_left", 3, speed=0.5)
    torch.testing.assert_close(diagonal, torch.tensor([[0.0, 0], [-0.5, -0.5], [-1, -1]]))


def test_integer_positions_copy_scene_pixels_exactly():
    scene = cp.random_scene(1, 2, 20, 30, generator=torch.Generator().manual_seed(3))
    positions = torch.tensor([[[0.0, 0.0], [3.0, 1.0], [5.0, -2.0]]])
    video = cp.render_pan(scene, positions, 8, 10, origin=(4.0, 6.0))
    for t, (x, y) in enumerate(positions[0].long().tolist()):
        torch.testing.assert_close(video[0, :, t], scene[0, :, 6 + y:6 + y + 8, 4 + x:4 + x + 10], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="outside the scene along x"):
        cp.render_pan(scene, positions + torch.tensor([20.0, 0.0]), 8, 10, origin=(4.0, 6.0))


def test_random_paths_are_seeded_bounded_and_start_at_the_origin():
    a = cp.random_positions(64, 10, max_speed=2.0, generator=torch.Generator().manual_seed(4))
    b = cp.random_positions(64, 10, max_speed=2.0, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and a.shape == (64, 10, 2)
    assert (a[:, 0] == 0).all()
    steps = a.diff(dim=1)
    assert steps.abs().max() <= 2.0 + 1e-6
    assert (steps.abs().sum(-1) == 0).any()  # some stops
    reversals = (steps[:, 1:] * steps[:, :-1]).sum(-1) < 0
    assert reversals.any()  # some reversals
    video = cp.camera_pan_batch(2, 4, 8, generator=torch.Generator().manual_seed(5)).video
    assert torch.equal(video, cp.camera_pan_batch(2, 4, 8, generator=torch.Generator().manual_seed(5)).video)


def test_cameras_and_positions_convert_and_reject_rotation():
    positions = torch.tensor([[0.0, 0.0], [2.0, -1.0]])
    cams = cp.cameras_from_positions(positions, scale=2.0)
    torch.testing.assert_close(cams, torch.tensor([[0.0] * 6, [0, 0, 0, 1.0, -0.5, 0]]))
    torch.testing.assert_close(cp.positions_from_cameras(cams, scale=2.0), positions)
    cams[1, 1] = 0.1  # yaw
    with pytest.raises(ValueError, match="only translate in x and y"):
        cp.positions_from_cameras(cams)


def test_camera_path_json_round_trip(tmp_path):
    cams = torch.tensor([[0.1, -0.2, 0.3, 1.0, 2.0, 3.0], [0.0, 0.5, 0.0, -1.0, 0.0, 0.25]])
    file = tmp_path / "path.json"
    cp.save_camera_path(file, cams)
    assert [p.name for p in tmp_path.iterdir()] == ["path.json"]  # no temp file left behind
    data = json.loads(file.read_text())
    assert data["angle_unit"] == "degrees" and math.isclose(data["frames"][0]["pitch"], math.degrees(0.1), rel_tol=1e-6)
    torch.testing.assert_close(cp.load_camera_path(file), cams)
    torch.testing.assert_close(cp.camera_path(str(file), 2), cams)
    # the same cameras as OpenGL camera-to-world matrices
    gl = opencv_to_opengl(camera_to_world(cams.double()))
    (tmp_path / "gl.json").write_text(json.dumps({"convention": "opengl", "frames": [{"c2w": m} for m in gl.tolist()]}))
    torch.testing.assert_close(cp.load_camera_path(tmp_path / "gl.json"), cams)
    # a bare list of frames, radians not given: degrees by default
    (tmp_path / "list.json").write_text(json.dumps([{"yaw": 90, "translation": [0, 0, 1]}]))
    expected = torch.tensor([[0, math.pi / 2, 0, 0, 0, 1.0]])
    torch.testing.assert_close(cp.load_camera_path(tmp_path / "list.json"), expected)


def test_camera_path_presets_and_errors(tmp_path):
    down = cp.camera_path("pan_down", 3, speed=2.0)
    torch.testing.assert_close(down[:, 3:5], torch.tensor([[0.0, 0], [0, 2], [0, 4]]))
    with pytest.raises(ValueError, match="preset"):
        cp.camera_path("spin", 4)
    with pytest.raises(ValueError, match="does not exist"):
        cp.camera_path(str(tmp_path / "missing.json"), 4)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        cp.load_camera_path(tmp_path / "bad.json")
    (tmp_path / "short.json").write_text(json.dumps([{"translation": [0, 0, 0]}]))
    with pytest.raises(ValueError, match="has 1 frames; the video has num_frames=4"):
        cp.camera_path(str(tmp_path / "short.json"), 4)
    (tmp_path / "nan.json").write_text('[{"translation": [NaN, 0, 0]}]')
    with pytest.raises(ValueError, match="non-finite"):
        cp.load_camera_path(tmp_path / "nan.json")
    (tmp_path / "odd.json").write_text(json.dumps([{"position": [0, 0, 0]}]))
    with pytest.raises(ValueError, match=r"frames\[0\]"):
        cp.load_camera_path(tmp_path / "odd.json")
    with pytest.raises(ValueError, match="finite"):
        cp.save_camera_path(tmp_path / "x.json", torch.full((2, 6), float("nan")))


def test_motion_input_errors():
    video = torch.randn(2, 1, 4, 8, 8)
    with pytest.raises(ValueError, match=r"positions must have shape \(B, T, 2\) = \(2, 4, 2\)"):
        translation_error(video, torch.zeros(2, 5, 2))
    with pytest.raises(ValueError, match="T >= 2"):
        frame_shifts(video[:, :, :1])
    with pytest.raises(ValueError, match="a and b must have the same shape"):
        phase_correlation(torch.randn(8, 8), torch.randn(8, 9))
    with pytest.raises(ValueError, match=r"positions has T=3 frames but the video has T=4"):
        cp.camera_pan_batch(2, 4, 8, positions=torch.zeros(2, 3, 2))
