"""Camera cross-attention (text 002's and its options) and Plücker-ray injection."""

import pytest
import torch

from spacetime.compat import CameraCrossAttention
from spacetime.layers.attention import SpaceTimeAttention
from spacetime.layers.camera import CameraAttention, FourierCamera, PluckerInjection, RawCamera
from spacetime.ops import Temporal, use_backend
from spacetime.ops.camera import camera_to_world, intrinsics_from_fov, plucker_rays


def reference_camera_attention(module, x, cams, allowed):
    """Any reach and tokens, by a loop over query frames; ``allowed[i, j]``: frame i sees frame j's cameras."""
    B, T, H, W, C = x.shape
    heads, d = module.num_heads, module.head_dim
    tokens = module.tokens(cams)  # (B, T, P, E)
    out = torch.zeros(B, T, H, W, heads * d)
    for b in range(B):
        for i in range(T):
            keys = tokens[b, allowed[i]].reshape(-1, tokens.shape[-1])
            q = module.to_q(x[b, i].reshape(H * W, C)).reshape(H * W, heads, d)
            k = module.to_k(keys).reshape(-1, heads, d)
            v = module.to_v(keys).reshape(-1, heads, d)
            weights = (torch.einsum("nhd,mhd->hnm", q, k) * d**-0.5).softmax(-1)
            out[b, i] = torch.einsum("hnm,mhd->nhd", weights, v).reshape(H, W, heads * d)
    return module.proj(out)


def randomize(module, scale=0.5):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return module


MODES = [
    ("own", "fourier"), ("all", "raw"), ("all", "fourier"), ("causal", "raw"),
    (Temporal(window=1), "raw"), (Temporal(window=1), FourierCamera(num_bands=2, min_freq=0.5)),
    (Temporal(causal=True, window=1), "fourier"),
]


@pytest.mark.parametrize("reach, tokens", MODES, ids=[f"{r}-{t}" for r, t in MODES])
def test_non_degenerate_modes_vary_over_pixels_and_train_queries_and_keys(reach, tokens):
    module = CameraAttention(16, 6, 4, reach=reach, tokens=tokens, layout="btchw")
    assert not module.degenerate
    x, cams = torch.randn(2, 4, 16, 3, 5), torch.randn(2, 4, 6)
    out = module(x, cams)
    assert out.shape == x.shape and torch.isfinite(out).all()
    spread = (out - out[..., :1, :1]).abs().amax(dim=(0, 2, 3, 4))  # (T,) variation over pixels per frame
    keys = module.camera_mask(4).sum(-1)  # keys each frame sees
    assert (spread[keys > 1] > 1e-4).all()  # a frame with a choice of keys varies over pixels
    assert (spread[keys == 1] == 0).all()  # causal + raw: frame 0 has one key and is still constant
    out.pow(2).mean().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 1e-6, f"{name} got no gradient"


@pytest.mark.parametrize("reach, tokens", MODES + [("own", "raw")], ids=[f"{r}-{t}" for r, t in MODES] + ["own-raw"])
@pytest.mark.parametrize("shape", [(2, 4, 3, 5, 16), (1, 1, 2, 2, 16), (1, 5, 1, 3, 16)])
def test_reach_and_tokens_match_a_loop_reference_on_both_backends(reach, tokens, shape):
    module = randomize(CameraAttention(16, 5, 2, reach=reach, tokens=tokens), scale=0.3)
    x, cams = torch.randn(shape), torch.randn(shape[0], shape[1], 5)
    allowed = module.reach.dense_mask(shape[1], 1, 1)
    with torch.no_grad():
        expected = reference_camera_attention(module, x, cams, allowed)
        for backend in ("sdpa", "math"):
            with use_backend(backend):
                torch.testing.assert_close(module(x, cams), expected, atol=1e-5, rtol=1e-5)


def test_causal_reach_ignores_future_cameras_and_window_reach_is_local():
    x, cams = torch.randn(1, 6, 3, 3, 8), torch.randn(1, 6, 4)
    changed = cams.clone()
    changed[:, 4] += 1.0
    with torch.no_grad():
        causal = CameraAttention(8, 4, 2, reach="causal")
        diff = (causal(x, cams) - causal(x, changed)).abs().amax(dim=(0, 2, 3, 4))
        assert (diff[:4] == 0).all() and (diff[4:] > 0).all()
        local = CameraAttention(8, 4, 2, reach=Temporal(window=1))
        diff = (local(x, cams) - local(x, changed)).abs().amax(dim=(0, 2, 3, 4))
        assert (diff[[0, 1, 2]] == 0).all() and (diff[3:] > 0).all()


def test_fourier_tokens_are_features_of_each_parameter():
    cams = torch.tensor([[[0.5, -2.0, 1.0]]])
    tokens = FourierCamera(num_bands=3, min_freq=0.5)(cams)
    assert tokens.shape == (1, 1, 3, 2 * 3 + 1 + 3)
    freqs = torch.tensor([2.0, 1.0, 0.5])  # octaves from min_freq, highest first
    for i, value in enumerate(cams[0, 0]):
        expected = torch.cat([(value * freqs).sin(), (value * freqs).cos(), value[None], torch.eye(3)[i]])
        torch.testing.assert_close(tokens[0, 0, i], expected)
    assert RawCamera()(cams).shape == (1, 1, 1, 3)


def test_layouts_agree_and_eval_is_deterministic_with_dropout():
    module = CameraAttention(8, 3, 2, reach="all", tokens="fourier", attn_drop=0.5, proj_drop=0.5).eval()
    x, cams = torch.randn(2, 3, 4, 5, 8), torch.randn(2, 3, 3)
    with torch.no_grad():
        out = module(x, cams)
        assert torch.equal(out, module(x, cams))
        module.layout = "bcthw"
        torch.testing.assert_close(module(x.permute(0, 4, 1, 2, 3), cams), out.permute(0, 4, 1, 2, 3))
    module.train()
    assert not torch.equal(module(x.permute(0, 4, 1, 2, 3), cams), module(x.permute(0, 4, 1, 2, 3), cams))


def test_bad_inputs_name_the_argument():
    module = CameraCrossAttention(8, 6, 2)
    x = torch.randn(2, 3, 8, 4, 4)
    with pytest.raises(ValueError, match=r"cam_features has batch size B=1 but the video has B=2"):
        module(x, torch.randn(1, 3, 6))
    with pytest.raises(ValueError, match=r"cam_features has T=4 frames but the video has T=3"):
        module(x, torch.randn(2, 4, 6))
    with pytest.raises(ValueError, match=r"cam_features must have shape \(B, T, 6\)"):
        module(x, torch.randn(2, 3, 5))
    nan = torch.randn(2, 3, 6)
    nan[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="cam_features must be finite"):
        module(x, nan)
    with pytest.raises(ValueError, match="channels on axis 2"):
        module(torch.randn(2, 3, 4, 8, 8), torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match="reach"):
        CameraAttention(8, 6, 2, reach="future")
    with pytest.raises(ValueError, match="tokens"):
        CameraAttention(8, 6, 2, tokens="pixels")
    with pytest.raises(ValueError, match="divisible"):
        CameraCrossAttention(10, 6, 4)
    with pytest.raises(ValueError, match="cam_dim"):
        CameraAttention(8, 0, 2)


# --- Plücker injection -----------------------------------------------------------------------------


def rays_for(b, t, h, w):
    params = torch.randn(b, t, 6) * 0.3
    return plucker_rays(camera_to_world(params), intrinsics_from_fov(1.0, h, w), h, w)


@pytest.mark.parametrize("hidden_dim", [None, 12])
def test_plucker_injection_starts_as_identity_so_a_pretrained_model_is_unchanged(hidden_dim):
    pretrained = randomize(SpaceTimeAttention(16, 2, "joint", layout="btchw"))
    inject = PluckerInjection(16, hidden_dim=hidden_dim, layout="btchw")
    x, rays = torch.randn(2, 3, 16, 4, 5), rays_for(2, 3, 4, 5)
    assert torch.equal(inject(x, rays), x)
    with torch.no_grad():
        before = pretrained(x)
    out = pretrained(inject(x, rays))
    assert torch.equal(out, before)
    # it learns: one step moves the output, and by a camera-dependent amount
    out.pow(2).mean().backward()
    last = inject.proj if hidden_dim is None else inject.proj[-1]
    assert last.weight.grad.abs().max() > 0
    torch.optim.SGD(inject.parameters(), lr=0.1).step()
    with torch.no_grad():
        moved = inject(x, rays) - x
        assert moved.abs().max() > 0
        assert not torch.allclose(moved, inject(x, rays_for(2, 3, 4, 5)) - x)


def test_plucker_injection_errors():
    inject = PluckerInjection(8)
    x = torch.randn(1, 2, 4, 4, 8)
    with pytest.raises(ValueError, match=r"rays must match the video's \(B, T, H, W\)"):
        inject(x, rays_for(1, 2, 4, 5))
    with pytest.raises(ValueError, match=r"rays must match"):
        inject(x, rays_for(2, 2, 4, 4))
    with pytest.raises(ValueError, match=r"rays must have shape \(B, T, 6, H, W\)"):
        inject(x, torch.randn(1, 2, 3, 4, 4))
    bad = rays_for(1, 2, 4, 4)
    bad[0, 1, 2, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="rays must be finite"):
        inject(x, bad)
