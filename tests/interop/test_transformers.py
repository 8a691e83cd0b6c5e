"""transformers' VideoMAE, TimeSformer and ViViT converted to spacetime: the same outputs, the same gradients, the
weights back; and spacetime's attention inside transformers' models (random-init models, nothing downloaded)."""

import pytest
import torch
from transformers import (
    TimesformerConfig,
    TimesformerForVideoClassification,
    TimesformerModel,
    VideoMAEConfig,
    VideoMAEForVideoClassification,
    VideoMAEModel,
    VivitConfig,
    VivitForVideoClassification,
    VivitModel,
    VJEPA2Config,
    VJEPA2Model,
)

from spacetime.interop.transformers import from_transformers, register_transformers, to_transformers_state_dict
from spacetime.interop.transformers_mapping import videomae_position_table
from spacetime.ops import use_backend

SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
#: (id, class, config): the real architectures' layouts scaled down, with odd shapes (frames not a power of two,
#: non-square frames, patch sizes other than 16, tubelets of 3 frames)
CASES = [
    ("videomae-cls", VideoMAEForVideoClassification,
     VideoMAEConfig(image_size=(32, 48), patch_size=8, num_frames=6, tubelet_size=2, num_labels=3, **SMALL)),
    ("videomae-base", VideoMAEModel,
     VideoMAEConfig(image_size=24, patch_size=4, num_frames=6, tubelet_size=3, **SMALL)),
    ("timesformer-divided-cls", TimesformerForVideoClassification,
     TimesformerConfig(image_size=32, patch_size=8, num_frames=5, num_labels=4, **SMALL)),
    ("timesformer-divided-base", TimesformerModel,
     TimesformerConfig(image_size=24, patch_size=4, num_frames=3, **SMALL)),
    ("timesformer-joint-cls", TimesformerForVideoClassification,
     TimesformerConfig(image_size=32, patch_size=8, num_frames=5, num_labels=3, attention_type="joint_space_time",
                       **SMALL)),
    ("vivit-cls", VivitForVideoClassification,
     VivitConfig(image_size=(32, 24), num_frames=6, tubelet_size=[2, 8, 8], num_labels=3, **SMALL)),
    ("vivit-base", VivitModel, VivitConfig(image_size=16, num_frames=6, tubelet_size=[3, 4, 4], **SMALL)),
]


def randomize(model, std=0.2, seed=0):
    """Random weights everywhere (norms, biases, tables), so that every tensor matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model.eval()


def clip(config, batch=2, seed=1):
    size = config.image_size if isinstance(config.image_size, (tuple, list)) else (config.image_size,) * 2
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, config.num_frames, config.num_channels, *size, generator=generator)


def output(model, x):
    out = model(x)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@pytest.mark.parametrize("name, cls, config", CASES, ids=[c[0] for c in CASES])
def test_converted_model_gives_the_originals_output_and_weights_back(name, cls, config):
    original = randomize(cls(config))
    converted = from_transformers(original)
    x = clip(config)
    with torch.no_grad():
        expected = output(original, x)
        for backend, tol in (("math", 1e-5), ("sdpa", 1e-4)):
            with use_backend(backend):
                got = converted(x)
            assert got.shape == expected.shape
            torch.testing.assert_close(got, expected, atol=tol * expected.abs().max().item(), rtol=tol)
    back = to_transformers_state_dict(converted)
    state = original.state_dict()
    assert set(back) == set(state)
    folded = {k for k in state if "temporal_attention.output.dense" in k or "temporal_dense" in k}
    assert all(torch.equal(back[k], state[k]) for k in state if k not in folded)  # every tensor exactly
    again = cls(config).eval()
    again.load_state_dict(back, strict=True)  # and TimeSformer's folded projection gives the same function
    with torch.no_grad():
        torch.testing.assert_close(output(again, x), expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-5)


def test_from_a_state_dict_and_its_config_dict():
    config = VivitConfig(image_size=16, num_frames=4, tubelet_size=[2, 8, 8], num_labels=2, **SMALL)
    original = randomize(VivitForVideoClassification(config))
    converted = from_transformers(original.state_dict(), config.to_dict())
    x = clip(config)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), original(x).logits, atol=1e-5, rtol=1e-5)
    assert converted.model_type == "vivit" and converted.output == "logits" and not converted.training


def test_gradients_equal_the_originals():
    config = TimesformerConfig(image_size=16, patch_size=8, num_frames=3, num_labels=3, **SMALL)
    original = randomize(TimesformerForVideoClassification(config))
    converted = from_transformers(original)
    x1, x2 = clip(config).requires_grad_(), clip(config).requires_grad_()
    weights = torch.randn(2, 3)
    (original(x1).logits * weights).sum().backward()
    with use_backend("math"):
        (converted(x2) * weights).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, atol=1e-5 * x1.grad.abs().max().item(), rtol=1e-5)
    theirs = dict(original.named_parameters())
    pairs = {"model.head.weight": "classifier.weight", "model.cls_token": "timesformer.embeddings.cls_token",
             "model.blocks.1.attn.1.attn.qkv.weight": "timesformer.encoder.layer.1.attention.attention.qkv.weight",
             "model.blocks.0.mlp.0.weight": "timesformer.encoder.layer.0.intermediate.dense.weight",
             "model.time_embed.weight": "timesformer.embeddings.time_embeddings"}
    ours = dict(converted.named_parameters())
    for mine, other in pairs.items():
        g, ref = ours[mine].grad, theirs[other].grad.reshape(ours[mine].shape)
        torch.testing.assert_close(g, ref, atol=1e-5 * ref.abs().max().item(), rtol=1e-5)


def test_videomae_position_table_is_the_originals():
    config = VideoMAEConfig(image_size=16, patch_size=8, num_frames=4, tubelet_size=2, **SMALL)
    table = VideoMAEModel(config).embeddings.position_embeddings[0]
    assert torch.equal(videomae_position_table(8, 32), table)


@pytest.mark.parametrize("make, error, message", [
    (lambda: from_transformers({}, {"model_type": "bert"}), ValueError,
     r"converts \['timesformer', 'videomae', 'vivit'\]"),
    (lambda: from_transformers(VideoMAEModel(VideoMAEConfig(use_mean_pooling=False, image_size=16, patch_size=8,
                                                            num_frames=2, **SMALL))),
     ValueError, "use_mean_pooling=False"),
    (lambda: from_transformers(TimesformerModel(TimesformerConfig(attention_type="space_only", image_size=16,
                                                                  patch_size=8, num_frames=2, **SMALL))),
     ValueError, "attention_type='space_only' is not supported"),
    (lambda: from_transformers(VivitModel(VivitConfig(hidden_act="relu", image_size=16, num_frames=2,
                                                      tubelet_size=[2, 8, 8], **SMALL))),
     ValueError, "hidden_act='relu' has no spacetime activation"),
    (lambda: from_transformers(VideoMAEModel(VideoMAEConfig(hidden_dropout_prob=0.1, image_size=16, patch_size=8,
                                                            num_frames=2, **SMALL))),
     ValueError, r"hidden_dropout_prob=0.1 \(dropout on the blocks' outputs\) has no spacetime counterpart"),
    (lambda: from_transformers({}), ValueError, "a state_dict needs the model's config"),
    (lambda: from_transformers(3), TypeError,
     "model must be a transformers model, a state_dict or a checkpoint folder"),
    (lambda: from_transformers("no/such/folder"), FileNotFoundError, "no config.json"),
])
def test_unsupported_models_and_options_are_refused_by_name(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_bad_state_dicts_name_the_key():
    config = VivitConfig(image_size=16, num_frames=2, tubelet_size=[2, 8, 8], **SMALL)
    state = VivitModel(config).state_dict()
    missing = {k: v for k, v in state.items() if k != "layers.1.mlp.fc1.weight"}
    with pytest.raises(ValueError, match=r"missing keys \['layers.1.mlp.fc1.weight'\]"):
        from_transformers(missing, config)
    with pytest.raises(ValueError, match=r"unexpected keys \['layers.9.extra'\]"):
        from_transformers({**state, "layers.9.extra": torch.zeros(1)}, config)
    wrong = {**state, "layers.0.mlp.fc2.weight": torch.zeros(32, 63)}
    expected = r"'layers.0.mlp.fc2.weight' has shape \(32, 63\); its config makes it \(32, 64\)"
    with pytest.raises(ValueError, match=expected):
        from_transformers(wrong, config)


def test_checkpoints_in_the_hubs_key_layout(tmp_path):
    """What save_pretrained writes (and the hub serves) is not the module's state_dict layout: VideoMAE's q_bias and
    v_bias, ViViT's encoder.layer.* names. Both a folder and its state_dict convert, with the same output."""
    from safetensors.torch import load_file

    for original in (randomize(VideoMAEForVideoClassification(
            VideoMAEConfig(image_size=16, patch_size=8, num_frames=4, tubelet_size=2, num_labels=2, **SMALL))),
            randomize(VivitModel(VivitConfig(image_size=16, num_frames=4, tubelet_size=[2, 8, 8], **SMALL)))):
        folder = tmp_path / original.config.model_type
        original.save_pretrained(folder)
        hub_state = load_file(folder / "model.safetensors")
        assert set(hub_state) != set(original.state_dict())  # the two layouts differ
        x = clip(original.config)
        with torch.no_grad():
            expected = output(original, x)
            for converted in (from_transformers(folder), from_transformers(hub_state, original.config.to_dict())):
                torch.testing.assert_close(converted(x), expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-5)


@pytest.mark.parametrize("cls, config", [
    (VideoMAEModel, VideoMAEConfig(image_size=(16, 24), patch_size=8, num_frames=4, tubelet_size=2, **SMALL)),
    (VivitModel, VivitConfig(image_size=16, num_frames=6, tubelet_size=[3, 8, 8], **SMALL)),
    (VJEPA2Model, VJEPA2Config(crop_size=16, frames_per_clip=4, patch_size=8, tubelet_size=2, hidden_size=32,
                               num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2.0, pred_hidden_size=32,
                               pred_num_hidden_layers=1, pred_num_attention_heads=2, pred_num_mask_tokens=2)),
])
def test_spacetime_attention_inside_transformers_models_equals_eager(cls, config):
    name = register_transformers()
    model = randomize(cls(config))
    frames = getattr(config, "frames_per_clip", getattr(config, "num_frames", 4))
    size = getattr(config, "crop_size", None) or config.image_size
    size = size if isinstance(size, (tuple, list)) else (size, size)
    x = torch.randn(2, frames, 3, *size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        model.set_attn_implementation("eager")
        expected = model(x).last_hidden_state
        model.set_attn_implementation(name)
        assert model.config._attn_implementation == name
        with use_backend("math"):
            got = model(x).last_hidden_state
        default = model(x).last_hidden_state
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(default, expected, atol=1e-4 * expected.abs().max().item(), rtol=1e-4)
