"""Cost model and measurements of video attention (``spacetime bench``, ``benchmarks/attention.py``).

* :mod:`~spacetime.bench.cost`: pairs, FLOPs and peak memory per pattern and shape (pure functions).
* :mod:`~spacetime.bench.cases`: runnable cases (spacetime layers and ops, the texts' peers).
* :mod:`~spacetime.bench.sweep`: the sweep, its CSV; :mod:`~spacetime.bench.plots`,
  :mod:`~spacetime.bench.report`: PNG plots and markdown tables.
"""

from ..measure import Timing, matmul_rate, peak_memory_growth, time_call
from .cost import Cost, Pairs, VideoShape, attention_flops, attention_memory, attention_pairs, layer_cost, speedup
from .sweep import BenchConfig, read_csv, run_sweep, write_csv

__all__ = [
    "VideoShape", "Pairs", "Cost", "attention_pairs", "attention_flops", "attention_memory", "layer_cost", "speedup",
    "Timing", "time_call", "matmul_rate", "peak_memory_growth",
    "BenchConfig", "run_sweep", "write_csv", "read_csv",
]
