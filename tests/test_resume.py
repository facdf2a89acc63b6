"""mmengine checkpoints written during training reload under torch's weights-only unpickler,
and ``--resume`` continues exactly where an interrupted run stopped."""
import copy

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from rmt_mm.models import RMT

MINI = dict(embed_dims=[8, 16, 16, 16], depths=[1, 1, 1, 1], num_heads=[2, 2, 2, 2],
            init_values=[2, 2, 2, 2], heads_ranges=[4, 4, 6, 6], mlp_ratios=[2, 2, 2, 2],
            chunkwise_recurrents=[True, True, False, False], layerscales=[False, False, True, True])


class ToyClassifier(BaseModel):
    def __init__(self):
        super().__init__()
        self.backbone = RMT(arch=MINI, drop_path_rate=0.0)
        self.head = nn.Linear(16, 3)

    def forward(self, inputs, labels, mode='tensor'):
        logits = self.head(self.backbone(torch.stack(inputs))[-1].mean((2, 3)))
        if mode == 'loss':
            return dict(loss=nn.functional.cross_entropy(logits, torch.stack(labels)))
        return logits


class RandomImages(Dataset):
    def __init__(self):
        gen = torch.Generator().manual_seed(0)
        self.images = torch.randn(8, 3, 40, 52, generator=gen)
        self.labels = torch.randint(0, 3, (8, ), generator=gen)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return dict(inputs=self.images[i], labels=self.labels[i])


class Interrupt(Exception):
    pass


class InterruptAfter(Hook):
    """Kills training right after the checkpoint of iteration ``n`` is written."""
    priority = 'LOWEST'

    def __init__(self, n):
        self.n = n

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.n:
            raise Interrupt


def make_runner(work_dir, max_iters=6, resume=False, hooks=None):
    torch.manual_seed(0)  # the model is built before the runner seeds
    return Runner(
        model=ToyClassifier(),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=RandomImages(), sampler=dict(type='DefaultSampler',
                              shuffle=True), batch_size=2, num_workers=0),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05)),
        param_scheduler=[dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                              end=4), dict(type='CosineAnnealingLR', by_epoch=False, begin=4,
                                           end=max_iters)],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=3, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=7, deterministic=True),
        resume=resume,
        custom_hooks=hooks,
        default_scope='mmengine')


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
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(ckpt_path))
    assert not any('getattr' in name for name in unsafe)
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt['meta']['iter'] == 3
    buffers = ckpt['message_hub']['log_scalars']
    assert buffers['train/loss'].mean() > 0
