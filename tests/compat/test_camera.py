"""Text 002's CameraCrossAttention loads the text's weights and keeps its (degenerate) semantics."""

import pytest
import torch
from torch import nn

from spacetime.compat import CameraCrossAttention
from spacetime.ops import use_backend
from tests.layers.test_camera_attention import randomize


class RefCamera002(nn.Module):
    """Text 002 written plainly: every pixel of frame t attends (multi-head, explicit softmax) to camera t."""

    def __init__(self, latent_dim, cam_dim, num_heads=8):
        super().__init__()
        self.num_heads = num_heads
        self.to_q = nn.Linear(latent_dim, latent_dim, bias=False)
        self.to_k = nn.Linear(cam_dim, latent_dim, bias=False)
        self.to_v = nn.Linear(cam_dim, latent_dim, bias=False)
        self.proj = nn.Linear(latent_dim, latent_dim)

    def forward(self, x, cam_features):  # (B, T, C, H, W), (B, T, D)
        B, T, C, H, W = x.shape
        d = C // self.num_heads
        out = torch.zeros(B, T, H, W, C)
        for b in range(B):
            for t in range(T):
                pixels = x[b, t].reshape(C, H * W).T  # (HW, C)
                q = self.to_q(pixels).reshape(H * W, self.num_heads, d)
                k = self.to_k(cam_features[b, t]).reshape(1, self.num_heads, d)
                v = self.to_v(cam_features[b, t]).reshape(1, self.num_heads, d)
                weights = (torch.einsum("nhd,mhd->hnm", q, k) / d**0.5).softmax(-1)
                out[b, t] = torch.einsum("hnm,mhd->nhd", weights, v).reshape(H, W, C)
        return self.proj(out).permute(0, 1, 4, 2, 3)


@pytest.mark.parametrize("args, shape", [
    ((16, 6, 4), (2, 3, 16, 5, 7)),
    ((16, 6), (1, 1, 16, 3, 3)),
    ((12, 7, 3), (2, 5, 12, 1, 2)),
])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_loads_the_texts_weights_and_equals_its_semantics(args, shape, mode):
    reference = randomize(RefCamera002(*args))
    ours = CameraCrossAttention(*args)
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert set(ours.state_dict()) == {"to_q.weight", "to_k.weight", "to_v.weight", "proj.weight", "proj.bias"}
    getattr(ours, mode)(), getattr(reference, mode)()
    x = torch.randn(shape)
    cams = torch.randn(shape[0], shape[1], args[1])
    with torch.no_grad():
        expected = reference(x, cams)
        torch.testing.assert_close(ours(x, cams), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours(x, cam_features=cams), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_trap_output_constant_over_pixels_and_no_query_key_gradient(backend):
    """Frame-local single-token attention: softmax == 1, output = proj(to_v(cam_t)) at every pixel."""
    module = randomize(CameraCrossAttention(16, 6, 4))
    assert module.degenerate
    x, cams = torch.randn(2, 4, 16, 5, 6, requires_grad=True), torch.randn(2, 4, 6)
    with use_backend(backend):
        out = module(x, cams)
    expected = module.proj(module.to_v(cams))[..., None, None]  # (B, T, C, 1, 1)
    torch.testing.assert_close(out, expected.expand_as(out), atol=1e-5, rtol=1e-5)
    assert torch.equal(out, out[..., :1, :1].expand_as(out))  # bitwise constant over H x W
    out.pow(2).sum().backward()
    scale = module.to_v.weight.grad.abs().max()
    assert scale > 0
    for p in (module.to_q.weight, module.to_k.weight, x):
        assert p.grad.abs().max() <= 1e-5 * scale  # zero up to the fused kernel's round-off
    if backend == "math":
        assert not module.to_q.weight.grad.any() and not module.to_k.weight.grad.any()
