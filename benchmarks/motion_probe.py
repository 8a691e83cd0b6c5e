"""Where a next-frame motion-head checkpoint picks its first move, and how its sampler's temperature scores.

Three measurements of one checkpoint (a run folder or a ``.safetensors``), each written to a CSV
in ``--out`` (default ``benchmarks/motion/probe``) named after the checkpoint's run:

``levels``
    For 128 held-out videos whose frame-0 disk is away from the walls, frame 1 noised to each of a
    list of timesteps and denoised once (context: black, frame 0). Two inputs: the true frame 1,
    and a *paused* one (frame 0 moved only along x, as a failed sample looks). Per timestep: the
    fraction of x0 estimates that show the true move, and the fraction with a zero move along an
    axis. Where the first falls from 1 is where the model picks the move; where the paused input
    still comes back paused, the model keeps a pause it is given.
``first``
    Frame 1 sampled (DDPM, 50 steps) from the data's frame 0 at each ``--temperatures`` value:
    the fraction whose move is 1-2 px along both axes (a move the data makes), and the fraction
    that pause along an axis.
``videos``
    Whole videos as ``spacetime demo`` samples them (32 per sampling seed, DDPM 50 per frame), at
    each temperature and ``--seeds`` sampling seed, scored by ``spacetime eval``'s detector.

    python benchmarks/motion_probe.py runs/final-s1/train --only videos --temperatures 1,0.5 --seeds 1,2,3
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as the spacetime CLI does (docs/architecture.md)

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
TIMESTEPS = (999, 900, 800, 700, 600, 500, 400, 300, 200, 100)


def held_out(num: int, seed: int = 12345):
    """``num`` bouncing-disk videos (8x32x32, in [-1, 1]) whose frame-0 disk is 3+ px from every wall, and their
    per-frame disk positions."""
    from spacetime.data.bouncing import BouncingDisks

    data = BouncingDisks(num_frames=8, size=32, digit_size=12, seed=seed)
    keep = [i for i in range(4 * num) if all(2 < p < 17 for p in data.positions(i)[0])][:num]
    return torch.stack([data[i] for i in keep]) * 2 - 1, np.stack([data.positions(i) for i in keep])


def moves(frames: torch.Tensor, start: np.ndarray, detector) -> np.ndarray:
    """``(N, 2)`` disk displacement of ``(N, H, W)`` frames in [-1, 1] from ``start`` positions (nan: no disk)."""
    found = detector.locate_all(((frames + 1) / 2).clamp(0, 1).numpy())
    return np.array([p - q if p is not None else (np.nan, np.nan) for (p, _), q in zip(found, start)])


@torch.no_grad()
def levels(model, detector, num: int = 128) -> list[dict]:
    from spacetime.diffusion.schedules import make_scheduler

    videos, pos = held_out(num)
    n, f0 = len(videos), videos[:, :, 0]
    truth = pos[:, 1] - pos[:, 0]
    paused = torch.stack([torch.roll(f0[i], int(truth[i, 0]), -1) for i in range(n)])  # x moves, y stays
    sched = make_scheduler("ddpm", prediction_type="sample")
    known = torch.tensor([True, True, False]).expand(n, -1)
    rows = []
    for name, frame1 in (("true", videos[:, :, 1]), ("paused", paused)):
        for t in TIMESTEPS:
            noise = torch.randn(frame1.shape, generator=torch.Generator().manual_seed(1))
            tt = torch.full((n,), t)
            clip = torch.stack([torch.full_like(f0, -1), f0, sched.add_noise(frame1, noise, tt)], dim=2)
            m = moves(model(clip, tt, known=known)[:, 0, -1], pos[:, 0], detector)
            abar = float(sched.alphas_cumprod[t])
            rows.append({"input": name, "timestep": t, "snr": round(abar / (1 - abar), 4),
                         "true_move": float((np.abs(m - truth) <= 0.5).all(1).mean()),
                         "zero_axis": float((np.abs(m) <= 0.5).any(1).mean())})
    return rows


def first(model, detector, temperatures) -> list[dict]:
    from spacetime.diffusion.sample import sample_videos

    videos, pos = held_out(96, seed=4321)
    rows = []
    for temperature in temperatures:
        made = sample_videos(model, (1, 3, 32, 32), len(videos), sampler="ddpm", steps=50, prediction="sample",
                             context=2, given=(videos[:, :, :1] + 1) / 2, seed=0, motion_temperature=temperature,
                             progress=False)
        m = moves(made[:, 0, 1] * 2 - 1, pos[:, 0], detector)
        rows.append({"temperature": temperature,
                     "valid_first_move": float(((np.abs(m) >= 0.5) & (np.abs(m) <= 2.5)).all(1).mean()),
                     "pause": float((np.abs(m) < 0.5).any(1).mean())})
    return rows


def videos(model, temperatures, seeds) -> list[dict]:
    from spacetime.data.plausibility import score_videos
    from spacetime.diffusion.sample import sample_videos

    rows = []
    for temperature in temperatures:
        for seed in seeds:
            start = time.perf_counter()
            made = sample_videos(model, (1, 8, 32, 32), 32, sampler="ddpm", steps=50, prediction="sample",
                                 context=2, seed=seed, motion_temperature=temperature, progress=False)
            score = score_videos(made.numpy())
            rows.append({"temperature": temperature, "sample_seed": seed,
                         "plausible": score["plausible_fraction"], "one_disk_frames": score["one_disk_frame_fraction"],
                         "seconds": round(time.perf_counter() - start, 1)})
            print(rows[-1], flush=True)
    return rows


def main(argv=None) -> int:
    from spacetime.data.plausibility import DiskDetector
    from spacetime.diffusion.train import load_model
    from spacetime.io.checkpoint import latest_checkpoint

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a demo run's train folder or a .safetensors checkpoint")
    p.add_argument("--only", choices=["levels", "first", "videos"], action="append",
                   help="run only these measurements (repeatable; default: all three)")
    p.add_argument("--temperatures", default="1,0.5", help="comma-separated motion temperatures")
    p.add_argument("--seeds", default="1,2,3", help="comma-separated sampling seeds for 'videos'")
    p.add_argument("--motion-fill", default=None, metavar="FILL",
                   help="sample with this motion_fill instead of the checkpoint's: 'edge' (repeat the edge pixel) or "
                        "a number (-1: black)")
    p.add_argument("--name", default=None, help="CSV name prefix (default: the run folder's name)")
    p.add_argument("--out", type=Path, default=HERE / "motion" / "probe", help="folder for the CSVs")
    args = p.parse_args(argv)
    path, _ = latest_checkpoint(args.checkpoint)
    model, meta = load_model(path)
    tc = meta["train_config"]
    shape = (tc.get("frames"), tc.get("size"), tc.get("digit_size"))
    if not model.config.motion_head or tc.get("context_frames") != 2 or shape != (8, 32, 12):
        p.error(f"checkpoint must be a demo-shaped next-frame model (2 context frames, a motion head, 8 frames of "
                f"32x32 with 12 px disks); got {path}: motion_head={model.config.motion_head}, context_frames="
                f"{tc.get('context_frames')}, (frames, size, digit_size)={shape}")
    if args.motion_fill is not None:
        try:
            model.config.motion_fill = None if args.motion_fill == "edge" else float(args.motion_fill)
        except ValueError:
            p.error(f"--motion-fill must be 'edge' or a number; got {args.motion_fill!r}")
    name = args.name or (path.parent.parent.parent.name if path.parent.name == "checkpoints" else path.stem)
    temperatures = [float(v) for v in args.temperatures.split(",")]
    detector = DiskDetector(size=32)
    args.out.mkdir(parents=True, exist_ok=True)
    for what in args.only or ["levels", "first", "videos"]:
        rows = {"levels": lambda: levels(model, detector), "first": lambda: first(model, detector, temperatures),
                "videos": lambda: videos(model, temperatures, [int(s) for s in args.seeds.split(",")])}[what]()
        target = args.out / f"{name}-{what}.csv"
        with open(target, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["checkpoint", "step", *rows[0]])
            writer.writeheader()
            writer.writerows({"checkpoint": str(path), "step": meta.get("step"), **r} for r in rows)
        print(f"{what}: {target}")
        for r in rows:
            print("  " + "  ".join(f"{k}={v}" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
