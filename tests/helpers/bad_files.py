"""Bad checkpoint files, built from a good one: every class of unreadable or unsafe input."""
import argparse
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Callable, Dict, Tuple

import numpy as np
import torch


class RunsCode:
    """A pickle payload that would create ``target`` if it ever ran."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f'touch {self.target}', ))


class GetattrChain:
    """What a crafted checkpoint would use if builtins.getattr were allow-listed."""

    def __init__(self, target=None):  # as RunsCode; the chain itself runs nothing here
        self.target = target

    def __reduce__(self):
        return (getattr, (argparse.Namespace, '__init__'))


class ObjectArrayFromBytes:
    """A numpy array of Python objects given as raw memory: its "objects" would be forged
    pointers (numpy refuses to build it, on every supported version)."""

    def __init__(self, target=None):  # as RunsCode; nothing here runs code
        self.target = target

    def __reduce__(self):
        numpy2 = np.lib.NumpyVersion(np.__version__) >= '2.0.0'
        multiarray = np._core.multiarray if numpy2 else np.core.multiarray
        return (multiarray._reconstruct, (np.ndarray, (0, ), b'b'),
                (1, (2, ), np.dtype(object), False, b'\0' * 16))


def _rewrite_zip(good: bytes, edit: Callable[[str, bytes], bytes]) -> bytes:
    """The torch zip archive ``good`` with each record passed through ``edit`` (``None``
    drops it)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(out, 'w') as dst:
        for item in src.infolist():
            data = edit(item.filename, src.read(item.filename))
            if data is not None:
                dst.writestr(item, data)
    return out.getvalue()


def _zip_of_text() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w') as archive:
        archive.writestr('weights/readme.txt', 'not a checkpoint')
    return out.getvalue()


def _legacy(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


#: name -> (bytes from (good file bytes, good checkpoint object, marker path), message part)
UNREADABLE: Dict[str, Tuple[Callable, str]] = {
    'empty': (lambda good, obj, marker: b'', 'empty file (0 bytes)'),
    'truncated': (lambda good, obj, marker: good[:len(good) // 2],
                  'corrupt or truncated: the zip archive has no central directory'),
    'random bytes': (lambda good, obj, marker: bytes(range(256)) * 8,
                     'not a PyTorch checkpoint (unknown format'),
    'text': (lambda good, obj, marker: b'model = dict(type="MaskRCNN")\n',
             'a text file, not a PyTorch checkpoint'),
    'zip, not torch': (lambda good, obj, marker: _zip_of_text(),
                       'a zip archive that is not a PyTorch checkpoint'),
    'plain pickle': (lambda good, obj, marker: pickle.dumps(obj, protocol=4),
                     'a plain Python pickle, not a PyTorch checkpoint'),
    'legacy, truncated': (lambda good, obj, marker: _legacy(obj)[:-40],
                          'corrupt or truncated: the file ends in the middle'),
    'tensor data missing': (lambda good, obj, marker: _rewrite_zip(
        good, lambda name, data: None if '/data/' in name else data),
        'damaged: tensor data record data/0 is missing'),
    'tensor data short': (lambda good, obj, marker: _rewrite_zip(
        good, lambda name, data: data[:4] if '/data/' in name else data),
        'damaged: a tensor data record is shorter than its tensor'),
    'code in pickle': (lambda good, obj, marker: _torch_bytes({**obj, 'meta': RunsCode(marker)}),
                       'refused as unsafe: it references posix.system'),
    'numpy object array': (lambda good, obj, marker: _torch_bytes(
        {**obj, 'meta': ObjectArrayFromBytes()}),
        'refused as unsafe: it holds a numpy array of Python objects given as raw memory'),
    'getattr in pickle': (lambda good, obj, marker: _torch_bytes(
        {**obj, 'meta': GetattrChain()}), 'refused as unsafe: it references getattr'),
}


def write_unreadable(kind: str, good_path: Path, directory: Path) -> Tuple[Path, Path, str]:
    """Write the ``kind`` variant of the checkpoint at ``good_path``; return (its path, the
    marker a code payload would create, the expected message part)."""
    build, expected = UNREADABLE[kind]
    good = good_path.read_bytes()
    obj = torch.load(good_path, weights_only=True)
    path = directory / f'{kind.replace(" ", "_").replace(",", "")}.pth'
    marker = directory / f'{path.stem}.ran'
    path.write_bytes(build(good, obj, marker))
    return path, marker, expected
