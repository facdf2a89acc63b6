"""Stage-wise learning-rate decay for ResT / ResTv2 backbones.

The authors' ResTv2 UPerNet S/B configs ask for a ``LearningRateDecayOptimizerConstructor``
with ``decay_type='stage_wise'`` and the stage depths as ``num_layers``. Their repository never
shipped it, and mmseg's constructor of that name only understands ConvNeXt, BEiT and MAE, so
those configs cannot run. :class:`ResTStageDecayOptimizerConstructor` provides the missing
piece; it depends on mmengine and the backbones only.
"""
from typing import Dict, List, Optional

from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

from ...models.rest_common import NUM_STAGES, ResTBackboneBase
from ...models.validation import is_number

#: Layer id of every parameter the stem, patch embeds and stage blocks do not own.
TOP_LAYER_ID = NUM_STAGES + 1


def stage_layer_ids(backbone: ResTBackboneBase) -> Dict[int, int]:
    """Map ``id(param)`` to a layer id: 0 for the stem, k for stage k's patch embed and blocks.

    Found through the backbone's own ``stem`` / ``embed`` / ``stage`` accessors rather than
    parameter names, so ResT (``patch_embed_k``) and ResTv2 (``patch_k``) both work.
    """
    ids = {id(p): 0 for p in backbone.stem.parameters()}
    for i in range(NUM_STAGES):
        modules = [backbone.stage(i)] + ([backbone.embed(i)] if i > 0 else [])
        for module in modules:
            ids.update((id(p), i + 1) for p in module.parameters())
    return ids


class ResTStageDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """Per-stage learning rates ``lr * decay_rate ** (5 - layer_id)`` for a ResT-family model.

    Layer ids, one per stage as upstream's ``stage_wise`` asks (not one per block):

    * 0: the stem, the first layer of the network (ConvNeXt's stage-wise rule and BEiT also
      give the input embedding the lowest id);
    * k = 1..4: stage k's blocks and its patch embed, which is the first layer of that stage;
    * 5 (``TOP_LAYER_ID``): everything else, i.e. decode/auxiliary heads, neck and the
      backbone's output norms. Decay exists to protect pre-trained layers; these are new (but
      for ResT v1's stage-4 ``norm``, the classifier's last layer), so they train at full rate.

    With ``decay_rate=0.9``: stem 0.59, stages 1-4 0.66 / 0.73 / 0.81 / 0.9, the rest 1.
    Weight decay follows the constructor upstream's configs name: none on 1-D parameters
    (norm weights, every bias), the optimizer's on the rest. Frozen parameters are left out.

    ``paramwise_cfg`` takes ``decay_rate`` and nothing else: other mmengine options would be
    silently ignored, so they are refused.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None) -> None:
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        unknown = sorted(set(self.paramwise_cfg) - {'decay_rate'})
        rate = self.paramwise_cfg.get('decay_rate')
        if unknown or not is_number(rate) or not 0 < rate <= 1:
            raise ValueError(f'{type(self).__name__}: paramwise_cfg must be '
                             f"dict(decay_rate=r) with 0 < r <= 1, got {self.paramwise_cfg}")
        if self.base_wd is None:
            raise ValueError(f'{type(self).__name__}: optimizer.weight_decay must be set')

    def add_params(self, params: List[dict], module: nn.Module, **kwargs) -> None:
        """Append one param group per (layer id, decayed or not) to ``params``."""
        backbone = getattr(module, 'backbone', None)
        if not isinstance(backbone, ResTBackboneBase):
            raise TypeError(f'{type(self).__name__} needs a model whose backbone is ResT or '
                            f'ResTV2, got {type(backbone).__name__}')
        rate = self.paramwise_cfg['decay_rate']
        layer_ids = stage_layer_ids(backbone)
        groups: Dict[tuple, dict] = {}
        for param in module.parameters():
            if not param.requires_grad:
                continue
            layer_id = layer_ids.get(id(param), TOP_LAYER_ID)
            decay = param.ndim > 1
            if (layer_id, decay) not in groups:
                scale = rate**(TOP_LAYER_ID - layer_id)
                groups[layer_id, decay] = dict(params=[], lr=self.base_lr * scale,
                                               weight_decay=self.base_wd if decay else 0.0)
            groups[layer_id, decay]['params'].append(param)
        params.extend(groups[key] for key in sorted(groups))
