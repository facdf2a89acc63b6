"""Reading checkpoints safely on every supported torch, with one-line errors.

Nothing a checkpoint holds may run code when it is read. torch >= 2.5 reads it with its
weights-only unpickler, extended for the duration of the read (``torch.serialization.
safe_globals``) by :data:`SAFE_GLOBALS`: the data types the authors' ImageNet checkpoints
(``argparse.Namespace``) and mmengine's training state (numpy arrays) hold. Older torch cannot
extend its weights-only unpickler; there :class:`RestrictedUnpickler` reads the file with torch's
own tensor-rebuilding globals plus the same allow-list. Both refuse everything else with the
same message, and numpy refuses object arrays given as raw memory on both.

Errors are :class:`~rmt_mm.errors.CheckpointError` naming the file and the problem: missing,
empty, text, not a checkpoint, truncated, damaged, or refused as unsafe. The message never
suggests turning safe loading off. Pure PyTorch: mmengine's load paths are routed here by
:mod:`rmt_mm.checkpoints.mmengine_io` when :mod:`rmt_mm.plugin` is imported.
"""
from __future__ import annotations

import _compat_pickle
import argparse
import codecs
import collections
import contextvars
import os
import os.path as osp
import pickle
import re
import sys
import types
import warnings
import zipfile
from typing import Any, Callable, Dict, List, Optional
from urllib.error import URLError
from urllib.parse import urlparse

import numpy as np
import torch

from .. import compat
from ..errors import CheckpointError


# ------------------------------------------------------------------------------- allow-list
def _numpy_globals() -> Dict[str, Any]:
    """numpy's array and scalar pickling globals, under the names that numpy 1
    (``numpy.core``) and numpy 2 (``numpy._core``) write, so that either reads the other's
    files."""
    numpy2 = np.lib.NumpyVersion(np.__version__) >= '2.0.0'
    multiarray = np._core.multiarray if numpy2 else np.core.multiarray
    found = {'numpy.ndarray': np.ndarray, 'numpy.dtype': np.dtype}
    for fn in (multiarray._reconstruct, multiarray.scalar):
        for package in ('numpy.core', 'numpy._core'):
            found[f'{package}.multiarray.{fn.__name__}'] = fn
    # numpy >= 1.25 pickles dtypes through their classes (numpy.dtypes.Float64DType, ...).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        found.update({f'numpy.dtypes.{n}': getattr(dtypes, n) for n in dir(dtypes)
                      if n.endswith('DType')})
    return found


#: Qualified name (as a pickle names it) -> the data type it may build: what the upstream
#: ImageNet checkpoints and mmengine's training state hold besides tensors and containers.
SAFE_GLOBALS: Dict[str, Any] = {'argparse.Namespace': argparse.Namespace, **_numpy_globals()}
#: Added by :func:`allow_globals` (the plugin adds mmengine's guarded ``HistoryBuffer``).
_EXTRA_GLOBALS: Dict[str, Any] = {}
#: How this package's own refusals start, also inside torch's unpickling errors.
REFUSED = 'refused: '


def _references(qualified: str) -> str:
    # Builtins by their bare names, as torch's weights-only unpickler writes them.
    name = qualified[len('builtins.'):] if qualified.startswith('builtins.') else qualified
    return (f'it references {name}, which is not plain data (only tensors, numbers, strings '
            'and containers of them are loaded)')


def allow_globals(objects: List[type]) -> None:
    """Let checkpoints hold instances of ``objects`` too (idempotent); for types whose state
    setting is guarded against code, as :mod:`rmt_mm.checkpoints.mmengine_io` guards
    ``HistoryBuffer``."""
    _EXTRA_GLOBALS.update({f'{o.__module__}.{o.__qualname__}': o for o in objects})


def allowed_globals() -> Dict[str, Any]:
    return {**SAFE_GLOBALS, **_EXTRA_GLOBALS}


#: Plain data that newer torch's weights-only unpickler builds too (torch 2.1's does not):
#: numpy's raw array bytes (``_codecs.encode``), builtin containers, devices and dtypes.
_PLAIN_DATA: Dict[str, Any] = {
    '_codecs.encode': codecs.encode, 'builtins.bytearray': bytearray, 'builtins.set': set,
    'builtins.complex': complex, 'collections.Counter': collections.Counter,
    'torch.device': torch.device,
    **{f'torch.{name}': obj for name, obj in vars(torch).items() if isinstance(obj, torch.dtype)}}


class RestrictedUnpickler(pickle.Unpickler):
    """A pickle reader that builds only allow-listed globals: torch's own tensor and storage
    globals (those of its weights-only unpickler), plain data and :func:`allowed_globals`. For
    torch releases whose weights-only unpickler cannot be extended."""

    def find_class(self, module: str, name: str) -> Any:
        from torch._weights_only_unpickler import _get_allowed_globals
        # Protocol 2 (torch.save's) names builtins as Python 2 did (__builtin__.getattr).
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        qualified = f'{module}.{name}'
        found = {**_get_allowed_globals(), **_PLAIN_DATA, **allowed_globals()}.get(qualified)
        if found is None:
            raise pickle.UnpicklingError(REFUSED + _references(qualified))
        return found

    def __setattr__(self, name: str, value: Any) -> None:
        # torch sets the function that reads each tensor's storage record; older torch trusts
        # the record's length, so a record cut short would load as a tensor of garbage.
        if name == 'persistent_load':
            value = _checked_record_reader(value, _RECORD_SIZES.get())
        super().__setattr__(name, value)


#: The byte size of each tensor data record (by key) of the archive being read.
_RECORD_SIZES: contextvars.ContextVar[Optional[Dict[str, int]]] = contextvars.ContextVar(
    'record_sizes', default=None)


def _checked_record_reader(read: Callable[[Any], Any],
                           sizes: Optional[Dict[str, int]]) -> Callable[[Any], Any]:
    """``read`` (torch's persistent-id loader) that first checks that the storage record holds
    all the bytes its tensors need, with torch's own wording for a short record."""

    def checked(saved_id: Any) -> Any:
        if isinstance(saved_id, tuple) and saved_id[0] == 'storage' and sizes:
            _, storage_type, key, _, numel = saved_id
            dtype = getattr(storage_type, 'dtype', torch.uint8)
            expected = numel * torch._utils._element_size(dtype)
            if sizes.get(str(key), expected) < expected:
                raise RuntimeError(f'record size ({sizes[str(key)]} bytes) does not match '
                                   f'expected size ({expected} bytes) of tensor data record '
                                   f'data/{key}')
        return read(saved_id)

    return checked


#: What ``torch.load(pickle_module=...)`` needs of a pickle module.
_RESTRICTED_PICKLE = types.SimpleNamespace(
    __name__='rmt_mm.checkpoints.reading.restricted_pickle', Unpickler=RestrictedUnpickler,
    load=lambda f, **kwargs: RestrictedUnpickler(f, **kwargs).load())


def _torch_load(path: str, map_location: Any) -> Any:
    if compat.EXTENDABLE_WEIGHTS_ONLY:
        with torch.serialization.safe_globals(
                [(obj, name) for name, obj in allowed_globals().items()]):
            return torch.load(path, map_location=map_location, weights_only=True)
    sizes = {}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            sizes = {info.filename.rsplit('/', 1)[1]: info.file_size
                     for info in archive.infolist() if '/data/' in info.filename}
    token = _RECORD_SIZES.set(sizes)
    try:
        with warnings.catch_warnings():  # torch 2.4 warns about weights_only=False
            warnings.simplefilter('ignore', FutureWarning)
            return torch.load(path, map_location=map_location, weights_only=False,
                              pickle_module=_RESTRICTED_PICKLE)
    finally:
        _RECORD_SIZES.reset(token)


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
    """One line from an unpickling error (torch's weights-only unpickler's, whose advice to
    disable safe loading is dropped, or :class:`RestrictedUnpickler`'s)."""
    found = re.search(r'GLOBAL ([\w.]+)', message)
    if found:
        return f'refused as unsafe: {_references(found.group(1))}'
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
    if detail.startswith(REFUSED):
        return f'refused as unsafe: {detail[len(REFUSED):]}'
    return f'damaged: its pickled data cannot be read ({detail})'


#: numpy's refusal to build an object array from raw memory (its pointers would be forged).
_NUMPY_OBJECT_MEMORY = 'object pickle not returning list'


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
    """Read the checkpoint at ``path`` without running anything it holds; errors are one
    :class:`~rmt_mm.errors.CheckpointError` line naming ``name`` (default ``path``)."""
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
    try:
        return _torch_load(path, map_location)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f'{name}: {_unpickling_problem(str(err))}') from None
    except Exception as err:  # torch raises many types for damaged zip/pickle streams
        if _NUMPY_OBJECT_MEMORY in str(err):
            raise CheckpointError(f'{name}: refused as unsafe: it holds a numpy array of Python '
                                  'objects given as raw memory, which is not plain data') from None
        raise CheckpointError(f'{name}: {_damage(err)}') from None


def check_checkpoint_file(filename: str) -> None:
    """Fail fast, before anything is built, if ``filename`` (a path or an http(s) URL, then
    downloaded into the cache the run reads it from) cannot be read as a checkpoint. It is read
    completely: a tensor record cut short shows only then."""
    if filename.startswith(('http://', 'https://')):
        safe_load(download_checkpoint(filename), name=filename)
    elif '://' not in filename:  # another mmengine scheme: its own loader reports its errors
        safe_load(osp.expanduser(filename))


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


def fetch_checkpoint(url: str, model_dir: Optional[str] = None) -> str:
    """:func:`download_checkpoint` once per machine: in a distributed run rank 0 downloads
    first, the others then find the file in the cache."""
    dist = torch.distributed
    rank, world_size = ((dist.get_rank(), dist.get_world_size())
                        if dist.is_available() and dist.is_initialized() else (0, 1))
    cached = download_checkpoint(url, model_dir) if rank == 0 else None
    if world_size > 1:
        dist.barrier()
        if rank > 0:
            cached = download_checkpoint(url, model_dir)
    return cached

