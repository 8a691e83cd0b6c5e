"""PNG plots of a benchmark sweep (matplotlib, Agg).

* :func:`plot_factorized_vs_joint`: text 004's bar chart, factorized vs full 3D time per shape,
  with the measured (and predicted) speed-up written on each pair of bars.
* :func:`plot_time_vs_tokens`: log-log time against tokens, one line per pattern and backend.
* :func:`plot_speedup`: measured against predicted speed-up of each pattern over joint attention.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from ..io.files import atomic_write_bytes

__all__ = ["plot_factorized_vs_joint", "plot_time_vs_tokens", "plot_speedup", "plot_all", "PLOT_FILES"]

#: the file each plot is written to inside the output folder
PLOT_FILES = {
    "bars": "bench_factorized_vs_joint.png",
    "scaling": "bench_time_vs_tokens.png",
    "speedup": "bench_speedup.png",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Save atomically (temp file in the same folder, then rename)."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, format="png")
    path = atomic_write_bytes(path, buf.getvalue())
    _pyplot().close(fig)
    return path


def _ok(row: dict) -> bool:
    return row["status"] == "ok" and math.isfinite(row["time_ms"])


def _shape_key(row: dict) -> tuple:
    return row["b"], row["t"], row["h"], row["w"], row["dim"], row["heads"]


def _shape_label(key: tuple) -> str:
    b, t, h, w = key[:4]
    return f"{t}x{h}x{w}" + (f" (B={b})" if b != 1 else "")


def _pick(rows: list[dict], impl: str, mode: str) -> dict[tuple, dict]:
    """``(shape, pattern, backend) -> row`` for the measured rows of one impl and mode."""
    return {(_shape_key(r), r["pattern"], r["backend"]): r
            for r in rows if r["impl"] == impl and r["mode"] == mode and _ok(r)}


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_factorized_vs_joint(rows: list[dict], path: Path, *, backend: str = "sdpa", mode: str = "fwd",
                             impl: str = "layer") -> Path:
    """Bars of factorized and full 3D (joint) time per shape, speed-up written above each pair."""
    plt = _pyplot()
    picked = _pick(rows, impl, mode)
    shapes = sorted({k[0] for k in picked if k[2] == backend},
                    key=lambda s: (s[1] * s[2] * s[3], s))
    pairs = [(s, picked.get((s, "factorized", backend)), picked.get((s, "joint", backend))) for s in shapes]
    pairs = [p for p in pairs if p[1] is not None and p[2] is not None]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(pairs) + 3), 4.8))
    if not pairs:
        _empty(ax, f"no shape with both factorized and joint measured ({impl}, {backend}, {mode})")
        return _save(fig, path)
    x = list(range(len(pairs)))
    fact = [p[1]["time_ms"] for p in pairs]
    joint = [p[2]["time_ms"] for p in pairs]
    ax.bar([i - 0.2 for i in x], fact, 0.4, label="factorized (spatial + temporal)", color="#4c72b0")
    ax.bar([i + 0.2 for i in x], joint, 0.4, label="full 3D (joint)", color="#dd8452")
    for i, (_, f, j) in enumerate(pairs):
        measured = j["time_ms"] / f["time_ms"]
        predicted = j["gflop"] / f["gflop"]
        verdict = f"{measured:.1f}x faster" if measured >= 1 else f"{1 / measured:.1f}x slower"
        ax.annotate(f"{verdict}\n(FLOPs {predicted:.1f}x)", xy=(i, max(f["time_ms"], j["time_ms"])),
                    xytext=(0, 4), textcoords="offset points", ha="center", va="bottom", fontsize=8,
                    color="green", fontweight="bold")
    ax.set_yscale("log")
    ax.set_xticks(x)
    ax.set_xticklabels([_shape_label(p[0]) for p in pairs], rotation=15)
    ax.set_xlabel("clip (T x H x W)")
    ax.set_ylabel(f"time per {'forward' if mode == 'fwd' else 'forward+backward'} (ms, log)")
    dim, heads = pairs[0][0][4], pairs[0][0][5]
    ax.set_title(f"Factorized vs full 3D attention layer ({backend}, C={dim}, {heads} heads)")
    ax.margins(y=0.25)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_time_vs_tokens(rows: list[dict], path: Path, *, impl: str = "layer") -> Path:
    """Log-log time against tokens per clip, one line per (pattern, backend); one panel per mode."""
    plt = _pyplot()
    modes = [m for m in ("fwd", "fwdbwd") if any(r["mode"] == m and r["impl"] == impl and _ok(r) for r in rows)]
    fig, axes = plt.subplots(1, max(1, len(modes)), figsize=(6.2 * max(1, len(modes)), 4.8), squeeze=False)
    if not modes:
        _empty(axes[0, 0], f"no measured rows for impl {impl!r}")
        return _save(fig, path)
    styles = ["-", "--", ":", "-."]
    for ax, mode in zip(axes[0], modes):
        series: dict[tuple, list[tuple[int, float]]] = {}
        for r in rows:
            if r["impl"] == impl and r["mode"] == mode and _ok(r):
                series.setdefault((r["pattern"], r["backend"]), []).append((r["tokens"], r["time_ms"]))
        backends = sorted({k[1] for k in series})
        patterns = sorted({k[0] for k in series})
        cmap = plt.get_cmap("tab10")
        for (pattern, backend), pts in sorted(series.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3,
                    linestyle=styles[backends.index(backend) % len(styles)],
                    color=cmap(patterns.index(pattern) % 10), label=f"{pattern} / {backend}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tokens per batch (B*T*H*W)")
        ax.set_ylabel("time (ms)")
        ax.set_title(f"{'forward' if mode == 'fwd' else 'forward+backward'}: time vs tokens ({impl})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _save(fig, path)


def plot_speedup(rows: list[dict], path: Path, *, mode: str = "fwd", impl: str = "layer") -> Path:
    """Measured vs predicted (FLOP-ratio) speed-up of every pattern over joint attention, same shape and backend."""
    plt = _pyplot()
    picked = _pick(rows, impl, mode)
    points: dict[tuple, list[tuple[float, float]]] = {}
    for (shape, pattern, backend), r in picked.items():
        joint = picked.get((shape, "joint", backend))
        if pattern == "joint" or joint is None:
            continue
        points.setdefault((pattern, backend), []).append((joint["gflop"] / r["gflop"], joint["time_ms"] / r["time_ms"]))
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    if not points:
        _empty(ax, "no shape with joint and another pattern measured")
        return _save(fig, path)
    cmap = plt.get_cmap("tab10")
    patterns = sorted({k[0] for k in points})
    markers = ["o", "s", "^", "D"]
    backends = sorted({k[1] for k in points})
    for (pattern, backend), pts in sorted(points.items()):
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=22, color=cmap(patterns.index(pattern) % 10),
                   marker=markers[backends.index(backend) % len(markers)], label=f"{pattern} / {backend}")
    values = [v for pts in points.values() for p in pts for v in p]
    lo, hi = min(values) / 1.5, max(values) * 1.5
    ax.plot([lo, hi], [lo, hi], color="gray", linestyle="--", linewidth=1, label="measured = predicted")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("predicted speed-up over joint (FLOP ratio, with projections)")
    ax.set_ylabel("measured speed-up over joint (time ratio)")
    ax.set_title(f"Speed-up over joint attention ({impl}, {'forward' if mode == 'fwd' else 'forward+backward'})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_all(rows: list[dict], out_dir: Path, *, backend: str = "sdpa", impl: str = "layer") -> dict[str, Path]:
    """Draw the three plots into ``out_dir``; returns ``{name: path}`` (names as in :data:`PLOT_FILES`)."""
    out_dir = Path(out_dir)
    return {
        "bars": plot_factorized_vs_joint(rows, out_dir / PLOT_FILES["bars"], backend=backend, impl=impl),
        "scaling": plot_time_vs_tokens(rows, out_dir / PLOT_FILES["scaling"], impl=impl),
        "speedup": plot_speedup(rows, out_dir / PLOT_FILES["speedup"], impl=impl),
    }
