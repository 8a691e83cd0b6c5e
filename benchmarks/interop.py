"""Converted models against their originals: the same weights, the same input, one run, alternating.

For every case (a transformers, torchvision or diffusers model, random weights at a CPU-sized
layout of the real architecture) it builds the original and its spacetime conversion, checks
their outputs agree, then times forward and forward+backward of both, interleaved (original,
converted, original, ...) so that the machine's drift falls on both alike, and measures each
one's peak memory in a fresh child process (``MALLOC_MMAP_THRESHOLD_=65536``, as ``spacetime bench``
does). The machine's fp32 matmul rate is measured first. Writes ``benchmarks/interop.csv`` and the
table ``benchmarks/interop.md``; on a machine with a GPU the same runs happen on CUDA as well.

    python benchmarks/interop.py                   # every case
    python benchmarks/interop.py --only videomae   # one case
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as the CLI does (docs/architecture.md)

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from spacetime.io.files import atomic_write_csv, atomic_write_text
from spacetime.measure import matmul_rate, peak_memory_growth, time_call

HERE = Path(__file__).resolve().parent
FIELDS = ["case", "device", "impl", "mode", "ms", "best_ms", "peak_mb", "max_abs_diff", "matmul_gflops"]


def _videomae():
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    config = VideoMAEConfig(image_size=112, patch_size=16, num_frames=8, tubelet_size=2, hidden_size=384,
                            num_hidden_layers=4, num_attention_heads=6, intermediate_size=1536, num_labels=10)
    return VideoMAEForVideoClassification(config), torch.randn(2, 8, 3, 112, 112)


def _timesformer():
    from transformers import TimesformerConfig, TimesformerForVideoClassification

    config = TimesformerConfig(image_size=112, patch_size=16, num_frames=8, hidden_size=384, num_hidden_layers=4,
                               num_attention_heads=6, intermediate_size=1536, num_labels=10)
    return TimesformerForVideoClassification(config), torch.randn(2, 8, 3, 112, 112)


def _vivit():
    from transformers import VivitConfig, VivitForVideoClassification

    config = VivitConfig(image_size=112, num_frames=8, tubelet_size=[2, 16, 16], hidden_size=384, num_hidden_layers=4,
                         num_attention_heads=6, intermediate_size=1536, num_labels=10)
    return VivitForVideoClassification(config), torch.randn(2, 8, 3, 112, 112)


def _transformers_pair(make):
    def build():
        from spacetime.interop.transformers import from_transformers

        original, x = make()
        original.eval()
        converted = from_transformers(original)
        return (lambda v: original(v).logits), converted, original, converted, x
    return build


def _swin3d_t():
    """torchvision's swin3d_t itself (28M parameters, random weights), on an 8-frame 112 x 112 clip; torchvision's code
    is run from its wheel's own files, as the tests do (tests/interop/test_torchvision.py: pip download, no install)."""
    sys.path.insert(0, str(HERE.parent))
    from tests.interop.test_torchvision import torchvision_swin

    from spacetime.interop.torchvision import from_torchvision

    tv = torchvision_swin(HERE.parent / ".pytest_cache" / "d" / "torchvision-wheel")
    original = tv.swin3d_t().eval()
    converted = from_torchvision(original)
    return original, converted, original, converted, torch.randn(1, 3, 8, 112, 112)


def _animatediff():
    """One of AnimateDiff v1.5's motion modules at its first level's size (320 channels, 8 heads of 40, two temporal
    attentions, GEGLU) on a 16-frame 16 x 16 latent, through diffusers' call (batch*frames, C, H, W)."""
    from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

    from spacetime.interop.diffusers import from_diffusers

    original = AnimateDiffTransformer3D(num_attention_heads=8, attention_head_dim=40, in_channels=320,
                                        norm_num_groups=32, double_self_attention=True, activation_fn="geglu",
                                        positional_embeddings="sinusoidal", num_positional_embeddings=32).eval()
    converted = from_diffusers(original)
    return ((lambda v: original(v, num_frames=16)), (lambda v: converted(v, num_frames=16)), original, converted,
            torch.randn(16, 320, 16, 16))


#: case name -> builder of (original's forward, converted's forward, original module, converted module, input)
CASES = {"videomae": _transformers_pair(_videomae), "timesformer": _transformers_pair(_timesformer),
         "vivit": _transformers_pair(_vivit), "swin3d_t": _swin3d_t, "animatediff": _animatediff}


def _run(fn, x, mode):
    if mode == "fwd":
        with torch.no_grad():
            return fn(x)
    out = fn(x.requires_grad_(True) if not x.requires_grad else x)
    out.float().square().mean().backward()
    return out


def _child(case: str, impl: str, mode: str, device: str) -> dict:
    """One implementation's peak memory growth, in this fresh process."""
    torch.manual_seed(0)
    original_fn, converted_fn, original, converted, x = CASES[case]()
    fn = original_fn if impl == "original" else converted_fn
    (original if impl == "original" else converted).to(device)
    x = x.to(device)
    _run(fn, x.clone(), mode)  # warm-up: one-time allocations are not the model's
    return {"peak_mb": peak_memory_growth(lambda: _run(fn, x.clone(), mode)) / 2**20}


def _memory(case: str, impl: str, mode: str, device: str) -> float:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    cmd = [sys.executable, __file__, "--child", json.dumps([case, impl, mode, device])]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"memory child for {case}/{impl}/{mode} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"]


def measure(case: str, device: str, repeats: int, rate: float) -> list[dict]:
    torch.manual_seed(0)
    original_fn, converted_fn, original, converted, x = CASES[case]()
    original.to(device), converted.to(device)
    x = x.to(device)
    with torch.no_grad():
        diff = (converted_fn(x) - original_fn(x)).abs().max().item()
    rows = []
    for mode in ("fwd", "fwdbwd"):
        times = {"original": [], "converted": []}
        for _ in range(repeats):  # interleaved: original, converted, original, ...
            for impl, fn in (("original", original_fn), ("converted", converted_fn)):
                times[impl].append(time_call(lambda: _run(fn, x.clone(), mode), warmup=1, repeats=1).median)
        for impl, ts in times.items():
            peak = _memory(case, impl, mode, device) if device == "cpu" else float("nan")
            rows.append({"case": case, "device": device, "impl": impl, "mode": mode,
                         "ms": round(1e3 * sorted(ts)[len(ts) // 2], 2), "best_ms": round(1e3 * min(ts), 2),
                         "peak_mb": round(peak, 1), "max_abs_diff": f"{diff:.2e}", "matmul_gflops": round(rate, 1)})
            print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    return rows


def _markdown(rows: list[dict], command: str) -> str:
    lines = ["# Converted models against their originals", "",
             f"Made by `{command}`; fp32, {os.cpu_count()} CPUs, fp32 matmul {rows[0]['matmul_gflops']} GFLOP/s. "
             "Same weights and input for both; the timings interleave the two. `ratio` is the original's time over "
             "the converted model's (above 1: spacetime is faster); memory is the peak resident growth of one call "
             "in a fresh process.", "",
             "| case | device | mode | original ms | converted ms | ratio | original MB | converted MB "
             "| max abs diff |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    keyed = {(r["case"], r["device"], r["mode"], r["impl"]): r for r in rows}
    for case, device, mode in dict.fromkeys((r["case"], r["device"], r["mode"]) for r in rows):
        o, c = keyed[(case, device, mode, "original")], keyed[(case, device, mode, "converted")]
        lines.append(f"| {case} | {device} | {mode} | {o['ms']} | {c['ms']} | {o['ms'] / c['ms']:.2f} | {o['peak_mb']} "
                     f"| {c['peak_mb']} | {o['max_abs_diff']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="*", choices=sorted(CASES), default=None, help="cases to run (default: all)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls of each implementation, interleaved")
    p.add_argument("--out", type=Path, default=HERE, help="folder for interop.csv and interop.md")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(*json.loads(args.child))))
        return 0
    rate = matmul_rate()
    print(f"fp32 matmul rate: {rate:.0f} GFLOP/s", flush=True)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = [r for case in (args.only or CASES) for d in devices for r in measure(case, d, args.repeats, rate)]
    command = "python benchmarks/interop.py" + "".join(f" {a}" for a in sys.argv[1:])
    atomic_write_csv(args.out / "interop.csv", rows, FIELDS)
    atomic_write_text(args.out / "interop.md", _markdown(rows, command))
    print(f"wrote {args.out / 'interop.csv'} and {args.out / 'interop.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
