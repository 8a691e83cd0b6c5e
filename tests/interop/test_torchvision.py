"""torchvision's Video Swin converted to spacetime: the same logits and gradients as torchvision's own forward, the
weights back exactly, and every unknown architecture, unsupported option and mismatched key refused by name.

How these tests get torchvision's code. torchvision 0.28.0 (the release for torch 2.13) is served as a build whose
compiled ops do not load with the CPU torch here, and installing it would also change what transformers imports, so
it is neither a dependency nor installed. Its Video Swin is pure Python, so :func:`torchvision_swin` runs *torchvision's
own files* without installing anything:

1. ``pip download torchvision==0.28.0 --no-deps --only-binary=:all:`` (the registry's wheel, checked by pip) into a
   cache folder, pytest's cache (``.pytest_cache/d/torchvision-wheel``) or a temporary folder without one; nothing is
   downloaded again while the wheel is there;
2. its ``.py`` files (never the compiled ``.so``) are unpacked beside it, and the wheel's METADATA must say 0.28.0;
3. they are imported under the package name ``_torchvision_wheel`` (not ``torchvision``, so nothing else in the
   process, transformers included, sees a torchvision), from stub packages whose ``__path__`` points at the unpacked
   files for the package and its ``models``, ``models/video`` and ``ops`` folders: those ``__init__.py`` import every
   model and op, and the top one loads the compiled ops; they are not run. Every module of the chain,
   ``models/video/swin_transformer.py``, ``models/swin_transformer.py`` (``PatchMerging``, ``SwinTransformerBlock``),
   ``ops/misc.py``, ``ops/stochastic_depth.py``, ``transforms`` (the weights' presets), ``utils.py``, runs unchanged,
   with its relative imports.

A failed download fails the tests with pip's message: these tests never skip. The first run downloads about 7.5 MB;
importing the files takes a second or two once torch is loaded.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.machinery
import os
import subprocess
import sys
import tempfile
import types
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from spacetime.interop.torchvision import (
    from_torchvision,
    to_torchvision_state_dict,
    torchvision_config,
    torchvision_key_pairs,
)
from spacetime.models.swin import VideoSwin, VideoSwinConfig
from spacetime.ops import use_backend

TORCHVISION_VERSION = "0.28.0"
#: the name torchvision's files are imported under
PACKAGE = "_torchvision_wheel"
#: the packages whose __init__.py is not run (each imports far more than the Video Swin needs)
STUBBED = ("", ".models", ".models.video", ".ops")


def _download_wheel(folder: Path) -> Path:
    """torchvision's wheel from the package index (pip's ordinary download), or a test failure saying why not."""
    found = sorted(folder.glob(f"torchvision-{TORCHVISION_VERSION}-*.whl"))
    if found:
        return found[0]
    command = [sys.executable, "-m", "pip", "download", f"torchvision=={TORCHVISION_VERSION}", "--no-deps",
               "--only-binary=:all:", "--dest", str(folder), "--quiet", "--disable-pip-version-check"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        failure = None if done.returncode == 0 else f"pip exited with {done.returncode}:\n{done.stderr[-3000:]}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        failure = repr(exc)
    found = sorted(folder.glob(f"torchvision-{TORCHVISION_VERSION}-*.whl"))
    if failure or not found:
        pytest.fail(f"could not download torchvision=={TORCHVISION_VERSION} with `{' '.join(command)}`; the "
                    f"torchvision tests run torchvision's own Video Swin from that wheel (unpacked, never installed) "
                    f"and need the package index: {failure or 'no wheel was saved'}", pytrace=False)
    return found[0]


def _unpacked(folder: Path) -> Path:
    """The ``torchvision`` folder of the wheel's Python files, unpacked once into ``folder``."""
    target = folder / f"torchvision-{TORCHVISION_VERSION}"
    if (target / "torchvision" / "models" / "video" / "swin_transformer.py").is_file():
        return target / "torchvision"
    wheel = _download_wheel(folder)
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        version = next(line.split(":", 1)[1].strip() for line in archive.read(metadata).decode().splitlines()
                       if line.startswith("Version:"))
        if version != TORCHVISION_VERSION:
            pytest.fail(f"{wheel.name} is torchvision {version}; the tests need {TORCHVISION_VERSION}", pytrace=False)
        staging = Path(tempfile.mkdtemp(dir=folder))
        sources = [n for n in archive.namelist() if n.startswith("torchvision/") and n.endswith(".py")]
        archive.extractall(staging, sources)
    try:
        os.replace(staging, target)
    except OSError:  # another process unpacked it first
        pass
    return target / "torchvision"


def _stub(name: str, path: Path) -> None:
    """An empty package ``name`` whose submodules are the files in ``path`` (its ``__init__.py`` is not run)."""
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [str(path)]
    module = types.ModuleType(name)
    module.__spec__, module.__path__, module.__package__ = spec, [str(path)], name
    sys.modules[name] = module


def torchvision_swin(folder: Path) -> types.ModuleType:
    """torchvision 0.28.0's ``torchvision/models/video/swin_transformer.py``, from the wheel, as the module docstring
    says (``folder``: where the wheel is cached)."""
    name = f"{PACKAGE}.models.video.swin_transformer"
    if name not in sys.modules:
        root = _unpacked(Path(folder))
        for suffix in STUBBED:
            _stub(PACKAGE + suffix, root.joinpath(*suffix.split(".")[1:]))
    return importlib.import_module(name)


def wheel_folder(pytestconfig, tmp_path_factory) -> Path:
    """pytest's cache folder for the wheel, or (the cache off) one temporary folder for the session."""
    cache = getattr(pytestconfig, "cache", None)
    if cache is not None:
        return cache.mkdir("torchvision-wheel")
    if "folder" not in _SESSION_FOLDER:
        _SESSION_FOLDER["folder"] = tmp_path_factory.mktemp("torchvision-wheel")
    return _SESSION_FOLDER["folder"]


_SESSION_FOLDER: dict[str, Path] = {}


@pytest.fixture(scope="session")
def tv(pytestconfig, tmp_path_factory):
    """torchvision's video ``swin_transformer`` module, run from its own files."""
    return torchvision_swin(wheel_folder(pytestconfig, tmp_path_factory))


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights everywhere, so that every tensor matters: norm weights near 1, weight matrices with std
    ``fan_in ** -0.5`` (deep stacks of larger ones are chaotic: float rounding grows to 1e-3), the rest std 0.3."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * noise)
            elif p.ndim >= 2 and "relative_position" not in name:
                p.copy_(noise / p[0].numel() ** 0.5)
            else:
                p.copy_(0.3 * noise)
    return model.eval()


def clip(shape, seed: int = 1, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


#: (id, SwinTransformer3d's keyword arguments, clip (B, C, T, H, W)): the real configs' layouts scaled down, over odd
#: shapes: frames not a power of two nor a tubelet multiple, non-square frames, token grids the window does not divide
#: (padding) or that are shorter than the window (clipped windows, the leading bias block), shifted windows, one frame
CASES = [
    ("swin3d_t-layout", {"patch_size": [2, 4, 4], "embed_dim": 32, "depths": [2, 2], "num_heads": [2, 4],
                         "window_size": [8, 7, 7], "num_classes": 5}, (2, 3, 10, 40, 36)),
    ("swin3d_s-layout", {"patch_size": [2, 4, 4], "embed_dim": 16, "depths": [2, 2, 4, 2], "num_heads": [1, 2, 4, 8],
                         "window_size": [4, 3, 3], "num_classes": 4, "mlp_ratio": 3.0}, (1, 3, 9, 60, 44)),
    ("swin3d_b-layout", {"patch_size": [2, 4, 4], "embed_dim": 32, "depths": [2, 2, 2], "num_heads": [1, 2, 4],
                         "window_size": [2, 3, 3], "num_classes": 3, "dropout": 0.1, "attention_dropout": 0.1,
                         "stochastic_depth_prob": 0.2}, (2, 3, 7, 44, 52)),
    ("eps-and-odd-tubelet", {"patch_size": [3, 2, 3], "embed_dim": 24, "depths": [1, 3], "num_heads": [3, 3],
                             "window_size": [3, 5, 4], "num_classes": 2,
                             "norm_layer": functools.partial(nn.LayerNorm, eps=1e-6)}, (2, 3, 11, 21, 26)),
    ("one-frame", {"patch_size": [2, 4, 4], "embed_dim": 16, "depths": [2, 2], "num_heads": [2, 2],
                   "window_size": [2, 4, 4], "num_classes": 3}, (2, 3, 1, 36, 28)),
]
IDS = [case[0] for case in CASES]


@pytest.fixture(scope="module")
def converted(tv):
    """id -> (torchvision's model, the converted one, a clip)."""
    out = {}
    for i, (case_id, kwargs, shape) in enumerate(CASES):
        original = randomize(tv.SwinTransformer3d(**kwargs), seed=i)
        out[case_id] = original, from_torchvision(original), clip(shape, seed=i)
    return out


def test_the_tests_run_torchvisions_own_files_from_the_wheel(tv, pytestconfig, tmp_path_factory):
    assert Path(tv.__file__).parts[-4:] == ("torchvision", "models", "video", "swin_transformer.py")
    assert wheel_folder(pytestconfig, tmp_path_factory) in Path(tv.__file__).parents  # the unpacked wheel, not the repo
    assert tv.PatchMerging.__module__ == f"{PACKAGE}.models.swin_transformer"
    loaded = [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]
    assert loaded == [] and f"{PACKAGE}._C" not in sys.modules  # no torchvision, no compiled ops


@pytest.mark.parametrize("case_id", IDS)
@pytest.mark.parametrize("backend, tol", [("math", 1e-5), (None, 1e-4)])
def test_the_logits_equal_torchvisions(converted, case_id, backend, tol):
    original, model, x = converted[case_id]
    with torch.no_grad():
        want = original(x)
        if backend is None:
            got = model(x)
        else:
            with use_backend(backend):
                got = model(x)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert 0.5 < want.abs().max() < 20  # logits of order 1: the absolute tolerance is also a relative one
    torch.testing.assert_close(got, want, atol=tol, rtol=0)


def test_swin3d_t_itself_gives_torchvisions_logits(tv):
    """The real swin3d_t (28M weights, head_dim 32, an 8x7x7 window clipped on every axis of a small clip)."""
    original = randomize(tv.swin3d_t(num_classes=7), seed=5)
    model = from_torchvision(original)
    x = clip((1, 3, 6, 60, 52), seed=5)
    with torch.no_grad(), use_backend("math"):
        torch.testing.assert_close(model(x), original(x), atol=1e-5, rtol=0)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in original.parameters())


def test_float64_agrees_to_float64_rounding(tv):
    """What differs from torchvision is float rounding only (the -100 shift mask included): in float64 it all but
    vanishes."""
    kwargs, shape = CASES[0][1], CASES[0][2]
    original = randomize(tv.SwinTransformer3d(**kwargs).double())
    model = from_torchvision(original)
    assert model.patch_embed.proj.weight.dtype == torch.float64
    x = clip(shape, dtype=torch.float64)
    with torch.no_grad(), use_backend("sdpa"):  # "math" computes in float32 whatever the inputs
        torch.testing.assert_close(model(x), original(x), atol=1e-12, rtol=0)


@pytest.mark.parametrize("backend", ["math", None])
def test_gradients_equal_torchvisions(tv, backend):
    """The input's gradient and every weight's, through the scaled swin3d_s layout (padding, clipped windows)."""
    kwargs, shape = CASES[1][1], CASES[1][2]
    original = randomize(tv.SwinTransformer3d(**kwargs))
    model = from_torchvision(original)
    inputs = []
    for net in (original, model):
        x = clip(shape).requires_grad_(True)
        weights = clip((shape[0], kwargs["num_classes"]), seed=9)
        with use_backend(backend) if backend else contextlib.nullcontext():
            (net(x) * weights).sum().backward()
        inputs.append(x.grad)
    _assert_relative(inputs[1], inputs[0], "the input")
    own = dict(model.named_parameters())
    for tv_key, st_key in torchvision_key_pairs(model.config):
        if st_key is not None:
            _assert_relative(own[st_key].grad, original.get_parameter(tv_key).grad, tv_key)


def _assert_relative(got, want, what, tol=1e-5):
    scale = want.abs().max()
    assert scale > 0, f"{what}: no gradient to compare"
    error = (got - want).abs().max() / scale
    assert error <= tol, f"gradient of {what}: max relative difference {error:.2e} > {tol}"


def test_training_without_dropout_is_the_eval_function(tv):
    """Train mode changes nothing but dropout and stochastic depth: with those at 0 it is the eval forward."""
    kwargs, shape = CASES[0][1], CASES[0][2]
    original = randomize(tv.SwinTransformer3d(**kwargs, stochastic_depth_prob=0.0)).train()
    model = from_torchvision(original).train()
    with torch.no_grad():
        torch.testing.assert_close(model(clip(shape)), original(clip(shape)), atol=1e-4, rtol=0)


def test_the_state_dict_round_trips_exactly(converted):
    for original, model, _ in converted.values():
        back, want = to_torchvision_state_dict(model), original.state_dict()
        assert list(back) == list(want)  # the same keys in the same order
        for key, value in want.items():
            assert back[key].dtype == value.dtype and torch.equal(back[key], value), key


def test_a_spacetime_model_goes_to_torchvision_and_back(tv):
    config = VideoSwinConfig(num_classes=4, dim=16, depths=(2, 2), num_heads=(2, 4), window_size=(2, 3, 3),
                             padding="zeros", clipped_bias="leading", norm_eps=1e-6)
    model = randomize(VideoSwin(config))
    original = tv.SwinTransformer3d(**torchvision_config(model)).eval()
    original.load_state_dict(to_torchvision_state_dict(model), strict=True)
    x = clip((2, 3, 5, 20, 28))
    with torch.no_grad(), use_backend("math"):
        torch.testing.assert_close(model(x), original(x), atol=1e-5, rtol=0)
    again = from_torchvision(original.state_dict(), torchvision_config(model))
    assert again.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key


def test_a_state_dict_and_its_config_convert_as_the_model_does(converted):
    for case_id, kwargs, shape in CASES:
        original, model, x = converted[case_id]
        from_dict = from_torchvision(original.state_dict(), kwargs)
        assert from_dict.config == model.config and not from_dict.training
        with torch.no_grad():
            torch.testing.assert_close(from_dict(x), original(x), atol=1e-4, rtol=0)


def test_a_builders_name_is_a_config(tv):
    original = tv.swin3d_s()
    model = from_torchvision(original.state_dict(), "swin3d_s")
    assert model.config == from_torchvision(original).config
    assert model.config.depths == (2, 2, 18, 2) and model.config.num_classes == 400


# --- refusals, each naming what it refuses ---------------------------------------------------------------------------


def test_unknown_architectures_are_refused_by_name(tv):
    image_swin = sys.modules[f"{PACKAGE}.models.swin_transformer"]
    with pytest.raises(TypeError, match="unknown architecture SwinTransformer"):
        from_torchvision(image_swin.swin_t(num_classes=3))
    with pytest.raises(TypeError, match="unknown architecture Linear"):
        from_torchvision(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="unknown architecture 'swin3d_x'"):
        from_torchvision({}, "swin3d_x")
    with pytest.raises(TypeError, match="got list"):
        from_torchvision([1, 2])


def test_unsupported_options_are_refused_by_name(tv):
    image_swin = sys.modules[f"{PACKAGE}.models.swin_transformer"]
    small = {"patch_size": [2, 4, 4], "embed_dim": 16, "depths": [2, 2], "num_heads": [2, 2], "window_size": [2, 3, 3]}
    options = [("block", image_swin.SwinTransformerBlockV2, "SwinTransformerBlockV2"),
               ("downsample_layer", image_swin.PatchMergingV2, "PatchMergingV2"),
               ("norm_layer", nn.RMSNorm, "RMSNorm")]
    for option, value, name in options:
        kwargs = {**small, option: value}
        with pytest.raises(ValueError, match=f"{option}.*unsupported {name}"):
            from_torchvision(tv.SwinTransformer3d(**kwargs))
        with pytest.raises(ValueError, match=f"{option}.*unsupported {name}"):
            from_torchvision({}, kwargs)
    with pytest.raises(ValueError, match=r"unknown \['in_chans'\]"):
        from_torchvision({}, {**small, "in_chans": 3})
    with pytest.raises(ValueError, match=r"missing \['window_size'\]"):
        from_torchvision({}, {k: v for k, v in small.items() if k != "window_size"})
    with pytest.raises(ValueError, match="num_classes must be an int >= 1"):
        from_torchvision({}, {**small, "num_classes": 0})
    block = functools.partial(image_swin.SwinTransformerBlock, attn_layer=tv.ShiftedWindowAttention3d)
    defaults = {**small, "block": block,
                "downsample_layer": image_swin.PatchMerging, "patch_embed": tv.PatchEmbed3d, "norm_layer": nn.LayerNorm}
    original = tv.SwinTransformer3d(**defaults)  # torchvision's defaults, spelled out, are no options
    assert from_torchvision(original.state_dict(), defaults).config == from_torchvision(original).config


def test_modified_models_are_refused_by_what_changed(tv):
    small = {"patch_size": [2, 4, 4], "embed_dim": 16, "depths": [2, 2], "num_heads": [2, 2], "window_size": [2, 3, 3]}
    changes = [(lambda m: setattr(m.features[0][1].mlp, "1", nn.GELU(approximate="tanh")), r"features\.0\.1\.mlp"),
               (lambda m: setattr(m.features[2][0].attn.qkv, "bias", None), r"features\.2\.0\.attn.*biases"),
               (lambda m: setattr(m.features[0][1].attn, "shift_size", [0, 0, 0]), r"features\.0\.1: shift_size"),
               (lambda m: setattr(m.features[2][1].norm2, "eps", 1e-3), "one epsilon"),
               (lambda m: setattr(m.features[0][0].stochastic_depth, "p", 0.5), r"features\.0\.0\.stochastic_depth")]
    for change, message in changes:
        original = tv.SwinTransformer3d(**small)
        change(original)
        with pytest.raises(ValueError, match=message):
            from_torchvision(original)


def test_config_goes_with_a_state_dict_only(tv, converted):
    original = converted["one-frame"][0]
    with pytest.raises(ValueError, match="config is for a state_dict"):
        from_torchvision(original, CASES[-1][1])
    with pytest.raises(ValueError, match="a state_dict needs config="):
        from_torchvision(original.state_dict())


def test_state_dict_mismatches_name_the_key(converted):
    original = converted["one-frame"][0]
    kwargs = CASES[-1][1]
    state = original.state_dict()
    without = {k: v for k, v in state.items() if k != "features.2.1.attn.proj.bias"}
    with pytest.raises(ValueError, match=r"missing keys \['features\.2\.1\.attn\.proj\.bias'\]"):
        from_torchvision(without, kwargs)
    with pytest.raises(ValueError, match=r"unexpected keys \['extra\.weight'\]"):
        from_torchvision({**state, "extra.weight": torch.zeros(1)}, kwargs)
    with pytest.raises(ValueError, match=r"state_dict\['head\.weight'\] must have shape \(9, 32\).*got \(3, 32\)"):
        from_torchvision(state, {**kwargs, "num_classes": 9})
    with pytest.raises(ValueError, match=r"state_dict\['features\.0\.0\.attn\.relative_position_bias_table'\]"):
        from_torchvision(state, {**kwargs, "num_heads": [4, 2]})
    index = state["features.0.1.attn.relative_position_index"].flip(0)
    with pytest.raises(ValueError, match=r"state_dict\['features\.0\.1\.attn\.relative_position_index'\]"):
        from_torchvision({**state, "features.0.1.attn.relative_position_index": index}, kwargs)
    with pytest.raises(TypeError, match=r"state_dict\['norm\.bias'\] must be a torch\.Tensor; got list"):
        from_torchvision({**state, "norm.bias": [0.0]}, kwargs)


def test_what_torchvision_cannot_hold_is_refused():
    with pytest.raises(TypeError, match="must be a spacetime VideoSwin; got Linear"):
        to_torchvision_state_dict(nn.Linear(2, 2))
    headless = VideoSwin(VideoSwinConfig(num_classes=0, dim=16, depths=(1,), num_heads=(2,)))
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        to_torchvision_state_dict(headless)
    with pytest.raises(ValueError, match="in_channels must be 3"):
        torchvision_config(VideoSwinConfig(in_channels=1, dim=16, depths=(1,), num_heads=(2,)))
