"""What every backbone family shares through DenseBackbone: gradient checkpointing, the
drop-path schedule, out_indices, norm_eval, and that a new family is picked up from the FAMILIES
table alone (registration, converter, model zoo)."""
import importlib.util
from pathlib import Path
from typing import Dict, List

import pytest
import torch
import torch.utils.checkpoint
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from rmt_mm.models import FAMILIES, DenseBackbone
from rmt_mm.models.validation import POSITIVE_INT

from helpers.archs import TINY_ARCHS, build_tiny

FAMILY_CLASSES = list(FAMILIES.values())


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


@pytest.mark.parametrize('cls', FAMILY_CLASSES, ids=lambda c: c.__name__)
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


@pytest.mark.parametrize('cls', FAMILY_CLASSES, ids=lambda c: c.__name__)
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


@pytest.mark.parametrize('cls', FAMILY_CLASSES, ids=lambda c: c.__name__)
def test_released_archs_follow_their_table(cls):
    """Widths, depths and the linear drop-path schedule of every released arch, derived from
    the family's arch table."""
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
        assert [o.shape[1] for o in outs] == arch['embed_dims'], name


@pytest.mark.parametrize('cls', FAMILY_CLASSES, ids=lambda c: c.__name__)
def test_out_indices_accept_an_int_negatives_and_repeats(cls):
    dims = TINY_ARCHS[cls]['embed_dims']
    for given, expected in ((2, [2]), ((3, -3, 1, 3), [1, 3]), ([-1], [3])):
        model = build_tiny(cls, out_indices=given).eval()
        assert model.out_indices == expected
        with torch.no_grad():
            outs = model(torch.randn(1, 3, 32, 32))
        assert [o.shape[1] for o in outs] == [dims[i] for i in expected]


@pytest.mark.parametrize('cls', FAMILY_CLASSES, ids=lambda c: c.__name__)
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


# --------------------------------------------------------------------------- a new family


class ToyBlock(nn.Module):

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.mix = nn.Conv2d(dims, dims, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.mix(x)


class ToyNet(DenseBackbone):
    """The smallest DenseBackbone: stride-2 conv stages of residual conv blocks."""

    arch_zoo = {'one': dict(embed_dims=[4, 8], depths=[1, 1], drop_path_rate=0.0),
                'two': dict(embed_dims=[4, 8], depths=[1, 2], drop_path_rate=0.0)}
    arch_stage_keys = dict(embed_dims=POSITIVE_INT, depths=POSITIVE_INT)
    classification_only_modules = ('head', )

    def __init__(self, arch='one', in_channels=3, out_indices=(0, 1), drop_path_rate=None,
                 frozen_stages=-1, norm_eval=False, norm_cfg=None, with_cp=False,
                 init_cfg=None) -> None:
        super().__init__(arch, in_channels, out_indices, drop_path_rate, frozen_stages,
                         norm_eval, norm_cfg, with_cp, init_cfg)
        dims = [in_channels] + self.embed_dims
        self.downs = nn.ModuleList(nn.Conv2d(dims[i], dims[i + 1], 3, 2, 1)
                                   for i in range(self.num_stages))
        self.stages = nn.ModuleList(
            nn.ModuleList(ToyBlock(dims[i + 1]) for _ in range(depth))
            for i, depth in enumerate(self.arch_settings['depths']))
        self._freeze_stages()

    @classmethod
    def describe_state_dict(cls, state_dict: Dict[str, Tensor]) -> str:
        depths = [1 + max(int(k.split('.')[2]) for k in state_dict
                          if k.startswith(f'stages.{i}.')) for i in range(2)]
        return f'a ToyNet with depths {depths}'

    def frozen_modules(self) -> List[nn.Module]:
        return [m for i in range(self.frozen_stages) for m in (self.downs[i], self.stages[i])]

    def stage_blocks(self, i: int) -> nn.ModuleList:
        return self.stages[i]

    def forward(self, x: Tensor):
        outs = []
        for i in range(self.num_stages):
            x = self.run_blocks(self.stage_blocks(i), self.downs[i](x))
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


@pytest.fixture
def toy_family(monkeypatch):
    """ToyNet added to the family table, and nowhere else."""
    monkeypatch.setitem(FAMILIES, 'toy', ToyNet)
    yield ToyNet
    for scope in ('mmdet', 'mmseg'):
        registry = importlib.import_module(f'{scope}.registry').MODELS
        registry._module_dict.pop('ToyNet', None)


def test_a_new_family_is_registered(toy_family):
    from rmt_mm.plugin import install
    assert set(install()) == {'mmdet', 'mmseg'}
    from mmengine.registry import DefaultScope
    for scope in ('mmdet', 'mmseg'):
        registry = importlib.import_module(f'{scope}.registry').MODELS
        # An earlier runner may have left another default scope behind; a config names its own.
        with DefaultScope.overwrite_default_scope(scope):
            model = registry.build(dict(type='ToyNet', arch='two', out_indices=1))
        assert isinstance(model, ToyNet) and model.out_indices == [1]


def test_the_converter_infers_a_new_family(toy_family, tmp_path):
    from rmt_mm.checkpoints.convert import convert_checkpoint, parse_arch
    from rmt_mm.checkpoints.reading import safe_load
    state = ToyNet('two').state_dict()
    src = tmp_path / 'toy.pth'
    torch.save(dict(model=dict(state, **{'head.weight': torch.zeros(2, 8)})), src)
    meta = convert_checkpoint(str(src), str(tmp_path / 'out.pth'))
    assert (meta['backbone'], meta['arch'], meta['dropped_keys']) == ('ToyNet', 'two',
                                                                      ['head.weight'])
    assert safe_load(str(tmp_path / 'out.pth'))['state_dict'].keys() == state.keys()
    assert parse_arch('toy_one') == (ToyNet, 'one')


def test_the_model_zoo_lists_a_new_family(toy_family, capsys):
    tool = Path(__file__).resolve().parents[1] / 'tools' / 'model_zoo.py'
    spec = importlib.util.spec_from_file_location('model_zoo', tool)
    model_zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model_zoo)
    model_zoo.main(['--size', '64', '64', '--family', 'toy'])
    rows = capsys.readouterr().out.splitlines()
    assert rows[2:] == ['| ToyNet | one | 0.00 | 4x32x32, 8x16x16 |',
                        '| ToyNet | two | 0.00 | 4x32x32, 8x16x16 |']
