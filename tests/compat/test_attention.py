"""The design texts' classes load the reference weights with strict=True and give the same numbers."""

import pytest
import torch

import spacetime
from tests.compat import text_reference as ref

CASES = [  # (ours, reference, constructor args, input shape)
    ("FactorizedSpatioTemporalAttention", ref.RefFactorized000, (16, 4), (2, 3, 16, 5, 7)),
    ("FactorizedSpatioTemporalAttention", ref.RefFactorized000, (8,), (1, 1, 8, 3, 3)),
    ("SpatioTemporalWindowAttention", ref.RefWindow001, (16, 2, (2, 4, 4)), (2, 16, 4, 8, 8)),
    ("SpatioTemporalWindowAttention", ref.RefWindow001, (12, 3, (2, 3, 4)), (1, 12, 5, 7, 6)),
    ("SpatioTemporalWindowAttention", ref.RefWindow001, (8, 1, (1, 2, 2)), (2, 8, 1, 3, 5)),
    ("TemporalTransformer", ref.RefTemporalTransformer003, (16, 4), (7, 3, 16)),
    ("MiniSpaceTimeTransformer", ref.RefMiniSpaceTime003, (3, 1), (2, 4, 4, 3)),
    ("MiniSpaceTimeTransformer", ref.RefMiniSpaceTime003, (8, 2), (3, 5, 7, 8)),
    ("MultiHeadSelfAttention", ref.RefMHSA004, (16, 4), (2, 11, 16)),
    ("SpatialAttentionBlock", ref.RefSpatialBlock004, (16, 4), (2, 3, 5, 7, 16)),
    ("TemporalAttentionBlock", ref.RefTemporalBlock004, (16, 4), (2, 5, 3, 7, 16)),
    ("CausalTemporalAttention", ref.RefCausal004, (16, 4), (2, 5, 3, 4, 16)),
    ("Full3DAttention", ref.RefFull3D004, (16, 4), (1, 3, 5, 4, 16)),
    ("FactorizedSpaceTimeBlock", ref.RefFactorizedBlock004, (16, 4), (2, 4, 3, 5, 16)),
    ("FactorizedSpaceTimeBlock", ref.RefFactorizedBlock004, (8, 2, 2.0), (1, 1, 2, 2, 8)),
]
IDS = [f"{c[0]}-{c[3]}" for c in CASES]


def randomize(module):
    """Non-trivial weights everywhere (biases and norms too), so every key matters."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return module


@pytest.mark.parametrize("name, ref_cls, args, shape", CASES, ids=IDS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_reference_weights_load_strict_and_match(name, ref_cls, args, shape, mode):
    reference = randomize(ref_cls(*args))
    ours = getattr(spacetime, name)(*args)
    assert sorted(ours.state_dict()) == sorted(reference.state_dict())
    ours.load_state_dict(reference.state_dict(), strict=True)
    ours.train(mode == "train")
    reference.train(mode == "train")
    x = torch.randn(shape)
    want = reference(x)
    got = ours(x)
    assert got.shape == want.shape == x.shape
    scale = want.abs().max().clamp_min(1.0)
    torch.testing.assert_close(got / scale, want / scale, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name, ref_cls, args, shape", CASES[::2], ids=IDS[::2])
def test_our_weights_load_into_the_reference(name, ref_cls, args, shape):
    ours = getattr(spacetime, name)(*args)
    ref_cls(*args).load_state_dict(ours.state_dict(), strict=True)


# --- the texts' own checks -----------------------------------------------------------------------


def test_spatial_block_changing_frame_3_changes_only_frame_3():
    block = spacetime.SpatialAttentionBlock(32)
    x = torch.randn(1, 4, 8, 8, 32)
    x2 = x.clone()
    x2[:, 2] = torch.randn(1, 8, 8, 32)  # the text's "frame 3" is index 2
    diff = (block(x) - block(x2)).abs().amax(dim=(0, 2, 3, 4))
    assert diff[[0, 1, 3]].max() == 0 and diff[2] > 0.1


def test_temporal_block_changing_pixel_5_5_changes_only_that_pixel():
    block = spacetime.TemporalAttentionBlock(32)
    x = torch.randn(1, 4, 8, 8, 32)
    x2 = x.clone()
    x2[:, :, 5, 5] = torch.randn(1, 4, 32)
    diff = (block(x) - block(x2)).abs().amax(dim=(0, 1, 4))
    assert diff[5, 5] > 0.1
    diff[5, 5] = 0
    assert diff.max() == 0


def test_causal_changing_the_last_frame_leaves_earlier_frames():
    block = spacetime.CausalTemporalAttention(dim=32, num_heads=4)
    x = torch.randn(1, 4, 4, 4, 32)
    x2 = x.clone()
    x2[:, 3] = torch.randn(1, 4, 4, 32)
    diff = (block(x) - block(x2)).abs().amax(dim=(0, 2, 3, 4))
    assert diff[:3].max() < 1e-5 and diff[3] > 0.01


def test_factorized_000_text_shapes():
    module = spacetime.FactorizedSpatioTemporalAttention(dim=32, num_heads=8)
    x = torch.randn(2, 4, 32, 6, 6)
    assert module(x).shape == x.shape


def test_text_classes_are_front_doors_over_the_general_api():
    assert isinstance(spacetime.SpatioTemporalWindowAttention(8, 2, (2, 2, 2)), spacetime.SpaceTimeAttention)
    assert isinstance(spacetime.SpatialAttentionBlock(8).attn, spacetime.SpaceTimeAttention)
    assert isinstance(spacetime.FactorizedSpatioTemporalAttention(8, 2), spacetime.FactorizedAttention)


@pytest.mark.parametrize(
    "make, x, message",
    [
        (lambda: spacetime.SpatioTemporalWindowAttention(16, 2, (2, 4, 4)), torch.randn(1, 8, 4, 8, 8), "dim=16"),
        (lambda: spacetime.SpatioTemporalWindowAttention(16, 2, (2, 4, 4)), torch.randn(1, 16, 8, 8), "5-D"),
        (lambda: spacetime.FactorizedSpatioTemporalAttention(16, 2), torch.randn(1, 3, 8, 4, 4), "axis 2"),
        (lambda: spacetime.SpatialAttentionBlock(16), torch.randn(1, 0, 4, 4, 16), "T=0"),
        (lambda: spacetime.TemporalTransformer(16, 2), torch.randn(4, 2, 8), "D=16"),
        (lambda: spacetime.MultiHeadSelfAttention(16), torch.ones(2, 3, 16, dtype=torch.long), "floating"),
        (lambda: spacetime.MiniSpaceTimeTransformer(4, 2), torch.randn(2, 3, 4), r"\(B, T, N, D\)"),
    ],
)
def test_text_class_bad_input(make, x, message):
    with pytest.raises(ValueError, match=message):
        make()(x)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: spacetime.SpatioTemporalWindowAttention(16, 3, (2, 4, 4)), "divisible by num_heads"),
        (lambda: spacetime.SpatioTemporalWindowAttention(16, 2, (0, 4, 4)), "window_size"),
        (lambda: spacetime.SpatialAttentionBlock(10, 4), "dim=10, num_heads=4"),
    ],
)
def test_text_class_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()
