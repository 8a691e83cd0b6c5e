"""Checkpoints of converted models: ``spacetime convert SOURCE --out DIR`` and :func:`load_converted`.

A converted checkpoint is a folder holding ``model.safetensors`` (the spacetime weights, with the
spacetime model's config and what it was converted from in the metadata) and ``config.json`` (the
same metadata, readable). A converted classifier is a ``video_classifier`` checkpoint, which
``spacetime classify eval DIR/model.safetensors --data FOLDER`` evaluates: its classes are the
original's labels and its input normalisation the original preprocessor's, mapped to clips in [0, 1].

Sources (what :func:`convert` reads): a transformers checkpoint folder (``config.json`` with a
``model_type`` of VideoMAE, TimeSformer or ViViT, and ``model.safetensors`` or ``pytorch_model.bin``;
``preprocessor_config.json`` if present).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from ..io.checkpoint import load_weights, save_weights
from ..io.files import atomic_write_text
from ..models.classifier import VideoTransformer, VideoTransformerConfig

__all__ = ["convert", "load_converted", "read_state_dict", "CLASSIFIER_KIND", "ENCODER_KIND"]

CLASSIFIER_KIND = "video_classifier"  # what spacetime classify eval loads
ENCODER_KIND = "converted_video_encoder"
#: the preprocessing each architecture's processor applies when a checkpoint has no preprocessor_config.json:
#: (rescale factor on 0-255 pixels, offset subtracted after it, mean, std)
_PREPROCESSING = {"videomae": (1 / 255, 0.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
                  "timesformer": (1 / 255, 0.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
                  "vivit": (1 / 127.5, 1.0, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}


def read_state_dict(path) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` file or a ``torch.save`` state_dict (loaded ``weights_only``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights {path}: not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"weights {path}: expected a state_dict (a dict of tensors); got {type(state).__name__}")
    return state


def _normalisation(kind: str, preprocessor: dict | None) -> tuple[list[float], list[float]]:
    """The processor's ``(x * rescale - offset - mean) / std`` on 0-255 pixels as ``(x - mean') / std'`` on [0, 1]."""
    scale, offset, mean, std = _PREPROCESSING[kind]
    if preprocessor:
        scale = preprocessor.get("rescale_factor", scale)
        offset = 1.0 if preprocessor.get("offset", offset) is True else float(preprocessor.get("offset", offset) or 0)
        mean, std = preprocessor.get("image_mean", mean), preprocessor.get("image_std", std)
    unit = 255 * scale
    return [(offset + m) / unit for m in mean], [s / unit for s in std]


def _transformers_source(source: Path):
    from .transformers import from_transformers

    config = json.loads((source / "config.json").read_text())
    converted = from_transformers(source)  # through transformers' loader: the hub's key layout is its own
    pre = next((source / n for n in ("preprocessor_config.json", "video_preprocessor_config.json")
                if (source / n).is_file()), None)
    mean, std = _normalisation(converted.model_type, json.loads(pre.read_text()) if pre else None)
    labels = config.get("id2label") or {}
    classes = [labels.get(str(i), labels.get(i, f"class_{i}")) for i in range(converted.model.config.num_classes)]
    meta = {"kind": CLASSIFIER_KIND if converted.output == "logits" else ENCODER_KIND, "step": 0,
            "model_config": converted.model.config.to_dict(), "classes": classes, "normalize": [mean, std],
            "source": {"library": "transformers", "model_type": converted.model_type, "output": converted.output,
                       "path": str(source), "config": config}}
    tensors = dict(converted.model.state_dict())
    if converted.pooler is not None:
        tensors.update({f"pooler.{k}": v for k, v in converted.pooler.state_dict().items()})
    return tensors, meta


def convert(source, out) -> Path:
    """Convert the checkpoint at ``source`` (see the module docstring) into ``out``; returns the weights' path."""
    source, out = Path(source), Path(out)
    if not source.exists():
        raise FileNotFoundError(f"source {source}: not found")
    config = source / "config.json" if source.is_dir() else None
    if config is None or not config.is_file():
        raise ValueError(f"source {source}: expected a checkpoint folder with a config.json (transformers' "
                         f"save_pretrained layout)")
    kind = json.loads(config.read_text()).get("model_type")
    if kind is None:
        raise ValueError(f"source {source}: config.json names no model_type; converters exist for transformers' "
                         f"videomae, timesformer and vivit")
    tensors, meta = _transformers_source(source)
    path = save_weights(out / "model.safetensors", tensors, meta)
    atomic_write_text(out / "config.json", json.dumps(meta, indent=2) + "\n")
    return path


def load_converted(path) -> nn.Module:
    """The model of a converted checkpoint (a folder or its ``model.safetensors``), in eval mode: for a transformers
    source, a :class:`~spacetime.interop.transformers.TransformersVideoModel` taking the original's inputs."""
    path = Path(path)
    path = path / "model.safetensors" if path.is_dir() else path
    tensors, meta = load_weights(path)
    source = meta.get("source", {})
    if source.get("library") != "transformers":
        raise ValueError(f"checkpoint {path}: not a converted checkpoint of a known source; got source "
                         f"{source.get('library')!r}")
    from .transformers import TransformersVideoModel

    model = VideoTransformer(VideoTransformerConfig.from_dict(meta["model_config"]))
    pooler = None
    if "pooler.weight" in tensors:
        pooler = nn.Linear(*tensors["pooler.weight"].shape[::-1])
        pooler.load_state_dict({p: tensors.pop(f"pooler.{p}") for p in ("weight", "bias")})
    model.load_state_dict(tensors, strict=True)
    return TransformersVideoModel(model, source["model_type"], source["output"], source["config"], pooler).eval()
