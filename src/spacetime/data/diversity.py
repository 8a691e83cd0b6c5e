"""Diversity of generated bouncing-object videos against the law of their training data.

A model can buy plausibility with diversity: a sampler sharpened towards the likeliest motion makes
every video plausible and most of them alike. These statistics read what the detector fitted to
each video (:mod:`spacetime.data.plausibility`, or the digit judge) and compare their histograms
with the data's own law:

- ``first_move``: the first move ``(vx, vy)`` of every object, over the ``(2S)^2`` velocity cells
  of the data's top speed ``S`` (the data draws each axis uniformly from ``-S..-1, 1..S``);
- ``start``: the frame-0 top-left ``(x, y)`` of every object, over a ``4 x 4`` grid of the positions
  the data draws (uniform integers in ``[0, size - digit_size)``; the bins hold their exact share);
- ``count``: how many objects stand on their own in each video (``DiskDetector.count``), against
  the same count measured on the data's own videos (overlapping objects hide one another there too).

Each distance is the total-variation distance between the samples' histogram and the law. A
distance means little without its noise: ``n`` honest draws from the law are not at distance 0.
So beside each one stands the data's own value at the same number of draws, the median and the 99th
percentile of the distance over 2,000 sets of ``n`` draws from the law; a statistic is ``ok`` when
the samples' distance is at most that 99th percentile (a set the data itself would give once in a
hundred tries). Nothing here is tuned to a model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..checks import int_in, positive_int
from .bouncing import MAX_SPEED, speeds

__all__ = ["Statistic", "tv_distance", "null_distances", "velocity_cells", "start_law", "start_cells",
           "compare", "diversity_report", "format_diversity"]

START_BINS = 4  # bins per axis of the start-position grid
NULL_DRAWS = 2000  # sets of n draws from the law behind each reference value


@dataclass
class Statistic:
    """One histogram of the samples against the data's law, with the data's own values at the same count."""

    name: str
    draws: int  # n: objects (or videos, for count) in the histogram
    distance: float  # total variation between the samples' histogram and the law
    data_median: float  # median distance of n draws from the law itself
    data_p99: float  # its 99th percentile: the bound for ok
    cells: int  # cells the samples fill
    data_cells: float  # median cells that n draws from the law fill
    num_cells: int
    commonest: float  # share of the samples' commonest cell
    data_commonest: float  # the law's largest cell
    ok: bool


def tv_distance(counts, law) -> float:
    """Total variation between a histogram ``counts`` and a law ``law`` over the same cells: ``sum |p - q| / 2``."""
    counts, law = np.asarray(counts, dtype=np.float64), np.asarray(law, dtype=np.float64)
    if counts.shape != law.shape or counts.sum() <= 0:
        raise ValueError(f"counts must be a non-empty histogram over the law's {law.shape} cells; got {counts.shape} "
                         f"with total {counts.sum()}")
    return float(0.5 * np.abs(counts / counts.sum() - law / law.sum()).sum())


def null_distances(law, n: int, draws: int = NULL_DRAWS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distances and filled cells of ``draws`` sets of ``n`` draws from ``law`` itself: ``(distances, cells)``."""
    positive_int("n", n)
    law = np.asarray(law, dtype=np.float64) / np.sum(law)
    counts = np.random.default_rng(seed).multinomial(n, law, size=draws)  # (draws, cells)
    distances = 0.5 * np.abs(counts / n - law).sum(1)
    return distances, (counts > 0).sum(1)


def velocity_cells(velocities, max_speed: int) -> np.ndarray:
    """``(n, 2)`` integer moves ``(vx, vy)`` -> ``(n,)`` cell indices over the ``(2S)^2`` cells of top speed ``S``;
    a move outside the data's speeds (a pause, a jump) gets the extra cell ``(2S)^2``."""
    choices = np.array(speeds(max_speed))
    v = np.asarray(velocities, dtype=np.int64).reshape(-1, 2)
    index = np.searchsorted(choices, v).clip(0, len(choices) - 1)
    known = (choices[index] == v).all(1)
    cells = index[:, 1] * len(choices) + index[:, 0]  # row vy, column vx
    return np.where(known, cells, len(choices) ** 2)


def start_law(limit: int, bins: int = START_BINS) -> tuple[np.ndarray, np.ndarray]:
    """The data's start positions (uniform ints in ``[0, limit)`` per axis) on a ``bins x bins`` grid:
    ``(edges, law)`` with ``law`` the exact share of each of the ``bins**2`` cells."""
    positive_int("limit", limit)
    edges = np.linspace(0, limit, min(bins, limit) + 1)
    per_axis = np.histogram(np.arange(limit), edges)[0] / limit
    return edges, np.outer(per_axis, per_axis).reshape(-1)


def start_cells(starts, limit: int, bins: int = START_BINS) -> np.ndarray:
    """``(n, 2)`` top-left ``(x, y)`` -> ``(n,)`` cells of :func:`start_law`'s grid (positions are clipped to it)."""
    edges, _ = start_law(limit, bins)
    s = np.asarray(starts, dtype=np.float64).reshape(-1, 2).clip(0, limit - 1)
    ix = np.searchsorted(edges, s, side="right").clip(1, len(edges) - 1) - 1
    return ix[:, 1] * (len(edges) - 1) + ix[:, 0]


def compare(name: str, cells, law, seed: int = 0) -> Statistic:
    """:class:`Statistic` of the samples' ``cells`` (cell indices; the index ``len(law)`` is a cell the law gives
    no mass) against ``law``."""
    law = np.asarray(law, dtype=np.float64)
    cells = np.asarray(cells, dtype=np.int64)
    if cells.size == 0:
        raise ValueError(f"{name}: no samples to compare")
    counts = np.bincount(cells, minlength=len(law) + 1)[: len(law) + 1]
    support = np.append(law, 0.0)  # the extra cell: moves or counts the data never has
    distance = tv_distance(counts, support)
    null, filled = null_distances(law, len(cells), seed=seed)
    return Statistic(name=name, draws=int(len(cells)), distance=distance, data_median=float(np.median(null)),
                     data_p99=float(np.quantile(null, 0.99)), cells=int((counts[: len(law)] > 0).sum()),
                     data_cells=float(np.median(filled)), num_cells=len(law),
                     commonest=float(counts.max() / counts.sum()), data_commonest=float(law.max() / law.sum()),
                     ok=bool(distance <= np.quantile(null, 0.99)))


def diversity_report(verdicts: list[dict], *, size: int, digit_size: int, max_speed: int,
                     count_law=None) -> dict:
    """Diversity of a sample set from its per-video ``verdicts`` (each with ``starts`` and ``velocities``,
    lists of ``[x, y]`` per object, and optionally ``count``). ``count_law`` (the share of the data's videos with
    0, 1, 2, ... standing objects, :func:`~spacetime.data.plausibility.count_law`) adds the count statistic.
    Returns ``{"ok", "statistics": {name: Statistic as dict}}``."""
    int_in("max_speed", max_speed, 1, MAX_SPEED + 1)
    if not verdicts:
        raise ValueError("verdicts: no videos to measure")
    velocities = np.concatenate([np.asarray(v["velocities"], dtype=np.int64).reshape(-1, 2) for v in verdicts])
    starts = np.concatenate([np.asarray(v["starts"], dtype=np.int64).reshape(-1, 2) for v in verdicts])
    limit = size - digit_size
    num_moves = len(speeds(max_speed)) ** 2
    stats = [compare("first_move", velocity_cells(velocities, max_speed), np.full(num_moves, 1.0 / num_moves)),
             compare("start", start_cells(starts, limit), start_law(limit)[1])]
    if count_law is not None and all("count" in v for v in verdicts):
        law = np.asarray(count_law, dtype=np.float64)
        stats.append(compare("count", np.minimum([v["count"] for v in verdicts], len(law)), law))
    return {"ok": all(s.ok for s in stats), "statistics": {s.name: asdict(s) for s in stats}}


def format_diversity(report: dict) -> list[str]:
    """Lines for ``spacetime eval``: each statistic's distance beside the data's own value at the same count."""
    lines = ["diversity (total variation to the data's law; the data's own at the same count: median, 99th pct):"]
    for s in report["statistics"].values():
        lines.append(f"  {s['name']:<10} {s['distance']:.3f}  data {s['data_median']:.3f}, {s['data_p99']:.3f}  "
                     f"{'ok' if s['ok'] else 'NOT like the data'}  ({s['draws']} draws; cells {s['cells']}/"
                     f"{s['num_cells']}, data {s['data_cells']:.0f}; commonest {s['commonest']:.0%}, "
                     f"data {s['data_commonest']:.0%})")
    return lines
