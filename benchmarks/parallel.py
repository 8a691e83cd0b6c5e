"""Sequence parallelism on this machine: one clip split over P = 1, 2, 4 gloo processes.

The model is a stack of factorized transformer blocks (spatial then temporal attention, an MLP: a
DiT / Latte layout) on a latent clip ``(1, T, H, W, dim)``, every block made sequence-parallel with
``spacetime.parallel.parallelize``. For each P, in P fresh processes (one thread each,
``MALLOC_MMAP_THRESHOLD_=65536`` as ``spacetime bench`` measures memory), every rank reports:

* the bytes it saves for backward (``torch.autograd.graph.saved_tensors_hooks``: the distinct
  storages autograd keeps) and the growth of its peak resident set over one forward + backward;
* the elements it sends per block, counted by ``count_traffic``, beside the formula ``2 M (P - 1) / P``
  (M: its share of the block's input), and a joint-attention layer's (Ulysses: ``4 M (P - 1) / P``);
* the step time (forward + backward, median of repeats, the slowest rank's) and the share of it spent
  inside collectives (waiting for the other ranks included).

Then, for each P, the largest clip ``T x H x W`` (T doubling at the fixed H x W) whose step fits
under ``--cap-mb`` of peak resident growth on every rank. The fp32 matmul rate is measured first.
This machine has 2 cores: P = 4 puts two processes on each, so its times show oversubscription, not
scaling. Writes ``benchmarks/parallel.csv`` and ``benchmarks/parallel.md``.

    python benchmarks/parallel.py                  # the fixed clip 16 x 32 x 32, P = 1, 2, 4, and the cap search
    python benchmarks/parallel.py --no-search      # without the cap search
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as the CLI does (docs/architecture.md)
os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"  # inherited by the spawned ranks: their resident set follows tensors

import argparse
import datetime
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from spacetime.blocks import TransformerBlock
from spacetime.io.files import atomic_write_csv, atomic_write_text
from spacetime.layers import SpaceTimeAttention
from spacetime.measure import matmul_rate, memory_supported, peak_memory_growth
from spacetime.ops import Joint, Spatial, Temporal
from spacetime.parallel import count_traffic, parallelize, shard_video

HERE = Path(__file__).resolve().parent
FIELDS = ["procs", "frames", "height", "width", "dim", "depth", "saved_mb", "peak_mb", "step_ms", "comm_ms",
          "comm_share", "block_sent", "block_formula", "joint_sent", "joint_formula", "matmul_gflops"]


def _blocks(args, group) -> nn.ModuleList:
    torch.manual_seed(0)
    blocks = nn.ModuleList(TransformerBlock(args.dim, args.heads, (Spatial(), Temporal()), rope="thw")
                           for _ in range(args.depth))
    if group is not None:
        for block in blocks:
            parallelize(block, group)
    return blocks


def _forward(blocks, x):
    for block in blocks:
        x = block(x)
    return x


def _saved_bytes(fn) -> tuple[int, torch.Tensor]:
    """Bytes of the distinct storages autograd saves for backward while ``fn()`` runs, and its output."""
    storages = {}

    def pack(t):
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(storages.values()), out


def _measure(rank: int, world: int, args, frames: int, full: bool) -> dict:
    group = dist.group.WORLD if world > 1 else None
    blocks = _blocks(args, group)
    x = torch.randn(1, frames, args.height, args.width, args.dim, generator=torch.Generator().manual_seed(1))
    local = (shard_video(x, group, "bthwc") if group is not None else x).requires_grad_()

    def step():
        _forward(blocks, local).square().mean().backward()

    step()  # warm-up: every buffer and code path once
    peak = peak_memory_growth(step)
    if not full:
        return {"peak": peak}
    saved, out = _saved_bytes(lambda: _forward(blocks, local))
    out.square().mean().backward()
    with count_traffic() as traffic:
        _forward(blocks, local)
    block_sent = traffic.sent // args.depth
    joint = SpaceTimeAttention(args.dim, args.heads, Joint())
    joint_sent = 0
    if group is not None:
        with count_traffic() as traffic:
            parallelize(joint, group)(local)
        joint_sent = traffic.sent
    steps, comm = [], []
    for _ in range(args.repeats):
        if group is not None:
            dist.barrier()
        with count_traffic() as traffic:
            start = time.perf_counter()
            step()
            steps.append(time.perf_counter() - start)
        comm.append(traffic.seconds)
    share = local.numel()
    return {"peak": peak, "saved": saved, "step": statistics.median(steps), "comm": statistics.median(comm),
            "block_sent": block_sent, "block_formula": 2 * share * (world - 1) // world, "joint_sent": joint_sent,
            "joint_formula": 4 * share * (world - 1) // world}


def _rank(rank: int, world: int, port: int, args, frames: int, full: bool, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(minutes=10))
    result = _measure(rank, world, args, frames, full)
    results = [None] * world
    dist.all_gather_object(results, result)
    if rank == 0:
        atomic_write_text(Path(out), json.dumps(results))
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(0)  # past gloo's teardown, which has been seen to abort a finished worker


def run(args, world: int, frames: int, full: bool = True) -> list[dict]:
    """Every rank's measurements of a clip of ``frames`` frames split over ``world`` fresh processes."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "results.json")
        mp.spawn(_rank, args=(world, port, args, frames, full, out), nprocs=world, join=True)
        return json.loads(Path(out).read_text())


def largest_fit(args, world: int) -> tuple[int, float]:
    """The most frames (doubling from ``world``... up to ``--max-frames``) whose step fits under the cap."""
    best, peak_at_best, frames = 0, float("nan"), args.search_from
    while frames <= args.max_frames:
        peak = max(r["peak"] for r in run(args, world, frames, full=False)) / 2**20
        print(f"  P={world} T={frames}: peak {peak:.0f} MB per rank", flush=True)
        if peak > args.cap_mb:
            break
        best, peak_at_best, frames = frames, peak, frames * 2
    return best, peak_at_best


def _table(rows: list[dict], fits: dict, args, rate: float) -> str:
    clip = f"1 x {args.frames} x {args.height} x {args.width} x {args.dim}"
    lines = [
        "# Sequence parallelism: one clip over P processes",
        "",
        f"Made by `python benchmarks/parallel.py`; fp32, gloo, one thread per process, 2 CPUs, fp32 matmul "
        f"{rate:.1f} GFLOP/s. Model: {args.depth} factorized blocks (spatial, temporal, MLP; dim {args.dim}, "
        f"{args.heads} heads, rotary) on a clip {clip} (b x T x H x W x dim). Per rank: the bytes saved for "
        f"backward, the peak resident growth of a forward + backward, the elements sent per block (forward) beside "
        f"2M(P-1)/P and by a Joint (Ulysses) layer beside 4M(P-1)/P (M: the rank's share of the activations), the "
        f"slowest rank's step time and its median time inside collectives. **P = 4 runs four processes on two "
        f"cores**: its times measure oversubscription, not scaling.",
        "",
        "| P | saved for backward MB | peak RSS MB | vs P=1 | sent per block (elements) | 2M(P-1)/P "
        "| Joint layer sends | 4M(P-1)/P | step ms | in collectives |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = rows[0]["peak_mb"]
    for r in rows:
        lines.append(f"| {r['procs']} | {r['saved_mb']:.1f} | {r['peak_mb']:.1f} | {r['peak_mb'] / base:.2f} | "
                     f"{r['block_sent']:,} | {r['block_formula']:,} | {r['joint_sent']:,} | {r['joint_formula']:,} | "
                     f"{r['step_ms']:.0f} | {r['comm_share']:.0%} |")
    if fits:
        lines += ["", f"Largest clip whose forward + backward fits under {args.cap_mb:g} MB of peak resident growth "
                      f"per rank (T doubling from {args.search_from}, H x W = {args.height} x {args.width}):", "",
                  "| P | largest T x H x W | tokens | peak RSS MB per rank |", "|---:|---:|---:|---:|"]
        for world, (frames, peak) in fits.items():
            size = f"{frames} x {args.height} x {args.width}" if frames else f"none from T={args.search_from}"
            lines.append(f"| {world} | {size} | {frames * args.height * args.width:,} | {peak:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--frames", type=int, default=16, help="T of the fixed clip (default 16)")
    p.add_argument("--size", type=int, nargs=2, default=(32, 32), metavar=("H", "W"), help="frame size (32 32)")
    p.add_argument("--dim", type=int, default=64, help="channels (default 64)")
    p.add_argument("--heads", type=int, default=4, help="attention heads (default 4; Joint needs them divisible by P)")
    p.add_argument("--depth", type=int, default=4, help="blocks (default 4)")
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4], help="process counts P (default 1 2 4)")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per P (default 5)")
    p.add_argument("--cap-mb", type=float, default=512.0, help="per-rank memory cap of the search (default 512)")
    p.add_argument("--search-from", type=int, default=8, help="the search's first T (default 8)")
    p.add_argument("--max-frames", type=int, default=256, help="the search's last T (default 256)")
    p.add_argument("--no-search", action="store_true", help="skip the largest-clip search")
    p.add_argument("--out", type=Path, default=HERE, help="folder for parallel.csv and parallel.md")
    args = p.parse_args()
    args.height, args.width = args.size
    if not memory_supported():
        p.error("this benchmark reads the peak resident set from /proc (Linux)")
    for world in args.procs:
        if world < 1 or args.frames < world or args.heads % world:
            p.error(f"--procs: each P must be >= 1, at most --frames ({args.frames}) and divide --heads "
                    f"({args.heads}); got {world}")
    rate = matmul_rate()
    print(f"fp32 matmul rate: {rate:.1f} GFLOP/s", flush=True)
    rows = []
    for world in args.procs:
        ranks = run(args, world, args.frames)
        slowest = max(ranks, key=lambda r: r["step"])
        row = {"procs": world, "frames": args.frames, "height": args.height, "width": args.width, "dim": args.dim,
               "depth": args.depth, "saved_mb": max(r["saved"] for r in ranks) / 2**20,
               "peak_mb": max(r["peak"] for r in ranks) / 2**20, "step_ms": slowest["step"] * 1e3,
               "comm_ms": slowest["comm"] * 1e3, "comm_share": slowest["comm"] / slowest["step"],
               "block_sent": ranks[0]["block_sent"], "block_formula": ranks[0]["block_formula"],
               "joint_sent": ranks[0]["joint_sent"], "joint_formula": ranks[0]["joint_formula"],
               "matmul_gflops": round(rate, 1)}
        rows.append(row)
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    fits = {}
    if not args.no_search:
        print(f"largest clip under {args.cap_mb:g} MB per rank:", flush=True)
        fits = {world: largest_fit(args, world) for world in args.procs}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(args.out / "parallel.csv", rows, FIELDS)
    atomic_write_text(args.out / "parallel.md", _table(rows, fits, args, rate))
    print(f"wrote {args.out / 'parallel.csv'} and {args.out / 'parallel.md'}")


if __name__ == "__main__":
    main()
