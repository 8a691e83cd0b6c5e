"""Integer shifts of images (the motion head's candidates) and the motion head's mix of them."""

import pytest
import torch

from spacetime.ops.motion import motion_mix, shift_offsets, shifted_copies


def test_offsets_are_every_shift_dy_major():
    assert shift_offsets(0) == [(0, 0)]
    offsets = shift_offsets(1)
    assert len(offsets) == 9 and offsets[0] == (-1, -1) and offsets[1] == (0, -1) and offsets[4] == (0, 0)
    assert len(set(shift_offsets(2))) == 25


def test_each_copy_is_the_image_moved_with_its_edges_repeated():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 7, 9)
    copies = shifted_copies(images, 2)
    assert copies.shape == (2, 3, 25, 7, 9)
    for k, (dx, dy) in enumerate(shift_offsets(2)):
        for y in range(7):
            for x in range(9):  # out[y, x] = images[y - dy, x - dx], clamped to the frame
                yy, xx = min(max(y - dy, 0), 6), min(max(x - dx, 0), 8)
                assert copies[0, 1, k, y, x] == images[0, 1, yy, xx]
        # away from the edges it is a roll
        assert torch.equal(copies[..., k, 2:-2, 2:-2], torch.roll(images, (dy, dx), (-2, -1))[..., 2:-2, 2:-2])
    assert torch.equal(shifted_copies(images, 0)[..., 0, :, :], images)


def test_a_fill_value_takes_the_place_of_the_repeated_edge():
    torch.manual_seed(0)
    images = torch.randn(2, 5, 6)
    copies = shifted_copies(images, 2, fill=-1)
    edge = shifted_copies(images, 2)
    for k, (dx, dy) in enumerate(shift_offsets(2)):
        for y in range(5):
            for x in range(6):
                inside = 0 <= y - dy < 5 and 0 <= x - dx < 6
                expected = edge[:, k, y, x] if inside else torch.full((2,), -1.0)
                assert torch.equal(copies[:, k, y, x], expected)
    # a disk touching the right edge, moved one pixel left, leaves background behind, not a smear of itself
    frame = torch.full((1, 4, 4), -1.0)
    frame[0, 1:3, 2:] = 1.0
    left = shift_offsets(1).index((-1, 0))
    assert torch.equal(shifted_copies(frame, 1, fill=-1)[0, left, :, 3], torch.full((4,), -1.0))
    assert torch.equal(shifted_copies(frame, 1)[0, left, 1:3, 3], torch.ones(2))


def test_bad_arguments():
    with pytest.raises(ValueError, match="radius must be an int >= 0; got -1"):
        shifted_copies(torch.zeros(4, 4), -1)
    with pytest.raises(ValueError, match="radius must be an int >= 0; got True"):
        shift_offsets(True)
    with pytest.raises(ValueError, match=r"images must be \(\.\.\., H, W\); got shape \(4,\)"):
        shifted_copies(torch.zeros(4), 1)
    with pytest.raises(ValueError, match="fill must be None .repeat the edge. or a number; got 'black'"):
        shifted_copies(torch.zeros(4, 4), 1, fill="black")


def mix_in_pixel_order(logits, image, before, radius, fill, p):
    """The motion mix as written first (also the baseline of benchmarks/step_parts.py): everything rearranged to
    pixel order, then mixed."""
    from einops import rearrange

    shifts = (2 * radius + 1) ** 2
    logits = rearrange(logits, "b (k p1 p2) t h w -> b k t (h p1) (w p2)", p1=p, p2=p)
    image = rearrange(image, "b (c p1 p2) t h w -> b c t (h p1) (w p2)", p1=p, p2=p)
    weights = logits.softmax(1)
    moved = shifted_copies(before, radius, fill)  # (b, c, t, K, H, W)
    return (weights[:, None, :shifts].transpose(2, 3) * moved).sum(3) + weights[:, shifts:] * image


@pytest.mark.parametrize("radius, fill, patch, channels", [(2, -1.0, 4, 1), (1, None, 2, 3), (0, 0.5, 1, 2),
                                                           (3, None, 1, 1)])
def test_motion_mix_is_the_pixel_order_mix_with_its_gradients(radius, fill, patch, channels):
    gen = torch.Generator().manual_seed(radius)
    b, t, h, w, k = 2, 3, 5, 3, (2 * radius + 1) ** 2 + 1
    logits = torch.randn(b, k * patch**2, t, h, w, generator=gen, dtype=torch.float64, requires_grad=True)
    image = torch.randn(b, channels * patch**2, t, h, w, generator=gen, dtype=torch.float64, requires_grad=True)
    before = torch.randn(b, channels, t, h * patch, w * patch, generator=gen, dtype=torch.float64, requires_grad=True)
    got = motion_mix(logits, image, before, radius, fill, patch)
    want = mix_in_pixel_order(logits, image, before, radius, fill, patch)
    assert got.shape == before.shape
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    grad = torch.randn(got.shape, generator=gen, dtype=torch.float64)
    for a, b_ in zip(torch.autograd.grad(got, (logits, image, before), grad),
                     torch.autograd.grad(want, (logits, image, before), grad)):
        torch.testing.assert_close(a, b_, rtol=1e-12, atol=1e-12)


def test_motion_mix_names_the_shapes_it_needs():
    before = torch.zeros(1, 1, 2, 8, 8)
    with pytest.raises(ValueError, match=r"logits must be \(1, 416, 2, 2, 2\)"):
        motion_mix(torch.zeros(1, 26, 2, 8, 8), torch.zeros(1, 16, 2, 2, 2), before, 2, -1.0, 4)
