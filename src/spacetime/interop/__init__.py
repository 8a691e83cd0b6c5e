"""spacetime and the video models people already have: converters from transformers, torchvision and
diffusers models to spacetime models with the same outputs, and spacetime's attention inside theirs.

* transformers (VideoMAE, TimeSformer, ViViT): :func:`from_transformers`, :func:`to_transformers_state_dict`,
  :func:`register_transformers` (``attn_implementation="spacetime"``);
* torchvision (Video Swin ``swin3d_t/s/b``): :func:`from_torchvision`, :func:`to_torchvision_state_dict`;
* diffusers (AnimateDiff's ``MotionAdapter``, ``TransformerTemporalModel``): :func:`from_diffusers`,
  :func:`to_diffusers_state_dict`, :class:`SpacetimeAttnProcessor` (``set_attn_processor``), and for Wan's
  ``WanTransformer3DModel`` :class:`SpacetimeWanAttnProcessor`;
* checkpoints: :func:`convert` (``spacetime convert``) and :func:`load_converted`.

docs/interop.md has the table of what converts, in which direction, how exactly and how fast. Install the
optional libraries with ``pip install -e ".[interop]"`` from a clone (transformers; diffusers is a core
dependency).
The names load their module on first use: importing :mod:`spacetime.interop` imports neither library, and
nothing else in spacetime imports this package.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    **dict.fromkeys(["from_transformers", "to_transformers_state_dict", "register_transformers",
                     "TransformersVideoModel"], "transformers"),
    **dict.fromkeys(["from_torchvision", "to_torchvision_state_dict", "torchvision_config"], "torchvision"),
    **dict.fromkeys(["from_diffusers", "to_diffusers_state_dict", "SpacetimeAttnProcessor",
                     "SpacetimeWanAttnProcessor", "set_spacetime_processor"], "diffusers"),
    **dict.fromkeys(["convert", "load_converted"], "convert"),
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'spacetime.interop' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"spacetime.interop.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
