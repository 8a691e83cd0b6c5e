"""Pooling layers: a class token that reads a sequence of tokens by attention (CaiT's class attention)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from ..ops.attention import attention
from .attention import check_heads
from .mlp import Mlp

__all__ = ["ClassAttentionPool"]


class ClassAttentionPool(nn.Module):
    """A learned CLS token that reads a token sequence: ``(b, n, dim) -> (b, dim)``.

    ``cls + attn(norm(cls), norm([cls; tokens]))`` then ``+ mlp(norm(.))``; the CLS token is one
    of its own keys, so a clip whose tokens are all masked still gets a finite read-out.
    Parameters: ``cls_token``, ``norm``, ``q``, ``kv``, ``proj``, ``norm_mlp``, ``mlp``.
    """

    def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float = 4.0, qkv_bias: bool = True):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, check_heads(dim, num_heads)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.norm = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio=mlp_ratio)

    def forward(self, tokens: Tensor, token_mask: Tensor | None = None) -> Tensor:
        b = tokens.shape[0]
        cls = self.cls_token.expand(b, -1, -1)
        u = self.norm(torch.cat([cls, tokens], dim=1))  # (b, 1 + n, dim)
        q = rearrange(self.q(u[:, :1]), "b n (heads d) -> b heads n d", heads=self.num_heads)
        k, v = rearrange(self.kv(u), "b n (two heads d) -> two b heads n d", two=2, heads=self.num_heads)
        mask = None
        if token_mask is not None:  # the CLS key is always there: (b, 1, 1, 1 + n)
            mask = torch.cat([token_mask.new_ones(b, 1), token_mask], dim=1)[:, None, None, :]
        out = rearrange(attention(q, k, v, mask=mask), "b heads 1 d -> b (heads d)")
        x = cls[:, 0] + self.proj(out)
        return x + self.mlp(self.norm_mlp(x))
