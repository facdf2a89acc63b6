"""A tiny RMT classifier trained by mmengine's Runner in a second: the resume and crash tests'
subject. Also a script (``python tests/helpers/toy_runner.py WORK_DIR [--plain]
[--die-at-save N]``) so that a test can kill a real training process while it writes a
checkpoint."""
import argparse
import itertools
import os
import random
import signal

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from rmt_mm.models import RMT

if __package__:
    from .archs import RMT_TOY_CLASSIFIER
else:  # run as a script: this folder is sys.path[0]
    from archs import RMT_TOY_CLASSIFIER


class ToyClassifier(BaseModel):
    """A ``stochastic`` one draws from torch's generator in training (drop path; a
    detector's RPN/RoI samplers too) and from Python's (a random scale per batch, as mmdet's
    ``BatchSyncRandomResize`` draws in the data preprocessor)."""

    def __init__(self, stochastic=False):
        super().__init__()
        self.backbone = RMT(arch=RMT_TOY_CLASSIFIER, drop_path_rate=0.2 if stochastic else 0.0)
        self.head = nn.Linear(16, 3)
        self.stochastic = stochastic

    def forward(self, inputs, labels, mode='tensor'):
        images = torch.stack(inputs)
        if self.stochastic and mode == 'loss':
            images = images * random.uniform(0.8, 1.2)
        logits = self.head(self.backbone(images)[-1].mean((2, 3)))
        if mode == 'loss':
            return dict(loss=nn.functional.cross_entropy(logits, torch.stack(labels)))
        if mode == 'predict':
            return [dict(pred=p, label=t) for p, t in zip(logits.argmax(1), labels)]
        return logits


class Accuracy(BaseMetric):
    def process(self, data_batch, data_samples):
        self.results.extend(float(s['pred'] == s['label']) for s in data_samples)

    def compute_metrics(self, results):
        return dict(accuracy=sum(results) / len(results))


class RandomImages(Dataset):
    """Eight fixed images; ``augment`` adds noise scaled per sample, as random transforms
    drawing from numpy's and Python's global generators would."""

    def __init__(self, augment=False):
        gen = torch.Generator().manual_seed(0)
        self.images = torch.randn(8, 3, 40, 52, generator=gen)
        self.labels = torch.randint(0, 3, (8, ), generator=gen)
        self.augment = augment

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image = self.images[i]
        if self.augment:
            noise = np.random.rand(*image.shape).astype(np.float32) * random.uniform(0.5, 1.5)
            image = image + torch.from_numpy(noise)
        return dict(inputs=image, labels=self.labels[i])


class Interrupt(Exception):
    pass


class InterruptAfter(Hook):
    """Kills training right after the checkpoint of iteration (or epoch) ``n`` is written."""
    priority = 'LOWEST'

    def __init__(self, n, by_epoch=False):
        self.n = n
        self.by_epoch = by_epoch

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if not self.by_epoch and runner.iter + 1 == self.n:
            raise Interrupt

    def after_train_epoch(self, runner):
        if self.by_epoch and runner.epoch + 1 == self.n:
            raise Interrupt


_RUNNER_IDS = itertools.count()


def make_runner(work_dir, max_iters=6, resume=False, hooks=None, interval=3,
                checkpoint_type='CheckpointHook', max_keep_ckpts=-1, by_epoch=False,
                augment=False, load_from=None, stochastic=False, checkpoint_by_epoch=None,
                sampler='DefaultSampler', val_interval=None, batch_size=2, num_workers=0,
                persistent_workers=False):
    """Eight images, by default in batches of 2: epochs of 4 iterations. With ``by_epoch``,
    ``max_iters`` counts epochs; checkpoints follow the loop unless ``checkpoint_by_epoch``;
    ``val_interval`` validates (in the loop's unit) on the same images."""
    torch.manual_seed(0)  # the model is built before the runner seeds
    loop = (dict(by_epoch=True, max_epochs=max_iters) if by_epoch else
            dict(by_epoch=False, max_iters=max_iters))
    val = {}
    if val_interval is not None:
        loop['val_interval'] = val_interval
        val = dict(val_dataloader=dict(dataset=RandomImages(), sampler=dict(
            type='DefaultSampler', shuffle=False), batch_size=4, num_workers=0),
                   val_cfg=dict(), val_evaluator=dict(type=Accuracy))
    if checkpoint_by_epoch is None:
        checkpoint_by_epoch = by_epoch
    return Runner(
        model=ToyClassifier(stochastic),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=RandomImages(augment), sampler=dict(
            type=sampler, shuffle=True), batch_size=batch_size, num_workers=num_workers,
                              persistent_workers=persistent_workers),
        train_cfg=loop,
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05)),
        param_scheduler=[dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                              end=4), dict(type='CosineAnnealingLR', by_epoch=False, begin=4,
                                           end=max_iters * (4 if by_epoch else 1))],
        default_hooks=dict(checkpoint=dict(type=checkpoint_type, interval=interval,
                                           by_epoch=checkpoint_by_epoch,
                                           max_keep_ckpts=max_keep_ckpts),
                           logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=7, deterministic=True),
        resume=resume,
        load_from=load_from,
        custom_hooks=hooks,
        default_scope='mmengine',
        # mmengine names its logger and visualizer instances after the start second: unique
        # names keep runners started within one second apart.
        experiment_name=f'toy_{next(_RUNNER_IDS)}',
        **val)


def _die_during_save(n: int, atomic: bool) -> None:
    """Make the ``n``-th checkpoint write stop halfway with SIGKILL: a crash while a checkpoint
    is being written, through ``AtomicCheckpointHook``'s backend or mmengine's plain one."""
    from mmengine.fileio import LocalBackend

    from rmt_mm.checkpoints.atomic import atomic_open
    from rmt_mm.checkpoints.mmengine_io import AtomicLocalBackend
    backend = AtomicLocalBackend if atomic else LocalBackend
    original, count = backend.put, [0]

    def put(self, obj, filepath):
        if str(filepath).endswith('.pth'):
            count[0] += 1
            if count[0] == n:
                with (atomic_open(str(filepath)) if atomic else open(filepath, 'wb')) as f:
                    f.write(obj[:len(obj) // 2])
                    f.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
        original(self, obj, filepath)

    backend.put = put


if __name__ == '__main__':
    import rmt_mm.plugin  # noqa: F401  (the hooks)
    parser = argparse.ArgumentParser()
    parser.add_argument('work_dir')
    parser.add_argument('--plain', action='store_true', help="mmengine's CheckpointHook")
    parser.add_argument('--die-at-save', type=int)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', torch.get_num_threads())))
    if args.die_at_save:
        _die_during_save(args.die_at_save, atomic=not args.plain)
    make_runner(args.work_dir, interval=2, hooks=[dict(type='RNGStateHook')],
                checkpoint_type='CheckpointHook' if args.plain else 'AtomicCheckpointHook').train()
