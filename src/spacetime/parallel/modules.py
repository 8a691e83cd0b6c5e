"""``parallelize(module, sp_group)``: a module that takes this rank's frames of a clip and returns this rank's
frames of the output, exact against the module on the whole clip in one process.

It works in place, as ``torch.distributed``'s own ``parallelize_module`` and ``fully_shard`` do: every
part that needs the rest of the clip is given its sequence-parallel form (the parameters, their names
and the state_dict stay as they are, so checkpoints move freely between one process and many):

* attention layers run their pattern as a :class:`~spacetime.parallel.patterns.ShardedPattern`, and
  rotate queries and keys by the global frame index;
* convolutions with a temporal kernel (``k > 1`` frames) receive ``k // 2`` frames from each neighbour
  (a halo) and pad with zeros only at the ends of the clip;
* ``GroupNorm`` reduces its statistics over the whole clip (two passes: the mean, then the variance);
* position tables and frame positions use global frame indices; stochastic depth draws once per clip
  (on the group's first rank) so that every shard drops the same samples;
* :class:`~spacetime.models.VideoTransformer` read-outs (class attention, the mean, the class token)
  combine every rank's tokens; the logits are the same on every rank;
* :class:`~spacetime.models.VideoUNet` sees the clip's first camera on every rank (cameras are relative
  to it) and the motion head the frame before each shard's first.

A part with no sequence-parallel form raises, naming it: nothing ever computes on its shard as if it
were the whole clip. Dropout inside the module draws on each rank's own shard: statistically the same
function, not the same draws as one process.

Gradients follow one rule: the loss of a step is the sum of the ranks' losses. Parameter gradients are
then summed over the group (what ``spacetime train --sp`` does); a loss every rank computes alike from
a replicated output (the logits) counts once when each rank divides it by the group's size.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from ..blocks.transformer import AttentionBlock, DropPath, TransformerBlock
from ..blocks.unet import AttentionStage
from ..layers.attention import FactorizedAttention, SpaceTimeAttention
from ..layers.pooling import ClassAttentionPool
from ..models.classifier import VideoTransformer
from ..models.video_unet import Level, VideoUNet, _Camera
from ..ops.camera import check_cameras
from ..ops.conv import conv3d
from ..ops.layout import check_video
from ..ops.patterns import Temporal
from .comm import all_sum, halo, reshard, split_sizes
from .patterns import ShardContext, ShardedPattern, attend_across, gather_frames
from .shard import check_group, gather_video

__all__ = ["parallelize", "is_parallel"]


def is_parallel(module: nn.Module) -> bool:
    """Whether :func:`parallelize` made ``module`` sequence-parallel."""
    return isinstance(module.__dict__.get("_sp"), ShardContext)


# --- the parts -------------------------------------------------------------------------------------------------------


class _ShardedAttention:
    """Rotary positions by global frame index (the pattern itself is swapped for a ShardedPattern).

    A temporal layer moves its input, not its queries, keys and values, from a split by frames to a split
    by pixels (the projections work per token, so they commute with the move), attends over every frame of
    its pixels and moves the output back: one all-to-all of the activations each way, ``2 M (P - 1) / P``
    elements for an input of ``M`` (DSP's count), where resharding ``q, k, v`` would send twice that.
    """

    def forward_channels_last(self, x: Tensor, frame_mask: Tensor | None = None, positions: Tensor | None = None,
                              prefix: Tensor | None = None):
        if prefix is not None or not isinstance(self.pattern.pattern, Temporal):
            return super().forward_channels_last(x, frame_mask, positions, prefix)
        b, t, h, w, c = x.shape
        sharding, group = self._sp.current(t), self._sp.group
        if h * w < sharding.world:
            raise ValueError(f"{self.pattern.pattern!r}: a frame of H*W={h * w} pixels cannot be split over sp="
                             f"{sharding.world} ranks (temporal attention splits the pixels)")
        pixels = split_sizes(h * w, sharding.world)
        start = sum(pixels[:sharding.rank])

        def by_pixel(y: Tensor) -> Tensor:  # (b, t_r, h, w, ...) -> (b, T, 1, pixels_r, ...)
            y = reshard(y.flatten(2, 3), group, split_dim=2, cat_dim=1, cat_sizes=list(sharding.sizes))
            return y[:, :, None]

        if positions is not None:  # the caller's (frame, row, column) positions go with their tokens
            one = positions.stride(0) == 0  # the same for every clip of the batch: move one
            positions = by_pixel((positions[:1] if one else positions).detach()).expand(b, -1, -1, -1, -1)
        elif self.rope is not None:  # the global grid's positions of this rank's pixels
            pixel = torch.arange(start, start + pixels[sharding.rank], device=x.device)
            axes = torch.meshgrid(torch.arange(sharding.frames, device=x.device), pixel, indexing="ij")
            grid = torch.stack([axes[0], axes[1] // w, axes[1] % w], dim=-1).to(torch.float32)
            positions = grid[None, :, None].expand(b, -1, -1, -1, -1)
        mask = None if frame_mask is None else gather_frames(frame_mask, group, sharding)
        sharded, self.pattern = self.pattern, self.pattern.pattern  # this layer's sequences are whole now
        try:
            out = super().forward_channels_last(by_pixel(x), mask, positions)  # (b, T, 1, pixels_r, c)
        finally:
            self.pattern = sharded
        back = reshard(out[:, :, 0], group, split_dim=1, cat_dim=2, cat_sizes=pixels)
        return back.unflatten(2, (h, w))

    def _rotate(self, q: Tensor, k: Tensor, positions: Tensor | None) -> tuple[Tensor, Tensor]:
        if positions is None and self.rope is not None:
            b, t, h, w = q.shape[:4]
            offset = self._sp.current(t).offset
            axes = [torch.arange(n, device=q.device, dtype=torch.float32) for n in (t, h, w)]
            axes[0] = axes[0] + offset
            positions = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).expand(b, t, h, w, 3)
        return super()._rotate(q, k, positions)


class _ShardedConv3d:
    """A same-length temporal convolution on a shard: ``k // 2`` frames from each neighbour, zeros at the clip's
    ends, then the convolution without temporal padding."""

    def forward(self, x: Tensor) -> Tensor:
        pad = self.padding[0]
        sharding = self._sp.current(x.shape[2])
        if min(sharding.sizes) < pad:
            raise ValueError(f"a temporal convolution of {self.kernel_size[0]} frames needs at least {pad} frames on "
                             f"every rank; got {list(sharding.sizes)}")
        before, after = halo(x, self._sp.group, dim=2, before=pad, after=pad)  # empty at the clip's ends
        zeros = [x.new_zeros(x.shape[0], x.shape[1], pad - part.shape[2], *x.shape[3:]) for part in (before, after)]
        # every part joins the graph, empty or not, so that every rank runs the exchange's backward
        x = torch.cat([zeros[0], before, x, after, zeros[1]], dim=2)
        return conv3d(x, self.weight, self.bias, self.stride, (0, *self.padding[1:]), self.dilation, self.groups)


class _ShardedGroupNorm:
    """GroupNorm whose mean and variance are over the whole clip: sums over the group, two passes."""

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        sharding = self._sp.current(x.shape[2])
        groups = x.reshape(b, self.num_groups, -1).to(torch.promote_types(x.dtype, torch.float32))  # fp32 at least
        count = groups.shape[-1] // sharding.local * sharding.frames
        mean = all_sum(groups.sum(-1, keepdim=True), self._sp.group) / count
        centred = groups - mean
        var = all_sum(centred.square().sum(-1, keepdim=True), self._sp.group) / count
        y = (centred * torch.rsqrt(var + self.eps)).reshape(x.shape).to(x.dtype)
        if self.affine:
            shape = (1, c) + (1,) * (x.ndim - 2)
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


class _ShardedDropPath:
    """Stochastic depth with one draw per clip: the group's first rank draws, every rank uses its draw."""

    def forward(self, x: Tensor, *more: Tensor):
        if self.p == 0.0 or not self.training:
            return (x, *more) if more else x
        keep = x.new_empty(x.shape[0]).bernoulli_(1.0 - self.p)
        keep = all_sum(keep * float(self._sp.sharding.rank == 0), self._sp.group)
        out = tuple(y * keep.view(-1, *([1] * (y.ndim - 1))) / (1.0 - self.p) for y in (x, *more))
        return out if more else out[0]


class _ShardedStage:
    """An attention stage's (frame, row, column) positions by global frame index."""

    def _grid(self, t: int, h: int, w: int, device) -> Tensor:
        grid = AttentionStage._grid(t, h, w, device)
        return grid + grid.new_tensor([float(self._sp.current(t).offset), 0.0, 0.0])


# --- the roots: where a forward pass begins (one collective checks every rank's shard) ---------------------------


class _ShardedChannelsLast:
    """A layer or block whose forward passes through ``forward_channels_last`` ``(b, t, h, w, c)``."""

    def forward_channels_last(self, x: Tensor, *args, **kwargs):
        self._sp.begin(x.shape[1])
        return super().forward_channels_last(x, *args, **kwargs)


class _ShardedFactorized:
    def forward(self, x: Tensor, frame_mask: Tensor | None = None) -> Tensor:
        if isinstance(x, Tensor) and x.ndim == 5:  # every rank checks the shards together, first
            self._sp.begin(x.shape[self.layout.index("t")])
        return super().forward(x, frame_mask)


class _ShardedVideoTransformer:
    """Tokens of this rank's frames; position tables sliced at the global frames; read-outs over every rank."""

    def _encode(self, x: Tensor, frame_mask: Tensor | None):
        c = self.config
        b, t_in, _, _ = check_video(x, c.layout, c.in_channels)
        tokens = self.patch_embed(x)  # (b, t, h, w, dim): every rank's frames must tile into tubelets
        mask = self.token_mask(frame_mask, b, t_in, x.device)
        _, t, h, w, _ = tokens.shape
        sharding = self._sp.begin(t)
        if c.space_encoding == "flat":
            table = self.space_embed(sharding.frames, h, w, device=x.device)
            tokens = tokens + sharding.slice(table, 0).to(tokens.dtype)
        elif self.space_embed is not None:
            tokens = tokens + self.space_embed(h, w, device=x.device).to(tokens.dtype)
        replicated = c.variant == "factorized_encoder"
        if replicated:  # a token per frame after the spatial encoder: gather them, run the temporal encoder whole
            for block in self.blocks:
                tokens = block.forward_channels_last(tokens, frame_mask=mask)
            frames = self.norm_space(tokens.mean(dim=(2, 3)))[:, :, None, None]  # (b, t_r, 1, 1, dim)
            tokens = gather_video(frames, self._sp.group, "bthwc", frames=sharding.frames)
            mask = None if mask is None else gather_frames(mask, self._sp.group, sharding)
        if self.time_embed is not None:
            table = self.time_embed(sharding.frames, device=x.device)
            table = table if replicated else sharding.slice(table, 0)
            tokens = tokens + table.to(tokens.dtype)[:, None, None, :]
        self._sp.replicated = replicated
        blocks = self.temporal_blocks if replicated else self.blocks
        return self._run_blocks(blocks, tokens, mask)

    def _pool(self, tokens: Tensor, mask: Tensor | None) -> Tensor:
        if self._sp.replicated:
            return super()._pool(tokens, mask)
        _, t, h, w, _ = tokens.shape
        seq = rearrange(tokens, "b t h w c -> b (t h w) c")
        real = None if mask is None else mask.repeat_interleave(h * w, dim=1)
        if self.pool is not None:
            return _class_attention(self.pool, seq, real, self._sp)
        if real is None:
            return all_sum(seq.sum(1), self._sp.group) / (self._sp.current(t).frames * h * w)
        weights = real.to(seq.dtype)[:, :, None]
        total, count = all_sum((seq * weights).sum(1), self._sp.group), all_sum(weights.sum(1), self._sp.group)
        return total / count.clamp(min=1.0)


def _class_attention(pool: ClassAttentionPool, seq: Tensor, real: Tensor | None, ctx: ShardContext) -> Tensor:
    """:class:`ClassAttentionPool` over every rank's tokens: its query attends to its own key (counted on the first
    rank) and every real token of the clip, one softmax (:func:`~spacetime.parallel.patterns.attend_across`)."""
    b = seq.shape[0]
    cls = pool.cls_token.expand(b, -1, -1)
    first = ctx.sharding.rank == 0
    u = pool.norm(torch.cat([cls, seq], dim=1) if first else seq)
    q = rearrange(pool.q(pool.norm(cls)), "b n (heads d) -> b heads n d", heads=pool.num_heads)
    k, v = rearrange(pool.kv(u), "b n (two heads d) -> two b heads n d", two=2, heads=pool.num_heads)
    if real is not None and first:
        real = torch.cat([real.new_ones(b, 1), real], dim=1)
    out = rearrange(attend_across(q, k, v, real, ctx.group), "b heads 1 d -> b (heads d)")
    x = cls[:, 0] + pool.proj(out)
    return x + pool.mlp(pool.norm_mlp(x))


class _ShardedCamera(_Camera):
    """The cameras of this rank's frames, with the clip's first camera (every camera is relative to it)."""

    def __init__(self, cfg, cameras: Tensor, first: Tensor, height: int, width: int):
        super().__init__(cfg, torch.cat([first, cameras], dim=1), height, width)
        self.shift = None if self.shift is None else self.shift[:, 1:]

    def rays(self, h: int, w: int) -> Tensor:
        return super().rays(h, w)[:, 1:]


class _ShardedVideoUNet:
    def forward(self, x: Tensor, t: Tensor, *args, **kwargs) -> Tensor:
        if isinstance(x, Tensor) and x.ndim == 5:  # every rank checks the shards together, first
            self._sp.begin(x.shape[2])
        return super().forward(x, t, *args, **kwargs)

    def _cameras(self, cameras: Tensor | None, b: int, frames: int, h: int, w: int, device):
        if self.config.camera is None or cameras is None:
            return super()._cameras(cameras, b, frames, h, w, device)
        check_cameras(cameras, "cameras", trailing=(6,), batch=b, frames=frames)
        cameras = cameras.to(device, self.stem.weight.dtype)
        first = all_sum(cameras[:, :1] * float(self._sp.sharding.rank == 0), self._sp.group)
        return _ShardedCamera(self.config, cameras, first, h, w)

    def _make_frames(self, x: Tensor, features: Tensor, known: Tensor | None, motion_temperature: float) -> Tensor:
        # the head runs on every frame: the halo in _frames_before joins the graph on every rank; the frames given
        # in every video are then replaced as one process does
        before = self._frames_before(x) if self.mix is not None else None
        out = self._head(features, before, motion_temperature)
        return out if known is None else torch.where(known.to(x.device).all(0)[None, None, :, None, None], x, out)

    def _frames_before(self, frames: Tensor) -> Tensor:
        before, _ = halo(frames, self._sp.group, dim=2, before=1, after=0)  # the previous rank's last frame
        first = frames[:, :, :1 - before.shape[2]]  # the clip's first frame for itself (empty elsewhere)
        return torch.cat([before, first, frames[:, :, :-1]], dim=2)  # `before` joins the graph on every rank


# --- parallelize -----------------------------------------------------------------------------------------------------

#: the modules whose work is per token, per pixel or per frame: they run on a shard as they are
_LOCAL = (nn.Linear, nn.LayerNorm, nn.Dropout, nn.Identity, nn.SiLU, nn.GELU, nn.ReLU, nn.Tanh, nn.Sigmoid,
          nn.ModuleList, nn.Sequential, nn.ModuleDict)
_ROOTS = ((VideoUNet, _ShardedVideoUNet), (VideoTransformer, _ShardedVideoTransformer),
          (FactorizedAttention, _ShardedFactorized), (TransformerBlock, _ShardedChannelsLast),
          (AttentionBlock, _ShardedChannelsLast), (SpaceTimeAttention, _ShardedChannelsLast))
_CLASSES: dict[tuple[type, ...], type] = {}


def _local_module(module: nn.Module) -> bool:
    from ..blocks import transformer, unet
    from ..layers import camera, mlp

    local_modules = (mlp.__name__, camera.__name__, transformer.__name__, unet.__name__)
    return isinstance(module, _LOCAL) or (type(module).__module__ in local_modules and not isinstance(
        module, (ClassAttentionPool, camera.CameraAttention)))


def _part(name: str, module: nn.Module, ctx: ShardContext) -> tuple[type, ...]:
    """The mixins ``module`` gets (``()``: it runs as it is); raises for a module with no sequence-parallel form."""
    where = f"{name or 'the module'} ({type(module).__name__})"
    if isinstance(module, SpaceTimeAttention):
        if type(module).attention_bias is not SpaceTimeAttention.attention_bias:
            raise ValueError(f"parallelize: {where} adds a relative-position bias, which has no sequence-parallel "
                             f"form yet")
        ShardedPattern(module.pattern, ctx.group)  # refuses the patterns it has no form for, naming them
        return (_ShardedAttention,)
    if isinstance(module, nn.Conv3d):
        k, pad, stride, dilation = module.kernel_size[0], module.padding, module.stride[0], module.dilation[0]
        if k == stride and dilation == 1 and (isinstance(pad, str) and k == 1 or pad[0] == 0):
            return ()  # per frame (k = stride = 1), or per tubelet of frames (a shard then holds whole tubelets)
        if isinstance(pad, str) or stride != 1 or dilation != 1 or module.padding_mode != "zeros" or \
                pad[0] != k // 2 or k % 2 == 0:
            raise ValueError(f"parallelize: {where} is not a same-length temporal convolution (odd kernel, padding "
                             f"k // 2 with zeros, stride and dilation 1 over frames); got kernel {module.kernel_size}, "
                             f"padding {pad}, stride {module.stride}")
        return (_ShardedConv3d,)
    if isinstance(module, nn.GroupNorm):
        return (_ShardedGroupNorm,)
    if isinstance(module, DropPath):
        return (_ShardedDropPath,)
    if isinstance(module, AttentionStage):
        return (_ShardedStage,)
    if isinstance(module, (VideoUNet, Level, VideoTransformer, FactorizedAttention)) or _local_module(module):
        return ()
    if isinstance(module, ClassAttentionPool) and name.endswith("pool"):
        return ()  # a VideoTransformer's read-out: its forward_features reads it across the ranks
    if type(module).__module__ == "spacetime.layers.embeddings":
        return ()  # a VideoTransformer's embeddings: it slices their tables at its frames
    raise ValueError(f"parallelize: {where} has no sequence-parallel form: it cannot run on a part of the clip")


def _swap(module: nn.Module, mixins: tuple[type, ...], ctx: ShardContext) -> None:
    key = (*mixins, type(module))
    if key not in _CLASSES:
        _CLASSES[key] = type(f"SequenceParallel{type(module).__name__}", key, {"__module__": __name__})
    module.__class__ = _CLASSES[key]
    module.__dict__["_sp"] = ctx
    if isinstance(module, SpaceTimeAttention):
        module.pattern = ShardedPattern(module.pattern, ctx.group, frames=ctx)


def parallelize(module: nn.Module, group) -> nn.Module:
    """Make ``module`` sequence-parallel over ``group`` (in place; returns it): see the module docstring.

    ``module``: a :class:`~spacetime.models.VideoUNet`, :class:`~spacetime.models.VideoTransformer`,
    :class:`~spacetime.layers.FactorizedAttention`, :class:`~spacetime.blocks.TransformerBlock`,
    :class:`~spacetime.blocks.AttentionBlock` or :class:`~spacetime.layers.SpaceTimeAttention`. Its forward
    then takes this rank's frames (:func:`~spacetime.parallel.shard_video`; a ``VideoTransformer``'s in whole
    tubelets, ``shard_video(x, group, unit=tubelet[0])``) and a frame mask of those frames, and returns this
    rank's frames of the output (a ``VideoTransformer``: the clip's logits, on every rank). Every rank of
    ``group`` must call the forward together.
    """
    ctx = ShardContext(check_group(group))
    root = next((mixin for cls, mixin in _ROOTS if isinstance(module, cls)), None)
    if root is None:
        raise TypeError(f"parallelize takes a {', '.join(cls.__name__ for cls, _ in _ROOTS)}; got "
                        f"{type(module).__name__}")
    if any(is_parallel(m) for m in module.modules()):
        raise ValueError(f"parallelize: {type(module).__name__} is sequence-parallel already")
    whole = set()  # a factorized encoder's temporal blocks run on the gathered frame tokens, whole
    if isinstance(module, VideoTransformer) and module.config.variant == "factorized_encoder":
        whole = {id(m) for m in module.temporal_blocks.modules()}
    plan = [(m, _part(name, m, ctx) if id(m) not in whole else (_ShardedDropPath,) if isinstance(m, DropPath) else ())
            for name, m in module.named_modules()]  # every check first: a refused module is left as it was
    for m, mixins in plan:
        if m is module:
            mixins = (root, *mixins)
        if mixins:
            _swap(m, mixins, ctx)
    return module
