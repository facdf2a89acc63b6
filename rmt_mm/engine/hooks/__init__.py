"""Training-loop hooks: exact ``--resume`` (RNG state, the batch an epoch loop stopped at) and
preemption."""
from .mid_epoch_resume_hook import MidEpochResumeHook
from .preemption_hook import PreemptionHook
from .rng_state_hook import RNGStateHook

__all__ = ['MidEpochResumeHook', 'PreemptionHook', 'RNGStateHook']
