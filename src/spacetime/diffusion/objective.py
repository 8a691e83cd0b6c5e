"""The diffusion training objective: what a batch of videos becomes, and the loss on it.

Whole-video models denoise every frame. Next-frame models (``TrainConfig.context_frames = K``) learn
one frame from the ``K`` clean frames before it: training clips are cut from the videos
(:func:`next_frame_clips`), the context is given clean (:func:`given_prefix`), and only the last
frame counts in the loss. :func:`blend_last_frame` mixes into some clips' last frame the frame before
it, or a moved copy of it, the mixtures a sampler holds while a frame's motion is still open.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import int_at_least, one_of
from ..models.video_unet import VideoUNetConfig
from ..ops.motion import shift_offsets, shifted_copies
from ..parallel.batch import BatchSplit
from .config import CLIP_ENDS, COPY_BLEND_SPANS, TrainConfig
from .schedules import predicted_x0

__all__ = ["clip_end_weights", "next_frame_clips", "blend_last_frame", "copy_blend_max", "given_prefix",
           "diffusion_loss"]


def clip_end_weights(frames: int, kind: str = "uniform") -> Tensor:
    """How often a next-frame training clip ends at each frame. ``"uniform"``: evenly. ``"first"``:
    frame 1, where the motion is chosen (the frames before it do not fix its content), 3/8 of the
    time, frame 0 1/8, and the later frames, which continue a motion under way, the other half evenly."""
    one_of("clip_ends", kind, CLIP_ENDS)
    if kind == "uniform" or frames < 3:
        return torch.full((frames,), 1.0 / frames)
    return torch.tensor([1 / 8, 3 / 8] + [1 / (2 * (frames - 2))] * (frames - 2))


def next_frame_clips(x0: Tensor, context: int, generator: torch.Generator | None = None,
                     ends: str = "uniform", *, with_ends: bool = False,
                     lead_in: float = -1.0) -> Tensor | tuple[Tensor, Tensor]:
    """``(B, C, T, H, W)`` videos -> ``(B, C, context + 1, H, W)`` clips: per video a frame ``j`` drawn
    with ``clip_end_weights(T, ends)`` and the ``context`` frames before it; frames before the first hold
    ``lead_in`` everywhere (black, -1, by default; ``TrainConfig.lead_in``). ``with_ends``: also the ``(B,)``
    frames ``j`` the clips end at."""
    b, c, frames, h, w = x0.shape
    ends = torch.multinomial(clip_end_weights(frames, ends), b, replacement=True, generator=generator)
    padded = torch.cat([x0.new_full((b, c, context, h, w), float(lead_in)), x0], dim=2)  # frame j at j + context
    clips = torch.stack([padded[i, :, j:j + context + 1] for i, j in enumerate(ends.tolist())])
    return (clips, ends) if with_ends else clips


def blend_last_frame(clips: Tensor, copy: float, generator: torch.Generator | None = None, *, moved: float = 0.0,
                     radius: int = 0, fill: float | None = None, copy_max: float | Tensor = 1.0) -> Tensor:
    """What a next-frame model's noisy frame is made from: ``clips`` ``(B, C, K + 1, H, W)`` with, in a
    fraction ``copy`` of them, the last frame blended ``lam * frame + (1 - lam) * frame before`` (``lam``
    uniform in [0, ``copy_max``]); the target stays the true frame (``TrainConfig.copy_blend``).

    A sampler whose estimate of a frame is still the average of the ways it could move carries that
    average, centred on the frame before, into its noisy frame; a denoiser that never saw such a
    frame in training sharpens it into a copy of the frame before along an axis (a pause the data
    makes only at walls). Training on blends teaches it to leave the copy for a real frame.

    ``moved`` (``TrainConfig.move_blend``): a further fraction of the clips blend the frame with the frame
    before moved by a random nonzero shift of up to ``radius`` pixels per axis (a motion head's
    candidates, ``fill`` as :func:`~spacetime.ops.motion.shifted_copies`), with ``lam`` uniform in
    [1/2, 1]: the frame stays the larger part. Half-way through choosing a move, a sampler holds such a
    mix of moves; these clips teach the denoiser to follow the stronger one rather than settle between
    them.

    ``copy_max`` below 1 keeps the copy blends near the copy. A blend of the frame before with a frame moved by
    ``v`` at ``lam`` looks much like the frame moved by ``lam * v``: at ``lam = 1/2`` a 2-px move passes for a real
    1-px one. With ``copy_max = 1 / (2 * reach)`` (``TrainConfig.copy_blend_span = "near"``) no blend is nearer a
    move than the copy; a ``(B,)`` tensor sets it per clip. (Tried against the demo's missing slow first moves,
    docs/generality.md: near blends in every clip bring some back and cost plausibility.)
    """
    b = clips.shape[0]
    copy_max = torch.as_tensor(copy_max, dtype=torch.float32).cpu()
    if copy_max.shape not in ((), (b,)) or not bool(((copy_max > 0) & (copy_max <= 1)).all()):
        raise ValueError(f"copy_max must be a number in (0, 1], or a ({b},) tensor of them; got {copy_max.tolist()}")
    lam = torch.rand(b, generator=generator) * copy_max
    pick = torch.rand(b, generator=generator)
    lam = torch.where(pick < copy, lam, torch.ones(b))
    before = clips[:, :, -2]
    if moved:
        int_at_least("radius", radius, 1, note=" when moved > 0 (the shifts to blend with)")
        shifts = [k for k, offset in enumerate(shift_offsets(radius)) if offset != (0, 0)]
        k = torch.tensor(shifts)[torch.randint(len(shifts), (b,), generator=generator)]
        half = 0.5 + 0.5 * torch.rand(b, generator=generator)
        use = (pick >= copy) & (pick < copy + moved)
        lam = torch.where(use, half, lam)
        copies = shifted_copies(before, radius, fill)  # (b, c, K, h, w)
        partner = copies[torch.arange(b, device=clips.device), :, k.to(clips.device)]
        before = torch.where(use.to(clips.device)[:, None, None, None], partner, before)
    lam = lam.to(clips).reshape(b, 1, 1, 1)
    last = lam * clips[:, :, -1] + (1 - lam) * before
    return torch.cat([clips[:, :, :-1], last[:, :, None]], dim=2)


def copy_blend_max(span: str, reach: int, ends: Tensor | None = None) -> float | Tensor:
    """The largest share of the frame in a copy blend (:func:`blend_last_frame`'s ``copy_max``): 1 for ``"whole"``;
    for ``"near"``, ``1 / (2 * reach)``, so a blend of a move of up to ``reach`` pixels per axis stays within half a
    pixel of the copy, nearer it than any whole-pixel move. ``"near-first"``: near for the clips that end at frame 1
    (``ends``, from :func:`next_frame_clips`), where the move is chosen (the context holds one frame: no motion yet),
    whole for the rest, whose context shows the move to continue."""
    one_of("copy_blend_span", span, COPY_BLEND_SPANS)
    if span == "whole":
        return 1.0
    int_at_least("reach", reach, 1, note=" (a motion head's: copy_blend_span='near' is measured in its reach)")
    near = 1.0 / (2 * reach)
    if span == "near":
        return near
    if ends is None:
        raise ValueError("copy_blend_span='near-first' needs the frames the clips end at (ends)")
    return torch.where(torch.as_tensor(ends) == 1, near, 1.0)


def given_prefix(x0: Tensor, xt: Tensor, cut: int) -> tuple[Tensor, Tensor, Tensor]:
    """Give the first ``cut`` frames of every clip clean (a next-frame model's context).

    Returns ``xt`` with those frames of ``x0`` in place of the noisy ones, the bool ``known (B, T)``
    mask the model takes, and a loss ``weight`` shaped like ``x0``: 1 on the frames to generate, 0 on
    the given ones.
    """
    b, frames = x0.shape[0], x0.shape[2]
    known = (torch.arange(frames, device=x0.device) < cut).expand(b, -1)
    mask = known[:, None, :, None, None]
    return torch.where(mask, x0, xt), known, (~mask).to(x0.dtype).expand_as(x0)


def diffusion_loss(net: nn.Module, noise_sched, cfg: TrainConfig, unet: VideoUNetConfig, x0: Tensor,
                   cameras: Tensor | None, generator: torch.Generator, device,
                   split: BatchSplit | None = None) -> Tensor:
    """The training loss of ``net`` on a batch of clean videos ``x0`` ``(B, C, T, H, W)`` in [-1, 1].

    Draws, from ``generator`` and in this order: next-frame clips, the noise, the timesteps, the
    blends, and (self-conditioned models) whether to condition on the model's own first estimate.
    Noise and timesteps are drawn on the CPU, so a run is the same on any device.

    ``split`` (a :class:`~spacetime.parallel.batch.BatchSplit`; ``x0`` the whole batch on every process): ``net``
    (sequence-parallel) sees this process's clips and frames, and the loss is this process's share of the batch's
    (its squared errors over the count of its clips' terms, all frames).
    """
    ends = None
    if cfg.context_frames:  # next-frame model: clips of context_frames frames and the one after
        x0, ends = next_frame_clips(x0, cfg.context_frames, generator, cfg.clip_ends, with_ends=True,
                                    lead_in=cfg.lead_in)
    noise = torch.randn(x0.shape, generator=generator)
    t = torch.randint(0, cfg.timesteps, (x0.shape[0],), generator=generator)
    x0, noise, t = x0.to(device), noise.to(device), t.to(device)
    extra = {} if cameras is None else {"cameras": cameras}
    blended = x0 if not (cfg.copy_blend or cfg.move_blend) else blend_last_frame(
        x0, cfg.copy_blend, generator, moved=cfg.move_blend, radius=unet.motion_head, fill=unet.motion_fill,
        copy_max=copy_blend_max(cfg.copy_blend_span, unet.motion_head, ends))
    xt = noise_sched.add_noise(blended, noise, t)
    if cfg.prediction == "v_prediction":
        target = noise_sched.get_velocity(x0, noise, t)
    else:
        target = noise if cfg.prediction == "epsilon" else x0
    weight = None
    if cfg.context_frames:
        xt, extra["known"], weight = given_prefix(x0, xt, cfg.context_frames)
    count = (target.numel() if weight is None else weight.sum()) / (1 if split is None else split.dp)
    if split is not None:  # this process's clips and frames of everything the network sees and is scored on
        xt, target, t = split.local(xt), split.local(target), split.samples(t)
        weight = None if weight is None else split.local(weight)
        extra = {k: split.local(v, dim=1) for k, v in extra.items()}  # cameras (B, T, 6), known (B, T)
    if unet.self_condition:  # half the time, condition on the model's own first estimate
        x_self = torch.zeros_like(xt)
        if torch.rand((), generator=generator) < 0.5:
            with torch.no_grad():
                x_self = predicted_x0(noise_sched, xt, t, net(xt, t, **extra), cfg.prediction).clamp(-1, 1)
        extra["x_self"] = x_self
    if weight is None and split is None:
        return F.mse_loss(net(xt, t, **extra), target)
    errors = (net(xt, t, **extra) - target) ** 2
    return (errors if weight is None else errors * weight).sum() / count  # only the frames to generate count
