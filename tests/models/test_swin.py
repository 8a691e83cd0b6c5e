"""VideoSwin: the presets are torchvision's swin3d_t/s/b in size, any clip size runs (padded as Video Swin pads), the
blocks shift every other window and drop paths linearly, patch merging is torchvision's, the two padding rules agree
where nothing is padded or clipped, and the model passes the battery every module passes."""

import json
import sys

import pytest
import torch

from spacetime.interop.torchvision import TORCHVISION_ARCHITECTURES
from spacetime.models import Model
from spacetime.models.swin import PRESETS, PatchMerging, VideoSwin, VideoSwinConfig, drop_path_rates
from spacetime.ops import use_backend
from tests.interop.test_torchvision import PACKAGE, tv  # noqa: F401  (tv: torchvision's video swin_transformer)

SMALL = {"num_classes": 5, "dim": 16, "depths": (2, 2), "num_heads": (2, 4), "window_size": (2, 3, 3)}


def small(**changes) -> VideoSwin:
    model = VideoSwin(VideoSwinConfig(**{**SMALL, **changes}))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():  # every tensor matters (the tables and biases start at zero or near it)
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return model.eval()


@pytest.mark.parametrize("preset, builder", [("tiny", "swin3d_t"), ("small", "swin3d_s"), ("base", "swin3d_b")])
def test_the_presets_are_torchvisions_sizes(tv, preset, builder):  # noqa: F811
    c = PRESETS[preset]
    kwargs = TORCHVISION_ARCHITECTURES[builder]
    assert (list(c.tubelet), c.dim, list(c.depths), list(c.num_heads), list(c.window_size), c.drop_path) == \
        (kwargs["patch_size"], kwargs["embed_dim"], kwargs["depths"], kwargs["num_heads"], kwargs["window_size"],
         kwargs["stochastic_depth_prob"])
    weights = getattr(tv, f"Swin3D_{builder[-1].upper()}_Weights").KINETICS400_V1
    assert c.num_classes == len(weights.meta["categories"])
    assert sum(p.numel() for p in VideoSwin(c).parameters()) == weights.meta["num_params"]


def test_the_battery():
    model = small()
    x = torch.randn(2, 3, 5, 22, 18, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 5) and out.dtype == torch.float32 and torch.isfinite(out).all()
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    silent = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert silent == []
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x), atol=0, rtol=0)
        with use_backend("math"):
            reference = model(x)
        with use_backend("sdpa"):
            torch.testing.assert_close(model(x), reference, atol=1e-5, rtol=1e-5)
    assert model.double()(x.double()).dtype == torch.float64


@pytest.mark.parametrize("shape", [(1, 3, 1, 8, 8), (2, 3, 7, 13, 30), (1, 3, 4, 4, 4)])
def test_any_clip_size_is_padded_to_tubelets(shape):
    model = small()
    x = torch.randn(*shape)
    t, h, w = shape[2:]
    padded = torch.zeros(shape[0], 3, t + t % 2, h + (-h) % 4, w + (-w) % 4)
    padded[:, :, :t, :h, :w] = x
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(padded), atol=0, rtol=0)


def test_every_layout_gives_the_same_logits():
    model = small()
    other = VideoSwin(model.config.replace(layout="bthwc"))
    other.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 5, 10, 14)
    with torch.no_grad():
        torch.testing.assert_close(other.eval()(x.permute(0, 2, 3, 4, 1)), model(x), atol=1e-6, rtol=1e-6)


def test_blocks_shift_every_other_window_and_drop_paths_rise_linearly():
    model = VideoSwin(VideoSwinConfig(**{**SMALL, "depths": (3, 2), "drop_path": 0.4}))
    shifts = [[block.attn.shift for block in stage] for stage in model.stages]
    assert shifts == [[(0, 0, 0), (1, 1, 1), (0, 0, 0)], [(0, 0, 0), (1, 1, 1)]]
    rates = [block.drop_path.p for stage in model.stages for block in stage]
    torch.testing.assert_close(torch.tensor(rates, dtype=torch.float64), torch.linspace(0, 0.4, 5, dtype=torch.float64))
    assert drop_path_rates(1, 0.3) == [0.0]
    widths = [stage[0].attn.dim for stage in model.stages]
    assert widths == [16, 32] and model.head.in_features == 32


def test_patch_merging_is_torchvisions(tv):  # noqa: F811
    image_swin = sys.modules[f"{PACKAGE}.models.swin_transformer"]  # loaded by the video one
    ours, theirs = PatchMerging(6), image_swin.PatchMerging(6).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    for shape in [(2, 3, 4, 6, 6), (1, 2, 5, 7, 6)]:  # even, and odd rows and columns (padded)
        x = torch.randn(*shape)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), theirs(x), atol=0, rtol=0)
        assert ours(x).shape == (*shape[:2], (shape[2] + 1) // 2, (shape[3] + 1) // 2, 12)


def test_both_padding_rules_agree_where_nothing_is_padded_or_clipped():
    spacetime_rules = small()
    torchvision_rules = VideoSwin(spacetime_rules.config.replace(padding="zeros", clipped_bias="leading"))
    torchvision_rules.load_state_dict(spacetime_rules.state_dict())
    x = torch.randn(1, 3, 8, 24, 24)  # token grids 4x6x6 then 4x3x3: multiples of the (2, 3, 3) window
    with torch.no_grad():
        torch.testing.assert_close(torchvision_rules.eval()(x), spacetime_rules(x), atol=1e-6, rtol=1e-6)
        x = torch.randn(1, 3, 6, 20, 28)  # 3x5x7: padded
        assert not torch.allclose(torchvision_rules(x), spacetime_rules(x), atol=1e-4)


def test_no_head_gives_the_pooled_features():
    model = small(num_classes=0)
    x = torch.randn(2, 3, 4, 12, 12)
    assert model(x).shape == (2, 32)
    torch.testing.assert_close(model(x), model.forward_features(x))


def test_config_round_trips_and_presets_take_changes(tmp_path):
    config = VideoSwinConfig(**SMALL)
    assert VideoSwinConfig.from_dict(config.to_dict()) == config
    config.save(tmp_path / "config.json")
    assert VideoSwinConfig.from_dict(json.loads((tmp_path / "config.json").read_text())) == config
    model = VideoSwin.from_preset("tiny", num_classes=10, depths=(2, 2), num_heads=(3, 6))
    assert isinstance(model, Model) and model.config.num_classes == 10 and len(model.stages) == 2


def test_config_errors_name_the_field():
    cases = [({"depths": (2, 2, 2)}, "depths and num_heads need one entry per stage"),
             ({"num_heads": (3, 4)}, "dim must be divisible by num_heads; got dim=16, num_heads=3"),
             ({"depths": ()}, "depths must be a non-empty sequence"),
             ({"depths": (2, 0)}, "depths must be a positive int"),
             ({"window_size": (2, 0, 3)}, "window_size must be an int or 3 ints"),
             ({"padding": "reflect"}, "padding must be one of"),
             ({"clipped_bias": "x"}, "clipped_bias must be one of"),
             ({"drop_path": 1.0}, "drop_path must be a number in"),
             ({"num_classes": -1}, "num_classes must be an int >= 0"),
             ({"layout": "bhwtc"}, "layout must be one of")]
    for change, message in cases:
        with pytest.raises(ValueError, match=message):
            VideoSwinConfig(**{**SMALL, **change})
    with pytest.raises(TypeError, match="config must be a VideoSwinConfig"):
        VideoSwin(PRESETS)
    with pytest.raises(ValueError, match="x in layout 'bcthw' has channels on axis 1 of size 4"):
        small()(torch.randn(1, 4, 2, 8, 8))
