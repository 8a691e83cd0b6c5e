"""``VideoSwin``: the Video Swin Transformer (Liu et al. 2022; torchvision's ``swin3d_t/s/b``) from spacetime's pieces.

``(b, c, t, h, w)`` clip -> zero-padded to tubelet multiples -> tubelet embedding (a ``Conv3d``) and its
LayerNorm -> stages of Swin blocks -> patch merging between stages (2x2 neighbours of each frame, their
channels concatenated, normed and halved: the grid halves in rows and columns, the width doubles) ->
final LayerNorm -> mean over every token -> linear head.

A Swin block (:class:`SwinBlock`) is ``x + drop_path(attn(norm(x)))`` then ``x + drop_path(mlp(norm_mlp(x)))``,
its attention a :class:`~spacetime.layers.window.WindowAttention`: window attention with a relative-position
bias, shifted by half the window in every other block of a stage. Stochastic depth rises linearly from 0
at the first block to ``drop_path`` at the last, over all stages.

``padding`` and ``clipped_bias`` choose between spacetime's rules (the defaults: padded positions are never
keys; a window clipped to a short axis gets its true relative offsets) and Video Swin's and torchvision's
(``"zeros"``, ``"leading"``), which :func:`spacetime.interop.torchvision.from_torchvision` sets;
:mod:`spacetime.layers.window` says what each does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..blocks.transformer import DropPath
from ..checks import int_at_least, int_tuple, number_in, one_of, positive_int
from ..config import Config
from ..layers.attention import check_heads
from ..layers.embeddings import TubeletEmbedding
from ..layers.mlp import Mlp
from ..layers.window import CLIPPED_BIASES, PADDINGS, WindowAttention
from ..ops.layout import check_layout, check_video
from .base import Model

__all__ = ["VideoSwin", "VideoSwinConfig", "SwinBlock", "PatchMerging", "PRESETS", "drop_path_rates"]


def _positive_ints(name: str, value) -> tuple[int, ...]:
    """A non-empty sequence of positive ints, as a tuple."""
    try:
        items = tuple(value)
    except TypeError:
        items = ()
    if not items:
        raise ValueError(f"{name} must be a non-empty sequence of positive ints (one per stage); got {value!r}")
    for item in items:
        positive_int(name, item, note=f" in each entry (one per stage); {name}={value!r}")
    return tuple(int(v) for v in items)


@dataclass
class VideoSwinConfig(Config):
    """Everything that defines a :class:`VideoSwin` (saved as JSON beside checkpoints).

    ``depths`` and ``num_heads`` have one entry per stage; stage ``i`` is ``dim * 2**i`` wide. ``drop`` is
    the dropout after the patch embedding, after every attention's output projection and after every
    MLP; ``attn_drop`` the dropout of the attention weights; ``drop_path`` the stochastic-depth rate of
    the last block. ``norm_eps`` is every LayerNorm's epsilon. ``num_classes=0`` builds no head.
    """

    num_classes: int = 400
    in_channels: int = 3
    tubelet: tuple[int, int, int] = (2, 4, 4)
    dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: tuple[int, int, int] = (8, 7, 7)
    mlp_ratio: float = 4.0
    drop: float = 0.0
    attn_drop: float = 0.0
    drop_path: float = 0.1
    norm_eps: float = 1e-5
    padding: str = "exclude"
    clipped_bias: str = "relative"
    layout: str = "bcthw"

    def __post_init__(self):
        self.tubelet = int_tuple("tubelet", self.tubelet, 3, axes="(tt, ph, pw)")
        self.window_size = int_tuple("window_size", self.window_size, 3, axes="(wt, wh, ww)")
        self.depths = _positive_ints("depths", self.depths)
        self.num_heads = _positive_ints("num_heads", self.num_heads)
        if len(self.depths) != len(self.num_heads):
            raise ValueError(f"depths and num_heads need one entry per stage each; got {len(self.depths)} depths "
                             f"{self.depths} and {len(self.num_heads)} num_heads {self.num_heads}")
        positive_int("in_channels", self.in_channels)
        positive_int("dim", self.dim)
        int_at_least("num_classes", self.num_classes, 0, note=" (0: no head)")
        for i, heads in enumerate(self.num_heads):
            check_heads(self.dim * 2 ** i, heads)
        number_in("mlp_ratio", self.mlp_ratio, 0, low_open=True)
        if int(self.dim * self.mlp_ratio) < 1:
            raise ValueError(f"mlp_ratio must give an MLP at least 1 wide; got {self.mlp_ratio} at dim={self.dim}")
        for name in ("drop", "attn_drop", "drop_path"):
            number_in(name, getattr(self, name), 0, 1, high_open=True)
        number_in("norm_eps", self.norm_eps, 0, low_open=True)
        one_of("padding", self.padding, PADDINGS)
        one_of("clipped_bias", self.clipped_bias, CLIPPED_BIASES)
        check_layout(self.layout)

    @property
    def num_features(self) -> int:
        """The width of the last stage (what the head reads)."""
        return self.dim * 2 ** (len(self.depths) - 1)


#: torchvision's ``swin3d_t``, ``swin3d_s`` and ``swin3d_b`` (Kinetics-400 heads) with spacetime's padding rules
PRESETS: dict[str, VideoSwinConfig] = {
    "tiny": VideoSwinConfig(dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    "small": VideoSwinConfig(dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    "base": VideoSwinConfig(dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
}


def drop_path_rates(total: int, rate: float) -> list[float]:
    """Stochastic-depth rates of ``total`` blocks, from 0 to ``rate`` in equal steps (one block: 0)."""
    return [rate * float(i) / (total - 1) if total > 1 else 0.0 for i in range(total)]


class SwinBlock(nn.Module):
    """A pre-norm Swin block on ``(b, t, h, w, dim)``: window attention with a relative bias, then an MLP.

    Submodules: ``norm``, ``attn`` (:class:`~spacetime.layers.window.WindowAttention`), ``norm_mlp``, ``mlp``
    (:class:`~spacetime.layers.mlp.Mlp`, exact GELU, dropout ``drop`` after it), ``drop_path``
    (:class:`~spacetime.blocks.transformer.DropPath`, one draw per sample for each residual branch).
    """

    def __init__(self, dim: int, num_heads: int, window_size, shift, *, mlp_ratio: float = 4.0, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0, norm_eps: float = 1e-5, padding: str = "exclude",
                 clipped_bias: str = "relative"):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = WindowAttention(dim, num_heads, window_size, shift, padding=padding, clipped_bias=clipped_bias,
                                    attn_drop=attn_drop, proj_drop=drop)
        self.norm_mlp = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_ratio=mlp_ratio, drop=drop)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn.forward_channels_last(self.norm(x)))
        return x + self.drop_path(self.mlp(self.norm_mlp(x)))


class PatchMerging(nn.Module):
    """``(b, t, h, w, dim) -> (b, t, ceil(h/2), ceil(w/2), 2 dim)``: each frame's 2x2 neighbours, normed and reduced.

    An odd number of rows or columns is padded with a zero row or column. The four neighbours are
    concatenated column-major, ``(row 0, col 0), (row 1, col 0), (row 0, col 1), (row 1, col 1)``, as
    torchvision does. Parameters: ``norm`` (LayerNorm over ``4 dim``), ``reduction`` (``4 dim -> 2 dim``, no bias).
    """

    def __init__(self, dim: int, norm_eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=norm_eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[2:4]
        if h % 2 or w % 2:  # F.pad pads the last axes first: (c, w, h)
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = rearrange(x, "b t (h ph) (w pw) c -> b t h w (pw ph c)", ph=2, pw=2)
        return self.reduction(self.norm(x))


class VideoSwin(Model):
    """The Video Swin Transformer classifier: ``model(x)``, ``x`` a clip in ``config.layout`` -> ``(b, num_classes)``.

    Any clip size works: the clip is zero-padded at the end to tubelet multiples (as Video Swin and
    torchvision do), and the windows are padded or clipped as ``config.padding`` says. Build it with
    ``VideoSwin(VideoSwinConfig(...))`` or ``VideoSwin.from_preset("tiny", num_classes=10)``.

    Submodules: ``patch_embed`` (:class:`~spacetime.layers.embeddings.TubeletEmbedding`), ``patch_norm``,
    ``pos_drop``, ``stages`` (a ``ModuleList`` per stage of :class:`SwinBlock` s), ``merges``
    (:class:`PatchMerging` after each stage but the last), ``norm``, ``head``. Linear weights start
    trunc-normal (std 0.02) with zero biases, as torchvision's.
    """

    config_class = VideoSwinConfig
    presets = PRESETS

    def __init__(self, config: VideoSwinConfig):
        super().__init__(config)
        c = config
        self.patch_embed = TubeletEmbedding(c.in_channels, c.dim, c.tubelet, layout=c.layout)
        self.patch_norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.pos_drop = nn.Dropout(c.drop)
        rates = iter(drop_path_rates(sum(c.depths), c.drop_path))
        self.stages = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(c.depths, c.num_heads)):
            shifted = tuple(ws // 2 for ws in c.window_size)
            self.stages.append(nn.ModuleList(
                SwinBlock(c.dim * 2 ** i, heads, c.window_size, shifted if j % 2 else (0, 0, 0), mlp_ratio=c.mlp_ratio,
                          drop=c.drop, attn_drop=c.attn_drop, drop_path=next(rates), norm_eps=c.norm_eps,
                          padding=c.padding, clipped_bias=c.clipped_bias)
                for j in range(depth)
            ))
        self.merges = nn.ModuleList(PatchMerging(c.dim * 2 ** i, c.norm_eps) for i in range(len(c.depths) - 1))
        self.norm = nn.LayerNorm(c.num_features, eps=c.norm_eps)
        self.head = nn.Linear(c.num_features, c.num_classes) if c.num_classes else nn.Identity()
        self.apply(_init_weights)

    def _pad_clip(self, x: Tensor) -> Tensor:
        """The clip zero-padded at the end of T, H and W to multiples of the tubelet."""
        layout = self.config.layout
        _, t, h, w = check_video(x, layout, self.config.in_channels)
        need = {axis: (-n) % p for axis, n, p in zip("thw", (t, h, w), self.config.tubelet)}
        if not any(need.values()):
            return x
        pads = [amount for axis in reversed(layout) for amount in (0, need.get(axis, 0))]  # last axis first
        return F.pad(x, pads)

    def forward_tokens(self, x: Tensor) -> Tensor:
        """``x -> (b, t', h', w', num_features)``: the last stage's tokens, before the final norm."""
        tokens = self.pos_drop(self.patch_norm(self.patch_embed(self._pad_clip(x))))  # (b, t, h, w, dim)
        for i, stage in enumerate(self.stages):
            for block in stage:
                tokens = block(tokens)
            if i < len(self.merges):
                tokens = self.merges[i](tokens)
        return tokens

    def forward_features(self, x: Tensor) -> Tensor:
        """``x -> (b, num_features)``: the normed tokens averaged over the clip."""
        return self.norm(self.forward_tokens(x)).mean(dim=(1, 2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """``x`` in ``config.layout`` -> ``(b, num_classes)`` logits (the pooled features when ``num_classes=0``)."""
        return self.head(self.forward_features(x))


def _init_weights(module: nn.Module) -> None:
    """Trunc-normal (std 0.02) linear weights and zero biases, torchvision's initialisation of its Swin."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
