"""The contract every backbone of the package fulfils, and the behaviour they share.

The checkpoint loader (:mod:`rmt_mm.checkpoint`), the converter (:mod:`rmt_mm.convert`) and
the tools read a backbone only through what :class:`DenseBackbone` declares here, so a new
family is one file that subclasses it plus one entry in :data:`rmt_mm.models.FAMILIES`.
"""
from typing import ClassVar, Dict, List, Optional, Tuple

from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..checkpoint import load_backbone_checkpoint


class DenseBackbone(BaseModule):
    """Base class of the dense-prediction backbones: the family contract, checkpoint loading
    through ``init_cfg``, ``frozen_stages`` and ``norm_eval``.

    Subclasses set ``self.arch_settings``, ``self.frozen_stages`` and ``self.norm_eval`` and
    list what a frozen stage covers in :meth:`frozen_modules`.
    """

    #: Released variants, name -> hyper-parameters; the converter infers an arch by trying each.
    arch_zoo: ClassVar[Dict[str, dict]] = {}
    #: Top-level modules of the upstream ImageNet model that dense prediction discards.
    classification_only_modules: ClassVar[Tuple[str, ...]] = ()
    #: Key prefixes of det/seg-only parameters, which ImageNet checkpoints lack; they keep
    #: their initial values when such a checkpoint is loaded.
    dense_only_prefixes: ClassVar[Tuple[str, ...]] = ()

    arch_settings: dict
    frozen_stages: int = -1
    norm_eval: bool = False

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

    def init_weights(self) -> None:
        """``init_cfg=dict(type='Pretrained')`` goes through the all-or-nothing loader, which
        also reads the authors' raw checkpoints; otherwise the upstream initialisation done at
        construction stays."""
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
            load_backbone_checkpoint(self, self.init_cfg['checkpoint'],
                                     prefix=self.init_cfg.get('prefix'))
            self._is_init = True
        else:
            super().init_weights()
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
