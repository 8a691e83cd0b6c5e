"""Camera conditioning layers: cross-attention from video to cameras, and Plücker-ray injection.

:class:`CameraAttention`
    queries from every pixel, keys and values from per-frame camera tokens. Two choices make
    it a real attention: which frames' cameras a frame may see (``reach``, a
    :class:`~spacetime.ops.patterns.Temporal` pattern over frames: own frame, all, causal,
    ``+-k``), and how a camera vector becomes tokens (``tokens``: :class:`RawCamera` or
    :class:`FourierCamera`).
:class:`PluckerInjection`
    per-pixel Plücker rays (:func:`spacetime.ops.camera.plucker_rays`) added to the features
    through a zero-initialised projection, as CameraCtrl does: a pretrained model starts unchanged.

.. warning:: **The frame-local single-token trap.** With ``reach="own"`` and ``RawCamera``
   tokens each query sees exactly one key, so the softmax is identically 1: the output is
   ``proj(to_v(camera_t))``, the same for every pixel of frame ``t``, and ``to_q``/``to_k``
   receive an exactly zero gradient. That is text 002's contract
   (:class:`spacetime.compat.CameraCrossAttention` keeps it); it conditions a frame on its camera like an added per-frame bias. Choose
   ``tokens=FourierCamera()`` or a wider ``reach`` for an output that depends on the pixel.
   (The trap holds for any frame that sees a single token: with ``reach="causal"`` and raw
   tokens, frame 0 is constant over its pixels.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from ..checks import number_in, positive_int
from ..ops.attention import attention
from ..ops.camera import check_cameras
from ..ops.encodings import sinusoidal_table
from ..ops.layout import check_layout, check_video, from_channels_last, to_channels_last
from ..ops.patterns import Temporal
from .attention import check_heads

__all__ = ["RawCamera", "FourierCamera", "CAMERA_REACH", "CameraAttention", "PluckerInjection"]


@dataclass(frozen=True)
class RawCamera:
    """One key/value token per frame: the camera vector itself (text 002's choice)."""

    def num_tokens(self, cam_dim: int) -> int:
        return 1

    def token_dim(self, cam_dim: int) -> int:
        return cam_dim

    def __call__(self, cams: Tensor) -> Tensor:
        """``(b, t, D)`` -> ``(b, t, 1, D)``."""
        return cams[:, :, None, :]


@dataclass(frozen=True)
class FourierCamera:
    """One token per camera parameter: its Fourier features, its value and which parameter it is.

    Parameter ``i`` with value ``x`` becomes ``[sin(f_k x)]_k, [cos(f_k x)]_k, x, onehot(i)``: the
    :func:`~spacetime.ops.encodings.sinusoidal_table` of ``x`` at the octave frequencies
    ``f_k = min_freq * 2**(num_bands - 1 - k)``, ``k < num_bands`` (highest first): ``D`` tokens
    of width ``2 * num_bands + 1 + D`` per frame. (Angles are radians; normalise translations to about
    unit scale, e.g. with :func:`spacetime.ops.camera.normalize_translation`.)
    """

    num_bands: int = 4
    min_freq: float = 1.0

    def __post_init__(self):
        positive_int("num_bands", self.num_bands)
        number_in("min_freq", self.min_freq, 0, low_open=True)

    def num_tokens(self, cam_dim: int) -> int:
        return cam_dim

    def token_dim(self, cam_dim: int) -> int:
        return 2 * self.num_bands + 1 + cam_dim

    def __call__(self, cams: Tensor) -> Tensor:
        """``(b, t, D)`` -> ``(b, t, D, 2 * num_bands + 1 + D)``."""
        d, bands = cams.shape[-1], self.num_bands
        top = self.min_freq * 2.0 ** (bands - 1)  # the table's frequencies are 2**-k; scale them to top * 2**-k
        features = sinusoidal_table((cams * top).flatten(), 2 * bands, base=2.0**bands)  # (b*t*D, 2*bands)
        features = features.to(cams.dtype).view(*cams.shape, 2 * bands)
        identity = torch.eye(d, dtype=cams.dtype, device=cams.device).expand(*cams.shape, d)
        return torch.cat([features, cams[..., None], identity], -1)


#: names accepted by ``reach=``; any :class:`~spacetime.ops.patterns.Temporal` works (``Temporal(window=k)`` is +-k)
CAMERA_REACH = {"own": Temporal(window=0), "all": Temporal(), "causal": Temporal(causal=True)}
_TOKENS = {"raw": RawCamera, "fourier": FourierCamera}


def _resolve_reach(reach) -> Temporal:
    if isinstance(reach, Temporal):
        return reach
    if isinstance(reach, str) and reach in CAMERA_REACH:
        return CAMERA_REACH[reach]
    raise ValueError(
        f"reach must be one of {sorted(CAMERA_REACH)} or a Temporal pattern (Temporal(window=k)); got {reach!r}"
    )


def _resolve_tokens(tokens):
    if isinstance(tokens, (RawCamera, FourierCamera)):
        return tokens
    if isinstance(tokens, str) and tokens in _TOKENS:
        return _TOKENS[tokens]()
    raise ValueError(f"tokens must be one of {sorted(_TOKENS)}, RawCamera() or FourierCamera(...); got {tokens!r}")


class CameraAttention(nn.Module):
    """Cross-attention from the pixels of a video to per-frame camera tokens.

    ``out = proj(attention(to_q(x), to_k(tokens), to_v(tokens)))``; no norm, no residual.

    Args:
        dim: channels of the video.
        cam_dim: length ``D`` of each frame's camera vector.
        num_heads: attention heads.
        reach: which frames' cameras the pixels of frame ``t`` attend to: ``"own"`` (frame ``t``
            only, the default), ``"all"``, ``"causal"`` (frames ``<= t``), or any
            :class:`~spacetime.ops.patterns.Temporal` pattern (``Temporal(window=k)``: frames
            ``t-k..t+k``). Expressed as a mask over :func:`spacetime.ops.attention`.
        tokens: how a camera vector becomes keys/values: ``"raw"`` / :class:`RawCamera` (one
            token) or ``"fourier"`` / :class:`FourierCamera` (``D`` tokens).
        head_dim: per-head width, ``dim // num_heads`` by default.
        qkv_bias: bias on ``to_q``, ``to_k``, ``to_v`` (off, as in text 002).
        attn_drop, proj_drop: dropout on the attention weights and on the output (training only).
        layout: axis order of ``x`` and the output.
        backend: attention backend; ``None`` follows the global default.

    Parameters: ``to_q`` (``dim -> heads*head_dim``), ``to_k``, ``to_v`` (token width ->
    ``heads*head_dim``), ``proj`` (``heads*head_dim -> dim``, with bias). See the module
    docstring for the frame-local single-token trap.
    """

    def __init__(self, dim: int, cam_dim: int, num_heads: int = 8, *, reach: Temporal | str = "own",
                 tokens: RawCamera | FourierCamera | str = "raw", head_dim: int | None = None, qkv_bias: bool = False,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, layout: str = "bthwc", backend: str | None = None,
                 device=None, dtype=None):
        super().__init__()
        positive_int("cam_dim", cam_dim)
        self.dim, self.cam_dim, self.num_heads = dim, cam_dim, num_heads
        self.head_dim = check_heads(dim, num_heads, head_dim)
        self.inner_dim = num_heads * self.head_dim
        self.reach = _resolve_reach(reach)
        self.tokens = _resolve_tokens(tokens)
        self.layout = check_layout(layout)
        self.backend = backend
        self.attn_drop = float(attn_drop)
        factory = {"device": device, "dtype": dtype}
        token_dim = self.tokens.token_dim(cam_dim)
        self.to_q = nn.Linear(dim, self.inner_dim, bias=qkv_bias, **factory)
        self.to_k = nn.Linear(token_dim, self.inner_dim, bias=qkv_bias, **factory)
        self.to_v = nn.Linear(token_dim, self.inner_dim, bias=qkv_bias, **factory)
        self.proj = nn.Linear(self.inner_dim, dim, **factory)
        self.proj_drop = nn.Dropout(proj_drop)

    @property
    def frame_local(self) -> bool:
        """Whether each frame attends to its own camera only."""
        return self.reach.window == 0

    @property
    def degenerate(self) -> bool:
        """True when every query sees exactly one key: output constant over pixels, no q/k gradient."""
        return self.frame_local and self.tokens.num_tokens(self.cam_dim) == 1

    def camera_mask(self, t: int, device=None) -> Tensor:
        """``(t, t * P)`` bool: may frame ``i`` attend to token ``p`` of frame ``j``; ``P`` tokens per frame."""
        frames = self.reach.dense_mask(t, 1, 1, device=device)  # (t, t): Temporal's who-sees-whom over frames
        return frames.repeat_interleave(self.tokens.num_tokens(self.cam_dim), dim=1)

    def forward(self, x: Tensor, cam_features: Tensor) -> Tensor:
        """``x`` video in ``self.layout``, ``cam_features`` ``(B, T, cam_dim)`` -> same shape as ``x``."""
        b, t, _, _ = check_video(x, self.layout, self.dim)
        check_cameras(cam_features, "cam_features", trailing=(self.cam_dim,), batch=b, frames=t)
        out = self.forward_channels_last(to_channels_last(x, self.layout), cam_features)
        return from_channels_last(out, self.layout).contiguous()

    def forward_channels_last(self, x: Tensor, cam_features: Tensor) -> Tensor:
        """``(b, t, h, w, c)`` and ``(b, t, cam_dim)`` -> ``(b, t, h, w, c)`` without checks (for composing)."""
        b, t, h, w, _ = x.shape
        tokens = self.tokens(cam_features.to(x.dtype))  # (b, t, p, e)
        q = rearrange(self.to_q(x), "b t h w (heads d) -> (b t) heads (h w) d", heads=self.num_heads)
        k, v = (rearrange(f(tokens), "b t p (heads d) -> b t heads p d", heads=self.num_heads)
                for f in (self.to_k, self.to_v))
        mask = None
        if self.frame_local:  # each frame sees its own tokens: group by frame, no mask
            k, v = (rearrange(z, "b t heads p d -> (b t) heads p d") for z in (k, v))
        else:  # each frame sees every frame's tokens, masked by reach
            k, v = (rearrange(z, "b t heads p d -> b heads (t p) d") for z in (k, v))
            k, v = (z[:, None].expand(b, t, *z.shape[1:]).flatten(0, 1) for z in (k, v))  # (b t) heads (t p) d
            mask = self.camera_mask(t, x.device)[:, None, None, :]  # (t, 1, 1, t p)
            mask = mask.expand(b, *mask.shape).flatten(0, 1)  # (b t, 1, 1, t p)
        drop = self.attn_drop if self.training else 0.0
        out = attention(q, k, v, mask=mask, backend=self.backend, dropout_p=drop)
        out = rearrange(out, "(b t) heads (h w) d -> b t h w (heads d)", b=b, h=h)
        return self.proj_drop(self.proj(out))

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, cam_dim={self.cam_dim}, num_heads={self.num_heads}, reach={self.reach}, "
                f"tokens={self.tokens}, layout={self.layout!r}")


class PluckerInjection(nn.Module):
    """Add per-pixel Plücker rays to video features through a zero-initialised projection (CameraCtrl).

    ``out = x + proj(rays)`` with ``proj`` a ``6 -> dim`` linear map (or, with ``hidden_dim``,
    ``6 -> hidden_dim -> SiLU -> dim``) whose last layer starts at zero, so a pretrained model
    wrapped with it computes exactly what it did before training starts.

    Args:
        dim: channels of the features.
        hidden_dim: width of an optional hidden layer.
        layout: axis order of ``x`` and the output.

    ``forward(x, rays)`` takes ``rays (B, T, 6, H, W)`` at the features' resolution, from
    :func:`spacetime.ops.camera.plucker_rays` (compute the intrinsics at that size).
    """

    def __init__(self, dim: int, *, hidden_dim: int | None = None, layout: str = "bthwc", device=None, dtype=None):
        super().__init__()
        positive_int("dim", dim)
        positive_int("hidden_dim", hidden_dim, none_ok=True)
        self.dim, self.layout = dim, check_layout(layout)
        factory = {"device": device, "dtype": dtype}
        if hidden_dim is None:
            self.proj = nn.Linear(6, dim, **factory)
        else:
            self.proj = nn.Sequential(
                nn.Linear(6, hidden_dim, **factory), nn.SiLU(), nn.Linear(hidden_dim, dim, **factory)
            )
        last = self.proj if hidden_dim is None else self.proj[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: Tensor, rays: Tensor) -> Tensor:
        """``x`` in ``self.layout``, ``rays (B, T, 6, H, W)`` -> ``x`` plus the projected rays."""
        b, t, h, w = check_video(x, self.layout, self.dim)
        if not isinstance(rays, Tensor) or rays.ndim != 5 or rays.shape[2] != 6:
            got = tuple(rays.shape) if isinstance(rays, Tensor) else type(rays).__name__
            raise ValueError(f"rays must have shape (B, T, 6, H, W) (Plücker rays); got {got}")
        if tuple(rays.shape) != (b, t, 6, h, w):
            raise ValueError(
                f"rays must match the video's (B, T, H, W) = {(b, t, h, w)}; got rays of shape {tuple(rays.shape)}"
            )
        check_cameras(rays.flatten(2), "rays", trailing=(-1,))  # finite
        out = to_channels_last(x, self.layout) + self.proj(rearrange(rays, "b t c h w -> b t h w c").to(x.dtype))
        return from_channels_last(out, self.layout).contiguous()
