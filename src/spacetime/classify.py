"""``spacetime classify train|eval``: train and evaluate a :class:`VideoTransformer` on video clips.

Data is either the synthetic motion task (``--data motion``, :mod:`spacetime.data.motion_task`:
left vs right, which no single frame can tell) or a folder of the user's videos with one
sub-folder per class (``--data path/to/root``, decoded with PyAV by
:class:`~spacetime.data.video_folder.VideoFolder`).

:func:`train` writes into ``out_dir``: ``config.json``, ``log.csv`` (step, seconds, lr, loss,
train and test accuracy), ``confusion.png`` and ``eval.json`` on the test set, and
``checkpoints/`` (safetensors weights with the model config in their metadata, resumable state,
``latest.json``); every write is atomic. ``resume=True`` continues from ``latest.json``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from .data.motion_task import MotionTask
from .io.checkpoint import CheckpointError, latest_checkpoint, load_state, load_weights, save_step_checkpoint
from .io.files import atomic_write_csv, atomic_write_text
from .models.classifier import PRESETS, VARIANTS, VideoTransformer, VideoTransformerConfig
from .models.configs import DictConfig

__all__ = ["ClassifyConfig", "ClassFolders", "train", "evaluate", "load_classifier", "plot_confusion", "register"]

WEIGHTS_KIND = "video_classifier"
STATE_KIND = "video_classifier_state"
#: inputs in [0, 1] are normalised as ``(x - MEAN) / STD`` (the Kinetics statistics most video models use)
MEAN, STD = 0.45, 0.225


@dataclass
class ClassifyConfig(DictConfig):
    """A classification run. ``data`` is ``"motion"`` or the root of a folder-per-class dataset.

    ``time_encoding=None`` is ``"rope"``, or ``"none"`` for ``space_only`` (which takes no time
    encoding). ``space_encoding`` defaults to ``"sinusoidal"``: with learned (0.02-init) tables the
    ``joint`` and ``factorized_encoder`` micro models stayed at chance for the 200-250 steps they
    were run on the motion task; with sinusoidal ones they reached 95% and 99.6% by step 300
    (one run each). ``frames``, ``size``: clip length and square frame size; ``patch`` and ``tubelet_frames`` give
    the tubelet ``(tubelet_frames, patch, patch)``. ``time_limit`` (minutes) stops training early.
    ``test_size`` is the number of synthetic test clips; ``test_fraction`` the share of each
    class's clips held out of a folder dataset.
    """

    data: str = "motion"
    variant: str = "divided"
    preset: str = "micro"
    time_encoding: str | None = None
    space_encoding: str = "sinusoidal"
    rope_base: float = 10000.0
    pool: str = "cls"
    frames: int = 8
    size: int = 32
    patch: int = 8
    tubelet_frames: int = 1
    grayscale: bool = True
    steps: int = 600
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 30
    drop_path: float = 0.0
    eval_every: int = 100
    test_size: int = 1024
    test_fraction: float = 0.2
    time_limit: float | None = None
    seed: int = 0

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}; got {self.variant!r}")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}; got {self.preset!r}")
        if self.time_encoding is None:  # rotary for the models that attend across time
            self.time_encoding = "none" if self.variant == "space_only" else "rope"
        for name in ("frames", "size", "patch", "tubelet_frames", "steps", "batch_size", "eval_every", "test_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1; got {value!r}")
        if not (self.lr > 0 and self.weight_decay >= 0 and self.warmup >= 0):
            raise ValueError(f"need lr > 0, weight_decay >= 0, warmup >= 0; got {self.lr}, {self.weight_decay}, {self.warmup}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1); got {self.test_fraction}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise ValueError(f"time_limit (minutes) must be > 0 or None; got {self.time_limit}")

    def model_config(self, num_classes: int, in_channels: int) -> VideoTransformerConfig:
        """The :class:`VideoTransformerConfig` of this run (validates sizes against the tubelet)."""
        return VideoTransformerConfig(**{
            **PRESETS[self.preset], "num_classes": num_classes, "in_channels": in_channels,
            "num_frames": self.frames, "image_size": self.size, "variant": self.variant,
            "tubelet": (self.tubelet_frames, self.patch, self.patch), "time_encoding": self.time_encoding,
            "space_encoding": self.space_encoding, "pool": self.pool, "rope_base": self.rope_base, "drop_path": self.drop_path,
        })


class ClassFolders(torch.utils.data.Dataset):
    """A folder-per-class video dataset: ``root/<class name>/<videos>``; items ``(clip, label)``.

    Classes are the sub-folders in sorted order. Each class folder is read by
    :class:`~spacetime.data.video_folder.VideoFolder` (non-overlapping clips of ``num_frames``,
    resized to ``size``); a class folder without a usable clip is an error naming it.
    """

    def __init__(self, root, num_frames: int = 8, size: int = 32, grayscale: bool = True):
        from .data.video_folder import VideoFolder

        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"dataset root {root}: not a folder")
        class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if len(class_dirs) < 2:
            raise ValueError(
                f"dataset root {root} must hold one sub-folder per class (at least 2); got "
                f"{[p.name for p in class_dirs]}"
            )
        self.classes = [p.name for p in class_dirs]
        clips, labels = [], []
        for label, class_dir in enumerate(class_dirs):
            try:
                folder = VideoFolder(class_dir, num_frames=num_frames, size=size, grayscale=grayscale)
            except ValueError as exc:
                raise ValueError(f"class {class_dir.name!r} has no usable clip: {exc}") from None
            clips.append(torch.stack([folder[i] for i in range(len(folder))]))
            labels.append(torch.full((len(folder),), label, dtype=torch.long))
        self.clips = torch.cat(clips)  # (n, c, t, size, size) in [0, 1]
        self.labels = torch.cat(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.clips[index], self.labels[index]

    def split(self, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
        """Indices ``(train, test)``: ``test_fraction`` of each class (at least one clip) held out."""
        gen = torch.Generator().manual_seed(seed)
        train_idx, test_idx = [], []
        for label in range(len(self.classes)):
            idx = torch.nonzero(self.labels == label).flatten()
            idx = idx[torch.randperm(len(idx), generator=gen)]
            n_test = max(1, round(test_fraction * len(idx))) if len(idx) > 1 else 0
            test_idx.append(idx[:n_test])
            train_idx.append(idx[n_test:])
        return torch.cat(train_idx), torch.cat(test_idx)


class _Data:
    """Training batches and a fixed test set for either source."""

    def __init__(self, cfg: ClassifyConfig):
        if cfg.data == "motion":
            self.task = MotionTask(frames=cfg.frames, size=cfg.size)
            self.classes = list(self.task.classes)
            self.channels = 1
            self.test = self.task.fixed_set(cfg.test_size, seed=cfg.seed + 1_000_003)
        else:
            self.task = None
            self.folders = ClassFolders(cfg.data, cfg.frames, cfg.size, grayscale=cfg.grayscale)
            self.classes = self.folders.classes
            self.channels = self.folders.clips.shape[1]
            self.train_idx, test_idx = self.folders.split(cfg.test_fraction, cfg.seed)
            if len(self.train_idx) == 0 or len(test_idx) == 0:
                raise ValueError(f"dataset {cfg.data} has too few clips to hold out a test set ({len(self.folders)} clips)")
            self.test = (self.folders.clips[test_idx], self.folders.labels[test_idx])

    def batch(self, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        if self.task is not None:
            return self.task.sample(n, gen)  # fresh clips every step
        pick = self.train_idx[torch.randint(0, len(self.train_idx), (n,), generator=gen)]
        return self.folders.clips[pick], self.folders.labels[pick]


def normalize(x: Tensor) -> Tensor:
    """Clips in ``[0, 1]`` -> the model's input scale."""
    return (x - MEAN) / STD


@torch.no_grad()
def evaluate(model: VideoTransformer, videos: Tensor, labels: Tensor, num_classes: int,
             batch_size: int = 128, progress: bool = False) -> tuple[float, Tensor]:
    """``(accuracy, confusion)`` of ``model`` on clips in ``[0, 1]``; ``confusion[i, j]`` counts class ``i`` predicted ``j``."""
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for i in tqdm(range(0, len(labels), batch_size), desc="eval", unit="batch", disable=not progress, leave=False):
        pred = model(normalize(videos[i:i + batch_size])).argmax(dim=1)
        confusion += torch.bincount(labels[i:i + batch_size] * num_classes + pred,
                                    minlength=num_classes ** 2).view(num_classes, num_classes)
    model.train(was_training)
    return confusion.diagonal().sum().item() / max(1, confusion.sum().item()), confusion


def plot_confusion(confusion: Tensor, classes: list[str], path, title: str) -> Path:
    """Draw a confusion matrix (rows: true class, columns: predicted) as a PNG (atomic write)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io.files import atomic_write_bytes

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
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def _lr(cfg: ClassifyConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to zero at ``cfg.steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


LOG_FIELDS = ["step", "seconds", "lr", "loss", "train_acc", "test_acc"]


def _write_log(rows: list[dict], path: Path) -> None:
    atomic_write_csv(path, rows, LOG_FIELDS)


def _save_checkpoint(ckpt_dir: Path, cfg: ClassifyConfig, model: VideoTransformer, classes, state: dict) -> Path:
    meta = {"kind": WEIGHTS_KIND, "step": state["step"], "model_config": model.config.to_dict(),
            "train_config": cfg.to_dict(), "classes": list(classes), "normalize": [MEAN, STD]}
    return save_step_checkpoint(ckpt_dir, state["step"], dict(model.state_dict()), meta, state)


def load_classifier(path) -> tuple[VideoTransformer, dict]:
    """A trained classifier (eval mode) and its metadata, from a weights file or a run folder."""
    weights, _ = latest_checkpoint(path)
    tensors, meta = load_weights(weights, kind=WEIGHTS_KIND)
    model = VideoTransformer(VideoTransformerConfig.from_dict(meta["model_config"]))
    model.load_state_dict(tensors, strict=True)
    return model.eval(), meta


def train(cfg: ClassifyConfig, out_dir, resume: bool = False, progress: bool | None = None) -> dict:
    """Train ``cfg`` into ``out_dir``; return a summary (steps, seconds, test accuracy, paths)."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    data = _Data(cfg)
    torch.manual_seed(cfg.seed)
    model = VideoTransformer(cfg.model_config(len(data.classes), data.channels))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(cfg.seed)
    step, rows, ckpt_dir = 0, [], out_dir / "checkpoints"
    if resume:
        pointer = ckpt_dir / "latest.json"
        if not pointer.is_file():
            raise CheckpointError(f"cannot resume: {pointer} not found (no finished checkpoint in {out_dir})")
        weights, state_path = latest_checkpoint(ckpt_dir)
        tensors, meta = load_weights(weights, kind=WEIGHTS_KIND)
        if VideoTransformerConfig.from_dict(meta["model_config"]) != model.config:
            raise CheckpointError(f"checkpoint {weights}: model config differs from this run's")
        model.load_state_dict(tensors, strict=True)
        state = load_state(state_path, kind=STATE_KIND)
        optimizer.load_state_dict(state["optimizer"])
        step, rows = state["step"], state["log"]
        torch.set_rng_state(state["torch_rng"])
        gen.set_state(state["data_rng"])
    atomic_write_text(out_dir / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")

    quiet = not sys.stderr.isatty() if progress is None else not progress
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.variant}", unit="step", disable=quiet, dynamic_ncols=True)
    t_start = time.perf_counter() - (rows[-1]["seconds"] if rows else 0.0)
    loss_sum, correct, seen = 0.0, 0, 0
    model.train()
    while step < cfg.steps:
        x, y = data.batch(cfg.batch_size, gen)
        for group in optimizer.param_groups:
            group["lr"] = _lr(cfg, step)
        logits = model(normalize(x))
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        loss_sum, seen = loss_sum + loss.item() * len(y), seen + len(y)
        correct += (logits.argmax(1) == y).sum().item()
        bar.update(1)
        out_of_time = cfg.time_limit is not None and time.perf_counter() - t_start > 60 * cfg.time_limit
        if step % cfg.eval_every == 0 or step == cfg.steps or out_of_time:
            test_acc, _ = evaluate(model, *data.test, len(data.classes))
            rows.append({"step": step, "seconds": round(time.perf_counter() - t_start, 2), "lr": _lr(cfg, step - 1),
                         "loss": round(loss_sum / seen, 5), "train_acc": round(correct / seen, 4),
                         "test_acc": round(test_acc, 4)})
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", test_acc=f"{test_acc:.3f}")
            loss_sum, correct, seen = 0.0, 0, 0
            _write_log(rows, out_dir / "log.csv")
            state = {"kind": STATE_KIND, "step": step, "optimizer": optimizer.state_dict(), "log": rows,
                     "torch_rng": torch.get_rng_state(), "data_rng": gen.get_state()}
            checkpoint = _save_checkpoint(ckpt_dir, cfg, model, data.classes, state)
        if out_of_time:
            break
    bar.close()
    seconds = rows[-1]["seconds"] if rows else 0.0
    accuracy, confusion = evaluate(model, *data.test, len(data.classes))
    plot_confusion(confusion, data.classes, out_dir / "confusion.png",
                   f"{cfg.variant}, T={cfg.frames}: test accuracy {accuracy:.1%} ({int(confusion.sum())} clips)")
    summary = {"variant": cfg.variant, "time_encoding": model.config.time_encoding, "step": step,
               "stopped_by_time_limit": step < cfg.steps, "train_seconds": seconds, "test_accuracy": accuracy,
               "confusion": confusion.tolist(), "classes": data.classes,
               "parameters": sum(p.numel() for p in model.parameters()),
               "checkpoint": str(checkpoint), "out_dir": str(out_dir)}
    atomic_write_text(out_dir / "eval.json", json.dumps(summary, indent=2) + "\n")
    return summary


def evaluate_checkpoint(checkpoint, data: str | None = None, frames: int | None = None, test_size: int | None = None,
                        out_dir=None, progress: bool | None = None) -> dict:
    """Evaluate a trained classifier on its own test data (or ``data``), optionally at another clip length."""
    model, meta = load_classifier(checkpoint)
    cfg = ClassifyConfig.from_dict(meta["train_config"])
    overrides = {"data": data or cfg.data, "frames": frames or cfg.frames, "test_size": test_size or cfg.test_size}
    if overrides["data"] == "motion":  # same motion and test seed, any clip length
        task = MotionTask(frames=cfg.frames, size=cfg.size)
        videos, labels = task.fixed_set(overrides["test_size"], seed=cfg.seed + 1_000_003, frames=overrides["frames"])
        classes = list(task.classes)
    else:
        eval_cfg = dataclasses.replace(cfg, **overrides)
        held = _Data(eval_cfg)
        videos, labels, classes = *held.test, held.classes
    if classes != meta["classes"]:
        raise ValueError(f"the data's classes {classes} differ from the checkpoint's {meta['classes']}")
    quiet = not sys.stderr.isatty() if progress is None else not progress
    accuracy, confusion = evaluate(model, videos, labels, len(classes), progress=not quiet)
    out_dir = Path(out_dir) if out_dir is not None else Path(checkpoint if Path(checkpoint).is_dir() else Path(checkpoint).parent)
    name = f"eval_T{overrides['frames']}"
    plot_confusion(confusion, classes, out_dir / f"{name}.png",
                   f"{cfg.variant}, trained T={cfg.frames}, eval T={overrides['frames']}: accuracy {accuracy:.1%}")
    result = {"checkpoint": str(checkpoint), "frames": overrides["frames"], "trained_frames": cfg.frames,
              "accuracy": accuracy, "confusion": confusion.tolist(), "classes": classes}
    atomic_write_text(out_dir / f"{name}.json", json.dumps(result, indent=2) + "\n")
    return result


def _cmd_train(args) -> int:
    fields = {f.name for f in dataclasses.fields(ClassifyConfig)}
    cfg = ClassifyConfig(**{k: v for k, v in vars(args).items() if k in fields and v is not None})
    summary = train(cfg, args.out, resume=args.resume)
    print(f"{cfg.variant}: test accuracy {summary['test_accuracy']:.4f} after {summary['step']} steps, "
          f"{summary['train_seconds']:.1f} s; wrote {args.out}/log.csv, confusion.png, {summary['checkpoint']}")
    return 0


def _cmd_eval(args) -> int:
    result = evaluate_checkpoint(args.checkpoint, data=args.data, frames=args.frames, test_size=args.test_size,
                                 out_dir=args.out)
    print(f"accuracy {result['accuracy']:.4f} at T={result['frames']} (trained at T={result['trained_frames']})")
    return 0


def register(subparsers) -> None:
    """Add ``spacetime classify train|eval``."""
    from .cli import add_command

    parser = add_command(subparsers, "classify", "Train or evaluate a video transformer classifier (TimeSformer/ViViT).")
    sub = parser.add_subparsers(dest="classify_command", metavar="ACTION", required=True)
    defaults = ClassifyConfig()

    tr = add_command(sub, "train", "Train a VideoTransformer on the synthetic motion task or a folder per class.")
    tr.add_argument("--data", default=defaults.data,
                    help="'motion' (left vs right moving disks, needs time) or a folder with one sub-folder of videos per class")
    tr.add_argument("--variant", choices=VARIANTS, default=defaults.variant, help="attention layout of the model")
    tr.add_argument("--preset", choices=sorted(PRESETS), default=defaults.preset, help="model size")
    tr.add_argument("--time-encoding", dest="time_encoding", choices=("learned", "sinusoidal", "rope", "none"),
                    default=None, help="temporal position encoding (default: rope; none for space_only)")
    tr.add_argument("--space-encoding", dest="space_encoding", choices=("learned", "sinusoidal", "rope"),
                    default=defaults.space_encoding, help="spatial position encoding (rope: 3-D rotary, needs time rope)")
    tr.add_argument("--pool", choices=("cls", "mean"), default=defaults.pool, help="CLS token or mean of the tokens")
    for name, kind, help_text in (
        ("frames", int, "frames per clip"), ("size", int, "frame height and width (pixels)"),
        ("patch", int, "patch size (pixels)"), ("tubelet-frames", int, "frames per tubelet"),
        ("rope-base", float, "longest rotary period"), ("steps", int, "optimizer steps"), ("batch-size", int, "clips per step"), ("lr", float, "peak learning rate"),
        ("weight-decay", float, "AdamW weight decay"), ("warmup", int, "linear warm-up steps"),
        ("drop-path", float, "stochastic depth of the last block"), ("eval-every", int, "steps between test evaluations and checkpoints"),
        ("test-size", int, "synthetic test clips"), ("test-fraction", float, "share of each class held out (folder data)"),
        ("time-limit", float, "stop after this many minutes"), ("seed", int, "seed of weights and data"),
    ):
        dest = name.replace("-", "_")
        tr.add_argument(f"--{name}", dest=dest, type=kind, default=getattr(defaults, dest), help=help_text)
    tr.add_argument("--color", dest="grayscale", action="store_false", help="read folder videos as RGB (default grey)")
    tr.add_argument("--out", default="runs/classify", help="output folder")
    tr.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/latest.json")
    tr.set_defaults(func=_cmd_train)

    ev = add_command(sub, "eval", "Evaluate a trained classifier, optionally at another clip length.")
    ev.add_argument("checkpoint", help="a run folder (uses its latest checkpoint) or a .safetensors file")
    ev.add_argument("--frames", type=int, default=None, help="clip length to evaluate at (default: as trained)")
    ev.add_argument("--data", default=None, help="'motion' or a folder per class (default: as trained)")
    ev.add_argument("--test-size", dest="test_size", type=int, default=None, help="synthetic test clips (default: as trained)")
    ev.add_argument("--out", default=None, help="folder for eval_T<frames>.json/.png (default: next to the checkpoint)")
    ev.set_defaults(func=_cmd_eval)
