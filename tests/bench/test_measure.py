"""Measurement primitives: timing, matmul rate, peak memory in a child process."""

import math

import pytest

from spacetime.bench.measure import matmul_rate, measure_memory_in_child, memory_supported, time_call

needs_proc = pytest.mark.skipif(not memory_supported(), reason="peak memory needs Linux /proc")


def test_time_call_counts_repeats_and_rejects_bad_counts():
    calls = []
    timing = time_call(lambda: calls.append(1), warmup=2, repeats=3)
    assert len(calls) == 5 and timing.repeats == 3 and 0 <= timing.best <= timing.median
    with pytest.raises(ValueError, match="repeats must be an int >= 1"):
        time_call(lambda: None, repeats=0)


def test_matmul_rate_is_positive():
    assert matmul_rate(64, repeats=2) > 0
    with pytest.raises(ValueError, match="n must be a positive int"):
        matmul_rate(0)


@needs_proc
def test_child_memory_tracks_the_score_matrix():
    # joint attention on the math backend holds scores and probabilities: 2 heads x 1024^2 fp32 each
    spec = {"impl": "op", "pattern": "joint", "backend": "math", "shape": [1, 4, 16, 16, 64, 2],
            "options": {}, "modes": ["fwd"]}
    small = dict(spec, shape=[1, 1, 16, 16, 64, 2])
    big, tiny = measure_memory_in_child([spec, small])
    score = 2 * 1024**2 * 4
    assert 1.5 * score < big["fwd"] < 4 * score
    assert tiny["fwd"] < big["fwd"] / 8  # 16x fewer pairs


@needs_proc
def test_child_reports_a_broken_case_without_losing_the_others():
    good = {"impl": "op", "pattern": "spatial", "backend": "sdpa", "shape": [1, 2, 4, 4, 8, 2], "modes": ["fwd"]}
    bad = dict(good, backend="nope")
    out = measure_memory_in_child([bad, good])
    assert "backend must be one of" in out[0]["error"]
    assert math.isfinite(out[1]["fwd"])
