"""A plain reference of text 004's U-Net (NCHW per-frame convs, explicit attention), for tests only.

Written from the text's description: 2-D convs per frame, time embedding added after each encoder
conv, factorized attention blocks (the plain reference blocks of ``tests.compat.text_reference``), one
skip per level. It produces the text's ``state_dict`` keys.
"""

import math

import torch
from torch import nn

from tests.compat.text_reference import RefFactorizedBlock004


class RefTimeEmbed(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 4), nn.GELU(), nn.Linear(dim * 4, dim))

    def forward(self, t):
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half) / half)
        args = t[:, None].float() * freqs[None, :]
        return self.mlp(torch.cat([args.sin(), args.cos()], dim=-1))


def _stage(conv, channels):
    return nn.Sequential(conv, nn.GroupNorm(4, channels), nn.GELU())


class RefFactorizedVideoUNet(nn.Module):
    def __init__(self, in_channels=1, base_dim=32, num_heads=4):
        super().__init__()
        c1, c2 = base_dim, 2 * base_dim
        self.time_embed = RefTimeEmbed(c1)
        self.enc1_conv = _stage(nn.Conv2d(in_channels, c1, 3, padding=1), c1)
        self.enc1_attn = RefFactorizedBlock004(c1, num_heads)
        self.enc2_conv = _stage(nn.Conv2d(c1, c2, 3, stride=2, padding=1), c2)
        self.enc2_attn = RefFactorizedBlock004(c2, num_heads)
        self.bottleneck = RefFactorizedBlock004(c2, num_heads)
        self.dec2_conv = _stage(nn.ConvTranspose2d(2 * c2, c1, 2, stride=2), c1)
        self.dec2_attn = RefFactorizedBlock004(c1, num_heads)
        self.out_conv = nn.Conv2d(2 * c1, in_channels, 1)
        self.time_proj1 = nn.Linear(c1, c1)
        self.time_proj2 = nn.Linear(c1, c2)

    @staticmethod
    def _attend(block, frames, B, T):  # (B*T, C, H, W) -> block over (B, T, H, W, C) -> (B*T, C, H, W)
        _, C, H, W = frames.shape
        video = frames.reshape(B, T, C, H, W).permute(0, 1, 3, 4, 2)
        return block(video).permute(0, 1, 4, 2, 3).reshape(B * T, C, H, W)

    def forward(self, x, t):  # x (B, C, T, H, W), t (B,)
        B, C, T, H, W = x.shape
        emb = self.time_embed(t)
        frames = x.permute(0, 2, 1, 3, 4).reshape(B * T, C, H, W)
        h1 = self.enc1_conv(frames) + self.time_proj1(emb).repeat_interleave(T, dim=0)[:, :, None, None]
        h1 = self._attend(self.enc1_attn, h1, B, T)
        h2 = self.enc2_conv(h1) + self.time_proj2(emb).repeat_interleave(T, dim=0)[:, :, None, None]
        h2 = self._attend(self.enc2_attn, h2, B, T)
        mid = self._attend(self.bottleneck, h2, B, T)
        dec = self._attend(self.dec2_attn, self.dec2_conv(torch.cat([mid, h2], dim=1)), B, T)
        out = self.out_conv(torch.cat([dec, h1], dim=1))
        return out.reshape(B, T, C, H, W).permute(0, 2, 1, 3, 4)
