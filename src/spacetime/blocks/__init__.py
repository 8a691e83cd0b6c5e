"""Residual blocks composed of :mod:`spacetime.layers`."""

from .transformer import AttentionBlock, TransformerBlock

__all__ = ["AttentionBlock", "TransformerBlock"]
