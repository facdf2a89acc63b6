"""DINO and Mask2Former with RMT: each config is mmdet's or mmseg's recipe for its head with the
RMT widths, inherits no ``::`` base, has its expected size at the full arch (meta device), and
trains and predicts at a tiny arch, also with ResT and ResTv2 swapped in; the repository's
detection bases set what mmdet's do."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from rmt_mm.models import RMT, ResT, ResTV2

from helpers import CONFIG_DIR
from helpers.archs import tiny_arch
from helpers.configs import family_configs, load
from helpers.det import build_detector
from helpers.det import check_loss_and_predict as check_detector
from helpers.seg import check_loss_and_predict as check_segmentor
from helpers.tools import assert_one_line_error, call_tool, tool_main

DINO = family_configs('dino')
MASK2FORMER_SEG = family_configs('mask2former_seg')
MASK2FORMER_DET = family_configs('mask2former_det')
QUERY_HEADS = DINO + MASK2FORMER_SEG + MASK2FORMER_DET
# Size letter -> arch, drop path rate (the repository's detection/segmentation values), widths.
SIZES = dict(t=('tiny', 0.1, [64, 128, 256, 512]), s=('small', 0.15, [64, 128, 256, 512]),
             b=('base', 0.4, [80, 160, 320, 512]), l=('large', 0.5, [112, 224, 448, 640]))
# Parameters (millions) as built here, a regression pin of the wiring: DINO's backbone and
# channel mapper (mmdet 3.3's DINO transformer has 0.13M fewer parameters than OneDL's 3.5's),
# the whole Mask2Former (the same on both stacks), semantic (ADE20K) and instance (COCO).
PARAMS_M = {
    'dino-4scale_rmt-t_8xb2-12e_coco': 14.19, 'dino-4scale_rmt-s_8xb2-12e_coco': 26.83,
    'dino-4scale_rmt-b_8xb2-12e_coco': 54.04, 'dino-4scale_rmt-l_8xb2-12e_coco': 95.60,
    'mask2former_rmt-t_8xb2-160k_ade20k-512x512': 32.58,
    'mask2former_rmt-s_8xb2-160k_ade20k-512x512': 45.21,
    'mask2former_rmt-b_8xb2-160k_ade20k-512x512': 72.43,
    'mask2former_rmt-l_8xb2-160k_ade20k-512x512': 113.70,
    'mask2former_rmt-s_8xb2-lsj-50e_coco': 45.19, 'mask2former_rmt-b_8xb2-lsj-50e_coco': 72.41,
}


def _size(name: str) -> str:
    """'dino-4scale_rmt-s_8xb2-12e_coco' -> 's'."""
    return name.split('_')[1].split('-')[1]


def _bases(path: Path):
    """Every file ``path`` inherits from, recursively (as written in ``_base_``)."""
    for base in Config._get_base_files(str(path)):
        yield base
        if '::' not in base:
            yield from _bases((path.parent / base).resolve())


def test_every_size_has_configs():
    assert DINO == sorted(f'dino-4scale_rmt-{s}_8xb2-12e_coco' for s in 'tsbl')
    assert MASK2FORMER_SEG == sorted(
        f'mask2former_rmt-{s}_8xb2-160k_ade20k-512x512' for s in 'tsbl')
    assert MASK2FORMER_DET == sorted(f'mask2former_rmt-{s}_8xb2-lsj-50e_coco' for s in 'sb')


@pytest.mark.parametrize('name', QUERY_HEADS)
def test_no_package_base(name):
    """No ``mmdet::``/``mmseg::`` base: the OneDL fork resolves no ``mmseg::`` path."""
    bases = list(_bases(CONFIG_DIR / f'{name}.py'))
    assert bases and not [b for b in bases if '::' in b]


def _check_common(cfg, name: str) -> None:
    arch, dpr, _ = SIZES[_size(name)]
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.arch, backbone.drop_path_rate) == ('RMT', arch, dpr)
    assert backbone.norm_cfg.type == 'SyncBN' and backbone.norm_eval is False
    assert backbone.init_cfg == dict(type='Pretrained',
                                     checkpoint=f'checkpoints/rmt_{_size(name)}_in1k.pth')
    assert 'rmt_mm.plugin' in cfg.custom_imports.imports
    assert cfg.default_hooks.strict_load.type == 'StrictLoadHook'
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    assert cfg.train_dataloader.batch_size == 2 and cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'


@pytest.mark.parametrize('name', DINO)
def test_dino_recipe(name):
    """mmdet's dino-4scale_r50_8xb2-12e_coco.py with RMT stages 2-4 into the ChannelMapper."""
    cfg, scope = load(name)
    _check_common(cfg, name)
    model = cfg.model
    assert scope == 'mmdet' and model.type == 'DINO' and model.num_queries == 900
    assert model.backbone.out_indices == (1, 2, 3)
    assert model.neck.in_channels == SIZES[_size(name)][2][1:] and model.neck.num_outs == 4
    assert (model.encoder.num_layers, model.decoder.num_layers) == (6, 6)
    assert cfg.train_dataloader.dataset.type == 'CheckedCocoDataset'
    optim = cfg.optim_wrapper
    assert (optim.optimizer.lr, optim.optimizer.weight_decay) == (1e-4, 1e-4)
    assert optim.clip_grad.max_norm == 0.1
    assert optim.paramwise_cfg.custom_keys == {'backbone': {'lr_mult': 0.1}}
    (step, ) = cfg.param_scheduler
    assert (cfg.train_cfg.max_epochs, step.milestones) == (12, [11])


@pytest.mark.parametrize('name', MASK2FORMER_SEG)
def test_mask2former_seg_recipe(name):
    """mmseg's mask2former_swin-t_8xb2-160k_ade20k-512x512.py with the RMT widths."""
    cfg, scope = load(name)
    _check_common(cfg, name)
    head = cfg.model.decode_head
    assert scope == 'mmseg' and head.type == 'Mask2FormerHead'
    assert cfg.model.backbone.out_indices == (0, 1, 2, 3)
    assert head.in_channels == SIZES[_size(name)][2]
    assert (head.num_classes, head.num_queries, head.transformer_decoder.num_layers) == \
        (150, 100, 9)
    assert cfg.model.data_preprocessor.size == (512, 512)
    train_types = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert train_types[:3] == ['LoadImageFromFile', 'LoadAnnotations', 'CheckSegLabels']
    optim = cfg.optim_wrapper
    assert (optim.optimizer.lr, optim.optimizer.weight_decay) == (1e-4, 0.05)
    assert optim.clip_grad.max_norm == 0.01 and optim.paramwise_cfg.norm_decay_mult == 0.0
    (poly, ) = cfg.param_scheduler
    assert (poly.type, poly.power, poly.end, cfg.train_cfg.max_iters) == \
        ('PolyLR', 0.9, 160000, 160000)


@pytest.mark.parametrize('name', MASK2FORMER_DET)
def test_mask2former_det_recipe(name):
    """mmdet's mask2former_swin-s-p4-w7-224_8xb2-lsj-50e_coco.py with the RMT widths: COCO
    instances only, large-scale jitter to 1024x1024, 368750 iterations."""
    cfg, scope = load(name)
    _check_common(cfg, name)
    model, head = cfg.model, cfg.model.panoptic_head
    assert scope == 'mmdet' and model.type == 'Mask2Former' and head.type == 'Mask2FormerHead'
    assert model.backbone.out_indices == (0, 1, 2, 3)
    assert head.in_channels == SIZES[_size(name)][2]
    assert (head.num_things_classes, head.num_stuff_classes, head.num_queries) == (80, 0, 100)
    assert len(head.loss_cls.class_weight) == 81 and head.transformer_decoder.num_layers == 9
    assert (model.test_cfg.panoptic_on, model.test_cfg.instance_on) == (False, True)
    assert cfg.train_dataloader.dataset.type == 'CheckedCocoDataset'
    train_types = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert train_types[3:6] == ['RandomResize', 'RandomCrop', 'FilterAnnotations']
    assert cfg.val_evaluator.metric == ['bbox', 'segm']
    optim = cfg.optim_wrapper
    assert (optim.optimizer.lr, optim.optimizer.weight_decay) == (1e-4, 0.05)
    assert optim.clip_grad.max_norm == 0.01 and optim.paramwise_cfg.norm_decay_mult == 0.0
    assert (cfg.train_cfg.max_iters, cfg.param_scheduler.milestones) == \
        (368750, [327778, 355092])


def _registry(scope: str):
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return MODELS


@pytest.mark.parametrize('name', QUERY_HEADS)
def test_full_size_wiring(name):
    """At the config's own arch, built shape-only (meta device): the model has its expected
    size (DINO: backbone and mapper) and the backbone's maps fit the neck (DINO: four
    256-channel levels down to 1/64) or the head's inputs (Mask2Former: its in_channels at its
    strides)."""
    cfg, scope = load(name)
    cfg.model.backbone.init_cfg = None
    with torch.device('meta'):
        model = _registry(scope).build(cfg.model).eval()
        shapes = [tuple(f.shape) for f in model.extract_feat(torch.empty(1, 3, 128, 192))]
    counted = [model.backbone, model.neck] if name in DINO else [model]
    params = sum(p.numel() for part in counted for p in part.parameters()) / 1e6
    assert round(params, 2) == PARAMS_M[name]
    if name in DINO:
        assert shapes == [(1, 256, 128 // s, 192 // s) for s in (8, 16, 32, 64)]
    else:
        head = cfg.model.get('decode_head') or cfg.model.panoptic_head
        assert shapes == [(1, c, 128 // s, 192 // s)
                          for c, s in zip(head.in_channels, head.strides)]


# The tiny backbones of each family, stages 2-4 feeding DINO, all four Mask2Former.
FAMILIES = {'RMT': RMT, 'ResT': ResT, 'ResTV2': ResTV2}


def _swap_backbone(model, family: str, out_indices) -> None:
    """``model`` (a config's model dict) with only the backbone swapped for ``family``'s tiny
    arch (plain BN, no checkpoint); the neck or head takes its widths."""
    arch = tiny_arch(FAMILIES[family])
    model.backbone = dict(type=family, arch=arch, out_indices=out_indices)
    widths = [arch['embed_dims'][i] for i in out_indices]
    (model.get('neck') or model.get('decode_head') or model.panoptic_head).in_channels = widths


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_dino_loss_and_predict(family):
    """One training step and a prediction at 64x96, whose encoder has 128 tokens: fewer than
    the recipe's 900 queries, so the test uses 50 (what configs/demo does at its size)."""
    cfg, _ = load('dino-4scale_rmt-t_8xb2-12e_coco')
    _swap_backbone(cfg.model, family, (1, 2, 3))
    # Thinner where it only costs time: one encoder and two decoder layers.
    cfg.model.num_queries = 50
    cfg.model.encoder.num_layers, cfg.model.decoder.num_layers = 1, 2
    torch.manual_seed(0)
    model = build_detector(cfg)
    check_detector(model, model.neck, with_masks=False)
    # Every backbone parameter trains but RMT's stage-1 output norm, which is why the configs
    # set find_unused_parameters.
    unused = {n for n, p in model.backbone.named_parameters() if p.grad is None}
    assert unused == ({'extra_norms.0.weight', 'extra_norms.0.bias'} if family == 'RMT' else set())
    assert cfg.find_unused_parameters is True


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_mask2former_loss_and_predict(family):
    from mmseg.registry import MODELS
    cfg, _ = load('mask2former_rmt-t_8xb2-160k_ade20k-512x512')
    _swap_backbone(cfg.model, family, (0, 1, 2, 3))
    # The same head, thinner where it only costs time: 10 queries, 3 decoder layers (one per
    # level), one pixel-decoder layer, 1024 sampled points.
    head = cfg.model.decode_head
    head.update(num_queries=10, train_cfg=dict(num_points=1024))
    head.transformer_decoder.num_layers = 3
    head.pixel_decoder.encoder.num_layers = 1
    torch.manual_seed(0)
    check_segmentor(MODELS.build(cfg.model),
                    losses={f'decode.{k}' for k in ('loss_cls', 'loss_mask', 'loss_dice')})


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_mask2former_instance_loss_and_predict(family):
    """The COCO instance config, thinner as above, at 64x96 without the 1024x1024 padding:
    one training step (every backbone parameter trains) and at most 5 instances with masks."""
    cfg, _ = load('mask2former_rmt-s_8xb2-lsj-50e_coco')
    _swap_backbone(cfg.model, family, (0, 1, 2, 3))
    head = cfg.model.panoptic_head
    head.num_queries = 10
    head.transformer_decoder.num_layers = 3
    head.pixel_decoder.encoder.num_layers = 1
    cfg.model.train_cfg.num_points = 1024
    cfg.model.data_preprocessor.batch_augments = None
    cfg.model.test_cfg.max_per_image = 5
    torch.manual_seed(0)
    model = build_detector(cfg)
    check_detector(model, model.backbone, with_masks=True)


def test_mask2former_optimizer_groups():
    """mmseg's Swin rules in RMT terms: the backbone at 0.1 x lr, its norms without weight
    decay (the stem BNs keep it); no decay on the head's norms, queries and level embeddings."""
    from mmseg.registry import MODELS
    cfg, _ = load('mask2former_rmt-t_8xb2-160k_ade20k-512x512')
    cfg.model.backbone.update(init_cfg=None, norm_cfg=dict(type='BN', requires_grad=True))
    model = MODELS.build(cfg.model)
    groups = build_optim_wrapper(model, cfg.optim_wrapper).optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    got = {names[id(p)]: (g['lr'], g['weight_decay']) for g in groups for p in g['params']}
    backbone_norms = [n for n in got if n.startswith('backbone.') and got[n][1] == 0]
    assert {n.split('.')[-2] if 'extra_norms' not in n else 'extra_norms'
            for n in backbone_norms} == {'retention_layer_norm', 'final_layer_norm',
                                         'extra_norms', 'norm'}
    assert all(got[n][0] == pytest.approx(1e-5) for n in backbone_norms)
    assert got['backbone.patch_embed.proj.1.weight'] == (pytest.approx(1e-5), 0.05)
    assert got['backbone.layers.0.blocks.0.ffn.fc1.weight'] == (pytest.approx(1e-5), 0.05)
    assert got['decode_head.query_embed.weight'] == (1e-4, 0.0)
    assert got['decode_head.level_embed.weight'] == (1e-4, 0.0)
    assert got['decode_head.transformer_decoder.post_norm.weight'] == (1e-4, 0.0)
    assert got['decode_head.cls_embed.weight'] == (1e-4, 0.05)


# The repository's detection bases and mmdet's they stand for: what differs on purpose.
OWN_DET_BASES = {
    'datasets/coco_detection.py': 'datasets/coco_detection.py',
    'datasets/coco_instance.py': 'datasets/coco_instance.py',
    'det_runtime.py': 'default_runtime.py',
}


def _plain(cfg: dict) -> dict:
    """``cfg`` without what the repository adds on purpose: the checked dataset type, the
    plugin import, strict loading and the crash-safe checkpoint hook."""
    text = repr(cfg).replace("'CheckedCocoDataset'", "'CocoDataset'")
    text = text.replace("'AtomicCheckpointHook'", "'CheckpointHook'")
    cfg = eval(text)  # noqa: S307 (repr of plain config values)
    cfg.pop('custom_imports', None)
    cfg.get('default_hooks', {}).pop('strict_load', None)
    return cfg


@pytest.mark.parametrize('ours', sorted(OWN_DET_BASES))
def test_own_det_bases_equal_mmdet(ours):
    import mmdet
    theirs = Path(mmdet.__file__).parent / '.mim' / 'configs' / '_base_' / OWN_DET_BASES[ours]
    mine = Config.fromfile(str(CONFIG_DIR / '_base_' / ours)).to_dict()
    assert 'custom_imports' in mine or mine['dataset_type'] == 'CheckedCocoDataset'
    assert _plain(mine) == Config.fromfile(str(theirs)).to_dict()


def test_benchmark_compares_whole_models(capsys):
    """tools/benchmark.py --config: the demo Mask R-CNN, DINO and Mask2Former (semantic)
    predict on the same input, timed side by side, each model's peak memory from a fresh
    process; the first is the yardstick."""
    names = ['maskrcnn_rmt_t_shapes', 'dino-4scale_rmt-t_shapes', 'mask2former_rmt-t_shapes-seg']
    tool_main('benchmark')(['--config', *(str(CONFIG_DIR / 'demo' / f'{n}.py') for n in names),
                            '--size', '96', '128', '--threads', '1', '--repeats', '1',
                            '--warmup', '0'])
    out = capsys.readouterr().out
    for name in names:
        row = next(ln for ln in out.splitlines() if ln.startswith(f'| {name}.py |'))
        numbers = [float(v.strip('()x')) for cell in row.split('|')[2:-1] for v in cell.split()]
        assert len(numbers) == 8 and all(v > 0 for v in numbers), row
        if name == names[0]:
            assert numbers[4:] == [1.0] * 4, row


@pytest.mark.parametrize('argv, parts', [
    (['--config', 'nowhere.py'], ['--config nowhere.py', 'no such file']),
    (['--config', str(CONFIG_DIR / 'demo' / 'maskrcnn_rmt_t_shapes.py'), '--mode', 'train'],
     ['--config measures inference']),
])
def test_benchmark_refuses_configs_it_cannot_measure(argv, parts):
    run = call_tool('benchmark', *argv)
    assert_one_line_error(run.returncode, run.stderr, *parts)
