"""Diffusion: schedules and diffusers schedulers, training, sampling."""

from .schedules import PREDICTIONS, SAMPLERS, SCHEDULES, cosine_beta_schedule, make_scheduler

__all__ = ["cosine_beta_schedule", "make_scheduler", "SCHEDULES", "SAMPLERS", "PREDICTIONS"]
