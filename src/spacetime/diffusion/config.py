"""The configuration of a diffusion run: one small dataclass, saved as JSON beside every output."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..checks import fraction, int_at_least, int_in, is_number, number_in, one_of, positive_int
from ..config import Config
from ..data.bouncing import context_ceiling, frames_to_predict
from ..models.video_unet import PRESETS, VideoUNetConfig, check_motion_temperature
from .schedules import PREDICTIONS, SAMPLERS, SCHEDULES

__all__ = ["TrainConfig", "DATA_KINDS", "OBJECT_SIZES", "MEASURED", "CLIP_ENDS", "COPY_BLEND_SPANS", "LR_DECAYS",
           "FIELD_CHOICES", "DEMO_CONFIG", "DEMO_PRESETS"]

DATA_KINDS = ("disks", "digits", "mnist", "folder", "camera")
#: a ``model_overrides`` value measured from the training data when a run starts, and the fields that take it (with the
#: stand-in each is validated with before then)
MEASURED = "data"
MEASURED_FIELDS = {"motion_head": 1, "motion_fill": 0.0}
#: the generated data of bouncing objects, and the size of their objects when digit_size is None
OBJECT_SIZES = {"disks": 12, "digits": 16}
CLIP_ENDS = ("uniform", "first")
#: how far a copy blend reaches from the copy: the frame's share uniform in [0, 1], near the copy (within half a
#: pixel at the motion head's reach), or near it only in the clips that end at frame 1 (objective.copy_blend_max)
COPY_BLEND_SPANS = ("whole", "near", "near-first")
LR_DECAYS = ("steps", "time")
#: the fields of this module's own word lists, each with its words (the command line's choices)
FIELD_CHOICES = {"data": DATA_KINDS, "clip_ends": CLIP_ENDS, "copy_blend_span": COPY_BLEND_SPANS, "lr_decay": LR_DECAYS}


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
    digit_size: int | None = None  # disks: the disk's size (None: text 004's 12); digits: None (16 px)
    objects: int = 1  # disks: 1-3 disks per video; digits: 1-2 digits
    channels: int = 1
    max_speed: float = 2.0  # top speed per axis, pixels per frame (disks/digits: an int 1-4; camera: any > 0)
    num_videos: int | None = None  # disks/camera: distinct training videos (None: fresh ones; text 004 uses 512)
    # diffusion
    timesteps: int = 1000
    schedule: str = "cosine"
    prediction: str = "v_prediction"
    noise_shift: float = 1.0  # divide the schedule's SNR by noise_shift**2 (schedules.shift_betas)
    # > 0: a next-frame model: it learns to make one frame from the context_frames before it (clean; black
    # before the video starts), and sampling makes videos one frame at a time. The model gets known_frames.
    # "data" (generated data): the fewest frames that always determine the next under the data's law
    # (spacetime.data.bouncing.frames_to_predict: 3 above 1 px/frame), resolved when the config is made
    context_frames: int | str = 0
    clip_ends: str = "uniform"  # where next-frame training clips end: evenly, or "first" (frame 1 3/8 of the time)
    # next-frame models: the value of the context frames from before a video's start (-1: black, the data's
    # background; another value marks them apart from any real frame)
    lead_in: float = -1.0
    # next-frame, prediction "sample": this fraction of clips noise a blend of the frame and a copy of the one before
    copy_blend: float = 0.0
    # the frame's share in a copy blend: any ("whole"), near the copy ("near"), near it in clips ending at frame 1
    copy_blend_span: str = "whole"
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
        one_of("copy_blend_span", self.copy_blend_span, COPY_BLEND_SPANS)
        one_of("lr_decay", self.lr_decay, LR_DECAYS)
        for name in ("frames", "size", "steps", "batch_size", "timesteps", "log_every", "checkpoint_every",
                     "sample_steps", "num_samples", "channels"):
            positive_int(name, getattr(self, name))
        positive_int("num_videos", self.num_videos, none_ok=True, note=" (fresh videos)")
        int_at_least("warmup_steps", self.warmup_steps, 0)
        int_at_least("seed", self.seed, 0)
        if self.digit_size is not None:
            int_at_least("digit_size", self.digit_size, 2, note=" (or None: the data's own)")
        self._check_objects()
        self.context_frames = self._resolve_context()
        int_in("context_frames", self.context_frames, 0, self.frames, high_label=f"frames={self.frames}",
               note=" (0: whole videos; 'data': from the generated data's law)")
        number_in("lr", self.lr, 0, low_open=True)
        number_in("ema_decay", self.ema_decay, 0, 1, high_open=True)
        number_in("weight_decay", self.weight_decay, 0)
        number_in("grad_clip", self.grad_clip, 0, note=" (0: no clipping)")
        number_in("noise_shift", self.noise_shift, 0, low_open=True)
        number_in("max_speed", self.max_speed, 0, low_open=True, note=" (pixels per frame)")
        number_in("time_limit", self.time_limit, 0, low_open=True, none_ok=True, note=" (minutes)")
        number_in("guidance", self.guidance, 0, note=" (0: none)")
        fraction("guide_at", self.guide_at, open_ends=True, note=" of the sampled checkpoint's step")
        number_in("lead_in", self.lead_in, -1, 1, note=" (a pixel value)")
        if self.lead_in != -1 and not self.context_frames:
            raise ValueError(f"lead_in={self.lead_in} fills the context before a video's start: it needs "
                             f"context_frames >= 1 (a next-frame model)")
        fraction("copy_blend", self.copy_blend)
        fraction("move_blend", self.move_blend, 1 - self.copy_blend, high_label=f"1 - copy_blend={1 - self.copy_blend:g}")
        unet = self._unet_config(stand_ins=True)  # also validates the overrides
        check_motion_temperature(self.motion_temperature, unet.motion_head, "set model_overrides motion_head >= 1")
        self._check_data(unet)
        self._check_next_frame(unet)

    def _check_data(self, unet: VideoUNetConfig) -> None:
        if self.data in ("mnist", "folder") and not self.data_path:
            raise ValueError(f"data={self.data!r} needs data_path (a .npy file or a folder of videos)")
        if self.num_videos is not None and self.data not in ("disks", "digits", "camera"):
            raise ValueError(f"num_videos applies to the generated data (disks, digits, camera); data={self.data!r} "
                             f"has its own videos")
        if (self.data == "camera") != (unet.camera is not None):
            raise ValueError(f"data='camera' and a camera-conditioned model go together (model 'camera', or "
                             f"model_overrides {{'camera': 'world'|'plucker'}}); got data={self.data!r} with "
                             f"model {self.model!r} (camera={unet.camera!r})")
        if self.size % unet.downsample:
            raise ValueError(f"size must be a multiple of {unet.downsample} for model {self.model!r} (patch and "
                             f"levels); got size={self.size}")
        if self.lr_decay == "time" and self.time_limit is None:
            raise ValueError("lr_decay='time' decays the learning rate over time_limit minutes: set time_limit")

    def _check_objects(self) -> None:
        """The fields of the generated bouncing-object data: object size, count and top speed."""
        if self.data not in OBJECT_SIZES:
            # 12 was every saved config's digit_size before it could be None: such configs still load
            if self.objects != 1 or self.digit_size not in (None, OBJECT_SIZES["disks"]):
                raise ValueError(f"objects and digit_size describe generated data (disks, digits); data={self.data!r} "
                                 f"has its own videos: leave them at 1 and None; got objects={self.objects!r}, "
                                 f"digit_size={self.digit_size!r}")
            return
        int_in("objects", self.objects, 1, 4 if self.data == "disks" else 3, note=f" ({self.data})")
        if not is_number(self.max_speed) or self.max_speed != int(self.max_speed) or not 1 <= self.max_speed <= 4:
            raise ValueError(f"max_speed must be a whole number of pixels per frame in [1, 4] for data={self.data!r}; "
                             f"got {self.max_speed!r}")
        if self.data == "digits" and self.digit_size not in (None, OBJECT_SIZES["digits"]):
            raise ValueError(f"digit_size: data='digits' moves 16-px digits (8x8 handwriting upsampled 2x); leave "
                             f"digit_size None; got {self.digit_size}")
        if self.size <= self.object_size:
            raise ValueError(f"size must exceed the objects' size; got size={self.size}, "
                             f"{'digit_size' if self.data == 'disks' else 'digits of'} {self.object_size}")

    def _resolve_context(self) -> int:
        """``context_frames`` as a number: ``"data"`` becomes the fewest frames that determine the next under the
        generated data's law (:func:`~spacetime.data.bouncing.frames_to_predict`)."""
        if self.context_frames != MEASURED:
            return self.context_frames
        if self.data not in OBJECT_SIZES:
            raise ValueError(f"context_frames='data' reads the context a next frame needs from the law of generated "
                             f"data (disks, digits); data={self.data!r} has its own videos: give a number of frames")
        return frames_to_predict(self.size, self.object_size, int(self.max_speed))

    def context_note(self) -> str | None:
        """For a next-frame model of generated data, its context against the frames the data's law needs to
        determine the next one (:func:`~spacetime.data.bouncing.frames_to_predict`), and with fewer, the share of
        videos even a perfect model keeps lawful (:func:`~spacetime.data.bouncing.context_ceiling`); else ``None``."""
        if not self.context_frames or self.data not in OBJECT_SIZES:
            return None
        speed, k = int(self.max_speed), self.context_frames
        need = frames_to_predict(self.size, self.object_size, speed)
        if k >= need:
            return f"context: {k} frames (the data's law needs {need} to determine the next frame)"
        ceiling = context_ceiling(self.size, self.object_size, speed, self.frames, k, self.objects)
        return (f"context: {k} frames, fewer than the {need} that determine the next frame under the data's law: even "
                f"a perfect model keeps the law in only {ceiling:.1%} of {self.frames}-frame videos")

    @property
    def object_size(self) -> int | None:
        """The generated objects' side in pixels (``digit_size``, or the data's own), ``None`` for other data."""
        if self.data not in OBJECT_SIZES:
            return None
        return self.digit_size if self.digit_size is not None else OBJECT_SIZES[self.data]

    def _check_next_frame(self, unet: VideoUNetConfig) -> None:
        """The fields of next-frame models (context_frames >= 1) and their motion heads go together."""
        if self.context_frames and self.data == "camera":
            raise ValueError("context_frames (a next-frame model) does not take cameras yet; use data='disks', "
                             "'mnist' or 'folder' with it")
        if self.copy_blend and (not self.context_frames or self.prediction != "sample"):
            raise ValueError(f"copy_blend={self.copy_blend} blends a next frame with the one before it: it needs "
                             f"context_frames >= 1 and prediction='sample'; got context_frames={self.context_frames}, "
                             f"prediction={self.prediction!r}")
        if self.copy_blend and self.copy_blend_span != "whole" and not unet.motion_head:
            raise ValueError(f"copy_blend_span={self.copy_blend_span!r} keeps copy blends within half a pixel of the "
                             "copy at a motion head's reach: set model_overrides motion_head >= 1 (or 'data'), or "
                             "copy_blend_span='whole'")
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

    def measured_fields(self) -> list[str]:
        """The ``model_overrides`` set to ``"data"``: measured from the training data when a run starts
        (:func:`spacetime.diffusion.train.resolve_measured`; the run's saved config holds the numbers)."""
        return [name for name in MEASURED_FIELDS if self.model_overrides.get(name) == MEASURED]

    def unet_config(self) -> VideoUNetConfig:
        """The model's config: the preset with ``model_overrides`` (measured ones must be resolved first)."""
        return self._unet_config(stand_ins=False)

    def _unet_config(self, stand_ins: bool) -> VideoUNetConfig:
        base = PRESETS[self.model].to_dict()
        unknown = sorted(set(self.model_overrides) - set(base))
        if unknown:
            raise ValueError(f"model_overrides has unknown fields {unknown}; known: {sorted(base)}")
        overrides = dict(self.model_overrides)
        measured = self.measured_fields()
        if measured and not stand_ins:
            raise ValueError(f"model_overrides {measured} = 'data' are measured from the training data when a run "
                             f"starts: resolve them first (spacetime.diffusion.train.resolve_measured)")
        if measured and self.data == "camera":
            raise ValueError(f"model_overrides {measured} = 'data': measuring a motion head's reach and fill needs "
                             f"videos of moving objects; give numbers for data='camera'")
        overrides.update({name: MEASURED_FIELDS[name] for name in measured})  # validated with stand-ins
        extra = {"known_frames": True} if self.context_frames else {}
        return VideoUNetConfig.from_dict({**base, **overrides, "in_channels": self.channels, **extra})


#: the demo's recipe: sized to train, sample 32 videos and score them within 15 minutes on 2 CPU cores. A
#: next-frame model on 4x4 patches, 32 channels wide (twice the steps per minute of 64 on a slow machine), that makes
#: each frame from as many frames before it as the data's law needs to fix the next one (context_frames "data": 3
#: on text 004's disks, where two leave a bounce clamped at a wall open; spacetime.data.bouncing.frames_to_predict),
#: with a motion head (each pixel of the new frame a learned mix of the frame before it moved by up to the data's
#: top speed, or drawn afresh) that predicts the clean frame; a moved copy shows the data's background where it
#: comes from outside the frame, so an object leaving a wall leaves no smear. The head's reach and fill are
#: measured from the training data when the run starts (spacetime.data.statistics; 2 px and -1 on text 004's
#: disks). 3/8 of its training clips end at frame 1, where the motion is chosen, and half of them noise a blend of
#: the frame and a copy of the one before (copy_blend), a quarter blend it (the larger part) with the one before
#: moved by a random shift of the head's (move_blend); its learning rate decays over the 13 minutes (or 20000
#: steps on a fast machine); DDPM, not DDIM, samples it, with the head's choice sharpened (motion_temperature 0.7;
#: docs/motion.md).
DEMO_CONFIG = {"model": "patch4", "model_overrides": {"channels": [32, 32], "motion_head": MEASURED,
                                                     "motion_fill": MEASURED},
               "prediction": "sample",
               "context_frames": MEASURED, "clip_ends": "first", "copy_blend": 0.5, "move_blend": 0.25, "steps": 20000,
               "batch_size": 16, "lr": 2e-3, "lr_decay": "time", "checkpoint_every": 500, "time_limit": 13.0,
               "sampler": "ddpm", "sample_steps": 50, "motion_temperature": 0.7, "num_samples": 32}

#: harder data for the same recipe (``spacetime demo --preset NAME``): only the data and the time budget change;
#: the motion head's reach and fill follow the data (measured when the run starts)
DEMO_PRESETS = {
    "disks": {},
    "two-disks": {"objects": 2, "max_speed": 3.0, "time_limit": 27.0},
    "digits": {"data": "digits", "time_limit": 27.0},
}
