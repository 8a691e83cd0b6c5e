import dataclasses

import pytest
import torch
from torch import nn

from spacetime.models.video_unet import ATTENTION_CHOICES, PRESETS, VideoUNet, VideoUNetConfig
from spacetime.ops import use_backend


def tiny(**kw):
    return VideoUNet(dataclasses.replace(PRESETS["tiny"], **kw))


@pytest.mark.parametrize("attention", [[None, a] for a in ATTENTION_CHOICES] + [["temporal", "factorized"]])
def test_any_core_pattern_per_level(attention):
    model = tiny(attention=attention)
    x = torch.randn(2, 1, 3, 16, 24)
    out = model(x, torch.tensor([5, 900]))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_every_parameter_gets_a_gradient_and_math_equals_sdpa():
    model = tiny(attention=["joint", "factorized"], blocks=2)
    for p in model.parameters():  # undo the zero inits so every path carries signal
        torch.nn.init.normal_(p, std=0.05)
    x, t = torch.randn(2, 1, 4, 16, 16), torch.tensor([1, 500])
    out = model(x, t)
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing
    with use_backend("math"):
        ref = model(x, t)
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-4)


def test_frames_are_ordered_attention_knows_time():
    """Reversing the frames of the input is not the same as reversing the output (positions matter)."""
    model = tiny(attention=["joint", "joint"], temporal_kernel=1)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    model.eval()
    x, t = torch.randn(1, 1, 4, 16, 16), torch.tensor([10])
    assert not torch.allclose(model(x.flip(2), t), model(x, t).flip(2), atol=1e-4)


def test_eval_mode_is_deterministic_and_scalar_t():
    model = VideoUNet.from_preset("tiny").eval()
    x = torch.randn(2, 1, 2, 8, 8)
    assert torch.equal(model(x, torch.tensor(3)), model(x, torch.tensor([3, 3])))


def test_rgb_and_presets_build():
    model = VideoUNet.from_preset("tiny", in_channels=3)
    assert model(torch.randn(1, 3, 2, 8, 8), torch.tensor([0])).shape == (1, 3, 2, 8, 8)
    assert set(PRESETS) >= {"tiny", "small", "base"}
    assert VideoUNetConfig.from_dict(PRESETS["small"].to_dict()) == PRESETS["small"]


@pytest.mark.parametrize("kw, message", [
    ({"channels": [16, 30]}, "multiples of 8"),
    ({"attention": [None]}, "one entry per level"),
    ({"attention": [None, "diagonal"]}, "attention entries must be None or one of"),
    ({"temporal_kernel": 2}, "temporal_kernel must be odd"),
    ({"patch": 0}, "patch must be a positive int"),
])
def test_bad_config(kw, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(PRESETS["tiny"], **kw)


def test_bad_input():
    model = VideoUNet.from_preset("tiny")
    with pytest.raises(ValueError, match="H and W divisible by 8"):
        model(torch.randn(1, 1, 2, 12, 8), torch.tensor([1]))
    with pytest.raises(ValueError, match="channels on axis 1"):
        model(torch.randn(1, 3, 2, 8, 8), torch.tensor([1]))
    with pytest.raises(ValueError, match="t must be a scalar or a"):
        model(torch.randn(2, 1, 2, 8, 8), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="preset must be one of"):
        VideoUNet.from_preset("huge")
    with pytest.raises(ValueError, match="unknown VideoUNetConfig keys"):
        VideoUNetConfig.from_dict({"chanels": [8]})


def test_self_conditioning_takes_the_previous_estimate_and_zeros_by_default():
    model = tiny(self_condition=True)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x, t = torch.randn(2, 1, 3, 16, 16), torch.tensor([5, 600])
    assert torch.equal(model(x, t), model(x, t, x_self=torch.zeros_like(x)))
    assert not torch.allclose(model(x, t), model(x, t, x_self=torch.randn_like(x)), atol=1e-4)
    with pytest.raises(ValueError, match="x_self must have the shape of x"):
        model(x, t, x_self=x[:1])
    with pytest.raises(ValueError, match="not self-conditioned"):
        tiny()(x, t, x_self=x)


def test_pixel_stem_and_3d_convs_see_motion():
    """With a space-time stem or 3-D convs the output at frame 0 depends on frame 1 even without attention."""
    for kw in ({"pixel_stem": 4}, {"conv": "3d"}):
        model = tiny(attention=[None, None], **kw)
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.05)
        x, t = torch.randn(1, 1, 3, 16, 16), torch.tensor([10])
        y = x.clone()
        y[:, :, 1] += 1.0
        assert not torch.allclose(model(x, t)[:, :, 0], model(y, t)[:, :, 0], atol=1e-5), kw
    with pytest.raises(ValueError, match="conv must be"):
        VideoUNetConfig(conv="4d")
    with pytest.raises(ValueError, match="pixel_stem must be an int >= 0"):
        VideoUNetConfig(pixel_stem=-1)


def _motion_model(radius: int, pick: int, drawn: float = 0.0) -> VideoUNet:
    """A motion-head model whose output layers are all bias: mixing logit ``pick`` wins everywhere."""
    model = VideoUNet.from_preset("tiny", motion_head=radius)
    nn.init.zeros_(model.mix.weight), nn.init.zeros_(model.out.weight)
    bias = torch.zeros(model.num_shifts + 1, model.config.patch ** 2)
    bias[pick] = 40.0
    with torch.no_grad():
        model.mix.bias.copy_(bias.reshape(-1))
        model.out.bias.fill_(drawn)
    return model


def test_motion_head_moves_the_frame_before_or_draws_its_own():
    from spacetime.ops.motion import shift_offsets

    torch.manual_seed(0)
    x, t = torch.rand(2, 1, 3, 16, 16), torch.tensor([3, 700])
    k = shift_offsets(2).index((1, -2))  # one pixel right, two up
    out = _motion_model(2, k)(x, t)
    assert out.shape == x.shape
    for frame in (1, 2):  # each frame is the one before it, moved; interior pixels need no edge
        moved = torch.roll(x[:, :, frame - 1], (-2, 1), (-2, -1))
        torch.testing.assert_close(out[:, :, frame, 2:-2, 2:-2], moved[..., 2:-2, 2:-2])
    torch.testing.assert_close(out[:, :, 0, 2:-2, 2:-2], torch.roll(x[:, :, 0], (-2, 1), (-2, -1))[..., 2:-2, 2:-2])
    drawn = _motion_model(2, 25, drawn=0.3)(x, t)  # the last logit picks the network's own image
    torch.testing.assert_close(drawn, torch.full_like(x, 0.3))


def test_motion_fill_is_what_a_moved_copy_shows_from_outside_the_frame():
    from spacetime.ops.motion import shift_offsets

    torch.manual_seed(0)
    x, t = torch.rand(1, 1, 2, 16, 16), torch.tensor([10])
    k = shift_offsets(2).index((-2, 0))  # two pixels left: the last two columns come from outside the frame
    model = _motion_model(2, k)
    model.config.motion_fill = -1.0
    out = model(x, t)
    torch.testing.assert_close(out[0, 0, 1, :, -2:], torch.full((16, 2), -1.0))
    torch.testing.assert_close(out[0, 0, 1, :, :-2], x[0, 0, 0, :, 2:])
    model.config.motion_fill = None  # the edge column repeated
    torch.testing.assert_close(_motion_model(2, k)(x, t)[0, 0, 1, :, -2:], x[0, 0, 0, :, -1:].expand(16, 2))
    with pytest.raises(ValueError, match="motion_fill must be None .repeat the edge pixel. or a number .the "
                                         "background.; got 'black'"):
        VideoUNetConfig(motion_head=2, motion_fill="black")
    with pytest.raises(ValueError, match="motion_fill=-1 fills a motion head's moved copies: set motion_head >= 1"):
        VideoUNetConfig(motion_fill=-1)


def test_motion_head_is_a_softmax_mix_and_trains():
    torch.manual_seed(0)
    model = VideoUNet.from_preset("tiny", motion_head=1)
    for p in model.parameters():
        nn.init.normal_(p, std=0.05)
    with torch.no_grad():  # the drawn image's logit off: a convex mix of moved copies of the frame before
        model.mix.bias.view(-1, model.config.patch ** 2)[model.num_shifts] = -40.0
    x = torch.rand(2, 1, 3, 16, 16)
    out = model(x, torch.tensor([5, 50]))
    for frame in (1, 2):
        before = x[:, :, frame - 1]
        assert out[:, :, frame].min() >= before.min() - 1e-6 and out[:, :, frame].max() <= before.max() + 1e-6
    assert not torch.allclose(out[:, :, 1], x[:, :, 0])  # a mix, not one copy
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="motion_head must be an int >= 0 .*got -1"):
        VideoUNet.from_preset("tiny", motion_head=-1)


def test_motion_temperature_divides_the_head_logits():
    from spacetime.ops.motion import shifted_copies

    torch.manual_seed(0)
    model = _motion_model(1, 4)  # shift (0, 0)
    with torch.no_grad():  # two shifts a logit apart, the drawn image off
        bias = torch.full((model.num_shifts + 1, model.config.patch ** 2), -1000.0)
        bias[4], bias[5] = 1.0, 0.0  # (0, 0) and (1, 0)
        model.mix.bias.copy_(bias.reshape(-1))
    x, t = torch.rand(1, 1, 3, 16, 16), torch.tensor([500])
    moved = shifted_copies(x[:, :, 0], 1)[:, :, [4, 5]]  # frame 0 as it is and moved one pixel right

    def mix(temperature):
        w = torch.tensor([1.0, 0.0]).div(temperature).softmax(0)
        return (w[:, None, None] * moved[0, 0]).sum(0)

    for temperature in (1.0, 0.5, 4.0):
        out = model(x, t, motion_temperature=temperature)
        torch.testing.assert_close(out[0, 0, 1], mix(temperature))
    assert torch.equal(model(x, t), model(x, t, motion_temperature=1.0))
    with pytest.raises(ValueError, match=r"motion_temperature must be a number > 0 \(1: as trained\); got 0"):
        model(x, t, motion_temperature=0)
    with pytest.raises(ValueError, match="motion_temperature=0.5 scales a motion head's choice: this VideoUNet has "
                                         "none"):
        VideoUNet.from_preset("tiny")(x, t, motion_temperature=0.5)
