"""The 3D convolution that runs frame-only kernels as 2D ones, and the Conv3d layer on it."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spacetime.layers.conv import Conv3d
from spacetime.ops.conv import conv3d, frames_only


@pytest.mark.parametrize("kernel, stride, padding, dilation, groups", [
    ((3, 1, 1), (1, 1, 1), (1, 0, 0), (1, 1, 1), 1),  # a (2+1)D block's temporal conv
    ((1, 1, 1), (1, 1, 1), (0, 0, 0), (1, 1, 1), 1),  # a 1x1x1 projection
    ((5, 1, 1), (2, 1, 1), (2, 0, 0), (1, 1, 1), 2),  # strided over frames, grouped
    ((3, 1, 1), (1, 1, 1), (2, 0, 0), (2, 3, 3), 1),  # dilated over frames (the pixel dilation is moot)
    ((1, 3, 3), (1, 1, 1), (0, 1, 1), (1, 1, 1), 1),  # spatial: F.conv3d as it is
    ((3, 1, 1), (1, 2, 1), (1, 0, 0), (1, 1, 1), 1),  # strided over rows: F.conv3d as it is
])
def test_conv3d_equals_torch_forward_and_backward(kernel, stride, padding, dilation, groups):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 7, 5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 4 // groups, *kernel, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=gen, dtype=torch.float64, requires_grad=True)
    got = conv3d(x, w, b, stride, padding, dilation, groups)
    want = F.conv3d(x, w, b, stride, padding, dilation, groups)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    grad = torch.randn(want.shape, generator=gen, dtype=torch.float64)
    for a, c in zip(torch.autograd.grad(got, (x, w, b), grad), torch.autograd.grad(want, (x, w, b), grad)):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)


def test_frames_only_tells_the_kernels_apart():
    assert frames_only((3, 1, 1), (1, 1, 1), (1, 0, 0))
    assert not frames_only((1, 3, 3), (1, 1, 1), (0, 1, 1))
    assert not frames_only((3, 1, 1), (1, 1, 1), (1, 1, 0))  # pads pixels
    assert not frames_only((3, 1, 1), (1, 2, 1), (1, 0, 0))  # strides over rows
    assert not frames_only((3, 1, 1), (1, 1, 1), "same")


def test_conv3d_keeps_unbatched_and_non_contiguous_inputs_right():
    w = torch.randn(3, 2, 3, 1, 1, dtype=torch.float64)
    x = torch.randn(2, 5, 4, 4, dtype=torch.float64)  # (c, t, h, w): no batch
    torch.testing.assert_close(conv3d(x, w, None, (1, 1, 1), (1, 0, 0)), F.conv3d(x, w, None, 1, (1, 0, 0)))
    x = torch.randn(2, 5, 4, 4, 2, dtype=torch.float64).permute(0, 4, 1, 2, 3)  # channels last
    torch.testing.assert_close(conv3d(x, w, None, (1, 1, 1), (1, 0, 0)), F.conv3d(x, w, None, 1, (1, 0, 0)))


@pytest.mark.parametrize("kernel, padding, mode", [((3, 1, 1), (1, 0, 0), "zeros"), ((1, 1, 1), 0, "zeros"),
                                                   ((3, 1, 1), (1, 0, 0), "circular"), ((1, 3, 3), "same", "zeros")])
def test_conv3d_layer_is_nn_conv3d_weight_for_weight(kernel, padding, mode):
    torch.manual_seed(0)
    ours = Conv3d(4, 6, kernel, padding=padding, padding_mode=mode).double()
    theirs = nn.Conv3d(4, 6, kernel, padding=padding, padding_mode=mode).double()
    theirs.load_state_dict(ours.state_dict())
    assert isinstance(ours, nn.Conv3d) and ours.state_dict().keys() == theirs.state_dict().keys()
    x = torch.randn(2, 4, 5, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-12, atol=1e-12)
