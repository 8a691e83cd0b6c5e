import numpy as np
import pytest
from PIL import Image

from spacetime.data.bouncing import create_dataset
from spacetime.io.video import read_gif, read_video, to_uint8, write_gif, write_grid_png, write_mp4


@pytest.fixture(scope="module")
def clip():
    return create_dataset(1, 6, 32, rng=np.random.default_rng(0)).numpy()[0, 0]


def test_gif_is_lossless(tmp_path, clip):
    write_gif(tmp_path / "v.gif", clip)
    assert np.array_equal(read_gif(tmp_path / "v.gif"), to_uint8(clip))
    assert np.array_equal(read_video(tmp_path / "v.gif", grayscale=True), to_uint8(clip))


@pytest.mark.parametrize("shape", [(6, 32, 32), (5, 15, 21)])
def test_mp4_reads_back(tmp_path, clip, shape):
    frames = np.zeros(shape, dtype=np.float32)
    frames[:, 4:10, 4:10] = 1
    write_mp4(tmp_path / "v.mp4", frames)
    back = read_video(tmp_path / "v.mp4", grayscale=True)
    t, h, w = shape
    assert back.shape == (t, h + h % 2, w + w % 2)  # odd sizes padded to even for libx264
    assert np.abs(back[:, :h, :w].astype(int) - to_uint8(frames)).mean() < 8


def test_grid_png(tmp_path, clip):
    write_grid_png(tmp_path / "g.png", np.stack([clip, clip[::-1]]), title="t")
    with Image.open(tmp_path / "g.png") as im:
        assert im.format == "PNG" and im.size[0] > im.size[1]


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="frames must be"):
        to_uint8(np.zeros((4, 4)))
    (tmp_path / "x.mp4").write_bytes(b"junk" * 10)
    with pytest.raises(ValueError, match="x.mp4: cannot decode"):
        read_video(tmp_path / "x.mp4")
