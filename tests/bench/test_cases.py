"""Benchmark cases: every case runs, and the peers compute the same attention as spacetime."""

import math

import pytest
import torch

from spacetime.bench.cases import (
    PATTERN_NAMES,
    Case,
    available_peers,
    measure_memory_in_child,
    mode_unsupported,
    peer_supports,
)
from spacetime.layers.attention import FactorizedAttention, MHAStyleAttention, SpaceTimeAttention
from spacetime.measure import memory_supported

SHAPE = [2, 3, 4, 5, 16, 2]
OPTS = {"window": (2, 3, 3), "local": 1, "cross": 1}


@pytest.mark.parametrize("name", PATTERN_NAMES)
def test_every_case_runs_both_modes(name):
    # flex and natten (forward only on CPU, compiled or on a tiling shape): their own tests below
    for impl in ("layer", "op") + tuple(p for p in available_peers() if p not in ("flex", "natten")):
        if impl in ("mha", "explicit", "diffusers") and not peer_supports(impl, name):
            continue
        for backend in (["math", "sdpa"] if impl in ("layer", "op") else [None]):
            case = Case({"impl": impl, "pattern": name, "backend": backend, "shape": SHAPE, "options": OPTS})
            case.run("fwd")
            case.run("fwdbwd")
            params = [] if case.module is None else list(case.module.parameters())
            assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)


def _ours(name, peer, seq_module):
    """Our layer with the peer's weights (the peers use the design texts' parameter names)."""
    cls = MHAStyleAttention if peer == "mha" else SpaceTimeAttention
    dim, heads = SHAPE[4], SHAPE[5]
    case = Case({"impl": "layer", "pattern": name, "backend": "sdpa", "shape": SHAPE, "options": OPTS})
    if name == "factorized":
        ours = FactorizedAttention(dim, heads, attention_cls=cls)
        ours.spatial_attn.load_state_dict(seq_module[0].attn.state_dict())
        ours.temporal_attn.load_state_dict(seq_module[1].attn.state_dict())
    else:
        ours = cls(dim, heads, case.patterns[0])
        ours.load_state_dict(seq_module[0].attn.state_dict())
    return ours


@pytest.mark.parametrize("peer", ["mha", "explicit"])
@pytest.mark.parametrize("name", ["spatial", "temporal", "causal", "local", "factorized", "joint"])
def test_peers_compute_the_same_attention(peer, name):
    case = Case({"impl": peer, "pattern": name, "backend": None, "shape": SHAPE, "options": OPTS})
    x = case.inputs[0]
    ours = _ours(name, peer, case.module)
    with torch.no_grad():
        torch.testing.assert_close(case.module(x), ours(x), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif("flex" not in available_peers(), reason="FlexAttention or a C++ compiler is missing")
@pytest.mark.parametrize("name", ["causal", "shifted"])
def test_flex_peer_computes_the_same_attention(name):
    # compiled FlexAttention against our layer with its weights: a frame mask and a shifted 3D window
    case = Case({"impl": "flex", "pattern": name, "backend": None, "shape": SHAPE, "options": OPTS})
    ours = _ours(name, "flex", case.module)
    with torch.no_grad():
        torch.testing.assert_close(case.module(case.inputs[0]), ours(case.inputs[0]), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif("natten" not in available_peers(), reason="natten is not installed")
def test_natten_peer_computes_our_windows_and_names_what_it_cannot():
    shape, opts = [2, 4, 6, 6, 16, 2], {"window": (2, 3, 3)}
    case = Case({"impl": "natten", "pattern": "window", "backend": None, "shape": shape, "options": opts})
    ours = SpaceTimeAttention(16, 2, case.patterns[0])
    ours.load_state_dict(case.module[0].attn.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(case.module(case.inputs[0]), ours(case.inputs[0]), rtol=1e-4, atol=1e-5)
    untiled = Case({"impl": "natten", "pattern": "window", "backend": None, "shape": SHAPE, "options": opts})
    with pytest.raises(ValueError, match=r"unshifted windows that tile the clip; got window \(2, 3, 3\)"):
        untiled.run("fwd")
    assert not peer_supports("natten", "shifted")


def test_flex_backward_on_cpu_is_reported_not_run():
    assert mode_unsupported("flex", "fwdbwd").startswith("skipped: FlexAttention has no CPU backward")
    assert mode_unsupported("flex", "fwd") is None
    assert mode_unsupported("natten", "fwdbwd") == mode_unsupported("flex", "fwdbwd")
    assert mode_unsupported("mha", "fwdbwd") is None


def test_bad_specs_are_named():
    with pytest.raises(ValueError, match="impl must be one of"):
        Case({"impl": "flash", "pattern": "joint", "shape": SHAPE})
    with pytest.raises(ValueError, match="backend must be one of"):
        Case({"impl": "layer", "pattern": "joint", "backend": "cuda", "shape": SHAPE})
    with pytest.raises(ValueError, match="does not implement pattern 'window'"):
        Case({"impl": "mha", "pattern": "window", "backend": None, "shape": SHAPE})
    with pytest.raises(ValueError, match="mode must be"):
        Case({"impl": "layer", "pattern": "joint", "backend": "sdpa", "shape": SHAPE}).run("train")


@pytest.mark.skipif("diffusers" not in available_peers(), reason="diffusers is not installed")
@pytest.mark.parametrize("name", ["spatial", "temporal", "factorized", "joint"])
def test_diffusers_peer_computes_the_same_attention(name):
    case = Case({"impl": "diffusers", "pattern": name, "backend": None, "shape": SHAPE, "options": OPTS})
    dim, heads = SHAPE[4], SHAPE[5]
    layers = []
    for peer_layer in case.module:
        a = peer_layer.attn
        ours = SpaceTimeAttention(dim, heads, peer_layer.pattern)
        ours.qkv.weight.data = torch.cat([a.to_q.weight, a.to_k.weight, a.to_v.weight]).detach().clone()
        ours.qkv.bias.data = torch.cat([a.to_q.bias, a.to_k.bias, a.to_v.bias]).detach().clone()
        ours.proj.load_state_dict(a.to_out[0].state_dict())
        layers.append(ours)
    x = case.inputs[0]
    with torch.no_grad():
        expected = x
        for layer in layers:
            expected = layer(expected)
        torch.testing.assert_close(case.module(x), expected, rtol=1e-4, atol=1e-5)


needs_proc = pytest.mark.skipif(not memory_supported(), reason="peak memory needs Linux /proc")


@needs_proc
def test_child_memory_tracks_the_score_matrix():
    # joint attention on the math backend holds scores and probabilities: 2 heads x 1024^2 fp32 each
    spec = {"impl": "op", "pattern": "joint", "backend": "math", "shape": [1, 4, 16, 16, 64, 2],
            "options": {}, "modes": ["fwd"]}
    small = dict(spec, shape=[1, 1, 16, 16, 64, 2])
    big, tiny = measure_memory_in_child([spec, small])
    score = 2 * 1024**2 * 4
    assert 1.5 * score < big["fwd"] < 4 * score
    assert tiny["fwd"] < big["fwd"] / 8  # 16x fewer pairs


@needs_proc
def test_child_reports_a_broken_case_without_losing_the_others():
    good = {"impl": "op", "pattern": "spatial", "backend": "sdpa", "shape": [1, 2, 4, 4, 8, 2], "modes": ["fwd"]}
    bad = dict(good, backend="nope")
    out = measure_memory_in_child([bad, good])
    assert "backend must be one of" in out[0]["error"]
    assert math.isfinite(out[1]["fwd"])
