"""What the tools share: config loading for either codebase, fail-fast checks of the paths and
checkpoints a run needs, the safety hooks, and one-line errors.

A config's ``default_scope`` (``mmdet`` or ``mmseg``, set by the ``mmdet::``/``mmseg::`` bases)
picks the codebase, so one pair of tools serves detection and segmentation.
"""
import argparse
import datetime
import importlib
import inspect
import logging
import os
import os.path as osp
import re
import subprocess
import sys
from typing import Callable, Iterator, Optional, Sequence, Tuple

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import print_log

from .checkpoints.reading import check_checkpoint_file
from .engine.hooks.rank_watchdog_hook import peer_lost
from .errors import CheckpointError, ConfigError, DataError
from .log import quiet_codebase_import

SUPPORTED_SCOPES = ('mmdet', 'mmseg')
#: Set to 1 to see the traceback of a tool's error (as ``--debug`` does).
DEBUG_ENV = 'RMT_MM_DEBUG'


def load_config(path: str, cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None) -> Tuple[Config, str]:
    """Read ``path``, apply overrides, default the work dir and return ``(cfg, scope)``."""
    if not osp.isfile(path):
        raise ConfigError(f'config file not found: {path}')
    try:
        cfg = Config.fromfile(path)
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
    except Exception as err:  # mmengine reports syntax errors, bad bases, ... in many types
        raise ConfigError(f'{path}: cannot read the config ({type(err).__name__}: '
                          f'{_first_line(str(err))})') from err
    scope = cfg.get('default_scope')
    if scope not in SUPPORTED_SCOPES:
        raise ConfigError(f'{path}: default_scope is {scope!r}; expected one of '
                          f'{SUPPORTED_SCOPES} (inherit an mmdet:: or mmseg:: base config)')
    # Registers the codebase's modules; importing rmt_mm (done by the caller) adds ours.
    with quiet_codebase_import():
        importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=True)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg, scope


def _first_line(message: str) -> str:
    message = message.strip()
    return message.splitlines()[0] if message else ''


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
    """Fail before building anything if a checkpoint or data path of the run is missing, or a
    checkpoint cannot be read (:func:`rmt_mm.checkpoints.reading.check_checkpoint_file`)."""
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
    for key, path in checkpoints:
        if path:
            try:
                check_checkpoint_file(path)
            except CheckpointError as err:
                raise CheckpointError(f'{key}: {err}') from None


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple, range)) else [value]


def _consumers(model: dict) -> Iterator[Tuple[str, dict]]:
    """The modules that take the backbone's maps: the neck, else the heads."""
    if model.get('neck'):
        neck = model['neck']
        yield 'model.neck', neck[0] if isinstance(neck, (list, tuple)) else neck
        return
    for key in ('decode_head', 'auxiliary_head', 'panoptic_head'):
        heads = model.get(key) or []
        heads = heads if isinstance(heads, (list, tuple)) else [heads]
        for i, head in enumerate(heads):
            yield f'model.{key}' + (f'[{i}]' if len(heads) > 1 else ''), head


def check_channels(cfg: Config) -> None:
    """Fail in one line, before building anything, if the neck (or the heads) of a model with
    one of this package's backbones expects other widths than the backbone's arch gives, as
    when an arch is swapped into a config written for another."""
    from .models import FAMILIES
    model = cfg.get('model') or {}
    model = model.get('module', model)  # test-time-augmentation wrapper
    backbone = model.get('backbone') or {}
    families = {cls.__name__: cls for cls in FAMILIES.values()}
    family = families.get(str(backbone.get('type', '')).split('.')[-1])
    if family is None:
        return
    defaults = inspect.signature(family.__init__).parameters
    arch = backbone.get('arch', defaults['arch'].default)
    indices = _as_list(backbone.get('out_indices', defaults['out_indices'].default))
    try:
        dims = family.resolve_arch(arch)['embed_dims']
        widths = [dims[i] for i in indices]
    except (ValueError, TypeError, IndexError):
        return  # the backbone's own checks name the problem when it is built
    for key, consumer in _consumers(model):
        expected, index = consumer.get('in_channels'), consumer.get('in_index')
        if expected is None:
            continue
        if index is None:
            got = widths if isinstance(expected, (list, tuple)) else widths[-1]
        else:
            picked = [index] if isinstance(index, int) else list(index)
            if any(not -len(widths) <= i < len(widths) for i in picked):
                continue
            got = [widths[i] for i in picked]
            got = got[0] if isinstance(index, int) else got
        if _as_list(expected) != _as_list(got):
            raise ConfigError(
                f'{key}.in_channels is {_as_list(expected)}, but model.backbone '
                f'({family.__name__} arch {arch!r}, out_indices {indices}) gives '
                f'{_as_list(got)} channels')


def add_safety_hooks(cfg: Config, allow_partial: Sequence[str] = (),
                     allow_nonfinite: bool = False) -> None:
    """Make sure the run loads checkpoints strictly, writes them crash-safely, resumes an epoch
    loop where it stopped, saves on preemption and stops when a rank dies
    (:mod:`rmt_mm.checkpoints.hooks`, :mod:`rmt_mm.engine.hooks`), also for configs that do not
    ask for it, and apply the tools' ``--partial-load``/``--allow-nonfinite`` to the strict
    loader."""
    hooks = cfg.setdefault('default_hooks', {})
    strict = hooks.get('strict_load') or dict(type='StrictLoadHook')
    if allow_partial:
        strict['allow_partial'] = list(strict.get('allow_partial', [])) + list(allow_partial)
    if allow_nonfinite:
        strict['allow_nonfinite'] = True
    hooks['strict_load'] = strict
    hooks.setdefault('mid_epoch_resume', dict(type='MidEpochResumeHook'))
    hooks.setdefault('preemption', dict(type='PreemptionHook'))
    hooks.setdefault('rank_watchdog', dict(type='RankWatchdogHook'))
    checkpoint = hooks.get('checkpoint')
    if checkpoint is not None and checkpoint.get('type') in ('CheckpointHook',
                                                             'mmengine.CheckpointHook'):
        checkpoint['type'] = 'AtomicCheckpointHook'


def add_loading_args(parser: argparse.ArgumentParser) -> None:
    """``--partial-load`` and ``--allow-nonfinite`` for tools that load model checkpoints."""
    parser.add_argument('--partial-load', nargs='+', default=[], metavar='PREFIX',
                        help='let the keys under these prefixes (module names such as '
                        'roi_head.bbox_head.fc_cls) be missing from the checkpoint or differ in '
                        'shape; they keep their initial values and are logged')
    parser.add_argument('--allow-nonfinite', action='store_true',
                        help='load checkpoint weights that hold NaN or Inf (refused by default)')


def add_debug_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--debug', action='store_true',
                        help=f'show the traceback of an error (also {DEBUG_ENV}=1)')


# mmengine's notes on its own deprecated file client, which its CheckpointHook creates on every
# run: known-harmless, filtered in the tools' runners only (the tools also filter setuptools'
# pkg_resources deprecation warning, before they import mmengine).
_NOISE_LOG = re.compile(r'^"(FileClient" will be deprecated|HardDiskBackend" is the alias)')


class _KnownNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _NOISE_LOG.match(record.getMessage())


def quiet_known_noise(logger: logging.Logger) -> None:
    """Filter mmengine's known-harmless file-client notes from ``logger``; nothing else."""
    if not any(isinstance(f, _KnownNoise) for f in logger.filters):
        logger.addFilter(_KnownNoise())


def error_line(err: BaseException) -> str:
    """One line for a tool's error: the message of the errors that name a bad input (also when
    raised in a DataLoader worker, which wraps them in a traceback), else type and first line."""
    message = str(err).strip()
    if 'Original Traceback' in message:  # torch's worker wrapper: the last line is the error
        message = re.sub(r'^[\w.]+: ', '', message.splitlines()[-1])
    line = _first_line(message)
    if isinstance(err, (ConfigError, CheckpointError, DataError, FileNotFoundError)):
        return line
    return (f'{type(err).__name__}: {line} (run with --debug or {DEBUG_ENV}=1 for the '
            'traceback)')


def run_cli(body: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a tool's ``body``; an error becomes one ``error: ...`` line on stderr and exit code 2
    (config) or 1 (anything else), unless ``--debug``/``RMT_MM_DEBUG=1`` asks for the
    traceback."""
    try:
        return body(args)
    except Exception as err:
        if getattr(args, 'debug', False) or os.environ.get(DEBUG_ENV) == '1':
            raise
        print(f'error: {peer_lost(err) or error_line(err)}', file=sys.stderr)
        return 2 if isinstance(err, ConfigError) else 1


def _slurm_environment() -> None:
    """The variables mmengine's slurm launcher (``_init_dist_slurm``) derives from Slurm's, set
    the same way: rank and world size from the task's, the first node of the job as master
    (``MASTER_ADDR`` and ``MASTER_PORT``, default 29500, are kept if set)."""
    try:
        rank, ntasks = os.environ['SLURM_PROCID'], os.environ['SLURM_NTASKS']
        nodes = os.environ['SLURM_NODELIST']
    except KeyError as err:
        raise ConfigError(f'--launcher slurm: {err.args[0]} is not set (start the tool with '
                          'srun, e.g. tools/slurm_train.sh)') from None
    if 'MASTER_ADDR' not in os.environ:
        try:
            hosts = subprocess.run(['scontrol', 'show', 'hostnames', nodes], capture_output=True,
                                   text=True, check=False).stdout.split()
        except OSError:  # no scontrol here: a one-node list is its host already
            hosts = []
        os.environ['MASTER_ADDR'] = hosts[0] if hosts else nodes
    os.environ.setdefault('MASTER_PORT', '29500')
    os.environ.update(RANK=rank, WORLD_SIZE=ntasks,
                      LOCAL_RANK=os.environ.get('SLURM_LOCALID', '0'))


def setup_cpu_distributed(cfg: Config) -> None:
    """Make ``--launcher pytorch`` and ``--launcher slurm`` work on machines without CUDA.

    mmengine's launchers call ``torch.cuda.set_device`` and wrap the model in DDP with
    ``device_ids=[LOCAL_RANK]``, both of which fail without CUDA. Here the process group is
    started with gloo (NCCL cannot run on CPU) before the runner is built, which then skips its
    own initialisation, and DDP is configured without device ids. For slurm the environment
    comes from Slurm's variables as mmengine derives it. With CUDA, mmengine's own launchers
    run unchanged.
    """
    if cfg.get('launcher') not in ('pytorch', 'slurm') or torch.cuda.is_available() \
            or torch_dist.is_initialized():
        return
    if cfg.launcher == 'slurm':
        _slurm_environment()
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
