"""Checkpoints of converted models: ``spacetime convert SOURCE --out DIR`` and :func:`load_converted`.

A converted checkpoint is a folder holding ``model.safetensors`` (the spacetime weights, with the
spacetime model's config and what it was converted from in the metadata) and ``config.json`` (the
same metadata, readable). A converted classifier is a ``video_classifier`` checkpoint, which
``spacetime classify eval DIR/model.safetensors --data FOLDER`` evaluates: its classes are the
original's labels and its input normalisation the original preprocessor's, mapped to clips in [0, 1].

Sources (what :func:`convert` reads):

* a transformers checkpoint folder: ``config.json`` with a ``model_type`` of VideoMAE, TimeSformer or
  ViViT, and ``model.safetensors`` or ``pytorch_model.bin``; ``preprocessor_config.json`` if present;
* a torchvision Video Swin weights file (``.pth``, ``.pt`` or ``.safetensors``: a ``state_dict``),
  with ``arch`` naming its builder (``swin3d_t``, ``swin3d_s``, ``swin3d_b``);
* a diffusers ``MotionAdapter`` folder (``config.json`` with ``_class_name`` and
  ``diffusion_pytorch_model.safetensors``, ``save_pretrained``'s layout), or a ``TransformerTemporalModel``'s.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from ..io.checkpoint import load_weights, save_weights
from ..io.files import atomic_write_text
from ..models.classifier import VideoTransformer, VideoTransformerConfig
from ..models.swin import VideoSwin, VideoSwinConfig

__all__ = ["convert", "load_converted", "read_state_dict", "CLASSIFIER_KIND", "ENCODER_KIND", "MOTION_KIND"]

CLASSIFIER_KIND = "video_classifier"  # what spacetime classify eval loads
ENCODER_KIND = "converted_video_encoder"
MOTION_KIND = "converted_motion_modules"
#: torchvision's Video Swin builders: their Kinetics-400 weights' clips (32 frames of 224 x 224, ImageNet's mean and
#: std on [0, 1] pixels: the weights' documented preprocessing)
_SWIN_INPUT = {"frames": 32, "size": 224, "normalize": [[0.485, 0.456, 0.406], [0.229, 0.224, 0.225]]}
_WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
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


def _class_names(count: int, labels, given) -> list[str]:
    """``count`` class names: ``given`` (a file with one per line) if set, else the checkpoint's ``labels``."""
    if given is not None:
        names = [line.strip() for line in Path(given).read_text().splitlines() if line.strip()]
        if len(names) != count:
            raise ValueError(f"labels: {given} names {len(names)} classes; the model has {count}")
        return names
    labels = labels or {}
    return [labels.get(str(i), labels.get(i, f"class_{i}")) for i in range(count)]


def _transformers_source(source: Path, labels=None):
    from .transformers import from_transformers

    config = json.loads((source / "config.json").read_text())
    converted = from_transformers(source)  # through transformers' loader: the hub's key layout is its own
    pre = next((source / n for n in ("preprocessor_config.json", "video_preprocessor_config.json")
                if (source / n).is_file()), None)
    mean, std = _normalisation(converted.model_type, json.loads(pre.read_text()) if pre else None)
    c = converted.model.config
    meta = {"kind": CLASSIFIER_KIND if converted.output == "logits" else ENCODER_KIND, "step": 0,
            "model": "VideoTransformer", "model_config": c.to_dict(),
            "classes": _class_names(c.num_classes, config.get("id2label"), labels), "normalize": [mean, std],
            "input": {"frames": c.num_frames, "size": c.image_size},
            "source": {"library": "transformers", "model_type": converted.model_type, "output": converted.output,
                       "path": str(source), "config": config}}
    tensors = dict(converted.model.state_dict())
    if converted.pooler is not None:
        tensors.update({f"pooler.{k}": v for k, v in converted.pooler.state_dict().items()})
    return tensors, meta


def _torchvision_source(source: Path, arch: str | None, labels=None):
    from .torchvision import TORCHVISION_ARCHITECTURES, from_torchvision

    if arch is None:
        raise ValueError(f"arch: a torchvision weights file holds no config; name its builder, one of "
                         f"{sorted(TORCHVISION_ARCHITECTURES)} (spacetime convert {source.name} --arch swin3d_t)")
    state = read_state_dict(source)
    head = state.get("head.weight")
    kwargs = {**TORCHVISION_ARCHITECTURES[arch], "num_classes": head.shape[0]} if (
        arch in TORCHVISION_ARCHITECTURES and head is not None) else arch
    model = from_torchvision(state, kwargs)
    meta = {"kind": CLASSIFIER_KIND, "step": 0, "model": "VideoSwin", "model_config": model.config.to_dict(),
            "classes": _class_names(model.config.num_classes, None, labels), "normalize": _SWIN_INPUT["normalize"],
            "input": {k: _SWIN_INPUT[k] for k in ("frames", "size")},
            "source": {"library": "torchvision", "model_type": arch, "output": "logits", "path": str(source)}}
    return dict(model.state_dict()), meta


def _diffusers_source(source: Path):
    from .diffusers import from_diffusers

    config = json.loads((source / "config.json").read_text())
    weights = next((source / n for n in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
                    if (source / n).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"source {source}: no diffusion_pytorch_model.safetensors (or .bin) beside config.json")
    converted = from_diffusers(read_state_dict(weights), config)
    tensors = {**converted.state_dict(), **dict(converted.named_buffers())}  # the frame tables are diffusers' own
    meta = {"kind": MOTION_KIND, "step": 0, "model": type(converted).__name__,
            "source": {"library": "diffusers", "model_type": config["_class_name"], "path": str(source),
                       "config": config}}
    return tensors, meta


def _read_source(source: Path, arch: str | None, labels) -> tuple[dict, dict]:
    """The spacetime tensors and metadata of ``source`` (any kind the module docstring lists)."""
    if source.is_file():
        if source.suffix not in _WEIGHT_SUFFIXES:
            raise ValueError(f"source {source}: a weights file must end in one of {_WEIGHT_SUFFIXES} (torchvision); "
                             f"transformers and diffusers checkpoints are folders")
        return _torchvision_source(source, arch, labels)
    config = source / "config.json"
    if not config.is_file():
        raise ValueError(f"source {source}: expected a checkpoint folder with a config.json (transformers' or "
                         f"diffusers' save_pretrained layout) or a torchvision weights file")
    if arch is not None:
        raise ValueError(f"arch is for a torchvision weights file; {source} is a folder with its own config.json, "
                         f"got arch={arch!r}")
    fields = json.loads(config.read_text())
    if "_class_name" in fields:
        if labels is not None:
            raise ValueError(f"labels: {source} is a diffusers {fields['_class_name']}, which has no classes")
        return _diffusers_source(source)
    if fields.get("model_type") is None:
        raise ValueError(f"source {source}: config.json names no model_type (transformers) or _class_name "
                         f"(diffusers); converters exist for transformers' videomae, timesformer and vivit and "
                         f"diffusers' MotionAdapter and TransformerTemporalModel")
    return _transformers_source(source, labels)


def convert(source, out, *, arch: str | None = None, labels=None) -> Path:
    """Convert the checkpoint at ``source`` (see the module docstring) into ``out``; returns the weights' path.

    ``arch``: a torchvision weights file's builder (``"swin3d_t"``); ``labels``: a text file with a class name per
    line, in place of the checkpoint's own (a torchvision file has none: ``class_0``, ``class_1``, ...).
    """
    source, out = Path(source), Path(out)
    if not source.exists():
        raise FileNotFoundError(f"source {source}: not found")
    tensors, meta = _read_source(source, arch, labels)
    path = save_weights(out / "model.safetensors", tensors, meta)
    atomic_write_text(out / "config.json", json.dumps(meta, indent=2) + "\n")
    return path


def load_converted(path) -> nn.Module:
    """The model of a converted checkpoint (a folder or its ``model.safetensors``), in eval mode, taking the
    original's inputs: for a transformers source a :class:`~spacetime.interop.transformers.TransformersVideoModel`,
    for torchvision a :class:`~spacetime.models.swin.VideoSwin`, for diffusers the modules of
    :func:`~spacetime.interop.diffusers.from_diffusers`."""
    path = Path(path)
    path = path / "model.safetensors" if path.is_dir() else path
    tensors, meta = load_weights(path)
    library = meta.get("source", {}).get("library")
    loaders = {"transformers": _load_transformers, "torchvision": _load_torchvision, "diffusers": _load_diffusers}
    if library not in loaders:
        raise ValueError(f"checkpoint {path}: not a converted checkpoint of a known source; got source {library!r}")
    return loaders[library](tensors, meta).eval()


def _load_transformers(tensors: dict, meta: dict) -> nn.Module:
    from .transformers import TransformersVideoModel

    source = meta["source"]
    model = VideoTransformer(VideoTransformerConfig.from_dict(meta["model_config"]))
    pooler = None
    if "pooler.weight" in tensors:
        pooler = nn.Linear(*tensors["pooler.weight"].shape[::-1])
        pooler.load_state_dict({p: tensors.pop(f"pooler.{p}") for p in ("weight", "bias")})
    model.load_state_dict(tensors, strict=True)
    return TransformersVideoModel(model, source["model_type"], source["output"], source["config"], pooler)


def _load_torchvision(tensors: dict, meta: dict) -> nn.Module:
    model = VideoSwin(VideoSwinConfig.from_dict(meta["model_config"]))
    model.load_state_dict(tensors, strict=True)
    return model


def _load_diffusers(tensors: dict, meta: dict) -> nn.Module:
    """The converted modules, rebuilt through :func:`from_diffusers` from placeholder tensors of the original's
    shapes, then given the saved weights and frame tables (diffusers' values, to the last bit)."""
    from .diffusers import _build, from_diffusers

    config = meta["source"]["config"]
    dtype = next(iter(tensors.values())).dtype
    placeholders = {k: torch.zeros(v.shape, dtype=dtype) for k, v in _build(config).state_dict().items()}
    for key in [k for k in placeholders if k.endswith(".pos_embed.pe")]:  # from_diffusers checks these tables
        prefix, block = key[:-len(".pos_embed.pe")].rsplit("transformer_blocks.", 1)
        placeholders[key] = tensors[f"{prefix}module.blocks.{block}.attn.0.norm.table"][None]
    converted = from_diffusers(placeholders, config)
    buffers = dict(converted.named_buffers())
    converted.load_state_dict({k: v for k, v in tensors.items() if k in converted.state_dict()}, strict=True)
    with torch.no_grad():
        for name, buffer in buffers.items():
            buffer.copy_(tensors[name])
    return converted
