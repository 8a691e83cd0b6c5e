"""The config base: strict dict round trips, validated replace, atomic JSON, config files."""

import json
from dataclasses import dataclass

import pytest

from spacetime.checks import positive_int
from spacetime.config import Config, read_config_file


@dataclass
class Small(Config):
    width: int = 8
    name: str = "a"

    def __post_init__(self):
        positive_int("width", self.width)


def test_round_trip_replace_and_save(tmp_path):
    cfg = Small(width=4)
    assert Small.from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(name="b") == Small(4, "b") and cfg.name == "a"  # a copy
    with pytest.raises(ValueError, match=r"unknown Small keys \['depth'\]; known: \['name', 'width'\]"):
        cfg.replace(depth=2)
    with pytest.raises(ValueError, match="unknown Small keys"):
        Small.from_dict({"width": 2, "depth": 2})
    with pytest.raises(ValueError, match="width must be a positive int; got 0"):
        cfg.replace(width=0)  # validated again
    with pytest.raises(TypeError, match="needs a dict"):
        Small.from_dict([1])
    path = cfg.save(tmp_path / "run" / "config.json")
    assert json.loads(path.read_text()) == {"name": "a", "width": 4}


def test_config_files(tmp_path):
    (tmp_path / "c.yaml").write_text("width: 3\nname: b\n")
    (tmp_path / "c.json").write_text('{"width": 2}')
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "bad.json").write_text("{")
    assert read_config_file(tmp_path / "c.yaml") == {"width": 3, "name": "b"}
    assert read_config_file(tmp_path / "c.json") == {"width": 2}
    with pytest.raises(FileNotFoundError, match="not found"):
        read_config_file(tmp_path / "none.json")
    with pytest.raises(ValueError, match="expected a mapping of config fields; got list"):
        read_config_file(tmp_path / "list.json")
    with pytest.raises(ValueError, match="cannot parse"):
        read_config_file(tmp_path / "bad.json")
