"""Text 004's U-Net training step: the text's own code against spacetime's ``FactorizedVideoUNet``.

Workers: ``text`` is the text's network as the tests keep it (``tests/compat/unet_reference.py``:
per-frame 2-D convs, explicit softmax attention); ``default`` is ``spacetime.compat.FactorizedVideoUNet``
on spacetime's default dispatch (``backend=None``); any backend name (``math``, ``sdpa``, ``short``,
``fused``) runs spacetime's network with that backend forced. Both networks hold the same weights
(spacetime's seed-0 initialisation, loaded into the text's with ``strict=True``), so their losses agree.

Each worker runs in a fresh subprocess (so peak RSS is its own), and ``--rounds`` repeats the list of
workers in turn (text, default, text, default, ...) so that a machine whose speed drifts is seen by
both: the text's step (cosine schedule with 500 steps, random timesteps, epsilon MSE, Adam 2e-4) on
``create_dataset`` videos, a warm-up step, then ``--steps`` timed steps. The machine's fp32 matmul rate
is measured first and recorded beside the times. Memory is reported two ways: the ratio of peak RSS
(which includes the ~300 MiB every process holds before its first step: interpreter, torch, data) and
the ratio of what the steps add above that. ``--mmap-threshold BYTES`` runs every worker with glibc's
``MALLOC_MMAP_THRESHOLD_`` fixed there: blocks that large are then mapped and returned when freed, instead of
staying in the heap after glibc raises its threshold, which shows how much of a peak is freed memory the
allocator kept. Results go to ``benchmarks/seed_unet_step.json``.

    python benchmarks/seed_unet_step.py                                  # batch 16, 8x32x32 (the text's)
    python benchmarks/seed_unet_step.py --batch 4 --steps 2 --rounds 1   # quicker
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as the spacetime CLI does (docs/architecture.md)

import argparse
import contextlib
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the text's code lives in tests/compat


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def worker(args) -> dict:
    import torch

    from spacetime.compat import FactorizedVideoUNet, cosine_beta_schedule, create_dataset
    from spacetime.ops import use_backend

    torch.manual_seed(0)
    model = FactorizedVideoUNet(in_channels=1, base_dim=32, num_heads=4)
    if args.worker == "text":
        from tests.compat.unet_reference import RefFactorizedVideoUNet

        text_model = RefFactorizedVideoUNet(in_channels=1, base_dim=32, num_heads=4)
        text_model.load_state_dict(model.state_dict(), strict=True)
        model = text_model
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    import numpy as np

    videos = create_dataset(args.batch, args.frames, args.size, rng=np.random.default_rng(0))
    alphas_cumprod = torch.cumprod(1 - cosine_beta_schedule(500), dim=0)
    gen = torch.Generator().manual_seed(1)

    def step() -> float:  # the text's train_one_step
        optimizer.zero_grad()
        t = torch.randint(0, 500, (args.batch,), generator=gen)
        noise = torch.randn(videos.shape, generator=gen)
        a = alphas_cumprod[t].view(-1, 1, 1, 1, 1)
        loss = torch.nn.functional.mse_loss(model(a.sqrt() * videos + (1 - a).sqrt() * noise, t), noise)
        loss.backward()
        optimizer.step()
        return loss.item()

    rss_before = _peak_rss_mib()
    times, losses = [], []
    forced = args.worker not in ("text", "default")
    with use_backend(args.worker) if forced else contextlib.nullcontext():
        for i in range(args.warmup + args.steps):
            start = time.perf_counter()
            losses.append(step())
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
    return {"backend": args.worker, "step_s": statistics.median(times), "times_s": times, "losses": losses,
            "peak_rss_mib": _peak_rss_mib(), "rss_before_steps_mib": rss_before,
            "threads": torch.get_num_threads()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=3, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--workers", nargs="+", default=["text", "default"],
                   help="'text' (the text's code), 'default' (spacetime's dispatch) or a backend name; the first "
                        "is the reference the others are compared with")
    p.add_argument("--rounds", type=int, default=2, help="times the list of workers is run, in turn")
    p.add_argument("--mmap-threshold", type=int, metavar="BYTES",
                   help="run every worker with MALLOC_MMAP_THRESHOLD_=BYTES (glibc; default: glibc's own)")
    p.add_argument("--out", default=str(HERE / "seed_unet_step.json"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.mmap_threshold is not None and args.mmap_threshold < 0:
        p.error(f"--mmap-threshold must be a byte count >= 0; got {args.mmap_threshold}")
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    from spacetime.measure import matmul_rate

    rate = matmul_rate()
    print(f"fp32 matmul rate: {rate:.0f} GFLOP/s (2048x2048 torch.mm)", flush=True)
    rows = []
    for _ in range(args.rounds):
        for name in args.workers:
            cmd = [sys.executable, __file__, "--worker", name, "--batch", str(args.batch), "--frames",
                   str(args.frames), "--size", str(args.size), "--steps", str(args.steps), "--warmup",
                   str(args.warmup)]
            env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
            if args.mmap_threshold is not None:
                env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if done.returncode:
                sys.stderr.write(done.stderr)
                return done.returncode
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{name:>7}: step {r['step_s']:.2f} s (median of {args.steps}), peak RSS "
                  f"{r['peak_rss_mib']:.0f} MiB, losses {', '.join(f'{v:.4f}' for v in r['losses'])}", flush=True)
    result = {"command": "python benchmarks/seed_unet_step.py " + " ".join(sys.argv[1:]),
              "config": vars(args) | {"worker": None, "out": Path(args.out).name},
              "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                          "load_avg_1m": os.getloadavg()[0], "matmul_gflops": round(rate, 1)}, "runs": rows}
    ref = args.workers[0]
    result["vs_" + ref] = {}
    for name in args.workers[1:]:  # medians over the rounds
        step = {w: statistics.median(r["step_s"] for r in rows if r["backend"] == w) for w in (ref, name)}
        rss = {w: max(r["peak_rss_mib"] for r in rows if r["backend"] == w) for w in (ref, name)}
        # the steps' own memory: peak RSS above the process's before the first step (interpreter, torch, data)
        grew = {w: max(r["peak_rss_mib"] - r["rss_before_steps_mib"] for r in rows if r["backend"] == w)
                for w in (ref, name)}
        result["vs_" + ref][name] = {"speedup": step[ref] / step[name], "peak_rss_ratio": rss[name] / rss[ref],
                                     "step_memory_ratio": grew[name] / grew[ref]}
        print(f"{name} vs {ref}: {step[ref] / step[name]:.2f}x faster (median over {args.rounds} rounds), "
              f"{rss[name] / rss[ref]:.3f} of the peak RSS, {grew[name] / grew[ref]:.3f} of the steps' own memory "
              f"({grew[name]:.0f} against {grew[ref]:.0f} MiB above the {rss[name] - grew[name]:.0f} MiB before them)")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
