"""A configurable video U-Net for diffusion: residual (2+1)-D conv blocks, attention where it pays.

``VideoUNet(VideoUNetConfig(...))`` or ``VideoUNet.from_preset("small")``. Input and output
``(B, C, T, H, W)``; ``forward(x, t)`` with ``t (B,)`` diffusion timesteps.

The stem folds ``patch x patch`` pixels into channels (pixel-unshuffle), so the first level already
works at a coarse grid; each further level halves H and W. Every level has ``blocks`` residual
blocks (GroupNorm, SiLU, a 3x3 spatial conv then a ``temporal_kernel`` conv over frames, the
timestep as a scale and shift); a level whose ``attention`` entry names a pattern adds a
pre-norm transformer block (:class:`~spacetime.blocks.TransformerBlock`) after each residual
block, with sinusoidal (frame, row, column) positions added first so attention knows where and
when each token is. ``"factorized"`` is spatial then temporal attention; the other names are the
core patterns (``"joint"``, ``"spatial"``, ``"temporal"``, ``"window"``, ``"cross_frame"``).
``rope="t"|"thw"`` also rotates queries and keys by frame (and row, column), so attention scores
depend on the offset between tokens: "the disk one frame later sits ``v`` pixels further" is the
same relation everywhere.

Known frames (``known_frames=True``, ``forward(x, t, known=mask)`` with a bool ``(B, T)`` mask): the
frames of ``x`` where the mask is set are given clean rather than noisy, and the mask enters as one
more input channel. A next-frame model (``TrainConfig.context_frames``) is trained on clips of
clean context frames and one noisy frame, and makes videos one frame at a time.

Motion head (``motion_head=r``, r > 0): instead of drawing each frame from nothing, the network
mixes it, pixel by pixel, from the frame before it (as given in ``x``) moved by every integer shift
of up to ``r`` pixels per axis (:func:`~spacetime.ops.motion.shifted_copies`), plus one image it
draws itself; a softmax over the ``(2r + 1)**2 + 1`` candidates, from a 1x1 conv on the last
features, sets the mix. The output is then the clean frame, so it is trained with
``prediction="sample"``. Carrying content along to where it moves is what video models must learn
first; here it is one choice per pixel, and a copy it makes is exact: a disk moved two pixels is
the same sharp disk. At high noise the mix is the average over the moves the context allows,
which is what the best denoiser gives for a frame whose motion is still open. Where a moved copy
reaches outside the frame it repeats the edge pixel, or shows ``motion_fill`` (the data's
background) if set, so that content leaving an edge leaves no smear of itself behind.

Camera conditioning (``camera=`` in the config, ``forward(x, t, cameras)`` with per-frame camera
vectors ``(B, T, 6) = (pitch, yaw, roll, tx, ty, tz)``, :mod:`spacetime.ops.camera`):

``"world"``
    every attention stage places its tokens where they sit in the scene rather than in the
    frame: the camera's image-plane translation relative to frame 0 (``tx, ty`` times
    ``camera_pixels`` pixels per unit) is added to each token's row and column, in the
    sinusoidal positions and, with ``rope="thw"``, in the rotary ones. Tokens that show the same
    point of the scene in different frames then share a position, and attention between them
    depends on their offset in the scene. For cameras that pan over a planar scene (pitch, yaw,
    roll and ``tz`` must be 0).
``"plucker"``
    per-pixel Plücker rays of each level's grid (:func:`~spacetime.ops.camera.plucker_rays`,
    cameras relative to frame 0, translation in frame widths, horizontal field of view
    ``camera_fov`` degrees) added at every level through zero-initialised projections
    (:class:`~spacetime.layers.camera.PluckerInjection`): any 6-DoF path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..blocks.unet import CONV_KINDS, AttentionStage, ResBlock, group_count
from ..checks import int_at_least, is_number, number_in, one_of, positive_int
from ..config import Config
from ..layers.camera import PluckerInjection
from ..layers.conv import Conv3d
from ..ops.camera import camera_to_world, check_cameras, intrinsics_from_fov, plucker_rays, relative_to_first
from ..ops.encodings import ROPE_AXES, sinusoidal_table
from ..ops.layout import check_video
from ..ops.motion import motion_mix
from ..ops.patterns import PATTERNS
from .base import Model

__all__ = ["VideoUNetConfig", "VideoUNet", "PRESETS", "ATTENTION_CHOICES", "CAMERA_MODES",
           "check_motion_temperature"]

ATTENTION_CHOICES = ("factorized", *PATTERNS)
#: how a VideoUNet takes cameras (see the module docstring); None: it takes none
CAMERA_MODES = ("world", "plucker")


@dataclass
class VideoUNetConfig(Config):
    """Shape of a :class:`VideoUNet`. Lists have one entry per level (finest first)."""

    in_channels: int = 1
    patch: int = 2
    channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    blocks: int = 1
    attention: list[str | None] = field(default_factory=lambda: [None, "joint", "joint"])
    head_dim: int = 16
    temporal_kernel: int = 3
    conv: str = "2+1d"  # residual convs: "2+1d" (3x3 in the frame, then over time) or "3d" (one k x 3 x 3 conv)
    pixel_stem: int = 0  # > 0: channels of a 3 x 5 x 5 space-time conv on the pixels before the patch fold
    self_condition: bool = False  # also take the previous estimate of the clean video as input (Chen et al.)
    known_frames: bool = False  # also take a (B, T) mask of frames given clean: generate the rest (module docstring)
    motion_head: int = 0  # > 0: each frame is a per-pixel mix of the frame before it moved by up to this many pixels
    motion_fill: float | None = None  # what a moved copy shows where it comes from outside the frame: None repeats
    # the edge pixel, a number is that value (the data's background: -1 for black in [-1, 1])
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    rope: str | None = None  # rotary positions in every attention stage: None, "t" or "thw"
    camera: str | None = None  # camera conditioning: None, "world" or "plucker" (module docstring)
    camera_pixels: float = 1.0  # "world": pixels of image-plane shift per unit of camera translation
    camera_fov: float = 60.0  # "plucker": horizontal field of view in degrees

    def __post_init__(self):
        self.channels, self.attention = list(self.channels), list(self.attention)
        for name in ("in_channels", "patch", "blocks", "head_dim", "temporal_kernel"):
            positive_int(name, getattr(self, name))
        int_at_least("pixel_stem", self.pixel_stem, 0, note=" (0: none)")
        int_at_least("motion_head", self.motion_head, 0, note=" (0: none)")
        one_of("conv", self.conv, CONV_KINDS)
        number_in("dropout", self.dropout, 0, 1, high_open=True)
        one_of("rope", self.rope, ROPE_AXES, none_ok=True)
        one_of("camera", self.camera, CAMERA_MODES, none_ok=True)
        number_in("camera_pixels", self.camera_pixels, 0, low_open=True)
        number_in("camera_fov", self.camera_fov, 0, 180, low_open=True, high_open=True, note=" degrees")
        self._check_levels()
        self._check_motion()

    def _check_levels(self) -> None:
        if self.temporal_kernel % 2 == 0:
            raise ValueError(f"temporal_kernel must be odd (same-length output); got {self.temporal_kernel}")
        if not self.channels or any(not isinstance(c, int) or c < 8 or c % 8 for c in self.channels):
            raise ValueError(f"channels must be a non-empty list of multiples of 8; got {self.channels!r}")
        if len(self.attention) != len(self.channels):
            raise ValueError(f"attention needs one entry per level ({len(self.channels)}); got {self.attention!r}")
        for a, c in zip(self.attention, self.channels):
            one_of("attention entries", a, ATTENTION_CHOICES, none_ok=True)
            if a is not None and c % self.head_dim:
                raise ValueError(f"channels {c} of an attention level must be a multiple of head_dim={self.head_dim}")
        if self.camera == "world" and not any(self.attention):
            raise ValueError("camera='world' moves the positions of attention tokens: give at least one level "
                             f"attention; got attention={self.attention!r}")

    def _check_motion(self) -> None:
        if self.motion_fill is not None and not is_number(self.motion_fill):
            raise ValueError(f"motion_fill must be None (repeat the edge pixel) or a number (the background); "
                             f"got {self.motion_fill!r}")
        if self.motion_fill is not None and not self.motion_head:
            raise ValueError(f"motion_fill={self.motion_fill} fills a motion head's moved copies: set motion_head >= 1")

    @property
    def downsample(self) -> int:
        """H and W must be multiples of this."""
        return self.patch * 2 ** (len(self.channels) - 1)


#: named configurations; "small" (the defaults) is the model of ``spacetime train``, "patch4" the demo's
PRESETS: dict[str, VideoUNetConfig] = {
    "tiny": VideoUNetConfig(patch=4, channels=[16, 32], attention=[None, "joint"], head_dim=16),
    "small": VideoUNetConfig(),
    # 4x4 patches: joint attention on the 8x8 grid from the first level; the demo's next-frame model
    "patch4": VideoUNetConfig(patch=4, channels=[64, 64], attention=["joint", "joint"]),
    "base": VideoUNetConfig(channels=[64, 128, 128], head_dim=32),
    "large": VideoUNetConfig(channels=[64, 128, 192], blocks=2, head_dim=32),
    # temporal_kernel=1: frames meet only in attention, where tokens sit at their place in the scene
    "camera": VideoUNetConfig(channels=[32, 64, 64], attention=[None, "joint", "joint"], temporal_kernel=1, rope="thw",
                              camera="world"),
}


def check_motion_temperature(value, motion_head: int, fix: str) -> float:
    """A motion head's sampling temperature: a number > 0, and 1 unless there is a head (``fix`` says how)."""
    number_in("motion_temperature", value, 0, low_open=True, note=" (1: as trained)")
    if value != 1 and not motion_head:
        raise ValueError(f"motion_temperature={value} scales a motion head's choice: {fix}")
    return value


class Level(nn.Module):
    """``blocks`` residual blocks, each followed by an attention stage when the level has one.

    With ``camera="plucker"`` the input first gets the level's Plücker rays (zero-initialised).
    """

    def __init__(self, c_in: int, c_out: int, blocks: int, emb_dim: int, cfg: VideoUNetConfig, pattern: str | None):
        super().__init__()
        self.plucker = PluckerInjection(c_in, layout="bcthw") if cfg.camera == "plucker" else None
        self.res = nn.ModuleList(
            ResBlock(c_in if i == 0 else c_out, c_out, emb_dim, cfg.temporal_kernel, cfg.dropout, cfg.conv)
            for i in range(blocks)
        )
        self.attn = nn.ModuleList(
            AttentionStage(c_out, pattern, cfg.head_dim, cfg.mlp_ratio, cfg.rope)
            for _ in range(blocks if pattern else 0)
        )

    def forward(self, x: Tensor, emb: Tensor, camera: _Camera | None = None) -> Tensor:
        if self.plucker is not None:
            x = self.plucker(x, camera.rays(*x.shape[-2:]))
        shift = camera.shift if camera is not None and camera.shift is not None else None
        for i, res in enumerate(self.res):
            x = res(x, emb)
            if self.attn:
                x = self.attn[i](x, shift)
        return x


class _Camera:
    """The cameras of one forward pass, in the forms the levels ask for (rays cached per grid size)."""

    def __init__(self, cfg: VideoUNetConfig, cameras: Tensor, height: int, width: int):
        self.cfg, self.cameras, self.height, self.width = cfg, cameras, height, width
        self._rays: dict[tuple[int, int], Tensor] = {}
        self.shift = None
        if cfg.camera == "world":
            bad = cameras[..., [0, 1, 2, 5]].abs() > 1e-6
            if bad.any():
                b, t, i = bad.nonzero()[0].tolist()
                name = ("pitch", "yaw", "roll", "tz")[i]
                raise ValueError(f"cameras: camera='world' models pan over a planar scene (pitch, yaw, roll and tz "
                                 f"must be 0); got {name}={cameras[b, t, [0, 1, 2, 5][i]].item():g} at video {b}, "
                                 f"frame {t}")
            pixels = (cameras[..., 3:5] - cameras[:, :1, 3:5]) * cfg.camera_pixels  # (b, t, 2) as (x, y)
            self.shift = pixels.flip(-1) / pixels.new_tensor([height, width])  # (row, column) in frame fractions

    def rays(self, h: int, w: int) -> Tensor:
        if (h, w) not in self._rays:
            c2w = relative_to_first(camera_to_world(self.cameras.double()))
            c2w[..., :3, 3] *= self.cfg.camera_pixels / self.width  # translation in frame widths
            k = intrinsics_from_fov(torch.tensor(self.cfg.camera_fov, dtype=torch.float64).deg2rad(), h, w)
            self._rays[(h, w)] = plucker_rays(c2w, k, h, w).to(self.cameras.dtype)
        return self._rays[(h, w)]


class VideoUNet(Model):
    """The default denoiser of the diffusion pipeline (see the module docstring and :class:`VideoUNetConfig`)."""

    config_class = VideoUNetConfig
    presets = PRESETS

    def __init__(self, config: VideoUNetConfig):
        super().__init__(config)
        cfg, ch = config, config.channels
        emb_dim = 4 * ch[0]
        self.time_mlp = nn.Sequential(nn.Linear(ch[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # pixel_stem: filters over 3 frames x 5 x 5 pixels see motion of up to 2 px/frame before the fold
        inputs = cfg.in_channels * (2 if cfg.self_condition else 1) + int(cfg.known_frames)
        self.pixel_stem = nn.Sequential(Conv3d(inputs, cfg.pixel_stem, (3, 5, 5), padding=(1, 2, 2)),
                                        nn.SiLU()) if cfg.pixel_stem else None
        stem_in = (cfg.pixel_stem + inputs if cfg.pixel_stem else inputs) * cfg.patch**2
        self.stem = Conv3d(stem_in, ch[0], (1, 3, 3), padding=(0, 1, 1))
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, c in enumerate(ch):
            self.down.append(Level(ch[max(i - 1, 0)], c, cfg.blocks, emb_dim, cfg, cfg.attention[i]))
            if i < len(ch) - 1:
                self.downsample.append(Conv3d(c, c, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)))
        self.mid = Level(ch[-1], ch[-1], 1, emb_dim, cfg, cfg.attention[-1])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(ch))):
            c_below = ch[-1] if i == len(ch) - 1 else ch[i + 1]
            self.up.append(Level(c_below + ch[i], ch[i], cfg.blocks, emb_dim, cfg, cfg.attention[i]))
            if i > 0:
                self.upsample.append(Conv3d(ch[i], ch[i], (1, 3, 3), padding=(0, 1, 1)))
        self.out_norm = nn.GroupNorm(group_count(ch[0]), ch[0])
        self.out = Conv3d(ch[0], cfg.in_channels * cfg.patch**2, (1, 3, 3), padding=(0, 1, 1))
        nn.init.zeros_(self.out.weight), nn.init.zeros_(self.out.bias)
        # the motion head's mixing logits: one per shift and one for the drawn image, per pixel (a 1x1 conv:
        # a 3x3 one over this many channels doubled the cost of a training step)
        self.num_shifts = (2 * cfg.motion_head + 1) ** 2 if cfg.motion_head else 0
        self.mix = Conv3d(ch[0], (self.num_shifts + 1) * cfg.patch**2, 1) if cfg.motion_head else None
        if self.mix is not None:
            nn.init.zeros_(self.mix.weight), nn.init.zeros_(self.mix.bias)

    def forward(self, x: Tensor, t: Tensor, cameras: Tensor | None = None, x_self: Tensor | None = None,
                known: Tensor | None = None, motion_temperature: float = 1.0) -> Tensor:
        """``x (B, C, T, H, W)``, timesteps ``t (B,)``, for a camera model ``cameras (B, T, 6)``, for a
        self-conditioned model the previous estimate of the clean video ``x_self`` (``None``: zeros), and
        for a ``known_frames`` model the bool mask ``known (B, T)`` of the frames of ``x`` that are given
        clean (``None``: none; the others hold noise at ``t``; frames given in every video are returned as given,
        their head not run). ``motion_temperature`` (a motion head's, for sampling) divides the head's logits:
        below 1 each pixel leans harder on its likeliest move."""
        cfg = self.config
        check_motion_temperature(motion_temperature, cfg.motion_head,
                                 "this VideoUNet has none (config.motion_head=0)")
        b, frames, h, w = check_video(x, "bcthw", cfg.in_channels)
        if h % cfg.downsample or w % cfg.downsample:
            raise ValueError(f"x needs H and W divisible by {cfg.downsample} (patch {cfg.patch}, {len(cfg.channels)} "
                             f"levels); got H={h}, W={w}")
        inputs = self._inputs(x, x_self, known)
        camera = self._cameras(cameras, b, frames, h, w, x.device)
        steps = sinusoidal_table(self._timesteps(t, b, x.device), cfg.channels[0]).to(self.stem.weight.dtype)
        features = self._backbone(inputs, self.time_mlp(steps), camera)
        return self._make_frames(x, features, known, motion_temperature)

    def _make_frames(self, x: Tensor, features: Tensor, known: Tensor | None, motion_temperature: float) -> Tensor:
        """The output from the last features: the head's frames, but the frames given clean in every video of the
        batch (a next-frame model's context) as given, the head not run on them."""
        before = self._frames_before(x) if self.mix is not None else None
        given = None if known is None else known.to(x.device).all(0)
        if given is None or not given.any():
            return self._head(features, before, motion_temperature)
        if given.all():
            return x.clone()
        made = (~given).nonzero().flatten()
        if before is not None:
            before = before.index_select(2, made)
        return x.index_copy(2, made, self._head(features.index_select(2, made), before, motion_temperature))

    def _head(self, features: Tensor, before: Tensor | None, motion_temperature: float) -> Tensor:
        """The frames the head makes from the last features: drawn, or (a motion head) mixed from ``before`` moved."""
        cfg, p = self.config, self.config.patch
        if self.mix is None:
            return rearrange(self.out(features), "b (c p1 p2) t h w -> b c t (h p1) (w p2)", p1=p, p2=p)
        logits = self.mix(features)
        if motion_temperature != 1:
            logits = logits / motion_temperature
        return motion_mix(logits, self.out(features), before, cfg.motion_head, cfg.motion_fill, p)

    def _inputs(self, x: Tensor, x_self: Tensor | None, known: Tensor | None) -> Tensor:
        """``x`` with the channels the config adds: the self-conditioning estimate, then the known-frame flag."""
        cfg = self.config
        b, _, frames, h, w = x.shape
        parts = [x]
        if cfg.self_condition:
            if x_self is not None and x_self.shape != x.shape:
                raise ValueError(f"x_self must have the shape of x {tuple(x.shape)}; got {tuple(x_self.shape)}")
            parts.append(torch.zeros_like(x) if x_self is None else x_self.to(x.dtype))
        elif x_self is not None:
            raise ValueError("x_self was given but this VideoUNet is not self-conditioned (config.self_condition=False)")
        if cfg.known_frames:
            if known is None:
                known = torch.zeros(b, frames, dtype=torch.bool, device=x.device)
            if not isinstance(known, Tensor) or known.dtype != torch.bool or tuple(known.shape) != (b, frames):
                got = f"{known.dtype} {tuple(known.shape)}" if isinstance(known, Tensor) else type(known).__name__
                raise ValueError(f"known must be a bool (B, T) = ({b}, {frames}) mask of the frames given clean; "
                                 f"got {got}")
            parts.append(known.to(device=x.device, dtype=x.dtype)[:, None, :, None, None].expand(b, 1, frames, h, w))
        elif known is not None:
            raise ValueError("known was given but this VideoUNet takes no known frames (config.known_frames=False)")
        return torch.cat(parts, dim=1) if len(parts) > 1 else x

    def _cameras(self, cameras: Tensor | None, b: int, frames: int, h: int, w: int, device) -> _Camera | None:
        """The checked cameras of a camera model (``None`` for any other)."""
        mode = self.config.camera
        if mode is None:
            if cameras is not None:
                raise ValueError("cameras were given but this VideoUNet has no camera conditioning (config.camera=None)")
            return None
        if cameras is None:
            raise ValueError(f"this VideoUNet is camera-conditioned (camera={mode!r}): pass cameras "
                             f"(B, T, 6) = (pitch, yaw, roll, tx, ty, tz)")
        check_cameras(cameras, "cameras", trailing=(6,), batch=b, frames=frames)
        return _Camera(self.config, cameras.to(device, self.stem.weight.dtype), h, w)

    @staticmethod
    def _timesteps(t, b: int, device) -> Tensor:
        t = torch.as_tensor(t, device=device)
        if t.ndim == 0:
            t = t.expand(b)
        if t.shape != (b,):
            raise ValueError(f"t must be a scalar or a (B,) tensor of timesteps with B={b}; got shape {tuple(t.shape)}")
        return t

    def _backbone(self, x: Tensor, emb: Tensor, camera: _Camera | None) -> Tensor:
        """Stem, the levels down and up with their skips, and the output norm: ``(b, channels[0], t, h/p, w/p)``."""
        p = self.config.patch
        if self.pixel_stem is not None:
            x = torch.cat([x, self.pixel_stem(x)], dim=1)
        x = self.stem(rearrange(x, "b c t (h p1) (w p2) -> b (c p1 p2) t h w", p1=p, p2=p))
        skips = []
        for i, level in enumerate(self.down):
            x = level(x, emb, camera)
            skips.append(x)
            if i < len(self.downsample):
                x = self.downsample[i](x)
        x = self.mid(x, emb, camera)
        for j, level in enumerate(self.up):
            x = level(torch.cat([x, skips.pop()], dim=1), emb, camera)
            if j < len(self.upsample):
                x = self.upsample[j](F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest"))
        return F.silu(self.out_norm(x))

    @staticmethod
    def _frames_before(frames: Tensor) -> Tensor:
        """``(b, c, t, h, w)`` -> frame ``t - 1`` at every ``t``: the motion head's frames to move. Frame 0 has
        none before it and moves itself, which the network learns to pass over for the drawn image where that is
        noise."""
        return torch.cat([frames[:, :, :1], frames[:, :, :-1]], dim=2)
