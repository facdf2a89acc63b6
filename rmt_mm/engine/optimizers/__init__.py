"""Optimizer wrapper constructors."""
from .layer_decay_optimizer_constructor import ResTStageDecayOptimizerConstructor

__all__ = ['ResTStageDecayOptimizerConstructor']
