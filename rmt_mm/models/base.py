"""Behaviour every backbone of the package shares as an mmdet/mmseg backbone."""
from typing import List, Optional

from mmengine.model import BaseModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class DenseBackbone(BaseModule):
    """Checkpoint loading through ``init_cfg``, ``frozen_stages`` and ``norm_eval``.

    Subclasses set ``self.frozen_stages`` and ``self.norm_eval`` and list what a frozen stage
    covers in :meth:`frozen_modules`.
    """

    frozen_stages: int = -1
    norm_eval: bool = False

    def frozen_modules(self) -> List[Optional[nn.Module]]:
        """Modules covered by ``frozen_stages`` (``None`` entries are skipped)."""
        raise NotImplementedError

    def init_weights(self) -> None:
        """``init_cfg=dict(type='Pretrained')`` goes through the all-or-nothing loader, which
        also reads the authors' raw checkpoints; otherwise the upstream initialisation done at
        construction stays."""
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
            from ..checkpoint import load_backbone_checkpoint
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
