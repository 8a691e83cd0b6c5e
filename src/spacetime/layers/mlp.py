"""Feed-forward layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import one_of

__all__ = ["Mlp", "GEGLU", "QuickGELU", "ACTIVATIONS"]

#: the MLP activations: exact GELU, its tanh approximation (``gelu_fast``/``gelu_new`` elsewhere),
#: ``x * sigmoid(1.702 x)`` (CLIP's quick GELU), SiLU, and GEGLU (a gated GELU, twice the first width)
ACTIVATIONS = ("gelu", "gelu_tanh", "quick_gelu", "silu", "geglu")


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class GEGLU(nn.Module):
    """A gated GELU on ``(..., 2 hidden)``: the first half times the GELU of the second."""

    def forward(self, x: Tensor) -> Tensor:
        value, gate = x.chunk(2, dim=-1)
        return value * F.gelu(gate)


def _activation(act: str) -> nn.Module:
    one_of("act", act, ACTIVATIONS)
    return {"gelu": lambda: nn.GELU(), "gelu_tanh": lambda: nn.GELU(approximate="tanh"), "quick_gelu": QuickGELU,
            "silu": nn.SiLU, "geglu": GEGLU}[act]()


class Mlp(nn.Sequential):
    """``Linear(dim, hidden) -> activation -> Linear(hidden, dim)``, acting on the last axis.

    A ``Sequential`` so its parameters are ``0.*`` and ``2.*`` (the names the design texts use);
    with ``drop > 0`` a dropout follows at index 3. ``act`` is one of :data:`ACTIVATIONS`
    (``"gelu"``, exact, by default); with ``"geglu"`` the first layer is ``dim -> 2 hidden``.
    """

    def __init__(self, dim: int, hidden_dim: int | None = None, *, mlp_ratio: float = 4.0, drop: float = 0.0,
                 act: str = "gelu", device=None, dtype=None):
        hidden = hidden_dim if hidden_dim is not None else int(dim * mlp_ratio)
        if hidden < 1:
            raise ValueError(f"hidden_dim must be >= 1; got {hidden} (dim={dim}, mlp_ratio={mlp_ratio})")
        activation = _activation(act)
        width = 2 * hidden if act == "geglu" else hidden
        layers = [nn.Linear(dim, width, device=device, dtype=dtype), activation,
                  nn.Linear(hidden, dim, device=device, dtype=dtype)]
        if drop > 0:
            layers.append(nn.Dropout(drop))
        super().__init__(*layers)
