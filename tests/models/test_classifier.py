"""VideoTransformer: variants, encodings, frame masks, gradients, errors, compile."""

import pytest
import torch

from spacetime.models.classifier import PRESETS, VARIANTS, VideoTransformer, VideoTransformerConfig
from spacetime.ops import use_backend

SMALL = {"num_classes": 3, "in_channels": 2, "num_frames": 4, "image_size": 8, "tubelet": (1, 4, 4), "dim": 16,
         "depth": 2, "num_heads": 2, "temporal_depth": 1, "mlp_ratio": 2.0}
TIME = {"divided": ["learned", "sinusoidal", "rope"], "joint": ["learned", "rope"],
        "factorized_encoder": ["learned", "rope"], "space_only": ["none"]}
CASES = [(v, te) for v in VARIANTS for te in TIME[v]]


def make(**overrides):
    return VideoTransformer(VideoTransformerConfig(**{**SMALL, **overrides}))


@pytest.mark.parametrize("variant, time_encoding", CASES)
@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_every_parameter_receives_a_gradient(variant, time_encoding, pool):
    model = make(variant=variant, time_encoding=time_encoding, pool=pool)
    x = torch.randn(2, 2, 4, 8, 8)
    logits = model(x)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    logits.square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"parameters without a gradient: {missing}"


def test_drop_path_is_random_in_training_only():
    model = make(drop_path=0.5)
    x = torch.randn(4, 2, 4, 8, 8)
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("variant", VARIANTS)
def test_sdpa_equals_math_and_eval_is_deterministic(variant):
    model = make(variant=variant, drop_path=0.2).eval()
    x = torch.randn(2, 2, 4, 8, 8)
    with torch.no_grad():
        out = model(x)
        assert torch.equal(model(x), out)
        with use_backend("math"):
            torch.testing.assert_close(model(x), out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant, time_encoding", CASES)
@pytest.mark.parametrize("t", [1, 4, 12])
def test_any_number_of_frames(variant, time_encoding, t):
    """Built for 4 frames: T=1 and T larger than trained both run (learned tables are resampled)."""
    model = make(variant=variant, time_encoding=time_encoding).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 2, t, 8, 8))
    assert out.shape == (1, 3) and torch.isfinite(out).all()


@pytest.mark.parametrize("variant, time_encoding",
                         [("divided", "rope"), ("divided", "sinusoidal"), ("joint", "rope"),
                          ("factorized_encoder", "sinusoidal"), ("space_only", "none")])
def test_padded_batch_equals_each_clip_alone(variant, time_encoding):
    model = make(variant=variant, time_encoding=time_encoding, tubelet=(2, 4, 4), num_frames=8).eval()
    lengths = [8, 4, 2, 6]
    x = torch.randn(len(lengths), 2, 8, 8, 8)
    mask = torch.arange(8)[None, :] < torch.tensor(lengths)[:, None]
    with torch.no_grad():
        batch = model(x, frame_mask=mask)
        alone = torch.cat([model(x[i:i + 1, :, :n]) for i, n in enumerate(lengths)])
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-5)


def test_learned_time_table_is_used_as_is_at_the_built_length():
    model = make(time_encoding="learned")
    assert model.time_embed(4) is model.time_embed.weight
    assert model.time_embed(9).shape == (9, 16)


def test_space_only_cannot_see_frame_order():
    model = make(variant="space_only").eval()
    x = torch.randn(2, 2, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x.flip(2)), model(x), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(make(variant="divided").eval()(x.flip(2)), make(variant="divided").eval()(x))


def test_frame_order_matters_for_models_with_time():
    torch.manual_seed(1)
    for variant in ("divided", "joint", "factorized_encoder"):
        model = make(variant=variant, time_encoding="rope").eval()
        with torch.no_grad():
            for p in model.parameters():  # away from the near-uniform attention of the ViT init
                p.normal_(0.0, 0.3)
            x = torch.randn(2, 2, 4, 8, 8)
            assert (model(x.flip(2)) - model(x)).abs().max() > 1e-4, variant  # space_only: < 1e-5


def test_layouts():
    base = make(layout="bcthw")
    other = make(layout="btchw")
    other.load_state_dict(base.state_dict())
    x = torch.randn(2, 2, 4, 8, 8)
    torch.testing.assert_close(other(x.permute(0, 2, 1, 3, 4)), base(x), atol=1e-6, rtol=1e-6)


def test_presets_build_and_grow():
    sizes = {}
    for name in ("micro", "tiny"):
        model = VideoTransformer.from_preset(name, num_classes=5, image_size=32, num_frames=4, tubelet=(2, 16, 16))
        sizes[name] = sum(p.numel() for p in model.parameters())
        assert model.config.dim == PRESETS[name].dim
    assert sizes["micro"] < sizes["tiny"]
    with pytest.raises(ValueError, match="preset must be one of"):
        VideoTransformer.from_preset("huge")


def test_config_round_trips_through_a_dict():
    cfg = VideoTransformerConfig(**SMALL, variant="joint", time_encoding="rope", space_encoding="rope")
    assert cfg.rope == "thw"
    assert VideoTransformerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown VideoTransformerConfig keys"):
        VideoTransformerConfig.from_dict({**cfg.to_dict(), "depthh": 3})


@pytest.mark.parametrize("overrides, message", [
    ({"variant": "full"}, "variant must be one of"),
    ({"variant": "space_only", "time_encoding": "learned"}, "space_only.*no time encoding"),
    ({"space_encoding": "rope", "time_encoding": "learned"}, "needs time_encoding='rope'"),
    ({"time_encoding": "alibi"}, "time_encoding must be None or one of"),
    ({"pool": "max"}, "pool must be one of"),
    ({"dim": 15}, "divisible by num_heads"),
    ({"drop_path": 1.0}, r"drop_path must be a number in \[0, 1\); got 1.0"),
    ({"tubelet": (1, 0, 4)}, "tubelet must be"),
])
def test_bad_configs(overrides, message):
    with pytest.raises(ValueError, match=message):
        make(**overrides)


def test_bad_inputs():
    model = make(tubelet=(2, 4, 4))
    x = torch.randn(2, 2, 4, 8, 8)
    with pytest.raises(ValueError, match=r"frame_mask must have shape \(b, t\) = \(2, 4\)"):
        model(x, frame_mask=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="shorter than the tubelet"):
        model(torch.randn(2, 2, 1, 8, 8))
    with pytest.raises(ValueError, match="all real or all padding within each tubelet"):
        model(x, frame_mask=torch.tensor([[True, True, True, False], [True] * 4]))
    with pytest.raises(ValueError, match="expects dim=2"):
        model(torch.randn(2, 3, 4, 8, 8))
    with pytest.raises(ValueError, match="not a multiple of the tubelet"):
        model(torch.randn(2, 2, 4, 8, 6))


@pytest.mark.slow
def test_torch_compile_fullgraph():
    model = make(variant="divided", time_encoding="rope").eval()
    x = torch.randn(2, 2, 4, 8, 8)
    mask = torch.tensor([[True, True, False, False], [True] * 4])
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(compiled(x, frame_mask=mask), model(x, frame_mask=mask), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ["divided", "joint"])
def test_class_token_in_the_sequence(variant):
    model = make(variant=variant, pool="token", time_encoding="learned").eval()
    x = torch.randn(2, 2, 4, 8, 8)
    tokens = model.forward_tokens(x)
    assert tokens.shape == (2, 1 + 4 * 2 * 2, 16)
    torch.testing.assert_close(model.forward_features(x), tokens[:, 0])  # the normed class token is the read-out
    model.train()
    model(x).square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing and model.cls_token.grad.abs().sum() > 0


def test_flat_positions_norm_eps_and_no_head():
    model = make(variant="joint", space_encoding="flat", num_classes=0, norm_eps=1e-12, final_norm_eps=1e-6,
                 act="gelu_tanh", pool="mean")
    assert model.config.time_kind == "none" and model.time_embed is None
    assert tuple(model.space_embed.weight.shape) == (4, 2, 2, 16)  # one table over (t, h, w) tokens
    assert model.norm.eps == 1e-6 and model.blocks[0].norm_mlp.eps == 1e-12
    x = torch.randn(2, 2, 4, 8, 8)
    assert model(x).shape == (2, 16)  # no head: the pooled features
    torch.testing.assert_close(model(x), model.forward_features(x))
    assert model.forward_tokens(x).shape == (2, 16, 16)


@pytest.mark.parametrize("overrides, message", [
    ({"space_encoding": "flat", "time_encoding": "learned"}, "space_encoding='flat' .* carries time too"),
    ({"variant": "factorized_encoder", "pool": "token"}, "pool='token' .* 'divided' and 'joint'"),
    ({"num_classes": -1}, r"num_classes must be an int >= 0 \(0: no head\)"),
    ({"act": "swish"}, "act must be one of"),
    ({"norm_eps": 0}, "norm_eps must be a number > 0"),
])
def test_bad_new_configs(overrides, message):
    with pytest.raises(ValueError, match=message):
        make(**overrides)
