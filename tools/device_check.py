#!/usr/bin/env python
"""The GPU device check: MaSA kernel parity, mixed precision, and speed against ``reference``.

Three parts, each written to ``--out`` as markdown and json:

1. ``parity``: float32 (TF32 off) forward and gradients of every fast kernel against
   ``reference``, RMT-T at odd sizes (``flex`` forward only on CPU, where torch has no
   FlexAttention backward).
2. ``autocast``: bf16 and fp16 autocast forward + backward of every kernel, finite and within
   :data:`AUTOCAST_TOL` of the float32 reference.
3. ``timing``: :mod:`rmt_mm.benchmark`'s ``build``/``step`` for RMT-T and RMT-S (default 1344x800,
   batch 2, bf16 autocast), inference and forward+backward, every kernel beside ``reference`` in
   one process, eager and ``torch.compile``: median time, peak CUDA memory and achieved TFLOP/s
   (two FLOPs per multiply-add, as accelerators' peaks count; training counted as 3x the
   forward) against ``--peak-tflops``.
   Cases stop once ``--budget-s`` has passed (the rest are marked skipped), so the whole check
   fits the device time it is given.

    python tools/device_check.py --out work_dirs/device_check            # on a CUDA machine
    python tools/device_check.py --out /tmp/dc --device cpu --dry-run    # everything, tiny, CPU
"""
import argparse
import json
import math
import os
import sys
import time
from typing import Dict, List, Sequence

import torch

from rmt_mm.benchmark import build, step
from rmt_mm.flops import forward_flops
from rmt_mm.models import RMT
from rmt_mm.models.masa import FAST_KERNELS
from rmt_mm.parity import (
    AUTOCAST_GRAD_TOL,
    AUTOCAST_TOL,
    PARITY_TOL,
    kernels,
    rel_l2_err,
    rel_max_err,
    run_model,
    trains_on,
)
from rmt_mm.timing import time_interleaved


def _table(header: Sequence[str], rows: List[Sequence]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(_fmt(c) for c in row) + ' |' for row in rows]
    return '\n'.join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return 'n/a' if math.isnan(value) else f'{value:.3g}'
    return str(value)


def parity(args: argparse.Namespace) -> List[Dict]:
    """float32 forward and gradient errors of every fast kernel against the reference."""
    results = []
    for size in args.parity_sizes:
        torch.manual_seed(0)
        x = torch.randn(1, 3, *size, device=args.device)
        ref = build(args.parity_arch, 'reference', args.device, torch.float32, False)
        ref_outs, ref_grads = run_model(ref, x, train=True)
        for impl in FAST_KERNELS:
            model = build(args.parity_arch, impl, args.device, torch.float32, False)
            train = trains_on(impl, args.device)
            outs, grads = run_model(model, x, train=train)
            out_err = max(rel_max_err(o, r) for o, r in zip(outs, ref_outs))
            grad_err = rel_l2_err(grads, ref_grads) if train else float('nan')
            ok = out_err < PARITY_TOL and (not train or grad_err < PARITY_TOL)
            results.append(dict(impl=impl, size=f'{size[0]}x{size[1]}', out_rel_err=out_err,
                                grad_rel_err=grad_err, backward=train, ok=ok))
    return results


def autocast(args: argparse.Namespace) -> List[Dict]:
    """bf16/fp16 autocast forward+backward of every kernel against the float32 reference."""
    torch.manual_seed(0)
    x = torch.randn(args.batch_check, 3, *args.parity_sizes[0], device=args.device)
    ref = build(args.parity_arch, 'reference', args.device, torch.float32, False)
    ref_outs, ref_grads = run_model(ref, x, train=True)
    results = []
    for dtype in args.amp_dtypes:
        for impl in kernels():
            model = build(args.parity_arch, impl, args.device, torch.float32, False)
            # CPU: no fp16 backward worth checking (fp16 training is a CUDA recipe).
            train = trains_on(impl, args.device) and (args.device != 'cpu' or dtype != 'float16')
            outs, grads = run_model(model, x, train=train, amp=getattr(torch, dtype))
            finite = all(o.isfinite().all() for o in outs + (grads or []))
            out_err = max(rel_max_err(o, r) for o, r in zip(outs, ref_outs))
            grad_err = rel_l2_err(grads, ref_grads) if train else float('nan')
            ok = finite and out_err < AUTOCAST_TOL[dtype] and (
                not train or grad_err < AUTOCAST_GRAD_TOL[dtype])
            results.append(dict(dtype=dtype, impl=impl, out_dtype=str(outs[0].dtype),
                                finite=bool(finite), out_rel_err=out_err, grad_rel_err=grad_err,
                                backward=train, ok=ok))
    return results


def _flops(arch: str, size: Sequence[int]) -> float:
    """Forward FLOPs of one image (two per multiply-add)."""
    return forward_flops(RMT(arch=arch, attn_impl='reference'), torch.randn(1, 3, *size))


def _peak_mb(args, arch: str, impl: str, mode: str, compiled: bool, x: torch.Tensor) -> float:
    if args.device != 'cuda':
        return float('nan')
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = _timed_model(args, arch, impl, compiled)
    with torch.autocast('cuda', dtype=args.dtype):
        step(model, x, mode)
    del model
    return torch.cuda.max_memory_allocated() / 2**20


def _timed_model(args, arch: str, impl: str, compiled: bool):
    model = build(arch, impl, args.device, torch.float32, False)
    return torch.compile(model) if compiled else model


def _case(args, arch: str, mode: str, compiled: bool, flops: float) -> List[Dict]:
    """Every kernel that runs ``mode`` on the device, interleaved repeats, one input."""
    impls = [i for i in kernels() if mode == 'infer' or trains_on(i, args.device)]
    x = torch.randn(args.batch, 3, *args.size, device=args.device)
    models, errors = {}, {}
    for impl in impls:
        try:
            models[impl] = _timed_model(args, arch, impl, compiled)
            with torch.autocast(args.device, dtype=args.dtype):
                for _ in range(args.warmup):
                    step(models[impl], x, mode)
        except torch.cuda.OutOfMemoryError:
            errors[impl] = 'OOM'
            models.pop(impl, None)
            torch.cuda.empty_cache()
    with torch.autocast(args.device, dtype=args.dtype):
        times = time_interleaved({impl: lambda m=model: step(m, x, mode)
                                  for impl, model in models.items()}, 0, args.repeats)
    models.clear()
    work = flops * args.batch * (3 if mode == 'train' else 1)
    rows = []
    for impl in impls:
        median = times[impl].wall_s if impl in times else float('nan')
        peak = float('nan') if impl in errors else _peak_mb(args, arch, impl, mode, compiled, x)
        rows.append(dict(arch=_name(arch), mode=mode, compiled=compiled, impl=impl,
                         status=errors.get(impl, 'ok'), time_s=median, peak_mb=peak,
                         tflops=work / median / 1e12,
                         peak_fraction=work / median / 1e12 / args.peak_tflops))
    ref = rows[0]
    for row in rows:
        row['speedup'] = ref['time_s'] / row['time_s']
        row['memory_ratio'] = ref['peak_mb'] / row['peak_mb']
    return rows


def _name(arch) -> str:
    return arch if isinstance(arch, str) else 'tiny'


def timing(args: argparse.Namespace, start: float) -> List[Dict]:
    """The timing table, eager cases first; cases past the budget are marked skipped."""
    results = []
    flops = {_name(arch): _flops(arch, args.size) for arch in args.arch}
    cases = [(arch, mode, compiled) for compiled in (False, True)[:1 + args.compile]
             for arch in args.arch for mode in args.mode]
    for arch, mode, compiled in cases:
        if time.perf_counter() - start > args.budget_s:
            results.append(dict(arch=_name(arch), mode=mode, compiled=compiled, impl='all',
                                status='skipped (budget)'))
            continue
        results.extend(_case(args, arch, mode, compiled, flops[_name(arch)]))
        print(f'timing {_name(arch)} {mode} compiled={compiled}: done', flush=True)
    return results


PARTS = {
    'parity': (['impl', 'size', 'out_rel_err', 'grad_rel_err', 'backward', 'ok'], parity),
    'autocast': (['dtype', 'impl', 'out_dtype', 'finite', 'out_rel_err', 'grad_rel_err',
                  'backward', 'ok'], autocast),
    'timing': (['arch', 'mode', 'compiled', 'impl', 'status', 'time_s', 'speedup', 'peak_mb',
                'memory_ratio', 'tflops', 'peak_fraction'], timing),
}


def _environment(args) -> str:
    device = (torch.cuda.get_device_name() if args.device == 'cuda'
              else f'cpu, {torch.get_num_threads()} threads')
    return (f'{device}, torch {torch.__version__}; timing: {args.dtype_name} autocast, batch '
            f'{args.batch}, {args.size[0]}x{args.size[1]}, median of {args.repeats} after '
            f'{args.warmup} warm-up, peak {args.peak_tflops} TFLOP/s'
            f'{", DRY RUN (tiny sizes)" if args.dry_run else ""}')


def write(out: str, name: str, header: Sequence[str], rows: List[Dict], env: str) -> None:
    with open(os.path.join(out, f'{name}.json'), 'w') as f:
        json.dump(dict(environment=env, rows=rows), f, indent=1)
    table = _table(header, [[row.get(k, '') for k in header] for row in rows])
    with open(os.path.join(out, f'{name}.md'), 'w') as f:
        f.write(f'# {name}\n\n{env}\n\n{table}\n')
    print(f'\n{name}\n{table}', flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True, help='folder for the tables (created)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--dry-run', action='store_true',
                        help='tiny sizes and one repeat: checks the check, measures nothing')
    parser.add_argument('--parts', nargs='+', default=list(PARTS), choices=list(PARTS))
    parser.add_argument('--arch', nargs='+', default=['t', 's'])
    parser.add_argument('--size', type=int, nargs=2, default=(800, 1344), metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--dtype', default='bfloat16', choices=['bfloat16', 'float16'])
    parser.add_argument('--mode', nargs='+', default=['infer', 'train'],
                        choices=['infer', 'train'])
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--no-compile', dest='compile', action='store_false',
                        help='skip the torch.compile timings')
    parser.add_argument('--peak-tflops', type=float, default=790.0,
                        help='the card\'s dense bf16 peak (790: measured on H100/H200 machines)')
    parser.add_argument('--budget-s', type=float, default=390.0,
                        help='start no timing case after this many seconds of the check')
    args = parser.parse_args(argv)
    args.parity_arch, args.parity_sizes, args.batch_check = 't', [(45, 61), (33, 20)], 2
    args.amp_dtypes = ['bfloat16', 'float16']
    if args.dry_run:
        args.size, args.batch, args.warmup, args.repeats = (32, 48), 1, 1, 1
        args.compile = False
        # RMT-T's attention signatures (axial: 4 heads of 16 dims; full: 8 of 32), one block
        # per stage and narrow FFNs: flex compiles per signature, which dominates the run.
        args.parity_arch = args.arch = dict(embed_dims=[64, 64, 256, 256], depths=[1, 1, 1, 1],
                                            num_heads=[4, 4, 8, 8], init_values=[2, 2, 2, 2],
                                            heads_ranges=[4, 4, 6, 6], mlp_ratios=[1, 1, 1, 1],
                                            chunkwise_recurrents=[True, True, False, False],
                                            layerscales=[False, False, True, True])
        args.parity_sizes, args.batch_check, args.arch = [(33, 47)], 1, [args.arch]
    args.dtype_name, args.dtype = args.dtype, getattr(torch, args.dtype)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    if args.device == 'cuda':
        torch.backends.cuda.matmul.allow_tf32 = False  # float32 parity means float32 matmuls
        torch.backends.cudnn.allow_tf32 = False
    os.makedirs(args.out, exist_ok=True)
    env = _environment(args)
    failed = []
    for name in args.parts:
        header, fn = PARTS[name]
        if name == 'timing':
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        rows = fn(args, start) if name == 'timing' else fn(args)
        write(args.out, name, header, rows, env)
        failed += [f'{name}: {r}' for r in rows if r.get('ok') is False]
    print(f'\ndevice check: {time.perf_counter() - start:.0f} s, tables in {args.out}; '
          + (f'{len(failed)} FAILED:\n' + '\n'.join(failed) if failed else 'all checks pass'))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
