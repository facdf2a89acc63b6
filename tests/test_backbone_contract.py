"""A new backbone family is picked up from the ``FAMILIES`` table alone: registration, the
converter and the model zoo tool. (What every family satisfies: test_backbones.py.)"""
import importlib.util
from pathlib import Path
from typing import Dict, List

import pytest
import torch
from torch import Tensor, nn

from rmt_mm.models import FAMILIES, DenseBackbone
from rmt_mm.models.validation import POSITIVE_INT


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
