"""Training-loop hooks: exact ``--resume`` (RNG state, the batch an epoch loop stopped at)."""
from .mid_epoch_resume_hook import MidEpochResumeHook
from .rng_state_hook import RNGStateHook

__all__ = ['MidEpochResumeHook', 'RNGStateHook']
