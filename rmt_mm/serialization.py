"""Reading checkpoints safely, and writing them so that a crash never leaves a torn file.

Reading: torch >= 2.6 unpickles with ``weights_only=True``, which rejects the non-tensor objects
that mmengine's own resume checkpoints and the authors' ImageNet checkpoints hold. Rather than
switching safe loading off, :func:`install` allow-lists exactly those data types and makes
mmengine's ``HistoryBuffer`` pickle without its statistics functions: mmengine stores them as
``builtins.getattr(HistoryBuffer, 'mean')`` calls, and allow-listing ``getattr`` would let a
crafted file reach any attribute of any allow-listed object, i.e. run code. :func:`install` also
routes mmengine's local and http(s) checkpoint schemes through :func:`safe_load`, so every
mmengine load path (``load_from``, ``resume``, ``init_cfg`` of any module, URLs) gets the same
allow-list and the same one-line errors, whichever mmengine version is installed.

Writing: :func:`atomic_open` (and :class:`AtomicLocalBackend`, mmengine's local file backend
with atomic writes) replace a file only once its new content is complete and on disk.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import os.path as osp
import pickle
import re
import sys
import uuid
import zipfile
from typing import Any, BinaryIO, Iterator, List, Optional, Union
from urllib.error import URLError
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.fileio import LocalBackend, register_backend
from mmengine.logging import HistoryBuffer


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used, with the reason in one line."""


# ------------------------------------------------------------------------------- allow-list
def _numpy_globals() -> List[Any]:
    multiarray = np.core.multiarray
    safe: List[Any] = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    # numpy >= 1.25 pickles dtypes through their classes (numpy.dtypes.Float64DType, ...).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        safe += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return safe


SAFE_GLOBALS: List[Any] = [argparse.Namespace, HistoryBuffer] + _numpy_globals()
#: How this module's own refusals start inside torch's unpickling error.
_REFUSED = 'refused: '
#: What a ``HistoryBuffer`` holds besides its statistics methods.
_HISTORY_BUFFER_FIELDS = {'max_length': int, '_log_history': np.ndarray,
                          '_count_history': np.ndarray}


def _history_buffer_getstate(self: HistoryBuffer) -> dict:
    # Statistics methods are class-level registrations re-created by importing the code that
    # registers them; storing them in checkpoints only adds pickled callables.
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def _history_buffer_setstate(self: HistoryBuffer, state: Any) -> None:
    """Restore a buffer's values only. mmengine's own ``__setstate__`` merges the file's
    ``statistics_methods`` into the class-wide registry, so a file could change how every
    buffer of the process computes statistics; here a file may only name methods this process
    has registered, and its values for them are ignored."""
    if not isinstance(state, dict):
        raise pickle.UnpicklingError(f'{_REFUSED}HistoryBuffer state of type '
                                     f'{type(state).__name__}')
    state = dict(state)
    methods = state.pop('statistics_methods', None) or {}
    unknown = sorted(map(str, set(methods) - set(HistoryBuffer._statistics_methods)))
    if unknown:
        raise pickle.UnpicklingError(
            f'{_REFUSED}HistoryBuffer statistics methods {unknown}: only methods registered in '
            f'this process ({sorted(HistoryBuffer._statistics_methods)}) are accepted')
    for key, value in state.items():
        kind = _HISTORY_BUFFER_FIELDS.get(key)
        if kind is None or not isinstance(value, kind):
            raise pickle.UnpicklingError(f'{_REFUSED}HistoryBuffer field {key!r} '
                                         f'({type(value).__name__})')
    self._set_default_statistics()
    self.__dict__.update(state)


def allow_list() -> None:
    """(Re-)add the allow-list. Idempotent and cheap: :func:`safe_load` calls it before every
    load because torch's ``safe_globals`` context manager removes, on exit, the globals it was
    given even when they had been allow-listed before (onedl-mmengine 0.10.12 wraps its loads in
    one that names ``HistoryBuffer`` and the numpy types)."""
    torch.serialization.add_safe_globals(SAFE_GLOBALS)


def install() -> None:
    """Allow-list the data types of mmengine and upstream checkpoints, guard ``HistoryBuffer``
    state, and route mmengine's checkpoint and file schemes through this module (idempotent)."""
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    HistoryBuffer.__setstate__ = _history_buffer_setstate
    allow_list()
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme('', load_from_local, force=True)
    CheckpointLoader.register_scheme(('http://', 'https://'), load_from_http, force=True)
    register_backend('atomic_local', AtomicLocalBackend, force=True)


# ------------------------------------------------------------------------------- reading
_ZIP_MAGIC = (b'PK\x03\x04', b'PK\x05\x06')
#: torch's legacy (pre-1.6) format starts with its magic number pickled with protocol 2.
_LEGACY_MAGIC = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)[:-1]


def _format_problem(path: str, head: bytes) -> Optional[str]:
    """Why ``path`` cannot be a torch checkpoint, judged from its first bytes and (for zip
    archives) its directory; ``None`` if it may be one."""
    if not head:
        return 'empty file (0 bytes)'
    if head.startswith(_ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            return ('corrupt or truncated: the zip archive has no central directory (was the '
                    'save or copy cut short?)')
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if not any(n == 'data.pkl' or n.endswith('/data.pkl') for n in names):
            return (f'a zip archive that is not a PyTorch checkpoint (no data.pkl; it holds '
                    f'{len(names)} files, e.g. {names[0] if names else "none"})')
        return None
    if head.startswith(_LEGACY_MAGIC) or head[257:262] == b'ustar':
        return None  # torch's legacy pickle or tar formats: torch reads them
    if head.startswith(b'\x80'):
        return 'a plain Python pickle, not a PyTorch checkpoint (torch.save writes a zip archive)'
    if b'\0' not in head:
        text = head.decode('utf-8', errors='replace').strip()
        if text.startswith('version https://git-lfs'):
            return 'a Git LFS pointer, not the checkpoint itself (fetch it with `git lfs pull`)'
        if text[:15].lower().startswith(('<!doctype html', '<html')):
            return 'an HTML page, not a checkpoint (a failed or redirected download?)'
        first = text.splitlines()[0][:40] if text else ''
        return f'a text file, not a PyTorch checkpoint (it starts with {first!r})'
    return f'not a PyTorch checkpoint (unknown format; first bytes {head[:8].hex(" ")})'


def _unpickling_problem(message: str) -> str:
    """One line from torch's weights-only error, without its advice to disable safe loading."""
    found = re.search(r'GLOBAL ([\w.]+)', message)
    if found:
        return (f'refused as unsafe: it references {found.group(1)}, which is not plain data '
                '(only tensors, numbers, strings and containers of them are loaded)')
    for pattern, what in ((r'call reduce for unrecognized function (.+?)(?: which|$)', 'calls'),
                          (r'but got (<class .+?>)', 'constructs')):
        found = re.search(pattern, message, re.MULTILINE)
        if found:
            return f'refused as unsafe: it {what} {found.group(1)}, which is not plain data'
    # torch puts the unpickler's own message after 'WeightsUnpickler error:', on that line or
    # the next non-empty one, between paragraphs of advice.
    after = message.split('WeightsUnpickler error:', 1)[-1]
    lines = [ln.strip() for ln in after.splitlines() if ln.strip()]
    detail = lines[0] if lines else ''
    if detail.startswith(_REFUSED):
        return f'refused as unsafe: {detail[len(_REFUSED):]}'
    return f'damaged: its pickled data cannot be read ({detail})'


def _damage(err: Exception) -> str:
    """One line for the many ways torch reports a damaged archive or stream."""
    message = str(err).strip()
    missing = re.search(r'failed locating file (\S+?):', message)
    if missing:
        return f'damaged: tensor data record {missing.group(1)} is missing from the archive'
    if 'record size' in message:
        return f'damaged: a tensor data record is shorter than its tensor ({message})'
    if isinstance(err, EOFError) or 'unexpected EOF' in message:
        return 'corrupt or truncated: the file ends in the middle of its data'
    first = re.split(r'(?<=\.) ', message.splitlines()[0])[0] if message else ''
    return f'damaged ({type(err).__name__}: {first})'


def safe_load(path: str, map_location: Any = 'cpu', *, name: Optional[str] = None) -> Any:
    """``torch.load`` with ``weights_only=True`` and one-line errors that name ``name`` (default
    ``path``) and the problem: missing, empty, text, not a checkpoint, truncated, damaged, or
    refused as unsafe."""
    name = name or path
    if not osp.exists(path):
        raise CheckpointError(f'checkpoint not found: {name}')
    if not osp.isfile(path):
        raise CheckpointError(f'{name}: not a file')
    with open(path, 'rb') as f:
        head = f.read(512)
    problem = _format_problem(path, head)
    if problem:
        raise CheckpointError(f'{name}: {problem}')
    allow_list()
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f'{name}: {_unpickling_problem(str(err))}') from None
    except Exception as err:  # torch raises many types for damaged zip/pickle streams
        raise CheckpointError(f'{name}: {_damage(err)}') from None


def check_checkpoint_file(filename: str) -> None:
    """Fail fast, before anything is built, if ``filename`` (a path or an http(s) URL, then
    downloaded into the cache the run reads it from) cannot be read as a checkpoint. It is read
    completely: a tensor record cut short shows only then."""
    if filename.startswith(('http://', 'https://')):
        safe_load(download_checkpoint(filename), name=filename)
    elif '://' not in filename:  # another mmengine scheme: its own loader reports its errors
        safe_load(osp.expanduser(filename))


def load_from_local(filename: str, map_location: Any = None) -> Any:
    """mmengine's local checkpoint scheme, through :func:`safe_load`."""
    return safe_load(osp.expanduser(filename), map_location)


def download_checkpoint(url: str, model_dir: Optional[str] = None) -> str:
    """Download ``url`` into torch's hub cache (``<hub dir>/checkpoints``, as mmengine and
    torchvision do) unless it is there already; return the local path."""
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    basename = osp.basename(urlparse(url).path)
    if not basename:
        raise CheckpointError(f'{url}: the URL names no file')
    cached = osp.join(model_dir, basename)
    if not osp.isfile(cached):
        os.makedirs(model_dir, exist_ok=True)
        try:  # downloads into a temporary file and renames it when complete
            torch.hub.download_url_to_file(url, cached, progress=sys.stderr.isatty())
        except (URLError, OSError, ValueError) as err:
            raise CheckpointError(f'{url}: download failed ({err})') from None
    return cached


def load_from_http(filename: str, map_location: Any = None, model_dir: Optional[str] = None,
                   progress: bool = False) -> Any:
    """mmengine's http(s) scheme: download once per machine (rank 0 first), then
    :func:`safe_load` the cached file."""
    del progress  # mmengine's signature; the download shows progress on a terminal
    rank, world_size = get_dist_info()
    cached = download_checkpoint(filename, model_dir) if rank == 0 else None
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            cached = download_checkpoint(filename, model_dir)
    return safe_load(cached, map_location, name=f'{filename} (cached as {cached})')


# ------------------------------------------------------------------------------- writing
def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for writing; on success make its content durable
    (fsync), rename it over ``path`` and fsync the directory, so a crash at any moment leaves
    either the old file or the complete new one. On failure the temporary file is removed."""
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = osp.join(directory, f'.{osp.basename(path)}.{uuid.uuid4().hex[:8]}.tmp')
    try:
        # os.open honours the umask, unlike tempfile's private 0600 files.
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), 'wb') as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` through :func:`atomic_open`."""
    with atomic_open(path) as f:
        torch.save(obj, f)


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with crash-safe ``put``/``put_text`` (see
    :func:`atomic_open`); :class:`rmt_mm.hooks.AtomicCheckpointHook` saves through it."""

    def put(self, obj: bytes, filepath: Union[str, os.PathLike]) -> None:
        with atomic_open(str(filepath)) as f:
            f.write(obj)

    def put_text(self, obj: str, filepath: Union[str, os.PathLike],
                 encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)
