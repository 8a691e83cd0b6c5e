import pytest
import torch

from spacetime.ops import attention, available_backends, default_backend, use_backend

SHAPES = [  # (b, heads, n, m, d)
    (1, 1, 1, 1, 8),
    (2, 3, 7, 7, 16),
    (1, 2, 13, 5, 4),
    (3, 1, 17, 17, 32),
]


def qkv(b, heads, n, m, d, requires_grad=False):
    q = torch.randn(b, heads, n, d, requires_grad=requires_grad)
    k = torch.randn(b, heads, m, d, requires_grad=requires_grad)
    v = torch.randn(b, heads, m, d, requires_grad=requires_grad)
    return q, k, v


def explicit(q, k, v, keep=None):
    """Independent reference: a per-row softmax over the allowed keys (zeros when none)."""
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
    if keep is not None:
        scores = scores.masked_fill(~keep, float("-inf"))
    probs = torch.nan_to_num(scores.softmax(-1), nan=0.0)
    return probs @ v


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("backend", ["math", "sdpa"])
def test_matches_explicit_softmax(shape, backend):
    q, k, v = qkv(*shape)
    torch.testing.assert_close(attention(q, k, v, backend=backend), explicit(q, k, v), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["none", "bool", "float", "causal", "causal+bool"])
def test_sdpa_equals_math_forward_and_backward(shape, kind):
    b, heads, n, m, d = shape
    mask, causal = None, kind.startswith("causal")
    if "bool" in kind:
        mask = torch.rand(b, 1, n, m) > 0.3
    elif kind == "float":
        mask = torch.randn(1, heads, n, m)
    results = []
    for backend in ("math", "sdpa"):
        torch.manual_seed(1)
        q, k, v = qkv(*shape, requires_grad=True)
        out = attention(q, k, v, mask=mask, causal=causal, backend=backend)
        out.backward(torch.ones_like(out))
        results.append((out, q.grad, k.grad, v.grad))
    for a, b_ in zip(*results):
        torch.testing.assert_close(a, b_, atol=1e-5, rtol=1e-5)


def test_causal_is_top_left_aligned_lower_triangle():
    q, k, v = qkv(2, 2, 6, 6, 8)
    keep = torch.ones(6, 6, dtype=torch.bool).tril()
    for backend in available_backends():
        torch.testing.assert_close(attention(q, k, v, causal=True, backend=backend), explicit(q, k, v, keep), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["math", "sdpa"])
def test_fully_masked_rows_give_zeros_and_finite_grads(backend):
    q, k, v = qkv(2, 2, 5, 4, 8, requires_grad=True)
    mask = torch.rand(2, 1, 5, 4) > 0.5
    mask[:, :, 1] = False  # query 1 sees nothing
    mask[0, :, 3] = False
    out = attention(q, k, v, mask=mask, backend=backend)
    assert torch.isfinite(out).all()
    assert (out[:, :, 1] == 0).all() and (out[0, :, 3] == 0).all()
    torch.testing.assert_close(out, explicit(q, k, v, mask), atol=1e-5, rtol=1e-5)
    out.sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert (q.grad[:, :, 1] == 0).all()


def test_float_mask_with_all_minus_inf_row_gives_zeros():
    q, k, v = qkv(1, 1, 3, 3, 4)
    bias = torch.zeros(3, 3)
    bias[2] = float("-inf")
    for backend in available_backends():
        out = attention(q, k, v, mask=bias, backend=backend)
        assert (out[0, 0, 2] == 0).all() and torch.isfinite(out).all()


@pytest.mark.parametrize("backend", ["math", "sdpa"])
def test_split_equals_unsplit(backend):
    q, k, v = qkv(7, 3, 5, 5, 4)
    mask = torch.rand(7, 1, 5, 5) > 0.4
    whole = attention(q, k, v, mask=mask, backend=backend)
    for limit in (3, 4, 7, 20):
        split = attention(q, k, v, mask=mask, backend=backend, batch_limit=limit)
        assert torch.equal(split, whole) or torch.allclose(split, whole, atol=1e-6)


def test_default_limit_splits_a_batch_above_the_cuda_grid_limit():
    b = 66_000  # b * heads > 65,535: the size that crashes CUDA kernels in AnimateDiff/diffusers
    q, k, v = qkv(b, 1, 3, 3, 2)
    out = attention(q, k, v)
    torch.testing.assert_close(out, explicit(q, k, v), atol=1e-5, rtol=1e-5)


def test_use_backend_switches_and_restores():
    assert default_backend() == "sdpa"
    with use_backend("math"):
        assert default_backend() == "math"
    assert default_backend() == "sdpa"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: (torch.randn(1, 1, 4, 8), torch.randn(1, 1, 5, 8), torch.randn(1, 1, 4, 8)), "same length m"),
        (lambda: (torch.randn(1, 1, 4, 8), torch.randn(1, 1, 4, 8), torch.randn(1, 1, 4, 8).double()), "one dtype"),
        (lambda: (torch.ones(1, 1, 4, 8, dtype=torch.long),) * 3, "q must be floating point"),
        (lambda: (torch.randn(1, 1, 0, 8),) * 3, "non-empty"),
        (lambda: (torch.randn(1, 4, 8),) * 3, "(b, heads, n, d)"),
        (lambda: (torch.randn(1, 1, 4, 8), torch.randn(1, 1, 4, 4), torch.randn(1, 1, 4, 8)), "same head dim"),
        (lambda: (torch.randn(2, 1, 4, 8), torch.randn(1, 1, 4, 8), torch.randn(1, 1, 4, 8)), "same (b, heads)"),
    ],
)
def test_bad_inputs_raise_value_error(make, message):
    with pytest.raises(ValueError, match=__import__("re").escape(message)):
        attention(*make())


def test_bad_mask_and_backend_raise():
    q, k, v = qkv(1, 2, 4, 4, 8)
    with pytest.raises(ValueError, match="mask must broadcast"):
        attention(q, k, v, mask=torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must be bool"):
        attention(q, k, v, mask=torch.ones(4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="backend must be one of"):
        attention(q, k, v, backend="flash3")
    with pytest.raises(ValueError, match="batch_limit"):
        attention(q, k, v, batch_limit=0)
