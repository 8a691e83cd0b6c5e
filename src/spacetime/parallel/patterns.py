"""Attention patterns on a clip split by frames across a sequence-parallel group, exact against one process.

:class:`ShardedPattern` wraps a pattern and takes this rank's frames of ``q, k, v`` ``(b, t_r, h, w,
heads, d)``:

``Spatial``
    local: a frame needs only itself.
``Temporal`` (full, causal, band)
    the split moves from frames to pixels (one all-to-all of ``q, k, v`` together), each rank attends
    over every frame of its pixels, and the output moves back (one all-to-all).
``Joint``
    DeepSpeed-Ulysses: the split moves from frames to heads and back; the heads must divide evenly.
``Window``
    local when every shard boundary falls on a window boundary in time and the windows do not shift
    in time (else a clear error).
``CrossFrame``
    each rank receives the ``k`` neighbour frames on both sides (a halo) and attends locally.

Prefix tokens (replicated on every rank) are keys every query sees; prefix queries over the whole
clip (``prefix_mode="all"``) combine each rank's partial softmax by its log-sum-exp, and
``prefix_mode="mean"`` (spatial attention only) averages over every frame of the clip.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from einops import rearrange
from torch import Tensor

from ..ops.patterns import CrossFrame, Joint, Pattern, Spatial, Temporal, Window
from .comm import all_sum, counted, exchange, halo, reshard, split_sizes
from .shard import Sharding, check_group

__all__ = ["ShardedPattern", "ShardContext", "gather_frames", "attend_across"]


def gather_frames(mask: Tensor, group, sharding: Sharding) -> Tensor:
    """A ``(b, t_r)`` per-frame tensor (a frame mask) of every rank, as ``(b, T)`` on every rank (no gradient)."""
    shapes = [(mask.shape[0], size) for size in sharding.sizes]
    parts = exchange([mask.to(torch.uint8)] * sharding.world, group, shapes)
    return torch.cat(parts, dim=1).to(mask.dtype)


class ShardContext:
    """The sharding of the clip a sharded module's forward pass works on, shared by its sharded parts.

    The module's forward calls :meth:`begin` once with its input's frame count (a collective that checks
    every rank's shard); its parts read :meth:`current`, with the frame count of what they see (the
    same, or fewer by an integer factor: tubelets, a downsampled time axis).
    """

    def __init__(self, group):
        self.group, self.sharding = check_group(group), None
        self.replicated = False  # set by a module whose later parts see the whole clip on every rank

    def begin(self, local_frames: int) -> Sharding:
        self.sharding = Sharding.agree(self.group, local_frames)
        return self.sharding

    def current(self, local_frames: int) -> Sharding:
        if self.sharding is None:
            raise RuntimeError("a sharded part ran outside its module's forward (ShardContext.begin was not called)")
        if local_frames == self.sharding.local:
            return self.sharding
        scale = self.sharding.local // max(local_frames, 1)
        if scale < 1 or any(n % scale for n in self.sharding.sizes) or local_frames * scale != self.sharding.local:
            raise ValueError(f"a sharded part sees {local_frames} frames on rank {self.sharding.rank}, not a whole "
                             f"fraction of the {self.sharding.local} the module was given")
        return Sharding.of(self.group, self.sharding.frames // scale)


class ShardedPattern(Pattern):
    """``pattern`` on this rank's frames of a clip of ``frames`` frames split across ``group`` (see the module doc).

    ``frames`` (the clip's T) may be set per call through :attr:`frames`; when it is ``None`` the ranks
    tell each other their frame counts (one small all-gather).
    """

    supports_frame_mask = True

    def __init__(self, pattern: Pattern, group, frames: int | None = None):
        if not isinstance(pattern, (Spatial, Temporal, Joint, Window, CrossFrame)):
            raise ValueError(f"pattern {pattern!r} has no sequence-parallel form; supported: Spatial, Temporal, "
                             f"Joint, Window, CrossFrame")
        self.pattern, self.group, self.frames = pattern, check_group(group), frames

    def __repr__(self) -> str:
        return f"ShardedPattern({self.pattern!r}, sp={dist.get_world_size(self.group)})"

    def dense_mask(self, t: int, h: int, w: int, device=None) -> Tensor:
        return self.pattern.dense_mask(t, h, w, device)

    def _sharding(self, t_local: int) -> Sharding:
        """Where this rank's frames sit: from :attr:`frames` (a caller that checked the shards: an int, or the
        :class:`ShardContext` of a sharded module's forward pass), or from every rank's frame count (a collective,
        so that every rank refuses shards of the wrong sizes together)."""
        if isinstance(self.frames, ShardContext):
            return self.frames.current(t_local)
        if self.frames is not None:
            sharding = Sharding.of(self.group, self.frames)
            if sharding.local != t_local:
                raise ValueError(f"q holds {t_local} frames on rank {sharding.rank}; a clip of T={sharding.frames} "
                                 f"split over {sharding.world} ranks gives it {sharding.local}")
            return sharding
        return Sharding.agree(self.group, t_local)

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, *, backend: str | None = None, dropout_p: float = 0.0,
                 frame_mask: Tensor | None = None, prefix: tuple[Tensor, Tensor, Tensor] | None = None,
                 prefix_mode: str = "all", bias: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        sharding = self._sharding(q.shape[1])
        kw = {"backend": backend, "dropout_p": dropout_p, "bias": bias}
        if prefix is not None and prefix_mode == "mean" and not isinstance(self.pattern, Spatial):
            raise ValueError(f"prefix_mode='mean' under sequence parallelism is built for Spatial (TimeSformer's class "
                             f"token); got {self.pattern!r}")
        run = {Spatial: self._spatial, Window: self._window, Temporal: self._temporal, Joint: self._joint,
               CrossFrame: self._cross_frame}[type(self.pattern)]
        out, prefix_out = run(q, k, v, frame_mask, prefix, prefix_mode, sharding, kw)
        if prefix is None:
            return out
        if prefix_out is None:  # "all": every rank's partial softmax over its own frames, combined
            prefix_out = _prefix_over_clip(prefix, k, v, frame_mask, self.group, sharding)
        return out, prefix_out

    # --- one method per pattern: (out, prefix_out or None) ---

    @staticmethod
    def _local(pattern, q, k, v, frame_mask, prefix, prefix_mode, kw) -> tuple[Tensor, Tensor | None]:
        """``pattern`` on this rank's tensors as they are: ``(out, prefix_out or None)``."""
        if prefix is None:
            return pattern(q, k, v, frame_mask=frame_mask, **kw), None
        return pattern(q, k, v, frame_mask=frame_mask, prefix=prefix, prefix_mode=prefix_mode, **kw)

    def _spatial(self, q, k, v, frame_mask, prefix, prefix_mode, sharding, kw, pattern=None):
        out, prefix_out = self._local(self.pattern if pattern is None else pattern, q, k, v, frame_mask, prefix,
                                      prefix_mode, kw)
        if prefix is not None and prefix_mode == "mean":  # the mean over this rank's frames -> over the clip's
            return out, all_sum(prefix_out * (sharding.local / sharding.frames), self.group)
        return out, None

    def _window(self, q, k, v, frame_mask, prefix, prefix_mode, sharding, kw):
        size, shift = self.pattern.effective(sharding.frames, q.shape[2], q.shape[3])
        if shift[0]:
            raise ValueError(f"{self.pattern!r}: windows shifted in time cross the shards of a clip split by frames; "
                             f"use shift[0]=0 (time shifts are not supported under sequence parallelism)")
        if any(o % size[0] for o in _offsets(sharding)):
            raise ValueError(f"{self.pattern!r}: the shard boundaries {_offsets(sharding)[1:]} (frames "
                             f"{list(sharding.sizes)} per rank) must fall on window boundaries (multiples of wT="
                             f"{size[0]}); choose a T or sp that does")
        local = Window((size[0], *self.pattern.size[1:]), shift=(0, *self.pattern.shift[1:]))  # the clip's extent
        return self._spatial(q, k, v, frame_mask, prefix, prefix_mode, sharding, kw, pattern=local)

    def _temporal(self, q, k, v, frame_mask, prefix, prefix_mode, sharding, kw):
        b, t, h, w, heads, d = q.shape
        if h * w < sharding.world:
            raise ValueError(f"{self.pattern!r}: a frame of H*W={h * w} pixels cannot be split over sp="
                             f"{sharding.world} ranks (temporal attention splits the pixels)")
        qkv = rearrange(torch.stack([q, k, v]), "s b t h w heads d -> s b t (h w) heads d")
        by_pixel = reshard(qkv, self.group, split_dim=3, cat_dim=2, cat_sizes=list(sharding.sizes))
        mask = None if frame_mask is None else gather_frames(frame_mask, self.group, sharding)
        grid = [x[:, :, None] for x in by_pixel.unbind(0)]  # (b, T, 1, pixels_r, heads, d): one row of pixels
        local, _ = self._local(self.pattern, *grid, mask, prefix, "all", kw)
        back = reshard(local[:, :, 0], self.group, split_dim=1, cat_dim=2, cat_sizes=split_sizes(h * w, sharding.world))
        return rearrange(back, "b t (h w) heads d -> b t h w heads d", h=h), None

    def _joint(self, q, k, v, frame_mask, prefix, prefix_mode, sharding, kw):
        heads = q.shape[4]
        if heads % sharding.world:
            raise ValueError(f"Joint under sequence parallelism splits the heads: num_heads={heads} must be divisible "
                             f"by sp={sharding.world}")
        by_head = reshard(torch.stack([q, k, v]), self.group, split_dim=5, cat_dim=2, cat_sizes=list(sharding.sizes))
        mask = None if frame_mask is None else gather_frames(frame_mask, self.group, sharding)
        part = heads // sharding.world
        mine = slice(sharding.rank * part, (sharding.rank + 1) * part)
        local_prefix = None if prefix is None else tuple(x[:, :, mine] for x in prefix)
        out, prefix_out = self._local(Joint(), *by_head.unbind(0), mask, local_prefix, "all", kw)
        if prefix is not None:  # this rank's heads saw the whole clip: put every rank's heads together
            pieces = exchange([prefix_out] * sharding.world, self.group, [prefix_out.shape] * sharding.world)
            prefix_out = torch.cat(pieces, dim=2)
        return reshard(out, self.group, split_dim=1, cat_dim=4, cat_sizes=[part] * sharding.world), prefix_out

    def _cross_frame(self, q, k, v, frame_mask, prefix, prefix_mode, sharding, kw):
        reach = min(self.pattern.window, sharding.frames - 1)
        if reach and min(sharding.sizes) < reach:
            raise ValueError(f"{self.pattern!r}: every rank must hold at least window={reach} frames to pass its "
                             f"neighbours their halo; got {list(sharding.sizes)} frames per rank")
        left, right = halo(torch.stack([k, v]), self.group, dim=2, before=reach, after=reach)
        kk, vv = torch.cat([left, torch.stack([k, v]), right], dim=2).unbind(0)
        qq = torch.cat([q.new_zeros((q.shape[0], left.shape[2], *q.shape[2:])), q,
                        q.new_zeros((q.shape[0], right.shape[2], *q.shape[2:]))], dim=1)
        mask = None
        if frame_mask is not None:
            full = gather_frames(frame_mask, self.group, sharding)
            mask = full[:, sharding.offset - left.shape[2]:sharding.offset + sharding.local + right.shape[2]]
        out, _ = self._local(self.pattern, qq, kk, vv, mask, prefix, "all", kw)
        return out[:, left.shape[2]:left.shape[2] + q.shape[1]], None


def _offsets(sharding: Sharding) -> list[int]:
    return [sum(sharding.sizes[:i]) for i in range(sharding.world)]


def attend_across(q: Tensor, keys: Tensor, values: Tensor, real: Tensor | None, group) -> Tensor:
    """Few queries ``(b, heads, p, d)``, replicated on every rank, over the keys and values ``(b, heads, n_r, d)``
    every rank holds (``real`` ``(b, n_r)``: which keys count): one softmax over all of them, exact.

    Each rank's partial softmax is weighted by its log-sum-exp relative to the largest; the sums of the
    weighted outputs and of the weights over the group give the whole softmax's output.
    """
    work = torch.promote_types(q.dtype, torch.float32)  # fp32 at least, fp64 stays fp64
    scores = torch.einsum("bhpd,bhnd->bhpn", q.to(work), keys.to(work)) * q.shape[-1] ** -0.5
    if real is not None:
        scores = scores.masked_fill(~real[:, None, None, :], float("-inf"))
    lse = torch.logsumexp(scores, dim=-1, keepdim=True)  # (b, heads, p, 1); -inf where no key here
    top = lse.detach().clone()
    with counted("all_sum", [top.numel()], group, top.element_size()):
        dist.all_reduce(top, op=dist.ReduceOp.MAX, group=group)
    weight = torch.exp(lse - top)  # this rank's share of the softmax's denominator, relative to the largest
    partial = torch.nan_to_num(torch.softmax(scores, dim=-1)) @ values.to(work)  # (b, heads, p, d)
    return (all_sum(partial * weight, group) / all_sum(weight, group)).to(q.dtype)


def _prefix_over_clip(prefix, k: Tensor, v: Tensor, frame_mask: Tensor | None, group, sharding: Sharding) -> Tensor:
    """Prefix queries ``(b, p, heads, d)`` answered over every prefix key (counted on rank 0) and every real token."""
    pq, pk, pv = prefix
    keys = rearrange(k, "b t h w heads d -> b heads (t h w) d")
    values = rearrange(v, "b t h w heads d -> b heads (t h w) d")
    real = None if frame_mask is None else frame_mask.repeat_interleave(k.shape[2] * k.shape[3], dim=1)  # (b, n)
    if sharding.rank == 0:
        keys, values = torch.cat([pk.transpose(1, 2), keys], dim=2), torch.cat([pv.transpose(1, 2), values], dim=2)
        real = None if real is None else torch.cat([real.new_ones(real.shape[0], pk.shape[1]), real], dim=1)
    return attend_across(pq.transpose(1, 2), keys, values, real, group).transpose(1, 2)
