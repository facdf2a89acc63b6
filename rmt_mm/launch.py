"""What ``tools/train.py`` and ``tools/test.py`` share: config loading for either codebase and
fail-fast checks of the paths a run needs.

A config's ``default_scope`` (``mmdet`` or ``mmseg``, set by the ``mmdet::``/``mmseg::`` bases)
picks the codebase, so one pair of tools serves detection and segmentation.
"""
import datetime
import importlib
import os.path as osp
from typing import Iterator, Optional, Sequence, Tuple

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import print_log

SUPPORTED_SCOPES = ('mmdet', 'mmseg')


class ConfigError(ValueError):
    """A config that cannot run, with the offending key and value."""


def load_config(path: str, cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None) -> Tuple[Config, str]:
    """Read ``path``, apply overrides, default the work dir and return ``(cfg, scope)``."""
    if not osp.isfile(path):
        raise ConfigError(f'config file not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope not in SUPPORTED_SCOPES:
        raise ConfigError(f'{path}: default_scope is {scope!r}; expected one of '
                          f'{SUPPORTED_SCOPES} (inherit an mmdet:: or mmseg:: base config)')
    # Registers the codebase's modules; importing rmt_mm (done by the caller) adds ours.
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=True)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg, scope


def _dataset_paths(dataset: dict) -> Iterator[Tuple[str, str]]:
    """(description, path) of the files a dataset config reads, following wrappers."""
    if 'dataset' in dataset:  # RepeatDataset, ClassBalancedDataset, ...
        yield from _dataset_paths(dataset['dataset'])
        return
    for sub in dataset.get('datasets', []):  # ConcatDataset
        yield from _dataset_paths(sub)
    root = dataset.get('data_root') or ''
    if root:
        yield 'data_root', root
    ann = dataset.get('ann_file')
    if ann:
        yield 'ann_file', ann if osp.isabs(ann) or not root else osp.join(root, ann)
    for key, sub in (dataset.get('data_prefix') or {}).items():
        if isinstance(sub, str) and sub:
            yield f'data_prefix.{key}', sub if osp.isabs(sub) or not root else osp.join(root, sub)


def check_paths(cfg: Config, splits: Sequence[str]) -> None:
    """Fail before building anything if a checkpoint or data path of the run is missing."""
    problems = []
    checkpoints = [('load_from', cfg.get('load_from'))]
    backbone = cfg.get('model', {}).get('backbone') or {}
    if 'module' in cfg.get('model', {}):  # test-time-augmentation wrapper
        backbone = cfg.model.module.get('backbone') or {}
    init_cfg = backbone.get('init_cfg') or {}
    if init_cfg.get('type') == 'Pretrained' and not cfg.get('load_from') \
            and not cfg.get('resume'):
        checkpoints.append(('model.backbone.init_cfg.checkpoint', init_cfg.get('checkpoint')))
    for key, path in checkpoints:
        if path and '://' not in path and not osp.isfile(path):
            problems.append(f'{key}: checkpoint not found: {path}')
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        for key, path in _dataset_paths(loader['dataset']):
            if '://' not in path and not osp.exists(path):
                problems.append(f'{split}_dataloader.dataset.{key}: not found: {path}')
    if problems:
        raise ConfigError('; '.join(problems))


def setup_cpu_distributed(cfg: Config) -> None:
    """Make ``--launcher pytorch`` work on machines without CUDA.

    mmengine's pytorch launcher calls ``torch.cuda.set_device`` and wraps the model in DDP with
    ``device_ids=[LOCAL_RANK]``, both of which fail without CUDA. Here the process group is
    started with gloo (NCCL cannot run on CPU) before the runner is built, which then skips its
    own initialisation, and DDP is configured without device ids.
    """
    if cfg.get('launcher') != 'pytorch' or torch.cuda.is_available() \
            or torch_dist.is_initialized():
        return
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg') or {})
    if dist_cfg.pop('backend', 'gloo') != 'gloo':
        print_log('no CUDA device: using the gloo backend instead of env_cfg.dist_cfg.backend',
                  logger='current')
    if 'timeout' in dist_cfg:
        dist_cfg['timeout'] = datetime.timedelta(seconds=dist_cfg['timeout'])
    torch_dist.init_process_group(backend='gloo', **dist_cfg)
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
