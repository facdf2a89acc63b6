"""Writing files so that a crash at any moment leaves the old file or the complete new one,
never a torn one: checkpoints, the converter's output, the ``last_checkpoint`` pointer."""
import contextlib
import errno
import os
import os.path as osp
import uuid
from typing import Any, BinaryIO, Iterator

import torch

from ..errors import CheckpointError


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
    either the old file or the complete new one. On failure the temporary file is removed; a
    full disk (or quota) becomes a one-line :class:`CheckpointError` naming ``path``."""
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
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CheckpointError(f'{path}: cannot write it ({err.strerror}); the previous file '
                                  'is kept') from None
        raise
    _fsync_dir(directory)


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save`` through :func:`atomic_open`."""
    with atomic_open(path) as f:
        torch.save(obj, f)
