"""Datasets of videos, each item ``(C, T, H, W)`` floats in [0, 1]."""

from .bouncing import BouncingDisks, create_dataset, create_moving_mnist_video
from .digits import MovingDigits, create_digit_dataset
from .moving_mnist import MovingMNIST
from .video_folder import VideoFolder

__all__ = ["BouncingDisks", "create_dataset", "create_moving_mnist_video", "MovingDigits", "create_digit_dataset",
           "MovingMNIST", "VideoFolder"]
