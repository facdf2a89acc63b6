"""Detector checkpoints that do not fit the built model are refused before any compute, through
the Python API, ``tools/test.py``, ``load_from``, ``--resume``, ``tools/demo.py`` and URLs; an
explicit partial load logs what it left out; good files load."""
import functools
import http.server
import re
import threading

import pytest
import torch
from mmengine.runner import Runner

from rmt_mm.checkpoints.model import load_model_checkpoint
from rmt_mm.cli import load_config
from rmt_mm.datasets.shapes import make_shapes_coco
from rmt_mm.errors import CheckpointError
from rmt_mm.models import RMT, ResT

from helpers.archs import RMT_TINY
from helpers.bad_files import write_unreadable
from helpers.det import DEMO_CONFIG
from helpers.tools import assert_one_line_error, tool_main

#: How messages name a model of ``RMT_TINY``.
RMT_TINY_DESCRIPTION = ('custom RMT (embed_dims [16, 32, 64, 96], depths [1, 2, 2, 1], '
                        'num_heads [2, 2, 4, 4])')
BUILDS = (f'config builds MaskRCNN with a {RMT_TINY_DESCRIPTION} backbone + neck, roi_head, '
          'rpn_head')
CLASS_LAYERS = ['roi_head.bbox_head.fc_cls', 'roi_head.bbox_head.fc_reg',
                'roi_head.mask_head.conv_logits']


@pytest.fixture(scope='module')
def config(tmp_path_factory):
    """The demo Mask R-CNN with the tiny backbone, on a generated set, at 96 px."""
    root = tmp_path_factory.mktemp('data')
    make_shapes_coco(str(root), num_train=2, num_val=2, seed=1, size_range=(64, 80))
    path = root / 'tiny_demo.py'
    loaders = '\n'.join(
        f"{split}_dataloader = dict(dataset=dict(data_root='{root}/', pipeline="
        f"{'train_pipeline' if split == 'train' else 'test_pipeline'}))"
        for split in ('train', 'val', 'test'))
    path.write_text(f"""_base_ = '{DEMO_CONFIG}'
model = dict(backbone=dict(arch=dict(_delete_=True, **{RMT_TINY})),
             neck=dict(in_channels={RMT_TINY['embed_dims']}))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                          'scale_factor')),
]
{loaders}
val_evaluator = dict(ann_file='{root}/annotations/val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_iters=1)
""")
    return path


def _build(config):
    from mmdet.registry import MODELS
    cfg, _ = load_config(str(config))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


@pytest.fixture(scope='module')
def model(config):
    return _build(config)


@pytest.fixture(scope='module')
def good(model, tmp_path_factory):
    path = tmp_path_factory.mktemp('good') / 'good.pth'
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': {'classes': ('circle', 'square', 'triangle')}}}, path)
    return path


def _zeros_like(module_cls, **kwargs):
    with torch.device('meta'):
        module = module_cls(**kwargs)
    return {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in module.state_dict().items()}


def _with_backbone(state, backbone):
    return {**{f'backbone.{k}': v for k, v in backbone.items()},
            **{k: v for k, v in state.items() if not k.startswith('backbone.')}}


FC1 = 'backbone.layers.1.blocks.0.ffn.fc1.weight'
#: name -> (state dict from the good one, parts of the expected message)
MISFITS = {
    'resnet backbone': (lambda sd: _with_backbone(sd, {
        'conv1.weight': torch.zeros(64, 3, 7, 7), 'layer1.0.conv1.weight': torch.zeros(64, 64, 1,
                                                                                      1)}),
        ['checkpoint holds a backbone of another network (keys such as conv1.weight', BUILDS]),
    'released RMT-T into a custom arch': (
        lambda sd: _with_backbone(sd, _zeros_like(RMT, arch='t')),
        ['checkpoint holds RMT-T (embed_dims [64, 128, 256, 512]', BUILDS, 'shape mismatch']),
    'ResT into an RMT config': (lambda sd: _with_backbone(sd, _zeros_like(ResT, arch='small')),
                                ['checkpoint holds ResT-small', BUILDS, 'missing']),
    'a block missing': (lambda sd: {k: v for k, v in sd.items()
                                    if not k.startswith('backbone.layers.1.blocks.1.')},
                        ['checkpoint holds a custom RMT (embed_dims [16, 32, 64, 96], depths '
                         '[1, 1, 2, 1]', BUILDS, 'missing (e.g. backbone.layers.1.blocks.1.']),
    'one tensor of another shape': (lambda sd: {**sd, FC1: torch.zeros(5, 5)},
                                    [f'1 shape mismatch (e.g. {FC1}: (5, 5) in the checkpoint']),
    'empty state dict': (lambda sd: {}, ['the checkpoint holds no weights']),
    'NaN weights': (lambda sd: {**sd, FC1: torch.full_like(sd[FC1], float('nan'))},
                    [f'1 tensors hold NaN or Inf (e.g. {FC1})', 'allow_nonfinite']),
    'Inf weights': (lambda sd: {**sd, 'rpn_head.rpn_cls.bias': torch.full((3, ), float('inf'))},
                    ['1 tensors hold NaN or Inf (e.g. rpn_head.rpn_cls.bias)']),
    'integer weights': (lambda sd: {**sd, FC1: sd[FC1].to(torch.int64)},
                        [f'wrong kind of dtype (e.g. {FC1}: torch.int64 in the checkpoint']),
    'tensors without data': (lambda sd: {k: v.to('meta') for k, v in sd.items()},
                             ['tensors have no data', 'meta device']),
    'another class count': (lambda sd: {**sd, **{
        f'{m}.{p}': torch.zeros((81 if 'cls' in m or 'logits' in m else 324, )
                                + sd[f'{m}.{p}'].shape[1:])
        for m in CLASS_LAYERS for p in ('weight', 'bias')}},
        ['checkpoint does not fit MaskRCNN', 'shape mismatch',
         f'allow_partial={CLASS_LAYERS}', f'--partial-load {" ".join(CLASS_LAYERS)}']),
}


@pytest.fixture(scope='module')
def misfit_files(good, tmp_path_factory):
    directory = tmp_path_factory.mktemp('misfits')
    state = torch.load(good, weights_only=True)
    files = {}
    for name, (edit, _) in MISFITS.items():
        files[name] = directory / f'{re.sub(r"[^a-z]+", "_", name)}.pth'
        torch.save({**state, 'state_dict': edit(state['state_dict'])}, files[name])
    return files


@pytest.mark.parametrize('name', list(MISFITS))
def test_python_api_refuses_and_touches_nothing(name, model, misfit_files):
    path = misfit_files[name]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        load_model_checkpoint(model, str(path))
    message = str(info.value)
    assert message.startswith(f'{path}: ') and '\n' not in message, message
    for part in MISFITS[name][1]:
        assert part in message, (part, message)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_partial_load_and_nonfinite_only_when_asked(config, misfit_files, good):
    model = _build(config)
    with torch.no_grad():  # so that every loaded tensor differs from its initial value
        for param in model.parameters():
            param.add_(1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    load_model_checkpoint(model, str(misfit_files['another class count']),
                          allow_partial=CLASS_LAYERS)
    source = torch.load(misfit_files['another class count'], weights_only=True)['state_dict']
    for key, value in model.state_dict().items():
        expected = before[key] if key.rsplit('.', 1)[0] in CLASS_LAYERS else source[key]
        assert torch.equal(value, expected), key
    load_model_checkpoint(model, str(misfit_files['NaN weights']), allow_nonfinite=True)
    assert model.state_dict()[FC1].isnan().all()
    load_model_checkpoint(model, str(good))  # control
    assert torch.equal(model.state_dict()[FC1], torch.load(good)['state_dict'][FC1])


# ---------------------------------------------------------------------------- tools
@pytest.fixture
def no_compute(monkeypatch):
    """Records any forward pass of the backbone."""
    calls = []
    forward = RMT.forward
    monkeypatch.setattr(RMT, 'forward', lambda self, x: calls.append(1) or forward(self, x))
    return calls


@pytest.mark.slow
def test_tools_refuse_before_compute(config, misfit_files, tmp_path, capsys, no_compute):
    """tools/test.py CKPT, train.py load_from and --resume PATH, demo.py: each misfit class
    has its own loader branch, tested above; here one per entry point, end to end."""
    image = str(next((config.parent / 'val').glob('*.png')))
    runs = [
        ('test', [str(config), str(misfit_files['released RMT-T into a custom arch']), '--out',
                  str(tmp_path / 'p.pkl')], MISFITS['released RMT-T into a custom arch'][1]),
        ('train', [str(config), '--cfg-options', f'load_from={misfit_files["NaN weights"]}'],
         MISFITS['NaN weights'][1]),
        ('train', [str(config), '--resume', str(misfit_files['one tensor of another shape'])],
         MISFITS['one tensor of another shape'][1]),
        ('demo', [image, str(config), str(misfit_files['ResT into an RMT config']), '--out',
                  str(tmp_path / 'out.png')], MISFITS['ResT into an RMT config'][1]),
    ]
    for tool, argv, parts in runs:
        work = tmp_path / f'work_{tool}'
        argv = argv if tool == 'demo' else [*argv, '--work-dir', str(work)]
        code = tool_main(tool)(argv)
        assert_one_line_error(code, capsys.readouterr().err, *parts)
        assert not list(work.glob('*.pth')) and not (work / 'last_checkpoint').exists()
    assert not no_compute
    assert not (tmp_path / 'p.pkl').exists() and not (tmp_path / 'out.png').exists()


@pytest.mark.slow
def test_train_partial_load_logs_what_it_left_out(config, misfit_files, tmp_path, capsys):
    path = misfit_files['another class count']
    code = tool_main('train')([str(config), '--work-dir', str(tmp_path), '--partial-load',
                               *CLASS_LAYERS, '--cfg-options', f'load_from={path}'])
    assert code == 0, capsys.readouterr().err
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert f'{path}: partial load as allowed by {CLASS_LAYERS}: 6 keys keep their initial ' \
           'values' in log
    assert 'roi_head.mask_head.conv_logits.weight' in log and 'Iter(train) [1/1]' in log


# ---------------------------------------------------------------------------- URLs
@pytest.fixture(scope='module')
def server(tmp_path_factory):
    """An http server on 127.0.0.1 serving a fresh directory."""
    root = tmp_path_factory.mktemp('served')

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                            functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f'http://127.0.0.1:{httpd.server_port}'
    httpd.shutdown()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    return tmp_path / 'torch_home' / 'hub' / 'checkpoints'


def test_init_cfg_url_downloads_to_hub_cache_and_loads_strictly(server, hub):
    root, url = server
    weights = RMT(arch=RMT_TINY).state_dict()
    torch.save({'state_dict': weights}, root / 'tiny_in1k.pth')
    model = RMT(arch=RMT_TINY, init_cfg=dict(type='Pretrained',
                                              checkpoint=f'{url}/tiny_in1k.pth'))
    model.init_weights()
    assert (hub / 'tiny_in1k.pth').is_file()
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    wrong = RMT(arch={**RMT_TINY, 'depths': [1, 1, 2, 1]},
                init_cfg=dict(type='Pretrained', checkpoint=f'{url}/tiny_in1k.pth'))
    with pytest.raises(CheckpointError, match=rf'^{url}/tiny_in1k.pth: checkpoint is a custom '
                       'RMT'):
        wrong.init_weights()


def test_url_checkpoints_load_as_strictly_as_files(server, hub, model, good, misfit_files,
                                                   tmp_path):
    root, url = server
    for name, path in (('good.pth', good), ('misfit.pth', misfit_files['a block missing'])):
        (root / name).write_bytes(path.read_bytes())
    load_model_checkpoint(model, f'{url}/good.pth')
    with pytest.raises(CheckpointError, match=rf'^{url}/misfit.pth: checkpoint holds a custom '
                       'RMT'):
        load_model_checkpoint(model, f'{url}/misfit.pth')
    evil, marker, expected = write_unreadable('code in pickle', good, tmp_path)
    (root / 'evil.pth').write_bytes(evil.read_bytes())
    with pytest.raises(CheckpointError, match=rf'^{url}/evil.pth \(cached as {hub}/evil.pth\): '
                       f'{expected}'):
        load_model_checkpoint(model, f'{url}/evil.pth')
    assert not marker.exists()
    with pytest.raises(CheckpointError, match=rf'^{url}/none.pth: download failed \(HTTP Error '
                       '404'):
        load_model_checkpoint(model, f'{url}/none.pth')


@pytest.mark.slow
def test_tools_with_urls(server, hub, config, misfit_files, good, tmp_path, capsys, no_compute):
    """tools/test.py URL and load_from=URL: a good file evaluates from the hub cache, a misfit
    and an unreadable file are refused as for local files."""
    root, url = server
    (root / 'tiny_det.pth').write_bytes(good.read_bytes())
    assert tool_main('test')([str(config), f'{url}/tiny_det.pth', '--work-dir',
                              str(tmp_path / 'ok')]) == 0
    assert (hub / 'tiny_det.pth').is_file() and list((tmp_path / 'ok').glob('*/*.json'))
    no_compute.clear()
    (root / 'rest.pth').write_bytes(misfit_files['ResT into an RMT config'].read_bytes())
    truncated, _, expected = write_unreadable('truncated', good, tmp_path)
    (root / 'truncated.pth').write_bytes(truncated.read_bytes())
    code = tool_main('test')([str(config), f'{url}/rest.pth', '--work-dir', str(tmp_path / 'w')])
    assert_one_line_error(code, capsys.readouterr().err, f'{url}/rest.pth',
                          *MISFITS['ResT into an RMT config'][1])
    code = tool_main('train')([str(config), '--work-dir', str(tmp_path / 'w2'), '--cfg-options',
                               f'load_from={url}/truncated.pth'])
    assert_one_line_error(code, capsys.readouterr().err,
                          f'load_from: {url}/truncated.pth: {expected}')
    assert not no_compute and not (tmp_path / 'w2').exists()


def test_runner_load_from_refuses_misfit(config, misfit_files, tmp_path):
    """mmengine's Runner itself (as mmdet's own tools drive it, through the config's hook)."""
    cfg, _ = load_config(str(config), work_dir=str(tmp_path))
    cfg.load_from = str(misfit_files['a block missing'])
    runner = Runner.from_cfg(cfg)
    with pytest.raises(CheckpointError, match='missing'):
        runner.load_or_resume()
