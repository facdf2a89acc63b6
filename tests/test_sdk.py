"""The mmdeploy SDK runs what tools/deploy.py writes: tiny-arch RMT RetinaNet, Mask R-CNN, DINO,
Semantic FPN and Mask2Former (semantic) exported on the 2024 stack, run by tools/sdk_infer.py
in an environment with only mmdeploy-runtime, numpy and OpenCV (scripts/stacks/sdk.txt;
``RMT_MM_SDK_PYTHON`` names its interpreter, default ``.venv-sdk``), and compared with the
PyTorch model on the same images; and the one-line errors of a folder, file or runtime that does
not fit.

``scripts/check_sdk.sh`` creates that environment and runs this file; without it the tests skip,
unless ``RMT_MM_REQUIRE_SDK=1`` (CI) makes that a failure.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from rmt_mm import deploy as dep
from rmt_mm.deploy.verify import compare_detections

from helpers import CONFIG_DIR, REPO
from helpers.tools import assert_one_line_error, call_tool

pytest.importorskip('mmdeploy', reason='mmdeploy runs on the 2024 stack only '
                    '(make env STACK=openmmlab)')
from test_deploy import tiny_config, write_image  # noqa: E402

SDK_PYTHON = Path(os.environ.get('RMT_MM_SDK_PYTHON', REPO / '.venv-sdk' / 'bin' / 'python'))
if not SDK_PYTHON.exists():
    if os.environ.get('RMT_MM_REQUIRE_SDK') == '1':
        pytest.fail(f'RMT_MM_REQUIRE_SDK=1 but {SDK_PYTHON} does not exist '
                    '(scripts/check_sdk.sh creates it)', pytrace=False)
    pytest.skip(f'no SDK-only environment at {SDK_PYTHON} (scripts/check_sdk.sh creates it)',
                allow_module_level=True)

DEPLOY_DIR = CONFIG_DIR / 'deploy'
#: Static files at this size, checked on images of it (no resize on either side).
SIZE = (96, 128)


def sdk_run(folder, *images, out=None) -> subprocess.CompletedProcess:
    """tools/sdk_infer.py in the SDK-only environment, which has no torch and no mm*."""
    cmd = [str(SDK_PYTHON), str(REPO / 'tools' / 'sdk_infer.py'), str(folder),
           *map(str, images), '--score-thr', '0']
    if out:
        cmd += ['--out', str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd='/')


def test_the_sdk_environment_has_no_torch():
    """What the SDK runs in: mmdeploy_runtime with numpy 1.x, nothing of PyTorch or mm*."""
    code = ('import importlib.util as u, mmdeploy_runtime, numpy; '
            'print([m for m in ("torch", "mmcv", "mmdet", "mmseg", "mmengine", "mmdeploy") '
            'if u.find_spec(m)], numpy.__version__)')
    out = subprocess.run([str(SDK_PYTHON), '-c', code], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith('[] 1.'), out


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp('images')
    return [write_image(root / f'{i}.png', *SIZE, seed=i) for i in range(2)]


#: name: (model config, deploy config, tools/deploy.py options). Mask R-CNN's folder gets the
#: boxes-only postprocessing: mmdeploy-runtime 1.3.1's mask postprocessing returns garbage now
#: and then on CPU (open-mmlab/mmdeploy#2889), which no test can hold to an answer.
MODELS = {'retinanet': ('retinanet_rmt_t_coco', 'detection_onnxruntime_static', ()),
          'maskrcnn': ('demo/maskrcnn_rmt_t_shapes', 'instance-seg_onnxruntime_static',
                       ('--sdk-boxes-only', )),
          'dino': ('demo/dino-4scale_rmt-t_shapes', 'detection_onnxruntime_static', ()),
          'fpn': ('demo/fpn_rmt_t_shapes-seg', 'segmentation_onnxruntime_static', ()),
          'mask2former': ('demo/mask2former_rmt-t_shapes-seg', 'segmentation_onnxruntime_static',
                          ())}


@pytest.fixture(scope='module')
def exported(images, tmp_path_factory):
    """``exported(key)``: :func:`export` of :data:`MODELS` ``[key]``, once per module."""
    done = {}

    def get(key: str) -> tuple:
        if key not in done:
            done[key] = export(*MODELS[key], images, tmp_path_factory.mktemp(key))
        return done[key]
    return get


def export(name: str, deploy_name: str, options, images, tmp_path: Path) -> tuple:
    """The tiny model exported statically at :data:`SIZE` with tools/deploy.py (which writes the
    SDK files beside the ONNX file); the SDK folder, the prepared configs and the PyTorch
    model."""
    config, ckpt = tiny_config(name, tmp_path, None)
    work = tmp_path / 'sdk'
    run = call_tool('deploy', DEPLOY_DIR / f'{deploy_name}.py', config, ckpt, images[0],
                    '--work-dir', work, '--shape', *map(str, SIZE), *options)
    assert run.returncode == 0, run.stdout + run.stderr
    assert {p.name for p in work.iterdir()} >= {'end2end.onnx', 'deploy.json',
                                                 'pipeline.json', 'detail.json'}
    from rmt_mm.cli import load_config
    model_cfg, _ = load_config(config)
    deploy_cfg, model_cfg = dep.prepare_configs(dep.load_deploy_config(
        str(DEPLOY_DIR / f'{deploy_name}.py')), model_cfg, SIZE, deploy_name)
    return work, deploy_cfg, model_cfg, dep.build_torch_model(deploy_cfg, model_cfg, ckpt)


def torch_predictions(deploy_cfg, model_cfg, model, images):
    """mmdet's or mmseg's prediction of each image at its own size (as the SDK returns)."""
    from rmt_mm.deploy.export import task_processor
    processor = task_processor(deploy_cfg, model_cfg)
    out = []
    for image in images:
        data, inputs = processor.create_input(image, [SIZE[1], SIZE[0]],
                                              data_preprocessor=model.data_preprocessor)
        with torch.no_grad():
            out.append(model(inputs, data['data_samples'], mode='predict')[0])
    return out


def sdk_detections(npz, i: int):
    from mmengine.structures import InstanceData
    return InstanceData(bboxes=torch.from_numpy(npz[f'{i}_bboxes']),
                        scores=torch.from_numpy(npz[f'{i}_scores']),
                        labels=torch.from_numpy(npz[f'{i}_labels'].astype(np.int64)))


@pytest.mark.parametrize('key', ['retinanet', 'maskrcnn', 'dino'])
def test_sdk_detector_gives_pytorchs_detections(key, exported, images, tmp_path):
    """Every PyTorch detection has an SDK twin as ``--verify`` counts them (same label, IoU >=
    0.99, scores within 1e-4). The SDK clips boxes to the last pixel (``w - 1``,
    ``h - 1``), mmdet to the image's edge (``w``, ``h``): the PyTorch boxes are clipped the
    SDK's way before matching."""
    work, deploy_cfg, model_cfg, model = exported(key)
    pipeline = json.loads((work / 'pipeline.json').read_text())['pipeline']
    assert pipeline['tasks'][-1]['component'] == 'ResizeBBox'
    run = sdk_run(work, *images, out=tmp_path / 'sdk.npz')
    assert run.returncode == 0, run.stderr
    npz = np.load(tmp_path / 'sdk.npz')
    for i, pred in enumerate(torch_predictions(deploy_cfg, model_cfg, model, images)):
        ref = pred.pred_instances
        ref.bboxes = torch.minimum(ref.bboxes, torch.tensor([SIZE[1], SIZE[0]] * 2) - 1.0)
        if 'masks' in ref:  # boxes only (see MODELS)
            del ref.masks
        numbers, problems = compare_detections(ref, sdk_detections(npz, i), 0.0)
        assert not problems and numbers['matched'] == numbers['confident'] > 0, (numbers,
                                                                                 problems)
        assert numbers['max_score_diff'] < 1e-4, numbers


@pytest.mark.parametrize('key', ['fpn', 'mask2former'])
def test_sdk_segmentor_gives_pytorchs_label_map(key, exported, images, tmp_path):
    """The SDK's label map equals mmseg's at the input size (pixels may differ only where two
    classes tie within 1e-4)."""
    work, deploy_cfg, model_cfg, model = exported(key)
    run = sdk_run(work, *images, out=tmp_path / 'sdk.npz')
    assert run.returncode == 0, run.stderr
    npz = np.load(tmp_path / 'sdk.npz')
    for i, pred in enumerate(torch_predictions(deploy_cfg, model_cfg, model, images)):
        want, got = pred.pred_sem_seg.data[0].numpy(), npz[f'{i}_seg']
        assert got.shape == want.shape
        logits = pred.seg_logits.data
        top2 = logits.topk(2, 0).values
        tie = (top2[0] - top2[1]).numpy() < 1e-4
        assert ((got == want) | tie).all(), f'{int((got != want).sum())} pixels differ'
        assert len(np.unique(want)) > 1  # a map with more than one class


# Bad input: one line each, before the SDK runs.

@pytest.fixture
def folder(exported):
    """A complete SDK folder (the tiny RetinaNet's), copied by the tests that break it."""
    return exported('retinanet')[0]


def broken(folder: Path, tmp_path: Path, edit) -> Path:
    copy = tmp_path / 'broken'
    shutil.copytree(folder, copy)
    edit(copy)
    return copy


def edit_json(name: str, change):
    def edit(folder: Path) -> None:
        data = json.loads((folder / name).read_text())
        change(data)
        (folder / name).write_text(json.dumps(data))
    return edit


def onnx_with(version_edit):
    """An edit of end2end.onnx's IR version or opset through the onnx package (the 2024
    stack has it; the SDK side reads the header without it)."""
    def edit(folder: Path) -> None:
        import onnx
        model = onnx.load(str(folder / 'end2end.onnx'))
        version_edit(model)
        onnx.save(model, str(folder / 'end2end.onnx'))
    return edit


def set_ir(model) -> None:
    model.ir_version = 10


def set_opset(model) -> None:
    next(o for o in model.opset_import if o.domain in ('', 'ai.onnx')).version = 21


def rename_input(model) -> None:
    model.graph.input[0].name = 'image'


@pytest.mark.parametrize('edit, parts', [
    (lambda f: (f / 'pipeline.json').unlink(), ['not a complete mmdeploy SDK model folder',
                                               'pipeline.json is missing']),
    (lambda f: (f / 'detail.json').write_text('{'), ['detail.json', 'cannot be read as JSON']),
    (lambda f: (f / 'end2end.onnx').unlink(), ['end2end.onnx', 'not found']),
    (lambda f: (f / 'end2end.onnx').write_bytes(b'\xff' * 64), ['end2end.onnx',
                                                                'not an ONNX model']),
    (edit_json('deploy.json', lambda d: d.update(version='1.2.0')),
     ['written by mmdeploy 1.2.0', 'mmdeploy-runtime==1.2.0']),
    (edit_json('deploy.json', lambda d: d['models'][0].update(backend='tensorrt')),
     ["backend 'tensorrt'", 'onnxruntime models only']),
    (edit_json('deploy.json', lambda d: d.update(task='PoseDetector')),
     ["task 'PoseDetector'", 'Detector and Segmentor']),
    (onnx_with(set_ir), ['IR version 10', 'reads IR <= 9']),
    (onnx_with(set_opset), ['opset 21', 'opset <= 19']),
    (onnx_with(rename_input), ["inputs ['image']", "pipeline.json feeds 'input'"]),
])
def test_a_folder_that_does_not_fit_is_one_line(folder, images, tmp_path, edit, parts):
    run = sdk_run(broken(folder, tmp_path, edit), images[0])
    assert_one_line_error(run.returncode, run.stderr, *parts)


def test_a_bad_image_is_one_line(folder, tmp_path):
    bad = tmp_path / 'bad.png'
    bad.write_bytes(b'not an image')
    run = sdk_run(folder, bad)
    assert_one_line_error(run.returncode, run.stderr, 'bad.png', 'cannot be decoded')


def test_numpy_2_is_refused_in_one_line(folder, images, tmp_path):
    """mmdeploy_runtime 1.3.1 misreads numpy 2 arrays: the tool refuses such an environment
    (a stand-in numpy reporting 2.0 is put first on the path)."""
    fake = tmp_path / 'fake' / 'numpy'
    fake.mkdir(parents=True)
    real = subprocess.run([str(SDK_PYTHON), '-c', 'import numpy, os; print(os.path.dirname('
                           'numpy.__file__))'], capture_output=True, text=True,
                          check=True).stdout.strip()
    (fake / '__init__.py').write_text(
        'import importlib.util as _u, sys as _s\n'
        f'_spec = _u.spec_from_file_location("numpy", {real + "/__init__.py"!r}, '
        f'submodule_search_locations=[{real!r}])\n'
        '_m = _u.module_from_spec(_spec); _s.modules["numpy"] = _m; _spec.loader.exec_module(_m)\n'
        '_m.__version__ = "2.0.0"\n')
    env = dict(os.environ, PYTHONPATH=str(fake.parent))
    run = subprocess.run([str(SDK_PYTHON), str(REPO / 'tools' / 'sdk_infer.py'), str(folder),
                          images[0]], capture_output=True, text=True, env=env, cwd='/')
    assert_one_line_error(run.returncode, run.stderr, 'numpy 2.0.0', "pip install 'numpy<2'")
