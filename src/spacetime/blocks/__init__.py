"""Residual blocks composed of :mod:`spacetime.layers`."""

from .transformer import AttentionBlock, DropPath, TransformerBlock, drop_path

__all__ = ["AttentionBlock", "TransformerBlock", "DropPath", "drop_path"]
