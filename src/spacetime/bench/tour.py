"""A tour of the attention patterns (``spacetime patterns``): who sees whom, and that the fast path is exact.

:func:`run_tour` runs every pattern of :data:`TOUR_PATTERNS` on random q/k/v on the ``math`` and
``sdpa`` backends (their largest difference and time) and draws :func:`plot_masks`.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..ops.patterns import CrossFrame, Joint, Pattern, Spatial, Temporal, Window

__all__ = ["TOUR_PATTERNS", "run_tour", "plot_masks", "format_rows"]

TOUR_PATTERNS: dict[str, Pattern] = {
    "spatial": Spatial(),
    "temporal": Temporal(),
    "causal temporal": Temporal(causal=True),
    "local temporal k=1": Temporal(window=1),
    "cross-frame 1 each side": CrossFrame(1),
    "window (2,4,4)": Window((2, 4, 4)),
    "shifted window (2,4,4)/(1,2,2)": Window((2, 4, 4), shift=(1, 2, 2)),
    "joint": Joint(),
}


def plot_masks(path: Path, patterns: dict[str, Pattern], t: int = 5, h: int = 7, w: int = 7,
               query: tuple[int, int, int] = (2, 3, 3)) -> Path:
    """Draw, for one query token, the keys each pattern lets it see (rows: patterns, columns: frames)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    qi = (query[0] * h + query[1]) * w + query[2]
    fig, axes = plt.subplots(len(patterns), t, figsize=(1.3 * t + 1.8, 1.3 * len(patterns)), squeeze=False)
    for row, (label, pattern) in enumerate(patterns.items()):
        seen = pattern.dense_mask(t, h, w)[qi].reshape(t, h, w).float()
        for f in range(t):
            ax = axes[row, f]
            img = seen[f].clone()
            if f == query[0]:
                img[query[1], query[2]] = 2.0  # the query itself
            ax.imshow(img.numpy(), cmap="Blues", vmin=0, vmax=2)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"frame {f}", fontsize=9)
        axes[row, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(f"Keys seen by the query at frame {query[0]}, pixel {query[1:]} ({t}x{h}x{w} clip)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_tour(out_dir: Path, shape=(2, 8, 16, 16), heads: int = 4, head_dim: int = 32, seed: int = 0) -> list[dict]:
    """Run every tour pattern on random q/k/v on both backends; return one row per pattern."""
    b, t, h, w = shape
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, t, h, w, heads, head_dim, generator=gen) for _ in range(3))
    rows = []
    for label, pattern in TOUR_PATTERNS.items():
        timings = {}
        outs = {}
        for backend in ("math", "sdpa"):
            pattern(q, k, v, backend=backend)  # warm-up
            start = time.perf_counter()
            outs[backend] = pattern(q, k, v, backend=backend)
            timings[backend] = time.perf_counter() - start
        mask = pattern.dense_mask(t, h, w)
        rows.append({
            "pattern": label,
            "keys_per_query": mask.sum(1).float().mean().item(),
            "max_abs_diff": (outs["sdpa"] - outs["math"]).abs().max().item(),
            "math_ms": 1e3 * timings["math"],
            "sdpa_ms": 1e3 * timings["sdpa"],
        })
    plot_masks(out_dir / "patterns.png", TOUR_PATTERNS)
    return rows


def format_rows(rows: list[dict]) -> str:
    """:func:`run_tour`'s rows as a text table."""
    lines = [f"{'pattern':<32}{'keys/query':>11}{'|sdpa-math|':>13}{'math ms':>9}{'sdpa ms':>9}"]
    for r in rows:
        lines.append(
            f"{r['pattern']:<32}{r['keys_per_query']:>11.1f}{r['max_abs_diff']:>13.1e}"
            f"{r['math_ms']:>9.1f}{r['sdpa_ms']:>9.1f}"
        )
    return "\n".join(lines)
