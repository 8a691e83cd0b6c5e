"""Reading and writing videos: PyAV for decoding and MP4, Pillow for lossless GIFs, matplotlib for grids.

Frames are numpy arrays, ``(T, H, W)`` for grayscale or ``(T, H, W, 3)`` for RGB, ``uint8``
(or float in [0, 1], converted). Writes are atomic.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .files import atomic_write_bytes, save_figure

__all__ = ["VIDEO_SUFFIXES", "read_video", "to_uint8", "write_gif", "write_mp4", "write_grid_png", "read_gif",
           "read_frames"]

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".mkv", ".mov", ".avi", ".m4v")


def to_uint8(frames) -> np.ndarray:
    """Float frames in [0, 1] (clipped) or uint8 frames -> uint8 ``(T, H, W)`` / ``(T, H, W, 3)``."""
    frames = np.asarray(frames)
    if frames.ndim not in (3, 4) or (frames.ndim == 4 and frames.shape[-1] not in (1, 3)):
        raise ValueError(f"frames must be (T, H, W) or (T, H, W, 1|3); got shape {frames.shape}")
    if frames.ndim == 4 and frames.shape[-1] == 1:
        frames = frames[..., 0]
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def read_video(path, size: int | tuple[int, int] | None = None, grayscale: bool = False,
               max_frames: int | None = None) -> np.ndarray:
    """Decode a video file with PyAV -> uint8 ``(T, H, W)`` (grayscale) or ``(T, H, W, 3)`` (RGB).

    ``size`` resizes every frame to ``(H, W)`` (an int means square). Raises ``ValueError``
    naming the file when it cannot be decoded or holds no video frame.
    """
    import av

    path = Path(path)
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else tuple(size)
    fmt = "gray" if grayscale else "rgb24"
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            for frame in container.decode(video=0):
                if size is not None:
                    frame = frame.reformat(width=w, height=h, format=fmt)
                frames.append(frame.to_ndarray(format=fmt))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except (av.FFmpegError, ValueError, OSError, IndexError) as exc:
        raise ValueError(f"video {path}: cannot decode: {exc}") from None
    if not frames:
        raise ValueError(f"video {path}: no frames decoded")
    return np.stack(frames)


def read_gif(path) -> np.ndarray:
    """Read every frame of a GIF with Pillow -> uint8 ``(T, H, W)`` when every frame is gray, else ``(T, H, W, 3)``."""
    from PIL import Image, ImageSequence

    with Image.open(path) as im:
        frames = np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])
    if np.array_equal(frames[..., 0], frames[..., 1]) and np.array_equal(frames[..., 1], frames[..., 2]):
        return frames[..., 0]
    return frames


def read_frames(path, channels: int, size: int, name: str = "frames") -> np.ndarray:
    """Frames from a ``.npy`` (``(k, H, W)``, ``(C, k, H, W)`` or ``(N, C, k, H, W)``, floats in [0, 1] or uint8) or
    a video file (decoded and resized to ``size``; an RGB GIF read as gray by luminance when ``channels == 1``):
    float32 in [0, 1] scale, a ``.npy``'s leading axes kept, ``(C, k, H, W)`` from a video. ``name`` names the
    argument in errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name} {path}: not found (a .npy of frames or a video file)")
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ValueError(f"{name} {path}: not a readable .npy array: {exc}") from None
        array = array[None] if array.ndim == 3 else array  # (k, H, W) -> (C=1, k, H, W)
    else:
        frames = read_gif(path) if path.suffix.lower() == ".gif" else read_video(path, size, grayscale=channels == 1)
        if frames.ndim == 4 and channels == 1:  # RGB: luminance
            frames = frames @ np.array([0.299, 0.587, 0.114])
        array = frames[None] if frames.ndim == 3 else np.moveaxis(frames, -1, 0)  # (C, k, H, W)
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} {path}: expected numbers; got dtype {array.dtype}")
    if array.dtype == np.uint8:
        array = array / 255.0
    return np.ascontiguousarray(array, dtype=np.float32)


def write_gif(path, frames, fps: float = 8.0) -> Path:
    """Write frames as a looping GIF (Pillow; lossless for grayscale and few-colour frames); atomic."""
    from PIL import Image

    frames = to_uint8(frames)
    images = [Image.fromarray(f) for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return atomic_write_bytes(path, buffer.getvalue())


def write_mp4(path, frames, fps: float = 8.0, scale: int = 1) -> Path:
    """Write frames as H.264 MP4 (PyAV, yuv420p); atomic.

    Odd sizes are padded to even (libx264 needs them); ``scale`` upsamples by pixel repetition.
    """
    import av

    frames = to_uint8(frames)
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if scale > 1:
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    _, h, w, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))  # libx264 needs even sizes
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "18"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return atomic_write_bytes(path, buffer.getvalue())


def write_grid_png(path, videos, title: str | None = None) -> Path:
    """A PNG grid of videos (rows = videos, columns = frames), as text 004's figures; atomic.

    ``videos``: ``(N, T, H, W)`` or ``(N, T, H, W, 3)`` floats in [0, 1] or uint8.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    videos = np.asarray(videos)
    if videos.ndim not in (4, 5):
        raise ValueError(f"videos must be (N, T, H, W) or (N, T, H, W, 3); got shape {videos.shape}")
    n, t = videos.shape[:2]
    fig, axes = plt.subplots(n, t, figsize=(1.1 * t + 0.6, 1.1 * n + (0.5 if title else 0.2)), squeeze=False)
    for i in range(n):
        frames = to_uint8(videos[i])
        for j in range(t):
            ax = axes[i, j]
            ax.imshow(frames[j], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(f"f={j}", fontsize=8)
        axes[i, 0].set_ylabel(f"{i}", rotation=0, labelpad=10, fontsize=8, va="center")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)
