"""How well a camera-conditioned model follows requested camera paths, forwards and reversed.

For each path (presets, and JSON paths whose velocity changes every frame, a kind of path the
random training paths never contain) it runs the user's commands::

    spacetime sample --checkpoint RUN --camera-path PATH [--reverse-camera] --num N --out ...
    spacetime eval SAMPLES

(samples go to ``--work``, ``runs/camera_following`` by default) and collects the eval's numbers: the mean error between the per-frame translation requested and
the one phase correlation measures in the generated videos (pixels per frame), and the measured
mean translation per step. Writes ``benchmarks/camera/following.csv``, ``following.md`` (a table)
and ``following.png`` (requested vs measured translation per step, forwards and reversed).

    python benchmarks/camera_following.py runs/camera/train --num 16
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as the spacetime CLI does (docs/architecture.md)

import argparse
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: (name, camera path, speed); JSON paths are written into the output folder
PATHS = [
    ("pan_right", "pan_right", 1.0),
    ("diagonal_down_left", "diagonal_down_left", 1.0),
    ("pan_up_reverse x1.5", "pan_up_reverse", 1.5),
    ("right_then_down x1.5", "right_then_down", 1.5),
    ("pan_right_stop x2", "pan_right_stop", 2.0),
    ("static", "static", 1.0),
    ("circle r=2.5 (json)", "circle.json", 1.0),
    ("accelerate (json)", "accelerate.json", 1.0),
]


def write_json_paths(folder: Path, frames: int) -> None:
    """Paths whose velocity changes at every frame: a circle and a steady acceleration."""
    import torch

    from spacetime.data.camera_pan import cameras_from_positions, save_camera_path

    t = torch.arange(frames, dtype=torch.float64)
    angle = 2 * math.pi * t / frames
    circle = 2.5 * torch.stack([torch.sin(angle), 1 - torch.cos(angle)], -1)
    accelerate = torch.stack([0.125 * t**2 + 0.25 * t, -0.5 * t], -1)
    for name, positions in (("circle", circle), ("accelerate", accelerate)):
        save_camera_path(folder / f"{name}.json", cameras_from_positions(positions.float()))


def run(checkpoint: str, out: Path, work: Path, num: int, steps: int, seed: int) -> list[dict]:
    from spacetime.cli import main
    from spacetime.diffusion.train import load_model

    _, meta = load_model(checkpoint)
    frames = meta["train_config"]["frames"]
    out.mkdir(parents=True, exist_ok=True)
    write_json_paths(out, frames)
    rows = []
    for name, spec, speed in PATHS:
        spec = str(out / spec) if spec.endswith(".json") else spec
        for reverse in (False, True):
            folder = work / f"{name.split()[0]}{'-reversed' if reverse else ''}"
            args = ["sample", "--checkpoint", checkpoint, "--camera-path", spec, "--camera-speed", str(speed),
                    "--num", str(num), "--steps", str(steps), "--seed", str(seed), "--out", str(folder), "--quiet"]
            if main(args + (["--reverse-camera"] if reverse else [])) != 0 or main(["eval", str(folder)]) != 0:
                raise SystemExit(f"sample/eval failed for {name}")
            report = json.loads((folder / "eval.json").read_text())
            rows.append({"path": name, "reversed": reverse, "videos": num,
                         "error_px_per_frame": round(report["mean_error_px_per_frame"], 3),
                         "requested": report["requested_mean_translation"],
                         "measured": report["estimated_mean_translation"]})
    return rows


def write(rows: list[dict], out: Path, checkpoint: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spacetime.io.files import atomic_write_csv, atomic_write_text, save_figure

    atomic_write_csv(out / "following.csv", [{**r, "requested": json.dumps(r["requested"]),
                                             "measured": json.dumps(r["measured"])} for r in rows],
                     ["path", "reversed", "videos", "error_px_per_frame", "requested", "measured"])
    mean = sum(r["error_px_per_frame"] for r in rows) / len(rows)
    lines = [f"Camera following of `{checkpoint}` (`python benchmarks/camera_following.py {checkpoint}`):",
             "mean over the videos and steps of |measured - requested| camera translation, pixels per frame.", "",
             "| path | forwards | reversed |", "|---|---|---|"]
    for name, *_ in PATHS:
        fwd, rev = (next(r for r in rows if r["path"] == name and r["reversed"] == flag) for flag in (False, True))
        lines.append(f"| {name} | {fwd['error_px_per_frame']:.3f} | {rev['error_px_per_frame']:.3f} |")
    lines.append(f"| **all** | | **{mean:.3f}** |")
    atomic_write_text(out / "following.md", "\n".join(lines) + "\n")
    fig, axes = plt.subplots(2, len(PATHS) // 2, figsize=(3.2 * len(PATHS) // 2, 6.4), squeeze=False)
    for ax, (name, *_) in zip(axes.flat, PATHS):
        for flag, colour in ((False, "C0"), (True, "C3")):
            r = next(r for r in rows if r["path"] == name and r["reversed"] == flag)
            label = "reversed" if flag else "forwards"
            for axis, style in ((0, "-"), (1, "--")):
                steps = range(len(r["requested"]))
                ax.plot(steps, [v[axis] for v in r["requested"]], style, color=colour, alpha=0.35, lw=3)
                ax.plot(steps, [v[axis] for v in r["measured"]], style, color=colour, marker="o", ms=3,
                        label=f"{label} d{'xy'[axis]}")
        ax.set_title(name, fontsize=9), ax.grid(alpha=0.3), ax.set_xlabel("step t -> t+1", fontsize=8)
    axes.flat[0].legend(fontsize=6)
    fig.suptitle("camera translation per frame: requested (thick, faint) vs measured by phase correlation (dots)")
    fig.tight_layout()
    save_figure(fig, out / "following.png")
    print("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a camera model's run folder or checkpoint")
    parser.add_argument("--num", type=int, default=16, help="videos per path and direction (default 16)")
    parser.add_argument("--steps", type=int, default=50, help="sampler steps (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--out", default=str(HERE / "camera"), help="folder of the table, CSV, plot and JSON paths")
    parser.add_argument("--work", default="runs/camera_following", help="folder of the samples (GIF, MP4, .npy)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    write(run(args.checkpoint, out, Path(args.work), args.num, args.steps, args.seed), out, args.checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
