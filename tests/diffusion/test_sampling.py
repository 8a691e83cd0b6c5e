import numpy as np
import pytest
import torch

from spacetime.diffusion.sample import sample_videos, save_samples
from spacetime.io.video import read_gif, read_video
from spacetime.models.video_unet import VideoUNet


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = VideoUNet.from_preset("tiny")
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return m.eval()


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm"])
def test_sampling_is_deterministic_under_a_seed(model, sampler):
    kw = dict(sampler=sampler, steps=4, timesteps=100, progress=False)
    a = sample_videos(model, (1, 3, 8, 8), 3, seed=1, batch_size=2, **kw)
    b = sample_videos(model, (1, 3, 8, 8), 3, seed=1, batch_size=2, **kw)
    c = sample_videos(model, (1, 3, 8, 8), 3, seed=2, batch_size=2, **kw)
    assert a.shape == (3, 1, 3, 8, 8) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_save_samples_writes_files_that_read_back(tmp_path):
    videos = np.random.default_rng(0).random((3, 1, 4, 16, 16)).astype(np.float32).round()
    paths = save_samples(videos, tmp_path, mp4_scale=2)
    assert np.array_equal(np.load(paths["npy"]), videos)
    assert len(paths["gif"]) == len(paths["mp4"]) == 3
    gif = read_gif(paths["gif"][1])
    assert np.array_equal(gif, (videos[1, 0] * 255).astype(np.uint8))
    assert read_video(paths["mp4"][2], grayscale=True).shape == (4, 32, 32)
    assert paths["grid"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="videos must be"):
        save_samples(videos[:, 0], tmp_path)


def _perturbed(model, seed):
    other = VideoUNet(model.config)
    other.load_state_dict(model.state_dict())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return other.eval()


def test_autoguidance_steers_away_from_the_guide(model):
    kw = dict(sampler="ddpm", steps=4, timesteps=100, seed=3, progress=False)
    plain = sample_videos(model, (1, 3, 8, 8), 2, **kw)
    assert torch.equal(plain, sample_videos(model, (1, 3, 8, 8), 2, guide=_perturbed(model, 0), guidance=0.0, **kw))
    # a guide equal to the model has no difference to steer along: the same videos, bit for bit
    assert torch.equal(plain, sample_videos(model, (1, 3, 8, 8), 2, guide=model,
                                            guidance=2.0, **kw))
    weak = _perturbed(model, 1)
    guided = sample_videos(model, (1, 3, 8, 8), 2, guide=weak, guidance=1.0, **kw)
    assert not torch.allclose(guided, plain)
    # each step's prediction is out + w * (out - guide_out)
    from spacetime.diffusion.sample import _guided

    x, t = torch.randn(2, 1, 3, 8, 8), torch.tensor([5, 50])
    with torch.no_grad():
        expected = model(x, t) + 1.5 * (model(x, t) - weak(x, t))
        assert torch.allclose(_guided(model, weak, 1.5)(x, t), expected, atol=1e-6)


def test_autoguidance_bad_input_names_the_argument(model):
    kw = dict(steps=2, timesteps=100, progress=False)
    with pytest.raises(ValueError, match="guidance must be a number >= 0 .* got -1"):
        sample_videos(model, (1, 3, 8, 8), 1, guide=model, guidance=-1, **kw)
    with pytest.raises(ValueError, match="guidance=1.0 needs guide"):
        sample_videos(model, (1, 3, 8, 8), 1, guidance=1.0, **kw)
    other = VideoUNet.from_preset("tiny", channels=[16, 48])
    with pytest.raises(ValueError, match="guide must be the same architecture as the model"):
        sample_videos(model, (1, 3, 8, 8), 1, guide=other, guidance=1.0, **kw)
