#!/usr/bin/env python
"""Run a model folder written by tools/deploy.py with the mmdeploy SDK (``mmdeploy_runtime``):
no torch, mmcv, mmdet or mmseg, only mmdeploy-runtime 1.3.1, numpy and OpenCV.

    pip install mmdeploy-runtime==1.3.1 'numpy<2' 'opencv-python<4.12'   # scripts/stacks/sdk.txt
    python tools/sdk_infer.py work_dirs/deploy/maskrcnn IMAGE... [--score-thr 0.3] [--out r.npz]

Prints one line per image (detections above ``--score-thr``, or the classes of the label map);
``--out`` saves every result (boxes, scores, labels and full-image masks; label maps) as
``.npz``. The folder, the runtime and the network file are checked first, each failure one
``error:`` line: a runtime that gives wrong results (another mmdeploy_runtime, numpy 2), a
missing or unreadable SDK file, a task the SDK cannot run here, a folder written by another
mmdeploy or for another backend, an ONNX file this runtime's onnxruntime cannot read or whose
input is not the one the pipeline feeds.

This script imports nothing of rmt_mm (whose models need torch).
"""
import argparse
import contextlib
import json
import os
import os.path as osp
import sys
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

#: What the runtime's bundled onnxruntime (1.15.1, in mmdeploy-runtime 1.3.1) reads.
RUNTIME_VERSION = '1.3.1'
MAX_IR_VERSION = 9
MAX_OPSET = 19
SDK_FILES = ('deploy.json', 'pipeline.json', 'detail.json')
TASKS = ('Detector', 'Segmentor')


class Unusable(Exception):
    """A folder, file or runtime that cannot run: its message is the one line printed."""


@contextlib.contextmanager
def sdk_log_hidden(hidden: bool) -> Iterator[None]:
    """The SDK's C++ log (``loading libmmdeploy_ort_net.so ...`` at import, ``Load model`` and
    the like) kept off stderr and stdout unless ``--verbose``: it writes to the file
    descriptors, past Python's ``sys.stderr``."""
    if not hidden:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, 'w') as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def read_json(folder: str, name: str) -> dict:
    path = osp.join(folder, name)
    if not osp.isfile(path):
        raise Unusable(f'{folder}: not a complete mmdeploy SDK model folder: {name} is missing '
                       '(tools/deploy.py writes deploy.json, pipeline.json and detail.json '
                       'beside end2end.onnx)')
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise Unusable(f'{path}: cannot be read as JSON ({err})') from err


def varint(data: bytes, pos: int) -> Tuple[int, int]:
    """The protobuf varint at ``pos`` and the position after it."""
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError('truncated')
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def fields(data: bytes) -> List[Tuple[int, object]]:
    """The top-level (field number, value) pairs of a protobuf message: ints for varints,
    bytes for length-delimited fields (sub-messages and strings)."""
    out, pos = [], 0
    while pos < len(data):
        key, pos = varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(data, pos)
        elif wire == 2:
            size, pos = varint(data, pos)
            if pos + size > len(data):
                raise ValueError('truncated')
            value, pos = data[pos:pos + size], pos + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = data[pos:pos + size], pos + size
        else:
            raise ValueError(f'wire type {wire}')
        out.append((number, value))
    return out


def onnx_header(path: str) -> Tuple[int, int, List[str]]:
    """IR version, default-domain opset and graph input names of an ONNX file, read from its
    protobuf without the onnx package (``ModelProto`` fields 1, 8 and 7; ``GraphProto``
    field 11)."""
    with open(path, 'rb') as f:
        model = fields(f.read())
    ir_version = next((v for n, v in model if n == 1), 0)
    opset = max((dict(fields(v)).get(2, 0) for n, v in model
                 if n == 8 and not dict(fields(v)).get(1)), default=0)
    graph = next((v for n, v in model if n == 7), None)
    if graph is None:
        raise ValueError('no graph')
    inputs = [dict(fields(v))[1].decode() for n, v in fields(graph) if n == 11]
    return ir_version, opset, inputs


def check_runtime(runtime_version: str) -> None:
    """:class:`Unusable` where this mmdeploy_runtime cannot give right results."""
    if runtime_version.split('.')[:2] != RUNTIME_VERSION.split('.')[:2]:
        raise Unusable(f'mmdeploy_runtime {runtime_version}: this folder layout and its checks '
                       f'are mmdeploy {RUNTIME_VERSION}\'s: pip install '
                       f'mmdeploy-runtime=={RUNTIME_VERSION}')
    if int(np.__version__.split('.')[0]) >= 2:
        raise Unusable(f'numpy {np.__version__}: mmdeploy_runtime {runtime_version} was built '
                       'against numpy 1.x and misreads numpy 2 arrays (wrong labels, lost '
                       "detections): pip install 'numpy<2' 'opencv-python<4.12'")


def check_folder(folder: str, runtime_version: str) -> str:
    """The SDK task of ``folder`` (``Detector``/``Segmentor``) after checking that this
    runtime can run it; :class:`Unusable` otherwise."""
    if not osp.isdir(folder):
        raise Unusable(f'{folder}: not a directory (the SDK model folder tools/deploy.py '
                       'writes with --work-dir)')
    deploy, pipeline = (read_json(folder, name) for name in SDK_FILES[:2])
    read_json(folder, SDK_FILES[2])
    task, models = deploy.get('task'), deploy.get('models') or [{}]
    if task not in TASKS:
        raise Unusable(f'{folder}/deploy.json: task {task!r}; this runs {" and ".join(TASKS)}')
    written_by = str(deploy.get('version', '?'))
    if written_by.split('.')[:2] != runtime_version.split('.')[:2]:
        raise Unusable(f'{folder}: written by mmdeploy {written_by}; this is mmdeploy_runtime '
                       f'{runtime_version}: pip install mmdeploy-runtime=={written_by}')
    backend = models[0].get('backend')
    if backend != 'onnxruntime':
        raise Unusable(f'{folder}/deploy.json: backend {backend!r}; mmdeploy_runtime from '
                       'PyPI runs onnxruntime models only')
    net = osp.join(folder, models[0].get('net', ''))
    if not osp.isfile(net):
        raise Unusable(f'{net}: not found (deploy.json models[0].net)')
    try:
        ir_version, opset, inputs = onnx_header(net)
    except (ValueError, KeyError, UnicodeDecodeError) as err:
        raise Unusable(f'{net}: not an ONNX model ({err})') from err
    if ir_version > MAX_IR_VERSION or opset > MAX_OPSET:
        raise Unusable(f'{net}: ONNX IR version {ir_version}, opset {opset}; the onnxruntime '
                       f'in mmdeploy_runtime {runtime_version} reads IR <= {MAX_IR_VERSION}, '
                       f'opset <= {MAX_OPSET}: export with configs/deploy/ (opset 11)')
    tasks = pipeline.get('pipeline', {}).get('tasks', [])
    wanted = next((t.get('input_map', {}).get('img') for t in tasks if t.get('module') == 'Net'),
                  None)
    if wanted not in inputs:
        raise Unusable(f'{net}: inputs {inputs}; pipeline.json feeds {wanted!r}: the network '
                       'file is not the one this folder was written for')
    return task


def read_image(path: str) -> np.ndarray:
    import cv2
    img = cv2.imread(path) if osp.isfile(path) else None
    if img is None:
        raise Unusable(f'{path}: ' + ('cannot be decoded as an image' if osp.isfile(path)
                                      else 'not found'))
    return img


def full_masks(bboxes: np.ndarray, masks: Sequence[np.ndarray],
               shape: Tuple[int, int]) -> np.ndarray:
    """The SDK's masks (each cropped at its box, from ``floor(x0) - 1``, ``floor(y0) - 1``)
    pasted into image-sized boolean masks."""
    out = np.zeros((len(bboxes), *shape), bool)
    for i, (box, mask) in enumerate(zip(bboxes, masks)):
        if not mask.size:  # a box under a pixel
            continue
        x0, y0 = (max(int(np.floor(v)) - 1, 0) for v in box[:2])
        crop = mask[:shape[0] - y0, :shape[1] - x0] > 0
        out[i, y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
    return out


def run(folder: str, task: str, images: Sequence[str], score_thr: float, verbose: bool
        ) -> Dict[str, np.ndarray]:
    """Each image through the SDK; prints one line per image, returns the arrays."""
    import mmdeploy_runtime
    try:
        with sdk_log_hidden(not verbose):
            model = getattr(mmdeploy_runtime, task)(model_path=folder, device_name='cpu',
                                                    device_id=0)
    except RuntimeError as err:
        raise Unusable(f'{folder}: the SDK cannot load it ({err}; --verbose shows its log)'
                       ) from err
    results: Dict[str, np.ndarray] = {}
    for i, path in enumerate(images):
        img = read_image(path)
        if task == 'Detector':
            with sdk_log_hidden(not verbose):
                bboxes, labels, masks = model(img)
            keep = bboxes[:, 4] >= score_thr
            results.update({f'{i}_bboxes': bboxes[:, :4], f'{i}_scores': bboxes[:, 4],
                            f'{i}_labels': labels})
            if masks is not None and any(m.size for m in masks):  # boxes-only: all empty
                results[f'{i}_masks'] = full_masks(bboxes, masks, img.shape[:2])
            print(f'{path}: {int(keep.sum())} detections with score >= {score_thr}: labels '
                  f'{sorted(set(labels[keep].tolist()))}')
        else:
            with sdk_log_hidden(not verbose):
                seg = model(img)
            if seg.dtype == np.float32:  # scores (with_argmax=False): the classes' maps
                seg = seg.argmax(0)
            results[f'{i}_seg'] = seg.astype(np.int64)
            print(f'{path}: label map {seg.shape[0]}x{seg.shape[1]}, classes '
                  f'{sorted(np.unique(seg).tolist())}')
    return results


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('folder', help='the SDK model folder (tools/deploy.py --work-dir)')
    parser.add_argument('images', nargs='+')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detections counted in the printed lines')
    parser.add_argument('--out', help='save the results here (.npz)')
    parser.add_argument('--verbose', action='store_true', help="show the SDK's own log")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        with sdk_log_hidden(not args.verbose):
            import mmdeploy_runtime
    except ImportError as err:
        print(f'error: this needs the mmdeploy SDK ({err}): pip install '
              f'mmdeploy-runtime=={RUNTIME_VERSION}', file=sys.stderr)
        return 2
    try:
        version = getattr(mmdeploy_runtime, '__version__', '?')
        check_runtime(version)
        task = check_folder(args.folder, version)
        for path in args.images:
            read_image(path)
        results = run(args.folder, task, args.images, args.score_thr, args.verbose)
    except Unusable as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    if args.out:
        np.savez(args.out, **results)
    return 0


if __name__ == '__main__':
    sys.exit(main())
