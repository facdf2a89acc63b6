"""The backbones are reachable from mmdet and mmseg configs."""
import subprocess
import sys
import textwrap

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from rmt_mm.engine.optimizers import ResTStageDecayOptimizerConstructor
from rmt_mm.models import RMT, ResT, ResTV2

from helpers import CONFIG_DIR
from helpers.configs import FAMILIES, family_configs, load


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
@pytest.mark.parametrize('cls', [RMT, ResT, ResTV2])
def test_registered_in_both_codebases(scope, cls):
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    assert registry.get(cls.__name__) is cls


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_optimizer_constructor_reachable_from_both_codebases(scope):
    """Registered in mmengine's root registry, which the codebases' registries fall back to."""
    registries = __import__(f'{scope}.registry', fromlist=['OPTIM_WRAPPER_CONSTRUCTORS'])
    cls = ResTStageDecayOptimizerConstructor
    assert registries.OPTIM_WRAPPER_CONSTRUCTORS.get(cls.__name__) is cls


def test_build_from_config_dict():
    from mmdet.registry import MODELS
    init_default_scope('mmdet')  # a runner of an earlier test may have left another scope
    backbone = MODELS.build(dict(type='RMT', arch='t', out_indices=(1, 3)))
    outs = backbone.eval()(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 128, 8, 12), (1, 512, 2, 3)]


def test_custom_imports_in_a_fresh_process(tmp_path):
    """A config naming only ``custom_imports`` builds RMT without importing rmt_mm by hand."""
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(textwrap.dedent("""
        custom_imports = dict(imports=['rmt_mm.plugin'], allow_failed_imports=False)
        backbone = dict(type='RMT', arch='tiny')
    """))
    script = textwrap.dedent(f"""
        import sys
        from mmengine.config import Config
        from mmseg.registry import MODELS
        assert 'rmt_mm' not in sys.modules
        cfg = Config.fromfile({str(cfg)!r})
        print(type(MODELS.build(cfg.backbone)).__name__)
    """)
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == 'RMT'


def custom_imports(name: str) -> dict:
    """The plugin, and for Mask2Former segmentors mmdet's models too (mmseg's own Mask2Former
    configs import them: the head is mmdet's)."""
    extra = ['mmdet.models'] if 'mask2former' in name and 'coco' not in name else []
    return dict(imports=['rmt_mm.plugin', *extra], allow_failed_imports=False)


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_every_config_imports_the_plugin(family):
    """mmdet's/mmseg's own tools, `mim` and the Inferencers import only what a config names."""
    for name in family_configs(family):
        cfg, _ = load(name)
        assert cfg.get('custom_imports') == custom_imports(name), name


@pytest.mark.parametrize('config', sorted((CONFIG_DIR / 'demo').glob('*.py')), ids=lambda p: p.stem)
def test_demo_configs_import_the_plugin(config):
    assert Config.fromfile(str(config)).get('custom_imports') == custom_imports(config.stem)
