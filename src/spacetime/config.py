"""The base of the library's configs: small dataclasses with strict plain-dict and JSON round trips.

Every model and pipeline config (``VideoUNetConfig``, ``VideoTransformerConfig``, ``TrainConfig``,
``ClassifyConfig``) is a dataclass deriving from :class:`Config`, validated in ``__post_init__``
and saved as JSON beside every output. A key the dataclass does not have is an error naming it,
never silently dropped.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .io.files import atomic_write_text

__all__ = ["Config", "read_config_file"]


class Config:
    """``to_dict``/``from_dict``, ``replace`` and ``save`` for a dataclass config."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def _check_keys(cls, keys) -> None:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(keys) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")

    @classmethod
    def from_dict(cls, data: dict):
        """The config of a dict such as :meth:`to_dict` returns (validated; unknown keys are an error)."""
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}.from_dict needs a dict; got {type(data).__name__}")
        cls._check_keys(data)
        return cls(**data)

    def replace(self, **changes):
        """A copy with ``changes`` applied and validated again (unknown fields are an error)."""
        self._check_keys(changes)
        return dataclasses.replace(self, **changes)

    def save(self, path) -> Path:
        """Write the config as JSON (sorted keys), atomically."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


def read_config_file(path) -> dict:
    """A JSON (``.json``) or YAML (``.yaml``/``.yml``) file holding a mapping of config fields."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path}: not found")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # yaml and json raise their own error types
        raise ValueError(f"config file {path}: cannot parse: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path}: expected a mapping of config fields; got {type(data).__name__}")
    return data
