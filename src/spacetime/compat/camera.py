"""Text 002's camera cross-attention, a front door over :class:`spacetime.layers.camera.CameraAttention`."""

from __future__ import annotations

from ..layers.camera import CameraAttention

__all__ = ["CameraCrossAttention"]


class CameraCrossAttention(CameraAttention):
    """Text 002: pixels of frame ``t`` attend to the camera vector of frame ``t`` (SEED_API.md).

    ``forward(x, cam_features)``: ``x (B, T, C, H, W)``, ``cam_features (B, T, D_cam)`` ->
    ``(B, T, C, H, W)``. Parameters ``to_q``, ``to_k``, ``to_v`` (no bias) and ``proj``; no
    residual. One key per query makes the softmax identically 1: the output is
    ``proj(to_v(cam_t))`` at every pixel of frame ``t`` and ``to_q``/``to_k`` get no gradient
    (the contract; see :class:`CameraAttention` for the non-degenerate options).
    """

    def __init__(self, latent_dim: int, cam_dim: int, num_heads: int = 8):
        super().__init__(latent_dim, cam_dim, num_heads, layout="btchw")
        self.latent_dim = latent_dim
