"""The "short" backend: equal to "math" (forward and gradients) and picked by the dispatch rule."""

import importlib

import pytest
import torch

from spacetime.ops import attention, use_backend
from spacetime.ops.attention import SHORT_MAX_LEN, select_backend

# the package re-exports the function `attention`, which shadows its module's name
attention_module = importlib.import_module("spacetime.ops.attention")
short_module = importlib.import_module("spacetime.ops.short_attention")

TOL = dict(atol=1e-5, rtol=1e-5)

SHAPES = [  # (b, heads, n, m, d, dv)
    (1, 1, 1, 1, 8, 8),  # T = 1
    (2, 3, 7, 7, 16, 16),  # prime T
    (1, 2, 13, 5, 4, 4),  # n != m
    (3, 1, 11, 17, 32, 8),  # n != m, dv != d
    (2, 4, 16, 16, 32, 32),
    (1, 1, 32, 32, 64, 64),
    (97, 2, 8, 8, 8, 8),  # many sequences
]
KINDS = ["none", "bool", "float", "causal", "causal+bool", "float-grad"]


def make_mask(kind, b, heads, n, m):
    if "bool" in kind:
        mask = torch.rand(b, 1, n, m) > 0.3
        mask[..., 0] = True  # every row keeps a key; empty rows have their own test
        return mask
    if kind.startswith("float"):
        return torch.randn(1, heads, n, m).requires_grad_(kind == "float-grad")
    return None


def run(backend, shape, kind, seed=0, dropout_p=0.0, dtype=torch.float32):
    """Output and gradients (q, k, v and a float mask if it wants one) under ``backend``."""
    b, heads, n, m, d, dv = shape
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(b, heads, x, d, generator=gen, dtype=dtype, requires_grad=True) for x in (n, m))
    v = torch.randn(b, heads, m, dv, generator=gen, dtype=dtype, requires_grad=True)
    torch.manual_seed(seed)
    mask = make_mask(kind, b, heads, n, m)
    torch.manual_seed(seed + 1)  # the dropout draw
    out = attention(q, k, v, mask=mask, causal=kind.startswith("causal"), backend=backend, dropout_p=dropout_p)
    grad = torch.randn(out.shape, generator=gen, dtype=dtype)
    leaves = [q, k, v] + ([mask] if mask is not None and mask.requires_grad else [])
    return [out, *torch.autograd.grad(out, leaves, grad)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
def test_equals_math_forward_and_gradients(shape, kind):
    for got, want in zip(run("short", shape, kind), run("math", shape, kind), strict=True):
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("mask_shape", [(6, 6), (1, 6, 6), (3, 1, 6, 6), (1, 2, 6, 6), (3, 2, 6, 6), (3, 2, 1, 6)])
def test_float_mask_broadcasts_and_gets_its_gradient(mask_shape):
    q, k, v = (torch.randn(3, 2, 6, 8) for _ in range(3))
    bias = torch.randn(mask_shape)
    results = []
    for backend in ("short", "math"):
        leaf = bias.clone().requires_grad_(True)
        out = attention(q, k, v, mask=leaf, backend=backend)
        results.append((out, torch.autograd.grad(out.square().sum(), leaf)[0]))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, **TOL)


def test_chunked_equals_one_chunk(monkeypatch):
    shape, kind = (37, 3, 6, 5, 8, 8), "causal+bool"
    whole = run("short", shape, kind)
    monkeypatch.setattr(short_module, "CHUNK_BYTES", 4 * 6 * 5 * 7)  # 7 sequences a chunk, last one short
    for got, want in zip(run("short", shape, kind), whole, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


def test_fully_masked_rows_give_zeros_and_zero_gradient():
    q, k, v = (torch.randn(2, 2, 5, 8, requires_grad=True) for _ in range(3))
    mask = torch.rand(2, 1, 5, 5) > 0.5
    mask[..., 0] = True
    mask[:, :, 1] = False  # query 1 sees nothing
    out = attention(q, k, v, mask=mask, backend="short")
    assert torch.isfinite(out).all() and (out[:, :, 1] == 0).all()
    torch.testing.assert_close(out, attention(q, k, v, mask=mask, backend="math"), **TOL)
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))
    assert (q.grad[:, :, 1] == 0).all()


def test_causal_ignores_the_future_bit_for_bit():
    q, k, v = (torch.randn(4, 2, 9, 16) for _ in range(3))
    before = attention(q, k, v, causal=True, backend="short")
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 6:] += 100.0 * torch.randn(4, 2, 3, 16)
    v2[:, :, 6:] += 100.0 * torch.randn(4, 2, 3, 16)
    after = attention(q, k2, v2, causal=True, backend="short")
    assert torch.equal(after[:, :, :6], before[:, :, :6])
    assert not torch.equal(after[:, :, 6:], before[:, :, 6:])


def test_large_logits_stay_exact():
    q, k, v = (torch.randn(5, 2, 12, 16) for _ in range(3))
    q = q * 40.0  # logits in the hundreds: the row maximum must be subtracted
    got = attention(q, k, v, backend="short")
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, attention(q, k, v, backend="math"), **TOL)


@pytest.mark.parametrize("kind", ["none", "causal+bool"])
def test_dropout_draws_like_math(kind):
    """Under one seed, dropout removes the same weights as the reference's F.dropout."""
    shape = (3, 2, 7, 7, 8, 8)
    for got, want in zip(run("short", shape, kind, dropout_p=0.3), run("math", shape, kind, dropout_p=0.3), strict=True):
        torch.testing.assert_close(got, want, **TOL)
    assert not torch.allclose(run("short", shape, kind, dropout_p=0.3)[0], run("short", shape, kind)[0])


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_other_dtypes_compute_in_fp32_like_math(dtype):
    shape = (2, 2, 6, 6, 8, 8)
    got, want = run("short", shape, "causal", dtype=dtype), run("math", shape, "causal", dtype=dtype)
    assert got[0].dtype == dtype
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **(TOL if dtype == torch.float64 else dict(atol=2e-2, rtol=2e-2)))


def qk(n, m, dtype=torch.float32, device="cpu"):
    return torch.randn(2, 2, n, 8, dtype=dtype, device=device), torch.randn(2, 2, m, 8, dtype=dtype, device=device)


def test_dispatch_rule_sends_short_fp32_cpu_sequences_to_short(monkeypatch):
    monkeypatch.setattr(attention_module._fused, "available", lambda: False)  # the rule without the C++ kernel
    assert select_backend(*qk(1, 1)) == "short"
    assert select_backend(*qk(SHORT_MAX_LEN, SHORT_MAX_LEN)) == "short"
    assert select_backend(*qk(SHORT_MAX_LEN + 1, 4)) == "sdpa"
    assert select_backend(*qk(4, SHORT_MAX_LEN + 1)) == "sdpa"
    assert select_backend(*qk(8, 8, dtype=torch.float64)) == "sdpa"
    assert select_backend(*qk(8, 8, device="meta")) == "sdpa"


def test_explicit_backends_and_defaults_override_the_rule(monkeypatch):
    monkeypatch.setattr(attention_module._fused, "available", lambda: False)
    q, k = qk(8, 8)
    assert select_backend(q, k, "sdpa") == "sdpa"
    assert select_backend(q, k, "math") == "math"
    with use_backend("sdpa"):
        assert select_backend(q, k) == "sdpa"
    with use_backend("short"):
        assert select_backend(*qk(64, 64)) == "short"
    assert select_backend(q, k) == "short"


def test_attention_without_backend_runs_the_selected_kernel(monkeypatch):
    monkeypatch.setattr(attention_module._fused, "available", lambda: False)
    calls = []
    for name in ("short", "sdpa"):
        real = attention_module._BACKENDS[name]
        monkeypatch.setitem(
            attention_module._BACKENDS, name, lambda *a, _n=name, _f=real: (calls.append(_n), _f(*a))[1]
        )
    q, k = qk(8, 8)
    attention(q, k, k)
    q, k = qk(40, 40)
    attention(q, k, k)
    q, k = qk(8, 8)
    attention(q, k, k, backend="sdpa")
    assert calls == ["short", "sdpa", "sdpa"]


def test_bad_input_and_unknown_backend_raise_value_error():
    q, k = qk(4, 4)
    with pytest.raises(ValueError, match="same length m"):
        attention(q, k, torch.randn(2, 2, 5, 8), backend="short")
    with pytest.raises(ValueError, match="'short'"):
        attention(q, k, k, backend="shrot")
    with pytest.raises(ValueError, match="dropout_p"):
        attention(q, k, k, backend="short", dropout_p=1.0)
