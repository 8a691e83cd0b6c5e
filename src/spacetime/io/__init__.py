"""Files: atomic writes, checkpoints (safetensors weights, resumable state), video reading and writing."""

from .checkpoint import CheckpointError, load_state, load_weights, save_state, save_weights
from .files import atomic_write_bytes, atomic_write_text

__all__ = ["atomic_write_bytes", "atomic_write_text", "save_weights", "load_weights", "save_state", "load_state",
           "CheckpointError"]
