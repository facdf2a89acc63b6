"""ResTv2: Simpler, Faster and Stronger (Zhang & Yang, NeurIPS 2022).

Relative to ResT v1 the attention drops the head-mixing conv and InstanceNorm and instead adds
an upsample branch: the reduced values are brought back to full resolution by a depthwise conv
with ``s^2`` outputs per channel and PixelShuffle(s), normalised and added to the attention
output before the projection. Embeddings are conv -> pixel attention -> LayerNorm.

Module names follow the authors' ImageNet model (and their detectron2 backbone for the output
norms), so both kinds of checkpoint load without renaming. This module depends on torch alone.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

import torch.nn.functional as F
from torch import Tensor, nn

from ..compat import is_exporting
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

LN_EPS = 1e-6  # every LayerNorm of v2, including the output norms
MLP_RATIO = 4  # hard-wired upstream

# Released variants (large as in the ImageNet model; the authors' detectron2 builder has a
# different, never-trained large). ``drop_path_rate`` is the authors' detection/segmentation
# value.
RESTV2_ARCHS: Dict[str, dict] = {
    'tiny': dict(embed_dims=[96, 192, 384, 768], depths=[1, 2, 6, 2], num_heads=[1, 2, 4, 8],
                 sr_ratios=[8, 4, 2, 1], drop_path_rate=0.1),
    'small': dict(embed_dims=[96, 192, 384, 768], depths=[1, 2, 12, 2], num_heads=[1, 2, 4, 8],
                  sr_ratios=[8, 4, 2, 1], drop_path_rate=0.2),
    'base': dict(embed_dims=[96, 192, 384, 768], depths=[1, 3, 16, 3], num_heads=[1, 2, 4, 8],
                 sr_ratios=[8, 4, 2, 1], drop_path_rate=0.3),
    'large': dict(embed_dims=[128, 256, 512, 1024], depths=[2, 3, 16, 2],
                  num_heads=[2, 4, 8, 16], sr_ratios=[8, 4, 2, 1], drop_path_rate=0.5),
}
ARCH_ALIASES = {**{name[0]: name for name in RESTV2_ARCHS},
                **{f'restv2_{name}': name for name in RESTV2_ARCHS}}


class ConvPosNormEmbed(nn.Module):
    """``proj`` (any conv stack) -> PA -> tokens -> LayerNorm: the v2 stem and patch embeds."""

    def __init__(self, proj: nn.Module, dims: int) -> None:
        super().__init__()
        self.proj = proj
        self.pos = PixelAttention(dims)
        self.norm = nn.LayerNorm(dims, eps=LN_EPS)

    def forward(self, x: Tensor) -> Tuple[Tensor, HW]:
        x, hw = map_to_tokens(self.pos(self.proj(x)))
        return self.norm(x), hw


def stem_convs(in_channels: int, dims: int, norm_cfg: dict) -> nn.Sequential:
    """conv3x3/s2 -> BN -> ReLU -> conv3x3/s2 -> BN -> ReLU -> conv1x1 (indices 0..6)."""
    half = dims // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, half, 3, 2, 1, bias=False), build_norm(norm_cfg, half),
        nn.ReLU(inplace=True),
        nn.Conv2d(half, dims, 3, 2, 1, bias=False), build_norm(norm_cfg, dims),
        nn.ReLU(inplace=True),
        nn.Conv2d(dims, dims, 1))


class EMSAv2(SpatialReductionAttention):
    """v2 attention: ``proj(softmax(q k^T * scale) v + LN(upsample(v)))``.

    The softmax attention is plain, so it runs through ``scaled_dot_product_attention`` (fused
    kernels, no N x N' map kept for backward on GPU). The upsample branch reshapes v onto the
    grid the SR conv really produced, ``ceil(H/s) x ceil(W/s)`` (upstream assumes
    ``H//s x W//s`` and crashes otherwise), PixelShuffles it to ``s * ceil(H/s)`` rows and
    crops the top-left ``H x W``: output row r comes from key row ``r // s`` exactly as
    upstream, and nothing is cropped when upstream runs.
    """

    def __init__(self, dims: int, num_heads: int, sr_ratio: int) -> None:
        super().__init__(dims, num_heads, sr_ratio, LN_EPS)
        self.up = nn.Sequential(
            nn.Conv2d(dims, sr_ratio**2 * dims, 3, 1, 1, groups=dims), nn.PixelShuffle(sr_ratio))
        self.up_norm = nn.LayerNorm(dims, eps=LN_EPS)

    def forward(self, x: Tensor, hw: HW) -> Tensor:
        q, k, v, kv_hw = self.project_qkv(x, hw)
        if is_exporting():  # ONNX has no fused attention before opset 23 (mmdeploy: 11)
            out = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        out = self.merge_heads(out)
        b, heads, _, d = v.shape
        v_map = v.transpose(-1, -2).reshape(b, heads * d, kv_hw[0], kv_hw[1])
        up, _ = map_to_tokens(self.up(v_map)[..., :hw[0], :hw[1]])
        return self.proj(out + self.up_norm(up))


class ResTV2(ResTBackboneBase):
    """ResTv2 backbone for dense prediction, reproducing the authors' detectron2/mmseg backbones.

    Output norms: each requested stage's tokens are copied through a fresh LayerNorm (eps
    1e-6, over channels) named ``norm_{k}.0`` as in the authors' detectron2 checkpoints
    (their mmseg backbone names it ``norm_{k}`` without the ``.0``; the maths is the same).
    The trunk continues un-normalised, so ``out_indices`` only selects outputs; only the
    requested stages get an output norm. The classification ``norm`` is not used.

    Any input size works: map sizes are read from the conv outputs (``ceil(H / stride)`` for
    strides 4, 8, 16, 32) and the attention's upsample branch follows the real key/value grid
    (see :class:`EMSAv2`). Where upstream runs (H and W multiples of 32) the result is
    identical.

    Args:
        arch: ``'tiny' | 'small' | 'base' | 'large'`` (or ``'t'/'s'/'b'/'l'``,
            ``'restv2_<name>'``), case-insensitive, or a dict of the upstream hyper-parameters:
            the per-stage lists ``embed_dims, depths, num_heads, sr_ratios`` (four entries
            each) and optionally ``drop_path_rate``. Large is the ImageNet definition (heads
            2/4/8/16).
        in_channels: Input image channels.
        out_indices: Stages whose normalised outputs are returned.
        drop_path_rate: Stochastic depth rate; ``None`` uses the arch's upstream
            detection/segmentation value (0.1 / 0.2 / 0.3 / 0.5).
        frozen_stages: Freeze the stem (0) and additionally stages ``1..frozen_stages`` with
            their patch embeds and output norms; -1 freezes nothing.
        norm_eval: Keep every BatchNorm (incl. SyncBN; only the stem has BN) in eval mode
            while training. Upstream fine-tuned BN in train mode, which ``False`` reproduces.
        norm_cfg: Norm of the stem (``BN``; ``SyncBN`` for multi-GPU).
        with_cp: Gradient checkpointing per block (saves memory, costs a second forward).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)`` loads upstream checkpoints.
    """

    arch_zoo = RESTV2_ARCHS
    arch_aliases = ARCH_ALIASES
    family_name = 'ResTv2'
    #: Top-level modules of the classification model that dense prediction discards.
    classification_only_modules = ('norm', 'head')
    #: Parameters that ImageNet checkpoints lack and that start from their initial values.
    dense_only_prefixes = tuple(f'norm_{k}.' for k in range(1, NUM_STAGES + 1))
    patch_embed_prefix = 'patch_'
    inline_output_norms = False

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
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

        self.stem = ConvPosNormEmbed(stem_convs(in_channels, dims[0], self.norm_cfg), dims[0])
        for i in range(1, NUM_STAGES):
            setattr(self, f'patch_{i + 1}',
                    ConvPosNormEmbed(nn.Conv2d(dims[i - 1], dims[i], 3, 2, 1), dims[i]))
        for i, rates in enumerate(self.stage_drop_path_rates()):
            setattr(self, f'stage{i + 1}', nn.ModuleList(
                ResTBlock(dims[i], EMSAv2(dims[i], cfg['num_heads'][i], cfg['sr_ratios'][i]),
                          MLP_RATIO, rate, LN_EPS) for rate in rates))
        for i in self.out_indices:
            # Wrapped in a Sequential only for the ``norm_{k}.0.*`` checkpoint keys.
            setattr(self, f'norm_{i + 1}', nn.Sequential(nn.LayerNorm(dims[i], eps=LN_EPS)))

        self.apply(lambda m: init_rest_weights(m, zero_conv_bias=True))
        self._freeze_stages()

    def output_norm(self, i: int) -> Optional[nn.Module]:
        return getattr(self, f'norm_{i + 1}', None)


#: :meth:`ResTV2.resolve_arch` as a function.
resolve_arch = ResTV2.resolve_arch

__all__ = ['ResTV2', 'RESTV2_ARCHS', 'resolve_arch']
