"""Fused exact attention on CPU (the ``"fused"`` backend), a small C++ kernel built on first use.

The kernel (``csrc/fused_attention.cpp``) computes ``softmax(q k^T * scale + mask) v`` in fp32
with a base-2 softmax and a polynomial ``exp2``, and a backward that recomputes the probabilities
from the saved log-sum-exp, so no ``(n, m)`` matrix is ever stored. It reads q, k, v through their
strides (any layout whose last stride is 1), which lets the temporal and spatial patterns pass
views instead of copies. It picks one of three paths per call:

* **lanes** (``n, m <= 32``, head dims of at least one SIMD vector): one vector lane per
  sequence. A group of 16 sequences (8 without AVX-512) is packed lane-interleaved through
  in-register transposes, and the products, the softmax and the backward are plain vector
  arithmetic with no horizontal step, whatever ``T`` is (temporal attention).
* **small heads** (``d = dv = 8`` or ``16``, longer sequences): one lane per query in the forward
  and the ``dq`` pass, one per key in the ``dk``/``dv`` pass; the head's channels stay in
  registers and the other side's rows are read as broadcasts (spatial attention at head_dim 8).
* **blocked** (the rest): one thread per sequence, a block of queries' scores in L1/L2,
  register-tiled products.

Building: the first call compiles the source with the system C++ compiler (``$CXX`` or ``c++``,
about 2 s) into ``$SPACETIME_KERNEL_CACHE`` (default ``~/.cache/spacetime/kernels``), keyed by
the source, the flags and the CPU. No torch headers are needed. If there is no compiler or the
build fails, one warning says why and :func:`available` is ``False``: :mod:`.attention` then
uses the torch backends it used before. ``SPACETIME_NO_KERNEL=1`` turns the kernel off.

What it serves (:func:`unsupported` says why not otherwise): CPU fp32 tensors, head dims that
are multiples of 8 up to 256, the last stride 1, a mask without gradient, no dropout.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["available", "build_error", "fused_attention", "unsupported"]

_SOURCE = Path(__file__).with_name("csrc") / "fused_attention.cpp"
_FLAGS = ["-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-pthread"]
_lib: ctypes.CDLL | None = None
_error: str | None = None
_tried = False


def _cache_dir() -> Path:
    root = os.environ.get("SPACETIME_KERNEL_CACHE") or Path.home() / ".cache" / "spacetime" / "kernels"
    return Path(root)


def _cpu_tag() -> str:
    try:  # the model and flags: -march=native code must not run on another CPU
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return ";".join(sorted({ln for ln in lines if ln.startswith(("model name", "flags"))}))
    except OSError:
        return platform.processor() + platform.machine()


def _build() -> Path:
    compiler = os.environ.get("CXX", "c++")
    source = _SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join([compiler, *_FLAGS, _cpu_tag()]).encode()).hexdigest()[:16]
    target = _cache_dir() / f"fused_attention-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.run([compiler, *_FLAGS, "-o", tmp, str(_SOURCE)], capture_output=True, text=True,
                              timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"{compiler} exited with {proc.returncode}: {proc.stderr.strip()[-600:]}")
        os.replace(tmp, target)  # atomic: concurrent builders never load a half-written file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _load() -> ctypes.CDLL | None:
    global _lib, _error, _tried
    if _tried:
        return _lib
    _tried = True
    if os.environ.get("SPACETIME_NO_KERNEL", "") not in ("", "0"):
        _error = "turned off by SPACETIME_NO_KERNEL"
        return None
    try:
        lib = ctypes.CDLL(str(_build()))
        if lib.st_abi_version() != 1:
            raise RuntimeError("the built library has another ABI version")
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        _error = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"spacetime: the fused attention kernel could not be built ({_error}); attention uses "
                      "the torch backends instead (set SPACETIME_NO_KERNEL=1 to silence this)", RuntimeWarning,
                      stacklevel=3)
        return None
    _declare(lib)
    _lib = lib
    return lib


def _declare(lib: ctypes.CDLL) -> None:
    """Argument types of the two entry points (ctypes would pass ints as 32-bit otherwise)."""
    ptr, strides, i64 = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64), ctypes.c_long
    tail = [i64] * 6 + [ctypes.c_float, ctypes.c_int, ctypes.c_int]
    lib.st_attention_forward.argtypes = [ptr, strides] * 4 + [ptr] + [ptr, strides] + tail
    lib.st_attention_backward.argtypes = [ptr, strides] * 5 + [ptr] + [ptr, strides] * 4 + tail
    lib.st_attention_forward.restype = lib.st_attention_backward.restype = None


def available() -> bool:
    """Whether the kernel is built and loaded (builds it on the first call)."""
    return _load() is not None


def build_error() -> str | None:
    """Why the kernel is not available (``None`` when it is, or before the first try)."""
    return _error


def unsupported(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout_p: float = 0.0) -> str | None:
    """Why the kernel cannot serve this call, or ``None`` when it can (does not build it)."""
    if q.device.type != "cpu" or q.dtype != torch.float32:
        return f"needs fp32 CPU tensors; got {q.dtype} on {q.device}"
    d, dv = q.shape[-1], v.shape[-1]
    if d % 8 or dv % 8 or d > 256 or dv > 256:
        return f"needs head dims that are multiples of 8 up to 256; got d={d}, dv={dv}"
    if dropout_p > 0.0:
        return "serves no dropout"
    if mask is not None and mask.requires_grad:
        return "serves no mask that needs a gradient"
    return None


def _ptr(t: Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(None if t is None else t.data_ptr())


def _strides(t: Tensor | None):
    return None if t is None else (ctypes.c_int64 * 4)(*t.stride())


def _rows(t: Tensor) -> Tensor:
    """``t`` itself when its last stride is 1 (and it is 4-d), else a copy that is."""
    return t if t.stride(-1) == 1 else t.contiguous()


class _Fused(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, bias, causal, scale):
        lib = _lib
        b, h, n, d = q.shape
        m, dv = k.shape[2], v.shape[3]
        out = torch.empty_like(q) if dv == d else q.new_empty(b, h, n, dv)
        if out.stride(-1) != 1:
            out = q.new_empty(b, h, n, dv)
        lse = q.new_empty(b * h, n)
        lib.st_attention_forward(_ptr(q), _strides(q), _ptr(k), _strides(k), _ptr(v), _strides(v), _ptr(out),
                                 _strides(out), _ptr(lse), _ptr(bias), _strides(bias), b, h, n, m, d, dv,
                                 ctypes.c_float(scale), int(causal), torch.get_num_threads())
        ctx.save_for_backward(q, k, v, out, lse, bias)
        ctx.causal, ctx.scale = causal, scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, lse, bias = ctx.saved_tensors
        go = _rows(grad_out)
        b, h, n, d = q.shape
        m, dv = k.shape[2], v.shape[3]
        dq, dk, dvv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        dq, dk, dvv = (_rows(t) for t in (dq, dk, dvv))
        _lib.st_attention_backward(
            _ptr(q), _strides(q), _ptr(k), _strides(k), _ptr(v), _strides(v), _ptr(out), _strides(out), _ptr(go),
            _strides(go), _ptr(lse), _ptr(bias), _strides(bias), _ptr(dq), _strides(dq), _ptr(dk), _strides(dk),
            _ptr(dvv), _strides(dvv), b, h, n, m, d, dv, ctypes.c_float(ctx.scale), int(ctx.causal),
            torch.get_num_threads())
        return dq, dk, dvv, None, None, None


def _bias(mask: Tensor | None, shape: tuple[int, int, int, int]) -> Tensor | None:
    """The mask as an additive fp32 bias broadcast (stride 0, no copy of the expansion) to ``shape``."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        bias = torch.zeros(mask.shape).masked_fill_(~mask, float("-inf"))
    else:
        bias = mask.detach().float()
    while bias.ndim < 4:
        bias = bias.unsqueeze(0)
    return bias.expand(shape)


def fused_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, causal: bool = False,
                    scale: float | None = None) -> Tensor:
    """Exact ``softmax(q k^T * scale + mask) v`` with the kernel: the contract of
    :func:`spacetime.ops.attention` with ``backend="fused"`` (which validates the arguments).

    Raises ``RuntimeError`` when the kernel is not available and ``ValueError`` when
    :func:`unsupported` names a reason.
    """
    if _load() is None:
        raise RuntimeError(f"the fused attention kernel is not available: {_error}")
    reason = unsupported(q, k, v, mask)
    if reason is not None:
        raise ValueError(f"backend 'fused' {reason}")
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    q, k, v = (_rows(t) for t in (q, k, v))
    bias = _bias(mask, (q.shape[0], q.shape[1], q.shape[2], k.shape[2]))
    return _Fused.apply(q, k, v, bias, bool(causal), scale)
