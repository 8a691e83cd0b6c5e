"""Whole networks, each built from one config: ``VideoUNet(VideoUNetConfig(...))``,
``VideoTransformer(VideoTransformerConfig(...))``, or ``Model.from_preset(name, **changes)``."""

from .base import Model
from .classifier import VideoTransformer, VideoTransformerConfig
from .swin import VideoSwin, VideoSwinConfig
from .video_unet import VideoUNet, VideoUNetConfig

__all__ = ["Model", "VideoUNet", "VideoUNetConfig", "VideoTransformer", "VideoTransformerConfig", "VideoSwin",
           "VideoSwinConfig"]
