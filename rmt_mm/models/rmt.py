"""RMT: Retentive Networks Meet Vision Transformers (Fan et al., CVPR 2024).

A four-stage hierarchical backbone whose attention (MaSA) adds an explicit spatial prior to
softmax attention: a per-head bias ``decay_h * ManhattanDistance(i, j)`` on the logits, a 1-D
rotary shift of queries and keys over the raster index, and a depthwise-conv LePE on the values.
Early stages use the *decomposed* form (attention along W, then along H) to stay linear in the
number of tokens.

Module names and nesting follow the authors' detection backbone so that their classification,
detection and segmentation checkpoints load without renaming. Internally the network is
channels-last ``(B, H, W, C)``; outputs are NCHW feature maps with strides 4, 8, 16 and 32.

This module depends on torch, mmengine and mmcv only; mmdet/mmseg registration lives in
:mod:`rmt_mm.registry`.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model.weight_init import constant_init, trunc_normal_init
from torch import Tensor, nn

from .base import DenseBackbone
from .depthwise import depthwise_conv2d
from .masa import (ATTN_IMPLS, masa_decomposed, masa_decomposed_blocked,
                   masa_decomposed_sdpa, masa_full, masa_full_blocked, masa_full_sdpa,
                   resolve_impl, rotary_complex, rotary_reference)

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
PER_STAGE_KEYS = ('embed_dims', 'depths', 'num_heads', 'init_values', 'heads_ranges',
                  'mlp_ratios', 'chunkwise_recurrents', 'layerscales')
ARCH_KEYS = PER_STAGE_KEYS + ('layer_init_values', )


def resolve_arch(arch: Union[str, dict]) -> dict:
    """Return a full, validated hyper-parameter dict for an arch name or dict.

    Names are case-insensitive and accept the short aliases ``t/s/b/l``. A dict must give every
    per-stage list (with equal lengths); it may omit ``layer_init_values`` and
    ``drop_path_rate``.
    """
    if isinstance(arch, str):
        name = ARCH_ALIASES.get(arch.lower(), arch.lower())
        if name not in RMT_ARCHS:
            raise ValueError(f'unknown RMT arch {arch!r}; expected one of '
                             f'{sorted(RMT_ARCHS) + sorted(ARCH_ALIASES)} or a dict')
        return copy.deepcopy(RMT_ARCHS[name])
    if not isinstance(arch, dict):
        raise TypeError(f'RMT arch must be a str or dict, got {type(arch).__name__}')
    missing = [k for k in PER_STAGE_KEYS if k not in arch]
    unknown = sorted(set(arch) - set(ARCH_KEYS) - {'drop_path_rate'})
    if missing or unknown:
        raise ValueError(f'custom RMT arch: missing keys {missing}, unknown keys {unknown}')
    cfg = dict(layer_init_values=1e-6, drop_path_rate=0.1)
    cfg.update(copy.deepcopy(arch))
    lengths = {k: len(cfg[k]) for k in PER_STAGE_KEYS}
    if len(set(lengths.values())) != 1:
        raise ValueError(f'custom RMT arch: per-stage lists differ in length: {lengths}')
    for i, (dims, heads) in enumerate(zip(cfg['embed_dims'], cfg['num_heads'])):
        if dims % heads or (dims // heads) % 2:
            raise ValueError(f'custom RMT arch: stage {i} has embed_dims {dims} and num_heads '
                             f'{heads}; the head dim must be an even integer (rotary pairs)')
    return cfg


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
            layers += [nn.Conv2d(cin, cout, 3, stride, 1), build_norm_layer(norm_cfg, cout)[1]]
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
        self.norm = build_norm_layer(norm_cfg, out_dims)[1]

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.reduction(x.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)


class RelPos2d(nn.Module):
    """Rotary tables and the Manhattan-distance decay bias for one stage.

    ``angle`` and ``decay`` are persistent buffers because upstream checkpoints carry them; they
    double as a hyper-parameter check when loading. The reference path rebuilds its tables every
    forward, as upstream; the fast path keeps a small per-size cache, keyed on the buffers'
    version counters so that loading new values invalidates it.
    """

    cache_size = 16

    def __init__(self, embed_dims: int, num_heads: int, init_value: float,
                 heads_range: float) -> None:
        super().__init__()
        head_dims = embed_dims // num_heads
        freqs = 1.0 / (10000**torch.linspace(0, 1, head_dims // 2))
        self.register_buffer('angle', freqs.repeat_interleave(2))
        heads = torch.arange(num_heads, dtype=torch.float)
        self.register_buffer('decay', torch.log(1 - 2**(-init_value - heads_range * heads / num_heads)))
        self._cache: 'OrderedDict[tuple, tuple]' = OrderedDict()

    def _phase_angles(self, h: int, w: int) -> Tensor:
        # 1-D raster index t = row * w + col, as upstream (not a 2-D rotary).
        t = torch.arange(h * w, device=self.angle.device, dtype=self.angle.dtype)
        return t[:, None] * self.angle[None, :]

    def rotary(self, h: int, w: int) -> Tuple[Tensor, Tensor]:
        """(h, w, 1, d) sin and cos tables, broadcasting over heads."""
        phase = self._phase_angles(h, w).reshape(h, w, 1, -1)
        return phase.sin(), phase.cos()

    def _distance(self, n: int) -> Tensor:
        idx = torch.arange(n, device=self.decay.device, dtype=self.decay.dtype)
        return (idx[:, None] - idx[None, :]).abs()

    def axis_bias(self, n: int) -> Tensor:
        """(heads, n, n) bias ``decay_h * |i - i'|`` along one axis."""
        return self._distance(n) * self.decay[:, None, None]

    def grid_bias(self, h: int, w: int) -> Tensor:
        """(heads, L, L) bias ``decay_h * (|dy| + |dx|)`` over the raster-ordered map."""
        dist = self._distance(h)[:, None, :, None] + self._distance(w)[None, :, None, :]
        return dist.reshape(h * w, h * w) * self.decay[:, None, None]

    def fast_tables(self, h: int, w: int) -> Tuple[Tensor, Tensor, Tensor]:
        """Cached ``(phase, bias_h, bias_w)``: the rotary phases and the per-axis biases (the
        fast kernels build full-attention bias rows from the latter as they go)."""
        key = (h, w, self.decay.device, self.decay._version, self.angle._version)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        angles = self._phase_angles(h, w)[:, ::2].reshape(h, w, 1, -1)
        phase = torch.polar(torch.ones_like(angles), angles)
        tables = (phase, self.axis_bias(h), self.axis_bias(w))
        self._cache[key] = tables
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return tables


class MaSA(nn.Module):
    """Manhattan Self-Attention: softmax attention with a distance-decay bias, rotary q/k and
    a 5x5 depthwise LePE on v. ``decomposed`` selects the W-then-H axial form; ``attn_impl``
    the kernel (see :mod:`.masa`)."""

    def __init__(self, embed_dims: int, num_heads: int, decomposed: bool,
                 attn_impl: str = 'auto') -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.scaling = self.head_dims**-0.5
        self.decomposed = decomposed
        self.attn_impl = attn_impl
        self.q_proj = nn.Linear(embed_dims, embed_dims)
        self.k_proj = nn.Linear(embed_dims, embed_dims)
        self.v_proj = nn.Linear(embed_dims, embed_dims)
        # The reference path keeps the upstream op (the benchmark baseline).
        self.lepe = DWConv2d(embed_dims, 5, slab_weight_grad=attn_impl != 'reference')
        self.out_proj = nn.Linear(embed_dims, embed_dims)

    def _heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.num_heads, self.head_dims))

    def forward(self, x: Tensor, relpos: RelPos2d) -> Tensor:
        b, h, w, c = x.shape
        impl = resolve_impl(self.attn_impl, x)
        if impl == 'reference':
            out, lepe = self._reference(x, relpos)
            return self.out_proj(out.reshape(b, h, w, c) + lepe)
        out, lepe = self._fast(x, relpos, impl)
        # Strided add into the (fresh) LePE map instead of copying ``out`` to (B, H, W, C).
        lepe.unflatten(-1, (self.num_heads, self.head_dims)).add_(out)
        return self.out_proj(lepe)

    def _reference(self, x: Tensor, relpos: RelPos2d) -> Tuple[Tensor, Tensor]:
        h, w = x.shape[1:3]
        v = self.v_proj(x)
        lepe = self.lepe(v)
        sin, cos = relpos.rotary(h, w)
        # Upstream scales k (not q) once, before the rotary shift.
        q = rotary_reference(self._heads(self.q_proj(x)), sin, cos)
        k = rotary_reference(self._heads(self.k_proj(x) * self.scaling), sin, cos)
        if self.decomposed:
            out = masa_decomposed(q, k, self._heads(v), relpos.axis_bias(h), relpos.axis_bias(w))
        else:
            out = masa_full(q, k, self._heads(v), relpos.grid_bias(h, w))
        return out, lepe

    def _fast(self, x: Tensor, relpos: RelPos2d, impl: str) -> Tuple[Tensor, Tensor]:
        """The rotary as one complex product (in place in inference) with the scaling folded
        into it, cached tables. The projections stay separate so that the raw q and k are
        freed once rotated: no fused q/k/v tensor lingers in the attention's working set."""
        h, w = x.shape[1:3]
        v = self.v_proj(x)
        lepe = self.lepe(v)
        phase, bias_h, bias_w = relpos.fast_tables(h, w)
        inplace = not torch.is_grad_enabled()
        # The scaling rides on q's rotation (upstream scales k: equal up to rounding).
        q = rotary_complex(self._heads(self.q_proj(x)), phase * self.scaling, inplace)
        k = rotary_complex(self._heads(self.k_proj(x)), phase, inplace)
        v = self._heads(v)
        bias_h, bias_w = bias_h.to(q.dtype), bias_w.to(q.dtype)
        if self.decomposed and impl == 'sdpa':
            out = masa_decomposed_sdpa(q, k, v, bias_h, bias_w)
        elif self.decomposed:
            # In inference the outputs overwrite v (already consumed by the LePE).
            out = masa_decomposed_blocked(q, k, v, bias_h, bias_w, overwrite_v=inplace)
        elif impl == 'sdpa':
            out = masa_full_sdpa(q, k, v, relpos.decay)
        else:
            out = masa_full_blocked(q, k, v, bias_h, bias_w)
        return out, lepe


#: Hidden-map elements per row chunk of the FFN in fast inference (4M floats = 16 MB).
FFN_CHUNK_ELEMS = 1 << 22


class FFN(nn.Module):
    """fc1 -> GELU -> (+ 3x3 depthwise conv residual) -> fc2.

    The hidden map (3-4x the block width) is the largest activation of the early stages. With
    ``fast``, the residual add is in place, and no-grad calls never hold the map whole: they run
    chunks of image rows, each with a one-row halo on either side for the 3x3 conv (at the image
    border the conv's own zero padding is the right halo), with GELU in place too.
    """

    def __init__(self, embed_dims: int, hidden_dims: int, fast: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, hidden_dims)
        self.dwconv = DWConv2d(hidden_dims, 3)
        self.fc2 = nn.Linear(hidden_dims, embed_dims)
        self.fast = fast

    def forward(self, x: Tensor) -> Tensor:
        if self.fast and not torch.is_grad_enabled():
            return self._chunked_inference(x)
        hidden = F.gelu(self.fc1(x))
        if self.fast:  # the conv does not save its output for backward
            return self.fc2(self.dwconv(hidden).add_(hidden))
        return self.fc2(hidden + self.dwconv(hidden))

    def _chunked_inference(self, x: Tensor) -> Tensor:
        b, h, w, _ = x.shape
        rows = max(1, FFN_CHUNK_ELEMS // (b * w * self.fc1.out_features))
        out = x.new_empty(b, h, w, self.fc2.out_features)
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            lo, hi = max(r0 - 1, 0), min(r1 + 1, h)
            hidden = self.fc1(x[:, lo:hi])
            torch.ops.aten.gelu_(hidden)
            mixed = self.dwconv(hidden)[:, r0 - lo:r1 - lo].add_(hidden[:, r0 - lo:r1 - lo])
            out[:, r0:r1] = self.fc2(mixed)
        return out


class RMTBlock(nn.Module):
    """CPE residual, then pre-norm MaSA and FFN residuals with optional layer scale."""

    def __init__(self, embed_dims: int, num_heads: int, mlp_ratio: float, decomposed: bool,
                 drop_path: float, layerscale: bool, layer_init_value: float,
                 attn_impl: str) -> None:
        super().__init__()
        self.pos = DWConv2d(embed_dims, 3)
        self.retention_layer_norm = nn.LayerNorm(embed_dims, eps=1e-6)
        self.retention = MaSA(embed_dims, num_heads, decomposed, attn_impl)
        self.final_layer_norm = nn.LayerNorm(embed_dims, eps=1e-6)
        # The reference path stays the upstream computation op by op (the benchmark baseline).
        self.ffn = FFN(embed_dims, int(mlp_ratio * embed_dims),
                       fast=attn_impl != 'reference')
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.layerscale = layerscale
        if layerscale:
            self.gamma_1 = nn.Parameter(torch.full((1, 1, 1, embed_dims), layer_init_value))
            self.gamma_2 = nn.Parameter(torch.full((1, 1, 1, embed_dims), layer_init_value))

    def forward(self, x: Tensor, relpos: RelPos2d) -> Tensor:
        if self.ffn.fast:
            return self._forward_inplace(x, relpos)
        x = x + self.pos(x)
        attn = self.retention(self.retention_layer_norm(x), relpos)
        ffn_in = x + self.drop_path(self.gamma_1 * attn if self.layerscale else attn)
        ffn = self.ffn(self.final_layer_norm(ffn_in))
        return ffn_in + self.drop_path(self.gamma_2 * ffn if self.layerscale else ffn)

    def _forward_inplace(self, x: Tensor, relpos: RelPos2d) -> Tensor:
        """The same sums accumulated into each branch's fresh output, which no producer saves
        for backward (autograd's version counters would catch it): fewer map-sized allocations,
        each of which page-faults fresh memory on CPU (about 9 % of an RMT-S training step)."""
        x = self.pos(x).add_(x)
        attn = self.retention(self.retention_layer_norm(x), relpos)
        x = self.drop_path(attn.mul_(self.gamma_1) if self.layerscale else attn).add_(x)
        ffn = self.ffn(self.final_layer_norm(x))
        return self.drop_path(ffn.mul_(self.gamma_2) if self.layerscale else ffn).add_(x)


class RMTStage(nn.Module):
    """Blocks sharing one :class:`RelPos2d`, then an optional :class:`PatchMerging`."""

    def __init__(self, embed_dims: int, out_dims: Optional[int], depth: int, num_heads: int,
                 init_value: float, heads_range: float, mlp_ratio: float, decomposed: bool,
                 drop_paths: Sequence[float], layerscale: bool, layer_init_value: float,
                 norm_cfg: dict, with_cp: bool, attn_impl: str) -> None:
        super().__init__()
        self.with_cp = with_cp
        self.Relpos = RelPos2d(embed_dims, num_heads, init_value, heads_range)
        self.blocks = nn.ModuleList([
            RMTBlock(embed_dims, num_heads, mlp_ratio, decomposed, drop_paths[i], layerscale,
                     layer_init_value, attn_impl) for i in range(depth)
        ])
        self.downsample = (PatchMerging(embed_dims, out_dims, norm_cfg)
                           if out_dims is not None else None)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """Return the stage output (before downsampling) and the next stage's input."""
        for blk in self.blocks:
            if self.with_cp and x.requires_grad:
                x = cp.checkpoint(blk, x, self.Relpos, use_reentrant=False)
            else:
                x = blk(x, self.Relpos)
        return x, (self.downsample(x) if self.downsample is not None else x)


class RMT(DenseBackbone):
    """RMT backbone for dense prediction.

    Args:
        arch: ``'tiny' | 'small' | 'base' | 'large'`` (or ``'t'/'s'/'b'/'l'``), or a dict of the
            upstream hyper-parameters (see :data:`RMT_ARCHS`).
        in_channels: Input image channels.
        out_indices: Stages whose (normalised) outputs are returned.
        drop_path_rate: Stochastic depth rate; ``None`` uses the arch's upstream value.
        frozen_stages: Freeze the stem and the first ``frozen_stages`` stages (with their
            patch merging and output norms): 0 freezes the stem only, -1 nothing.
        norm_eval: Keep every BatchNorm (incl. SyncBN) in eval mode while training. Upstream's
            ``norm_eval`` was a no-op, so ``False`` reproduces its fine-tuning behaviour.
        norm_cfg: Norm of the conv stem and patch merging (``BN``; ``SyncBN`` for multi-GPU).
        with_cp: Gradient checkpointing per block (saves memory, costs a second forward).
        attn_impl: MaSA kernel: ``'reference'`` (the upstream algorithm), ``'sdpa'`` (fused
            kernels), ``'blocked'`` (cache-sized blocks) or ``'auto'`` (the one measured faster
            on the device). Both fast kernels keep full-attention memory linear in tokens;
            with them, the residual adds run in place, the LePE's weight gradient is computed
            in slabs (:mod:`.depthwise`), and inference runs the FFN in row chunks.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)`` accepts upstream ImageNet,
            detection/segmentation or converted checkpoints directly.
    """

    arch_zoo = RMT_ARCHS
    #: Top-level modules of upstream classification models that dense prediction discards.
    classification_only_modules = ('proj', 'norm', 'head', 'aux_head')
    #: Parameters that ImageNet checkpoints lack and that start from their initial values.
    dense_only_prefixes = ('extra_norms.', )

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 drop_path_rate: Optional[float] = None,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 norm_cfg: Optional[dict] = None,
                 with_cp: bool = False,
                 attn_impl: str = 'auto',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if attn_impl not in ATTN_IMPLS:
            raise ValueError(f'attn_impl must be one of {ATTN_IMPLS}, got {attn_impl!r}')
        self.arch_settings = resolve_arch(arch)
        cfg = self.arch_settings
        num_stages = len(cfg['depths'])
        out_indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
        out_indices = [i + num_stages if i < 0 else i for i in out_indices]
        if not out_indices or any(not 0 <= i < num_stages for i in out_indices):
            raise ValueError(f'out_indices {out_indices} must be within [0, {num_stages})')
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'frozen_stages must be in [-1, {num_stages}], '
                             f'got {frozen_stages}')
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.embed_dims = list(cfg['embed_dims'])
        norm_cfg = norm_cfg or dict(type='BN', requires_grad=True)
        if drop_path_rate is None:
            drop_path_rate = cfg['drop_path_rate']
        self.drop_path_rate = drop_path_rate

        self.patch_embed = ConvStem(in_channels, self.embed_dims[0], norm_cfg)
        dpr = torch.linspace(0, drop_path_rate, sum(cfg['depths']), device='cpu').tolist()
        self.layers = nn.ModuleList()
        start = 0
        for i in range(num_stages):
            depth = cfg['depths'][i]
            self.layers.append(
                RMTStage(
                    embed_dims=self.embed_dims[i],
                    out_dims=self.embed_dims[i + 1] if i < num_stages - 1 else None,
                    depth=depth,
                    num_heads=cfg['num_heads'][i],
                    init_value=cfg['init_values'][i],
                    heads_range=cfg['heads_ranges'][i],
                    mlp_ratio=cfg['mlp_ratios'][i],
                    decomposed=bool(cfg['chunkwise_recurrents'][i]),
                    drop_paths=dpr[start:start + depth],
                    layerscale=bool(cfg['layerscales'][i]),
                    layer_init_value=cfg['layer_init_values'],
                    norm_cfg=norm_cfg,
                    with_cp=with_cp,
                    attn_impl=attn_impl))
            start += depth
        # Upstream always builds one output norm per stage (eps 1e-5), used or not.
        self.extra_norms = nn.ModuleList(nn.LayerNorm(d) for d in self.embed_dims)

        if not self.extra_norms[0].weight.is_meta:  # shape-only builds skip the costly init
            self.apply(self._init_module)
        self._freeze_stages()

    @staticmethod
    def _init_module(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_init(m, std=0.02, bias=0.0)
        elif isinstance(m, nn.LayerNorm):
            constant_init(m, 1.0, bias=0.0)

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

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = self.patch_embed(x)
        outs = []
        for i, layer in enumerate(self.layers):
            stage_out, x = layer(x)
            if i in self.out_indices:
                outs.append(self.extra_norms[i](stage_out).permute(0, 3, 1, 2).contiguous())
        return tuple(outs)


__all__ = ['RMT', 'RMT_ARCHS', 'resolve_arch', 'arch_name']
