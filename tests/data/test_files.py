import numpy as np
import pytest

from spacetime.data.bouncing import create_dataset
from spacetime.data.moving_mnist import MovingMNIST
from spacetime.data.video_folder import VideoFolder
from spacetime.io.video import write_gif, write_mp4


def test_moving_mnist_standard_layout(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(20, 5, 64, 64), dtype=np.uint8)  # (T, N, H, W) like mnist_test_seq.npy
    np.save(tmp_path / "mm.npy", data)
    ds = MovingMNIST(tmp_path / "mm.npy", num_frames=8)
    assert len(ds) == 5
    clip = ds[3]
    assert clip.shape == (1, 8, 64, 64)
    assert np.allclose(clip[0].numpy(), data[:8, 3] / 255.0)
    small = MovingMNIST(tmp_path / "mm.npy", num_frames=4, size=32)[3]
    assert small.shape == (1, 4, 32, 32)
    assert np.isclose(small[0, 0, 0, 0].item(), data[0, 3, :2, :2].mean() / 255.0, atol=1e-6)


def test_moving_mnist_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        MovingMNIST(tmp_path / "missing.npy")
    np.save(tmp_path / "flat.npy", np.zeros((10, 64, 64), dtype=np.uint8))
    with pytest.raises(ValueError, match="expected a 4-D TNHW array; got shape"):
        MovingMNIST(tmp_path / "flat.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="not a readable .npy"):
        MovingMNIST(tmp_path / "junk.npy")
    np.save(tmp_path / "short.npy", np.zeros((4, 2, 8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="num_frames must be in"):
        MovingMNIST(tmp_path / "short.npy", num_frames=8)


def test_video_folder_clips_and_skips_undecodable(tmp_path):
    videos = create_dataset(3, 10, 32, rng=np.random.default_rng(0)).numpy()[:, 0]
    write_gif(tmp_path / "a.gif", videos[0])
    write_mp4(tmp_path / "sub" / "b.mp4", videos[1])
    write_gif(tmp_path / "short.gif", videos[2][:3])
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 500)
    (tmp_path / "notes.txt").write_text("not a video")
    ds = VideoFolder(tmp_path, num_frames=4, size=16)
    assert len(ds) == 4  # 10 frames -> 2 clips of 4, from each of the two decodable videos
    assert len(ds.skipped) == 1 and ds.skipped[0][0].endswith("broken.mp4")
    assert ds.too_short == [str(tmp_path / "short.gif")]
    clip = ds[0]
    assert clip.shape == (1, 4, 16, 16) and 0 <= clip.min() and clip.max() <= 1
    rgb = VideoFolder(tmp_path, num_frames=5, size=8, grayscale=False)
    assert rgb[0].shape == (3, 5, 8, 8)


def test_video_folder_empty_or_missing(tmp_path):
    with pytest.raises(ValueError, match="no clip of 8 frames among 0 video file"):
        VideoFolder(tmp_path, num_frames=8)
    (tmp_path / "bad.webm").write_bytes(b"junk")
    with pytest.raises(ValueError, match="1 undecodable"):
        VideoFolder(tmp_path, num_frames=8)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        VideoFolder(tmp_path / "nope")
