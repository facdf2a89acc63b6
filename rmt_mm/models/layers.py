"""Building blocks the backbone families share, in plain PyTorch: stochastic depth, the norm
layers a ``norm_cfg`` names, and the upstream weight initialisations."""
from typing import Dict, Type

import torch
from torch import Tensor, nn

#: Norm layers by their mmcv names; ``norm_cfg`` may also give a class, or another name that
#: mmcv's registry knows (built through mmcv where it is installed).
NORM_LAYERS: Dict[str, Type[nn.Module]] = {
    'BN': nn.BatchNorm2d, 'BN2d': nn.BatchNorm2d, 'SyncBN': nn.SyncBatchNorm,
    'GN': nn.GroupNorm, 'LN': nn.LayerNorm, 'IN': nn.InstanceNorm2d}


def _norm_layer(norm_cfg: dict, channels: int) -> nn.Module:
    cfg = dict(norm_cfg)
    kind = cfg.pop('type')
    requires_grad = cfg.pop('requires_grad', True)
    cls = kind if isinstance(kind, type) else NORM_LAYERS.get(kind)
    if cls is None:
        try:
            from mmcv.cnn import build_norm_layer
        except ImportError:
            raise ValueError(f'unknown type {kind!r}: expected one of {sorted(NORM_LAYERS)} '
                             '(other names need mmcv, which is not installed)') from None
        layer = build_norm_layer(norm_cfg, channels)[1]
    elif cls is nn.GroupNorm:
        layer = cls(cfg.pop('num_groups'), channels, **cfg)
    else:
        layer = cls(channels, **cfg)
    for param in layer.parameters():
        param.requires_grad = requires_grad
    return layer


def build_norm(norm_cfg: dict, channels: int) -> nn.Module:
    """The norm layer ``norm_cfg`` names (mmcv's config form: ``type``, ``requires_grad`` and
    the layer's own arguments) for ``channels``; a config that cannot build one is reported as a
    bad ``norm_cfg``."""
    try:
        return _norm_layer(norm_cfg, channels)
    except (KeyError, TypeError, ValueError, AssertionError) as err:
        raise ValueError(f'norm_cfg {norm_cfg!r} does not build a norm layer of {channels} '
                         f'channels: {err}') from err


class DropPath(nn.Module):
    """Stochastic depth: while training, drop a residual branch for whole samples with
    probability ``drop_prob`` and scale the kept ones by ``1 / (1 - drop_prob)``."""

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.drop_prob == 0:
            return x
        keep = 1 - self.drop_prob
        # floor(keep + U[0, 1)) is 1 with probability keep: the draws of mmcv's and timm's
        # DropPath, so a seeded run drops the same blocks as with theirs.
        shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
        mask = (keep + torch.rand(shape, dtype=x.dtype, device=x.device)).floor_()
        return x.div(keep) * mask

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


def trunc_normal_init(module: nn.Module, std: float = 0.02) -> None:
    """Upstream's init of linear and conv weights: normal(0, ``std``) truncated to [-2, 2]."""
    nn.init.trunc_normal_(module.weight, std=std)


def zero_bias(module: nn.Module) -> None:
    if getattr(module, 'bias', None) is not None:
        nn.init.zeros_(module.bias)


def unit_init(module: nn.Module) -> None:
    """A norm layer as the identity: weight 1, bias 0 (where it has them)."""
    if getattr(module, 'weight', None) is not None:
        nn.init.ones_(module.weight)
    zero_bias(module)
