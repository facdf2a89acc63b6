"""Pieces shared by ResT (v1) and ResTv2: the maths that is identical in both versions.

Both versions are four-stage token transformers whose stages start with a conv embedding
(stem or stride-2 patch embed, each ending in pixel attention) and whose blocks use pre-norm
efficient multi-head self-attention (EMSA): queries come from every token, keys and values from
a depthwise strided-conv summary of the map. The versions differ in the embeddings, in what
happens to the attention logits (v1) or values (v2), in LayerNorm eps and in how the
dense-prediction outputs are normalised; those parts live in :mod:`.rest` and :mod:`.restv2`.

Module names follow the upstream classification models so their checkpoints load unchanged.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from .base import DenseBackbone
from .layers import DropPath, trunc_normal_init, unit_init, zero_bias
from .validation import POSITIVE_INT

HW = Tuple[int, int]
NUM_STAGES = 4  # upstream hard-wires four stages (stem + patch embeds 2..4)


def map_to_tokens(x: Tensor) -> Tuple[Tensor, HW]:
    """(B, C, H, W) -> (B, H*W, C), with H and W read from the tensor itself.

    Reading the size from the actual conv output (instead of computing ``input // stride`` as
    upstream does) is what makes every input size work: a stride-2 conv with padding 1 gives
    ``ceil(H / 2)``, which equals upstream's ``H // 2`` exactly when upstream does not crash.
    """
    h, w = x.shape[-2:]
    return x.flatten(2).transpose(1, 2), (h, w)


def tokens_to_map(x: Tensor, hw: HW) -> Tensor:
    """(B, H*W, C) -> (B, C, H, W) (a view; call ``.contiguous()`` where layout matters)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], hw[0], hw[1])


class PixelAttention(nn.Module):
    """PA, the only position encoding in ResT: ``x * sigmoid(DWConv3x3(x))``."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.pa_conv = nn.Conv2d(dims, dims, 3, 1, 1, groups=dims)

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.pa_conv(x))


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 (upstream v1's dropouts have p=0 and are omitted)."""

    def __init__(self, dims: int, hidden_dims: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dims, hidden_dims)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dims, dims)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SpatialReductionAttention(nn.Module):
    """The part of EMSA common to both versions: projections and the key/value reduction.

    For ``sr_ratio`` s > 1 the keys/values are computed from a depthwise conv (kernel s+1,
    stride s, padding s//2) of the map followed by LayerNorm, so there are ``ceil(H/s) *
    ceil(W/s)`` of them; for s = 1 they come from all tokens. Subclasses define ``forward``.
    """

    def __init__(self, dims: int, num_heads: int, sr_ratio: int, ln_eps: float,
                 qkv_bias: bool = True, qk_scale: Optional[float] = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dims = dims // num_heads
        self.scale = qk_scale or self.head_dims**-0.5
        self.sr_ratio = sr_ratio
        self.q = nn.Linear(dims, dims, bias=qkv_bias)
        self.kv = nn.Linear(dims, 2 * dims, bias=qkv_bias)
        self.proj = nn.Linear(dims, dims)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dims, dims, sr_ratio + 1, sr_ratio, sr_ratio // 2, groups=dims)
            self.sr_norm = nn.LayerNorm(dims, eps=ln_eps)

    def project_qkv(self, x: Tensor, hw: HW) -> Tuple[Tensor, Tensor, Tensor, HW]:
        """Return q (B, h, N, d), k and v (B, h, N', d) and the (h', w') grid of k/v."""
        b, n, c = x.shape
        q = self.q(x).reshape(b, n, self.num_heads, self.head_dims).transpose(1, 2)
        kv_hw = hw
        if self.sr_ratio > 1:
            x, kv_hw = map_to_tokens(self.sr(tokens_to_map(x, hw)))
            x = self.sr_norm(x)
        # First C channels of ``kv`` are K, the next C are V; head-major inside each half.
        kv = self.kv(x).reshape(b, -1, 2, self.num_heads, self.head_dims).permute(2, 0, 3, 1, 4)
        return q, kv[0], kv[1], kv_hw

    @staticmethod
    def merge_heads(x: Tensor) -> Tensor:
        """(B, h, N, d) -> (B, N, h*d) with head-major channels."""
        b, heads, n, d = x.shape
        return x.transpose(1, 2).reshape(b, n, heads * d)


class ResTBlock(nn.Module):
    """Pre-norm transformer block shared by v1 and v2; the attention module is injected.

    ``x + DropPath(attn(LN1(x)))`` then ``x + DropPath(MLP(LN2(x)))``; one drop rate for both
    branches, as upstream.
    """

    def __init__(self, dims: int, attn: nn.Module, mlp_ratio: float, drop_path: float,
                 ln_eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dims, eps=ln_eps)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dims, eps=ln_eps)
        self.mlp = Mlp(dims, int(dims * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor, hw: HW) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def init_rest_weights(m: nn.Module, zero_conv_bias: bool) -> None:
    """Upstream init: trunc-normal(0.02) conv/linear weights, zero linear biases, unit norms.

    v1 leaves conv biases at PyTorch's default while v2 zeroes them, hence the flag.
    """
    if isinstance(m, nn.Linear):
        trunc_normal_init(m)
        zero_bias(m)
    elif isinstance(m, nn.Conv2d):
        trunc_normal_init(m)
        if zero_conv_bias:
            zero_bias(m)
    elif isinstance(m, (nn.LayerNorm, _BatchNorm)):
        unit_init(m)


def describe_rest_arch(cls: type, cfg: dict) -> str:
    """One-line summary for error messages, e.g. ``ResT-small (embed_dims [...], ...)``."""
    name = next((n for n, ref in cls.arch_zoo.items()
                 if ref['embed_dims'] == list(cfg['embed_dims'])
                 and ref['depths'] == list(cfg['depths'])), None)
    label = f'{cls.__name__}-{name}' if name else f'a custom {cls.__name__}'
    return f'{label} (embed_dims {list(cfg["embed_dims"])}, depths {list(cfg["depths"])})'


class ResTBackboneBase(DenseBackbone):
    """Stage loop, stage layout and arch constraints shared by both versions.

    Subclasses build ``stem``, ``<patch_embed_prefix>{2,3,4}``, ``stage{1..4}`` (ModuleLists of
    :class:`ResTBlock`) and the output norms, and say whether the output norms act in-line
    (v1: the next stage consumes the normalised tokens) or on copies (v2).
    """

    patch_embed_prefix: str = 'patch_embed_'
    inline_output_norms: bool = False
    arch_num_stages = NUM_STAGES
    #: Per-stage keys both versions take (v1 adds ``mlp_ratios``); ``drop_path_rate``
    #: defaults to the upstream constructors' 0.
    arch_stage_keys = dict(embed_dims=POSITIVE_INT, depths=POSITIVE_INT,
                           num_heads=POSITIVE_INT, sr_ratios=POSITIVE_INT)

    @classmethod
    def check_arch(cls, cfg: dict, where: str) -> None:
        for i, (dims, heads) in enumerate(zip(cfg['embed_dims'], cfg['num_heads'])):
            if dims % heads:
                raise ValueError(f'{where}stage {i} embed_dims {dims} is not divisible by '
                                 f'num_heads {heads}')
        if cfg['embed_dims'][0] % 2:
            raise ValueError(f'{where}embed_dims[0] must be even (the stem widens to it from '
                             f'embed_dims[0] // 2), got {cfg["embed_dims"][0]}')

    def embed(self, i: int) -> nn.Module:
        return self.stem if i == 0 else getattr(self, f'{self.patch_embed_prefix}{i + 1}')

    def stage(self, i: int) -> nn.ModuleList:
        return getattr(self, f'stage{i + 1}')

    def stage_blocks(self, i: int) -> nn.ModuleList:
        return self.stage(i)

    def output_norm(self, i: int) -> Optional[nn.Module]:
        """The norm applied to stage ``i``'s output, if this model has one."""
        raise NotImplementedError

    def describe(self) -> str:
        return describe_rest_arch(type(self), self.arch_settings)

    @classmethod
    def describe_state_dict(cls, state_dict: Dict[str, Tensor]) -> str:
        """Summary of a ResT state dict (embed dims and depths are what its keys reveal)."""
        embed_dims, depths = [], []
        for i in range(1, NUM_STAGES + 1):
            embed_dims.append(state_dict[f'stage{i}.0.norm1.weight'].shape[0])
            depths.append(1 + max(int(k.split('.')[1]) for k in state_dict
                                  if k.startswith(f'stage{i}.')))
        return describe_rest_arch(cls, dict(embed_dims=embed_dims, depths=depths))

    def frozen_modules(self) -> List[Optional[nn.Module]]:
        """The stem and, per frozen stage, its patch embed, blocks and output norm."""
        modules: List[Optional[nn.Module]] = [self.stem]
        for i in range(self.frozen_stages):
            modules += [self.embed(i), self.stage(i), self.output_norm(i)]
        return modules

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        outs = []
        for i in range(NUM_STAGES):
            tokens, hw = self.embed(i)(x)
            tokens = self.run_blocks(self.stage_blocks(i), tokens, hw)
            if i in self.out_indices:
                normed = self.output_norm(i)(tokens)
                outs.append(tokens_to_map(normed, hw).contiguous())
                if self.inline_output_norms:
                    tokens = normed
            if i == self.out_indices[-1]:
                break  # later stages cannot change the requested outputs
            x = tokens_to_map(tokens, hw)
        return tuple(outs)
