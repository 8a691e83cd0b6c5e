import json
import subprocess
import sys

import pytest

from spacetime.cli import main
from spacetime.diffusion.config import DEMO_CONFIG


def test_help_lists_commands(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "patterns" in out and "demo" in out


def test_demo_is_the_diffusion_main_job_and_patterns_stays(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    assert "bouncing disks" in out and "--time-limit" in out
    flat = " ".join(out.split())  # argparse wraps the help: compare with the line breaks gone
    assert f'(default: {json.dumps(DEMO_CONFIG["model_overrides"])})' in flat  # the demo's values, not None
    assert f'--prediction {{epsilon,v_prediction,sample}} what the network predicts (default: ' \
           f'{DEMO_CONFIG["prediction"]})' in flat
    with pytest.raises(SystemExit):
        main(["patterns", "--help"])
    assert "--head-dim" in capsys.readouterr().out


def test_patterns_tour_runs_and_draws(tmp_path, capsys):
    assert main(["patterns", "--out", str(tmp_path), "--shape", "1", "3", "5", "5", "--heads", "2", "--head-dim", "8"]) == 0
    out = capsys.readouterr().out
    assert "sdpa == math" in out
    assert (tmp_path / "patterns.png").stat().st_size > 1000


def test_module_entry_point():
    done = subprocess.run([sys.executable, "-m", "spacetime", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("spacetime ")


def test_bad_input_is_one_clear_line_and_exit_2(tmp_path, capsys):
    missing = tmp_path / "nope.safetensors"
    for argv in (["classify", "eval", str(missing)], ["sample", "--checkpoint", str(missing)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"checkpoint {missing}: file not found" in err and "Traceback" not in err
