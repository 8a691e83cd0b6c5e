"""Residual blocks composed of :mod:`spacetime.layers`."""

from .motion import FramePositionNorm, MotionModule
from .transformer import AttentionBlock, DropPath, TransformerBlock, drop_path

__all__ = ["AttentionBlock", "TransformerBlock", "DropPath", "drop_path", "MotionModule", "FramePositionNorm"]
