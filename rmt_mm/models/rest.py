"""ResT: An Efficient Transformer for Visual Recognition (Zhang & Yang, NeurIPS 2021).

A four-stage transformer with a conv stem, stride-2 conv patch embeds (conv -> BN -> pixel
attention) and EMSA blocks. EMSA reduces keys/values with a depthwise strided conv and, in
stages with more than one head, mixes the heads' attention logits with a 1x1 conv before the
softmax and instance-normalises the attention maps after it.

Module names follow the authors' ImageNet model (and their detectron2 backbone for the output
norms), so both kinds of checkpoint load without renaming. This module depends on torch alone.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

import torch.nn.functional as F
from torch import Tensor, nn

from .layers import build_norm
from .rest_common import (
    HW,
    NUM_STAGES,
    PixelAttention,
    ResTBackboneBase,
    ResTBlock,
    SpatialReductionAttention,
    init_rest_weights,
    map_to_tokens,
)
from .validation import BOOL, OPTIONAL_POSITIVE, POSITIVE, RATE

LN_EPS = 1e-5  # every LayerNorm of v1, including sr_norm and the output norms

# Released variants. ``drop_path_rate`` is the rate the authors' detection builder uses (it
# differs from ImageNet training only for large: 0.3 there).
REST_ARCHS: Dict[str, dict] = {
    name: dict(embed_dims=dims, depths=depths, num_heads=[1, 2, 4, 8], mlp_ratios=[4, 4, 4, 4],
               sr_ratios=[8, 4, 2, 1], qkv_bias=True, qk_scale=None, apply_transform=True,
               drop_path_rate=rate)
    for name, dims, depths, rate in [
        ('lite', [64, 128, 256, 512], [2, 2, 2, 2], 0.1),
        ('small', [64, 128, 256, 512], [2, 2, 6, 2], 0.1),
        ('base', [96, 192, 384, 768], [2, 2, 6, 2], 0.2),
        ('large', [96, 192, 384, 768], [2, 2, 18, 2], 0.2),
    ]
}
# Upstream factory names (``rest_lite`` ...) are accepted too.
ARCH_ALIASES = {f'rest_{name}': name for name in REST_ARCHS}


class ResTStem(nn.Module):
    """conv3x3/s2 -> BN -> ReLU -> conv3x3/s1 -> BN -> ReLU -> conv3x3/s2 -> PA (no bias, and
    no norm after the last conv)."""

    def __init__(self, in_channels: int, dims: int, norm_cfg: dict) -> None:
        super().__init__()
        half = dims // 2
        self.conv1 = nn.Conv2d(in_channels, half, 3, 2, 1, bias=False)
        self.norm1 = build_norm(norm_cfg, half)
        self.conv2 = nn.Conv2d(half, half, 3, 1, 1, bias=False)
        self.norm2 = build_norm(norm_cfg, half)
        self.conv3 = nn.Conv2d(half, dims, 3, 2, 1, bias=False)
        self.pos = PixelAttention(dims)

    def forward(self, x: Tensor) -> Tuple[Tensor, HW]:
        x = F.relu(self.norm1(self.conv1(x)))
        x = F.relu(self.norm2(self.conv2(x)))
        return map_to_tokens(self.pos(self.conv3(x)))


class ResTPatchEmbed(nn.Module):
    """conv3x3/s2 (bias) -> BN -> PA; the map halves (rounding up)."""

    def __init__(self, in_dims: int, dims: int, norm_cfg: dict) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dims, dims, 3, 2, 1)
        self.norm = build_norm(norm_cfg, dims)
        self.pos = PixelAttention(dims)

    def forward(self, x: Tensor) -> Tuple[Tensor, HW]:
        return map_to_tokens(self.pos(self.norm(self.conv(x))))


def instance_norm_maps(attn: Tensor, eps: float = 1e-5) -> Tensor:
    """InstanceNorm2d (no affine, instance statistics in every mode) over each (N, N') map.

    PyTorch refuses a single-element map (1-pixel stage with a 1-token key set), although
    the normalisation is well defined there: ``x - mean(x)`` is exactly 0. That case is
    computed directly, keeping the graph connected, instead of crashing as upstream does.
    """
    if attn.shape[-2] * attn.shape[-1] == 1:
        return attn - attn.mean(dim=(-2, -1), keepdim=True)
    return F.instance_norm(attn, eps=eps)


class EMSA(SpatialReductionAttention):
    """v1 attention: scaled logits -> (1x1 head-mixing conv -> softmax -> InstanceNorm) when
    there is more than one head, else a plain softmax.

    The normalised attention no longer sums to one; that is the upstream design.
    """

    def __init__(self, dims: int, num_heads: int, sr_ratio: int, qkv_bias: bool,
                 qk_scale: Optional[float], apply_transform: bool) -> None:
        super().__init__(dims, num_heads, sr_ratio, LN_EPS, qkv_bias, qk_scale)
        self.apply_transform = apply_transform and num_heads > 1
        if self.apply_transform:
            self.transform_conv = nn.Conv2d(num_heads, num_heads, 1)

    def forward(self, x: Tensor, hw: HW) -> Tensor:
        q, k, v, _ = self.project_qkv(x, hw)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        if self.apply_transform:
            attn = instance_norm_maps(self.transform_conv(attn).softmax(dim=-1))
        else:
            attn = attn.softmax(dim=-1)
        return self.proj(self.merge_heads(attn @ v))


class ResT(ResTBackboneBase):
    """ResT (v1) backbone for dense prediction, reproducing the authors' detectron2 backbone.

    Output norms (key names as in the authors' detection checkpoints): the output of stage
    k = 1..3 goes through a token LayerNorm ``norm{k}`` (eps 1e-5, new, not in ImageNet
    checkpoints) and stage 4 through the pretrained classification ``norm``. As upstream, the
    stage 1..3 norms act **in-line**: the normalised tokens are both returned and fed to the
    next stage. ``out_indices`` therefore changes the trunk itself, and only the requested
    stages get a ``norm{k}``:

    * ``(0, 1, 2, 3)`` reproduces upstream ``out_features=[stage1..stage4]`` (Mask R-CNN);
    * ``(1, 2, 3)`` reproduces ``[stage2, stage3, stage4]`` (RetinaNet): stage 1 feeds stage
      2 un-normalised and ``norm1`` does not exist;
    * ``(3,)`` is the classification trunk, its output the classification ``norm``'s.

    Any input size works: every map size is read from the conv outputs (``ceil(H / stride)``
    for strides 4, 8, 16, 32) rather than computed as ``input // stride``, and a 1-pixel
    stage's single-element attention map is instance-normalised to 0 instead of raising.
    Where upstream runs (``ceil(H/4)`` and ``ceil(W/4)`` multiples of 8 and a stage-4 map
    larger than 1x1) the result is identical.

    Args:
        arch: ``'lite' | 'small' | 'base' | 'large'`` (or ``'rest_<name>'``), case-insensitive,
            or a dict of the upstream hyper-parameters: the per-stage lists ``embed_dims,
            depths, num_heads, mlp_ratios, sr_ratios`` (four entries each) and optionally
            ``qkv_bias, qk_scale, apply_transform, drop_path_rate``.
        in_channels: Input image channels.
        out_indices: Stages to return (see above).
        drop_path_rate: Stochastic depth rate; ``None`` uses the arch's upstream detection
            value (0.1 / 0.1 / 0.2 / 0.2).
        frozen_stages: Freeze the stem (0) and additionally stages ``1..frozen_stages`` with
            their patch embeds and output norms; -1 freezes nothing. Upstream's detectron2
            ``FREEZE_AT=f`` corresponds to ``frozen_stages=f-1``.
        norm_eval: Keep every BatchNorm (incl. SyncBN) in eval mode while training. Upstream
            fine-tuned BN in train mode, which ``False`` reproduces.
        norm_cfg: Norm of the stem and patch embeds (``BN``; ``SyncBN`` for multi-GPU).
        with_cp: Gradient checkpointing per block (saves memory, costs a second forward).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)`` loads upstream checkpoints.
    """

    arch_zoo = REST_ARCHS
    arch_aliases = ARCH_ALIASES
    arch_stage_keys = dict(ResTBackboneBase.arch_stage_keys, mlp_ratios=POSITIVE)
    # Upstream constructor defaults (drop_path_rate 0 as in the upstream ``ResT``).
    arch_scalar_keys = dict(qkv_bias=(True, BOOL), qk_scale=(None, OPTIONAL_POSITIVE),
                            apply_transform=(True, BOOL), drop_path_rate=(0.0, RATE))
    #: Top-level modules of the classification model that dense prediction discards (the
    #: final ``norm`` is kept: it normalises the stage-4 output).
    classification_only_modules = ('head', )
    #: Parameters that ImageNet checkpoints lack and that start from their initial values.
    dense_only_prefixes = ('norm1.', 'norm2.', 'norm3.')
    patch_embed_prefix = 'patch_embed_'
    inline_output_norms = True

    def __init__(self,
                 arch: Union[str, dict] = 'small',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 drop_path_rate: Optional[float] = None,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: Optional[dict] = None,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(arch, in_channels, out_indices, drop_path_rate, frozen_stages,
                         norm_eval, norm_cfg, with_cp, init_cfg)
        cfg = self.arch_settings
        dims = self.embed_dims

        self.stem = ResTStem(in_channels, dims[0], self.norm_cfg)
        for i in range(1, NUM_STAGES):
            setattr(self, f'patch_embed_{i + 1}',
                    ResTPatchEmbed(dims[i - 1], dims[i], self.norm_cfg))
        for i, rates in enumerate(self.stage_drop_path_rates()):
            setattr(self, f'stage{i + 1}', nn.ModuleList(
                ResTBlock(dims[i],
                          EMSA(dims[i], cfg['num_heads'][i], cfg['sr_ratios'][i],
                               cfg['qkv_bias'], cfg['qk_scale'], cfg['apply_transform']),
                          cfg['mlp_ratios'][i], rate, LN_EPS) for rate in rates))
        for i in self.out_indices:
            if i < NUM_STAGES - 1:
                setattr(self, f'norm{i + 1}', nn.LayerNorm(dims[i], eps=LN_EPS))
        self.norm = nn.LayerNorm(dims[-1], eps=LN_EPS)

        self.apply(lambda m: init_rest_weights(m, zero_conv_bias=False))
        self._freeze_stages()

    def output_norm(self, i: int) -> Optional[nn.Module]:
        if i == NUM_STAGES - 1:
            return self.norm
        return getattr(self, f'norm{i + 1}', None)


#: :meth:`ResT.resolve_arch` as a function.
resolve_arch = ResT.resolve_arch

__all__ = ['ResT', 'REST_ARCHS', 'resolve_arch', 'instance_norm_maps']
