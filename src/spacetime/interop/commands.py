"""``spacetime convert``: argparse glue over :func:`spacetime.interop.convert.convert`."""

from __future__ import annotations

import json
from pathlib import Path

from .convert import convert

__all__ = ["register"]


def _run_convert(args) -> int:
    path = convert(args.source, args.out)
    meta = json.loads((Path(args.out) / "config.json").read_text())
    source, config = meta["source"], meta["model_config"]
    what = f"{len(meta['classes'])} classes" if meta["classes"] else "an encoder (no head)"
    print(f"converted {source['library']} {source['model_type']} ({what}, {config['depth']} blocks of width "
          f"{config['dim']}) from {args.source}")
    print(f"weights: {path}\nconfig:  {Path(args.out) / 'config.json'}")
    if meta["kind"] == "video_classifier":
        print(f"evaluate: spacetime classify eval {path} --data FOLDER (one sub-folder of videos per class)")
    print("Python:   spacetime.interop.load_converted(" + repr(str(args.out)) + ")")
    return 0


def register(subparsers) -> None:
    """Add ``spacetime convert``."""
    text = ("convert a pretrained video model (a transformers VideoMAE, TimeSformer or ViViT checkpoint folder) into a "
            "spacetime checkpoint with the same outputs")
    p = subparsers.add_parser("convert", help=text, description=text)
    p.add_argument("source", help="the checkpoint folder (config.json and model.safetensors or pytorch_model.bin)")
    p.add_argument("--out", required=True, help="folder for model.safetensors and config.json")
    p.set_defaults(func=_run_convert)
