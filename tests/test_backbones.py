"""Every backbone argument is checked: a bad one fails at construction with one line naming
the argument and the value, as a TypeError (wrong type) or ValueError (bad value)."""
import math

import numpy as np
import pytest

from rmt_mm.models import FAMILIES, RMT, ResT, ResTV2

from helpers.archs import TINY_ARCHS, build_tiny

FAMILY_CLASSES = list(FAMILIES.values())
NAN, INF = float('nan'), float('inf')

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


@pytest.mark.parametrize('cls', FAMILY_CLASSES, ids=lambda c: c.__name__)
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


@pytest.mark.parametrize('cls', FAMILY_CLASSES, ids=lambda c: c.__name__)
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
