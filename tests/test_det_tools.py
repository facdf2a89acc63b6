"""tools/train.py, tools/test.py, tools/demo.py and tools/dist_train.sh end to end on a tiny
generated COCO-format set: real training, COCO evaluation, distributed training on CPU, and an
interrupted run resumed to exactly the weights of an uninterrupted one."""
import json
import sys

import cv2
import mmengine
import pytest
import torch

from rmt_mm.checkpoints.reading import safe_load
from rmt_mm.datasets.shapes import make_shapes_coco

from helpers import REPO
from helpers.det import DEMO_CONFIG, data_options
from helpers.tools import free_port, run_tool

#: Every test here runs the tools end to end in fresh processes.
pytestmark = pytest.mark.slow

ITERS = 4
# Small and quick: 128 px images, few proposals, checkpoints every 2 iterations.
FAST = ['model.train_cfg.rpn_proposal.max_per_img=100',
        'model.test_cfg.rpn.max_per_img=50', 'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.interval=2', 'default_hooks.checkpoint.max_keep_ckpts=3']


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes')
    make_shapes_coco(str(root), num_train=8, num_val=4, seed=5, size_range=(96, 128))
    return str(root)


def train(work_dir, shapes, iters=ITERS, extra=()):
    opts = data_options(shapes) + FAST + [f'train_cfg.max_iters={iters}',
                                          f'train_cfg.val_interval={ITERS}', *extra]
    return run_tool(['tools/train.py', str(DEMO_CONFIG), '--work-dir', str(work_dir),
                     '--cfg-options', *opts])


def metrics_of(work_dir):
    """COCO metrics from the json logs mmengine writes under work_dir/<timestamp>/."""
    found = {}
    for path in work_dir.glob('*/**/*.json'):
        for line in path.read_text().splitlines():
            found.update({k: v for k, v in json.loads(line).items() if k.startswith('coco/')})
    return found


def assert_coco_metrics(found):
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50'):
        assert key in found and 0.0 <= found[key] <= 1.0, (key, found)


@pytest.fixture(scope='module')
def trained(tmp_path_factory, shapes):
    work_dir = tmp_path_factory.mktemp('train')
    train(work_dir, shapes)
    return work_dir


def test_train_evaluates_and_saves(trained):
    assert_coco_metrics(metrics_of(trained))
    assert (trained / f'iter_{ITERS}.pth').is_file()
    log = next(trained.glob('*/*.log')).read_text()
    assert f'Iter(train) [{ITERS}/{ITERS}]' in log


def test_test_tool_writes_metrics_predictions_and_drawings(trained, shapes, tmp_path):
    out = tmp_path / 'preds.pkl'
    run_tool(['tools/test.py', str(DEMO_CONFIG), str(trained / f'iter_{ITERS}.pth'),
              '--work-dir', str(tmp_path), '--out', str(out), '--show-dir', 'vis',
              '--cfg-options', *data_options(shapes)])
    assert_coco_metrics(metrics_of(tmp_path))
    preds = mmengine.load(out)
    assert len(preds) == 4 and {'bboxes', 'masks'} <= set(preds[0]['pred_instances'])
    assert len(list(tmp_path.glob('*/vis/*.png'))) == 4


def test_demo_draws_an_image(trained, shapes, tmp_path):
    image = f'{shapes}/val/000001.png'
    out = tmp_path / 'result.png'
    proc = run_tool(['tools/demo.py', image, str(DEMO_CONFIG), str(trained / f'iter_{ITERS}.pth'),
                     '--out', str(out), '--score-thr', '0.0'])
    assert 'drawn to' in proc.stdout
    drawn, original = cv2.imread(str(out)), cv2.imread(image)
    assert drawn.shape == original.shape and (drawn != original).any()


def test_interrupted_run_resumes_to_identical_weights(trained, shapes, tmp_path):
    """Resume from the uninterrupted run's iteration-2 checkpoint (the schedule is fixed by the
    config, so a run stopped after 2 of 4 iterations saves that very state) with --resume in a
    fresh process, and compare with the uninterrupted run's final weights."""
    (tmp_path / 'iter_2.pth').write_bytes((trained / 'iter_2.pth').read_bytes())
    run_tool(['tools/train.py', str(DEMO_CONFIG), '--work-dir', str(tmp_path), '--resume',
              str(tmp_path / 'iter_2.pth'), '--cfg-options', *data_options(shapes), *FAST,
              f'train_cfg.max_iters={ITERS}', 'train_cfg.val_interval=1000'])
    resumed = safe_load(str(tmp_path / f'iter_{ITERS}.pth'))['state_dict']
    reference = safe_load(str(trained / f'iter_{ITERS}.pth'))['state_dict']
    assert resumed.keys() == reference.keys()
    differing = [k for k in reference if not torch.equal(resumed[k], reference[k])]
    assert not differing, f'{len(differing)} tensors differ after resume, e.g. {differing[:3]}'


def test_two_process_distributed_training_on_cpu(shapes, tmp_path):
    opts = data_options(shapes) + FAST + ['train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                                          'env_cfg.dist_cfg.backend=gloo']
    run_tool([str(REPO / 'tools' / 'dist_train.sh'), str(DEMO_CONFIG), '2',
                     '--work-dir', str(tmp_path), '--cfg-options', *opts],
                    env=dict(PYTHON=sys.executable, PORT=str(free_port())),
                    python_script=False)
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert 'Distributed launcher: pytorch' in log and 'Distributed training: True' in log
    assert 'GPU number: 2' in log  # mmengine's name for the world size
    assert 'Iter(train) [2/2]' in log
    assert_coco_metrics(metrics_of(tmp_path))
    state = safe_load(str(tmp_path / 'iter_2.pth'))['state_dict']
    assert not any(k.startswith('module.') for k in state)
