"""Safe checkpoint loading on torch >= 2.6.

torch now unpickles with ``weights_only=True`` by default, which rejects the non-tensor objects
that mmengine's own resume checkpoints and the authors' ImageNet checkpoints hold. Rather than
switching safe loading off, :func:`install` allow-lists exactly those data types, and makes
mmengine's ``HistoryBuffer`` pickle without its statistics functions: mmengine stores them as
``builtins.getattr(HistoryBuffer, 'mean')`` calls, and allow-listing ``getattr`` would let a crafted
file reach any attribute of any allow-listed object, i.e. run code.
"""
from __future__ import annotations

import argparse
import os
import pickle
from typing import Any, List

import numpy as np
import torch
from mmengine.logging import HistoryBuffer


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used, with the reason in one line."""


def _numpy_globals() -> List[Any]:
    multiarray = np.core.multiarray
    safe: List[Any] = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    # numpy >= 1.25 pickles dtypes through their classes (numpy.dtypes.Float64DType, ...).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        safe += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return safe


def _history_buffer_getstate(self: HistoryBuffer) -> dict:
    # Statistics methods are class-level registrations re-created by importing the code that
    # registers them; storing them in checkpoints only adds pickled callables.
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


SAFE_GLOBALS: List[Any] = [argparse.Namespace, HistoryBuffer] + _numpy_globals()


def install() -> None:
    """Allow-list the data types of mmengine and upstream checkpoints (idempotent)."""
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    torch.serialization.add_safe_globals(SAFE_GLOBALS)


def safe_load(path: str, map_location: Any = 'cpu') -> Any:
    """``torch.load`` with ``weights_only=True`` and one-line errors naming the problem."""
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint not found: {path}')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        detail = _unpickling_detail(str(err))
        if 'GLOBAL' in detail or 'global' in detail:
            raise CheckpointError(
                f'{path}: refused to unpickle a non-allow-listed object ({detail}); '
                'only tensors and plain data are loaded') from None
        raise CheckpointError(f'{path}: corrupt or truncated checkpoint ({detail})') from None
    except Exception as err:  # torch raises many types for damaged zip/pickle streams
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ''
        raise CheckpointError(f'{path}: corrupt or truncated checkpoint '
                              f'({type(err).__name__}: {first_line})') from None


def _unpickling_detail(message: str) -> str:
    """The informative line of torch's weights-only error (it leads with generic advice)."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    for line in lines:
        if 'GLOBAL' in line or 'WeightsUnpickler error' in line:
            return line.replace('WeightsUnpickler error: ', '')
    return lines[-1] if lines else message
