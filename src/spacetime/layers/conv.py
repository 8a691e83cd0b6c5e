"""``Conv3d``: ``nn.Conv3d`` (the same parameters, state dict and checks) on :func:`spacetime.ops.conv.conv3d`."""

from __future__ import annotations

from torch import Tensor, nn

from ..ops.conv import conv3d

__all__ = ["Conv3d"]


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` whose convolutions over frames only run as 2D ones (:mod:`spacetime.ops.conv`): a drop-in,
    weight for weight; other padding modes than zeros keep ``nn.Conv3d``'s own path."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if self.padding_mode != "zeros":
            return super()._conv_forward(input, weight, bias)
        return conv3d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)
