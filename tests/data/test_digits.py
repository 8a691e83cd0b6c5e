import sys

import numpy as np
import pytest
import torch

from spacetime.data import digits as digits_module
from spacetime.data.bouncing import bounce_axis, bounce_tracks, speeds
from spacetime.data.digits import (DIGIT_SIZE, HELD_OUT, MovingDigits, create_digit_dataset, load_digit_images,
                                   render_digits)


def test_splits_shapes_ranges_and_sizes():
    train, train_labels = load_digit_images("train")
    held, held_labels = load_digit_images("heldout")
    assert train.shape == (1797 - HELD_OUT, DIGIT_SIZE, DIGIT_SIZE) and held.shape == (HELD_OUT, DIGIT_SIZE, DIGIT_SIZE)
    for images, labels in ((train, train_labels), (held, held_labels)):
        assert images.dtype == np.float32 and labels.dtype == np.int64
        assert images.min() == 0.0 and images.max() == 1.0
        assert set(labels.tolist()) == set(range(10))
    assert load_digit_images()[0].shape == train.shape  # "train" is the default


def test_no_train_image_equals_a_heldout_image():
    train = {image.tobytes() for image in load_digit_images("train")[0]}
    held = [image.tobytes() for image in load_digit_images("heldout")[0]]
    assert not train.intersection(held)


def test_the_split_ignores_the_global_seed_and_callers_cannot_corrupt_the_cache():
    np.random.seed(123)
    images, labels = load_digit_images("heldout")
    images[:] = -1.0
    labels[:] = -1
    np.random.seed(7)
    again, again_labels = load_digit_images("heldout")
    assert again.min() == 0.0 and again_labels.min() == 0
    assert not digits_module._split("heldout")[0].flags.writeable


def test_upsampling_keeps_the_source_digit():
    """A 2x upsampling: each digit keeps its ink (4 pixels per source pixel) and its 2x2 blocks follow the source."""
    from sklearn.datasets import load_digits

    images, labels = digits_module._all_digits()
    source = load_digits()
    assert np.array_equal(labels, source.target)
    assert np.allclose(images.sum((1, 2)), 4 * source.images.sum((1, 2)) / 16, rtol=0.05)
    blocks = images.reshape(-1, 8, 2, 8, 2).mean((2, 4))  # (n, (8 2), (8 2)) -> (n, 8, 8)
    assert np.corrcoef(blocks.ravel(), source.images.ravel())[0, 1] > 0.95


def test_missing_scikit_learn_names_the_extra(monkeypatch):
    digits_module._all_digits.cache_clear()
    digits_module._split.cache_clear()
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    try:
        with pytest.raises(ImportError, match=r'--data digits needs scikit-learn: pip install "spacetime\[digits\]"'):
            load_digit_images("train")
    finally:
        digits_module._all_digits.cache_clear()
        digits_module._split.cache_clear()


@pytest.mark.parametrize("objects, speed, frames, size", [(1, 2, 8, 32), (2, 3, 5, 32), (2, 4, 3, 21), (1, 1, 1, 17)])
def test_items_are_seeded_per_index(objects, speed, frames, size):
    data = MovingDigits(100, frames, size, objects, speed, seed=4, split="heldout")
    video = data[37]
    assert video.shape == (1, frames, size, size) and video.dtype == torch.float32
    assert 0.0 <= video.min() and video.max() <= 1.0
    again = MovingDigits(100, frames, size, objects, speed, seed=4, split="heldout")
    assert torch.equal(video, again[37]) and np.array_equal(data.positions(37), again.positions(37))
    assert np.array_equal(data.labels(37), again.labels(37)) and data.labels(37).shape == (objects,)
    assert not torch.equal(data[37], data[38])
    assert not torch.equal(video, MovingDigits(100, frames, size, objects, speed, seed=5, split="heldout")[37])


def test_draws_tracks_then_digits_from_the_item_stream():
    data = MovingDigits(50, 8, 32, objects=2, max_speed=3, seed=9)
    rng = np.random.default_rng([9, 12])
    tracks = bounce_tracks(8, 32, DIGIT_SIZE, rng, 2, 3)
    picks = rng.integers(0, 1797 - HELD_OUT, size=2)
    images, labels = load_digit_images("train")
    assert np.array_equal(data.positions(12), tracks)
    assert np.array_equal(data.labels(12), labels[picks])
    assert np.array_equal(data[12][0].numpy(), render_digits(tracks, 32, images[picks]))


@pytest.mark.parametrize("speed", [1, 2, 4])
def test_positions_follow_the_bounce_law(speed):
    data = MovingDigits(40, 12, 32, objects=2, max_speed=speed, seed=1)
    limit = 32 - DIGIT_SIZE
    for i in range(40):
        positions, velocities = data.positions(i), data.velocities(i)
        assert positions.shape == (12, 2, 2) and positions.min() >= 0 and positions.max() <= limit
        assert set(velocities.ravel().tolist()) <= set(speeds(speed))
        for k in range(2):
            for axis in range(2):
                law = bounce_axis(positions[0, k, axis], velocities[k, axis], 12, limit)
                assert np.array_equal(positions[:, k, axis], law)


def test_frames_are_the_union_of_the_digits():
    data = MovingDigits(30, 6, 32, objects=2, max_speed=2, seed=3)
    images, labels = load_digit_images("train")
    for i in range(30):
        positions, video = data.positions(i), data[i][0].numpy()
        alone = [np.zeros_like(video) for _ in range(2)]
        for k in range(2):
            for t, (x, y) in enumerate(positions[:, k]):
                alone[k][t, y:y + DIGIT_SIZE, x:x + DIGIT_SIZE] = video[t, y:y + DIGIT_SIZE, x:x + DIGIT_SIZE]
        assert np.array_equal(np.maximum(alone[0], alone[1]), video)  # nothing off the two boxes
    one = MovingDigits(30, 6, 32, objects=1, seed=3)
    for i in range(10):
        (x, y), = one.positions(i)[0]
        crop = one[i][0, 0, y:y + DIGIT_SIZE, x:x + DIGIT_SIZE].numpy()
        assert any(np.array_equal(crop, image) for image in images[labels == one.labels(i)[0]])


def test_render_digits_takes_the_maximum_where_digits_overlap():
    a, b = np.full((16, 16), 0.25, np.float32), np.full((16, 16), 0.75, np.float32)
    frame = render_digits(np.array([[[0, 0], [8, 4]]]), 32, np.stack([b, a]))[0]
    assert frame[4:16, 8:16].min() == 0.75 and frame[16:20, 8:24].max() == 0.25 and frame[20:].max() == 0
    with pytest.raises(ValueError, match=r"positions must be \(T, 2, 2\)"):
        render_digits(np.zeros((3, 1, 2), dtype=int), 32, np.stack([a, b]))


def test_create_digit_dataset_stacks_the_items():
    videos, labels = create_digit_dataset(6, 4, 24, objects=2, max_speed=3, seed=2, split="heldout")
    data = MovingDigits(6, 4, 24, objects=2, max_speed=3, seed=2, split="heldout")
    assert videos.shape == (6, 1, 4, 24, 24) and labels.shape == (6, 2) and labels.dtype == np.int64
    assert all(torch.equal(videos[i], data[i]) and np.array_equal(labels[i], data.labels(i)) for i in range(6))


@pytest.mark.parametrize("kwargs, name", [
    ({"objects": 3}, "objects"), ({"objects": 0}, "objects"), ({"max_speed": 5}, "max_speed"),
    ({"max_speed": 0}, "max_speed"), ({"split": "test"}, "split"), ({"size": 16}, "size"), ({"size": 32.0}, "size"),
    ({"length": 0}, "length"), ({"num_frames": 0}, "num_frames"), ({"seed": -1}, "seed")])
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        MovingDigits(**kwargs)


def test_bad_split_and_index():
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'heldout'\).*got 'test'"):
        load_digit_images("test")
    with pytest.raises(IndexError, match="index must be an int in"):
        MovingDigits(5)[5]
    with pytest.raises(ValueError, match="num_videos must be a positive int"):
        create_digit_dataset(0)
