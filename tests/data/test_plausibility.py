import re

import numpy as np
import pytest

from spacetime.data.bouncing import bounce_axis, create_dataset, disk_stamp
from spacetime.data.plausibility import DiskDetector, count_law, score_videos


@pytest.fixture(scope="module")
def videos():
    return create_dataset(200, 8, 32, rng=np.random.default_rng(0)).numpy()[:, 0]


def test_training_data_scores_100_percent(videos):
    report = score_videos(videos)
    assert report["plausible_fraction"] == 1.0 and report["one_disk_frame_fraction"] == 1.0
    long = create_dataset(50, 20, 32, rng=np.random.default_rng(1)).numpy()
    assert score_videos(long)["plausible_fraction"] == 1.0  # (N, 1, T, H, W) accepted too


def test_shuffled_frames_score_about_zero(videos):
    rng = np.random.default_rng(0)
    shuffled = np.stack([v[rng.permutation(len(v))] for v in videos])
    assert score_videos(shuffled)["plausible_fraction"] <= 0.05


def test_frozen_disk_scores_zero(videos):
    frozen = np.repeat(videos[:, :1], 8, axis=1)
    assert score_videos(frozen)["plausible_fraction"] == 0.0


def test_spliced_clips_score_about_zero(videos):
    spliced = np.concatenate([videos[:, :4], np.roll(videos, 1, axis=0)[:, 4:]], axis=1)
    assert score_videos(spliced)["plausible_fraction"] <= 0.05


def test_frames_without_one_training_size_disk_fail(videos):
    det = DiskDetector()
    two = videos[0].copy()
    two[3] = np.maximum(two[3], np.roll(two[3], 16, axis=(0, 1)))  # a second disk
    assert not det.judge(two).plausible
    small = videos[1].copy()
    small[2] = 0
    small[2, 10:14, 10:14] = 1  # a 4x4 blob
    verdict = det.judge(small)
    assert not verdict.plausible and verdict.reason.startswith("frame 2: not the training disks"), verdict.reason
    noise = np.random.default_rng(0).random((8, 32, 32))
    assert not det.judge(noise).plausible
    wide = videos[2].copy()
    wide[4] = 0
    wide[4, 10:18, 5:19] = 1  # a bar of about the disk's area
    verdict = det.judge(wide)  # the reason reads as plain numbers
    assert re.fullmatch(r"frame 4: not the training disks \(\d+ px differ from the disks\)", verdict.reason), \
        verdict.reason


def test_blurred_but_correct_video_is_plausible(videos):
    # a little value noise below the threshold does not change the verdict
    noisy = np.clip(videos[:20] + 0.3 * np.random.default_rng(0).random(videos[:20].shape) - 0.15, 0, 1)
    assert score_videos(noisy)["plausible_fraction"] == 1.0


def test_bad_input():
    with pytest.raises(ValueError, match="videos must be"):
        score_videos(np.zeros((2, 8, 32)))
    with pytest.raises(ValueError, match=r"video must be \(T, 32, 32\)"):
        DiskDetector(size=32).judge(np.zeros((8, 16, 16)))


def test_specks_inside_a_disk_are_filled_but_a_ring_is_not_a_disk(videos):
    det = DiskDetector()
    speckled = videos[0].copy()
    ys, xs = np.nonzero(speckled[0])
    speckled[0, ys[::7], xs[::7]] = 0.2  # dark specks inside the disk
    assert det.judge(speckled).plausible
    ring = videos[0].copy()
    ring[0] = 0
    yy, xx = np.mgrid[0:32, 0:32]
    ring[0][(np.hypot(yy - 16, xx - 16) >= 4.5) & (np.hypot(yy - 16, xx - 16) < 6)] = 1
    verdict = det.judge(ring)
    assert not verdict.plausible and verdict.reason.startswith("frame 0")


def disk_at(cx, cy, size=32, radius=6, value=1.0):
    """A frame with a disk of the stamp's radius centred at a real position (sub-pixel motion)."""
    yy, xx = np.mgrid[0:size, 0:size]
    return np.where(np.hypot(yy - cy, xx - cx) < radius, value, 0.0).astype(np.float32)


def stamp_video(xs, ys, size=32, stamp=None):
    stamp = disk_stamp(12) if stamp is None else stamp
    video = np.zeros((len(xs), size, size), dtype=np.float32)
    s = stamp.shape[0]
    for t, (x, y) in enumerate(zip(xs, ys)):
        video[t, y:y + s, x:x + s] = np.maximum(video[t, y:y + s, x:x + s], stamp)
    return video


# each of these passed as plausible before the detector fitted the data's law to the whole video
def test_a_moving_square_is_not_a_disk():
    square = np.ones((10, 10), dtype=np.float32)
    video = stamp_video(bounce_axis(3, 2, 8, 22), bounce_axis(5, 1, 8, 22), stamp=square)
    verdict = DiskDetector().judge(video)
    assert not verdict.plausible and "not the training disks" in verdict.reason, verdict.reason


def test_a_faint_disk_beside_the_real_one_fails(videos):
    video = videos[0].copy()
    for t in range(len(video)):
        cy, cx = np.argwhere(video[t] > 0.5).mean(0)
        video[t] = np.maximum(video[t], disk_at(cx + 14 if cx < 16 else cx - 14, cy, value=0.45))
    verdict = DiskDetector().judge(video)
    assert not verdict.plausible and "stray brightness" in verdict.reason, verdict.reason


def test_a_ten_pixel_blob_in_every_frame_fails(videos):
    video = videos[1].copy()
    for t in range(len(video)):
        y, x = next((y, x) for y in range(30) for x in range(27)
                    if video[t, max(0, y - 2):y + 4, max(0, x - 2):x + 7].sum() == 0)
        video[t, y:y + 2, x:x + 5] = 1  # 10 px, two pixels clear of the disk
    verdict = DiskDetector().judge(video)
    assert not verdict.plausible and "10 px of stray brightness" in verdict.reason, verdict.reason


@pytest.mark.parametrize("vx, vy", [(1.5, 1.0), (1.5, 1.5), (0.5, 2.0)])
def test_a_speed_the_data_has_not_fails(vx, vy):
    video = np.stack([disk_at(8 + vx * t, 10 + vy * t) for t in range(8)])
    verdict = DiskDetector().judge(video)
    assert not verdict.plausible and "leave the data's bouncing paths" in verdict.reason, verdict.reason


def test_a_speed_change_at_a_wall_fails():
    xs = [14, 16, 18, 20, 19, 18, 17, 16]  # +2 px/frame into the wall at 20, then -1
    verdict = DiskDetector().judge(stamp_video(xs, bounce_axis(2, 1, 8, 20)))
    assert not verdict.plausible and "leave the data's bouncing paths" in verdict.reason, verdict.reason
    bounced = bounce_axis(14, 2, 8, 20)  # the law itself: +2 into the wall, -2 after it
    assert DiskDetector().judge(stamp_video(bounced, bounce_axis(2, 1, 8, 20))).plausible


def test_a_speed_above_the_data_top_speed_fails_and_passes_under_a_faster_law():
    video = stamp_video(bounce_axis(2, 3, 8, 20), bounce_axis(4, -1, 8, 20))
    assert not DiskDetector(max_speed=2).judge(video).plausible
    assert DiskDetector(max_speed=3).judge(video).plausible


@pytest.mark.parametrize("objects, max_speed, digit_size, frames", [(2, 3, 12, 8), (3, 4, 12, 8), (1, 2, 6, 8),
                                                                     (2, 3, 12, 24), (1, 1, 10, 5)])
def test_training_data_of_every_variant_scores_100_percent(objects, max_speed, digit_size, frames):
    data = create_dataset(60, frames, 32, rng=np.random.default_rng(objects), digit_size=digit_size, objects=objects,
                          max_speed=max_speed).numpy()
    detector = DiskDetector(32, digit_size, objects, max_speed)
    report = score_videos(data, detector)
    assert report["plausible_fraction"] == 1.0, [v["reason"] for v in report["verdicts"] if not v["plausible"]]
    # one frame on its own is fitted greedily: three disks heaped on one another can defeat it (1 frame in 480 here)
    assert report["one_disk_frame_fraction"] >= (1.0 if objects < 3 else 0.99)
    moves = np.concatenate([v["velocities"] for v in report["verdicts"]])
    assert set(np.abs(moves).ravel()) <= set(range(1, max_speed + 1))


def test_the_fitted_paths_are_the_data_s_own():
    from spacetime.data.bouncing import BouncingDisks
    data = BouncingDisks(length=20, num_frames=8, objects=2, max_speed=3, seed=4)
    detector = DiskDetector(objects=2, max_speed=3)
    for i in range(20):
        verdict = detector.judge(data[i][0].numpy())
        truth = data.positions(i)  # (T, 2, 2)
        got = verdict.positions
        # the same two tracks, in either order (identical paths can only be told apart by order)
        assert any(np.array_equal(got[:, perm], truth) for perm in ([0, 1], [1, 0])) or \
            np.array_equal(detector.render(got, 8), detector.render(truth, 8))


def test_one_disk_short_or_one_too_many_fails(videos):
    two = np.maximum(videos[:10], videos[10:20])
    assert score_videos(two, DiskDetector(objects=1))["plausible_fraction"] == 0.0
    assert score_videos(videos[:10], DiskDetector(objects=2))["plausible_fraction"] == 0.0


def test_count_law_of_the_data():
    law = count_law(DiskDetector(objects=1), 8, num_videos=64)
    assert law[1] == 1.0 and law.sum() == pytest.approx(1.0)
    law2 = count_law(DiskDetector(objects=2, max_speed=3), 8, num_videos=64)
    assert law2[2] > 0.85 and law2[1] < 0.15 and law2[[0, 3, 4]].sum() == 0  # overlapping disks may count as one
