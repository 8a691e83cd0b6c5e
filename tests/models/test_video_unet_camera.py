"""Camera conditioning in VideoUNet: scene-space token positions ("world") and Plücker injection."""

import dataclasses

import pytest
import torch

from spacetime.data.camera_pan import cameras_from_positions
from spacetime.models.video_unet import PRESETS, VideoUNet, VideoUNetConfig


def model(camera, **kw):
    torch.manual_seed(0)
    net = VideoUNet(dataclasses.replace(PRESETS["tiny"], attention=[None, "joint"], rope="thw", camera=camera, **kw))
    for p in net.parameters():  # undo the zero inits so every path carries signal
        torch.nn.init.normal_(p, std=0.05)
    return net.eval()


def pan(b, t, step=(1.0, 0.5)):
    positions = torch.arange(t, dtype=torch.float32)[:, None] * torch.tensor(step)
    return cameras_from_positions(positions.expand(b, t, 2))


@pytest.mark.parametrize("camera", ["world", "plucker"])
def test_output_depends_on_the_cameras_and_only_relative_to_frame_0(camera):
    net = model(camera)
    x, t = torch.randn(2, 1, 4, 16, 16), torch.tensor([10, 700])
    cams = pan(2, 4)
    out = net(x, t, cams)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert not torch.allclose(out, net(x, t, pan(2, 4, step=(-1.0, 0.0))), atol=1e-4)
    moved = cams.clone()
    moved[..., 3:5] += torch.tensor([7.0, -3.0])  # the same path from another starting point
    assert torch.allclose(out, net(x, t, moved), atol=1e-4)


def test_world_positions_of_a_static_camera_are_the_grid():
    """A camera that never moves gives exactly the unconditioned computation of the same weights."""
    net = model("world")
    plain = VideoUNet(dataclasses.replace(net.config, camera=None))
    plain.load_state_dict(net.state_dict())
    x, t = torch.randn(2, 1, 3, 16, 16), torch.tensor([3, 400])
    static = cameras_from_positions(torch.zeros(2, 3, 2))
    assert torch.allclose(net(x, t, static), plain.eval()(x, t), atol=1e-5)


def test_plucker_starts_as_the_unconditioned_model():
    torch.manual_seed(0)
    net = VideoUNet(dataclasses.replace(PRESETS["tiny"], camera="plucker"))
    plain = VideoUNet(dataclasses.replace(PRESETS["tiny"], camera=None))
    missing = plain.load_state_dict(net.state_dict(), strict=False)
    assert not missing.missing_keys and all("plucker" in k for k in missing.unexpected_keys)
    x, t = torch.randn(1, 1, 3, 16, 16), torch.tensor([50])
    assert torch.equal(net(x, t, pan(1, 3)), plain(x, t))
    for p in (net.out.weight, *(m.conv2[-1].weight for m in net.modules() if hasattr(m, "conv2"))):
        torch.nn.init.normal_(p, std=0.05)  # past the network's own zero inits
    net(x, t, pan(1, 3)).square().sum().backward()  # the zero projections still learn
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in net.named_parameters() if "plucker" in n)


def test_world_mode_gives_attention_positions_a_gradient_path():
    net = model("world")
    x, t = torch.randn(1, 1, 3, 16, 16), torch.tensor([5])
    cams = pan(1, 3).requires_grad_(True)
    net(x, t, cams).square().sum().backward()
    assert cams.grad[..., 3:5].abs().sum() > 0


def test_bad_cameras_are_clear_errors():
    net = model("world")
    x, t = torch.randn(2, 1, 4, 16, 16), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="camera-conditioned.*pass cameras"):
        net(x, t)
    with pytest.raises(ValueError, match="cameras has batch size B=3 but the video has B=2"):
        net(x, t, pan(3, 4))
    with pytest.raises(ValueError, match="cameras has T=5 frames but the video has T=4"):
        net(x, t, pan(2, 5))
    nan = pan(2, 4)
    nan[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="cameras must be finite"):
        net(x, t, nan)
    turned = pan(2, 4)
    turned[0, 1, 1] = 0.1
    with pytest.raises(ValueError, match="yaw=0.1 at video 0, frame 1"):
        net(x, t, turned)
    with pytest.raises(ValueError, match="no camera conditioning"):
        VideoUNet.from_preset("tiny")(x, t, pan(2, 4))


def test_config_checks():
    with pytest.raises(ValueError, match="camera must be None or one of"):
        VideoUNetConfig(camera="rays")
    with pytest.raises(ValueError, match="at least one level attention"):
        VideoUNetConfig(attention=[None, None, None], camera="world")
    with pytest.raises(ValueError, match="camera_fov"):
        VideoUNetConfig(camera="plucker", camera_fov=0.0)
    assert VideoUNetConfig.from_dict(PRESETS["camera"].to_dict()) == PRESETS["camera"]
