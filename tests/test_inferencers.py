"""mmdet's and mmseg's inference APIs on a real photograph with every backbone family's configs:
``init_detector``/``inference_detector`` and ``DetInferencer``, ``init_model``/``inference_model``
and ``MMSegInferencer``. Inputs: odd sizes, an RGBA file, an array and a batch; predictions must
come back at each photo's own resolution, with a visualisation of that size.

Weights are random (the configs' ImageNet checkpoints are not shipped), so the checks are about
shapes and plumbing; the Inferencer loads the very weights ``init_*`` built, and must predict
what the plain API predicts. Test images are resized to ~128-160 px (the configs' test scale is
overridden) to keep the CPU cost to seconds.
"""
import copy
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from helpers.configs import load

PHOTO = Path(matplotlib.get_data_path()) / 'sample_data' / 'grace_hopper.jpg'
DET_CONFIGS = {'RMT': 'maskrcnn_rmt_t_coco', 'ResT': 'maskrcnn_rest_s_coco',
               'ResTV2': 'maskrcnn_restv2_t_ms-3x_coco'}
SEG_CONFIGS = {'RMT': 'fpn_rmt_t_ade20k-512x512-80k',
               'ResTV2': 'upernet_restv2_t_ade20k-512x512-160k'}
SIZES = {'odd.jpg': (173, 131), 'rgba.png': (173, 131), 'tall.jpg': (97, 151)}  # (W, H)


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    """``{name: (path, (H, W))}``: the photo as JPEGs of two odd sizes (odd, tall) and as an
    RGBA PNG the size of the first (mirrored, with a transparency gradient)."""
    root = tmp_path_factory.mktemp('photos')
    photo = Image.open(PHOTO).convert('RGB')
    made = {}
    for name, (w, h) in SIZES.items():
        im = photo.resize((w, h))
        if name == 'rgba.png':
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).convert('RGBA')
            im.putalpha(Image.linear_gradient('L').resize(im.size))
        im.save(root / name)
        made[name.split('.')[0]] = (root / name, (h, w))
    return made


def bgr(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.ascontiguousarray(np.asarray(im.convert('RGB'))[..., ::-1])


def image_size(path: Path) -> tuple:
    """(H, W) of an image file."""
    with Image.open(path) as im:
        return im.size[::-1]


def shrink_test_scale(cfg, scale) -> None:
    """Resize test images to at most ``scale`` (w, h) wherever the config defines them."""
    for pipeline in (cfg.get('test_pipeline') or [], cfg.test_dataloader.dataset.pipeline):
        for step in pipeline:
            if step['type'] == 'Resize':
                step['scale'] = scale


def save_weights(model, path: Path) -> str:
    torch.save({'state_dict': model.state_dict(), 'meta': {'dataset_meta': model.dataset_meta}},
               path)
    return str(path)


@pytest.mark.parametrize('family', sorted(DET_CONFIGS))
def test_detection_apis(family, photos, tmp_path):
    from mmdet.apis import DetInferencer, inference_detector, init_detector
    from mmdet.datasets import CocoDataset
    cfg, _ = load(DET_CONFIGS[family])
    shrink_test_scale(cfg, (160, 128))
    # Random weights: keep 5 detections whatever their scores; fewer proposals, as cheaper.
    cfg.model.test_cfg.rpn.update(nms_pre=200, max_per_img=50)
    cfg.model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=5)
    # A copy: inference_detector edits model.cfg's pipeline in place for array inputs.
    model = init_detector(copy.deepcopy(cfg), None, device='cpu')
    model.dataset_meta = dict(CocoDataset.METAINFO)
    names = ('odd', 'rgba', 'tall')
    paths, shapes = [str(photos[n][0]) for n in names], [photos[n][1] for n in names]

    # One list is all paths or all arrays (mmdet picks the loader from the first item).
    results = inference_detector(model, paths) + [inference_detector(model, bgr(paths[1]))]
    for result, (h, w) in zip(results, shapes + [shapes[1]]):
        pred = result.pred_instances
        assert tuple(result.ori_shape) == (h, w) and pred.masks.shape == (5, h, w)
        assert (pred.bboxes[:, 2] <= w).all() and (pred.bboxes[:, 3] <= h).all()
    # An array (BGR, as cv2 reads) predicts what its lossless file does.
    torch.testing.assert_close(results[3].pred_instances.bboxes, results[1].pred_instances.bboxes)

    inferencer = DetInferencer(cfg, weights=save_weights(model, tmp_path / 'w.pth'), device='cpu',
                               show_progress=False)
    out = inferencer(paths, batch_size=2, out_dir=str(tmp_path / 'out'), return_vis=True,
                     return_datasamples=True)  # batches: (odd, rgba), (tall,)
    for sample, vis, (h, w) in zip(out['predictions'], out['visualization'], shapes):
        assert sample.pred_instances.masks.shape == (5, h, w) and vis.shape == (h, w, 3)
    assert [image_size(tmp_path / 'out' / 'vis' / Path(p).name) for p in paths] == shapes
    single = inferencer(paths[0], return_datasamples=True)['predictions'][0]
    torch.testing.assert_close(single.pred_instances.bboxes, results[0].pred_instances.bboxes)


@pytest.mark.parametrize('family', sorted(SEG_CONFIGS))
def test_segmentation_apis(family, photos, tmp_path):
    from mmseg.apis import MMSegInferencer, inference_model, init_model
    from mmseg.datasets import ADE20KDataset
    cfg, _ = load(SEG_CONFIGS[family])
    shrink_test_scale(cfg, (256, 96))
    model = init_model(copy.deepcopy(cfg), None, device='cpu')
    model.dataset_meta = dict(ADE20KDataset.METAINFO)
    names = ('odd', 'rgba', 'tall')
    paths, shapes = [str(photos[n][0]) for n in names], [photos[n][1] for n in names]

    # mmseg batches only images of one size: odd and rgba.
    batch = inference_model(model, paths[:2])
    singles = [inference_model(model, path) for path in paths]
    from_array = inference_model(model, bgr(paths[1]))
    for result, shape in zip(batch + singles + [from_array], shapes[:2] + shapes + shapes[1:2]):
        assert result.pred_sem_seg.data.shape == (1, *shape)
        assert int(result.pred_sem_seg.data.max()) < len(model.dataset_meta['classes'])
    assert torch.equal(from_array.pred_sem_seg.data, singles[1].pred_sem_seg.data)

    inferencer = MMSegInferencer(cfg, weights=save_weights(model, tmp_path / 'w.pth'),
                                 device='cpu')
    out = inferencer(paths, batch_size=2, out_dir=str(tmp_path / 'out'),
                     return_vis=True)  # batches: (odd, rgba), (tall,)
    for label_map, vis, result, shape in zip(out['predictions'], out['visualization'],
                                             batch + singles[2:], shapes):
        assert vis.shape == (*shape, 3)
        assert np.array_equal(label_map, result.pred_sem_seg.data[0].numpy())
    assert [image_size(tmp_path / 'out' / 'vis' / Path(p).name) for p in paths] == shapes


def test_query_head_inferencers(photos, tmp_path):
    """DetInferencer with DINO and MMSegInferencer with Mask2Former (the demo configs, random
    weights): boxes inside each photo, label maps and visualisations at its resolution."""
    from mmdet.apis import DetInferencer, init_detector
    from mmseg.apis import MMSegInferencer, init_model
    paths, shapes = zip(*[(str(path), shape) for path, shape in photos.values()])

    cfg, _ = load('demo/dino-4scale_rmt-t_shapes')
    model = init_detector(copy.deepcopy(cfg), None, device='cpu')
    model.init_weights()  # init_detector leaves it to the checkpoint: level_embed is torch.empty
    model.dataset_meta = dict(classes=cfg.metainfo['classes'])
    inferencer = DetInferencer(cfg, weights=save_weights(model, tmp_path / 'dino.pth'),
                               device='cpu', show_progress=False)
    out = inferencer(list(paths), return_vis=True, return_datasamples=True)
    for sample, vis, (h, w) in zip(out['predictions'], out['visualization'], shapes):
        boxes = sample.pred_instances.bboxes
        assert len(boxes) == cfg.model.test_cfg.max_per_img and vis.shape == (h, w, 3)
        assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()

    cfg, _ = load('demo/mask2former_rmt-t_shapes-seg')
    model = init_model(copy.deepcopy(cfg), None, device='cpu')
    model.init_weights()
    model.dataset_meta = dict(classes=cfg.classes, palette=[[i * 40] * 3 for i in range(6)])
    inferencer = MMSegInferencer(cfg, weights=save_weights(model, tmp_path / 'm2f.pth'),
                                 device='cpu')
    out = inferencer(list(paths), return_vis=True)
    for label_map, vis, shape in zip(out['predictions'], out['visualization'], shapes):
        assert label_map.shape == shape and vis.shape == (*shape, 3)
        assert int(label_map.max()) < len(cfg.classes)
