"""mmengine checkpoints written during training reload under torch's weights-only unpickler,
and ``--resume`` continues exactly where an interrupted run stopped."""
import copy
import zipfile

import pytest
import torch

from rmt_mm.checkpoints.reading import safe_load

from helpers.toy_runner import Interrupt, InterruptAfter, make_runner


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    full = make_runner(tmp_path_factory.mktemp('full'))
    full.train()
    full_state = copy.deepcopy(full.model.state_dict())
    part_dir = tmp_path_factory.mktemp('part')
    with pytest.raises(Interrupt):
        make_runner(part_dir, hooks=[InterruptAfter(3)]).train()
    resumed = make_runner(part_dir, resume=True)
    resumed.train()
    return full_state, resumed, part_dir


def test_resume_reproduces_uninterrupted_run(runs):
    full_state, resumed, _ = runs
    assert resumed.iter == 6
    for key, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, full_state[key], rtol=0, atol=0, msg=key)


def test_checkpoint_is_plain_data_for_weights_only(runs):
    _, _, part_dir = runs
    ckpt_path = part_dir / 'iter_3.pth'
    with zipfile.ZipFile(ckpt_path) as archive:
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith('data.pkl')))
    assert b'getattr' not in pickled
    ckpt = safe_load(str(ckpt_path))
    assert ckpt['meta']['iter'] == 3
    buffers = ckpt['message_hub']['log_scalars']
    assert buffers['train/loss'].mean() > 0
