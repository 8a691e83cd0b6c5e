"""Whole networks: text 004's factorized U-Net and the configurable :class:`VideoUNet`."""

from .embeddings import SinusoidalTimeEmbed
from .seed_unet import FactorizedVideoUNet
from .video_unet import VideoUNet, VideoUNetConfig

__all__ = ["SinusoidalTimeEmbed", "FactorizedVideoUNet", "VideoUNet", "VideoUNetConfig"]
