"""The data a diffusion run trains on: bouncing disks and moving digits of any count and speed, and the motion
head's reach and fill measured from them."""

import pytest
import torch

from spacetime.data.bouncing import BouncingDisks
from spacetime.data.statistics import measure_motion
from spacetime.diffusion.config import DEMO_CONFIG, TrainConfig
from spacetime.diffusion.train import make_dataset, resolve_measured

NF = dict(model="tiny", frames=4, size=16, digit_size=6, context_frames=2, prediction="sample")


def test_generated_data_takes_objects_and_speed():
    data = make_dataset(TrainConfig(model="tiny", objects=3, max_speed=4.0))
    assert isinstance(data, BouncingDisks) and (data.objects, data.max_speed, data.digit_size) == (3, 4, 12)
    digits = make_dataset(TrainConfig(model="tiny", data="digits", objects=2, max_speed=3))
    assert (digits.objects, digits.max_speed) == (2, 3) and digits[0].shape == (1, 8, 32, 32)
    assert TrainConfig(data="digits").object_size == 16 and TrainConfig().object_size == 12
    assert TrainConfig(data="camera", model="camera").object_size is None


@pytest.mark.parametrize("fields, message", [
    ({"objects": 4}, r"objects must be an int in \[1, 4\) \(disks\); got 4"),
    ({"data": "digits", "objects": 3}, r"objects must be an int in \[1, 3\) \(digits\); got 3"),
    ({"max_speed": 2.5}, r"max_speed must be a whole number of pixels per frame in \[1, 4\] for data='disks'; got 2.5"),
    ({"max_speed": 5}, r"max_speed must be a whole number .*got 5"),
    ({"data": "digits", "digit_size": 12}, r"digit_size: data='digits' moves 16-px digits .* got 12"),
    ({"data": "digits", "size": 16}, r"size must exceed the objects' size; got size=16, digits of 16"),
    ({"data": "mnist", "data_path": "x.npy", "objects": 2}, r"objects and digit_size describe generated data"),
])
def test_bad_data_fields_are_named(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{"model": "tiny", **fields})


def test_measured_motion_head_resolves_to_the_data_s_speed_and_background():
    cfg = TrainConfig(**NF, max_speed=3, objects=2, model_overrides={"motion_head": "data", "motion_fill": "data"})
    with pytest.raises(ValueError, match=r"model_overrides \['motion_head', 'motion_fill'\] = 'data' are measured"):
        cfg.unet_config()
    resolved, stats = resolve_measured(cfg)
    assert resolved.unet_config().motion_head == 3 and resolved.unet_config().motion_fill == -1.0
    assert stats["reach"] == 3 and resolved.measured_fields() == []
    assert resolve_measured(resolved) == (resolved, None)  # nothing left to measure
    slow = resolve_measured(cfg.replace(max_speed=1, objects=1))[0]
    assert slow.unet_config().motion_head == 1
    with pytest.raises(ValueError, match=r"motion_head must be an int >= 0 \(0: none\); got .fast."):
        TrainConfig(**NF, model_overrides={"motion_head": "fast"})


def test_measure_motion_reads_a_gray_background_and_refuses_single_frames():
    class Gray(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            video = torch.full((1, 4, 16, 16), 0.5)
            for t in range(4):
                video[0, t, 4:8, 2 + t:6 + t] = 1.0  # a square moving 1 px/frame right
            return video

    stats = measure_motion(Gray())
    assert stats["reach"] == 1 and stats["fill"] == 0.0 and "reach 1 px" in stats.describe()
    with pytest.raises(ValueError, match="needs items .* with T >= 2"):
        measure_motion(BouncingDisks(num_frames=1))


def test_context_from_the_data_s_law():
    def context(**fields):
        return TrainConfig(**{"model": "tiny", "prediction": "sample", "context_frames": "data", **fields}).context_frames

    assert context() == 3  # text 004's disks: two frames leave a clamped bounce open
    assert context(max_speed=1) == 2 and context(data="digits", objects=2, max_speed=3) == 3
    saved = TrainConfig(model="tiny", prediction="sample", context_frames="data").to_dict()
    assert saved["context_frames"] == 3 and TrainConfig.from_dict(saved).context_frames == 3
    two = TrainConfig.from_dict({**DEMO_CONFIG, "context_frames": 2})
    assert two.context_note() == ("context: 2 frames, fewer than the 3 that determine the next frame under the data's "
                                  "law: even a perfect model keeps the law in only 76.6% of 8-frame videos")
    assert TrainConfig.from_dict(DEMO_CONFIG).context_note() == (  # the demo's: from the data
        "context: 3 frames (the data's law needs 3 to determine the next frame)")
    assert TrainConfig(model="tiny").context_note() is None
    with pytest.raises(ValueError, match=r"context_frames='data' reads .* data='mnist' has its own videos"):
        TrainConfig(model="tiny", data="mnist", data_path="x.npy", context_frames="data")
    with pytest.raises(ValueError, match=r"context_frames must be an int in \[0, frames=3\) .* got 3"):
        TrainConfig(model="tiny", frames=3, prediction="sample", context_frames="data")


def test_context_flag_takes_a_number_or_data():
    from spacetime.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["train", "--context-frames", "data"]).context_frames == "data"
    assert parse(["train", "--context-frames", "2"]).context_frames == 2
    with pytest.raises(SystemExit):
        parse(["train", "--context-frames", "three"])
