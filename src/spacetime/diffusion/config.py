"""The configuration of a diffusion run: one small dataclass, saved as JSON beside every output."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..models.configs import DictConfig
from ..models.video_unet import PRESETS, VideoUNetConfig
from .schedules import PREDICTIONS, SAMPLERS, SCHEDULES

__all__ = ["TrainConfig", "DATA_KINDS", "CLIP_ENDS", "LR_DECAYS", "load_config_file"]

DATA_KINDS = ("disks", "mnist", "folder", "camera")
CLIP_ENDS = ("uniform", "first")
LR_DECAYS = ("steps", "time")


@dataclass
class TrainConfig(DictConfig):
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
    # moved by a random shift of the head's (train.copy_blend)
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
        if self.model not in PRESETS:
            raise ValueError(f"model must be one of the presets {sorted(PRESETS)}; got {self.model!r}")
        if self.data not in DATA_KINDS:
            raise ValueError(f"data must be one of {DATA_KINDS}; got {self.data!r}")
        if self.data in ("mnist", "folder") and not self.data_path:
            raise ValueError(f"data={self.data!r} needs data_path (a .npy file or a folder of videos)")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}; got {self.schedule!r}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}; got {self.prediction!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}; got {self.sampler!r}")
        for name in ("frames", "size", "steps", "batch_size", "timesteps", "log_every", "checkpoint_every",
                     "sample_steps", "num_samples", "channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise ValueError(f"time_limit must be a positive number of minutes or None; got {self.time_limit!r}")
        if not isinstance(self.noise_shift, (int, float)) or isinstance(self.noise_shift, bool) \
                or not self.noise_shift > 0:
            raise ValueError(f"noise_shift must be a positive number; got {self.noise_shift!r}")
        if self.lr <= 0 or not 0 <= self.ema_decay < 1:
            raise ValueError(f"lr must be > 0 and ema_decay in [0, 1); got lr={self.lr}, ema_decay={self.ema_decay}")
        if isinstance(self.context_frames, bool) or not isinstance(self.context_frames, int) \
                or not 0 <= self.context_frames < self.frames:
            raise ValueError(f"context_frames must be an int in [0, frames={self.frames}) (0: whole videos); got "
                             f"{self.context_frames!r}")
        if isinstance(self.guidance, bool) or not isinstance(self.guidance, (int, float)) or not self.guidance >= 0:
            raise ValueError(f"guidance must be a number >= 0 (0: none); got {self.guidance!r}")
        if isinstance(self.motion_temperature, bool) or not isinstance(self.motion_temperature, (int, float)) \
                or not self.motion_temperature > 0:
            raise ValueError(f"motion_temperature must be a number > 0 (1: as trained); got "
                             f"{self.motion_temperature!r}")
        if not isinstance(self.guide_at, (int, float)) or not 0 < self.guide_at < 1:
            raise ValueError(f"guide_at must be a fraction in (0, 1) of the sampled checkpoint's step; got "
                             f"{self.guide_at!r}")
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"lr_decay must be one of {LR_DECAYS}; got {self.lr_decay!r}")
        if self.lr_decay == "time" and self.time_limit is None:
            raise ValueError("lr_decay='time' decays the learning rate over time_limit minutes: set time_limit")
        if self.clip_ends not in CLIP_ENDS:
            raise ValueError(f"clip_ends must be one of {CLIP_ENDS}; got {self.clip_ends!r}")
        if self.context_frames and self.data == "camera":
            raise ValueError("context_frames (a next-frame model) does not take cameras yet; use data='disks', "
                             "'mnist' or 'folder' with it")
        if isinstance(self.copy_blend, bool) or not isinstance(self.copy_blend, (int, float)) \
                or not 0 <= self.copy_blend <= 1:
            raise ValueError(f"copy_blend must be a fraction in [0, 1]; got {self.copy_blend!r}")
        if self.copy_blend and (not self.context_frames or self.prediction != "sample"):
            raise ValueError(f"copy_blend={self.copy_blend} blends a next frame with the one before it: it needs "
                             f"context_frames >= 1 and prediction='sample'; got context_frames={self.context_frames}, "
                             f"prediction={self.prediction!r}")
        unet = self.unet_config()  # also validates the overrides
        if isinstance(self.move_blend, bool) or not isinstance(self.move_blend, (int, float)) \
                or not 0 <= self.move_blend <= 1 - self.copy_blend:
            raise ValueError(f"move_blend must be a fraction in [0, 1 - copy_blend={1 - self.copy_blend:g}]; got "
                             f"{self.move_blend!r}")
        if self.move_blend and (not self.context_frames or not unet.motion_head):
            raise ValueError(f"move_blend={self.move_blend} blends a next frame with moved copies of the one before "
                             f"it: it needs context_frames >= 1 and model_overrides motion_head >= 1; got "
                             f"context_frames={self.context_frames}, motion_head={unet.motion_head}")
        if self.motion_temperature != 1 and not unet.motion_head:
            raise ValueError(f"motion_temperature={self.motion_temperature} scales a motion head's choice: set "
                             f"model_overrides motion_head >= 1")
        if unet.motion_head and self.prediction != "sample":
            raise ValueError(f"model_overrides motion_head={unet.motion_head} makes the network draw the clean frame: "
                             f"set prediction='sample'; got prediction={self.prediction!r}")
        if unet.known_frames and not self.context_frames:
            raise ValueError("model_overrides known_frames=True makes a next-frame model: set context_frames >= 1 "
                             "(the frames it sees before the one it makes) instead")
        if (self.data == "camera") != (unet.camera is not None):
            raise ValueError(f"data='camera' and a camera-conditioned model go together (model 'camera', or "
                             f"model_overrides {{'camera': 'world'|'plucker'}}); got data={self.data!r} with "
                             f"model {self.model!r} (camera={unet.camera!r})")
        if self.num_videos is not None and (isinstance(self.num_videos, bool) or not isinstance(self.num_videos, int)
                                            or self.num_videos < 1):
            raise ValueError(f"num_videos must be a positive int or None (fresh videos); got {self.num_videos!r}")
        if self.num_videos is not None and self.data not in ("disks", "camera"):
            raise ValueError(f"num_videos applies to the generated data (disks, camera); data={self.data!r} has its "
                             f"own videos")
        if not self.max_speed > 0:
            raise ValueError(f"max_speed must be > 0 (pixels per frame); got {self.max_speed!r}")
        down = unet.downsample
        if self.size % down:
            raise ValueError(f"size must be a multiple of {down} for model {self.model!r} (patch and levels); "
                             f"got size={self.size}")
        if self.data == "disks" and self.size <= self.digit_size:
            raise ValueError(f"size must exceed digit_size; got size={self.size}, digit_size={self.digit_size}")

    def unet_config(self) -> VideoUNetConfig:
        base = PRESETS[self.model].to_dict()
        unknown = sorted(set(self.model_overrides) - set(base))
        if unknown:
            raise ValueError(f"model_overrides has unknown fields {unknown}; known: {sorted(base)}")
        extra = {"known_frames": True} if self.context_frames else {}
        return VideoUNetConfig.from_dict({**base, **self.model_overrides, "in_channels": self.channels, **extra})

    def save(self, path) -> Path:
        from ..io.files import atomic_write_text

        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


def load_config_file(path) -> dict:
    """A JSON (``.json``) or YAML (``.yaml``/``.yml``) mapping of :class:`TrainConfig` fields."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path}: not found")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:
        raise ValueError(f"config file {path}: cannot parse: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path}: expected a mapping of config fields; got {type(data).__name__}")
    return data
