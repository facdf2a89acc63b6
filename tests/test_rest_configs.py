"""ResT / ResTv2 configs follow the authors' recipes (reference §4), have the sizes they
reported, their full-size models fit together, and their models train and predict (the larger
archs swapped for the tiny ones there); their optimizers give each parameter upstream's weight
decay and (ResTv2-S/B UPerNet) stage-wise learning rate."""
import copy

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from torch import nn

from rmt_mm import models
from rmt_mm.models import REST_ARCHS, RESTV2_ARCHS

from helpers.archs import RESTV2_TINY, tiny_arch
from helpers.configs import family_configs, load
from helpers.det import build_detector, check_loss_and_predict, train_short_sides
from helpers.seg import check_loss_and_predict as check_seg_loss_and_predict

DET_CONFIGS = family_configs('rest_det')
SEG_CONFIGS = family_configs('rest_seg')
ARCHS = dict(ResT=REST_ARCHS, ResTV2=RESTV2_ARCHS)
#: Reference §4: (model, backbone, arch, drop path rate, schedule) per upstream config.
RECIPES = {
    'maskrcnn_rest_s_coco': ('MaskRCNN', 'ResT', 'small', 0.1, 'v1 1x'),
    'maskrcnn_rest_b_coco': ('MaskRCNN', 'ResT', 'base', 0.2, 'v1 1x'),
    'retinanet_rest_s_coco': ('RetinaNet', 'ResT', 'small', 0.1, 'v1 1x'),
    'retinanet_rest_b_coco': ('RetinaNet', 'ResT', 'base', 0.2, 'v1 1x'),
    'maskrcnn_restv2_t_ms-3x_coco': ('MaskRCNN', 'ResTV2', 'tiny', 0.1, 'v2 3x'),
    'maskrcnn_restv2_s_ms-3x_coco': ('MaskRCNN', 'ResTV2', 'small', 0.2, 'v2 3x'),
    'maskrcnn_restv2_b_ms-3x_coco': ('MaskRCNN', 'ResTV2', 'base', 0.3, 'v2 3x'),
    'upernet_restv2_t_ade20k-512x512-160k': ('EncoderDecoder', 'ResTV2', 'tiny', 0.1, '160k'),
    'upernet_restv2_s_ade20k-512x512-160k': ('EncoderDecoder', 'ResTV2', 'small', 0.2, '160k'),
    'upernet_restv2_b_ade20k-512x512-160k': ('EncoderDecoder', 'ResTV2', 'base', 0.3, '160k'),
}
#: Reference §4.1 / §4.2, in millions (UPerNet with its auxiliary head). Mask R-CNN ResT-S is
#: the authors' 2021 figure: their current 31.2M would put B - S at 18.6M, while the models
#: differ only by the backbones and FPN laterals (16.5M, as the RetinaNet pair's 17.1M shows).
UPSTREAM_PARAMS_M = {
    'maskrcnn_rest_s_coco': 33.3, 'maskrcnn_rest_b_coco': 49.8, 'retinanet_rest_s_coco': 23.4,
    'retinanet_rest_b_coco': 40.5, 'maskrcnn_restv2_t_ms-3x_coco': 49.9,
    'maskrcnn_restv2_s_ms-3x_coco': 60.7, 'maskrcnn_restv2_b_ms-3x_coco': 75.5,
    'upernet_restv2_t_ade20k-512x512-160k': 62.1, 'upernet_restv2_s_ade20k-512x512-160k': 72.9,
    'upernet_restv2_b_ade20k-512x512-160k': 87.6,
}
IMAGENET_RGB = ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375], True)
V1_SHORT_SIDES = tuple(range(640, 801, 32))
V2_SHORT_SIDES = (480, 512, 534, 576, 640, 672, 704, 736, 768, 800)
DECAY = 0.9


def config(name: str):
    return load(name)[0]


def test_every_config_has_a_recipe():
    assert sorted(RECIPES) == sorted(DET_CONFIGS + SEG_CONFIGS)


@pytest.mark.parametrize('name', DET_CONFIGS + SEG_CONFIGS)
def test_backbone_and_data_match_upstream(name):
    model_type, backbone_type, arch, drop_path, _ = RECIPES[name]
    cfg = config(name)
    backbone = cfg.model.backbone
    assert (cfg.model.type, backbone.type, backbone.arch, backbone.drop_path_rate) == \
        (model_type, backbone_type, arch, drop_path)
    # Upstream fine-tuned plain per-GPU BatchNorm in train mode.
    assert backbone.norm_cfg == dict(type='BN', requires_grad=True) and backbone.norm_eval is False
    assert backbone.init_cfg == dict(
        type='Pretrained', checkpoint=f'checkpoints/{backbone_type.lower()}_{arch[0]}_in1k.pth')
    pre = cfg.model.data_preprocessor
    assert (pre.mean, pre.std, pre.bgr_to_rgb) == IMAGENET_RGB
    assert cfg.train_dataloader.batch_size == 2 and cfg.auto_scale_lr.base_batch_size == 16
    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == 'AdamW' and optimizer.betas == (0.9, 0.999)


@pytest.mark.parametrize('name', DET_CONFIGS)
def test_detection_recipe_matches_upstream(name):
    detector, backbone_type, arch, _, schedule = RECIPES[name]
    cfg = config(name)
    backbone, neck, optim = cfg.model.backbone, cfg.model.neck, cfg.optim_wrapper
    out_indices = (1, 2, 3) if detector == 'RetinaNet' else (0, 1, 2, 3)
    assert backbone.out_indices == out_indices
    dims = ARCHS[backbone_type][arch]['embed_dims']
    assert neck.in_channels == [dims[i] for i in out_indices] and neck.num_outs == 5
    assert cfg.model.data_preprocessor.pad_size_divisor == 32
    if detector == 'RetinaNet':  # detectron2's LastLevelP6P7: P6 from C5, P7 from ReLU(P6)
        assert (neck.start_level, neck.add_extra_convs, neck.relu_before_extra_convs) == \
            (0, 'on_input', True)
    else:  # P6 by max-pooling P5
        assert neck.get('start_level', 0) == 0 and not neck.get('add_extra_convs', False)
    assert (optim.optimizer.lr, optim.optimizer.weight_decay) == (1e-4, 0.05)
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.by_epoch, warmup.end) == \
        ('LinearLR', 0.001, False, 1000)
    pipeline = cfg.train_dataloader.dataset.pipeline
    ops = [t['type'] for t in pipeline]
    assert pipeline[1].get('with_mask', False) == (detector == 'MaskRCNN')
    if schedule == 'v1 1x':
        assert backbone.frozen_stages == 1  # detectron2 FREEZE_AT=2
        assert optim.type == 'OptimWrapper' and optim.get('clip_grad') is None
        assert optim.paramwise_cfg == dict(norm_decay_mult=0.0, bias_decay_mult=0.002)
        epochs, milestones, short_sides = 12, [8, 11], V1_SHORT_SIDES
        assert ops[2:] == ['RandomChoiceResize', 'RandomFlip', 'PackDetInputs']
    else:
        assert backbone.get('frozen_stages', -1) == -1
        assert optim.type == 'AmpOptimWrapper' and optim.loss_scale == 'dynamic'
        assert optim.clip_grad == dict(max_norm=0.01, norm_type=2)
        assert optim.paramwise_cfg == dict(norm_decay_mult=0.0)
        epochs, milestones, short_sides = 36, [27, 33], V2_SHORT_SIDES
        assert ops[2:] == ['RandomCrop', 'RandomChoiceResize', 'RandomFlip', 'PackDetInputs']
        crop = pipeline[2]
        assert (crop.crop_type, crop.crop_size, crop.recompute_bbox, crop.allow_negative_crop) \
            == ('relative', (0.9, 0.9), True, True)
    assert cfg.train_cfg.max_epochs == epochs
    assert (steps.type, steps.by_epoch, steps.milestones, steps.gamma) == \
        ('MultiStepLR', True, milestones, 0.1)
    resize = pipeline[ops.index('RandomChoiceResize')]
    assert resize.scales == [(1333, s) for s in short_sides] and resize.keep_ratio
    test_resize = next(t for t in cfg.test_dataloader.dataset.pipeline if t['type'] == 'Resize')
    assert test_resize.scale == (1333, 800) and test_resize.keep_ratio


@pytest.mark.parametrize('name', SEG_CONFIGS)
def test_segmentation_recipe_matches_upstream(name):
    arch = RECIPES[name][2]
    cfg, scope = load(name)
    model, optim = cfg.model, cfg.optim_wrapper
    assert scope == 'mmseg'
    assert model.backbone.out_indices == (0, 1, 2, 3)
    assert model.backbone.get('frozen_stages', -1) == -1
    dims = RESTV2_ARCHS[arch]['embed_dims']
    head, aux = model.decode_head, model.auxiliary_head
    assert (head.type, head.in_channels, head.channels, head.pool_scales, head.dropout_ratio,
            head.num_classes) == ('UPerHead', dims, 512, (1, 2, 3, 6), 0.1, 150)
    assert (aux.type, aux.in_index, aux.in_channels, aux.channels, aux.num_convs,
            aux.num_classes, aux.loss_decode.loss_weight) == \
        ('FCNHead', 2, dims[2], 256, 1, 150, 0.4)
    assert head.norm_cfg.type == aux.norm_cfg.type == 'SyncBN'
    assert model.data_preprocessor.size == (512, 512) and model.test_cfg.mode == 'whole'
    crop = next(t for t in cfg.train_dataloader.dataset.pipeline if t['type'] == 'RandomCrop')
    assert crop['crop_size'] == (512, 512)
    warmup, poly = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.by_epoch, warmup.end) == \
        ('LinearLR', 1e-6, False, 1500)
    assert (poly.type, poly.power, poly.eta_min, poly.begin, poly.end) == \
        ('PolyLR', 1.0, 0.0, 1500, 160000)
    assert cfg.train_cfg.max_iters == 160000
    assert optim.type == 'OptimWrapper' and optim.get('clip_grad') is None
    if arch == 'tiny':
        assert (optim.optimizer.lr, optim.optimizer.weight_decay) == (6e-5, 0.01)
        assert 'constructor' not in optim
        assert optim.paramwise_cfg == dict(custom_keys=dict(norm=dict(decay_mult=0.0)))
    else:
        assert (optim.optimizer.lr, optim.optimizer.weight_decay) == (1.5e-4, 0.05)
        assert optim.constructor == 'ResTStageDecayOptimizerConstructor'
        assert optim.paramwise_cfg == dict(decay_rate=DECAY)


def _build(name: str, device: str = 'cpu'):
    cfg, scope = load(name)
    cfg.model.backbone.init_cfg = None
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    with torch.device(device):
        return registry.build(cfg.model), cfg


@pytest.mark.parametrize('name', DET_CONFIGS + SEG_CONFIGS)
def test_model_has_upstream_parameter_count(name):
    """Built shape-only (meta device); upstream reported sizes to 0.1M."""
    model, _ = _build(name, 'meta')
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert round(params, 1) == UPSTREAM_PARAMS_M[name], params


#: Configs whose train/predict test runs the real backbone: the smallest arch of each model and
#: family. The others swap in the family's tiny arch (same heads, their input widths adjusted);
#: every config's full-size wiring is checked on the meta device below.
FULL_ARCH = {'maskrcnn_rest_s_coco', 'retinanet_rest_s_coco', 'maskrcnn_restv2_t_ms-3x_coco',
             'upernet_restv2_t_ade20k-512x512-160k'}


@pytest.mark.parametrize('name', DET_CONFIGS)
def test_detector_trains_and_predicts(name):
    """v1's frozen stem and stage 1 get no gradient, v2 trains everything."""
    arch = None if name in FULL_ARCH else tiny_arch(getattr(models, RECIPES[name][1]))
    model = build_detector(config(name), arch)
    check_loss_and_predict(model, model.backbone.stage4, RECIPES[name][0] == 'MaskRCNN')
    frozen = [p for m in (model.backbone.stem, model.backbone.stage1) for p in m.parameters()]
    assert all((p.grad is None) == (RECIPES[name][4] == 'v1 1x') for p in frozen)


@pytest.mark.parametrize('name', SEG_CONFIGS)
def test_segmentor_trains_and_predicts(name):
    cfg, scope = load(name)
    cfg.model.backbone.init_cfg = None
    if name not in FULL_ARCH:
        dims = RESTV2_TINY['embed_dims']
        cfg.model.backbone.arch = copy.deepcopy(RESTV2_TINY)
        cfg.model.decode_head.in_channels = dims
        cfg.model.auxiliary_head.in_channels = dims[cfg.model.auxiliary_head.in_index]
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    check_seg_loss_and_predict(registry.build(cfg.model))


@pytest.mark.parametrize('name', DET_CONFIGS + SEG_CONFIGS)
def test_full_size_backbone_and_neck_fit(name):
    """At the config's own arch, shape-only (meta device): the backbone's outputs feed the neck
    (detectors: 5 levels of 256 channels from 1/4 or 1/8 of the input on) or the decode head
    (logits at 1/4) and the auxiliary head (logits at 1/16)."""
    model, _ = _build(name, 'meta')
    model.eval()  # train-mode BN refuses the PPM's 1x1 pooled maps of one image
    with torch.device('meta'):
        feats = model.extract_feat(torch.empty(1, 3, 128, 192))
        if name in SEG_CONFIGS:
            shapes = [tuple(model.decode_head(feats).shape),
                      tuple(model.auxiliary_head(feats).shape)]
    if name in SEG_CONFIGS:
        assert shapes == [(1, 150, 32, 48), (1, 150, 8, 12)]
        return
    first = 8 if RECIPES[name][0] == 'RetinaNet' else 4
    strides = [first * 2**i for i in range(5)]  # each level rounds up
    assert [tuple(f.shape) for f in feats] == [(1, 256, -(-128 // s), -(-192 // s))
                                               for s in strides]


@pytest.mark.parametrize('name, short_sides', [('maskrcnn_rest_s_coco', V1_SHORT_SIDES),
                                               ('maskrcnn_restv2_t_ms-3x_coco', V2_SHORT_SIDES)])
def test_train_pipeline_runs_on_real_images(tmp_path, name, short_sides):
    """Resize choices (after v2's relative crop) give the listed short sides (+-1 rounding)
    with consistent boxes and masks."""
    seen = train_short_sides(config(name), str(tmp_path))
    assert len(seen) > 1 and all(min(abs(s - t) for t in short_sides) <= 1 for s in seen), seen


def _param_groups(model: nn.Module, optim_wrapper: dict) -> dict:
    """``{parameter name: (lr / base lr, weight decay)}`` of the optimizer the config builds."""
    wrapper = build_optim_wrapper(model, optim_wrapper)
    base_lr = optim_wrapper['optimizer']['lr']
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            assert names[id(p)] not in groups, names[id(p)]
            groups[names[id(p)]] = (round(group['lr'] / base_lr, 6), group['weight_decay'])
    return groups


@pytest.mark.parametrize('name, expected', [
    # detectron2 0.4: no decay on norm layers, 1e-4 on biases, 0.05 on the rest.
    ('maskrcnn_rest_s_coco', {'backbone.stage2.0.attn.q.weight': 0.05,
                              'backbone.stage2.0.attn.q.bias': 1e-4,
                              'backbone.stage2.0.norm1.weight': 0.0,
                              'backbone.patch_embed_2.norm.bias': 0.0,  # BatchNorm
                              'backbone.norm2.weight': 0.0,
                              'neck.lateral_convs.0.conv.bias': 1e-4,
                              'roi_head.bbox_head.fc_cls.weight': 0.05}),
    # detectron2 0.6: no decay on norm layers, 0.05 on everything else.
    ('maskrcnn_restv2_t_ms-3x_coco', {'backbone.stem.proj.1.weight': 0.0,  # BatchNorm
                                      'backbone.stem.proj.6.bias': 0.05,
                                      'backbone.patch_2.norm.weight': 0.0,
                                      'backbone.stage3.0.attn.up_norm.bias': 0.0,
                                      'backbone.norm_1.0.bias': 0.0,
                                      'backbone.stage3.0.mlp.fc1.bias': 0.05,
                                      'rpn_head.rpn_conv.weight': 0.05}),
])
def test_detection_weight_decay_as_upstream(name, expected):
    model, cfg = _build(name, 'meta')
    cfg.optim_wrapper.type = 'OptimWrapper'  # AMP needs CUDA; the groups are the same
    cfg.optim_wrapper.pop('loss_scale', None)
    groups = _param_groups(model, cfg.optim_wrapper)
    assert {n: pytest.approx(groups[n][1]) for n in expected} == expected
    assert {lr for lr, _ in groups.values()} == {1.0}


def test_stage_decay_multipliers_of_restv2_upernet():
    """The S config's optimizer: stem 0.9^5, stage k (with its patch embed) 0.9^(5-k), heads
    and the fresh output norms 1; no weight decay on 1-D parameters."""
    model, cfg = _build('upernet_restv2_s_ade20k-512x512-160k', 'meta')
    groups = _param_groups(model, cfg.optim_wrapper)
    expected = {
        'backbone.stem.proj.0.weight': (DECAY**5, 0.05),
        'backbone.stem.proj.1.weight': (DECAY**5, 0.0),
        'backbone.stage1.0.attn.q.weight': (DECAY**4, 0.05),
        'backbone.patch_2.proj.weight': (DECAY**3, 0.05),
        'backbone.patch_2.norm.weight': (DECAY**3, 0.0),
        'backbone.stage2.1.attn.sr.weight': (DECAY**3, 0.05),
        'backbone.stage3.11.mlp.fc1.weight': (DECAY**2, 0.05),
        'backbone.stage3.11.mlp.fc1.bias': (DECAY**2, 0.0),
        'backbone.stage4.1.attn.up.0.weight': (DECAY, 0.05),
        'backbone.norm_4.0.weight': (1.0, 0.0),
        'decode_head.conv_seg.weight': (1.0, 0.05),
        'auxiliary_head.convs.0.conv.weight': (1.0, 0.05),
    }
    assert {n: groups[n] for n in expected} == {n: (round(lr, 6), wd)
                                                 for n, (lr, wd) in expected.items()}
    assert set(groups) == {n for n, p in model.named_parameters()}
