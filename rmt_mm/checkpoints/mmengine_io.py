"""The mmengine side of checkpoint reading and writing, installed by :func:`rmt_mm.plugin.install`.

- mmengine's checkpoint schemes for local paths and http(s) URLs, through
  :func:`~rmt_mm.checkpoints.reading.safe_load`: every mmengine load path (``load_from``,
  ``resume``, ``init_cfg`` of any module, URLs) gets the same allow-list and one-line errors,
  whichever mmengine release is installed.
- ``HistoryBuffer``'s state without its statistics functions: mmengine pickles them as
  ``builtins.getattr(HistoryBuffer, 'mean')`` calls, and allow-listing ``getattr`` would let a
  crafted file reach any attribute of any allow-listed object, i.e. run code. Restoring a
  buffer's state accepts only its values (:func:`history_buffer_setstate`).
- :class:`AtomicLocalBackend`: mmengine's local file backend with crash-safe writes.
"""
import os
import os.path as osp
import pickle
from typing import Any, Optional, Union

import numpy as np
from mmengine.fileio import LocalBackend
from mmengine.logging import HistoryBuffer

from .atomic import atomic_open
from .reading import REFUSED, fetch_checkpoint, safe_load

#: What a ``HistoryBuffer`` holds besides its statistics methods.
_HISTORY_BUFFER_FIELDS = {'max_length': int, '_log_history': np.ndarray,
                          '_count_history': np.ndarray}


def history_buffer_getstate(self: HistoryBuffer) -> dict:
    """A buffer's values: its statistics methods are class-level registrations re-created by
    importing the code that registers them, so storing them only adds pickled callables."""
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def history_buffer_setstate(self: HistoryBuffer, state: Any) -> None:
    """Restore a buffer's values only. mmengine's own ``__setstate__`` merges the file's
    ``statistics_methods`` into the class-wide registry, so a file could change how every
    buffer of the process computes statistics; here a file may only name methods this process
    has registered, and its values for them are ignored."""
    if not isinstance(state, dict):
        raise pickle.UnpicklingError(f'{REFUSED}HistoryBuffer state of type '
                                     f'{type(state).__name__}')
    state = dict(state)
    methods = state.pop('statistics_methods', None) or {}
    unknown = sorted(map(str, set(methods) - set(HistoryBuffer._statistics_methods)))
    if unknown:
        raise pickle.UnpicklingError(
            f'{REFUSED}HistoryBuffer statistics methods {unknown}: only methods registered in '
            f'this process ({sorted(HistoryBuffer._statistics_methods)}) are accepted')
    for key, value in state.items():
        kind = _HISTORY_BUFFER_FIELDS.get(key)
        if kind is None or not isinstance(value, kind):
            raise pickle.UnpicklingError(f'{REFUSED}HistoryBuffer field {key!r} '
                                         f'({type(value).__name__})')
    self._set_default_statistics()
    self.__dict__.update(state)


def load_from_local(filename: str, map_location: Any = None) -> Any:
    """mmengine's local checkpoint scheme, through :func:`safe_load`."""
    return safe_load(osp.expanduser(filename), map_location)


def load_from_http(filename: str, map_location: Any = None, model_dir: Optional[str] = None,
                   progress: bool = False) -> Any:
    """mmengine's http(s) scheme: download once per machine, then :func:`safe_load` the
    cached file."""
    del progress  # mmengine's signature; the download shows progress on a terminal
    cached = fetch_checkpoint(filename, model_dir)
    return safe_load(cached, map_location, name=f'{filename} (cached as {cached})')


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with crash-safe ``put``/``put_text`` (see
    :func:`atomic_open`); :class:`~rmt_mm.checkpoints.hooks.AtomicCheckpointHook` saves through
    it."""

    def put(self, obj: bytes, filepath: Union[str, os.PathLike]) -> None:
        with atomic_open(str(filepath)) as f:
            f.write(obj)

    def put_text(self, obj: str, filepath: Union[str, os.PathLike],
                 encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)
