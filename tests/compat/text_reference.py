"""Independent reference implementations of the design texts' classes (SEED_API.md semantics).

Written plainly, with explicit loops or ``nn.MultiheadAttention``, to produce state_dicts
with the texts' keys and outputs to compare against. Slow by design; test-only.
"""

import itertools
import math

import torch
from torch import nn


class RefFactorized000(nn.Module):
    def __init__(self, dim, num_heads=8):
        super().__init__()
        self.spatial_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.temporal_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    def forward(self, x):  # (B, T, C, H, W)
        B, T, C, H, W = x.shape
        frames = x.permute(0, 1, 3, 4, 2).reshape(B * T, H * W, C)
        frames = self.spatial_attn(frames, frames, frames, need_weights=False)[0]
        pixels = frames.reshape(B, T, H * W, C).transpose(1, 2).reshape(B * H * W, T, C)
        pixels = self.temporal_attn(pixels, pixels, pixels, need_weights=False)[0]
        return pixels.reshape(B, H, W, T, C).permute(0, 3, 4, 1, 2)


class RefWindow001(nn.Module):
    def __init__(self, dim, num_heads, window_size):
        super().__init__()
        self.num_heads, self.window_size = num_heads, window_size
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):  # (B, C, T, H, W); loops over tubes of real tokens
        B, C, T, H, W = x.shape
        heads, d = self.num_heads, C // self.num_heads
        wt, wh, ww = self.window_size
        tokens = x.permute(0, 2, 3, 4, 1)
        out = torch.zeros_like(tokens)
        for t0, h0, w0 in itertools.product(range(0, T, wt), range(0, H, wh), range(0, W, ww)):
            tube = tokens[:, t0:t0 + wt, h0:h0 + wh, w0:w0 + ww]
            shape = tube.shape
            seq = tube.reshape(B, -1, C)
            q, k, v = self.qkv(seq).reshape(B, -1, 3, heads, d).permute(2, 0, 3, 1, 4)
            attn = ((q @ k.transpose(-1, -2)) * d**-0.5).softmax(-1)
            y = self.proj((attn @ v).transpose(1, 2).reshape(B, -1, C))
            out[:, t0:t0 + wt, h0:h0 + wh, w0:w0 + ww] = y.reshape(shape)
        return out.permute(0, 4, 1, 2, 3)


class RefTemporalTransformer003(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x):  # (T, B, D)
        x = self.norm1(x + self.attn(x, x, x, need_weights=False)[0])
        return self.norm2(x + self.ffn(x))


class RefMiniSpaceTime003(nn.Module):
    def __init__(self, dim=3, num_heads=1):
        super().__init__()
        self.spatial = nn.MultiheadAttention(dim, num_heads)
        self.temporal = nn.MultiheadAttention(dim, num_heads)

    def forward(self, x):  # (B, T, N, D); loops as the text, with the batch kept apart
        B, T, N, D = x.shape
        frames = []
        for t in range(T):
            xt = x[:, t].transpose(0, 1)  # (N, B, D) sequence-first
            frames.append(self.spatial(xt, xt, xt, need_weights=False)[0].transpose(0, 1))
        xs = torch.stack(frames, dim=1)
        patches = []
        for n in range(N):
            xn = xs[:, :, n].transpose(0, 1)  # (T, B, D)
            patches.append(self.temporal(xn, xn, xn, need_weights=False)[0].transpose(0, 1))
        return torch.stack(patches, dim=2)


def explicit_mhsa(x, qkv, proj, num_heads, causal=False):
    """(B, N, C) multi-head self-attention with an explicit softmax."""
    B, N, C = x.shape
    d = C // num_heads
    q, k, v = qkv(x).reshape(B, N, 3, num_heads, d).permute(2, 0, 3, 1, 4)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(d)
    if causal:
        scores = scores.masked_fill(torch.ones(N, N, dtype=torch.bool).triu(1), float("-inf"))
    return proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(B, N, C))


class RefMHSA004(nn.Module):
    def __init__(self, dim, num_heads=4):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):  # (B, N, C)
        return explicit_mhsa(x, self.qkv, self.proj, self.num_heads)


class _RefBlock004(nn.Module):
    grouping = "spatial"

    def __init__(self, dim, num_heads=4):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = RefMHSA004(dim, num_heads)

    def forward(self, x):  # (B, T, H, W, C)
        B, T, H, W, C = x.shape
        if self.grouping == "spatial":
            seq = x.reshape(B * T, H * W, C)
            return (seq + self.attn(self.norm(seq))).reshape(B, T, H, W, C)
        if self.grouping == "temporal":
            seq = x.permute(0, 2, 3, 1, 4).reshape(B * H * W, T, C)
            seq = seq + self.attn(self.norm(seq))
            return seq.reshape(B, H, W, T, C).permute(0, 3, 1, 2, 4)
        seq = x.reshape(B, T * H * W, C)
        return (seq + self.attn(self.norm(seq))).reshape(B, T, H, W, C)


class RefSpatialBlock004(_RefBlock004):
    grouping = "spatial"


class RefTemporalBlock004(_RefBlock004):
    grouping = "temporal"


class RefFull3D004(_RefBlock004):
    grouping = "joint"


class RefCausal004(nn.Module):
    def __init__(self, dim, num_heads=4):
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):  # (B, T, H, W, C)
        B, T, H, W, C = x.shape
        seq = x.permute(0, 2, 3, 1, 4).reshape(B * H * W, T, C)
        seq = seq + explicit_mhsa(self.norm(seq), self.qkv, self.proj, self.num_heads, causal=True)
        return seq.reshape(B, H, W, T, C).permute(0, 3, 1, 2, 4)


class RefFactorizedBlock004(nn.Module):
    def __init__(self, dim, num_heads=4, mlp_ratio=4.0):
        super().__init__()
        self.spatial_attn = RefSpatialBlock004(dim, num_heads)
        self.temporal_attn = RefTemporalBlock004(dim, num_heads)
        self.norm_ff = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.ff = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x):
        x = self.temporal_attn(self.spatial_attn(x))
        return x + self.ff(self.norm_ff(x))
