"""Training-loop hooks: exact ``--resume`` (RNG state, the batch an epoch loop stopped at),
preemption, and a watchdog that stops the ranks when one dies."""
from .mid_epoch_resume_hook import MidEpochResumeHook
from .preemption_hook import PreemptionHook
from .rank_watchdog_hook import RankWatchdogHook
from .rng_state_hook import RNGStateHook

__all__ = ['MidEpochResumeHook', 'PreemptionHook', 'RankWatchdogHook', 'RNGStateHook']
