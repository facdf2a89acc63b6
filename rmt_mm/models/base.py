"""The contract every backbone of the package fulfils, and the behaviour they share.

The checkpoint loader (:mod:`rmt_mm.checkpoint`), the converter (:mod:`rmt_mm.convert`) and
the tools read a backbone only through what :class:`DenseBackbone` declares here, so a new
family is one file that subclasses it plus one entry in :data:`rmt_mm.models.FAMILIES`.
"""
import copy
from typing import ClassVar, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.utils.checkpoint as cp
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..checkpoints.backbone import load_backbone_checkpoint
from .validation import RATE, Rule, check_bool, check_cfg, check_indices, check_int, check_rate

DEFAULT_NORM_CFG = dict(type='BN', requires_grad=True)


def records_graph(block: nn.Module, x: Tensor) -> bool:
    """Whether autograd records ``block(x)``: grad mode is on and its input or one of its
    parameters requires grad. Only then does checkpointing save memory; a frozen block on an
    input that needs no gradient keeps nothing for backward anyway."""
    return torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for p in block.parameters()))


class DenseBackbone(nn.Module):
    """Base class of the dense-prediction backbones: the family contract, the arguments every
    family takes (validated here), the drop-path schedule, the checkpointed block loop,
    ``frozen_stages``, ``norm_eval`` and checkpoint loading through ``init_cfg``.

    A plain ``nn.Module`` that mmengine's models treat as one of theirs: an OpenMMLab model
    calls :meth:`init_weights` on every child that has one and is not ``is_init`` yet.

    A family declares its released archs and the schema of custom arch dicts (the class
    attributes below), builds its modules after ``super().__init__``, lists what a frozen stage
    covers in :meth:`frozen_modules` and calls :meth:`_freeze_stages` last.
    """

    #: Released variants, name -> hyper-parameters; the converter infers an arch by trying each.
    arch_zoo: ClassVar[Dict[str, dict]] = {}
    #: Other accepted (lower-case) names of ``arch_zoo`` entries.
    arch_aliases: ClassVar[Dict[str, str]] = {}
    #: Per-stage keys a custom arch dict must give, with what each entry must be.
    arch_stage_keys: ClassVar[Dict[str, Rule]] = {}
    #: Scalar keys a custom arch dict may give: (default, what the value must be).
    arch_scalar_keys: ClassVar[Dict[str, Tuple[object, Rule]]] = dict(
        drop_path_rate=(0.0, RATE))
    #: The number of stages every arch has, or ``None`` if the per-stage lists set it.
    arch_num_stages: ClassVar[Optional[int]] = None
    #: Name used in messages; the class name unless a family sets it.
    family_name: ClassVar[str] = ''
    #: Top-level modules of the upstream ImageNet model that dense prediction discards.
    classification_only_modules: ClassVar[Tuple[str, ...]] = ()
    #: Key prefixes of det/seg-only parameters, which ImageNet checkpoints lack; they keep
    #: their initial values when such a checkpoint is loaded.
    dense_only_prefixes: ClassVar[Tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.family_name = cls.__dict__.get('family_name') or cls.__name__

    def __init__(self, arch: Union[str, dict], in_channels: int,
                 out_indices: Union[int, Sequence[int]], drop_path_rate: Optional[float],
                 frozen_stages: int, norm_eval: bool, norm_cfg: Optional[dict], with_cp: bool,
                 init_cfg: Optional[Union[dict, List[dict]]]) -> None:
        name = self.family_name
        _check_init_cfg(f'{name} init_cfg', init_cfg)
        super().__init__()
        self.init_cfg = copy.deepcopy(init_cfg)
        self.is_init = False
        self.arch_settings = self.resolve_arch(arch)
        self.num_stages = len(self.arch_settings['depths'])
        check_int(f'{name} in_channels', in_channels, low=1)
        self.in_channels = in_channels
        self.out_indices = check_indices(f'{name} out_indices', out_indices, self.num_stages)
        if drop_path_rate is None:
            drop_path_rate = self.arch_settings['drop_path_rate']
        check_rate(f'{name} drop_path_rate', drop_path_rate)
        self.drop_path_rate = drop_path_rate
        check_int(f'{name} frozen_stages', frozen_stages, low=-1, high=self.num_stages)
        self.frozen_stages = frozen_stages
        check_bool(f'{name} norm_eval', norm_eval)
        self.norm_eval = norm_eval
        check_cfg(f'{name} norm_cfg', norm_cfg)
        self.norm_cfg = copy.deepcopy(norm_cfg or DEFAULT_NORM_CFG)
        check_bool(f'{name} with_cp', with_cp)
        self.with_cp = with_cp
        self.embed_dims = list(self.arch_settings['embed_dims'])

    # ------------------------------------------------------------------ arch

    @classmethod
    def resolve_arch(cls, arch: Union[str, dict]) -> dict:
        """A full, validated hyper-parameter dict for a released arch name (case-insensitive,
        aliases accepted) or a dict of the upstream hyper-parameters: every per-stage key, and
        any of the scalar keys (which otherwise take their defaults)."""
        family = cls.family_name
        if isinstance(arch, str):
            name = cls.arch_aliases.get(arch.lower(), arch.lower())
            if name not in cls.arch_zoo:
                raise ValueError(f'unknown {family} arch {arch!r}; expected one of '
                                 f'{sorted(cls.arch_zoo) + sorted(cls.arch_aliases)} or a dict')
            return copy.deepcopy(cls.arch_zoo[name])
        if not isinstance(arch, dict):
            raise TypeError(f'{family} arch must be a str or dict, got {arch!r}')
        stage_keys, scalar_keys = cls.arch_stage_keys, cls.arch_scalar_keys
        missing = [k for k in stage_keys if k not in arch]
        unknown = sorted(set(arch) - set(stage_keys) - set(scalar_keys))
        if missing or unknown:
            raise ValueError(f'custom {family} arch: missing keys {missing}, unknown keys '
                             f'{unknown} (allowed: {list(stage_keys) + list(scalar_keys)})')
        cfg = {key: default for key, (default, _) in scalar_keys.items()}
        cfg.update(copy.deepcopy(arch))
        where = f'custom {family} arch: '
        count = cls.arch_num_stages
        if count is None:
            lengths = {k: len(cfg[k]) for k in stage_keys if isinstance(cfg[k], (list, tuple))}
            if len(set(lengths.values())) > 1:
                raise ValueError(f'{where}per-stage lists differ in length: {lengths}')
            count = max(lengths.values(), default=0)
        for key, rule in stage_keys.items():
            values = cfg[key]
            if not (isinstance(values, (list, tuple)) and 0 < count == len(values)
                    and all(rule.accepts(v) for v in values)):
                raise ValueError(f'{where}{key} must be {count or "one or more"} {rule.plural}, '
                                 f'got {values!r}')
            cfg[key] = list(values)
        for key, (_, rule) in scalar_keys.items():
            rule.check(where + key, cfg[key])
        cls.check_arch(cfg, where)
        return cfg

    @classmethod
    def check_arch(cls, cfg: dict, where: str) -> None:
        """Family constraints across keys of a custom arch (each entry is already valid);
        raise ``ValueError`` with a message starting with ``where``."""

    def stage_drop_path_rates(self) -> List[List[float]]:
        """Linear stochastic-depth schedule over all blocks, split per stage."""
        depths = self.arch_settings['depths']
        # Explicit CPU device: the values are Python floats, also when built under a meta device.
        rates = torch.linspace(0, self.drop_path_rate, sum(depths), device='cpu').tolist()
        starts = [sum(depths[:i]) for i in range(len(depths))]
        return [rates[s:s + d] for s, d in zip(starts, depths)]

    # ------------------------------------------------------------------ contract

    def describe(self) -> str:
        """One line naming this model's arch, used in checkpoint errors."""
        return f'{type(self).__name__} {self.arch_settings}'

    @classmethod
    def describe_state_dict(cls, state_dict: Dict[str, Tensor]) -> str:
        """One line naming the arch a backbone state dict of this family was made with.
        Raises ``KeyError``/``IndexError``/``ValueError`` if its keys are not this family's."""
        raise NotImplementedError

    def hyperparam_buffers(self) -> List[str]:
        """Buffers whose values follow from hyper-parameters rather than training: a checkpoint
        with other values was trained with another arch, so loading it is refused."""
        return []

    def frozen_modules(self) -> List[Optional[nn.Module]]:
        """Modules covered by ``frozen_stages`` (``None`` entries are skipped)."""
        raise NotImplementedError

    def stage_blocks(self, i: int) -> Sequence[nn.Module]:
        """The blocks of stage ``i`` in order, the ones :meth:`run_blocks` runs and
        :meth:`stage_drop_path_rates` schedules."""
        raise NotImplementedError

    # ------------------------------------------------------------------ behaviour

    def run_blocks(self, blocks: Iterable[nn.Module], x: Tensor, *args) -> Tensor:
        """``x = block(x, *args)`` for each block; with ``with_cp`` every block that autograd
        records (:func:`records_graph`) is checkpointed: its activations are recomputed in
        backward instead of stored."""
        for block in blocks:
            if self.with_cp and records_graph(block, x):
                x = cp.checkpoint(block, x, *args, use_reentrant=False)
            else:
                x = block(x, *args)
        return x

    def init_weights(self) -> None:
        """``init_cfg=dict(type='Pretrained')`` goes through the all-or-nothing loader, which
        also reads the authors' raw checkpoints; any other ``init_cfg`` names mmengine's
        initialisers; without one, the upstream initialisation done at construction stays."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg['type'] == 'Pretrained':
            load_backbone_checkpoint(self, cfg['checkpoint'], prefix=cfg.get('prefix'))
        elif cfg:
            try:
                from mmengine.model.weight_init import initialize
            except ImportError:
                raise RuntimeError(f'{self.family_name} init_cfg {cfg!r} needs mmengine '
                                   '(without it, only Pretrained is available)') from None
            initialize(self, cfg)
        self.is_init = True
        self._freeze_stages()

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        for module in filter(None, self.frozen_modules()):
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'DenseBackbone':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):  # includes SyncBatchNorm
                    m.eval()
        return self


def _check_init_cfg(name: str, init_cfg: object) -> None:
    """``None``, a config dict or a list of them (mmengine's forms). ``Pretrained`` must come
    alone, with a checkpoint: in a list, mmengine would load it leniently, not through the
    all-or-nothing loader."""
    if isinstance(init_cfg, list):
        for cfg in init_cfg:
            check_cfg(name, cfg, optional=False)
            if cfg['type'] == 'Pretrained':
                raise ValueError(f'{name} {init_cfg!r}: give Pretrained as a dict of its own, '
                                 'not in a list')
        return
    check_cfg(name, init_cfg)
    if init_cfg is not None and init_cfg['type'] == 'Pretrained' \
            and not init_cfg.get('checkpoint'):
        raise ValueError(f'{name} {init_cfg!r}: a Pretrained init_cfg needs a checkpoint')
