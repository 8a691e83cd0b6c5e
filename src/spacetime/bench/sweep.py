"""Run a benchmark sweep: every (shape, implementation, pattern, backend, mode), next to the cost model.

:func:`run_sweep` returns one row (a flat dict) per case and mode, :func:`write_csv` /
:func:`read_csv` persist them. A case whose predicted memory exceeds the budget, or whose
predicted time at the machine's matmul rate exceeds ``max_seconds``, is skipped with a message
and a row that says so; it is never started.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..io.files import atomic_write_csv
from ..measure import matmul_rate, memory_supported, time_call
from ..ops.attention import available_backends
from .cases import (
    DEFAULT_OPTIONS,
    IMPLS,
    PATTERN_NAMES,
    PEERS,
    Case,
    available_peers,
    make_patterns,
    measure_memory_in_child,
    mode_unsupported,
    peer_supports,
)
from .cost import VideoShape, layer_cost

__all__ = ["BenchConfig", "run_sweep", "write_csv", "read_csv", "config_dict", "CSV_FIELDS", "available_memory"]

MODES = ("fwd", "fwdbwd")

CSV_FIELDS = [
    "impl", "pattern", "backend", "mode", "b", "t", "h", "w", "dim", "heads", "tokens",
    "pairs_useful", "pairs_executed", "attn_gflop", "proj_gflop", "gflop",
    "pred_ms", "pred_mem_mb", "time_ms", "best_ms", "repeats", "gflops", "frac_matmul", "mem_mb",
    "matmul_gflops", "status",
]


def available_memory() -> int:
    """Bytes the kernel reports as available (``MemAvailable``), or 8 GiB where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


@dataclass
class BenchConfig:
    """What to measure. ``shapes`` are ``(t, h, w)``; ``impls`` are ``"layer"`` (spacetime's
    attention layer per backend) or ``"op"`` (the pattern alone per backend), plus peers."""

    shapes: Sequence[tuple[int, int, int]] = ((16, 32, 32),)
    patterns: Sequence[str] = ("factorized", "joint")
    backends: Sequence[str] | None = None  # None: every available backend
    impls: Sequence[str] = ("layer",)
    modes: Sequence[str] = MODES
    batch: int = 1
    dim: int = 128
    heads: int = 4
    options: dict = field(default_factory=dict)
    memory_budget: int | None = None  # bytes; None: half of MemAvailable
    max_seconds: float = 5.0
    warmup: int = 1
    repeats: int = 3
    min_seconds: float = 0.0
    measure_memory: bool = True
    matmul_n: int = 2048
    threads: int | None = None

    def __post_init__(self):
        self.shapes = [tuple(s) for s in self.shapes]
        for s in self.shapes:
            if len(s) != 3 or not all(isinstance(n, int) and n >= 1 for n in s):
                raise ValueError(f"shapes must be (t, h, w) triples of positive ints; got {s!r}")
        for name in self.patterns:
            if name not in PATTERN_NAMES:
                raise ValueError(f"patterns must be names from {PATTERN_NAMES}; got {name!r}")
        if self.backends is None:
            self.backends = list(available_backends())
        for name in self.backends:
            if name not in available_backends():
                raise ValueError(
                    f"backends must be names from available_backends() {available_backends()}; got {name!r}")
        for name in self.impls:
            if name not in IMPLS:
                raise ValueError(f"impls must be names from {IMPLS}; got {name!r}")
            if name in PEERS and name not in available_peers():
                raise ValueError(
                    f"peer {name!r} is not available here (is it installed?); available: {available_peers()}")
        for mode in self.modes:
            if mode not in MODES:
                raise ValueError(f"modes must be from {MODES}; got {mode!r}")
        self.options = {**DEFAULT_OPTIONS, **self.options}
        for name in PATTERN_NAMES:  # validate the options once, not mid-sweep
            make_patterns(name, self.options)
        VideoShape(self.batch, 1, 1, 1, self.dim, self.heads)
        if self.memory_budget is None:
            self.memory_budget = available_memory() // 2
        if self.memory_budget <= 0 or self.max_seconds <= 0:
            raise ValueError(f"memory_budget and max_seconds must be > 0; got {self.memory_budget}, {self.max_seconds}")

    def specs(self) -> list[dict]:
        """Every case of the sweep as a spec (see :mod:`spacetime.bench.cases`)."""
        out = []
        for t, h, w in self.shapes:
            for impl in self.impls:
                for pattern in self.patterns:
                    if impl in PEERS and not peer_supports(impl, pattern):
                        continue
                    backends = self.backends if impl in ("layer", "op") else [None]
                    for backend in backends:
                        out.append({
                            "impl": impl, "pattern": pattern, "backend": backend,
                            "shape": [self.batch, t, h, w, self.dim, self.heads],
                            "options": self.options, "modes": list(self.modes),
                        })
        return out


def _model_backend(spec: dict) -> str:
    """The backend whose memory model fits a case: peers that materialize scores use ``math``'s."""
    if spec["impl"] in ("layer", "op"):
        return spec["backend"]
    return "sdpa" if spec["impl"] in ("diffusers", "flex", "natten") else "math"


def _base_row(spec: dict, mode: str, rate: float) -> dict:
    b, t, h, w, dim, heads = spec["shape"]
    shape = VideoShape(b, t, h, w, dim, heads)
    cost = layer_cost(make_patterns(spec["pattern"], spec["options"]), shape, _model_backend(spec),
                      projections=spec["impl"] != "op")
    gflop = cost.flops(mode) / 1e9
    return {
        "impl": spec["impl"], "pattern": spec["pattern"], "backend": spec["backend"] or "-", "mode": mode,
        "b": b, "t": t, "h": h, "w": w, "dim": dim, "heads": heads, "tokens": shape.tokens,
        "pairs_useful": cost.pairs.useful * b, "pairs_executed": cost.pairs.executed * b,
        "attn_gflop": cost.attn_flops * (3 if mode == "fwdbwd" else 1) / 1e9,
        "proj_gflop": cost.proj_flops * (3 if mode == "fwdbwd" else 1) / 1e9,
        "gflop": gflop, "pred_ms": 1e3 * gflop / rate, "pred_mem_mb": cost.memory[mode] / 2**20,
        "time_ms": math.nan, "best_ms": math.nan, "repeats": 0, "gflops": math.nan, "frac_matmul": math.nan,
        "mem_mb": math.nan, "matmul_gflops": rate, "status": "ok",
    }


def _skip_reason(row: dict, cfg: BenchConfig) -> str | None:
    if why := mode_unsupported(row["impl"], row["mode"]):
        return why
    if row["pred_mem_mb"] * 2**20 > cfg.memory_budget:
        return f"skipped: predicted {row['pred_mem_mb'] / 1024:.2f} GiB > budget {cfg.memory_budget / 2**30:.2f} GiB"
    if row["pred_ms"] / 1e3 > cfg.max_seconds:
        return f"skipped: predicted {row['pred_ms'] / 1e3:.1f} s at the matmul rate > max {cfg.max_seconds:g} s"
    return None


def _label(spec: dict) -> str:
    t, h, w = spec["shape"][1:4]
    backend = f"/{spec['backend']}" if spec["backend"] else ""
    return f"{spec['impl']}:{spec['pattern']}{backend} {t}x{h}x{w}"


def run_sweep(cfg: BenchConfig, *, log: Callable[[str], None] | None = None,
              matmul_gflops: float | None = None) -> list[dict]:
    """Measure every case of ``cfg``; return one row per case and mode (see :data:`CSV_FIELDS`).

    ``matmul_gflops``: a matmul rate measured before (with the same threads), to skip measuring it again.
    """
    log = log or tqdm.write
    previous_threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        rate = matmul_gflops if matmul_gflops is not None else matmul_rate(cfg.matmul_n)
        if matmul_gflops is None:
            log(f"fp32 matmul rate ({cfg.matmul_n}x{cfg.matmul_n}, {torch.get_num_threads()} threads): "
                f"{rate:.1f} GFLOP/s")
        specs = cfg.specs()
        rows: list[dict] = []
        to_measure: list[tuple[dict, list[dict]]] = []
        for spec in tqdm(specs, desc="bench", unit="case", disable=None):
            case_rows = [_base_row(spec, mode, rate) for mode in cfg.modes]
            rows += case_rows
            reasons = [_skip_reason(r, cfg) for r in case_rows]
            if all(reasons):
                for r, why in zip(case_rows, reasons):
                    r["status"] = why
                log(f"{_label(spec)}: {reasons[0]}")
                continue
            try:
                case = Case(spec)
                for r, why in zip(case_rows, reasons):
                    if why:
                        r["status"] = why
                        log(f"{_label(spec)} {r['mode']}: {why}")
                        continue
                    timing = time_call(lambda: case.run(r["mode"]), warmup=cfg.warmup, repeats=cfg.repeats,
                                       min_seconds=cfg.min_seconds)
                    r.update(time_ms=1e3 * timing.median, best_ms=1e3 * timing.best, repeats=timing.repeats)
                    r["gflops"] = r["gflop"] / timing.median
                    r["frac_matmul"] = r["gflops"] / rate
                del case
            except Exception as exc:  # one broken case must not lose the sweep
                for r in case_rows:
                    if r["status"] == "ok":
                        r["status"] = f"error: {type(exc).__name__}: {exc}"
                log(f"{_label(spec)}: error: {exc}")
                continue
            measured = [r for r in case_rows if r["status"] == "ok"]
            if measured:
                to_measure.append(({**spec, "modes": [r["mode"] for r in measured]}, measured))
        if cfg.measure_memory:
            _fill_memory(to_measure, cfg, log)
        return rows
    finally:
        torch.set_num_threads(previous_threads)


def _fill_memory(to_measure: list[tuple[dict, list[dict]]], cfg: BenchConfig, log, per_child: int = 48) -> None:
    """Peak memory of the measured cases, in fresh child processes of at most ``per_child`` cases each."""
    if not to_measure:
        return
    if not memory_supported():
        log("peak memory: /proc not available here; memory columns left empty")
        return
    groups = [to_measure[i:i + per_child] for i in range(0, len(to_measure), per_child)]
    for group in tqdm(groups, desc="memory", unit="child", disable=None):
        results = measure_memory_in_child([spec for spec, _ in group], threads=cfg.threads)
        for (spec, case_rows), result in zip(group, results):
            if "error" in result:
                log(f"{_label(spec)}: memory not measured ({result['error']})")
            for r in case_rows:
                r["mem_mb"] = result.get(r["mode"], math.nan) / 2**20


def write_csv(rows: list[dict], path: str | Path) -> Path:
    """Write rows atomically (temp file in the same folder, fsync, rename)."""
    return atomic_write_csv(path, rows, CSV_FIELDS)


_INT_FIELDS = {"b", "t", "h", "w", "dim", "heads", "tokens", "pairs_useful", "pairs_executed", "repeats"}
_STR_FIELDS = {"impl", "pattern", "backend", "mode", "status"}


def read_csv(path: str | Path) -> list[dict]:
    """Rows of a CSV written by :func:`write_csv`, with numbers parsed back."""
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(CSV_FIELDS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path} is not a spacetime bench CSV: missing columns {sorted(missing)}")
        for raw in reader:
            row = {}
            for k, v in raw.items():
                if k in _STR_FIELDS:
                    row[k] = v
                elif k in _INT_FIELDS:
                    row[k] = int(v)
                else:
                    row[k] = float(v) if v != "" else math.nan
            rows.append(row)
    return rows


def config_dict(cfg: BenchConfig) -> dict:
    """The config as plain JSON-able data (saved beside every output)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
