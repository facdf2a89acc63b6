"""Training hooks shared by detection and segmentation runs."""
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Store torch's random generator states in checkpoints and restore them on ``--resume``.

    mmengine restores weights, optimizer, schedulers, iteration and the sampler's seed, but not
    torch's generator, which drop path and the RPN/RoI samplers draw from: without this hook a
    resumed run continues with different random numbers than an uninterrupted one. numpy's
    generator needs no saving, since the data pipeline is its only user and mmengine replays the
    pipeline for the skipped batches.
    """

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_state'] = dict(torch=torch.get_rng_state())
        if torch.cuda.is_available():
            checkpoint['rng_state']['cuda'] = torch.cuda.get_rng_state_all()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state: Optional[dict] = checkpoint.get('rng_state')
        if state is None or not runner._resume:  # `load_from` alone starts a fresh run
            return
        torch.set_rng_state(state['torch'])
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])
