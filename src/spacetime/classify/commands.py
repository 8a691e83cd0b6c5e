"""``spacetime classify train | eval``: argparse glue over :mod:`~spacetime.classify.train` and
:mod:`~spacetime.classify.evaluate`."""

from __future__ import annotations

import argparse
import dataclasses

from ..models.classifier import PRESETS, SPACE_ENCODINGS, TIME_ENCODINGS, VARIANTS
from .config import ClassifyConfig
from .evaluate import evaluate_checkpoint
from .train import train

__all__ = ["register"]

#: the numeric ClassifyConfig fields that are flags: (flag, type, help)
_NUMERIC_FLAGS = (
    ("frames", int, "frames per clip"), ("size", int, "frame height and width (pixels)"),
    ("patch", int, "patch size (pixels)"), ("tubelet-frames", int, "frames per tubelet"),
    ("rope-base", float, "longest rotary period"), ("steps", int, "optimizer steps"),
    ("batch-size", int, "clips per step"), ("lr", float, "peak learning rate"),
    ("weight-decay", float, "AdamW weight decay"), ("warmup", int, "linear warm-up steps"),
    ("drop-path", float, "stochastic depth of the last block"),
    ("eval-every", int, "steps between test evaluations and checkpoints"), ("test-size", int, "synthetic test clips"),
    ("test-fraction", float, "share of each class held out (folder data)"),
    ("time-limit", float, "stop after this many minutes"), ("seed", int, "seed of weights and data"),
)


def _cmd_train(args) -> int:
    fields = {f.name for f in dataclasses.fields(ClassifyConfig)}
    cfg = ClassifyConfig(**{k: v for k, v in vars(args).items() if k in fields and v is not None})
    summary = train(cfg, args.out, resume=args.resume, progress=False if args.quiet else None)
    print(f"{cfg.variant}: test accuracy {summary['test_accuracy']:.4f} after {summary['step']} steps, "
          f"{summary['train_seconds']:.1f} s; wrote {args.out}/log.csv, loss.png, confusion.png, "
          f"{summary['checkpoint']}")
    return 0


def _cmd_eval(args) -> int:
    result = evaluate_checkpoint(args.checkpoint, data=args.data, frames=args.frames, test_size=args.test_size,
                                 out_dir=args.out)
    print(f"accuracy {result['accuracy']:.4f} at T={result['frames']} (trained at T={result['trained_frames']})")
    return 0


def _register_train(sub) -> None:
    defaults = ClassifyConfig()
    text = "Train a VideoTransformer on the synthetic motion task or a folder per class."
    tr = sub.add_parser("train", help=text, description=text)
    tr.add_argument("--data", default=defaults.data, help="'motion' (left vs right moving disks, needs time) or a "
                                                          "folder with one sub-folder of videos per class")
    tr.add_argument("--variant", choices=VARIANTS, default=defaults.variant, help="attention layout of the model")
    tr.add_argument("--preset", choices=sorted(PRESETS), default=defaults.preset, help="model size")
    tr.add_argument("--time-encoding", dest="time_encoding", choices=TIME_ENCODINGS, default=None,
                    help="temporal position encoding (default: rope; none for space_only)")
    tr.add_argument("--space-encoding", dest="space_encoding", choices=SPACE_ENCODINGS,
                    default=defaults.space_encoding, help="spatial position encoding (rope: 3-D rotary, needs time "
                                                          "rope)")
    tr.add_argument("--pool", choices=("cls", "mean"), default=defaults.pool, help="CLS token or mean of the tokens")
    for name, kind, help_text in _NUMERIC_FLAGS:
        dest = name.replace("-", "_")
        tr.add_argument(f"--{name}", dest=dest, type=kind, default=getattr(defaults, dest), help=help_text)
    tr.add_argument("--color", dest="grayscale", action="store_false", help="read folder videos as RGB (default grey)")
    tr.add_argument("--out", default="runs/classify", help="output folder")
    tr.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/latest.json")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=_cmd_train)


def _register_eval(sub) -> None:
    text = "Evaluate a trained classifier, optionally at another clip length."
    ev = sub.add_parser("eval", help=text, description=text)
    ev.add_argument("checkpoint", help="a run folder (uses its latest checkpoint) or a .safetensors file")
    ev.add_argument("--frames", type=int, default=None, help="clip length to evaluate at (default: as trained)")
    ev.add_argument("--data", default=None, help="'motion' or a folder per class (default: as trained)")
    ev.add_argument("--test-size", dest="test_size", type=int, default=None,
                    help="synthetic test clips (default: as trained)")
    ev.add_argument("--out", default=None, help="folder for eval_T<frames>.json/.png (default: next to the checkpoint)")
    ev.set_defaults(func=_cmd_eval)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``spacetime classify train|eval``."""
    text = "Train or evaluate a video transformer classifier (TimeSformer/ViViT)."
    parser = subparsers.add_parser("classify", help=text, description=text)
    sub = parser.add_subparsers(dest="classify_command", metavar="ACTION", required=True)
    _register_train(sub)
    _register_eval(sub)
