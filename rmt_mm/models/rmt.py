"""RMT: Retentive Networks Meet Vision Transformers (Fan et al., CVPR 2024).

A four-stage hierarchical backbone whose attention (MaSA) adds an explicit spatial prior to
softmax attention: a per-head bias ``decay_h * ManhattanDistance(i, j)`` on the logits, a 1-D
rotary shift of queries and keys over the raster index, and a depthwise-conv LePE on the values.
Early stages use the *decomposed* form (attention along W, then along H) to stay linear in the
number of tokens.

Module names and nesting follow the authors' detection backbone so that their classification,
detection and segmentation checkpoints load without renaming. Internally the network is
channels-last ``(B, H, W, C)``; outputs are NCHW feature maps with strides 4, 8, 16 and 32.

This module is the architecture: stem, stages, blocks, MaSA, FFN. MaSA's position tables and
kernels live in :mod:`.masa`, the CPU speed measures around them in :mod:`.speedups`. It
depends on torch alone; :mod:`rmt_mm.plugin` registers it with mmdet and mmseg.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import DenseBackbone
from .depthwise import depthwise_conv2d
from .layers import DropPath, build_norm, trunc_normal_init, unit_init, zero_bias
from .masa import ATTN_IMPLS, RelPos2d, exporting, masa
from .speedups import CpuSpeedups, ffn_in_row_chunks, layer_scale, residual_add
from .validation import BOOL, NON_NEGATIVE, POSITIVE, POSITIVE_INT, RATE, check_bool, check_choice

# Hyper-parameters of the released models (identical in the authors' ImageNet, detection and
# segmentation code). ``drop_path_rate`` is the value hard-coded in their model factories.
RMT_ARCHS: Dict[str, dict] = {
    'tiny': dict(
        embed_dims=[64, 128, 256, 512], depths=[2, 2, 8, 2], num_heads=[4, 4, 8, 16],
        init_values=[2, 2, 2, 2], heads_ranges=[4, 4, 6, 6], mlp_ratios=[3, 3, 3, 3],
        chunkwise_recurrents=[True, True, False, False], layerscales=[False] * 4,
        layer_init_values=1e-6, drop_path_rate=0.1),
    'small': dict(
        embed_dims=[64, 128, 256, 512], depths=[3, 4, 18, 4], num_heads=[4, 4, 8, 16],
        init_values=[2, 2, 2, 2], heads_ranges=[4, 4, 6, 6], mlp_ratios=[4, 4, 3, 3],
        chunkwise_recurrents=[True, True, True, False], layerscales=[False] * 4,
        layer_init_values=1e-6, drop_path_rate=0.15),
    'base': dict(
        embed_dims=[80, 160, 320, 512], depths=[4, 8, 25, 8], num_heads=[5, 5, 10, 16],
        init_values=[2, 2, 2, 2], heads_ranges=[5, 5, 6, 6], mlp_ratios=[4, 4, 3, 3],
        chunkwise_recurrents=[True, True, True, False],
        layerscales=[False, False, True, True], layer_init_values=1e-6, drop_path_rate=0.4),
    'large': dict(
        embed_dims=[112, 224, 448, 640], depths=[4, 8, 25, 8], num_heads=[7, 7, 14, 20],
        init_values=[2, 2, 2, 2], heads_ranges=[6, 6, 6, 6], mlp_ratios=[4, 4, 3, 3],
        chunkwise_recurrents=[True, True, True, False],
        layerscales=[False, False, True, True], layer_init_values=1e-6, drop_path_rate=0.5),
}
ARCH_ALIASES = {'t': 'tiny', 's': 'small', 'b': 'base', 'l': 'large',
                # the authors' code calls RMT-B "M2"/"m"
                'm': 'base', 'medium': 'base'}


def arch_name(cfg: dict) -> Optional[str]:
    """Name of the released variant whose weight shapes ``cfg`` has, if any."""
    shape_keys = ('embed_dims', 'depths', 'num_heads', 'mlp_ratios', 'layerscales')
    for name, ref in RMT_ARCHS.items():
        if all(list(cfg[k]) == list(ref[k]) for k in shape_keys):
            return name
    return None


def describe_arch(cfg: dict) -> str:
    """One-line summary used in error messages, e.g. ``RMT-S (embed_dims [64, ...], ...)``."""
    name = arch_name(cfg)
    label = f'RMT-{name[0].upper()}' if name else 'a custom RMT'
    return (f'{label} (embed_dims {list(cfg["embed_dims"])}, depths {list(cfg["depths"])}, '
            f'num_heads {list(cfg["num_heads"])})')


def arch_from_state_dict(state_dict: Dict[str, Tensor]) -> dict:
    """The shape-determining hyper-parameters of an RMT state dict (backbone keys)."""
    stages = 1 + max(int(k.split('.')[1]) for k in state_dict if k.startswith('layers.'))
    embed_dims, depths, num_heads, mlp_ratios, layerscales = [], [], [], [], []
    for i in range(stages):
        block0 = f'layers.{i}.blocks.0.'
        dims = state_dict[block0 + 'retention_layer_norm.weight'].shape[0]
        embed_dims.append(dims)
        depths.append(1 + max(int(k.split('.')[3]) for k in state_dict
                              if k.startswith(f'layers.{i}.blocks.')))
        num_heads.append(state_dict[f'layers.{i}.Relpos.decay'].shape[0])
        mlp_ratios.append(state_dict[block0 + 'ffn.fc1.weight'].shape[0] / dims)
        layerscales.append(block0 + 'gamma_1' in state_dict)
    return dict(embed_dims=embed_dims, depths=depths, num_heads=num_heads,
                mlp_ratios=mlp_ratios, layerscales=layerscales)


class DWConv2d(nn.Module):
    """Depthwise conv applied to a channels-last map (keeps the upstream ``.conv`` key).
    ``slab_weight_grad`` routes it through :func:`.depthwise.depthwise_conv2d`, whose weight
    gradient avoids oneDNN's slow path for kernels wider than 3."""

    def __init__(self, channels: int, kernel_size: int, slab_weight_grad: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size, 1, kernel_size // 2,
                              groups=channels)
        self.slab_weight_grad = slab_weight_grad

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 3, 1, 2)
        if self.slab_weight_grad:
            x = depthwise_conv2d(x, self.conv.weight, self.conv.bias)
        else:
            x = self.conv(x)
        return x.permute(0, 2, 3, 1)


class ConvStem(nn.Module):
    """Four 3x3 convs (strides 2, 1, 2, 1) with norms; GELU after all but the last."""

    def __init__(self, in_channels: int, embed_dims: int, norm_cfg: dict) -> None:
        super().__init__()
        half = embed_dims // 2
        layers: List[nn.Module] = []
        plan = [(in_channels, half, 2), (half, half, 1), (half, embed_dims, 2),
                (embed_dims, embed_dims, 1)]
        for i, (cin, cout, stride) in enumerate(plan):
            layers += [nn.Conv2d(cin, cout, 3, stride, 1), build_norm(norm_cfg, cout)]
            if i < len(plan) - 1:
                layers.append(nn.GELU())
        self.proj = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class PatchMerging(nn.Module):
    """3x3 stride-2 conv + norm between stages (channels-last in and out)."""

    def __init__(self, in_dims: int, out_dims: int, norm_cfg: dict) -> None:
        super().__init__()
        self.reduction = nn.Conv2d(in_dims, out_dims, 3, 2, 1)
        self.norm = build_norm(norm_cfg, out_dims)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.reduction(x.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)


class MaSA(nn.Module):
    """Manhattan Self-Attention (:func:`.masa.masa`) plus a 5x5 depthwise LePE on v.
    ``decomposed`` selects the W-then-H axial form, ``attn_impl`` the kernel."""

    def __init__(self, embed_dims: int, num_heads: int, decomposed: bool, attn_impl: str,
                 speedups: CpuSpeedups) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.scaling = self.head_dims**-0.5
        self.decomposed = decomposed
        self.attn_impl = attn_impl
        self.inplace_residuals = speedups.inplace_residuals
        self.q_proj = nn.Linear(embed_dims, embed_dims)
        self.k_proj = nn.Linear(embed_dims, embed_dims)
        self.v_proj = nn.Linear(embed_dims, embed_dims)
        self.lepe = DWConv2d(embed_dims, 5, slab_weight_grad=speedups.slab_weight_grad)
        self.out_proj = nn.Linear(embed_dims, embed_dims)

    def _heads(self, x: Tensor) -> Tensor:
        # Not ``unflatten``: the TorchScript exporter has no opset-11 form of it, and its
        # opset-13 form trips onnxruntime's Reshape fusion.
        return x.view(*x.shape[:-1], self.num_heads, self.head_dims)

    def forward(self, x: Tensor, relpos: RelPos2d) -> Tensor:
        v = self.v_proj(x)
        lepe = self.lepe(v)
        # Projections made in the call: the kernel owns them (and may reuse their memory).
        out = masa(self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(v),
                   relpos, self.decomposed, self.attn_impl, self.scaling)
        if self.inplace_residuals and not exporting():
            # Strided add into the LePE map instead of copying ``out`` to (B, H, W, C).
            self._heads(lepe).add_(out)
            return self.out_proj(lepe)
        return self.out_proj(out.flatten(-2) + lepe)


class FFN(nn.Module):
    """fc1 -> GELU -> (+ 3x3 depthwise conv residual) -> fc2."""

    def __init__(self, embed_dims: int, hidden_dims: int, speedups: CpuSpeedups) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, hidden_dims)
        self.dwconv = DWConv2d(hidden_dims, 3)
        self.fc2 = nn.Linear(hidden_dims, embed_dims)
        self.row_chunks = speedups.ffn_row_chunks
        self.inplace_residuals = speedups.inplace_residuals

    def forward(self, x: Tensor) -> Tensor:
        if self.row_chunks and not torch.is_grad_enabled() and not exporting():
            return ffn_in_row_chunks(self.fc1, self.dwconv, self.fc2, x)
        hidden = F.gelu(self.fc1(x))
        inplace = self.inplace_residuals and not exporting()
        return self.fc2(residual_add(hidden, self.dwconv(hidden), inplace))


class RMTBlock(nn.Module):
    """CPE residual, then pre-norm MaSA and FFN residuals with optional layer scale."""

    def __init__(self, embed_dims: int, num_heads: int, mlp_ratio: float, decomposed: bool,
                 drop_path: float, layerscale: bool, layer_init_value: float, attn_impl: str,
                 speedups: CpuSpeedups) -> None:
        super().__init__()
        self.pos = DWConv2d(embed_dims, 3)
        self.retention_layer_norm = nn.LayerNorm(embed_dims, eps=1e-6)
        self.retention = MaSA(embed_dims, num_heads, decomposed, attn_impl, speedups)
        self.final_layer_norm = nn.LayerNorm(embed_dims, eps=1e-6)
        self.ffn = FFN(embed_dims, int(mlp_ratio * embed_dims), speedups)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.inplace_residuals = speedups.inplace_residuals
        self.layerscale = layerscale
        if layerscale:
            init = torch.full((1, 1, 1, embed_dims), float(layer_init_value))
            self.gamma_1 = nn.Parameter(init.clone())
            self.gamma_2 = nn.Parameter(init)

    def forward(self, x: Tensor, relpos: RelPos2d) -> Tensor:
        inplace = self.inplace_residuals and not exporting()
        gamma_1, gamma_2 = (self.gamma_1, self.gamma_2) if self.layerscale else (None, None)
        x = residual_add(x, self.pos(x), inplace)
        attn = self.retention(self.retention_layer_norm(x), relpos)
        x = residual_add(x, self.drop_path(layer_scale(attn, gamma_1, inplace)), inplace)
        ffn = self.ffn(self.final_layer_norm(x))
        return residual_add(x, self.drop_path(layer_scale(ffn, gamma_2, inplace)), inplace)


class RMTStage(nn.Module):
    """Blocks sharing one :class:`.masa.RelPos2d`, then an optional :class:`PatchMerging`
    (the backbone runs them: :meth:`RMT.forward`)."""

    def __init__(self, embed_dims: int, out_dims: Optional[int], num_heads: int,
                 init_value: float, heads_range: float, mlp_ratio: float, decomposed: bool,
                 drop_paths: Sequence[float], layerscale: bool, layer_init_value: float,
                 norm_cfg: dict, attn_impl: str, speedups: CpuSpeedups, stride: int) -> None:
        super().__init__()
        self.Relpos = RelPos2d(embed_dims, num_heads, init_value, heads_range, stride)
        self.blocks = nn.ModuleList(
            RMTBlock(embed_dims, num_heads, mlp_ratio, decomposed, rate, layerscale,
                     layer_init_value, attn_impl, speedups) for rate in drop_paths)
        self.downsample = (PatchMerging(embed_dims, out_dims, norm_cfg)
                           if out_dims is not None else None)


class RMT(DenseBackbone):
    """RMT backbone for dense prediction.

    Args:
        arch: ``'tiny' | 'small' | 'base' | 'large'`` (or ``'t'/'s'/'b'/'l'``), or a dict of the
            upstream hyper-parameters (see :data:`RMT_ARCHS`).
        in_channels: Input image channels.
        out_indices: Stages whose (normalised) outputs are returned.
        drop_path_rate: Stochastic depth rate in [0, 1); ``None`` uses the arch's upstream
            value.
        frozen_stages: Freeze the stem and the first ``frozen_stages`` stages (with their
            patch merging and output norms): 0 freezes the stem only, -1 nothing.
        norm_eval: Keep every BatchNorm (incl. SyncBN) in eval mode while training. Upstream's
            ``norm_eval`` was a no-op, so ``False`` reproduces its fine-tuning behaviour.
        norm_cfg: Norm of the conv stem and patch merging (``BN``; ``SyncBN`` for multi-GPU).
        with_cp: Gradient checkpointing per block (saves memory, costs a second forward).
        attn_impl: MaSA kernel: ``'reference'`` (the upstream algorithm), ``'sdpa'`` (fused
            kernels), ``'blocked'`` (cache-sized blocks), ``'flex'`` (compiled FlexAttention,
            torch >= 2.5, CPU inference only) or ``'auto'`` (``blocked`` on CPU, ``sdpa``
            elsewhere). The fast kernels keep full-attention memory linear in tokens (see
            :mod:`.masa`); under ONNX export every kernel runs MaSA's export form.
        cpu_speedups: The speed measures outside the attention kernel (:mod:`.speedups`):
            in-place residual adds, the LePE's weight gradient in slabs (CPU only) and, in
            inference, the FFN in row chunks. ``None`` turns them on with every kernel but
            ``'reference'``, which stays the upstream computation op by op.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)`` accepts upstream ImageNet,
            detection/segmentation or converted checkpoints directly.
    """

    arch_zoo = RMT_ARCHS
    arch_aliases = ARCH_ALIASES
    arch_stage_keys = dict(embed_dims=POSITIVE_INT, depths=POSITIVE_INT,
                           num_heads=POSITIVE_INT, init_values=POSITIVE,
                           heads_ranges=NON_NEGATIVE, mlp_ratios=POSITIVE,
                           chunkwise_recurrents=BOOL, layerscales=BOOL)
    arch_scalar_keys = dict(layer_init_values=(1e-6, POSITIVE), drop_path_rate=(0.1, RATE))
    #: Top-level modules of upstream classification models that dense prediction discards.
    classification_only_modules = ('proj', 'norm', 'head', 'aux_head')
    #: Parameters that ImageNet checkpoints lack and that start from their initial values.
    dense_only_prefixes = ('extra_norms.', )

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 drop_path_rate: Optional[float] = None,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: Optional[dict] = None,
                 with_cp: bool = False,
                 attn_impl: str = 'auto',
                 cpu_speedups: Optional[bool] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(arch, in_channels, out_indices, drop_path_rate, frozen_stages,
                         norm_eval, norm_cfg, with_cp, init_cfg)
        check_choice('RMT attn_impl', attn_impl, ATTN_IMPLS)
        if cpu_speedups is not None:
            check_bool('RMT cpu_speedups', cpu_speedups)
        self.attn_impl = attn_impl
        speedups = CpuSpeedups.resolve(cpu_speedups, attn_impl)
        cfg = self.arch_settings
        dims = self.embed_dims

        self.patch_embed = ConvStem(in_channels, dims[0], self.norm_cfg)
        self.layers = nn.ModuleList(
            RMTStage(
                embed_dims=dims[i],
                out_dims=dims[i + 1] if i < self.num_stages - 1 else None,
                num_heads=cfg['num_heads'][i],
                init_value=cfg['init_values'][i],
                heads_range=cfg['heads_ranges'][i],
                mlp_ratio=cfg['mlp_ratios'][i],
                decomposed=cfg['chunkwise_recurrents'][i],
                drop_paths=rates,
                layerscale=cfg['layerscales'][i],
                layer_init_value=cfg['layer_init_values'],
                norm_cfg=self.norm_cfg,
                attn_impl=attn_impl,
                speedups=speedups,
                stride=4 * 2**i) for i, rates in enumerate(self.stage_drop_path_rates()))
        # Upstream always builds one output norm per stage (eps 1e-5), used or not.
        self.extra_norms = nn.ModuleList(nn.LayerNorm(d) for d in dims)

        if not self.extra_norms[0].weight.is_meta:  # shape-only builds skip the costly init
            self.apply(self._init_module)
        self._freeze_stages()

    @classmethod
    def check_arch(cls, cfg: dict, where: str) -> None:
        for i, (dims, heads) in enumerate(zip(cfg['embed_dims'], cfg['num_heads'])):
            if dims % heads or (dims // heads) % 2:
                raise ValueError(f'{where}stage {i} has embed_dims {dims} and num_heads '
                                 f'{heads}; the head dim must be an even integer (rotary pairs)')

    @staticmethod
    def _init_module(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_init(m)
            zero_bias(m)
        elif isinstance(m, nn.LayerNorm):
            unit_init(m)

    def describe(self) -> str:
        return describe_arch(self.arch_settings)

    @classmethod
    def describe_state_dict(cls, state_dict: Dict[str, Tensor]) -> str:
        return describe_arch(arch_from_state_dict(state_dict))

    def hyperparam_buffers(self) -> List[str]:
        """Buffers fixed by ``init_values``/``heads_ranges``/head dims: a checkpoint whose values
        differ was trained with another arch."""
        return [f'layers.{i}.Relpos.{name}' for i in range(len(self.layers))
                for name in ('decay', 'angle')]

    def frozen_modules(self) -> List[nn.Module]:
        modules: List[nn.Module] = [self.patch_embed]
        for i in range(self.frozen_stages):
            modules += [self.layers[i], self.extra_norms[i]]
        return modules

    def stage_blocks(self, i: int) -> nn.ModuleList:
        return self.layers[i].blocks

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = self.patch_embed(x)
        outs = []
        for i, stage in enumerate(self.layers):
            x = self.run_blocks(self.stage_blocks(i), x, stage.Relpos)
            if i in self.out_indices:
                outs.append(self.extra_norms[i](x).permute(0, 3, 1, 2).contiguous())
            if stage.downsample is not None:
                x = stage.downsample(x)
        return tuple(outs)


#: :meth:`RMT.resolve_arch` as a function.
resolve_arch = RMT.resolve_arch

__all__ = ['RMT', 'RMT_ARCHS', 'resolve_arch', 'arch_name']
