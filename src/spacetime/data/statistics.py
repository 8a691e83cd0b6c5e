"""What a next-frame model's motion head needs to know of its data, measured from the data itself.

A motion head (``VideoUNetConfig.motion_head``) makes each pixel of a new frame from the frame
before it moved by up to ``reach`` pixels, and shows ``fill`` where a moved copy comes from outside
the frame. Both are facts about the data, not choices of the recipe: the reach is the data's top
speed per axis, the fill its background. :func:`measure_motion` reads them off training clips, so
that one recipe serves every data set (``model_overrides={"motion_head": "data", "motion_fill":
"data"}``, resolved when a run starts and saved as numbers in its config):

- **reach**: for every pixel that changes between two frames, the smallest shift ``(dx, dy)`` of
  the frame before that explains its 5x5 neighbourhood as well as any shift up to ``max_reach``
  does (uniform regions are explained by small shifts, edges only by the true move), among the
  neighbourhoods one shift explains (it leaves at most 2% of the error of no move: not where
  two objects moving apart meet); the reach is the largest ``max(|dx|, |dy|)`` needed by at least a
  tenth as many pixels as the commonest one. Where objects overlap, a shift can explain a
  neighbourhood by coincidence (0.3-2.4% of the pixels per reach level beyond the true top speed,
  measured on 2-3 disks or digits, more in small crowded frames), so such pixels do not widen the
  head, while each level of a uniform speed law up to its top holds 4-80% (at least a tenth of the
  commonest level's). A top speed that few pixels of the data ever need is left out too: pixels the
  head cannot reach, it draws itself.
- **fill**: the commonest value of the frames' border pixels (in 1/64 steps), in the model's
  ``[-1, 1]`` scale.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..checks import int_in, positive_int
from ..ops.motion import shift_offsets, shifted_copies

__all__ = ["measure_motion", "MotionStats"]

CHANGED = 0.25  # a pixel whose value moves by more than this between frames is one whose motion matters
MIN_SHARE = 0.1  # the reach is the largest move needed by at least this fraction of the commonest move's pixels
EXPLAINED = 0.02  # a move explains a neighbourhood when it leaves at most this share of the error of no move


class MotionStats(dict):
    """``{"reach", "fill", "clips", "pixels", "reach_share"}``: the measured reach and fill, how many clips and
    changed pixels they come from, and the share of those pixels that needed each reach 0..max_reach."""

    def describe(self) -> str:
        shares = ", ".join(f"{r}: {s:.1%}" for r, s in enumerate(self["reach_share"]) if s > 0)
        return (f"motion head from the data ({self['clips']} clips): reach {self['reach']} px (the moves of "
                f"{self['pixels']} changing pixels need {shares}), fill {self['fill']:+.2f} (the border's commonest "
                f"value)")


def _clips(dataset: Dataset, clips: int, seed: int) -> torch.Tensor:
    """``(N, C, T, H, W)`` in [0, 1]: ``clips`` items of ``dataset`` at seeded indices (camera data: its videos)."""
    rng = np.random.default_rng(seed)
    index = rng.choice(len(dataset), size=min(clips, len(dataset)), replace=False)
    items = [dataset[int(i)] for i in index]
    return torch.stack([item[0] if isinstance(item, tuple) else item for item in items]).float()


def _needed_reach(before: torch.Tensor, after: torch.Tensor, max_reach: int, fill: float) -> torch.Tensor:
    """Per changed pixel of ``after`` ``(N, H, W)``, the smallest ``max(|dx|, |dy|)`` of a shift of ``before`` (showing
    ``fill`` where it comes from outside the frame) that explains its 5x5 neighbourhood as well as the best one."""
    copies = shifted_copies(before, max_reach, fill)  # (N, K, H, W)
    error = F.avg_pool2d((copies - after[:, None]) ** 2, 5, stride=1, padding=2)  # local error per shift
    best = error.min(1, keepdim=True).values
    size = torch.tensor([max(abs(dx), abs(dy)) for dx, dy in shift_offsets(max_reach)], dtype=torch.float32)
    fits = error <= best + 1e-6
    needed = torch.where(fits, size[None, :, None, None], torch.inf).min(1).values  # (N, H, W)
    still = error[:, len(size) // 2]  # the error of no move
    rigid = best[:, 0] <= EXPLAINED * still  # neighbourhoods one shift explains (not where two objects meet)
    changed = ((after - before).abs() > CHANGED) & rigid
    return needed[changed]


def measure_motion(dataset: Dataset, clips: int = 128, max_reach: int = 6, seed: int = 0) -> MotionStats:
    """Reach and fill of a motion head for ``dataset`` (items ``(C, T, H, W)`` in [0, 1]), measured on ``clips``
    of its videos (module docstring)."""
    positive_int("clips", clips)
    int_in("max_reach", max_reach, 1, 33)
    videos = _clips(dataset, clips, seed)
    if videos.ndim != 5 or videos.shape[2] < 2:
        raise ValueError(f"dataset: measuring motion needs items (C, T, H, W) with T >= 2; got items of shape "
                         f"{tuple(videos.shape[1:])}")
    frames = videos.flatten(0, 1)  # (N C, T, H, W)
    border = torch.cat([frames[..., 0, :], frames[..., -1, :], frames[..., 0], frames[..., -1]], -1)
    values, counts = torch.unique(torch.round(border * 64) / 64, return_counts=True)
    background = float(values[counts.argmax()])
    needed = _needed_reach(frames[:, :-1].flatten(0, 1), frames[:, 1:].flatten(0, 1), max_reach, background)
    share = torch.bincount(needed.long(), minlength=max_reach + 1).float() / max(needed.numel(), 1)
    reach = int(torch.nonzero(share >= MIN_SHARE * share.max()).max()) if needed.numel() else 1
    return MotionStats(reach=max(reach, 1), fill=background * 2 - 1, clips=len(videos), pixels=int(needed.numel()),
                       reach_share=[round(float(s), 4) for s in share])
