"""The configuration of a diffusion run: one small dataclass, saved as JSON beside every output."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..checks import fraction, int_at_least, int_in, number_in, one_of, positive_int
from ..config import Config
from ..models.video_unet import PRESETS, VideoUNetConfig, check_motion_temperature
from .schedules import PREDICTIONS, SAMPLERS, SCHEDULES

__all__ = ["TrainConfig", "DATA_KINDS", "CLIP_ENDS", "LR_DECAYS", "DEMO_CONFIG"]

DATA_KINDS = ("disks", "mnist", "folder", "camera")
CLIP_ENDS = ("uniform", "first")
LR_DECAYS = ("steps", "time")


@dataclass
class TrainConfig(Config):
    """Everything ``spacetime train`` needs; every field is also a command-line flag.

    ``model`` names a preset of :data:`spacetime.models.video_unet.PRESETS`; ``model_overrides``
    changes its fields (``{"channels": [32, 64]}``). ``batch_size`` is the global batch, split
    evenly over the processes of a ``torchrun`` job.
    """

    # model
    model: str = "small"
    model_overrides: dict = field(default_factory=dict)
    # data
    data: str = "disks"
    data_path: str | None = None
    frames: int = 8
    size: int = 32
    digit_size: int = 12
    channels: int = 1
    max_speed: float = 2.0  # data="camera": top camera speed per axis, pixels per frame
    num_videos: int | None = None  # disks/camera: distinct training videos (None: fresh ones; text 004 uses 512)
    # diffusion
    timesteps: int = 1000
    schedule: str = "cosine"
    prediction: str = "v_prediction"
    noise_shift: float = 1.0  # divide the schedule's SNR by noise_shift**2 (schedules.shift_betas)
    # > 0: a next-frame model: it learns to make one frame from the context_frames before it (clean; black
    # before the video starts), and sampling makes videos one frame at a time. The model gets known_frames.
    context_frames: int = 0
    clip_ends: str = "uniform"  # where next-frame training clips end: evenly, or "first" (frame 1 3/8 of the time)
    # next-frame, prediction "sample": this fraction of clips noise a blend of the frame and a copy of the one before
    copy_blend: float = 0.0
    # motion-head next-frame models: this further fraction blends the frame (the larger part) with the frame before
    # moved by a random shift of the head's (objective.blend_last_frame)
    move_blend: float = 0.0
    # optimisation
    steps: int = 1000
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 50
    lr_decay: str = "steps"  # the cosine decay ends at `steps`; "time": at `steps` or `time_limit`, what comes first
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    # bookkeeping
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 200
    time_limit: float | None = None  # minutes of training, resumed parts included; stop (with a checkpoint) past it
    # sampling (used by demo and as sample's defaults)
    sampler: str = "ddim"
    sample_steps: int = 50
    num_samples: int = 32
    guidance: float = 0.0  # autoguidance weight (0: none); the guide is the run's checkpoint nearest guide_at
    motion_temperature: float = 1.0  # a motion head's logits are divided by this when sampling
    guide_at: float = 0.33  # the guide's step as a fraction of the sampled checkpoint's

    def __post_init__(self):
        one_of("model", self.model, PRESETS)
        one_of("data", self.data, DATA_KINDS)
        one_of("schedule", self.schedule, SCHEDULES)
        one_of("prediction", self.prediction, PREDICTIONS)
        one_of("sampler", self.sampler, SAMPLERS)
        one_of("clip_ends", self.clip_ends, CLIP_ENDS)
        one_of("lr_decay", self.lr_decay, LR_DECAYS)
        for name in ("frames", "size", "steps", "batch_size", "timesteps", "log_every", "checkpoint_every",
                     "sample_steps", "num_samples", "channels"):
            positive_int(name, getattr(self, name))
        positive_int("num_videos", self.num_videos, none_ok=True, note=" (fresh videos)")
        int_at_least("warmup_steps", self.warmup_steps, 0)
        int_at_least("seed", self.seed, 0)
        int_at_least("digit_size", self.digit_size, 2)
        int_in("context_frames", self.context_frames, 0, self.frames, high_label=f"frames={self.frames}",
               note=" (0: whole videos)")
        number_in("lr", self.lr, 0, low_open=True)
        number_in("ema_decay", self.ema_decay, 0, 1, high_open=True)
        number_in("weight_decay", self.weight_decay, 0)
        number_in("grad_clip", self.grad_clip, 0, note=" (0: no clipping)")
        number_in("noise_shift", self.noise_shift, 0, low_open=True)
        number_in("max_speed", self.max_speed, 0, low_open=True, note=" (pixels per frame)")
        number_in("time_limit", self.time_limit, 0, low_open=True, none_ok=True, note=" (minutes)")
        number_in("guidance", self.guidance, 0, note=" (0: none)")
        fraction("guide_at", self.guide_at, open_ends=True, note=" of the sampled checkpoint's step")
        fraction("copy_blend", self.copy_blend)
        fraction("move_blend", self.move_blend, 1 - self.copy_blend, high_label=f"1 - copy_blend={1 - self.copy_blend:g}")
        unet = self.unet_config()  # also validates the overrides
        check_motion_temperature(self.motion_temperature, unet.motion_head, "set model_overrides motion_head >= 1")
        self._check_data(unet)
        self._check_next_frame(unet)

    def _check_data(self, unet: VideoUNetConfig) -> None:
        if self.data in ("mnist", "folder") and not self.data_path:
            raise ValueError(f"data={self.data!r} needs data_path (a .npy file or a folder of videos)")
        if self.num_videos is not None and self.data not in ("disks", "camera"):
            raise ValueError(f"num_videos applies to the generated data (disks, camera); data={self.data!r} has its "
                             f"own videos")
        if (self.data == "camera") != (unet.camera is not None):
            raise ValueError(f"data='camera' and a camera-conditioned model go together (model 'camera', or "
                             f"model_overrides {{'camera': 'world'|'plucker'}}); got data={self.data!r} with "
                             f"model {self.model!r} (camera={unet.camera!r})")
        if self.size % unet.downsample:
            raise ValueError(f"size must be a multiple of {unet.downsample} for model {self.model!r} (patch and "
                             f"levels); got size={self.size}")
        if self.data == "disks" and self.size <= self.digit_size:
            raise ValueError(f"size must exceed digit_size; got size={self.size}, digit_size={self.digit_size}")
        if self.lr_decay == "time" and self.time_limit is None:
            raise ValueError("lr_decay='time' decays the learning rate over time_limit minutes: set time_limit")

    def _check_next_frame(self, unet: VideoUNetConfig) -> None:
        """The fields of next-frame models (context_frames >= 1) and their motion heads go together."""
        if self.context_frames and self.data == "camera":
            raise ValueError("context_frames (a next-frame model) does not take cameras yet; use data='disks', "
                             "'mnist' or 'folder' with it")
        if self.copy_blend and (not self.context_frames or self.prediction != "sample"):
            raise ValueError(f"copy_blend={self.copy_blend} blends a next frame with the one before it: it needs "
                             f"context_frames >= 1 and prediction='sample'; got context_frames={self.context_frames}, "
                             f"prediction={self.prediction!r}")
        if self.move_blend and (not self.context_frames or not unet.motion_head):
            raise ValueError(f"move_blend={self.move_blend} blends a next frame with moved copies of the one before "
                             f"it: it needs context_frames >= 1 and model_overrides motion_head >= 1; got "
                             f"context_frames={self.context_frames}, motion_head={unet.motion_head}")
        if unet.motion_head and self.prediction != "sample":
            raise ValueError(f"model_overrides motion_head={unet.motion_head} makes the network draw the clean frame: "
                             f"set prediction='sample'; got prediction={self.prediction!r}")
        if unet.known_frames and not self.context_frames:
            raise ValueError("model_overrides known_frames=True makes a next-frame model: set context_frames >= 1 "
                             "(the frames it sees before the one it makes) instead")

    def unet_config(self) -> VideoUNetConfig:
        base = PRESETS[self.model].to_dict()
        unknown = sorted(set(self.model_overrides) - set(base))
        if unknown:
            raise ValueError(f"model_overrides has unknown fields {unknown}; known: {sorted(base)}")
        extra = {"known_frames": True} if self.context_frames else {}
        return VideoUNetConfig.from_dict({**base, **self.model_overrides, "in_channels": self.channels, **extra})


#: the demo's recipe: sized to train, sample 32 videos and score them within 15 minutes on 2 CPU cores. A
#: next-frame model (each frame made from the two before it) on 4x4 patches, 32 channels wide (twice the steps
#: per minute of 64 on a slow machine), with a motion head (each pixel of the new frame a learned mix of the
#: frame before it moved by up to 2 px, or drawn afresh) that predicts the clean frame; a moved copy shows black
#: where it comes from outside the frame (motion_fill -1), so a disk leaving a wall leaves no smear. 3/8 of its
#: training clips end at frame 1, where the motion is chosen, and half of them noise a blend of the frame and a
#: copy of the one before (copy_blend), a quarter blend it (the larger part) with the one before moved by a random
#: shift of the head's (move_blend); its learning rate decays over the 13 minutes (or 20000 steps on a fast
#: machine); DDPM, not DDIM, samples it, with the head's choice sharpened (motion_temperature 0.7; docs/motion.md).
DEMO_CONFIG = {"model": "patch4", "model_overrides": {"channels": [32, 32], "motion_head": 2, "motion_fill": -1.0},
               "prediction": "sample",
               "context_frames": 2, "clip_ends": "first", "copy_blend": 0.5, "move_blend": 0.25, "steps": 20000,
               "batch_size": 16, "lr": 2e-3, "lr_decay": "time", "checkpoint_every": 500, "time_limit": 13.0,
               "sampler": "ddpm", "sample_steps": 50, "motion_temperature": 0.7, "num_samples": 32}
