import numpy as np
import pytest

from spacetime.data.bouncing import create_dataset
from spacetime.data.plausibility import DiskDetector, score_videos


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
    assert not verdict.plausible and "area" in verdict.reason
    noise = np.random.default_rng(0).random((8, 32, 32))
    assert not det.judge(noise).plausible
    wide = videos[2].copy()
    wide[4] = 0
    wide[4, 10:18, 5:19] = 1  # a bar of about the disk's area
    verdict = det.judge(wide)  # the reason reads as plain numbers
    assert verdict.reason == "frame 4: disk extent (8, 14), training disk (11, 11)", verdict.reason


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
