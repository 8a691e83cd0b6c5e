"""Measurement primitives: timing and the matmul rate."""

import pytest

from spacetime.measure import matmul_rate, time_call


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
