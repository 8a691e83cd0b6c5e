"""A short tour of the attention patterns: who sees whom, and that the fast path is exact.

``spacetime patterns`` runs it.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .ops.patterns import CrossFrame, Joint, Pattern, Spatial, Temporal, Window

__all__ = ["TOUR_PATTERNS", "run_tour", "plot_masks"]

TOUR_PATTERNS: dict[str, Pattern] = {
    "spatial": Spatial(),
    "temporal": Temporal(),
    "causal temporal": Temporal(causal=True),
    "local temporal k=1": Temporal(window=1),
    "cross-frame k=1": CrossFrame(1),
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
    lines = [f"{'pattern':<32}{'keys/query':>11}{'|sdpa-math|':>13}{'math ms':>9}{'sdpa ms':>9}"]
    for r in rows:
        lines.append(
            f"{r['pattern']:<32}{r['keys_per_query']:>11.1f}{r['max_abs_diff']:>13.1e}"
            f"{r['math_ms']:>9.1f}{r['sdpa_ms']:>9.1f}"
        )
    return "\n".join(lines)


def _run(args) -> int:
    from pathlib import Path

    b, t, h, w = args.shape
    print(f"Attention patterns on q/k/v of (b, t, h, w) = {(b, t, h, w)}, heads={args.heads}, head_dim={args.head_dim}")
    rows = run_tour(Path(args.out), shape=(b, t, h, w), heads=args.heads, head_dim=args.head_dim, seed=args.seed)
    print(format_rows(rows))
    worst = max(r["max_abs_diff"] for r in rows)
    print(f"\nsdpa == math for every pattern (largest difference {worst:.1e}).")
    print(f"Who-sees-whom figure: {Path(args.out) / 'patterns.png'}")
    return 0 if worst < 1e-4 else 1


def register(subparsers) -> None:
    """``spacetime patterns``."""
    from .cli import add_command

    for name, help_text in (
        ("patterns", "tour the attention patterns: who sees whom, sdpa vs math, timings"),
    ):
        p = add_command(subparsers, name, help_text)
        p.add_argument("--out", default="runs/patterns", help="folder for the figure")
        p.add_argument("--shape", type=int, nargs=4, default=(2, 8, 16, 16), metavar=("B", "T", "H", "W"),
                       help="clip shape of the timing run")
        p.add_argument("--heads", type=int, default=4, help="attention heads")
        p.add_argument("--head-dim", type=int, default=32, help="channels per head")
        p.add_argument("--seed", type=int, default=0, help="random seed")
        p.set_defaults(func=_run)
