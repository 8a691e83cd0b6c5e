"""Checkpoints you can trust: safetensors weights with a JSON config in the metadata, and resumable
training state saved with ``torch.save`` and loaded with ``weights_only=True`` only.

Every write is atomic (:mod:`spacetime.io.files`). Every load failure raises
:class:`CheckpointError` naming the file and the problem: missing, truncated or not a checkpoint,
or a checkpoint of another kind.

    save_weights("run/ckpt.safetensors", {"model.w": w}, {"kind": "video_unet", "config": {...}})
    tensors, meta = load_weights("run/ckpt.safetensors", kind="video_unet")
    save_state("run/ckpt.state.pt", {"step": 10, "optimizer": opt.state_dict()})
    state = load_state("run/ckpt.state.pt")

A training run keeps its checkpoints in one folder: :func:`save_step_checkpoint` writes
``step-NNNNNN.safetensors`` and ``step-NNNNNN.state.pt``, then points ``latest.json`` at them
(written last, so a crash mid-save leaves the previous pair current); :func:`latest_checkpoint`
finds the pair a run folder, a checkpoints folder or a weights file means.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from torch import Tensor

from .files import atomic_write_bytes, atomic_write_text

__all__ = ["CheckpointError", "save_weights", "load_weights", "save_state", "load_state", "METADATA_KEY",
           "save_step_checkpoint", "latest_checkpoint", "step_checkpoints"]

#: the safetensors metadata entry holding spacetime's JSON metadata
METADATA_KEY = "spacetime"


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged, or not the kind that was asked for."""


def _existing(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: file not found" + (" (it is a folder)" if path.is_dir() else ""))
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path}: file is empty (0 bytes): an interrupted write?")
    return path


def save_weights(path, tensors: dict[str, Tensor], metadata: dict | None = None) -> Path:
    """Write ``tensors`` as safetensors with ``metadata`` (JSON-serialisable) under :data:`METADATA_KEY`; atomic."""
    from safetensors.torch import save

    if not isinstance(tensors, dict) or not all(isinstance(v, Tensor) for v in tensors.values()):
        raise TypeError(f"tensors must be a dict of str -> torch.Tensor; got {type(tensors).__name__}")
    meta = {METADATA_KEY: json.dumps(metadata or {}, sort_keys=True)}
    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=meta)
    return atomic_write_bytes(path, data)


def load_weights(path, kind: str | None = None) -> tuple[dict[str, Tensor], dict]:
    """``(tensors, metadata)`` from a file written by :func:`save_weights`.

    ``kind``, if given, must equal ``metadata["kind"]``. Raises :class:`CheckpointError` for a
    missing, truncated or foreign file.
    """
    from safetensors import safe_open

    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:  # safetensors raises its own SafetensorError (not exported in every version)
        raise CheckpointError(
            f"checkpoint {path}: not a readable safetensors file (truncated or foreign?): {exc}") from None
    if METADATA_KEY not in raw:
        raise CheckpointError(
            f"checkpoint {path}: a safetensors file without spacetime metadata (not written by spacetime)")
    try:
        metadata = json.loads(raw[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {path}: damaged metadata: {exc}") from None
    if kind is not None and metadata.get("kind") != kind:
        raise CheckpointError(f"checkpoint {path}: holds a {metadata.get('kind')!r} checkpoint; expected {kind!r}")
    return tensors, metadata


def save_state(path, state: dict) -> Path:
    """``torch.save`` a resumable-state dict atomically.

    Store plain ints, floats, strs, lists, dicts and tensors only: they load with ``weights_only=True``.
    """
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict; got {type(state).__name__}")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_state(path, kind: str | None = None) -> dict:
    """Load a :func:`save_state` file with ``torch.load(weights_only=True)``; clear errors for bad files."""
    path = _existing(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the weights-only unpickler raises many types for foreign bytes
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0]
        raise CheckpointError(
            f"checkpoint {path}: not a readable training-state file (truncated or foreign?): {first}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path}: expected a dict of training state; got {type(state).__name__}")
    if kind is not None and state.get("kind") != kind:
        raise CheckpointError(f"checkpoint {path}: holds a {state.get('kind')!r} state; expected {kind!r}")
    return state


def save_step_checkpoint(ckpt_dir, step: int, tensors: dict[str, Tensor], metadata: dict, state: dict) -> Path:
    """Write a run's checkpoint for ``step``: weights, then state, then the ``latest.json`` pointer.

    Returns the weights path.
    """
    ckpt_dir = Path(ckpt_dir)
    name = f"step-{step:06d}"
    weights = save_weights(ckpt_dir / f"{name}.safetensors", tensors, metadata)
    save_state(ckpt_dir / f"{name}.state.pt", state)
    pointer = {"step": step, "weights": f"{name}.safetensors", "state": f"{name}.state.pt"}
    atomic_write_text(ckpt_dir / "latest.json", json.dumps(pointer) + "\n")
    return weights


def latest_checkpoint(path) -> tuple[Path, Path | None]:
    """``(weights, state)`` paths a path means: a weights file (and its ``.state.pt`` sibling if any), or a run
    folder / checkpoints folder (the pair its ``latest.json`` names). Raises :class:`CheckpointError` when none."""
    path = Path(path)
    if not path.is_dir():
        state = path.with_name(path.name.removesuffix(".safetensors") + ".state.pt")
        return path, state if state.is_file() else None
    pointer = path / "latest.json" if (path / "latest.json").is_file() else path / "checkpoints" / "latest.json"
    if not pointer.is_file():
        raise CheckpointError(f"checkpoint {path}: a folder without checkpoints/latest.json (no finished checkpoint)")
    try:
        latest = json.loads(pointer.read_text())
        return pointer.parent / latest["weights"], pointer.parent / latest["state"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {pointer}: damaged pointer file: {exc}") from None


def step_checkpoints(path) -> dict[int, Path]:
    """``{step: weights path}`` of every ``step-NNNNNN.safetensors`` in a run folder or its checkpoints folder."""
    path = Path(path)
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    found = {}
    for weights in folder.glob("step-*.safetensors"):
        digits = weights.name.removeprefix("step-").removesuffix(".safetensors")
        if digits.isdigit():
            found[int(digits)] = weights
    return dict(sorted(found.items()))
