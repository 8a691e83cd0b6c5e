"""``spacetime bench``: the quick sweep writes a CSV and plots that read back; skips; new backends."""

import importlib
import math

import pytest
import torch.nn.functional as F

from spacetime.bench.cases import make_patterns
from spacetime.bench.cost import VideoShape, layer_cost
from spacetime.bench.plots import PLOT_FILES
from spacetime.bench.report import format_peer_table, peer_ratios, replace_block
from spacetime.bench.sweep import CSV_FIELDS, BenchConfig, read_csv, run_sweep, write_csv
from spacetime.cli import main

attention_module = importlib.import_module("spacetime.ops.attention")  # the module, not the function


@pytest.mark.slow
def test_quick_bench_writes_csv_plots_and_report(tmp_path, capsys):
    results = tmp_path / "RESULTS.md"
    results.write_text("intro\n<!-- bench:begin -->\nold\n<!-- bench:end -->\noutro\n")
    assert main(["bench", "--quick", "--out", str(tmp_path), "--results", str(results)]) == 0
    rows = read_csv(tmp_path / "bench.csv")
    quick_patterns = {"spatial", "temporal", "factorized", "joint"}
    assert {r["pattern"] for r in rows} == quick_patterns
    assert {r["impl"] for r in rows} == {"layer", "mha", "explicit"}
    assert {r["backend"] for r in rows if r["impl"] == "layer"} == set(attention_module.available_backends())
    assert {r["mode"] for r in rows} == {"fwd", "fwdbwd"}
    for r in rows:
        assert r["status"] == "ok", r
        assert r["time_ms"] > 0 and r["gflops"] > 0 and r["matmul_gflops"] > 0
        assert math.isnan(r["mem_mb"]) or r["mem_mb"] >= 0
        # the CSV's model columns are the cost model's
        shape = VideoShape(r["b"], r["t"], r["h"], r["w"], r["dim"], r["heads"])
        cost = layer_cost(make_patterns(r["pattern"]), shape)
        assert r["gflop"] == pytest.approx(cost.flops(r["mode"]) / 1e9)
    for name in PLOT_FILES.values():
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / name).stat().st_size > 10_000
    text = results.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert "Factorized vs joint" in text and "| 1x4x16x16 | fwd |" in text
    assert "Peers" in capsys.readouterr().out


def test_cases_over_budget_are_skipped_with_a_message(tmp_path):
    messages = []
    cfg = BenchConfig(shapes=[(2, 4, 4)], patterns=["joint"], backends=["math"], memory_budget=1000,
                      matmul_n=32, measure_memory=False)
    rows = run_sweep(cfg, log=messages.append)
    assert [r["status"].split(":")[0] for r in rows] == ["skipped", "skipped"]
    assert "GiB > budget" in rows[0]["status"] and any("GiB > budget" in m for m in messages)
    assert all(math.isnan(r["time_ms"]) for r in rows)
    cfg = BenchConfig(shapes=[(2, 4, 4)], patterns=["joint"], backends=["math"], max_seconds=1e-9,
                      matmul_n=32, measure_memory=False)
    assert "at the matmul rate" in run_sweep(cfg, log=messages.append)[0]["status"]


def test_a_newly_registered_backend_is_benchmarked(monkeypatch):
    def fancy(q, k, v, mask, causal, scale, dropout_p):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale)

    monkeypatch.setitem(attention_module._BACKENDS, "fancy", fancy)
    cfg = BenchConfig(shapes=[(2, 4, 4)], patterns=["temporal"], dim=16, heads=2, matmul_n=32, repeats=1,
                      measure_memory=False)
    assert "fancy" in cfg.backends
    rows = run_sweep(cfg, log=lambda m: None)
    assert {r["backend"] for r in rows if r["status"] == "ok"} == set(attention_module.available_backends())


def test_csv_round_trip_and_atomic_write(tmp_path):
    cfg = BenchConfig(shapes=[(2, 3, 3)], patterns=["spatial"], backends=["sdpa"], dim=8, heads=2, matmul_n=32,
                      repeats=1, modes=["fwd"], measure_memory=False)
    rows = run_sweep(cfg, log=lambda m: None)
    path = write_csv(rows, tmp_path / "out.csv")
    back = read_csv(path)
    assert [sorted(r) for r in back] == [sorted(CSV_FIELDS)]
    assert back[0]["tokens"] == 18 and back[0]["time_ms"] == pytest.approx(rows[0]["time_ms"])
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temp file left behind
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a spacetime bench CSV"):
        read_csv(tmp_path / "other.csv")


def test_bad_arguments_are_named(tmp_path, capsys):
    assert main(["bench", "--shape", "4x4", "--out", str(tmp_path)]) == 2
    assert "--shape must look like TxHxW" in capsys.readouterr().err
    assert main(["bench", "--quick", "--backends", "cuda", "--out", str(tmp_path)]) == 2
    assert "available_backends()" in capsys.readouterr().err
    (tmp_path / "R.md").write_text("no markers\n")
    assert main(["bench", "--quick", "--results", str(tmp_path / "R.md"), "--out", str(tmp_path)]) == 2
    assert "bench:begin" in capsys.readouterr().err
    with pytest.raises(ValueError, match="exactly one"):
        replace_block(tmp_path / "R.md", "bench", "x")


def test_peer_table_compares_against_the_fastest_backend_or_the_one_named():
    def row(impl, backend, ms, status="ok"):
        return {"impl": impl, "backend": backend, "time_ms": ms, "mem_mb": math.nan, "status": status,
                "pattern": "temporal", "mode": "fwd", "b": 1, "t": 8, "h": 4, "w": 4}

    rows = [row("layer", "math", 4.0), row("layer", "fused", 1.0), row("layer", "sdpa", 0.5, "error: x"),
            row("mha", "-", 3.0), row("flex", "-", 2.0, "skipped: no")]
    (best,) = peer_ratios(rows)
    assert (best["ours_backend"], best["ours_ms"], best["ratio"]) == ("fused", 1.0, 3.0)
    (named,) = peer_ratios(rows, backend="math")
    assert (named["ours_backend"], named["ratio"]) == ("math", 0.75)
    table = format_peer_table(rows)
    assert "| 1x8x4x4 | temporal | fwd | 1.00 (fused) | 3.00 (3.00x) |" in table and "flex" not in table
