"""Noise schedules and the diffusers schedulers that use them.

Sampling and the forward process are diffusers' (``DDPMScheduler``, ``DDIMScheduler``,
``DPMSolverMultistepScheduler``); this module only builds them from a small description and
provides text 004's cosine schedule as explicit betas.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..checks import int_at_least, number_in, one_of, positive_int

__all__ = ["cosine_beta_schedule", "shift_betas", "predicted_x0", "SCHEDULES", "SAMPLERS", "PREDICTIONS", "make_scheduler"]

#: beta schedules: ``"cosine"`` is text 004's (clamped to [1e-4, 0.999]); the others are diffusers' names
SCHEDULES = ("cosine", "squaredcos_cap_v2", "linear", "scaled_linear")
SAMPLERS = ("ddpm", "ddim", "dpm")
#: what the network outputs: the noise, the velocity ``alpha * noise - sigma * x0``, or the clean sample itself
PREDICTIONS = ("epsilon", "v_prediction", "sample")


def cosine_beta_schedule(timesteps: int, s: float = 0.008) -> Tensor:
    """Text 004's cosine schedule: ``(timesteps,)`` betas from ``alphā(t) = cos²(((t/T) + s) / (1 + s) · π/2)``.

    ``alphā`` is normalised to 1 at ``t = 0``; each beta is ``1 - alphā(t+1) / alphā(t)``, clamped
    to ``[1e-4, 0.999]``.
    """
    positive_int("timesteps", timesteps)
    x = torch.linspace(0, timesteps, timesteps + 1)
    alphas_cumprod = torch.cos(((x / timesteps) + s) / (1 + s) * math.pi * 0.5) ** 2
    alphas_cumprod = alphas_cumprod / alphas_cumprod[0]
    betas = 1 - alphas_cumprod[1:] / alphas_cumprod[:-1]
    return torch.clamp(betas, 0.0001, 0.999)


def shift_betas(betas: Tensor, shift: float) -> Tensor:
    """Betas whose signal-to-noise ratio is ``shift**2`` times lower at every timestep.

    ``alphā / (1 - alphā)`` is divided by ``shift**2`` (log-SNR moved down by ``2 log shift``), so
    training and sampling spend more of their timesteps at high noise. The video has many
    near-copies of the same content (one disk in every frame), so its content stays recognisable at
    noise levels where a single image would be lost; the shift moves the schedule to where the
    global decisions (here: the trajectory) are made, as resolution-dependent shifts do for large
    images. ``shift=1`` returns ``betas`` unchanged.
    """
    number_in("shift", shift, 0, math.inf, low_open=True, high_open=True)
    if shift == 1:
        return betas
    alphas_cumprod = torch.cumprod(1 - betas.double(), dim=0)
    snr = alphas_cumprod / (1 - alphas_cumprod) / shift**2
    shifted = snr / (1 + snr)
    previous = torch.cat([shifted.new_ones(1), shifted[:-1]])
    return torch.clamp(1 - shifted / previous, 0.0, 0.999).float()


def make_scheduler(sampler: str = "ddim", *, num_train_timesteps: int = 1000, schedule: str = "cosine",
                   prediction_type: str = "v_prediction", shift: float = 1.0):
    """A diffusers scheduler for training (``add_noise``, ``get_velocity``) and sampling (``step``).

    Args:
        sampler: ``"ddpm"``, ``"ddim"`` or ``"dpm"`` (DPM-Solver++ multistep).
        num_train_timesteps: length of the training schedule.
        schedule: one of :data:`SCHEDULES`; ``"cosine"`` passes text 004's betas to diffusers.
        prediction_type: ``"epsilon"``, ``"v_prediction"`` or ``"sample"`` (the clean sample).
        shift: divide the schedule's signal-to-noise ratio by ``shift**2`` (:func:`shift_betas`).
    """
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    one_of("sampler", sampler, SAMPLERS)
    one_of("schedule", schedule, SCHEDULES)
    one_of("prediction_type", prediction_type, PREDICTIONS)
    int_at_least("num_train_timesteps", num_train_timesteps, 2)
    kwargs = {"num_train_timesteps": num_train_timesteps, "prediction_type": prediction_type}
    if schedule == "cosine":
        kwargs["trained_betas"] = shift_betas(cosine_beta_schedule(num_train_timesteps), shift).numpy()
    elif shift != 1:
        from diffusers import DDPMScheduler

        base = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=schedule).betas
        kwargs["trained_betas"] = shift_betas(base, shift).numpy()
    else:
        shift_betas(torch.zeros(1), shift)  # validates
        kwargs["beta_schedule"] = schedule
    if sampler == "ddpm":
        return DDPMScheduler(**kwargs, clip_sample=True)
    if sampler == "ddim":  # "trailing" spacing starts few-step sampling at the last (pure-noise) timestep
        return DDIMScheduler(**kwargs, clip_sample=True, set_alpha_to_one=True, timestep_spacing="trailing")
    return DPMSolverMultistepScheduler(**kwargs, algorithm_type="dpmsolver++", timestep_spacing="trailing",
                                       thresholding=False, lower_order_final=True)


def predicted_x0(scheduler, x_t: Tensor, t: Tensor, output: Tensor, prediction: str) -> Tensor:
    """The clean sample a model's ``output`` at ``x_t``, timesteps ``t`` (``(B,)`` or scalar) implies."""
    one_of("prediction", prediction, PREDICTIONS)
    if prediction == "sample":
        return output
    abar = scheduler.alphas_cumprod.to(x_t.device)[torch.as_tensor(t, device=x_t.device).long()]
    abar = abar.reshape(-1, *([1] * (x_t.ndim - 1))).to(x_t.dtype)
    a, s = abar.sqrt(), (1 - abar).sqrt()
    return a * x_t - s * output if prediction == "v_prediction" else (x_t - s * output) / a
