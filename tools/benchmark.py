#!/usr/bin/env python
"""Time and memory of the RMT backbone: reference MaSA vs the fast path, in one process.

Times are medians of ``--repeats`` runs after ``--warmup`` runs, the implementations
interleaved so that machine load affects both alike. Wall and process CPU time are both
reported: with ``--threads 1`` on a shared machine, CPU time is the steadier measure (time
spent waiting for a core is not counted). Peak memory comes from the CUDA allocator
on GPU. On CPU, where no allocator high-water mark is observable in-process, each case runs
again in a fresh subprocess and reports its peak RSS, and that peak minus the RSS before the
model was built: the weights, input and activations without the ~310 MiB of loaded libraries,
i.e. what the CUDA allocator would count.

    python tools/benchmark.py --arch t s --size 800 1344 --mode infer train --out bench.md

``--onnx EXPORTER`` compares the deployed form instead: PyTorch eager (``--fast``) against
onnxruntime (CPU, default graph optimizations, the same thread count) running the backbone
exported at ``--size`` with dynamic axes (``torchscript``: opset 11, as mmdeploy exports),
inference only; memory is each side's peak RSS in a fresh process.

    python tools/benchmark.py --onnx torchscript --arch t s --size 800 1344 --threads 1

``--config CONFIG...`` compares whole detectors or segmentors instead: each config's model
(random weights, nothing downloaded) predicts on one random image of ``--size`` (the padded
input the model sees), inference only, each config timed against the first; memory as above.

    python tools/benchmark.py --config configs/maskrcnn_rmt_s_coco.py \
        configs/dino-4scale_rmt-s_8xb2-12e_coco.py --size 800 1344 --threads 1
"""
import argparse
import json
import os.path as osp
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch

from rmt_mm.benchmark import build, build_whole_model, step
from rmt_mm.cli import run_cli
from rmt_mm.errors import ConfigError
from rmt_mm.models import RMT
from rmt_mm.timing import rss_mb, time_interleaved

ONNXRUNTIME = 'onnxruntime'
CONFIG = 'config'  # the ``impl`` of a whole model built from a config


def compared(args: argparse.Namespace) -> Tuple[str, str]:
    """The baseline and the implementation measured against it."""
    return (args.fast, ONNXRUNTIME) if args.onnx else ('reference', args.fast)


def onnxruntime_version() -> str:
    import onnxruntime
    return onnxruntime.__version__


def export_backbone(args: argparse.Namespace, arch: str, folder: str) -> str:
    """The backbone exported for ``--onnx`` into ``folder``; prints its size and export time."""
    from rmt_mm.export import export_onnx
    path = osp.join(folder, f'rmt_{arch}.onnx')
    start = time.perf_counter()
    export_onnx(build(arch, args.fast), args.size, path, args.onnx)
    print(f'{arch}: {args.onnx} export at {args.size[0]}x{args.size[1]} in '
          f'{time.perf_counter() - start:.0f} s, {osp.getsize(path) / 2**20:.1f} MiB',
          flush=True)
    return path


def predictor(config: str, x: torch.Tensor) -> Callable[[], None]:
    """The prediction of ``config``'s whole model (random weights) on ``x``."""
    model, sample = build_whole_model(config, tuple(x.shape[-2:]))
    model = model.to(device=x.device, dtype=x.dtype).eval()

    def predict() -> None:
        with torch.no_grad():
            model(x, [sample] * len(x), mode='predict')
    return predict


def runner(args: argparse.Namespace, arch: str, impl: str, mode: str,
           onnx_path: Optional[str]) -> Callable[[], None]:
    """One inference or training step of ``impl`` (a config's whole model: ``arch`` is the
    config) on a fixed random input."""
    dtype = getattr(torch, args.dtype)
    x = torch.randn(args.batch, 3, *args.size, device=args.device, dtype=dtype,
                    generator=torch.Generator(args.device).manual_seed(0))
    if impl == CONFIG:
        return predictor(arch, x)
    if impl == ONNXRUNTIME:
        from rmt_mm.export import INPUT_NAME, onnx_session
        session = onnx_session(onnx_path, torch.get_num_threads())
        feed = {INPUT_NAME: x.numpy()}
        return lambda: session.run(None, feed)
    model = build(arch, impl, args.device, dtype, args.with_cp)
    return lambda: step(model, x, mode)


def peak_rss_case(args: argparse.Namespace, case: Dict) -> Dict:
    """Run one case in this (fresh) process: peak RSS, and the peak above the libraries."""
    if case['impl'] == ONNXRUNTIME:
        import onnxruntime  # noqa: F401  (a library, not the case's memory)
    if case['impl'] == CONFIG:  # mmdet's or mmseg's models and mmcv's ops: libraries too
        import importlib

        import rmt_mm.plugin  # noqa: F401
        from rmt_mm.cli import load_config
        importlib.import_module(f'{load_config(case["arch"])[1]}.models')
    libraries = rss_mb('VmRSS')
    runner(args, case['arch'], case['impl'], case['mode'], case.get('onnx'))()
    peak = rss_mb('VmHWM')
    return dict(peak_mb=peak, rise_mb=peak - libraries)


def cpu_memory(args: argparse.Namespace, arch: str, impl: str, mode: str,
               onnx_path: Optional[str]) -> Dict:
    case = dict(arch=arch, impl=impl, mode=mode, onnx=onnx_path)
    cmd = [sys.executable, __file__, '--child', json.dumps(case), '--size', *map(str, args.size),
           '--batch', str(args.batch), '--dtype', args.dtype,
           '--threads', str(torch.get_num_threads()), '--fast', args.fast]
    if args.with_cp:
        cmd.append('--with-cp')
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode:  # the child's own one-line error, not the CalledProcessError around it
        raise RuntimeError(f'{arch} {impl} {mode}: {last_line(run.stderr)}')
    return json.loads(run.stdout.strip().splitlines()[-1])


def last_line(text: str) -> str:
    """The last non-empty line of ``text`` (where a traceback or ``error:`` says why)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1].removeprefix('error: ') if lines else 'failed without a message'


def run_case(args: argparse.Namespace, arch: str, mode: str) -> Dict[str, Dict]:
    if not args.onnx:
        return measure_case(args, arch, mode, None)
    with tempfile.TemporaryDirectory() as folder:
        return measure_case(args, arch, mode, export_backbone(args, arch, folder))


def measure_case(args: argparse.Namespace, arch: str, mode: str,
                 onnx_path: Optional[str]) -> Dict[str, Dict]:
    impls = compared(args)
    # CPU memory first: the children must not share the machine's RAM with this process's
    # heap after it has run the reference (glibc keeps what it freed).
    memory = {impl: cpu_memory(args, arch, impl, mode, onnx_path) for impl in impls
              if args.device == 'cpu'}
    steps = {impl: runner(args, arch, impl, mode, onnx_path) for impl in impls}
    times = time_interleaved(steps, args.warmup if args.repeats else 0, args.repeats)
    results = {}
    for impl in impls:
        result = dict(time_s=times[impl].wall_s, cpu_s=times[impl].cpu_s)
        if args.device == 'cuda':
            steps = {}
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            runner(args, arch, impl, mode, onnx_path)()
            result['peak_mb'] = torch.cuda.max_memory_allocated() / 2**20
        else:
            result.update(memory[impl])
        results[impl] = result
    return results


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', nargs='+', default=['t', 's'])
    parser.add_argument('--size', type=int, nargs=2, default=(800, 1344), metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16', 'float16'])
    parser.add_argument('--mode', nargs='+', choices=['infer', 'train'],
                        help='train = forward + backward (default: both; infer with --config)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--with-cp', action='store_true', help='gradient checkpointing')
    parser.add_argument('--threads', type=int, help='torch intra-op threads (default: torch\'s)')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=3, help='0: memory only')
    parser.add_argument('--fast', default='blocked', choices=['blocked', 'sdpa'],
                        help='the fast implementation to compare with the reference')
    parser.add_argument('--onnx', choices=['torchscript', 'dynamo'],
                        help='compare --fast with onnxruntime on the backbone exported by '
                        'this exporter (CPU, float32, inference)')
    parser.add_argument('--config', nargs='+',
                        help='compare the whole models of these configs (inference, each '
                        'against the first) instead of backbones')
    parser.add_argument('--out', help='write the markdown table here too')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.mode = args.mode or (['infer'] if args.config else ['infer', 'train'])
    return args


def check_args(args: argparse.Namespace) -> None:
    """One :class:`ConfigError` naming the argument that cannot be measured."""
    if args.config:
        missing = [c for c in args.config if not osp.isfile(c)]
        if missing:
            raise ConfigError(f'--config {" ".join(missing)}: no such file')
        if args.onnx or args.mode != ['infer'] or args.with_cp:
            raise ConfigError('--config measures inference of whole models: use it with '
                              '--mode infer and without --onnx/--with-cp')
    unknown = [a for a in args.arch
               if RMT.arch_aliases.get(a.lower(), a.lower()) not in RMT.arch_zoo]
    if unknown:
        raise ConfigError(f'--arch {" ".join(unknown)}: not an RMT size; one of '
                          f'{", ".join([*RMT.arch_zoo, *RMT.arch_aliases])}')
    if len(args.size) != 2 or min(args.size) < 1 or args.batch < 1:
        raise ConfigError(f'--size {args.size[0]} {args.size[1]} --batch {args.batch}: '
                          'positive integers expected')
    if args.onnx and (args.device != 'cpu' or args.dtype != 'float32' or args.mode != ['infer']
                      or args.with_cp):
        raise ConfigError('--onnx measures CPU float32 inference: use it with --device cpu '
                          '--mode infer and without --dtype/--with-cp')


def memory_cell(result: Dict) -> str:
    """Peak memory, and on CPU the rise above the libraries in brackets."""
    return f'{result["peak_mb"]:.0f}' + (f' ({result["rise_mb"]:.0f})' if 'rise_mb' in result
                                         else '')


def memory_ratio(base: Dict, other: Dict) -> str:
    ratio = f'{base["peak_mb"] / other["peak_mb"]:.2f}x'
    if 'rise_mb' in base:
        ratio += f' ({max(base["rise_mb"], 1) / max(other["rise_mb"], 1):.2f}x)'
    return ratio


def backbone_rows(args: argparse.Namespace, mem_col: str) -> List[str]:
    """One row per arch and mode: the two implementations side by side."""
    base, other = compared(args)
    lines = [f'| arch | mode | {base} s (CPU s) | {other} s (CPU s) | speed-up (CPU) | '
             f'{base} {mem_col} | {other} {mem_col} | memory ratio |',
             '|---|---|---|---|---|---|---|---|']
    for arch in args.arch:
        for mode in args.mode:
            res = run_case(args, arch, mode)
            ref, fast = res[base], res[other]
            lines.append(f'| {arch} | {mode} | {ref["time_s"]:.2f} ({ref["cpu_s"]:.2f}) | '
                         f'{fast["time_s"]:.2f} ({fast["cpu_s"]:.2f}) | '
                         f'{ref["time_s"] / fast["time_s"]:.2f}x '
                         f'({ref["cpu_s"] / fast["cpu_s"]:.2f}x) | {memory_cell(ref)} | '
                         f'{memory_cell(fast)} | {memory_ratio(ref, fast)} |')
            print(lines[-1], flush=True)
    return lines


def config_rows(args: argparse.Namespace, mem_col: str) -> List[str]:
    """One row per config: its inference, and the first config's time and memory over its."""
    configs = args.config
    memory = {c: cpu_memory(args, c, CONFIG, 'infer', None) for c in configs
              if args.device == 'cpu'}
    times = time_interleaved({c: runner(args, c, CONFIG, 'infer', None) for c in configs},
                             args.warmup if args.repeats else 0, args.repeats)
    if args.device == 'cuda':
        for config in configs:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            runner(args, config, CONFIG, 'infer', None)()
            memory[config] = dict(peak_mb=torch.cuda.max_memory_allocated() / 2**20)
    first = configs[0]
    lines = [f'| config | s (CPU s) | {mem_col} | {osp.basename(first)} over it: time (CPU) | '
             'memory |', '|---|---|---|---|---|']
    for config in configs:
        t, t0 = times[config], times[first]
        lines.append(f'| {osp.basename(config)} | {t.wall_s:.2f} ({t.cpu_s:.2f}) | '
                     f'{memory_cell(memory[config])} | {t0.wall_s / t.wall_s:.2f}x '
                     f'({t0.cpu_s / t.cpu_s:.2f}x) | '
                     f'{memory_ratio(memory[first], memory[config])} |')
    return lines


def benchmark(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(peak_rss_case(args, json.loads(args.child))))
        return 0
    check_args(args)
    mem_col = 'peak GPU MiB' if args.device == 'cuda' else 'peak RSS MiB (above libraries)'
    lines = [
        f'{args.device}, {args.dtype}, batch {args.batch}, {args.size[0]}x{args.size[1]}'
        f'{", with_cp" if args.with_cp else ""}, torch {torch.__version__}, '
        f'{torch.get_num_threads()} threads; median of {args.repeats} after {args.warmup} warm-up'
        + (f'; onnxruntime {onnxruntime_version()}, {args.onnx} export' if args.onnx else ''),
        '',
        *(config_rows if args.config else backbone_rows)(args, mem_col),
    ]
    table = '\n'.join(lines)
    print('\n' + table)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(table + '\n')
    return 0


def main(argv=None) -> int:
    return run_cli(benchmark, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
