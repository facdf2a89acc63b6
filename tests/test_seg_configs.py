"""Every RMT ADE20K config follows upstream's recipe, builds, and its model trains and
predicts."""
from pathlib import Path

import pytest
import torch

from helpers import CONFIG_DIR
from helpers.archs import RMT_TINY
from helpers.configs import load
from helpers.seg import DEMO_CONFIG, SEG_CONFIGS, check_loss_and_predict

# Upstream (reference §4.2): arch, drop_path_rate, stage-3 channels (UperNet aux head input).
ARCHS = dict(t=('tiny', 0.1, 256), s=('small', 0.15, 256), b=('base', 0.4, 320),
             l=('large', 0.5, 448))
EMBED = dict(t=[64, 128, 256, 512], s=[64, 128, 256, 512], b=[80, 160, 320, 512],
             l=[112, 224, 448, 640])


def test_all_sizes_have_configs():
    assert SEG_CONFIGS == sorted(
        [f'fpn_rmt_{s}_ade20k-512x512-80k.py' for s in 'tsbl']
        + [f'upernet_rmt_{s}_ade20k-512x512-160k.py' for s in 'sbl'])


@pytest.mark.parametrize('name', SEG_CONFIGS)
def test_recipe_matches_upstream(name):
    cfg, scope = load(name[:-len('.py')])
    size = name.split('_')[2]
    arch, dpr, c3 = ARCHS[size]
    model = cfg.model
    assert scope == 'mmseg'
    assert (model.backbone.type, model.backbone.arch, model.backbone.drop_path_rate) == \
        ('RMT', arch, dpr)
    assert model.backbone.norm_cfg.type == 'SyncBN' and model.backbone.norm_eval is False
    assert model.backbone.init_cfg.checkpoint == f'checkpoints/rmt_{size}_in1k.pth'
    assert model.decode_head.norm_cfg.type == 'SyncBN'
    assert model.decode_head.num_classes == 150 and model.decode_head.dropout_ratio == 0.1
    assert model.data_preprocessor.size == (512, 512) and model.test_cfg.mode == 'whole'
    assert cfg.train_dataloader.batch_size == 2 and cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.train_dataloader.dataset.type == 'ADE20KDataset'
    train_types = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert train_types[:3] == ['LoadImageFromFile', 'LoadAnnotations', 'CheckSegLabels']
    crop = next(t for t in cfg.train_dataloader.dataset.pipeline if t['type'] == 'RandomCrop')
    assert crop['crop_size'] == (512, 512) and crop['cat_max_ratio'] == 0.75
    optim = cfg.optim_wrapper
    if name.startswith('upernet'):
        assert model.decode_head.in_channels == EMBED[size] and model.decode_head.channels == 512
        assert (model.auxiliary_head.in_channels, model.auxiliary_head.channels) == (c3, 256)
        assert model.auxiliary_head.loss_decode.loss_weight == 0.4
        assert optim.type == 'AmpOptimWrapper' and optim.loss_scale == 512.0
        assert (optim.optimizer.type, optim.optimizer.lr, optim.optimizer.weight_decay) == \
            ('AdamW', 6e-5, 0.01)
        assert optim.paramwise_cfg.custom_keys == dict(norm=dict(decay_mult=0.0))
        warmup, poly = cfg.param_scheduler
        assert (warmup.type, warmup.end, warmup.start_factor) == ('LinearLR', 1500, 1e-6)
        assert (poly.type, poly.power, poly.eta_min, poly.end) == ('PolyLR', 1.0, 0.0, 160000)
        assert (cfg.train_cfg.max_iters, cfg.train_cfg.val_interval) == (160000, 8000)
    else:
        assert model.neck.in_channels == EMBED[size] and model.neck.out_channels == 256
        assert model.decode_head.channels == 128
        assert 'auxiliary_head' not in model or model.auxiliary_head is None
        assert optim.type == 'OptimWrapper' and 'paramwise_cfg' not in optim
        assert (optim.optimizer.type, optim.optimizer.lr, optim.optimizer.weight_decay) == \
            ('AdamW', 1e-4, 1e-4)
        (poly, ) = cfg.param_scheduler
        assert (poly.type, poly.power, poly.eta_min, poly.end) == ('PolyLR', 0.9, 1e-6, 80000)
        assert (cfg.train_cfg.max_iters, cfg.train_cfg.val_interval) == (80000, 4000)
    assert cfg.tta_model.type == 'SegTTAModel'
    assert cfg.tta_pipeline[1].type == 'TestTimeAug'


#: Configs whose loss/predict test runs the real backbone (RMT-T/S); the RMT-B/L ones swap in
#: RMT_TINY (same heads, their input widths adjusted), and their full-size wiring is checked on
#: the meta device below.
FULL_ARCH = [name for name in SEG_CONFIGS if name.split('_')[2] in 'ts']


def _with_tiny_backbone(model) -> None:
    """``model`` (a config's model dict) with RMT_TINY, the heads taking its widths."""
    dims = RMT_TINY['embed_dims']
    model.backbone.arch = RMT_TINY
    if model.get('neck'):
        model.neck.in_channels = dims
    else:
        model.decode_head.in_channels = dims
    if model.get('auxiliary_head'):
        model.auxiliary_head.in_channels = dims[model.auxiliary_head.in_index]


@pytest.mark.parametrize('name', SEG_CONFIGS + ['demo/' + DEMO_CONFIG.name])
def test_model_builds_and_runs(name):
    from mmseg.registry import MODELS
    cfg, _ = load(name[:-len('.py')])
    if name in SEG_CONFIGS and name not in FULL_ARCH:
        _with_tiny_backbone(cfg.model)
    check_loss_and_predict(MODELS.build(cfg.model))  # no init_weights: no ImageNet checkpoints


@pytest.mark.parametrize('name', SEG_CONFIGS)
def test_full_size_model_wiring(name):
    """Every config's model at its own arch, built shape-only (meta device): backbone, neck and
    heads fit together; the decode head's logits come out at 1/4 of the input size, the
    auxiliary head's (on stage 3) at 1/16."""
    from mmseg.registry import MODELS
    cfg, _ = load(name[:-len('.py')])
    cfg.model.backbone.init_cfg = None
    with torch.device('meta'):
        model = MODELS.build(cfg.model).eval()
        feats = model.extract_feat(torch.empty(1, 3, 64, 96))
        shapes = [tuple(model.decode_head(feats).shape)]
        if model.with_auxiliary_head:
            shapes.append(tuple(model.auxiliary_head(feats).shape))
    expected = [(1, 150, 16, 24)] + ([(1, 150, 4, 6)] if name.startswith('upernet') else [])
    assert shapes == expected


CONFIG_BASE = CONFIG_DIR / '_base_'
SCHEDULE = ['optim_wrapper', 'param_scheduler', 'train_cfg', 'val_cfg', 'test_cfg',
            'default_hooks']
#: The repository's segmentation bases and the mmseg base each stands for: key -> what of the
#: mmseg file it must equal (``None``: everything it sets).
OWN_BASES = {
    'models/upernet.py': ('models/upernet_r50.py', ['model']),
    'models/fpn.py': ('models/fpn_r50.py', ['model']),
    'datasets/ade20k.py': ('datasets/ade20k.py', ['train_dataloader', 'val_dataloader',
                                                  'test_dataloader', 'val_evaluator',
                                                  'tta_pipeline']),
    'seg_runtime.py': ('default_runtime.py', None),
    'schedules/seg_80k.py': ('schedules/schedule_80k.py', SCHEDULE),
    'schedules/seg_160k.py': ('schedules/schedule_160k.py', SCHEDULE),
}
#: Where the repository's bases differ from mmseg's on purpose.
NO_RESNET = ('pretrained', 'backbone')  # the configs bring their own backbone
SEG_PIPELINE_CHECKS = 'CheckSegLabels'  # added after LoadAnnotations in every pipeline
#: The schedule bases' hooks: crash-safe checkpoints and strict loading (docs/checkpoints.md).
OWN_HOOKS = {'AtomicCheckpointHook': 'CheckpointHook'}


def _without(value, drop):
    """``value`` without dict keys in ``drop``, without ``_scope_`` marks and without the label
    check transforms, the project's hooks as mmseg's, recursively (so that the comparison shows
    what else differs)."""
    if isinstance(value, dict):
        return {k: OWN_HOOKS.get(v, v) if k == 'type' else _without(v, drop)
                for k, v in value.items() if k not in drop and k != '_scope_'}
    if isinstance(value, (list, tuple)):
        kept = [_without(v, drop) for v in value
                if not (isinstance(v, dict) and v.get('type') == SEG_PIPELINE_CHECKS)]
        return [v for v in kept if v != [{}] and v != []]
    return value


@pytest.mark.parametrize('ours', sorted(OWN_BASES))
def test_own_bases_equal_the_mmseg_bases_they_stand_for(ours):
    """The repository's bases (the OneDL fork cannot resolve ``mmseg::``) set what mmseg's
    bases set, read from the installed mmseg's own copy: except the ResNet backbone, the label
    checks, the project's hooks, the dataset's ``reduce_zero_label`` left to the dataset,
    upstream's 2 images per GPU and unused top-level helper names."""
    import mmseg
    from mmengine.config import Config
    theirs_name, keys = OWN_BASES[ours]
    theirs_path = Path(mmseg.__file__).parent / '.mim' / 'configs' / '_base_' / theirs_name
    mine = Config.fromfile(str(CONFIG_BASE / ours)).to_dict()
    theirs = Config.fromfile(str(theirs_path)).to_dict()
    keys = keys or sorted(theirs)
    drop = NO_RESNET + ('in_channels', 'num_classes', 'reduce_zero_label', 'batch_size',
                        'backend_args', 'strict_load')
    assert {k: _without(mine.get(k), drop) for k in keys} == \
        {k: _without(theirs.get(k), drop) for k in keys}
