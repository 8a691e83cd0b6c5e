"""``spacetime convert``: argparse glue over :func:`spacetime.interop.convert.convert`."""

from __future__ import annotations

import json
from pathlib import Path

from .convert import CLASSIFIER_KIND, convert

__all__ = ["register"]


def _describe(meta: dict) -> str:
    source, config = meta["source"], meta.get("model_config", {})
    if source["library"] == "diffusers":
        return f"diffusers {source['model_type']} (motion modules)"
    what = f"{len(meta['classes'])} classes" if meta["classes"] else "an encoder (no head)"
    width = config["dim"]
    blocks = config["depth"] if "depth" in config else sum(config["depths"])
    return f"{source['library']} {source['model_type']} ({what}, {blocks} blocks from width {width})"


def _run_convert(args) -> int:
    path = convert(args.source, args.out, arch=args.arch, labels=args.labels)
    meta = json.loads((Path(args.out) / "config.json").read_text())
    print(f"converted {_describe(meta)} from {args.source}")
    print(f"weights: {path}\nconfig:  {Path(args.out) / 'config.json'}")
    if meta["kind"] == CLASSIFIER_KIND:
        print(f"evaluate: spacetime classify eval {path} --data FOLDER (one sub-folder of videos per class)")
    print("Python:   spacetime.interop.load_converted(" + repr(str(args.out)) + ")")
    return 0


def register(subparsers) -> None:
    """Add ``spacetime convert``."""
    text = ("convert a pretrained video model into a spacetime checkpoint with the same outputs: a transformers "
            "VideoMAE, TimeSformer or ViViT checkpoint folder, a torchvision Video Swin weights file (with --arch), or "
            "a diffusers MotionAdapter or TransformerTemporalModel folder")
    p = subparsers.add_parser("convert", help=text, description=text)
    p.add_argument("source", help="the checkpoint folder (config.json and its weights) or a torchvision weights file "
                                  "(.pth, .pt, .bin, .safetensors)")
    p.add_argument("--out", required=True, help="folder for model.safetensors and config.json")
    p.add_argument("--arch", choices=("swin3d_t", "swin3d_s", "swin3d_b"), default=None,
                   help="the torchvision builder a weights file belongs to (its file holds no config)")
    p.add_argument("--labels", default=None, metavar="FILE",
                   help="a text file with one class name per line, in the head's order (torchvision files carry "
                        "none: classes are then class_0, class_1, ...)")
    p.set_defaults(func=_run_convert)
