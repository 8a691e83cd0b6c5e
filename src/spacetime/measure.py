"""Measurement primitives: wall-clock timing (median of repeats after warm-up), the machine's fp32
matmul rate, and peak memory. ``spacetime bench``, ``spacetime demo`` and the scripts in
``benchmarks/`` measure with them, and every figure they report comes with the matmul rate.

Peak memory on CPU: torch keeps no CPU allocator statistics, so we measure the process's peak
resident set (``VmHWM`` in ``/proc/self/status``, Linux). The measurement runs in a fresh child
process started with ``MALLOC_MMAP_THRESHOLD_=65536``: glibc then serves every allocation of
64 KiB or more with its own ``mmap`` and unmaps it on free, so the resident set follows the live
tensors instead of the allocator's cached heap. Before each measured call the child writes ``5``
to ``/proc/self/clear_refs`` (which resets ``VmHWM`` to the current resident set); the peak
growth is ``VmHWM`` after the call minus ``VmRSS`` before it. Where ``/proc`` is missing the
memory columns are left empty (NaN), never guessed.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = [
    "Timing",
    "time_call",
    "matmul_rate",
    "memory_supported",
    "peak_memory_growth",
]

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


@dataclass(frozen=True)
class Timing:
    """Seconds per call: ``median`` over ``repeats`` timed calls (after ``warmup``), and ``best``."""

    median: float
    best: float
    repeats: int


def time_call(fn: Callable[[], object], *, warmup: int = 1, repeats: int = 5, min_seconds: float = 0.0,
              max_repeats: int = 100) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then at least ``repeats`` timed ones.

    With ``min_seconds`` > 0, repeats continue until their total reaches it (at most
    ``max_repeats``). CPU work is synchronous; on CUDA the device is synchronised per call.
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1; got {repeats!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0; got {warmup!r}")
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times: list[float] = []
    while len(times) < repeats or (sum(times) < min_seconds and len(times) < max_repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return Timing(statistics.median(times), min(times), len(times))


def matmul_rate(n: int = 2048, *, repeats: int = 5, device: str = "cpu") -> float:
    """The machine's achieved fp32 matmul rate in GFLOP/s: ``2 n^3`` FLOPs of ``torch.mm``, median time."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int; got {n!r}")
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device)
    b = torch.randn(n, n, generator=gen).to(device)
    out = torch.empty(n, n, device=device)
    timing = time_call(lambda: torch.mm(a, b, out=out), warmup=1, repeats=repeats)
    return 2 * n**3 / timing.median / 1e9


def _status_kib(field: str) -> int:
    with open(_STATUS) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in {_STATUS}")


def memory_supported() -> bool:
    """Whether this process can reset and read its peak resident set (Linux ``/proc``)."""
    try:
        _status_kib("VmHWM")
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
        return True
    except (OSError, RuntimeError):
        return False


def peak_memory_growth(fn: Callable[[], object]) -> float:
    """Bytes by which the peak resident set of this process grows while ``fn()`` runs.

    Resets the peak first (``clear_refs``). Meaningful in a process started as
    :func:`spacetime.bench.cases.measure_memory_in_child` starts one; returns NaN where ``/proc`` is unavailable.
    """
    if not memory_supported():
        return math.nan
    before = _status_kib("VmRSS")
    fn()
    return max(0, _status_kib("VmHWM") - before) * 1024.0
