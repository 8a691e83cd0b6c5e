import math

import pytest
import torch

from spacetime.diffusion.schedules import cosine_beta_schedule, make_scheduler, predicted_x0


def text_cosine(timesteps, s=0.008):
    f = [math.cos(((t / timesteps) + s) / (1 + s) * math.pi / 2) ** 2 for t in range(timesteps + 1)]
    return [min(max(1 - f[t + 1] / f[t], 1e-4), 0.999) for t in range(timesteps)]


def test_cosine_schedule_matches_the_text():
    betas = cosine_beta_schedule(500)
    assert betas.shape == (500,) and betas.dtype == torch.float32
    assert torch.allclose(betas, torch.tensor(text_cosine(500)), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm"])
def test_schedulers_use_the_text_betas(sampler):
    sched = make_scheduler(sampler, num_train_timesteps=500, schedule="cosine", prediction_type="epsilon")
    assert torch.allclose(sched.betas.float(), cosine_beta_schedule(500), atol=1e-7)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_add_noise_is_the_ddpm_forward_process(sampler):
    sched = make_scheduler(sampler, num_train_timesteps=500, schedule="cosine", prediction_type="epsilon")
    x0, noise = torch.randn(3, 1, 4, 8, 8), torch.randn(3, 1, 4, 8, 8)
    t = torch.tensor([0, 250, 499])
    a = torch.cumprod(1 - cosine_beta_schedule(500), 0)[t].view(-1, 1, 1, 1, 1)
    expected = a.sqrt() * x0 + (1 - a).sqrt() * noise
    assert torch.allclose(sched.add_noise(x0, noise, t), expected, atol=1e-5)


def test_v_prediction_target():
    sched = make_scheduler("ddpm", num_train_timesteps=100, prediction_type="v_prediction")
    x0, noise, t = torch.randn(2, 1, 2, 4, 4), torch.randn(2, 1, 2, 4, 4), torch.tensor([10, 90])
    a = sched.alphas_cumprod[t].view(-1, 1, 1, 1, 1)
    assert torch.allclose(sched.get_velocity(x0, noise, t), a.sqrt() * noise - (1 - a).sqrt() * x0, atol=1e-5)


def _noised(sched, x0, noise, t):
    a = sched.alphas_cumprod[t].view(-1, 1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def _outputs(sched, x0, noise, t):
    """What a perfect network outputs under each prediction."""
    a = sched.alphas_cumprod[t].view(-1, 1, 1, 1, 1)
    return {"epsilon": noise, "v_prediction": a.sqrt() * noise - (1 - a).sqrt() * x0, "sample": x0}


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm"])
def test_the_three_predictions_imply_the_same_clean_sample(sampler):
    torch.manual_seed(0)
    x0, noise, t = torch.rand(2, 1, 2, 4, 4) * 2 - 1, torch.randn(2, 1, 2, 4, 4), torch.tensor([10, 900])
    outputs = {}
    for prediction in ("epsilon", "v_prediction", "sample"):
        sched = make_scheduler(sampler, prediction_type=prediction)
        xt = _noised(sched, x0, noise, t)
        outputs[prediction] = _outputs(sched, x0, noise, t)[prediction]
        torch.testing.assert_close(predicted_x0(sched, xt, t, outputs[prediction], prediction), x0, atol=2e-4, rtol=0)
    # one DDIM/DDPM/DPM step from the same point agrees whichever form the network gives
    steps = []
    for prediction, out in outputs.items():
        sched = make_scheduler(sampler, prediction_type=prediction)
        sched.set_timesteps(20)
        first = sched.timesteps[0]
        tt = torch.full((2,), int(first))
        xt = _noised(sched, x0, noise, tt)
        out = _outputs(sched, x0, noise, tt)[prediction]
        steps.append(sched.step(out, first, xt, generator=torch.Generator().manual_seed(0)).prev_sample)
    torch.testing.assert_close(steps[0], steps[1], atol=1e-3, rtol=0)
    torch.testing.assert_close(steps[0], steps[2], atol=1e-3, rtol=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="sampler must be one of"):
        make_scheduler("euler")
    with pytest.raises(ValueError, match="schedule must be one of"):
        make_scheduler("ddim", schedule="sigmoid")
    with pytest.raises(ValueError, match="prediction_type must be one of"):
        make_scheduler("ddim", prediction_type="x0")
    with pytest.raises(ValueError, match="timesteps must be a positive int"):
        cosine_beta_schedule(0)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_noise_shift_divides_the_snr_everywhere(schedule):
    base = make_scheduler("ddpm", num_train_timesteps=200, schedule=schedule).alphas_cumprod.double()
    shifted = make_scheduler("ddpm", num_train_timesteps=200, schedule=schedule, shift=3.0).alphas_cumprod.double()
    ratio = (shifted / (1 - shifted)) / (base / (1 - base))
    assert torch.allclose(ratio[:-1], torch.full_like(ratio[:-1], 1 / 9), rtol=1e-3)
    assert (shifted < base).all()
    unshifted = make_scheduler("ddim", num_train_timesteps=200, schedule=schedule, shift=1.0).alphas_cumprod
    assert torch.equal(unshifted, make_scheduler("ddim", num_train_timesteps=200, schedule=schedule).alphas_cumprod)
    for bad in (0.0, -2.0, float("nan"), True):
        with pytest.raises(ValueError, match=r"shift must be a number in \(0, inf\)"):
            make_scheduler("ddim", schedule=schedule, shift=bad)
