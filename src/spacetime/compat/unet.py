"""Text 004's factorized video U-Net, weight-compatible with the text and built on the library's blocks.

``FactorizedVideoUNet(in_channels=1, base_dim=32, num_heads=4)`` keeps the text's module tree, so a
``state_dict`` trained with the text's code loads with ``strict=True`` and gives the same outputs.
The forward pass works channels-last, ``(b, t, h, w, c)``: the attention blocks take that layout
without a copy, and the per-frame convolutions see it as ``channels_last`` memory.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from ..layers.embeddings import SinusoidalTimeEmbed
from ..ops.layout import check_video
from .attention import FactorizedSpaceTimeBlock

__all__ = ["FactorizedVideoUNet"]


def _conv_norm_act(conv: nn.Module, channels: int) -> nn.Sequential:
    return nn.Sequential(conv, nn.GroupNorm(4, channels), nn.GELU())


def _per_frame(module: nn.Module, x: Tensor) -> Tensor:
    """Apply a 2-D module to every frame of a channels-last video ``(b, t, h, w, c)``."""
    b = x.shape[0]
    frames = rearrange(x, "b t h w c -> (b t) c h w")  # a view in channels_last memory format
    return rearrange(module(frames), "(b t) c h w -> b t h w c", b=b)


class FactorizedVideoUNet(nn.Module):
    """Text 004's two-level U-Net with factorized space-time attention; predicts the noise.

    ``forward(x, t)``: ``x (B, C, T, H, W)`` noisy video, ``t (B,)`` diffusion timesteps ->
    ``(B, C, T, H, W)``. All convolutions are per frame (2-D); time is modelled only by the
    temporal attention inside each :class:`~spacetime.compat.FactorizedSpaceTimeBlock`.
    ``H`` and ``W`` must be even (one stride-2 level).

    Submodules (the text's names): ``time_embed``, ``enc1_conv``, ``enc1_attn``, ``enc2_conv``,
    ``enc2_attn``, ``bottleneck``, ``dec2_conv``, ``dec2_attn``, ``out_conv``, ``time_proj1``,
    ``time_proj2``.
    """

    def __init__(self, in_channels: int = 1, base_dim: int = 32, num_heads: int = 4):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("base_dim", base_dim), ("num_heads", num_heads)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        if base_dim % 4:
            raise ValueError(f"base_dim must be a multiple of 4 (GroupNorm with 4 groups); got {base_dim}")
        self.in_channels, self.base_dim = in_channels, base_dim
        c1, c2 = base_dim, 2 * base_dim
        self.time_embed = SinusoidalTimeEmbed(c1)
        self.enc1_conv = _conv_norm_act(nn.Conv2d(in_channels, c1, 3, padding=1), c1)
        self.enc1_attn = FactorizedSpaceTimeBlock(c1, num_heads)
        self.enc2_conv = _conv_norm_act(nn.Conv2d(c1, c2, 3, stride=2, padding=1), c2)
        self.enc2_attn = FactorizedSpaceTimeBlock(c2, num_heads)
        self.bottleneck = FactorizedSpaceTimeBlock(c2, num_heads)
        self.dec2_conv = _conv_norm_act(nn.ConvTranspose2d(2 * c2, c1, 2, stride=2), c1)
        self.dec2_attn = FactorizedSpaceTimeBlock(c1, num_heads)
        self.out_conv = nn.Conv2d(2 * c1, in_channels, 1)
        self.time_proj1 = nn.Linear(c1, c1)
        self.time_proj2 = nn.Linear(c1, c2)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        b, _, h, w = check_video(x, "bcthw", self.in_channels)
        if h % 2 or w % 2:
            raise ValueError(f"x needs even H and W (one stride-2 level); got H={h}, W={w} in shape {tuple(x.shape)}")
        if not isinstance(t, Tensor) or t.shape != (b,):
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"t must be a (B,) tensor of timesteps with B={b}; got {shape}")
        t_emb = self.time_embed(t)  # (b, c1)
        per_video = lambda v: v[:, None, None, None, :]  # noqa: E731  (b, c) -> (b, 1, 1, 1, c)

        x = rearrange(x, "b c t h w -> b t h w c")
        h1 = _per_frame(self.enc1_conv, x) + per_video(self.time_proj1(t_emb))
        h1 = self.enc1_attn.forward_channels_last(h1)
        h2 = _per_frame(self.enc2_conv, h1) + per_video(self.time_proj2(t_emb))
        h2 = self.enc2_attn.forward_channels_last(h2)
        mid = self.bottleneck.forward_channels_last(h2)
        dec = _per_frame(self.dec2_conv, torch.cat([mid, h2], dim=-1))
        dec = self.dec2_attn.forward_channels_last(dec)
        out = _per_frame(self.out_conv, torch.cat([dec, h1], dim=-1))
        return rearrange(out, "b t h w c -> b c t h w")

