"""Whole models through mmdeploy (tools/deploy.py, rmt_mm.deploy): tiny-arch RMT RetinaNet,
Mask R-CNN, DINO, UperNet, Semantic FPN and Mask2Former (semantic) exported with
configs/deploy/ at opset 11 (static and dynamic), run with onnxruntime (default graph
optimizations) through mmdeploy's wrapper and compared with PyTorch; and the one-line errors of
bad input.

The weights are random (no trained weights of these tiny archs exist): the graph is the point.
Every PyTorch detection has an ONNX twin (same label, IoU >= 0.99, masks equal); the
comparison on trained demo weights is in docs/benchmarks.md.
"""
import copy
import os
import sys

import numpy as np
import pytest
import torch

from rmt_mm import deploy as dep
from rmt_mm.errors import ConfigError
from rmt_mm.models import RMT

from helpers import CONFIG_DIR
from helpers.archs import tiny_arch
from helpers.tools import assert_one_line_error, call_tool, run_tool

DEPLOY_DIR = CONFIG_DIR / 'deploy'
needs_mmdeploy = pytest.mark.skipif(dep.mmdeploy_missing() is not None,
                                    reason='mmdeploy is not installed (it runs on the 2024 '
                                    'stack only: make env STACK=openmmlab)')


def write_image(path, h: int, w: int, seed: int = 0) -> str:
    import mmcv
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[h // 4:h // 2, w // 4:w // 2] = (255, 40, 40)  # one flat object
    mmcv.imwrite(img, str(path))
    return str(path)


def tiny_config(name: str, tmp_path, scale, arch_cls=RMT):
    """configs/<name>.py with the tiny arch, test images resized to fit ``scale`` (W, H) or
    kept at their size (``scale=None``), written to ``tmp_path``; and the path of a
    random-init checkpoint of it."""
    from rmt_mm.cli import load_config
    cfg, scope = load_config(str(CONFIG_DIR / f'{name}.py'))
    arch = tiny_arch(arch_cls)
    model = cfg.model
    model.backbone.update(arch=arch, init_cfg=None, norm_cfg=dict(type='BN', requires_grad=True))
    widths = [arch['embed_dims'][i] for i in model.backbone.get('out_indices', (0, 1, 2, 3))]
    if 'neck' in model:
        model.neck.in_channels = widths
    elif 'panoptic_head' in model:
        model.panoptic_head.in_channels = widths
    else:
        model.decode_head.in_channels = widths
        if model.get('auxiliary_head'):
            model.auxiliary_head.in_channels = widths[2]
    for norm_owner in ('decode_head', 'auxiliary_head'):
        if model.get(norm_owner) and 'norm_cfg' in model[norm_owner]:
            model[norm_owner].norm_cfg = dict(type='BN', requires_grad=True)
    for step in cfg.test_pipeline:
        if step['type'] == 'Resize':
            step.update(scale=scale, scale_factor=None if scale else 1.0, keep_ratio=True)
    stem = name.rpartition('/')[2]
    path = tmp_path / f'{stem}.py'
    cfg.dump(str(path))

    import importlib
    registry = importlib.import_module(f'{scope}.registry').MODELS
    built = registry.build(cfg.model)
    built.init_weights()
    if hasattr(built, 'bbox_head') and hasattr(built.bbox_head, 'retina_cls'):
        # Scores around 0.5 instead of the prior 0.01: detections above the 0.05 threshold.
        torch.nn.init.zeros_(built.bbox_head.retina_cls.bias)
    if hasattr(built, 'rpn_head'):
        # Where mmdeploy's own two-stage post-processing departs from mmdet's: RPN scores
        # around 0.02 (mmdeploy drops proposals below 0.05, mmdet keeps them), spread apart so
        # that no two tie, and a box per class that differs between classes (mmdeploy gives
        # every class the best class's box).
        torch.nn.init.normal_(built.rpn_head.rpn_cls.weight, std=0.3)
        torch.nn.init.constant_(built.rpn_head.rpn_cls.bias, -4.0)
        torch.nn.init.normal_(built.roi_head.bbox_head.fc_reg.weight, std=0.15)
        torch.nn.init.normal_(built.roi_head.bbox_head.fc_cls.weight, std=0.1)
    head = getattr(built, 'decode_head', None)
    if hasattr(head, 'cls_embed'):
        # Mask2Former: masks of a few queries each, sharp enough (mask logits of about +-10)
        # that the label map differs between places.
        torch.nn.init.normal_(head.mask_embed[-1].weight, std=1.0)
    ckpt = tmp_path / f'{stem}.pth'
    torch.save(dict(state_dict=built.state_dict(), meta={}), ckpt)
    return str(path), str(ckpt)


def run_deploy(deploy_name: str, config: str, ckpt: str, image: str, work_dir, *extra):
    run = call_tool('deploy', DEPLOY_DIR / f'{deploy_name}.py', config, ckpt, image,
                    '--work-dir', work_dir, *extra)
    return run


def comparisons(run):
    return [line for line in run.stdout.splitlines() if line.endswith('OK') or 'MISMATCH' in line]


def assert_only_results(run) -> None:
    """Quiet by default: the export's line, the SDK folder's and the comparisons, nothing else
    (no mmengine log, no checkpoint-loading print, no tracer warning)."""
    lines = run.stdout.splitlines()
    assert lines[0].endswith(' s)') and 'takes' in lines[0], run.stdout
    assert 'mmdeploy SDK model folder' in lines[1], run.stdout
    assert len(lines) == 2 + len(comparisons(run)), run.stdout
    assert not run.stderr, run.stderr


def check_detections(deploy_name, config, ckpt, images, work_dir, *extra):
    """Export and compare on ``images`` (the first traced on): every PyTorch detection has a
    twin agreeing to float precision."""
    run = run_deploy(deploy_name, config, ckpt, images[0], work_dir, *extra)
    assert run.returncode == 0, run.stdout + run.stderr
    assert_only_results(run)
    cfg = dep.load_deploy_config(str(DEPLOY_DIR / f'{deploy_name}.py'))
    from rmt_mm.cli import load_config
    model_cfg, _ = load_config(config)
    shape = [int(v) for v in extra[1:3]] if extra and extra[0] == '--shape' else None
    cfg, model_cfg = dep.prepare_configs(cfg, model_cfg, shape, deploy_name)
    model = dep.build_torch_model(cfg, model_cfg, ckpt)
    results = dep.compare(cfg, model_cfg, model, str(work_dir / 'end2end.onnx'), images,
                          score_thr=0.0)
    for result in results:
        print(result.line())
        n = result.numbers
        assert n['matched'] == n['confident'] > 0, result.line()
        assert n['max_score_diff'] <= 1e-4 and n['max_box_diff'] <= 1e-2, result.line()
        assert n['min_iou'] >= 0.99, result.line()
        assert n.get('max_mask_diff', 0.0) <= 0.01, result.line()
    return results


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp('images')
    return dict(square=write_image(root / 'square.png', 192, 192),
                wide=write_image(root / 'wide.png', 160, 224, seed=1),
                tall=write_image(root / 'tall.png', 384, 192, seed=2))


@needs_mmdeploy
def test_retinanet_dynamic(images, tmp_path):
    config, ckpt = tiny_config('retinanet_rmt_t_coco', tmp_path, (160, 160))
    results = check_detections('detection_onnxruntime_dynamic', config, ckpt,
                               [images['square'], images['wide']], tmp_path / 'out')
    assert {r.size for r in results} == {(160, 160), (128, 160)}  # one file, two sizes


@needs_mmdeploy
def test_maskrcnn_static(images, tmp_path):
    config, ckpt = tiny_config('demo/maskrcnn_rmt_t_shapes', tmp_path, (128, 128))
    results = check_detections('instance-seg_onnxruntime_static', config, ckpt,
                               [images['wide']], tmp_path / 'out', '--shape', '96', '128')
    assert results[0].size == (96, 128)


@needs_mmdeploy
def test_maskrcnn_dynamic(images, tmp_path):
    config, ckpt = tiny_config('demo/maskrcnn_rmt_t_shapes', tmp_path, (128, 128))
    results = check_detections('instance-seg_onnxruntime_dynamic', config, ckpt,
                               [images['square'], images['wide']], tmp_path / 'out')
    assert 'max_mask_diff' in results[0].numbers


@pytest.fixture(scope='module')
def two_stage_heads():
    """The demo Mask R-CNN's RPN head (random weights), box-head config and test_cfg."""
    from mmdet.registry import MODELS

    from rmt_mm.cli import load_config
    cfg, _ = load_config(str(CONFIG_DIR / 'demo' / 'maskrcnn_rmt_t_shapes.py'))
    test_cfg = cfg.model.test_cfg
    rpn = MODELS.build(dict(cfg.model.rpn_head, test_cfg=test_cfg.rpn)).eval()
    return rpn, cfg.model.roi_head.bbox_head, test_cfg


def under_rewriters(fn):
    """``fn()`` in PyTorch under mmdeploy's rewriting for onnxruntime (this package's
    rewriters where it has them, else mmdeploy's), its score-0 padding dropped."""
    from mmdeploy.core import RewriterContext
    deploy_cfg = dep.load_deploy_config(str(DEPLOY_DIR / 'instance-seg_onnxruntime_static.py'))
    dep.register_rewriters()
    with RewriterContext(cfg=deploy_cfg, backend='onnxruntime'), torch.no_grad():
        dets, labels = fn()
    keep = dets[0, :, 4] > 0  # mmdeploy pads with score-0 rows
    return dets[0][keep], labels[0][keep]


@needs_mmdeploy
def test_rpn_proposals_are_mmdets(two_stage_heads):
    """rmt_mm.deploy.rewriters.rpn_proposals gives mmdet's proposals (per-level NMS, no score
    threshold); mmdeploy's own rewrite does not (scores around 0.02 are below its 0.05)."""
    rpn, _, test_cfg = two_stage_heads
    gen, (h, w) = torch.Generator().manual_seed(0), (96, 128)
    sizes = [(h // s + 1, w // s + 1) for s in (4, 8, 16, 32, 64)]
    anchors = rpn.num_base_priors
    cls = [torch.randn(1, anchors, *hw, generator=gen) * 1.5 - 4 for hw in sizes]
    reg = [torch.randn(1, 4 * anchors, *hw, generator=gen) * 0.5 for hw in sizes]
    args = dict(batch_img_metas=[dict(img_shape=(h, w))], cfg=test_cfg.rpn, rescale=False)
    with torch.no_grad():
        want = rpn.predict_by_feat(cls, reg, **args)[0]
    got, _ = under_rewriters(lambda: rpn.predict_by_feat(cls, reg, **args))
    assert len(want) == test_cfg.rpn.max_per_img
    torch.testing.assert_close(got[:, :4], want.bboxes)
    torch.testing.assert_close(got[:, 4], want.scores)


@needs_mmdeploy
@pytest.mark.parametrize('class_agnostic', [False, True])
def test_rcnn_detections_are_mmdets(two_stage_heads, class_agnostic):
    """rmt_mm.deploy.rewriters.rcnn_detections gives mmdet's detections (each class its own box);
    mmdeploy's own rewrite does not (every class of a RoI gets its best class's box). A
    class-agnostic head (Cascade R-CNN's usual) shares one box among the classes."""
    from mmdet.registry import MODELS
    _, head_cfg, test_cfg = two_stage_heads
    head = MODELS.build(dict(head_cfg, reg_class_agnostic=class_agnostic)).eval()
    gen, (h, w), n = torch.Generator().manual_seed(0), (96, 128), 100
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) * 0.8
    rois = torch.cat([torch.zeros(n, 1), xy, xy + 8 + 40 * torch.rand(n, 2, generator=gen)], 1)
    cls = torch.randn(n, head.num_classes + 1, generator=gen) * 2
    reg = torch.randn(n, 4 * (1 if class_agnostic else head.num_classes), generator=gen) * 0.5
    metas = [dict(img_shape=(h, w))]
    with torch.no_grad():
        want = head.predict_by_feat((rois, ), (cls, ), (reg, ), metas, test_cfg.rcnn)[0]

    boxes, labels = under_rewriters(lambda: head.predict_by_feat(
        rois[None], cls[None], reg[None], metas, test_cfg.rcnn))
    assert len(want) == test_cfg.rcnn.max_per_img
    torch.testing.assert_close(boxes[:, :4], want.bboxes)
    torch.testing.assert_close(boxes[:, 4], want.scores)
    assert labels.tolist() == want.labels.tolist()


@needs_mmdeploy
def test_other_nms_is_refused_in_one_line(two_stage_heads):
    """Soft-NMS has no ONNX operator: the export says so instead of writing plain NMS."""
    from mmdet.registry import MODELS
    _, head_cfg, test_cfg = two_stage_heads
    head = MODELS.build(head_cfg).eval()
    cfg = copy.deepcopy(test_cfg.rcnn)
    cfg.nms = dict(type='soft_nms', iou_threshold=0.5)
    rois = torch.tensor([[[0., 0., 0., 10., 10.]]])
    with pytest.raises(ConfigError, match="uses 'soft_nms'; the export writes plain NMS"):
        under_rewriters(lambda: head.predict_by_feat(
            rois, torch.zeros(1, 1, head.num_classes + 1), torch.zeros(1, 1, 4 * head.num_classes),
            [dict(img_shape=(16, 16))], cfg))


def check_segmentation(deploy_name, config, ckpt, images, work_dir, *extra):
    run = run_deploy(deploy_name, config, ckpt, images[0], work_dir, '--verify', *images,
                     *extra)
    lines = comparisons(run)
    print('\n'.join(lines))
    assert run.returncode == 0 and len(lines) == len(images), run.stdout + run.stderr
    assert_only_results(run)
    return lines


def test_quiet_keeps_warnings_logs_and_prints_out():
    """What a deploy runs under (rmt_mm.deploy.quiet): warnings, mmengine's log records below
    ERROR and prints stay out unless ``verbose``; errors still come through."""
    import contextlib
    import io
    import logging
    import warnings

    from mmengine.logging import MMLogger, print_log

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger = MMLogger.get_current_instance()
    handler = Collect()
    logger.addHandler(handler)
    try:
        for verbose in (True, False):
            seen, out = [], io.StringIO()
            with contextlib.redirect_stdout(out), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always')
                with dep.quiet(verbose):
                    warnings.warn('a tracer warning', UserWarning, stacklevel=1)
                    print('Loads checkpoint')
                    print_log('an info record', logger='current', level=logging.INFO)
                    print_log('an error record', logger='current', level=logging.ERROR)
            seen += [out.getvalue()] + [str(w.message) for w in caught]
            shown = {m for m in ('a tracer warning', 'Loads checkpoint', 'an info record',
                                 'an error record') if any(m in s for s in seen)}
            assert shown == ({'a tracer warning', 'Loads checkpoint', 'an info record',
                              'an error record'} if verbose else {'an error record'}), shown
    finally:
        logger.removeHandler(handler)


def test_quiet_drops_native_warnings_and_passes_the_rest_on(capfd):
    """torch's C++ code and onnxruntime write their warnings to file descriptor 2 itself (an
    export with mmdeploy's custom ops printed one per call): quiet drops those lines and passes
    any other on; verbose shows everything."""
    lines = [b'[W shape_type_inference.cpp:1974] Warning: a torch warning\n',
             b'[W1207 20:38:51.123456 4242 graph.cpp:1] a newer torch warning\n',
             b'2026-12-07 20:38:51.1 [W:onnxruntime:, graph.cc:1] an onnxruntime warning\n',
             b'a native error line\n']
    for verbose in (True, False):
        with dep.quiet(verbose):
            for line in lines:
                os.write(2, line)
        err = capfd.readouterr().err
        assert [w in err for w in ('a torch warning', 'a newer torch warning',
                                   'an onnxruntime warning')] == [verbose] * 3, err
        assert 'a native error line' in err


@needs_mmdeploy
def test_upernet_static_and_dynamic(images, tmp_path):
    """Logits within 1e-4 and the same predictions, also where the stride-32 map does not
    divide by the pyramid-pooling scales (mmdeploy's own rewrite is exact only where it does,
    and only at the traced size); the dynamic file at two sizes."""
    config, ckpt = tiny_config('upernet_rmt_s_ade20k-512x512-160k', tmp_path, None)
    lines = check_segmentation('segmentation_onnxruntime_static', config, ckpt,
                               [images['wide']], tmp_path / 'static', '--shape', '192', '192')
    assert '(192x192)' in lines[0]
    lines = check_segmentation('segmentation_onnxruntime_dynamic', config, ckpt,
                               [images['square'], images['tall'], images['wide']],
                               tmp_path / 'dynamic')
    assert '(384x192)' in lines[1] and '(160x224)' in lines[2]


@needs_mmdeploy
def test_semantic_fpn_dynamic(images, tmp_path):
    """Traced at 192x192, exact at 160x224 (mmseg's Upsample freezes its size in the graph
    without :func:`rmt_mm.deploy.register_rewriters`)."""
    config, ckpt = tiny_config('demo/fpn_rmt_t_shapes-seg', tmp_path, None)
    lines = check_segmentation('segmentation_onnxruntime_dynamic', config, ckpt,
                               [images['square'], images['wide']], tmp_path / 'out')
    assert '(160x224)' in lines[1]


@needs_mmdeploy
def test_dino_dynamic(images, tmp_path):
    """DINO 4-scale: deformable attention through mmdeploy's ``grid_sampler`` custom op,
    every detection with a twin at the traced 192x192 and at 160x224."""
    config, ckpt = tiny_config('demo/dino-4scale_rmt-t_shapes', tmp_path, None)
    results = check_detections('detection_onnxruntime_dynamic', config, ckpt,
                               [images['square'], images['wide']], tmp_path / 'out')
    assert '(160x224)' in results[1].line()


@needs_mmdeploy
def test_mask2former_semantic_dynamic(images, tmp_path):
    """mmseg's Mask2Former (the tracer refuses its stock ``predict``; see
    :func:`rmt_mm.deploy.rewriters.mask2former_seg_logits`), traced at 192x192 and exact at
    160x224, in opset-11 operators (its einsums as batched matmuls)."""
    config, ckpt = tiny_config('demo/mask2former_rmt-t_shapes-seg', tmp_path, None)
    lines = check_segmentation('segmentation_onnxruntime_dynamic', config, ckpt,
                               [images['square'], images['wide']], tmp_path / 'out')
    assert '(160x224)' in lines[1]
    import onnx
    graph = onnx.load(str(tmp_path / 'out' / 'end2end.onnx')).graph
    assert 'Einsum' not in {node.op_type for node in graph.node}


@pytest.mark.parametrize('equation, shapes', [
    ('bqc,bchw->bqhw', [(2, 5, 7), (2, 7, 3, 4)]),
    ('bqc,bqhw->bchw', [(2, 5, 7), (2, 5, 3, 4)]),
    ('bij,bkj->bki', [(2, 3, 4), (2, 5, 4)]),
    ('bi,bi->b', [(2, 3), (2, 3)]),
    ('ij,jk->ik', [(3, 4), (4, 5)]),  # no batch index: torch.einsum's own
    ('bij,bjk,bkl->bil', [(2, 3, 4), (2, 4, 5), (2, 5, 6)]),  # three operands: the same
    ('bii,bi->b', [(2, 3, 3), (2, 3)]),  # a diagonal: the same
])
def test_einsum_as_bmm_is_einsum(monkeypatch, equation, shapes):
    pytest.importorskip('mmdeploy')
    from mmdeploy.core import FUNCTION_REWRITER

    from rmt_mm.deploy.rewriters import einsum_as_bmm

    class Context:
        origin_func = staticmethod(torch.einsum)

    monkeypatch.setattr(FUNCTION_REWRITER, 'get_context', lambda *a, **k: Context)
    operands = [torch.randn(shape) for shape in shapes]
    torch.testing.assert_close(einsum_as_bmm(equation, *operands),
                               torch.einsum(equation, *operands))


# Bad input: one line each, nothing exported.

def test_missing_mmdeploy(monkeypatch, images, tmp_path):
    monkeypatch.setitem(sys.modules, 'mmdeploy', None)
    run = run_deploy('detection_onnxruntime_dynamic', CONFIG_DIR / 'retinanet_rmt_t_coco.py',
                     tmp_path / 'none.pth', images['square'], tmp_path)
    assert_one_line_error(run.returncode, run.stderr, 'needs mmdeploy', 'torch 2.1',
                          'mmcv 2.1.0', 'make env STACK=openmmlab', "pip install 'rmt_mm[deploy]'")


@pytest.fixture(scope='module')
def retina(tmp_path_factory):
    return tiny_config('retinanet_rmt_t_coco', tmp_path_factory.mktemp('retina'), (160, 160))


@needs_mmdeploy
@pytest.mark.parametrize('deploy_name, parts', [
    ('instance-seg_onnxruntime_dynamic', ('outputs', 'without a mask head',
                                          'detection_onnxruntime_')),
    ('segmentation_onnxruntime_dynamic', ('a mmseg deploy config', 'mmdet config')),
    ('detection_onnxruntime_static', ('static deploy config needs', '--shape')),
])
def test_config_mismatch(deploy_name, parts, retina, images, tmp_path):
    run = run_deploy(deploy_name, *retina, images['square'], tmp_path)
    assert_one_line_error(run.returncode, run.stderr, *parts)


@needs_mmdeploy
def test_mmdet_mask2former_is_refused_in_one_line(retina, images, tmp_path):
    """mmdeploy would export it and read its per-query logits as boxes: no file is written."""
    config = CONFIG_DIR / 'mask2former_rmt-s_8xb2-lsj-50e_coco.py'
    run = run_deploy('detection_onnxruntime_dynamic', config, retina[1], images['square'],
                     tmp_path / 'out')
    assert_one_line_error(run.returncode, run.stderr, str(config), 'Mask2Former',
                          'instance post-processing', "mmseg's Mask2Former")
    assert not (tmp_path / 'out').exists()


@needs_mmdeploy
def test_unsupported_backend(retina, images, tmp_path):
    bad = tmp_path / 'trt.py'
    bad.write_text(f"_base_ = ['{DEPLOY_DIR}/detection_onnxruntime_dynamic.py']\n"
                   "backend_config = dict(type='tensorrt')\n")
    run = call_tool('deploy', bad, *retina, images['square'], '--work-dir', tmp_path)
    assert_one_line_error(run.returncode, run.stderr, 'tensorrt', 'only onnxruntime')


@needs_mmdeploy
def test_checkpoint_that_does_not_fit(retina, images, tmp_path):
    config, _ = tiny_config('demo/maskrcnn_rmt_t_shapes', tmp_path, (128, 128))
    run = run_deploy('detection_onnxruntime_dynamic', retina[0], tmp_path /
                     'maskrcnn_rmt_t_shapes.pth', images['square'], tmp_path / 'out')
    assert_one_line_error(run.returncode, run.stderr, 'maskrcnn_rmt_t_shapes.pth')
    assert not (tmp_path / 'out' / 'end2end.onnx').exists()


@needs_mmdeploy
def test_size_the_model_cannot_take(retina, images, tmp_path):
    """RMT, ResT and ResTv2 take every size from 1x1 (detectors pad to a multiple of 32): the
    sizes refused are those that are no size."""
    run = run_deploy('detection_onnxruntime_static', *retina, images['square'], tmp_path / 'out',
                     '--shape', '0', '64')
    assert_one_line_error(run.returncode, run.stderr, '--shape', 'two positive integers')


#: Runs tools/deploy.py (argv after ``--``) in a process without mmdet (importing it fails as
#: where it is not installed).
WITHOUT_MMDET = '''
import importlib.abc, runpy, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] == 'mmdet':
            raise ModuleNotFoundError(f'No module named {name!r}')
sys.meta_path.insert(0, Block())
sys.argv = sys.argv[sys.argv.index('--'):]
sys.argv[0] = 'tools/deploy.py'
runpy.run_path('tools/deploy.py', run_name='__main__')
'''


@needs_mmdeploy
def test_segmentation_deploy_imports_no_mmdet(images, tmp_path):
    """A segmentation deploy checks its images, checkpoint and configs without mmdet (the
    image check used to live beside mmdet's CocoDataset): here it gets as far as the static
    config's missing size."""
    config, ckpt = tiny_config('demo/fpn_rmt_t_shapes-seg', tmp_path, None)
    run = run_tool(['-c', WITHOUT_MMDET, '--', DEPLOY_DIR / 'segmentation_onnxruntime_static.py',
                    config, ckpt, images['square'], '--work-dir', tmp_path / 'out'],
                   check=False)
    assert_one_line_error(run.returncode, run.stderr, 'static deploy config needs', '--shape')
