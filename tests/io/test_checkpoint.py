import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from spacetime.io import CheckpointError, load_state, load_weights, save_state, save_weights


def test_weights_round_trip_with_metadata(tmp_path):
    tensors = {"a.weight": torch.randn(3, 4), "b": torch.arange(5)}
    save_weights(tmp_path / "w.safetensors", tensors, {"kind": "demo", "config": {"channels": [8, 16]}})
    back, meta = load_weights(tmp_path / "w.safetensors", kind="demo")
    assert meta == {"kind": "demo", "config": {"channels": [8, 16]}}
    assert all(torch.equal(back[k], v) for k, v in tensors.items())
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_state_round_trip_weights_only(tmp_path):
    state = {"kind": "s", "step": 3, "rng": torch.get_rng_state(), "nested": {"lr": [0.1, 0.2]}}
    save_state(tmp_path / "s.pt", state)
    back = load_state(tmp_path / "s.pt", kind="s")
    assert back["step"] == 3 and torch.equal(back["rng"], state["rng"]) and back["nested"] == {"lr": [0.1, 0.2]}


def test_clear_errors_for_missing_truncated_foreign_and_wrong_kind(tmp_path):
    path = save_weights(tmp_path / "w.safetensors", {"x": torch.randn(64, 64)}, {"kind": "demo"})
    data = path.read_bytes()
    cases = {
        tmp_path / "missing.safetensors": "file not found",
        tmp_path / "empty.safetensors": "file is empty",
        tmp_path / "cut.safetensors": "not a readable safetensors file",
        tmp_path / "foreign.safetensors": "not a readable safetensors file",
    }
    (tmp_path / "empty.safetensors").write_bytes(b"")
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "foreign.safetensors").write_bytes(b"PK\x03\x04" + b"x" * 100)
    for bad, message in cases.items():
        with pytest.raises(CheckpointError, match=message) as info:
            load_weights(bad)
        assert bad.name in str(info.value)
    with pytest.raises(CheckpointError, match="holds a 'demo' checkpoint; expected 'other'"):
        load_weights(path, kind="other")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="without spacetime metadata"):
        load_weights(tmp_path / "plain.safetensors")
    save_state(tmp_path / "s.pt", {"kind": "s", "step": 1})
    (tmp_path / "s_cut.pt").write_bytes((tmp_path / "s.pt").read_bytes()[:50])
    with pytest.raises(CheckpointError, match="s_cut.pt: not a readable training-state file"):
        load_state(tmp_path / "s_cut.pt")
    with pytest.raises(CheckpointError, match="holds a None state; expected 's'"):
        load_state(path, kind="s")  # a weights file is not a training state


WRITER = """
import sys, torch
from spacetime.io import save_weights
i = 0
while True:
    save_weights(sys.argv[1], {"x": torch.full((4_000_000,), float(i))}, {"kind": "k", "i": i})
    i += 1
    print(i, flush=True)
"""


@pytest.mark.slow
def test_kill_9_during_writes_leaves_a_loadable_checkpoint(tmp_path):
    target = tmp_path / "ckpt.safetensors"
    save_weights(target, {"x": torch.zeros(4_000_000)}, {"kind": "k", "i": -1})
    for delay in (0.0, 0.013, 0.031, 0.05):  # kill at different points of a write (each takes tens of ms)
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        proc.stdout.readline()  # one write has completed: the next is under way
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        tensors, meta = load_weights(target, kind="k")
        assert torch.all(tensors["x"] == float(meta["i"]) if meta["i"] >= 0 else tensors["x"] == 0)
