"""VideoUNetConfig(rope=...): rotary positions in the U-Net's attention stages."""

import dataclasses

import pytest
import torch

from spacetime.models.video_unet import PRESETS, VideoUNet, VideoUNetConfig


def _model(rope):
    torch.manual_seed(0)
    model = VideoUNet(dataclasses.replace(PRESETS["tiny"], attention=["joint", "joint"], temporal_kernel=1, rope=rope))
    for name, p in model.named_parameters():  # undo the zero inits, but keep the additive positions off
        if name.endswith("pos.weight"):
            torch.nn.init.zeros_(p)
        else:  # large q, k weights: peaked attention, so positions show in the output
            torch.nn.init.normal_(p, std=0.5 if name.endswith("qkv.weight") else 0.05)
    return model.eval()


def test_rope_gives_attention_the_frame_order():
    """Without additive positions, an attention stage treats frames as a set: flipping its input flips its
    output. Rotary frame positions break that symmetry; the parameters stay the same (checkpoints interchange)."""
    x = torch.randn(2, 32, 4, 2, 2)  # (b, c, t, h, w) at the tiny preset's attention level
    plain = _model(None)
    stage = plain.down[1].attn[0]
    assert torch.allclose(stage(x.flip(2)), stage(x).flip(2), atol=1e-6)
    for rope in ("t", "thw"):
        model = _model(rope)
        assert model.state_dict().keys() == plain.state_dict().keys()
        model.load_state_dict(plain.state_dict())
        stage = model.down[1].attn[0]
        assert (stage(x.flip(2)) - stage(x).flip(2)).abs().max() > 1e-4  # 100x the tolerance above


def test_rope_round_trips_and_is_validated():
    cfg = dataclasses.replace(PRESETS["small"], rope="thw")
    assert VideoUNetConfig.from_dict(cfg.to_dict()) == cfg
    assert PRESETS["small"].rope is None  # the old models keep their behaviour
    with pytest.raises(ValueError, match="rope must be None or one of"):
        dataclasses.replace(PRESETS["tiny"], rope="xy")
