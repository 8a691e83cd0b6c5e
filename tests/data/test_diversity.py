import numpy as np
import pytest

from spacetime.data.bouncing import create_dataset
from spacetime.data.diversity import (compare, diversity_report, null_distances, start_cells, start_law, tv_distance,
                                      velocity_cells)
from spacetime.data.plausibility import DiskDetector, count_law, score_videos


def test_tv_distance_and_its_noise():
    assert tv_distance([5, 5], [1, 1]) == 0.0
    assert tv_distance([10, 0], [1, 1]) == 0.5
    assert tv_distance([0, 3, 0], [1, 0, 0]) == 1.0
    with pytest.raises(ValueError, match="counts must be a non-empty histogram"):
        tv_distance([0, 0], [1, 1])
    # the numbers: 128 draws over 16 equal cells sit at 0.13 (median) and 0.20 (99th percentile)
    d, cells = null_distances(np.full(16, 1 / 16), 128)
    assert np.median(d) == pytest.approx(0.13, abs=0.01) and np.quantile(d, 0.99) == pytest.approx(0.20, abs=0.015)
    assert np.median(cells) == 16


def test_velocity_cells_cover_the_law_and_flag_other_moves():
    moves = np.array([[-2, -2], [2, -2], [-2, 2], [2, 2], [1, -1], [0, 1], [3, 1]])
    cells = velocity_cells(moves, 2)
    assert list(cells[:4]) == [0, 3, 12, 15] and cells[4] == 1 * 4 + 2
    assert list(cells[5:]) == [16, 16]  # a pause and a speed above the law's: the extra cell
    every = np.array([[x, y] for y in (-2, -1, 1, 2) for x in (-2, -1, 1, 2)])
    assert list(velocity_cells(every, 2)) == list(range(16))


def test_start_grid_holds_the_exact_shares():
    edges, law = start_law(20)
    assert law.shape == (16,) and law.sum() == pytest.approx(1.0) and np.allclose(law, 1 / 16)
    _, law = start_law(18)  # 18 positions in 4 bins: 5, 4, 5, 4
    assert law.sum() == pytest.approx(1.0) and not np.allclose(law, 1 / 16)
    starts = np.array([[x, y] for y in range(18) for x in range(18)])
    counts = np.bincount(start_cells(starts, 18), minlength=16)
    assert np.allclose(counts / counts.sum(), law)


@pytest.mark.parametrize("objects, max_speed", [(1, 2), (2, 3)])
def test_the_data_itself_is_diverse_and_a_collapsed_set_is_not(objects, max_speed):
    det = DiskDetector(objects=objects, max_speed=max_speed)
    law = count_law(det, 8, num_videos=128)
    data = create_dataset(128, 8, 32, rng=np.random.default_rng(9), objects=objects, max_speed=max_speed).numpy()
    report = diversity_report(score_videos(data, det)["verdicts"], size=32, digit_size=12, max_speed=max_speed,
                              count_law=law)
    assert report["ok"], report
    assert set(report["statistics"]) == {"first_move", "start", "count"}
    moves = report["statistics"]["first_move"]
    assert moves["draws"] == 128 * objects and moves["num_cells"] == (2 * max_speed) ** 2
    # mode collapse: a handful of videos repeated
    collapsed = np.concatenate([data[:4]] * 32)
    report = diversity_report(score_videos(collapsed, det)["verdicts"], size=32, digit_size=12, max_speed=max_speed,
                              count_law=law)
    assert not report["ok"]
    assert not report["statistics"]["first_move"]["ok"] and not report["statistics"]["start"]["ok"]


def test_a_sharpened_sampler_that_favours_some_moves_is_caught():
    rng = np.random.default_rng(0)
    law = np.full(16, 1 / 16)
    skewed = np.concatenate([rng.integers(0, 16, 96), np.full(32, 5)])  # a quarter of the draws on one move
    stat = compare("first_move", skewed, law)
    assert not stat.ok and stat.commonest > 0.25 and stat.distance > stat.data_p99
    fair = compare("first_move", rng.integers(0, 16, 128), law)
    assert fair.ok and fair.cells >= 14


def test_bad_input():
    with pytest.raises(ValueError, match="verdicts: no videos"):
        diversity_report([], size=32, digit_size=12, max_speed=2)
    with pytest.raises(ValueError, match=r"max_speed must be an int in \[1, 5\)"):
        diversity_report([{"starts": [[0, 0]], "velocities": [[1, 1]]}], size=32, digit_size=12, max_speed=9)
