"""What every whole network of the library shares: one config object, and presets by name.

``Model(Config(...))`` builds a network; ``Model.from_preset(name, **changes)`` builds one from
``Model.presets[name]`` (a config) with some of its fields changed. The config is kept as
``model.config`` and saved beside every checkpoint, so a checkpoint always rebuilds its network.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from ..checks import one_of
from ..config import Config

__all__ = ["Model"]


class Model(nn.Module):
    """Base class: subclasses set ``config_class`` and ``presets`` and build their layers from ``self.config``."""

    config_class: ClassVar[type[Config]]
    presets: ClassVar[dict[str, Config]]

    def __init__(self, config: Config):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"config must be a {self.config_class.__name__}; got {type(config).__name__} "
                            f"(build one with {self.config_class.__name__}(...) or use {type(self).__name__}"
                            f".from_preset(name))")
        self.config = config

    @classmethod
    def from_preset(cls, name: str, **changes) -> Model:
        """The network of the preset ``name`` (one of :attr:`presets`) with ``changes`` to its config's fields."""
        one_of("preset", name, cls.presets)
        return cls(cls.presets[name].replace(**changes))
