import numpy as np
import pytest
import torch

from spacetime.data.bouncing import (BouncingDisks, bounce_axis, create_dataset, create_moving_mnist_video, disk_stamp,
                                     context_ceiling, frames_to_predict, speeds)


def text_video(num_frames=16, size=32, digit_size=12):
    """Text 004's generator, restated plainly: global np.random, loops over the stamp's pixels."""
    video = np.zeros((num_frames, size, size), dtype=np.float32)
    x, y = np.random.randint(0, size - digit_size), np.random.randint(0, size - digit_size)
    vx, vy = np.random.choice([-2, -1, 1, 2]), np.random.choice([-2, -1, 1, 2])
    digit = np.zeros((digit_size, digit_size), dtype=np.float32)
    c = digit_size // 2
    for i in range(digit_size):
        for j in range(digit_size):
            digit[i, j] = 1.0 if ((i - c) ** 2 + (j - c) ** 2) ** 0.5 < c else 0.0
    for t in range(num_frames):
        video[t, y:y + digit_size, x:x + digit_size] = digit
        x, y = x + vx, y + vy
        if x <= 0 or x >= size - digit_size:
            vx, x = -vx, max(0, min(size - digit_size, x))
        if y <= 0 or y >= size - digit_size:
            vy, y = -vy, max(0, min(size - digit_size, y))
    return video


def test_create_dataset_equals_the_text_under_the_global_seed():
    np.random.seed(7)
    expected = np.stack([text_video(8, 32) for _ in range(64)])[:, None]
    np.random.seed(7)
    got = create_dataset(num_videos=64, num_frames=8, size=32)
    assert got.shape == (64, 1, 8, 32, 32) and got.dtype == torch.float32
    assert np.array_equal(got.numpy(), expected)


def test_create_moving_mnist_video_defaults_and_private_rng():
    np.random.seed(1)
    expected = text_video()
    np.random.seed(1)
    assert np.array_equal(create_moving_mnist_video(), expected)
    a = create_moving_mnist_video(rng=np.random.default_rng(3))
    b = create_moving_mnist_video(rng=np.random.default_rng(3))
    assert np.array_equal(a, b) and a.shape == (16, 32, 32)


def test_every_frame_holds_the_whole_disk():
    stamp_area = disk_stamp(12).sum()
    videos = create_dataset(50, 12, 32, rng=np.random.default_rng(0))
    assert torch.all(videos.sum(dim=(-1, -2)) == stamp_area)


@pytest.mark.parametrize("frames, size, digit", [(1, 20, 6), (5, 17, 8), (24, 64, 12)])
def test_bouncing_disks_any_shape_and_seeded_per_index(frames, size, digit):
    ds = BouncingDisks(length=100, num_frames=frames, size=size, digit_size=digit, seed=5)
    v = ds[17]
    assert v.shape == (1, frames, size, size)
    assert torch.equal(v, BouncingDisks(length=100, num_frames=frames, size=size, digit_size=digit, seed=5)[17])
    assert not torch.equal(ds[17], ds[18]) or frames == 1
    pos = ds.positions(17)
    assert pos.min() >= 0 and pos.max() <= size - digit


def test_bouncing_disks_bad_arguments():
    with pytest.raises(ValueError, match="size must exceed digit_size"):
        BouncingDisks(size=10, digit_size=12)
    with pytest.raises(ValueError, match="num_frames must be an int >= 1"):
        BouncingDisks(num_frames=0)
    with pytest.raises(IndexError, match="index must be in"):
        BouncingDisks(length=3)[3]


@pytest.mark.parametrize("objects, max_speed", [(2, 3), (3, 4), (1, 1)])
def test_more_objects_and_faster_motion_follow_the_same_law(objects, max_speed):
    ds = BouncingDisks(length=50, num_frames=10, objects=objects, max_speed=max_speed, seed=2)
    for i in range(50):
        pos = ds.positions(i)  # (T, K, 2)
        assert pos.shape == (10, objects, 2)
        for k in range(objects):
            for axis in range(2):
                track = pos[:, k, axis]  # the law from its start, with one of the data's velocities
                assert any(np.array_equal(bounce_axis(track[0], v, 10, 20), track) for v in speeds(max_speed))
        video = ds[i][0].numpy()
        assert video.max() == 1.0 and set(np.unique(video)) <= {0.0, 1.0}
        union = np.zeros_like(video, dtype=bool)
        for k in range(objects):
            for t in range(10):
                x, y = pos[t, k]
                union[t, y:y + 12, x:x + 12] |= disk_stamp(12) > 0
        assert np.array_equal(video > 0, union)


def test_speeds_reach_the_top_speed_evenly():
    ds = BouncingDisks(length=4000, num_frames=2, max_speed=4, seed=0, digit_size=4, size=200)
    starts = np.concatenate([ds.positions(i)[0] for i in range(4000)])
    moves = np.concatenate([ds.positions(i)[1] - ds.positions(i)[0] for i in range(4000)])
    moves = moves[(starts > 4) & (starts < 192)]  # away from the walls the first move is the drawn velocity
    values, counts = np.unique(moves, return_counts=True)
    assert list(values) == [-4, -3, -2, -1, 1, 2, 3, 4]
    assert counts.min() > 0.8 * counts.mean()


def test_bad_objects_and_speeds_are_named():
    with pytest.raises(ValueError, match=r"objects must be an int in \[1, 4\); got 4"):
        BouncingDisks(objects=4)
    with pytest.raises(ValueError, match=r"max_speed must be an int in \[1, 5\) \(pixels per frame\); got 0"):
        BouncingDisks(max_speed=0)
    with pytest.raises(ValueError, match=r"max_speed must be an int"):
        create_dataset(2, 4, 32, objects=1, max_speed=2.5)


def _continues(positions: list[int], max_speed: int, limit: int) -> set[int]:
    """Every next position of the law after ``positions`` (consecutive frames of one axis), by trying each start
    and velocity plainly."""
    k = len(positions)
    found = set()
    for start in range(limit + 1):
        for v in speeds(max_speed):
            path = [int(p) for p in bounce_axis(start, v, 40, limit)]
            for t in range(40 - k):
                if path[t:t + k] == positions:
                    found.add(path[t + k])
    return found


def test_two_frames_do_not_determine_a_clamped_bounce_three_do():
    # at 1 px/frame, (1, 0) goes on to 1; at 2 px/frame, 1 -> -1 is clamped to 0 and goes on to 2
    assert _continues([1, 0], 2, 20) == {1, 2}
    assert _continues([2, 1, 0], 2, 20) == {1} and _continues([3, 1, 0], 2, 20) == {2}
    assert _continues([1, 0], 1, 20) == {1}
    assert frames_to_predict(32, 12, 1) == 2
    for max_speed in (2, 3, 4):
        assert frames_to_predict(32, 12, max_speed) == 3
    assert frames_to_predict(32, 16, 3) == 3  # the digits' frames


def test_frames_to_predict_agrees_with_every_window():
    limit, max_speed = 9, 3
    k = frames_to_predict(limit + 6, 6, max_speed)
    windows = {tuple(int(p) for p in bounce_axis(s, v, 30, limit)[t:t + k])
               for s in range(limit + 1) for v in speeds(max_speed) for t in range(30 - k)}
    assert all(len(_continues(list(w), max_speed, limit)) == 1 for w in windows)
    shorter = {w[1:] for w in windows}
    assert any(len(_continues(list(w), max_speed, limit)) > 1 for w in shorter)
    with pytest.raises(ValueError, match="size must exceed digit_size; got size=6, digit_size=6"):
        frames_to_predict(6, 6)


def _ceiling_by_search(limit: int, max_speed: int, frames: int, context: int) -> float:
    """context_ceiling for one axis, plainly: every video a perfect model can make, grown one frame at a time from
    the data's first frames, with its probability; the share of them that some start and velocity explain."""
    paths = [[int(p) for p in bounce_axis(s, v, frames, limit)] for s in range(limit) for v in speeds(max_speed)]
    lawful = {tuple(p) for p in paths}

    def next_positions(window):
        found = [p[t] for p in paths for t in range(context, frames) if tuple(p[t - context:t]) == window]
        return {x: found.count(x) / len(found) for x in set(found)}

    videos = {}
    for p in paths:
        videos[tuple(p[:context])] = videos.get(tuple(p[:context]), 0) + 1 / len(paths)
    for _ in range(context, frames):
        grown = {}
        for video, chance in videos.items():
            for x, q in next_positions(video[-context:]).items():
                grown[video + (x,)] = grown.get(video + (x,), 0) + chance * q
        videos = grown
    return sum(chance for video, chance in videos.items() if video in lawful)


def test_context_ceiling_is_the_share_of_lawful_videos_a_perfect_model_makes():
    one_axis = _ceiling_by_search(limit=5, max_speed=2, frames=6, context=2)
    assert 0 < one_axis < 1
    assert context_ceiling(11, 6, 2, 6, 2) == pytest.approx(one_axis**2)
    assert context_ceiling(11, 6, 2, 6, 2, objects=2) == pytest.approx(one_axis**4)
    assert context_ceiling(11, 6, 2, 6, 3) == pytest.approx(1.0)  # frames_to_predict's context
    assert context_ceiling(11, 6, 1, 6, 2) == pytest.approx(1.0)
    # the demo's data and context: about a quarter of the videos of even a perfect 2-frame model break the law
    assert context_ceiling(32, 12, 2, 8, 2) == pytest.approx(0.7656, abs=1e-4)
    assert context_ceiling(32, 12, 2, 24, 2) < context_ceiling(32, 12, 2, 8, 2)
    with pytest.raises(ValueError, match=r"context must be an int in \[1, frames=6\); got 6"):
        context_ceiling(11, 6, 2, 6, 6)
