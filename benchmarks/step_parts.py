"""The parts of the demo U-Net's training step that run on spacetime's own code paths, each against the code it
replaced, forward + backward at the demo's shapes.

* frame-only convolutions (``k x 1 x 1`` and ``1 x 1 x 1``): :func:`spacetime.ops.conv.conv3d` (a 2D convolution
  on a view) against ``F.conv3d``;
* the motion head's mix: :func:`spacetime.ops.motion.motion_mix` (in the outputs' patch order) against the mix
  in pixel order it replaced (``tests/ops/test_motion_shifts.py``, where the tests check the two agree);
* the whole U-Net of a next-frame step (3 given frames and 1 to make), its head run on the made frame only against
  on every frame (``tests/diffusion/test_frame_by_frame.py`` checks the made frames and gradients agree).

The demo trains in single-thread processes, 8 clips each, on 4-frame windows (3 given, 1 to make) of a patch-4
U-Net with 32 channels (8 x 8 and 4 x 4 tokens a frame); so does this, by default. Both sides of a case run in turn,
``--rounds`` times, in one process, and the medians are compared; the matmul rate is written beside them.
Results: ``benchmarks/step_parts.md``.

    python benchmarks/step_parts.py
    python benchmarks/step_parts.py --rounds 3 --threads 2
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as the spacetime CLI does (docs/architecture.md)

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from spacetime.measure import matmul_rate, time_call
from spacetime.ops.conv import conv3d
from spacetime.ops.motion import motion_mix

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the former motion mix and head live in tests/
B, T = 8, 4  # clips per process, frames per window (3 given and the one to make)


def _conv_case(c_in: int, c_out: int, kernel: tuple, side: int):
    x = torch.randn(B, c_in, T, side, side, requires_grad=True)
    w = torch.randn(c_out, c_in, *kernel, requires_grad=True)
    b = torch.randn(c_out, requires_grad=True)
    pad = (kernel[0] // 2, 0, 0)
    ours = (lambda: conv3d(x, w, b, (1, 1, 1), pad, (1, 1, 1), 1))
    torch_ = (lambda: F.conv3d(x, w, b, 1, pad))
    return ours, torch_


def _mix_case(patch: int = 4, side: int = 8, radius: int = 2):
    from tests.ops.test_motion_shifts import mix_in_pixel_order

    shifts = (2 * radius + 1) ** 2 + 1
    logits = torch.randn(B, shifts * patch**2, T, side, side, requires_grad=True)
    image = torch.randn(B, patch**2, T, side, side, requires_grad=True)
    before = torch.randn(B, 1, T, side * patch, side * patch)
    args = (logits, image, before, radius, -1.0, patch)
    return (lambda: motion_mix(*args)), (lambda: mix_in_pixel_order(*args))


def _head_case(context: int = T - 1):
    """The demo's U-Net on ``context`` given frames and one to make: its head on the made frame (frames given in
    every clip come back as given) against the head on every frame, as before."""
    from spacetime.models.video_unet import VideoUNet
    from tests.diffusion.test_frame_by_frame import head_on_every_frame

    model = VideoUNet.from_preset("patch4", channels=[32, 32], motion_head=2, motion_fill=-1.0, known_frames=True)
    x, t = torch.rand(B, 1, context + 1, 32, 32) * 2 - 1, torch.randint(0, 1000, (B,))
    known = (torch.arange(context + 1) < context).expand(B, -1)
    return (lambda: model(x, t, known=known)), (lambda: head_on_every_frame(model, x, t, known=known))


CASES = {
    "temporal conv 3x1x1, 32 ch, 8x8 tokens": lambda: _conv_case(32, 32, (3, 1, 1), 8),
    "temporal conv 3x1x1, 32 ch, 4x4 tokens": lambda: _conv_case(32, 32, (3, 1, 1), 4),
    "skip conv 1x1x1, 64 -> 32 ch, 8x8 tokens": lambda: _conv_case(64, 32, (1, 1, 1), 8),
    "motion logits conv 1x1x1, 32 -> 416 ch, 8x8 tokens": lambda: _conv_case(32, 416, (1, 1, 1), 8),
    "motion mix, radius 2, patch 4, 32x32 pixels": _mix_case,
    "whole U-Net, 3 given frames + 1 made: head on the made frame / on all 4": _head_case,
}


def _time(run, grad, repeats: int) -> float:
    """Median milliseconds of ``repeats`` forward + backward passes, after a few untimed ones."""
    return 1000 * time_call(lambda: run().backward(grad), warmup=3, repeats=repeats).median


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="turns of each side per case (default 5)")
    p.add_argument("--repeats", type=int, default=20, help="passes timed per turn (default 20)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the demo's processes)")
    p.add_argument("--out", default=str(HERE / "step_parts.md"), help="where the table goes")
    args = p.parse_args(argv)
    if min(args.rounds, args.repeats, args.threads) < 1:
        p.error(f"--rounds, --repeats and --threads must be >= 1; got {args.rounds}, {args.repeats}, {args.threads}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rate = matmul_rate(1024)
    rows = []
    for name, make in CASES.items():
        ours, theirs = make()
        grad = torch.randn(ours().shape)
        if name.startswith("whole U-Net"):
            grad[:, :, :-1] = 0  # a next-frame loss: the given frames weigh nothing
        turns = {"ours": [], "theirs": []}
        for _ in range(args.rounds):
            for side, run in (("ours", ours), ("theirs", theirs)):
                turns[side].append(_time(run, grad, args.repeats))
        mine, former = statistics.median(turns["ours"]), statistics.median(turns["theirs"])
        rows.append(f"| {name} | {former:.3f} | {mine:.3f} | {mine / former:.2f} |")
        print(rows[-1], flush=True)
    command = "python benchmarks/" + " ".join([Path(__file__).name] + (argv if argv is not None else sys.argv[1:]))
    table = "\n".join([
        "# The U-Net step's own parts against the code they replaced",
        "",
        f"`{command}`: {args.threads} thread(s), fp32 matmul {rate:.0f} GFLOP/s (1024^2, same threads); "
        f"forward + backward, batch {B}, {T} frames; the median of {args.rounds} turns of {args.repeats} passes each.",
        "",
        "| part | before (ms) | now (ms) | now / before |",
        "|---|---|---|---|",
        *rows, ""])
    Path(args.out).write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
