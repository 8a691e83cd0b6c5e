"""Markdown tables of a benchmark sweep (measurements next to the model, peer ratios), and the
generated blocks they fill in a markdown file."""

from __future__ import annotations

import math
import re
from pathlib import Path

from ..io.files import atomic_write_text
from .cases import PEERS

__all__ = ["format_table", "peer_ratios", "format_peer_table", "format_factorized_summary", "replace_block",
           "check_block"]


def _block_pattern(name: str) -> re.Pattern:
    return re.compile(re.escape(f"<!-- {name}:begin -->") + r".*?" + re.escape(f"<!-- {name}:end -->"), re.DOTALL)


def check_block(path: str | Path, name: str) -> None:
    """Raise ``ValueError`` unless ``path`` holds exactly one ``<!-- name:begin -->`` ... ``<!-- name:end -->``."""
    if not Path(path).is_file():
        raise ValueError(f"results file {str(path)!r} does not exist; pass an existing markdown file with a "
                         f"<!-- {name}:begin --> ... <!-- {name}:end --> block")
    found = len(_block_pattern(name).findall(Path(path).read_text()))
    if found != 1:
        raise ValueError(f"{path} must contain exactly one <!-- {name}:begin --> ... <!-- {name}:end --> block "
                         f"to update; found {found}")


def replace_block(path: str | Path, name: str, text: str) -> Path:
    """Replace the ``name`` block of a markdown file with ``text`` (atomically); the prose around it stays."""
    check_block(path, name)
    old = Path(path).read_text()
    new = _block_pattern(name).sub(lambda _: f"<!-- {name}:begin -->\n{text.strip()}\n<!-- {name}:end -->", old)
    return atomic_write_text(path, new)


def _num(x: float, fmt: str) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def _shape(r: dict) -> str:
    return f"{r['b']}x{r['t']}x{r['h']}x{r['w']}"


def format_table(rows: list[dict], *, impls: tuple[str, ...] = ("layer", "op")) -> str:
    """One markdown row per measured (or skipped) case of ``impls``: time, rate, memory, model."""
    head = ("| B x T x H x W | impl | pattern | backend | mode | GFLOP | ms | GFLOP/s | % matmul "
            "| peak MB | model MB | status |")
    lines = [head, "|" + "|".join(["---"] * 12) + "|"]
    for r in rows:
        if r["impl"] not in impls:
            continue
        status = "ok" if r["status"] == "ok" else r["status"].split(":")[0]
        lines.append(
            f"| {_shape(r)} | {r['impl']} | {r['pattern']} | {r['backend']} | {r['mode']} | {_num(r['gflop'], '.3g')} "
            f"| {_num(r['time_ms'], '.2f')} | {_num(r['gflops'], '.1f')} | {_num(100 * r['frac_matmul'], '.0f')} "
            f"| {_num(r['mem_mb'], '.1f')} | {_num(r['pred_mem_mb'], '.1f')} | {status} |"
        )
    return "\n".join(lines)


def peer_ratios(rows: list[dict], *, backend: str | None = None) -> list[dict]:
    """For each shape, pattern and mode that a peer ran: the peer's time over spacetime's.

    Spacetime's time is its ``layer`` on ``backend``, or with ``backend=None`` on the fastest backend
    measured there (named in ``ours_backend``).
    """
    ours: dict[tuple, dict] = {}
    for r in rows:
        if r["impl"] != "layer" or r["status"] != "ok" or backend not in (None, r["backend"]):
            continue
        key = (_shape(r), r["pattern"], r["mode"])
        if key not in ours or r["time_ms"] < ours[key]["time_ms"]:
            ours[key] = r
    out = []
    for r in rows:
        if r["impl"] not in PEERS or r["status"] != "ok":
            continue
        mine = ours.get((_shape(r), r["pattern"], r["mode"]))
        if mine is None:
            continue
        out.append({"shape": _shape(r), "pattern": r["pattern"], "mode": r["mode"], "peer": r["impl"],
                    "ours_ms": mine["time_ms"], "ours_backend": mine["backend"], "peer_ms": r["time_ms"],
                    "ratio": r["time_ms"] / mine["time_ms"], "ours_mb": mine["mem_mb"], "peer_mb": r["mem_mb"]})
    return out


def format_peer_table(rows: list[dict], *, backend: str | None = None) -> str:
    """Markdown: per shape, pattern and mode, spacetime's time (on ``backend``, None: its fastest) and each
    peer's time and ratio (> 1: we are faster)."""
    ratios = peer_ratios(rows, backend=backend)
    if not ratios:
        return "(no peer measured on a shape spacetime also measured)"
    peers = [p for p in PEERS if any(x["peer"] == p for x in ratios)]
    head = "| B x T x H x W | pattern | mode | spacetime ms (backend) | " + " | ".join(
        f"{p} ms (ratio)" for p in peers) + " |"
    lines = [head, "|" + "|".join(["---"] * (4 + len(peers))) + "|"]
    keys = []
    for x in ratios:
        key = (x["shape"], x["pattern"], x["mode"])
        if key not in keys:
            keys.append(key)
    for key in keys:
        cells = {x["peer"]: x for x in ratios if (x["shape"], x["pattern"], x["mode"]) == key}
        first = next(iter(cells.values()))
        row = f"| {key[0]} | {key[1]} | {key[2]} | {first['ours_ms']:.2f} ({first['ours_backend']}) | " + " | ".join(
            f"{cells[p]['peer_ms']:.2f} ({cells[p]['ratio']:.2f}x)" if p in cells else "-" for p in peers) + " |"
        lines.append(row)
    return "\n".join(lines)


def format_factorized_summary(rows: list[dict], *, backend: str = "sdpa") -> str:
    """Markdown: factorized vs joint per shape and mode, measured speed-up next to the predicted ones."""
    picked = {(_shape(r), r["pattern"], r["mode"]): r for r in rows
              if r["impl"] == "layer" and r["backend"] == backend and r["status"] == "ok"}
    lines = ["| B x T x H x W | mode | factorized ms | joint ms | measured speed-up | predicted (with projections) "
             "| predicted (attention only) |", "|" + "|".join(["---"] * 7) + "|"]
    seen = []
    for shape, pattern, mode in picked:
        if pattern == "factorized" and (shape, "joint", mode) in picked and (shape, mode) not in seen:
            seen.append((shape, mode))
            f, j = picked[(shape, "factorized", mode)], picked[(shape, "joint", mode)]
            lines.append(f"| {shape} | {mode} | {f['time_ms']:.2f} | {j['time_ms']:.2f} | "
                         f"{j['time_ms'] / f['time_ms']:.2f}x | {j['gflop'] / f['gflop']:.2f}x | "
                         f"{j['attn_gflop'] / f['attn_gflop']:.2f}x |")
    return "\n".join(lines) if seen else "(factorized and joint were not both measured on any shape)"
