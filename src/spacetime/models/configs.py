"""A mixin for the small dataclass configs of the library: plain-dict round trips with strict keys."""

from __future__ import annotations

import dataclasses

__all__ = ["DictConfig"]


class DictConfig:
    """``to_dict()`` and ``from_dict()`` for a dataclass; unknown keys are an error naming them."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}.from_dict needs a dict; got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")
        return cls(**data)
