"""Segmentation through the tools on a tiny generated ADE20K-layout set: training, mIoU
evaluation (whole image and multi-scale + flip TTA), sliding-window inference, bad labels."""
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rmt_mm.cli import load_config
from rmt_mm.datasets.shapes_seg import ADE20K_IDS, SHAPES_CLASSES, make_shapes_ade

from helpers import REPO
from helpers.seg import DEMO_CONFIG, seg_batch
from helpers.tools import call_tool, run_tool

#: ``--cfg-options`` of a short run: the demo config on 6+3 images of ~56x72 pixels, for 3
#: iterations of 2 images.
SHORT_RUN_OPTIONS = ['train_dataloader.batch_size=2', 'train_cfg.max_iters=3',
                             'default_hooks.checkpoint.interval=3']


def tool(name: str, *args: str) -> subprocess.CompletedProcess:
    """``tools/<name>`` in a fresh process, its exit status left to the test."""
    return run_tool([REPO / 'tools' / name, *args], check=False, show_warnings=True)


def data_options(root: Path):
    return [f'{loader}.dataset.data_root={root}'
            for loader in ('train_dataloader', 'test_dataloader')]


def metrics_of(work_dir: Path) -> dict:
    """The metrics file tools/test.py writes: <work_dir>/<timestamp>/<timestamp>.json."""
    files = [p for p in work_dir.glob('*/*.json') if p.stem == p.parent.name]
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


@pytest.fixture(scope='module')
def tiny_set(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('shapes_ade')
    make_shapes_ade(str(root), num_train=6, num_val=3, size=(56, 72), seed=1)
    return root


@pytest.fixture(scope='module')
def trained(tiny_set, tmp_path_factory) -> Path:
    work_dir = tmp_path_factory.mktemp('train')
    result = tool('train.py', str(DEMO_CONFIG), '--work-dir', str(work_dir),
                      '--cfg-options', *SHORT_RUN_OPTIONS, *data_options(tiny_set))
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = work_dir / 'iter_3.pth'
    assert ckpt.is_file() and (work_dir / 'last_checkpoint').read_text().strip() == str(ckpt)
    return ckpt


def test_generator_is_deterministic_and_ade_shaped(tiny_set, tmp_path):
    from mmseg.datasets import ADE20KDataset
    ade = ADE20KDataset.METAINFO['classes']
    assert all(ade[i - 1] == name for name, i in ADE20K_IDS.items())
    make_shapes_ade(str(tmp_path), num_train=6, num_val=3, size=(56, 72), seed=1)
    for split, n in (('training', 6), ('validation', 3)):
        imgs = sorted((tiny_set / 'images' / split).glob('*.jpg'))
        anns = sorted((tiny_set / 'annotations' / split).glob('*.png'))
        assert len(imgs) == len(anns) == n
        for img, ann in zip(imgs, anns):
            assert img.read_bytes() == (tmp_path / 'images' / split / img.name).read_bytes()
            label = np.asarray(Image.open(ann))
            assert label.shape == np.asarray(Image.open(img)).shape[:2]
            assert set(np.unique(label)) <= {0} | set(ADE20K_IDS.values())
            assert (label == 0).any()  # unlabeled borders
    assert SHAPES_CLASSES[0] == 'wall'


@pytest.mark.slow
def test_train_then_test_reports_miou(trained, tiny_set, tmp_path):
    result = tool('test.py', str(DEMO_CONFIG), str(trained), '--work-dir', str(tmp_path),
                      '--cfg-options', *data_options(tiny_set))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = metrics_of(tmp_path)
    assert 0 <= metrics['mIoU'] <= 100 and {'aAcc', 'mAcc'} <= set(metrics)
    log = result.stdout + result.stderr
    assert 'per class results' in log and all(c in log for c in SHAPES_CLASSES)


@pytest.mark.slow
def test_tta_multiscale_flip(trained, tiny_set, tmp_path):
    """In this process (tools/test.py's fresh-process run is the one above)."""
    result = call_tool('test', DEMO_CONFIG, trained, '--tta', '--work-dir', tmp_path,
                       '--cfg-options', *data_options(tiny_set))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 0 <= metrics_of(tmp_path)['mIoU'] <= 100


@pytest.mark.slow
def test_out_of_range_label_fails_with_file_name(trained, tiny_set, tmp_path):
    bad = tmp_path / 'bad'
    make_shapes_ade(str(bad), num_train=1, num_val=2, size=(56, 72), seed=1)
    ann = bad / 'annotations' / 'validation' / 'shapes_val_00001.png'
    label = np.asarray(Image.open(ann)).copy()
    label[0, :3] = 200
    Image.fromarray(label).save(ann)
    result = call_tool('test', DEMO_CONFIG, trained, '--work-dir', tmp_path / 'wd',
                       '--cfg-options', *data_options(bad))
    assert result.returncode != 0
    assert f'ValueError: {ann}: label values [200] are not classes of this dataset' \
        in result.stderr


def test_sliding_window_on_odd_size():
    from mmseg.registry import MODELS
    cfg, _ = load_config(str(DEMO_CONFIG))
    cfg.model.test_cfg = dict(mode='slide', crop_size=(64, 64), stride=(40, 40))
    model = MODELS.build(cfg.model).eval()
    inputs, samples = seg_batch(len(SHAPES_CLASSES), (101, 75), n=1)  # no multiple of 64 or 32
    with torch.no_grad():
        slide = model.predict(inputs, samples)[0]
        logits = slide.seg_logits.data
        model.test_cfg.mode = 'whole'
        whole = model.predict(inputs, samples)[0].seg_logits.data
    assert slide.pred_sem_seg.data.shape == (1, 101, 75)
    assert logits.shape == whole.shape == (len(SHAPES_CLASSES), 101, 75)
    assert torch.isfinite(logits).all() and not torch.allclose(logits, whole)
    # The windows tile the image: stitching them by hand gives the same logits.
    seg = torch.zeros(len(SHAPES_CLASSES), 101, 75)
    count = torch.zeros(1, 101, 75)
    with torch.no_grad():
        for y in range(0, 101 - 64 + 40, 40):
            for x in range(0, 75 - 64 + 40, 40):
                y0, x0 = min(y, 101 - 64), min(x, 75 - 64)
                crop = inputs[:, :, y0:y0 + 64, x0:x0 + 64]
                out = model.encode_decode(crop, [dict(img_shape=(64, 64), pad_shape=(64, 64))])
                seg[:, y0:y0 + 64, x0:x0 + 64] += out[0]
                count[:, y0:y0 + 64, x0:x0 + 64] += 1
    assert torch.allclose(seg / count, logits, atol=1e-5)
