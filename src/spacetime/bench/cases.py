"""Benchmark cases: a small JSON-able spec -> a runnable forward / forward+backward.

A spec is a dict::

    {"impl": "layer" | "op" | "mha" | "explicit" | "flex" | "natten" | "diffusers",
     "pattern": "spatial" | "temporal" | ... (see PATTERN_NAMES),
     "backend": "sdpa" | "math" | ... (layer and op only; a name from available_backends()),
     "shape": [b, t, h, w, dim, heads],
     "options": {"window": [wt, wh, ww], "shift": [st, sh, sw], "local": k, "cross": k}}

``layer`` is spacetime's attention layer (qkv projection, pattern, output projection) and
``op`` the pattern alone on ``(b, t, h, w, heads, d)`` q/k/v. The peers are the design texts' approaches
and other libraries' on the same groupings: ``mha`` (``nn.MultiheadAttention``, called as the texts call
it), ``explicit`` (text 004's explicit ``softmax(q k^T) v``), ``flex`` (PyTorch's FlexAttention
under ``torch.compile``, where torch has it and inductor can compile: the 3D windows as a mask
over the whole clip, as FlexAttention is meant to be used), ``natten`` (NATTEN's ``na3d``, the
unshifted windows, when installed) and, when installed, ``diffusers`` (the ``Attention`` module
its temporal transformer uses). On CPU FlexAttention, and NATTEN with it, have no backward:
their ``fwdbwd`` rows are skipped with that reason (:func:`mode_unsupported`).

``python -m spacetime.bench.cases --memory`` reads a list of specs on stdin and prints their
peak memory (see :mod:`spacetime.measure`); ``spacetime bench`` starts it.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import torch
from einops import rearrange
from torch import Tensor, nn

from ..layers.attention import FactorizedAttention, SpaceTimeAttention
from ..measure import peak_memory_growth
from ..ops.attention import available_backends
from ..ops.patterns import CrossFrame, Joint, Pattern, Spatial, Temporal, Window
from .cost import VideoShape

__all__ = ["PATTERN_NAMES", "IMPLS", "PEERS", "DEFAULT_OPTIONS", "make_patterns", "peer_supports", "Case",
           "available_peers", "measure_memory_in_child", "mode_unsupported"]

PATTERN_NAMES = ("spatial", "temporal", "causal", "local", "factorized", "joint", "window", "shifted", "cross_frame")
PEERS = ("mha", "explicit", "flex", "natten", "diffusers")
IMPLS = ("layer", "op") + PEERS
DEFAULT_OPTIONS = {"window": (2, 8, 8), "shift": None, "local": 1, "cross": 1}

# Patterns the peers implement: groupings of the whole clip plus a frame mask.
_PEER_PATTERNS = ("spatial", "temporal", "causal", "local", "factorized", "joint")


def make_patterns(name: str, options: dict | None = None) -> tuple[Pattern, ...]:
    """The pattern stack a pattern name stands for (``factorized`` is spatial then temporal).

    ``options``: ``window`` (wt, wh, ww), ``shift`` (defaults to half the window), ``local``
    (frames each side for local temporal attention), ``cross`` (frames each side for cross-frame).
    """
    opts = {**DEFAULT_OPTIONS, **(options or {})}
    window = tuple(opts["window"])
    shift = tuple(opts["shift"]) if opts["shift"] is not None else tuple(s // 2 for s in window)
    table = {
        "spatial": (Spatial(),),
        "temporal": (Temporal(),),
        "causal": (Temporal(causal=True),),
        "local": (Temporal(window=int(opts["local"])),),
        "factorized": (Spatial(), Temporal()),
        "joint": (Joint(),),
        "window": (Window(window),),
        "shifted": (Window(window, shift=shift),),
        "cross_frame": (CrossFrame(int(opts["cross"])),),
    }
    if name not in table:
        raise ValueError(f"pattern must be one of {PATTERN_NAMES}; got {name!r}")
    return table[name]


def _flex_available() -> bool:
    """FlexAttention is in this torch and inductor has a C++ compiler for its CPU code."""
    if importlib.util.find_spec("torch.nn.attention.flex_attention") is None:
        return False
    return shutil.which(os.environ.get("CXX", "c++")) is not None or shutil.which("g++") is not None


def available_peers() -> tuple[str, ...]:
    """The peers that can run here (``flex`` where torch and a compiler allow, ``natten`` and ``diffusers``
    when installed)."""
    have = {"diffusers": importlib.util.find_spec("diffusers") is not None, "flex": _flex_available(),
            "natten": importlib.util.find_spec("natten") is not None}
    return tuple(p for p in PEERS if have.get(p, True))


def peer_supports(peer: str, pattern: str) -> bool:
    """Whether a peer implements ``pattern`` (peers do whole-clip groupings with a frame mask; flex also
    the 3D windows, as a mask)."""
    if peer == "diffusers":
        return pattern in ("spatial", "temporal", "factorized", "joint")
    if peer == "flex":
        return pattern in _PEER_PATTERNS + ("window", "shifted")
    if peer == "natten":
        return pattern == "window"
    return pattern in _PEER_PATTERNS


def mode_unsupported(impl: str, mode: str) -> str | None:
    """Why ``impl`` cannot run ``mode`` here, as a sweep status (None: it can)."""
    if impl in ("flex", "natten") and mode == "fwdbwd":  # natten runs on FlexAttention on CPU
        return f"skipped: FlexAttention has no CPU backward (torch {torch.__version__})"
    return None


def _frame_mask(pattern: Pattern, t: int) -> Tensor | None:
    """``(t, t)`` bool, True = may attend, for the temporal patterns; None when all frames are seen."""
    if not isinstance(pattern, Temporal):
        return None
    keep = torch.ones(t, t, dtype=torch.bool)
    if pattern.causal:
        keep = keep.tril()
    band = pattern.band_mask(t)
    return keep if band is None else keep & band


_GROUPS = {  # (b, t, h, w, c) -> sequences, and back
    Spatial: ("b t h w c -> (b t) (h w) c", "(b t) (h w) c -> b t h w c"),
    Temporal: ("b t h w c -> (b h w) t c", "(b h w) t c -> b t h w c"),
    Joint: ("b t h w c -> b (t h w) c", "b (t h w) c -> b t h w c"),
}


class _ExplicitAttention(nn.Module):
    """Text 004's approach: qkv linear, explicit ``softmax(q k^T * scale) v``, output linear."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "s n (three heads d) -> three s heads n d", three=3, heads=self.heads)
        scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
        if keep is not None:
            scores = scores.masked_fill(~keep, float("-inf"))
        out = scores.softmax(dim=-1) @ v
        return self.proj(rearrange(out, "s heads n d -> s n (heads d)"))


class _FlexAttention(nn.Module):
    """qkv linear, ``torch.compile(flex_attention)`` with the pattern as a block mask, output linear.

    Every new module starts from a fresh dynamo cache: a sweep compiles one graph per shape and
    mode, and past dynamo's recompile limit it would silently run FlexAttention eagerly.
    """

    def __init__(self, dim: int, heads: int, pattern: Pattern):
        super().__init__()
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        torch._dynamo.reset()
        self.heads, self.pattern = heads, pattern
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self._flex = torch.compile(flex_attention, dynamic=False)
        self._create_block_mask = create_block_mask
        self._masks: dict = {}

    def _block_mask(self, t: int, h: int, w: int):
        """The pattern's block mask at this clip size (None: every key), built once per size."""
        if (t, h, w) not in self._masks:
            if isinstance(self.pattern, Window):
                label = self.pattern.token_labels(t, h, w)
                n, mask_mod = t * h * w, lambda b, hd, qi, ki: label[qi] == label[ki]
            else:
                keep, n = _frame_mask(self.pattern, t), t
                mask_mod = None if keep is None else (lambda b, hd, qi, ki: keep[qi, ki])
            self._masks[(t, h, w)] = None if mask_mod is None else self._create_block_mask(
                mask_mod, None, None, n, n, device="cpu")
        return self._masks[(t, h, w)]

    def forward(self, x: Tensor) -> Tensor:
        b, t, h, w, _ = x.shape
        to_seq, from_seq = _GROUPS[Joint if isinstance(self.pattern, Window) else type(self.pattern)]
        q, k, v = rearrange(self.qkv(rearrange(x, to_seq)), "s n (three heads d) -> three s heads n d", three=3,
                            heads=self.heads)
        out = self._flex(q.contiguous(), k.contiguous(), v.contiguous(), block_mask=self._block_mask(t, h, w))
        out = self.proj(rearrange(out, "s heads n d -> s n (heads d)"))
        return rearrange(out, from_seq, b=b, t=t, h=h, w=w)


class _NattenAttention(nn.Module):
    """qkv linear, NATTEN's ``na3d`` with stride = kernel (its blocked form: our non-shifted windows), output
    linear. NATTEN's defaults: on CPU it runs FlexAttention uncompiled."""

    def __init__(self, dim: int, heads: int, pattern: Window):
        super().__init__()
        from natten import na3d

        self.heads, self.pattern, self._na3d = heads, pattern, na3d
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        size, shift = self.pattern.effective(*x.shape[1:4])
        if any(shift) or any(n % ws for n, ws in zip(x.shape[1:4], size)):
            raise ValueError(f"the natten peer runs unshifted windows that tile the clip; got window {size}, "
                             f"shift {shift} on a {tuple(x.shape[1:4])} clip")
        q, k, v = rearrange(self.qkv(x), "b t h w (three heads d) -> three b t h w heads d", three=3,
                            heads=self.heads)
        out = self._na3d(q, k, v, kernel_size=size, stride=size)
        return self.proj(rearrange(out, "b t h w heads d -> b t h w (heads d)"))


class _PeerLayer(nn.Module):
    """One peer attention module applied with the grouping of one pattern."""

    def __init__(self, peer: str, pattern: Pattern, dim: int, heads: int):
        super().__init__()
        self.pattern, self.peer = pattern, peer
        if peer == "mha":
            self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        elif peer == "explicit":
            self.attn = _ExplicitAttention(dim, heads)
        elif peer == "flex":
            self.attn = _FlexAttention(dim, heads, pattern)
        elif peer == "natten":
            self.attn = _NattenAttention(dim, heads, pattern)
        elif peer == "diffusers":
            from diffusers.models.attention_processor import Attention

            self.attn = Attention(query_dim=dim, heads=heads, dim_head=dim // heads, bias=True, out_bias=True)
        else:
            raise ValueError(f"peer must be one of {PEERS}; got {peer!r}")

    def forward(self, x: Tensor) -> Tensor:
        if self.peer in ("flex", "natten"):  # they group (or mask) the clip themselves
            return self.attn(x)
        b, t, h, w, _ = x.shape
        to_seq, from_seq = _GROUPS[type(self.pattern)]
        seq = rearrange(x, to_seq)
        keep = _frame_mask(self.pattern, t)
        if self.peer == "mha":  # as the texts call it: attn(x, x, x), need_weights left at its default
            out = self.attn(seq, seq, seq, attn_mask=None if keep is None else ~keep)[0]
        elif self.peer == "explicit":
            out = self.attn(seq, keep)
        else:
            out = self.attn(seq)
        return rearrange(out, from_seq, b=b, t=t, h=h, w=w)


class Case:
    """A built benchmark case: ``run(mode)`` does one forward (no grad) or forward+backward."""

    def __init__(self, spec: dict, *, seed: int = 0):
        self.spec = spec
        impl, name = spec.get("impl"), spec.get("pattern")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}; got {impl!r}")
        b, t, h, w, dim, heads = spec["shape"]
        self.shape = VideoShape(b, t, h, w, dim, heads)
        self.patterns = make_patterns(name, spec.get("options"))
        torch.manual_seed(seed)
        backend = spec.get("backend")
        if impl in ("layer", "op") and backend not in available_backends():
            raise ValueError(f"backend must be one of {available_backends()}; got {backend!r}")
        if impl in PEERS and not peer_supports(impl, name):
            raise ValueError(f"peer {impl!r} does not implement pattern {name!r}")
        if impl == "op":
            d = self.shape.head_dim
            self.inputs = [torch.randn(b, t, h, w, heads, d) for _ in range(3)]
            self.module = None
            self._forward = lambda q, k, v: self._op(q, k, v, backend)
        else:
            if impl == "layer" and name == "factorized":
                self.module = FactorizedAttention(dim, heads, temporal=self.patterns[1], backend=backend)
            elif impl == "layer":
                self.module = SpaceTimeAttention(dim, heads, self.patterns[0], backend=backend)
            else:
                self.module = nn.Sequential(*(_PeerLayer(impl, p, dim, heads) for p in self.patterns))
            self.inputs = [torch.randn(b, t, h, w, dim)]
            self._forward = self.module
        self.grad = None

    def _op(self, q, k, v, backend):
        out = self.patterns[0](q, k, v, backend=backend)
        for p in self.patterns[1:]:  # a stack feeds each output on as q, k and v
            out = p(out, out, out, backend=backend)
        return out

    def run(self, mode: str) -> None:
        """One call: ``"fwd"`` under ``no_grad``; ``"fwdbwd"`` with a backward into inputs and weights."""
        if mode == "fwd":
            with torch.no_grad():
                self._forward(*self.inputs)
            return
        if mode != "fwdbwd":
            raise ValueError(f"mode must be 'fwd' or 'fwdbwd'; got {mode!r}")
        inputs = [x.detach().requires_grad_(True) for x in self.inputs]
        if self.module is not None:
            for p in self.module.parameters():
                p.grad = None
        out = self._forward(*inputs)
        if self.grad is None or self.grad.shape != out.shape:
            self.grad = torch.randn_like(out)
        out.backward(self.grad)


def measure_memory_in_child(specs: list[dict], *, threads: int | None = None, timeout: float = 600.0) -> list[dict]:
    """Measure peak memory of each case spec (see above) in one fresh child.

    Returns one dict per spec: ``{"fwd": bytes, "fwdbwd": bytes}`` for the modes the spec asks
    for (NaN where unsupported or where the child failed; ``"error"`` says why).
    """
    if not specs:
        return []
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # no spin-waiting threads on a shared machine
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "spacetime.bench.cases", "--memory"]
    try:
        done = subprocess.run(cmd, input=json.dumps(specs), capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [{"error": f"memory child timed out after {timeout:.0f} s"} for _ in specs]
    if done.returncode != 0:
        tail = (done.stderr or "").strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        return [{"error": f"memory child failed: {tail[0]}"} for _ in specs]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _memory_main() -> int:
    """Child entry: specs on stdin -> one JSON line of ``{mode: peak bytes}`` per spec."""
    specs = json.loads(sys.stdin.read())
    results = []
    for spec in specs:
        row: dict = {}
        try:
            case = Case(spec)
            for mode in spec.get("modes", ["fwd", "fwdbwd"]):
                case.run(mode)  # warm-up: one-time allocations (thread pools, caches) are not the case's
                row[mode] = peak_memory_growth(lambda: case.run(mode))
            del case
        except Exception as exc:  # reported per case; the parent prints it
            row["error"] = f"{type(exc).__name__}: {exc}"
        gc.collect()
        results.append(row)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["--memory"]:
        raise SystemExit("usage: python -m spacetime.bench.cases --memory < specs.json")
    sys.exit(_memory_main())
