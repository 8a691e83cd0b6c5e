"""The "fused" C++ kernel: equal to "math" in fp64 (forward and gradients), the dispatch rule, and the
fallback when it cannot be built."""

import importlib
import os
import subprocess
import sys

import pytest
import torch

from spacetime.ops import attention
from spacetime.ops.attention import FUSED_MAX_HEAD_DIM, FUSED_MAX_LEN, select_backend

fused = importlib.import_module("spacetime.ops.fused_attention")
attention_module = importlib.import_module("spacetime.ops.attention")

needs_kernel = pytest.mark.skipif(not fused.available(), reason=f"kernel not built: {fused.build_error()}")

SHAPES = [  # (b, heads, n, m, d, dv)
    (1, 1, 1, 1, 8, 8),  # T = 1
    (2, 3, 7, 7, 16, 16),  # prime T
    (1, 2, 13, 5, 8, 8),  # n != m
    (3, 1, 11, 17, 32, 8),  # n != m, dv != d
    (2, 4, 16, 16, 32, 32),
    (1, 1, 32, 32, 64, 64),
    (1, 2, 67, 61, 8, 16),  # prime lengths over several query blocks
    (1, 1, 131, 131, 128, 128),
    (1, 1, 1031, 1031, 8, 8),  # small heads over a long (prime) sequence
    (37, 2, 8, 8, 8, 8),  # many sequences, split over threads
    (2, 19, 9, 5, 40, 24),  # one lane per sequence: a partial group, columns past the last whole lane block
    (1, 35, 32, 31, 48, 16),  # the longest sequences the lane path takes
    (2, 3, 45, 70, 16, 16),  # small heads, one lane per query (key): partial lane blocks, n != m
]
KINDS = ["none", "bool", "float", "causal", "causal+bool", "empty-rows"]


def make_mask(kind, b, heads, n, m):
    if "bool" in kind or kind == "empty-rows":
        mask = torch.rand(b, 1, n, m) > 0.3
        mask[..., 0] = True
        if kind == "empty-rows":
            mask[:, :, ::3] = False  # every third query sees no key: zeros, zero gradient
        return mask
    if kind == "float":
        return torch.randn(1, heads, n, m)
    return None


def run(backend, shape, kind, layout="contiguous", seed=0, dtype=torch.float32):
    b, heads, n, m, d, dv = shape
    g = torch.Generator().manual_seed(seed)
    if layout == "strided":  # (b, n, heads, d) storage seen as (b, heads, n, d): non-contiguous
        q, k, v = (torch.randn(b, length, heads, dim, generator=g).transpose(1, 2)
                   for length, dim in ((n, d), (m, d), (m, dv)))
    else:
        q, k, v = (torch.randn(b, heads, length, dim, generator=g) for length, dim in ((n, d), (m, d), (m, dv)))
    grad = torch.randn(b, heads, n, dv, generator=g)
    torch.manual_seed(seed)
    mask = make_mask(kind, b, heads, n, m)
    q, k, v = (x.to(dtype).requires_grad_() for x in (q, k, v))
    out = attention(q, k, v, mask=None if mask is None else mask.to(dtype) if mask.is_floating_point() else mask,
                    causal="causal" in kind, backend=backend)
    out.backward(grad.to(dtype))
    return [out, q.grad, k.grad, v.grad]


@needs_kernel
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", KINDS)
def test_fused_equals_math_in_fp64(shape, kind):
    got = run("fused", shape, kind)
    want = run("math", shape, kind, dtype=torch.float64)
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, want, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a.double(), b, atol=1e-5, rtol=1e-5, msg=lambda m: f"{name}: {m}")


@needs_kernel
@pytest.mark.parametrize("kind", ["none", "causal+bool"])
@pytest.mark.parametrize("shape", [(2, 3, 19, 19, 16, 16), (2, 37, 5, 7, 8, 16), (2, 3, 67, 40, 32, 32),
                                   (1, 3, 45, 45, 16, 16)], ids=lambda s: "x".join(map(str, s)))
def test_fused_reads_strided_inputs(kind, shape):
    # one shape per path: lanes, blocked with packed groups of heads side by side (a partial last group, a batch
    # boundary), blocked with longer rows, small heads
    got = run("fused", shape, kind, layout="strided")
    want = run("math", shape, kind, layout="strided", dtype=torch.float64)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a.double(), b, atol=1e-5, rtol=1e-5)


@needs_kernel
def test_empty_rows_are_zero_with_zero_gradient():
    out, dq, _, _ = run("fused", (1, 2, 9, 9, 8, 8), "empty-rows")
    assert torch.equal(out[:, :, ::3], torch.zeros_like(out[:, :, ::3]))
    assert torch.equal(dq[:, :, ::3], torch.zeros_like(dq[:, :, ::3]))


@needs_kernel
def test_causal_ignores_the_future_exactly():
    q, k, v = (torch.randn(2, 2, 12, 8) for _ in range(3))
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 6:] += 5.0
    v2[:, :, 6:] -= 3.0
    a = attention(q, k, v, causal=True, backend="fused")
    b = attention(q, k2, v2, causal=True, backend="fused")
    assert torch.equal(a[:, :, :6], b[:, :, :6])


@needs_kernel
def test_dispatch_rule_sends_small_heads_and_short_sequences_to_fused():
    def qk(n, d, strided=False):
        if strided:  # temporal attention's view: rows a frame apart
            return (torch.randn(1, n, 2, d).transpose(1, 2) for _ in range(2))
        return torch.randn(1, 2, n, d), torch.randn(1, 2, n, d)

    assert select_backend(*qk(1024, FUSED_MAX_HEAD_DIM)) == "fused"
    assert select_backend(*qk(16, 8)) == "fused"
    for strided in (False, True):
        assert select_backend(*qk(16, 32, strided)) == "fused"
        assert select_backend(*qk(FUSED_MAX_LEN, 64, strided)) == "fused"
        assert select_backend(*qk(FUSED_MAX_LEN + 1, 32, strided)) == "sdpa"
    threads = torch.get_num_threads()
    try:  # the rule does not depend on the thread count
        torch.set_num_threads(1)
        assert select_backend(*qk(16, 32, strided=True)) == "fused"
    finally:
        torch.set_num_threads(threads)
    assert select_backend(*qk(1024, 16)) == "fused"
    assert select_backend(*qk(1024, 24)) == "sdpa"
    assert select_backend(*qk(1024, 32)) == "sdpa"
    assert select_backend(*qk(32, 12, strided=True)) == "short"  # head dim not a multiple of 8
    assert select_backend(*qk(32, 32, strided=True), dropout_p=0.1) == "short"
    q, k = qk(32, 32, strided=True)
    assert select_backend(q, k, mask=torch.zeros(16, 16, requires_grad=True)) == "short"
    assert select_backend(q.double(), k.double()) == "sdpa"


def test_fused_backend_falls_back_where_the_kernel_cannot_serve():
    # dropout, a head dim of 12 and a mask with gradient run the torch path: same result as it
    q, k, v = (torch.randn(2, 2, 10, 12) for _ in range(3))
    torch.testing.assert_close(attention(q, k, v, backend="fused"), attention(q, k, v, backend="math"))
    mask = torch.randn(10, 10, requires_grad=True)
    out = attention(q, k, v, mask=mask, backend="fused")
    out.sum().backward()
    assert mask.grad is not None and mask.grad.abs().sum() > 0


def test_unsupported_names_the_reason():
    q = torch.randn(1, 1, 4, 12)
    assert "multiples of 8" in fused.unsupported(q, q, q)
    assert "fp32 CPU" in fused.unsupported(q.double(), q.double(), q.double())
    q8 = torch.randn(1, 1, 4, 8)
    assert "dropout" in fused.unsupported(q8, q8, q8, dropout_p=0.5)
    assert fused.unsupported(q8, q8, q8) is None


_FALLBACK_CHILD = """
import warnings, torch
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from spacetime.ops import attention
    from spacetime.ops.attention import select_backend
    import spacetime.ops.fused_attention as fused
    q, k, v = (torch.randn(2, 2, 16, 32) for _ in range(3))
    out = attention(q, k, v)
    out2 = attention(q, k, v, backend="fused")
want = attention(q, k, v, backend="math")
msgs = [str(w.message) for w in caught if "fused attention kernel" in str(w.message)]
print(len(msgs), select_backend(q, k), fused.available(), bool((out - want).abs().max() < 1e-5),
      bool((out2 - want).abs().max() < 1e-5))
print(msgs[0] if msgs else "")
"""


@pytest.mark.parametrize("how", ["no-compiler", "turned-off"])
def test_without_a_compiler_attention_falls_back_with_one_message(tmp_path, how):
    env = dict(os.environ, SPACETIME_KERNEL_CACHE=str(tmp_path / "cache"))
    if how == "no-compiler":
        env["CXX"] = str(tmp_path / "no-such-compiler")
    else:
        env["SPACETIME_NO_KERNEL"] = "1"
    proc = subprocess.run([sys.executable, "-c", _FALLBACK_CHILD], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    counts, reason = proc.stdout.splitlines()[:2]
    n_warnings, backend, avail, ok, ok_explicit = counts.split()
    assert (backend, avail, ok, ok_explicit) == ("short", "False", "True", "True")
    if how == "no-compiler":
        assert n_warnings == "1" and "could not be built" in reason and "no-such-compiler" in reason
    else:
        assert n_warnings == "0"  # asked for: no warning
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.so"))


def test_a_failed_compile_falls_back_with_the_compiler_message(tmp_path):
    bad = tmp_path / "cxx"
    bad.write_text("#!/bin/sh\necho 'error: this compiler refuses' >&2\nexit 1\n")
    bad.chmod(0o755)
    env = dict(os.environ, SPACETIME_KERNEL_CACHE=str(tmp_path / "cache"), CXX=str(bad))
    proc = subprocess.run([sys.executable, "-c", _FALLBACK_CHILD], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    counts, reason = proc.stdout.splitlines()[:2]
    assert counts.split()[0] == "1" and "this compiler refuses" in reason
    assert counts.split()[1:] == ["short", "False", "True", "True"]


_NARROW_CHILD = """
import torch
import spacetime.ops.fused_attention as fused
from spacetime.ops import attention
assert fused.available(), fused.build_error()
worst = 0.0
for b, h, n, m, d, causal in [(2, 19, 9, 5, 40, False), (1, 21, 16, 16, 32, True), (1, 2, 67, 61, 8, False)]:
    q, k, v = (torch.randn(b, h, t, d, dtype=torch.float64) for t in (n, m, m))
    g = torch.randn(b, h, n, d, dtype=torch.float64)
    outs = []
    for backend, dtype in (("fused", torch.float32), ("math", torch.float64)):
        x = [t.to(dtype).requires_grad_() for t in (q, k, v)]
        out = attention(*x, causal=causal, backend=backend)
        out.backward(g.to(dtype))
        outs.append([out.double(), *(t.grad.double() for t in x)])
    worst = max(worst, max(float((a - b).abs().max()) for a, b in zip(*outs)))
print(worst)
"""


def test_the_eight_lane_build_without_avx512_is_exact(tmp_path):
    # the kernel packs 16 sequences per vector with AVX-512 and 8 without: build the 8-lane one here
    cxx = tmp_path / "cxx"
    cxx.write_text(f'#!/bin/sh\nexec {os.environ.get("CXX", "c++")} "$@" -mno-avx512f\n')
    cxx.chmod(0o755)
    env = dict(os.environ, SPACETIME_KERNEL_CACHE=str(tmp_path / "cache"), CXX=str(cxx))
    proc = subprocess.run([sys.executable, "-c", _NARROW_CHILD], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout.split()[-1]) < 1e-5
