import numpy as np
import pytest
import torch

from spacetime.data.digits import DIGIT_SIZE, MovingDigits, create_digit_dataset, load_digit_images, render_digits
from spacetime.diffusion import digit_judge
from spacetime.diffusion.digit_judge import (VERSION, DigitJudge, VideoFeatures, fit_digit_tracks, frechet_distance,
                                             judge_digit_video, train_digit_classifier, train_video_features)

#: the fixture trains the classifier with its real step count (identity needs it) and the feature network briefly
FEATURE_STEPS = 60


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("digit_judge")


@pytest.fixture(scope="module")
def judge(cache):
    """One judge per test session: trained here, cached in a temporary folder."""
    return DigitJudge.load_or_train(cache, seed=0, progress=False, feature_steps=FEATURE_STEPS)


# --- Frechet distance ----------------------------------------------------------------------------------


def test_frechet_of_a_set_with_itself_is_zero_and_symmetric():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(300, 6)) * 2 + 1
    assert frechet_distance(a, a) < 1e-8
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-8)


def test_frechet_grows_with_a_mean_shift_as_its_square():
    a = np.random.default_rng(1).normal(size=(500, 5))
    shifts = [0.5, 1.0, 2.0]
    values = [frechet_distance(a, a + s) for s in shifts]
    assert values == pytest.approx([5 * s ** 2 for s in shifts], rel=1e-6)  # equal covariances: |mu_a - mu_b|^2


def test_frechet_matches_the_closed_form_in_one_dimension():
    rng = np.random.default_rng(2)
    a, b = rng.normal(1.0, 2.0, size=(1000, 1)), rng.normal(-1.0, 0.5, size=(800, 1))
    expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_frechet_with_fewer_rows_than_features_stays_finite():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(10, 64)), rng.normal(size=(12, 64)) + 0.5
    assert frechet_distance(a, a) < 1e-6
    assert 0 < frechet_distance(a, b) < np.inf


def test_frechet_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"^a must be an \(N, F\) array.*got shape \(1, 3\)"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="same number of features; got 3 and 4"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))


# --- tracks -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("objects, speed", [(1, 2), (1, 3), (2, 2), (2, 3)])
def test_tracks_of_the_data_follow_its_law(objects, speed):
    data = MovingDigits(20, 8, 32, objects, speed, seed=21, split="heldout")
    right = 0
    for i in range(20):
        video = data[i][0].numpy()
        tracks = fit_digit_tracks(video, objects, speed)
        fitted = sorted(tuple(track.velocity) for track in tracks)
        right += fitted == sorted(map(tuple, data.velocities(i).tolist()))
        positions = np.stack([track.positions for track in tracks], 1)
        placed = render_digits(positions, 32, np.stack([track.template for track in tracks]))
        assert np.abs(placed - video).sum() < 0.05 * video.sum()  # the templates on their paths are the video
    assert right >= 19


def test_track_arguments_are_checked():
    with pytest.raises(ValueError, match=r"^video must be \(T, S, S\) frames with T >= 2"):
        fit_digit_tracks(np.zeros((1, 32, 32)), 1)
    with pytest.raises(ValueError, match=r"^objects must be an int in \[1, 3\)"):
        fit_digit_tracks(np.zeros((4, 32, 32)), 3)
    with pytest.raises(ValueError, match=r"^max_speed must be an int in \[1, 5\)"):
        fit_digit_tracks(np.zeros((4, 32, 32)), 1, max_speed=5)


# --- training -----------------------------------------------------------------------------------------------


def test_training_is_deterministic_under_the_seed_and_leaves_the_global_rng():
    state = torch.random.get_rng_state()
    a, b = train_digit_classifier(seed=3, steps=2), train_digit_classifier(seed=3, steps=2)
    c = train_digit_classifier(seed=4, steps=2)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.net[0].weight, c.net[0].weight)
    f, g = (train_video_features(seed=3, steps=2, batch_size=4) for _ in range(2))
    assert all(torch.equal(x, y) for x, y in zip(f.state_dict().values(), g.state_dict().values()))
    assert torch.equal(torch.random.get_rng_state(), state)


@pytest.mark.parametrize("frames", [2, 5, 8])
def test_video_features_take_any_clip_length(frames):
    net = VideoFeatures()
    videos = torch.rand(3, 1, frames, 32, 32)
    feats = net.features(videos)
    assert feats.shape == (3, 64) and feats.dtype == np.float64
    assert np.allclose(feats, net.features(videos[:, 0]))  # (N, T, S, S) too


# --- the judge ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_judge_is_cached_and_loaded(judge, cache, monkeypatch):
    trained = judge
    files = sorted(p.name for p in cache.iterdir())
    assert files == [f"{VERSION}-seed0-steps{digit_judge.CLASSIFIER_STEPS}-{FEATURE_STEPS}.safetensors"]
    monkeypatch.setattr(DigitJudge, "train", classmethod(lambda *a, **k: pytest.fail("trained again")))
    loaded = DigitJudge.load_or_train(cache, seed=0, feature_steps=FEATURE_STEPS)
    for a, b in ((trained.classifier, loaded.classifier), (trained.features, loaded.features)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert loaded.accuracy == trained.accuracy
    assert trained.accuracy["heldout_images"] >= 0.95 and trained.accuracy["heldout_frames"] >= 0.9


@pytest.mark.slow
def test_a_damaged_cache_file_is_replaced(judge, tmp_path, monkeypatch):
    trained = judge
    path = tmp_path / f"{VERSION}-seed5.safetensors"
    path.write_bytes(b"not a safetensors file")
    monkeypatch.setattr(DigitJudge, "train", classmethod(lambda *a, **k: trained))
    DigitJudge.load_or_train(tmp_path, seed=5)
    monkeypatch.setattr(DigitJudge, "train", classmethod(lambda *a, **k: pytest.fail("trained again")))
    loaded = DigitJudge.load_or_train(tmp_path, seed=5)
    assert torch.equal(loaded.classifier.net[0].weight, trained.classifier.net[0].weight)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


@pytest.mark.slow
@pytest.mark.parametrize("split", ["train", "heldout"])
def test_the_judge_accepts_the_data(judge, split):
    for objects in (1, 2):
        for speed in (2, 3):
            videos, _ = create_digit_dataset(40, 8, 32, objects=objects, max_speed=speed, seed=31, split=split)
            report = judge.score(videos, objects, speed)
            assert report["plausible_fraction"] >= 0.95, (objects, speed, [
                v["reason"] for v in report["verdicts"] if not v["plausible"]])


def _verdicts(judge: DigitJudge, videos, objects: int) -> list[dict]:
    return [judge_digit_video(v, objects, judge.classifier) for v in np.asarray(videos)]


@pytest.mark.slow
@pytest.mark.parametrize("objects", [1, 2])
def test_the_judge_rejects_shuffled_frozen_and_noise(judge, objects):
    videos, _ = create_digit_dataset(12, 8, 32, objects=objects, seed=41, split="heldout")
    videos = videos[:, 0].numpy()
    corrupt = {"shuffled": videos[:, [3, 0, 6, 1, 7, 2, 5, 4]], "frozen": np.repeat(videos[:, :1], 8, axis=1),
               "noise": np.random.default_rng(0).random(videos.shape, dtype=np.float32)}
    for name, bad in corrupt.items():
        verdicts = _verdicts(judge, bad, objects)
        assert not any(v["plausible"] for v in verdicts), name
        assert not any(v["motion_plausible"] for v in verdicts), name


@pytest.mark.slow
def test_the_judge_rejects_a_digit_that_changes_identity(judge):
    images, labels = load_digit_images("heldout")
    data = MovingDigits(16, 8, 32, objects=1, seed=51, split="heldout")
    rng = np.random.default_rng(0)
    spliced = []
    for i in range(16):
        first = int(rng.integers(len(images)))
        second = int(rng.choice(np.flatnonzero(labels != labels[first])))
        positions = data.positions(i)
        a, b = (render_digits(positions, 32, images[[k]]) for k in (first, second))
        spliced.append(np.concatenate([a[:4], b[4:]]))  # the same path, another digit from frame 4
    verdicts = _verdicts(judge, spliced, 1)
    assert not any(v["plausible"] for v in verdicts)
    assert sum(not v["keeps_identity"] for v in verdicts) >= 14


@pytest.mark.slow
def test_the_judge_reports_fractions_and_frechet(judge):
    reference, _ = create_digit_dataset(96, 8, 32, objects=1, seed=61)
    videos, _ = create_digit_dataset(48, 8, 32, objects=1, seed=62, split="heldout")
    report = judge.score(videos, 1, reference=reference)
    assert set(report) >= {"plausible_fraction", "identity_fraction", "motion_fraction", "verdicts", "num_videos",
                           "classifier_accuracy", "frechet", "frechet_data"}
    assert report["num_videos"] == 48 and report["plausible_fraction"] == 1.0
    assert set(report["classifier_accuracy"]) == {"heldout_images", "heldout_frames"}
    verdict = report["verdicts"][0]
    assert len(verdict["starts"]) == len(verdict["velocities"]) == 1 and len(verdict["classes"][0]) == 8
    noise = judge.score(torch.rand(48, 1, 8, 32, 32), 1, reference=reference)
    assert noise["plausible_fraction"] == 0.0
    assert noise["frechet"] > 10 * report["frechet_data"] and noise["frechet_data"] == report["frechet_data"]


@pytest.mark.slow
def test_score_checks_its_arguments(judge):
    with pytest.raises(ValueError, match=r"^objects must be an int in \[1, 3\)"):
        judge.score(torch.zeros(2, 1, 4, 32, 32), 3)
    with pytest.raises(ValueError, match=r"^videos must be \(N, 1, T, S, S\) or \(N, T, S, S\)"):
        judge.score(torch.zeros(4, 32, 32), 1)
    with pytest.raises(ValueError, match=r"^max_speed must be"):
        judge.score(torch.zeros(2, 1, 4, 32, 32), 1, max_speed=0)
    with pytest.raises(ValueError, match=r"^video must be \(T, S, S\) frames with T >= 2 and S > 16"):
        judge.score(torch.zeros(2, 1, 4, DIGIT_SIZE, DIGIT_SIZE), 1)
