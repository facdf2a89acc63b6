"""What every backbone family satisfies, checked on each family of ``rmt_mm.models.FAMILIES``
with its tiny arch: every argument is checked (a bad one fails at construction with one line
naming the argument and the value, as a TypeError or ValueError), a bad arch is reported,
``out_indices`` selects outputs of the arch's widths at strides 4-32 for any input size,
``frozen_stages``, ``norm_eval``, gradient checkpointing (``with_cp``) and the drop-path schedule
of the released archs.

A family's own checks live in its files (RMT: test_rmt_model.py, test_rmt_parity.py,
test_masa.py; ResT and ResTv2: test_rest.py). Like those, this file needs torch and numpy alone:
``scripts/check_plain_pytorch.sh`` runs it without OpenMMLab."""
import math
from typing import List

import numpy as np
import pytest
import torch
import torch.utils.checkpoint
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from rmt_mm.models import FAMILIES, RMT, DenseBackbone, ResT, ResTV2

from helpers import one_intra_op_thread
from helpers.archs import TINY_ARCHS, build_tiny

FAMILY_CLASSES = list(FAMILIES.values())
NAN, INF = float('nan'), float('inf')
every_family = pytest.mark.parametrize('cls', FAMILY_CLASSES, ids=lambda c: c.__name__)


@pytest.fixture(autouse=True, scope='module')
def _single_thread():
    """Tiny models, on one thread."""
    with one_intra_op_thread():
        yield


# --------------------------------------------------------------------------- arguments

#: (argument, bad value, error): arguments every family takes.
SHARED = [
    ('in_channels', 0, ValueError),
    ('in_channels', True, TypeError),
    ('in_channels', 3.0, TypeError),
    ('in_channels', '3', TypeError),
    ('out_indices', (), ValueError),
    ('out_indices', (0, 4), ValueError),
    ('out_indices', -5, ValueError),
    ('out_indices', (True, ), TypeError),
    ('out_indices', (0.0, 1), TypeError),
    ('out_indices', '0', TypeError),
    ('out_indices', None, TypeError),
    ('drop_path_rate', -1, ValueError),  # would silently disable drop path
    ('drop_path_rate', -0.1, ValueError),
    ('drop_path_rate', 1.0, ValueError),
    ('drop_path_rate', NAN, ValueError),
    ('drop_path_rate', INF, ValueError),
    ('drop_path_rate', '0.1', TypeError),
    ('drop_path_rate', True, TypeError),
    ('frozen_stages', -2, ValueError),
    ('frozen_stages', 5, ValueError),
    ('frozen_stages', 1.0, TypeError),
    ('frozen_stages', True, TypeError),
    ('norm_eval', 1, TypeError),
    ('norm_eval', 'yes', TypeError),
    ('norm_eval', None, TypeError),
    ('with_cp', 0, TypeError),
    ('with_cp', 'false', TypeError),
    ('norm_cfg', 'BN', TypeError),
    ('norm_cfg', dict(requires_grad=True), TypeError),
    ('norm_cfg', dict(type='NoSuchNorm'), ValueError),
    ('norm_cfg', dict(type='BN', colour='red'), ValueError),
    ('init_cfg', 'pretrained.pth', TypeError),
    ('init_cfg', dict(type='Pretrained'), ValueError),
    ('init_cfg', [dict(type='Pretrained', checkpoint='x.pth')], ValueError),
    ('arch', 3, TypeError),
]
#: RMT's own arguments and arch-dict entries.
RMT_ONLY = [
    ('attn_impl', 'flash9', ValueError),
    ('attn_impl', None, TypeError),
    ('cpu_speedups', 1, TypeError),
    ('cpu_speedups', 'on', TypeError),
]
ARCH_ENTRIES = [
    (RMT, 'init_values', [2, NAN, 2, 2]),
    (RMT, 'init_values', [2, 0, 2, 2]),  # decay log(1 - 2**0) = -inf for the first head
    (RMT, 'heads_ranges', [4, 4, INF, 6]),
    (RMT, 'heads_ranges', [4, -1, 6, 6]),
    (RMT, 'mlp_ratios', [3, 3, NAN, 3]),
    (RMT, 'mlp_ratios', [3, 3, '3', 3]),
    (RMT, 'depths', [1, True, 2, 1]),
    (RMT, 'depths', [1, 2.0, 2, 1]),
    (RMT, 'embed_dims', [16, 32, 64, 0]),
    (RMT, 'chunkwise_recurrents', [1, 1, 0, 0]),
    (RMT, 'layerscales', 'yes'),
    (RMT, 'layer_init_values', NAN),
    (RMT, 'layer_init_values', -INF),
    (RMT, 'drop_path_rate', INF),
    (ResT, 'mlp_ratios', [4, 4, INF, 4]),
    (ResT, 'sr_ratios', [8, 4, 2, 0.5]),
    (ResT, 'qk_scale', NAN),
    (ResT, 'qkv_bias', 1),
    (ResT, 'drop_path_rate', NAN),
    (ResTV2, 'num_heads', [1, 2, 4, -8]),
    (ResTV2, 'depths', [1, 1, 2, 1, 1]),
    (ResTV2, 'drop_path_rate', -1),
]


def _assert_one_line_naming(err: pytest.ExceptionInfo, name: str, value: object) -> None:
    message = str(err.value)
    assert '\n' not in message
    assert name in message, message
    assert repr(value) in message, message


def _check_bad_shared(cls, name, value, error):
    with pytest.raises(error) as err:
        cls(value) if name == 'arch' else build_tiny(cls, **{name: value})
    _assert_one_line_naming(err, name, value)


#: The shared arguments are checked by DenseBackbone.__init__, which each family calls with its
#: arguments before building anything: each bad value on one family (taken in turn), and each
#: family's hand-over of every argument below.
SHARED_CASES = [(FAMILY_CLASSES[i % len(FAMILY_CLASSES)], *case) for i, case in enumerate(SHARED)]


@pytest.mark.parametrize('cls,name,value,error', SHARED_CASES,
                         ids=lambda v: getattr(v, '__name__', None) or repr(v)[:20])
def test_bad_shared_argument(cls, name, value, error):
    _check_bad_shared(cls, name, value, error)


@every_family
def test_every_family_checks_every_shared_argument(cls):
    """One bad value per shared argument, through each family's constructor."""
    first = {}
    for name, value, error in SHARED:
        first.setdefault(name, (value, error))
    assert len(first) == 9
    for name, (value, error) in first.items():
        _check_bad_shared(cls, name, value, error)


@pytest.mark.parametrize('name,value,error', RMT_ONLY, ids=lambda v: repr(v)[:20])
def test_bad_rmt_argument(name, value, error):
    with pytest.raises(error) as err:
        build_tiny(RMT, **{name: value})
    _assert_one_line_naming(err, name, value)


@pytest.mark.parametrize('cls,key,value', ARCH_ENTRIES,
                         ids=lambda v: getattr(v, '__name__', repr(v)[:20]))
def test_bad_arch_entry(cls, key, value):
    arch = dict(TINY_ARCHS[cls], **{key: value})
    with pytest.raises(ValueError) as err:
        cls(arch)
    _assert_one_line_naming(err, key, value)
    assert f'custom {cls.family_name} arch' in str(err.value)


@every_family
def test_good_arguments_of_every_accepted_kind_still_build(cls):
    """No over-blocking: numpy scalars, tuples, negative indices, SyncBN, None defaults."""
    model = build_tiny(cls, in_channels=np.int64(4), out_indices=(np.int64(1), -1),
                       drop_path_rate=np.float32(0.3), frozen_stages=np.int64(-1),
                       norm_eval=True, norm_cfg=dict(type='SyncBN', requires_grad=True),
                       with_cp=True, init_cfg=dict(type='Pretrained', checkpoint='later.pth'))
    assert model.out_indices == [1, 3]
    assert math.isclose(model.drop_path_rate, 0.3, rel_tol=1e-6)
    arch = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY_ARCHS[cls].items()}
    assert cls(arch).arch_settings['depths'] == list(TINY_ARCHS[cls]['depths'])


def test_rmt_arguments_of_every_accepted_kind_still_build():
    for impl in ('auto', 'reference', 'sdpa', 'blocked'):
        for speedups in (None, True, False):
            build_tiny(RMT, attn_impl=impl, cpu_speedups=speedups)
    build_tiny(RMT, init_cfg=[dict(type='Constant', val=1, layer='Conv2d')])
    arch = dict(TINY_ARCHS[RMT], heads_ranges=[0, 0, 0, 0], layer_init_values=1,
                drop_path_rate=0)
    assert RMT(arch).arch_settings['heads_ranges'] == [0, 0, 0, 0]


@every_family
def test_bad_arch_is_reported(cls):
    """An unknown name, a missing and an unknown key of a custom arch."""
    arch = TINY_ARCHS[cls]
    for bad, match in (('huge', f'unknown {cls.family_name} arch'),
                       ({k: v for k, v in arch.items() if k != 'num_heads'},
                        r"missing keys \['num_heads'\]"),
                       ({**arch, 'colour': 'red'}, r"unknown keys \['colour'\]")):
        with pytest.raises(ValueError, match=match):
            cls(bad)


# --------------------------------------------------------------------------- outputs


@every_family
@pytest.mark.parametrize('size', [(72, 104), (65, 97), (33, 47), (20, 31), (1, 1)])
def test_any_input_size(cls, size):
    """Any size works, odd ones and 1-pixel stages included (upstream ResT crashes unless sizes
    are nearly multiples of 32), in eval and train mode: output widths at strides 4-32 (each
    stride-2 conv rounds up), finite outputs and gradients of every parameter and the input."""
    torch.manual_seed(0)
    model = build_tiny(cls, drop_path_rate=0.1)
    h, w = size
    for train in (False, True):
        model.zero_grad()
        x = torch.randn(2, 3, h, w, requires_grad=True)  # train-mode BN needs 2 values
        outs = model.train(train)(x)
        for i, out in enumerate(outs):
            stride = 2**(i + 2)
            assert out.shape == (2, TINY_ARCHS[cls]['embed_dims'][i], math.ceil(h / stride),
                                 math.ceil(w / stride))
            assert torch.isfinite(out).all()
        sum((o * torch.randn_like(o)).sum() for o in outs).backward()
        assert torch.isfinite(x.grad).all()
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), (train, name)


@every_family
def test_out_indices_accept_an_int_negatives_and_repeats(cls):
    dims = TINY_ARCHS[cls]['embed_dims']
    for given, expected in ((2, [2]), ((1, -1), [1, 3]), ((3, -3, 1, 3), [1, 3]), ([-1], [3])):
        model = build_tiny(cls, out_indices=given).eval()
        assert model.out_indices == expected
        with torch.no_grad():
            outs = model(torch.randn(1, 3, 32, 32))
        assert [o.shape[1] for o in outs] == [dims[i] for i in expected]


# --------------------------------------------------------------------------- training switches


def frozen_parts(model: DenseBackbone, stages: int) -> List[nn.Module]:
    """What ``frozen_stages=stages`` freezes, spelled out per family: the stem and the first
    stages, each with its patch embed (RMT: the patch merging after the stage, part of
    ``layers[i]``) and its output norm."""
    if isinstance(model, RMT):
        return [model.patch_embed] + [m for i in range(stages)
                                      for m in (model.layers[i], model.extra_norms[i])]
    return [model.stem] + [m for i in range(stages)
                           for m in (model.embed(i), model.stage(i), model.output_norm(i))
                           if m is not None]


def first_trained_parts(model: DenseBackbone, stages: int) -> List[nn.Module]:
    """The first stage that ``frozen_stages=stages`` leaves to train (with its patch embed)."""
    if isinstance(model, RMT):
        return [model.layers[stages]]
    return [model.embed(stages), model.stage(stages)]


def _batch_norms(modules) -> List[_BatchNorm]:
    return [m for module in modules for m in module.modules() if isinstance(m, _BatchNorm)]


@every_family
def test_frozen_stages(cls):
    """Frozen parts get no gradient, stay in eval mode and keep their BatchNorm statistics; the
    rest trains (other BatchNorms, e.g. ResT's patch embeds and RMT's patch merging, update)."""
    for stages in (1, 2):
        model = build_tiny(cls, frozen_stages=stages)
        model.train()
        frozen = frozen_parts(model, stages)
        frozen_ids = {id(p) for m in frozen for p in m.parameters()}
        for name, p in model.named_parameters():
            assert p.requires_grad == (id(p) not in frozen_ids), (stages, name)
        assert all(not m.training for m in frozen)
        trained = first_trained_parts(model, stages)
        assert all(m.training for m in trained)
        frozen_bns = _batch_norms(frozen)
        other_bns = [b for b in _batch_norms([model]) if b not in frozen_bns]
        assert frozen_bns
        before = [b.running_mean.clone() for b in frozen_bns + other_bns]
        sum(o.sum() for o in model(torch.randn(2, 3, 64, 64))).backward()
        for b, mean in zip(frozen_bns, before):
            assert torch.equal(b.running_mean, mean)
        for b, mean in zip(other_bns, before[len(frozen_bns):]):
            assert not torch.equal(b.running_mean, mean)
        assert all(p.grad is None for m in frozen for p in m.parameters())
        assert all(p.grad is not None for m in trained for p in m.parameters())

    everything = build_tiny(cls, frozen_stages=4)
    assert not any(p.requires_grad for p in everything.parameters())


@every_family
def test_norm_eval_holds_every_batchnorm(cls):
    """``norm_eval`` keeps every BatchNorm, SyncBN included (upstream RMT's escaped its
    BatchNorm2d check), in eval mode with frozen statistics, and nothing else; without it the
    statistics update as in upstream fine-tuning."""
    x = torch.randn(2, 3, 64, 64)
    for norm_type in ('BN', 'SyncBN'):
        model = build_tiny(cls, norm_eval=True, norm_cfg=dict(type=norm_type, requires_grad=True))
        assert model.train() is model
        bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
        assert bns and all(not b.training for b in bns)
        assert all(m.training for m in model.modules() if not isinstance(m, _BatchNorm))
        if norm_type == 'SyncBN':  # cannot run without a process group; modes only
            assert all(isinstance(b, nn.SyncBatchNorm) for b in bns)
            continue
        before = [b.running_mean.clone() for b in bns]
        model(x)
        assert all(torch.equal(b.running_mean, m) for b, m in zip(bns, before))
    plain = build_tiny(cls).train()
    bns = [m for m in plain.modules() if isinstance(m, _BatchNorm)]
    assert all(b.training for b in bns)
    before = [b.running_mean.clone() for b in bns]
    plain(x)
    assert all(not torch.equal(b.running_mean, m) for b, m in zip(bns, before))


@pytest.fixture
def checkpoint_calls(monkeypatch) -> List[dict]:
    """The keyword arguments of every ``torch.utils.checkpoint.checkpoint`` call."""
    calls = []
    original = torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(torch.utils.checkpoint, 'checkpoint',
                        lambda *a, **k: calls.append(k) or original(*a, **k))
    return calls


def _run(model: DenseBackbone, x: Tensor):
    torch.manual_seed(1)  # the same drop-path masks for every model
    outs = model(x)
    sum((o * o).sum() for o in outs).backward()
    return outs, {n: p.grad for n, p in model.named_parameters()}


@every_family
def test_with_cp_checkpoints_every_block_and_changes_nothing(cls, checkpoint_calls):
    plain = build_tiny(cls, drop_path_rate=0.2).train()
    ckpt = build_tiny(cls, drop_path_rate=0.2, with_cp=True).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 45, 61)
    outs_a, grads_a = _run(plain, x)
    assert not checkpoint_calls
    outs_b, grads_b = _run(ckpt, x)
    assert len(checkpoint_calls) == sum(TINY_ARCHS[cls]['depths'])
    assert all(k.get('use_reentrant') is False for k in checkpoint_calls)
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)
    for name, grad in grads_a.items():
        assert grad is not None, name
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-6, atol=1e-6, msg=name)


@every_family
@pytest.mark.parametrize('frozen_stages', [0, 1])
def test_with_cp_checkpoints_exactly_what_autograd_records(cls, frozen_stages,
                                                           checkpoint_calls):
    """Frozen stages on inputs that need no gradient are not checkpointed (nothing would be
    saved for backward); the first trained block is, although its input (from a frozen stem
    or stage) needs no gradient: its parameters do."""
    model = build_tiny(cls, with_cp=True, frozen_stages=frozen_stages).train()
    x = torch.randn(2, 3, 32, 32)
    sum(o.sum() for o in model(x)).backward()
    assert len(checkpoint_calls) == sum(TINY_ARCHS[cls]['depths'][frozen_stages:])
    checkpoint_calls.clear()
    with torch.no_grad():
        model(x)
    assert not checkpoint_calls


@every_family
def test_released_archs_follow_their_table(cls):
    """Widths, depths and the linear drop-path schedule of every released arch, derived from
    the family's arch table; ``drop_path_rate=0`` builds no drop path."""
    for name, arch in cls.arch_zoo.items():
        with torch.device('meta'):
            model = cls(name)
        depths = arch['depths']
        assert model.drop_path_rate == arch['drop_path_rate']
        rates = torch.linspace(0, arch['drop_path_rate'], sum(depths)).tolist()
        for i, depth in enumerate(depths):
            blocks = model.stage_blocks(i)
            assert len(blocks) == depth, (name, i)
            for block, rate in zip(blocks, rates[sum(depths[:i]):]):
                drop = block.drop_path
                assert (drop.drop_prob == pytest.approx(rate) if rate > 0
                        else isinstance(drop, nn.Identity)), (name, i)
        with torch.device('meta'):
            outs = model.eval()(torch.empty(1, 3, 64, 64))
            no_drop = cls(name, drop_path_rate=0.0)
        assert [o.shape[1] for o in outs] == arch['embed_dims'], name
        assert all(isinstance(b.drop_path, nn.Identity)
                   for i in range(len(depths)) for b in no_drop.stage_blocks(i)), name
