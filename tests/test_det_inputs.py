"""Bad input fails at once with a clear message; images without objects train; the upstream
mmdet 2.x Mask R-CNN checkpoint loads into a 3.x Mask R-CNN with the backbone exact."""
import json

import torch
from mmengine.runner import Runner

from rmt_mm.cli import load_config
from rmt_mm.datasets.shapes import make_split

from helpers import REPO
from helpers.archs import RMT_TINY
from helpers.det import DEMO_CONFIG, data_options
from helpers.tools import tool_main


def test_train_fails_fast_on_missing_pretrained_checkpoint(capsys):
    assert tool_main('train')([str(REPO / 'configs' / 'maskrcnn_rmt_s_coco.py')]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: model.backbone.init_cfg.checkpoint: checkpoint not found: '
                          'checkpoints/rmt_s_in1k.pth')
    assert len(err.splitlines()) == 1


def test_train_fails_fast_on_missing_data_root(capsys, tmp_path):
    missing = tmp_path / 'nowhere'
    code = tool_main('train')([str(DEMO_CONFIG), '--work-dir', str(tmp_path / 'w'),
                          '--cfg-options', *data_options(str(missing))])
    err = capsys.readouterr().err
    assert code == 2 and f'train_dataloader.dataset.data_root: not found: {missing}' in err
    assert not (tmp_path / 'w').exists()  # nothing was built or written


def test_test_tool_fails_fast_on_missing_checkpoint(capsys, tmp_path):
    assert tool_main('test')([str(DEMO_CONFIG), str(tmp_path / 'none.pth')]) == 2
    assert f'load_from: checkpoint not found: {tmp_path}/none.pth' in capsys.readouterr().err


def test_demo_tool_fails_fast_on_missing_files(capsys, tmp_path):
    assert tool_main('demo')([str(tmp_path / 'x.png'), str(DEMO_CONFIG), 'none.pth']) == 2
    assert 'file not found' in capsys.readouterr().err


def test_images_without_objects_train(tmp_path):
    """A set whose only images hold no object (one plain, one with only a crowd region)."""
    make_split(str(tmp_path), 'train', 2, seed=0, size_range=(96, 112), empty_prob=1.0)
    ann_file = tmp_path / 'annotations' / 'train.json'
    coco = json.loads(ann_file.read_text())
    coco['annotations'] = [dict(id=1, image_id=2, category_id=1, iscrowd=1, area=100.0,
                                bbox=[10.0, 10.0, 10.0, 10.0],
                                segmentation=[[10, 10, 20, 10, 20, 20, 10, 20]])]
    ann_file.write_text(json.dumps(coco))
    cfg, _ = load_config(str(DEMO_CONFIG), work_dir=str(tmp_path / 'work'))
    cfg.merge_from_dict(dict(
        train_dataloader=dict(batch_size=1, dataset=dict(data_root=str(tmp_path))),
        train_cfg=dict(max_iters=2, val_interval=100), val_dataloader=None, val_cfg=None,
        val_evaluator=None, default_hooks=dict(logger=dict(interval=1))))
    cfg.train_dataloader.dataset.pipeline[2].scale = (112, 112)
    runner = Runner.from_cfg(cfg)
    assert len(runner.train_dataloader.dataset) == 2
    runner.train()
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))


def test_upstream_mmdet2_checkpoint_loads_with_load_from(rmt_fixtures, rmt_manifest, tmp_path):
    """``load_from`` the upstream file into the RMT-T Mask R-CNN config with the fixture's tiny
    arch: every backbone tensor arrives bit-exact and the upstream features are reproduced. The
    file's neck is 8 channels wide and it has no heads, so the partial load is asked for."""
    path = rmt_fixtures / 'tiny_c1110_upstream_mmdet2_maskrcnn.pth'
    arch = rmt_manifest['tiny_c1110/config']
    assert arch == RMT_TINY
    cfg, _ = load_config(str(REPO / 'configs' / 'maskrcnn_rmt_t_coco.py'), work_dir=str(tmp_path))
    cfg.model.backbone.update(arch=arch, init_cfg=None, norm_cfg=dict(type='BN'))
    cfg.model.neck.in_channels = arch['embed_dims']
    cfg.load_from = str(path)
    cfg.default_hooks.strict_load.allow_partial = ['neck', 'rpn_head', 'roi_head']
    runner = Runner.from_cfg(cfg)
    runner.load_or_resume()
    model = runner.model

    upstream = torch.load(path, weights_only=False)['state_dict']
    ours = model.state_dict()
    backbone_keys = [k for k in upstream if k.startswith('backbone.')]
    assert backbone_keys and set(backbone_keys) == {k for k in ours if k.startswith('backbone.')}
    assert all(torch.equal(ours[k], upstream[k]) for k in backbone_keys)

    expected = torch.load(rmt_fixtures / 'tiny_c1110_expected.pt', weights_only=False)
    model.eval()
    with torch.no_grad():
        for name, x in expected['inputs'].items():
            feats = model.backbone(x)
            for out, ref in zip(feats, expected['det_feats_from_upstream_mmdet2_maskrcnn'][name]):
                assert out.shape == ref.shape
                assert (out - ref).abs().max() < 2e-5, name
