"""Text 004's sinusoidal timestep embedding (the sinusoids are :func:`spacetime.ops.encodings.sinusoidal_table`)."""

from __future__ import annotations

from torch import Tensor, nn

from ..ops.encodings import sinusoidal_table

__all__ = ["SinusoidalTimeEmbed"]


class SinusoidalTimeEmbed(nn.Module):
    """Text 004's timestep embedding: sinusoids of ``t`` then ``Linear(dim, 4 dim) -> GELU -> Linear(4 dim, dim)``.

    ``forward(t)`` takes ``(B,)`` timesteps (ints or floats) and returns ``(B, dim)``.
    Parameters ``mlp.0.*`` and ``mlp.2.*``.
    """

    def __init__(self, dim: int):
        super().__init__()
        if not isinstance(dim, int) or dim < 2 or dim % 2:
            raise ValueError(f"dim must be an even int >= 2; got {dim!r}")
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 4), nn.GELU(), nn.Linear(dim * 4, dim))

    def forward(self, t: Tensor) -> Tensor:
        if not isinstance(t, Tensor) or t.ndim != 1:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"t must be a 1-D tensor of timesteps (B,); got {shape}")
        return self.mlp(sinusoidal_table(t, self.dim))
