"""Feed-forward layers."""

from __future__ import annotations

from torch import nn

__all__ = ["Mlp"]


class Mlp(nn.Sequential):
    """``Linear(dim, hidden) -> GELU -> Linear(hidden, dim)``, acting on the last axis.

    A ``Sequential`` so its parameters are ``0.*`` and ``2.*`` (the names the design texts use);
    with ``drop > 0`` a dropout follows at index 3.
    """

    def __init__(self, dim: int, hidden_dim: int | None = None, *, mlp_ratio: float = 4.0, drop: float = 0.0,
                 device=None, dtype=None):
        hidden = hidden_dim if hidden_dim is not None else int(dim * mlp_ratio)
        if hidden < 1:
            raise ValueError(f"hidden_dim must be >= 1; got {hidden} (dim={dim}, mlp_ratio={mlp_ratio})")
        layers = [nn.Linear(dim, hidden, device=device, dtype=dtype), nn.GELU(),
                  nn.Linear(hidden, dim, device=device, dtype=dtype)]
        if drop > 0:
            layers.append(nn.Dropout(drop))
        super().__init__(*layers)
