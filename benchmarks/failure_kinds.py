"""What the implausible videos of one-disk sample sets do wrong: a pause along an axis, or a change of speed.

For each sample folder (``spacetime sample`` output holding ``samples.npy`` and the ``eval.json`` that
``spacetime eval`` wrote), every video the eval rejects is put in one class by the path of its disk's centre
(the centroid of the pixels above 0.5 in each frame; one disk only), per axis:

    paused     an axis whose centre moves less than 0.5 px in two or more steps (the data's disks move every
               step but at most one, where a disk that starts against a wall is clamped there)
    speed      otherwise, an axis whose steps round to two different nonzero speeds (the data keeps its speed;
               a clamp at a wall shortens one step to a smaller one, so some of these are a wrong bounce)
    other      anything else (a jump, a deformed disk)

    python benchmarks/failure_kinds.py runs/e1-s0/settings/t1 runs/g-s0/settings/t1

``--moves`` also prints, per folder, the first moves the eval fitted as a grid of counts: a row per vertical
speed ``vy``, a column per horizontal ``vx``, over the data's speeds (its law fills every cell alike).
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

KINDS = ("paused", "speed", "other")


def centres(video: np.ndarray) -> np.ndarray:
    """``(T, H, W)`` frames -> ``(T, 2)`` centroid ``(x, y)`` of the pixels above 0.5 (NaN where there are none)."""
    mask = (video > 0.5).astype(np.float64)
    ys, xs = np.mgrid[:video.shape[1], :video.shape[2]]
    area = mask.sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack([(mask * xs).sum((1, 2)) / area, (mask * ys).sum((1, 2)) / area], axis=1)


def kind(video: np.ndarray) -> str:
    """The class of one rejected ``(T, H, W)`` video (module docstring)."""
    steps = np.diff(centres(video), axis=0)
    if not np.isfinite(steps).all():
        return "other"
    if ((np.abs(steps) < 0.5).sum(0) >= 2).any():
        return "paused"
    speeds = np.rint(np.abs(steps)).astype(int)
    if any(len(set(speeds[:, a]) - {0}) > 1 for a in range(2)):
        return "speed"
    return "other"


def classify(folder: Path) -> dict:
    """Counts of plausible videos and of each failure kind in one sample folder."""
    report = json.loads((folder / "eval.json").read_text())
    if report.get("objects", 1) != 1 or report.get("data", "disks") != "disks":
        raise SystemExit(f"{folder}: failure kinds are defined for one disk; this set has data={report.get('data')!r}, "
                         f"objects={report.get('objects')}")
    videos = np.load(folder / "samples.npy")
    videos = videos[:, 0] if videos.ndim == 5 else videos
    counts = Counter({k: 0 for k in KINDS})
    for video, verdict in zip(videos, report["verdicts"]):
        counts["plausible" if verdict["plausible"] else kind(video)] += 1
    return {"samples": str(folder), "videos": len(videos), "plausible": counts["plausible"],
            **{k: counts[k] for k in KINDS}}


def move_grid(folder: Path) -> list[str]:
    """Markdown rows: the first moves ``(vx, vy)`` of every fitted object in one sample folder, counted per cell."""
    from spacetime.data.bouncing import speeds
    from spacetime.data.diversity import velocity_cells

    report = json.loads((folder / "eval.json").read_text())
    moves = [np.asarray(v["velocities"]).reshape(-1, 2) for v in report["verdicts"] if v.get("velocities")]
    top = int(report.get("max_speed", 2))
    choices = speeds(top)
    cells = velocity_cells(np.concatenate(moves) if moves else np.zeros((0, 2)), top)
    counts = np.bincount(cells, minlength=len(choices) ** 2 + 1)
    grid = counts[: len(choices) ** 2].reshape(len(choices), len(choices))
    fast = np.abs(np.asarray(choices)) == top
    shares = [grid[np.ix_(~fast, ~fast) if slow else np.ix_(fast, fast)].sum() / max(len(cells), 1) for slow in (1, 0)]
    title = (f"{folder}: first moves of {len(cells)} objects ({counts[-1]} outside the data's speeds); below the "
             f"top speed on both axes {shares[0]:.1%}, at it on both {shares[1]:.1%} (the data: "
             f"{(~fast).mean() ** 2:.1%}, {fast.mean() ** 2:.1%})")
    rows = [title, "", "| vy \\ vx | " + " | ".join(map(str, choices)) + " |", "|---" * (len(choices) + 1) + "|"]
    rows += [f"| {vy} | " + " | ".join(map(str, row)) + " |" for vy, row in zip(choices, grid)]
    return rows + [""]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", type=Path, help="sample folders holding samples.npy and eval.json")
    p.add_argument("--moves", action="store_true", help="also print each folder's first moves as a grid of counts")
    args = p.parse_args(argv)
    for folder in args.folders:
        if not (folder / "eval.json").is_file() or not (folder / "samples.npy").is_file():
            p.error(f"{folder}: needs samples.npy and eval.json (run spacetime eval on it first)")
    print("| samples | videos | plausible | paused | speed | other |\n|---|---|---|---|---|---|")
    for folder in args.folders:
        r = classify(folder)
        print(f"| {r['samples']} | {r['videos']} | {r['plausible']} | {r['paused']} | {r['speed']} | {r['other']} |")
    for folder in args.folders if args.moves else ():
        print("", *move_grid(folder), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
