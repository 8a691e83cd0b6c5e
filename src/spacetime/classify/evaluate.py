"""Evaluating a video classifier: accuracy and the confusion matrix on held-out clips, at any clip length.

:func:`evaluate` scores a model on clips; :func:`evaluate_checkpoint` scores a trained run's
checkpoint on its own test data (or other data, or another clip length) and writes
``eval_T<frames>.json`` and a confusion-matrix PNG beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from ..data.motion_task import MotionTask
from ..io.files import atomic_write_text, save_figure
from ..models.classifier import VideoTransformer
from ..models.swin import VideoSwin
from ..training import load_trained, show_progress
from .config import ClassifyConfig
from .data import MEAN, STD, ClassFolders, ClassifyData, normalize

__all__ = ["evaluate", "evaluate_checkpoint", "load_classifier", "plot_confusion", "WEIGHTS_KIND"]

WEIGHTS_KIND = "video_classifier"


def load_classifier(path) -> tuple[VideoTransformer | VideoSwin, dict]:
    """A trained or converted classifier (eval mode) and its metadata, from a weights file or a run folder."""
    return load_trained(path, WEIGHTS_KIND, {"VideoTransformer": VideoTransformer, "VideoSwin": VideoSwin})


@torch.no_grad()
def evaluate(model: VideoTransformer, videos: Tensor, labels: Tensor, num_classes: int,
             batch_size: int = 128, progress: bool = False, mean=MEAN, std=STD) -> tuple[float, Tensor]:
    """``(accuracy, confusion)`` of ``model`` on clips in ``[0, 1]``, normalised with ``mean`` and ``std``
    (:func:`~spacetime.classify.data.normalize`); ``confusion[i, j]`` counts class ``i`` predicted ``j``."""
    was_training = model.training
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for i in tqdm(range(0, len(labels), batch_size), desc="eval", unit="batch", disable=not progress, leave=False):
        pred = model(normalize(videos[i:i + batch_size], mean, std)).argmax(dim=1)
        confusion += torch.bincount(labels[i:i + batch_size] * num_classes + pred,
                                    minlength=num_classes ** 2).view(num_classes, num_classes)
    model.train(was_training)
    return confusion.diagonal().sum().item() / max(1, confusion.sum().item()), confusion


def plot_confusion(confusion: Tensor, classes: list[str], path, title: str) -> Path:
    """Draw a confusion matrix (rows: true class, columns: predicted) as a PNG (atomic write)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * k, 1.0 + 0.8 * k))
    ax.imshow(confusion.numpy(), cmap="Blues")
    for i in range(k):
        for j in range(k):
            value = int(confusion[i, j])
            ax.text(j, i, str(value), ha="center", va="center",
                    color="white" if value > confusion.max().item() / 2 else "black", fontsize=9)
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def _test_clips(cfg: ClassifyConfig, data: str, frames: int, test_size: int) -> tuple[Tensor, Tensor, list[str]]:
    """``(videos, labels, classes)`` held out for a run of ``cfg``, from ``data`` at clip length ``frames``."""
    if data == "motion":  # same motion and test seed, any clip length
        task = MotionTask(frames=cfg.frames, size=cfg.size)
        videos, labels = task.fixed_set(test_size, seed=cfg.seed + 1_000_003, frames=frames)
        return videos, labels, list(task.classes)
    held = ClassifyData(cfg.replace(data=data, frames=frames, test_size=test_size))
    return *held.test, held.classes


def evaluate_checkpoint(checkpoint, data: str | None = None, frames: int | None = None, test_size: int | None = None,
                        out_dir=None, progress: bool | None = None) -> dict:
    """Evaluate a classifier on its own test data (or ``data``), optionally at another clip length.

    A checkpoint of ``spacetime convert`` (a converted model, with no training run of its own) is
    evaluated on every clip of ``data``, a folder with one sub-folder of videos per class, whose
    class names are the model's classes or some of them (the model then chooses among those).
    """
    model, meta = load_classifier(checkpoint)
    mean, std = meta.get("normalize", [MEAN, STD])
    if "train_config" in meta:
        cfg = ClassifyConfig.from_dict(meta["train_config"])
        trained, frames, variant = cfg.frames, frames or cfg.frames, cfg.variant
        videos, labels, classes = _test_clips(cfg, data or cfg.data, frames, test_size or cfg.test_size)
        if classes != meta["classes"]:
            raise ValueError(f"the data's classes {classes} differ from the checkpoint's {meta['classes']}")
    else:
        model, videos, labels, classes = _converted_clips(model, meta, data, frames)
        trained, frames, variant = meta["input"]["frames"], videos.shape[2], meta.get("source", {}).get("model_type")
    accuracy, confusion = evaluate(model, videos, labels, len(classes), progress=show_progress(progress), mean=mean,
                                   std=std)
    checkpoint = Path(checkpoint)
    out_dir = Path(out_dir) if out_dir is not None else (checkpoint if checkpoint.is_dir() else checkpoint.parent)
    name = f"eval_T{frames}"
    plot_confusion(confusion, classes, out_dir / f"{name}.png",
                   f"{variant}, trained T={trained}, eval T={frames}: accuracy {accuracy:.1%}")
    result = {"checkpoint": str(checkpoint), "frames": frames, "trained_frames": trained,
              "accuracy": accuracy, "confusion": confusion.tolist(), "classes": classes}
    atomic_write_text(out_dir / f"{name}.json", json.dumps(result, indent=2) + "\n")
    return result


class _ClassSubset(torch.nn.Module):
    """A classifier's logits for some of its classes only (it chooses among them)."""

    def __init__(self, model: VideoTransformer, indices: list[int]):
        super().__init__()
        self.model, self.config, self.indices = model, model.config, indices

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)[:, self.indices]


def _converted_clips(model: VideoTransformer, meta: dict, data, frames) -> tuple:
    """A converted model (limited to the folder's classes) and every clip of ``data`` at the model's frame size."""
    if data is None or data == "motion":
        raise ValueError("data: a converted checkpoint (spacetime convert) has no data of its own; give --data FOLDER "
                         "(one sub-folder of videos per class, named as the model's classes)")
    given = meta["input"]
    folders = ClassFolders(data, frames or given["frames"], given["size"], grayscale=model.config.in_channels == 1)
    unknown = [name for name in folders.classes if name not in meta["classes"]]
    if unknown:
        shown = meta["classes"][:10] + (["..."] if len(meta["classes"]) > 10 else [])
        raise ValueError(f"data: the class folders {unknown} are not classes of the checkpoint (it has "
                         f"{len(meta['classes'])}: {shown})")
    indices = [meta["classes"].index(name) for name in folders.classes]
    return _ClassSubset(model, indices).eval(), folders.clips, folders.labels, folders.classes
