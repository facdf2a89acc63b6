"""tools/device_check.py's CPU dry run: every part runs and writes its tables."""
import json

import pytest

from rmt_mm.parity import PARITY_TOL, kernels

from helpers.tools import tool_module

pytest.importorskip('torch.nn.attention.flex_attention')
pytestmark = pytest.mark.slow  # many flex compilations: minutes on two cores


def test_dry_run_writes_every_table(tmp_path):
    device_check = tool_module('device_check')
    device_check.main(['--out', str(tmp_path), '--device', 'cpu', '--dry-run'])
    parity = json.loads((tmp_path / 'parity.json').read_text())['rows']
    assert {r['impl'] for r in parity} == {'sdpa', 'blocked', 'flex'}
    assert all(r['out_rel_err'] < PARITY_TOL for r in parity)
    assert all(r['grad_rel_err'] < PARITY_TOL for r in parity if r['backward'])
    amp = json.loads((tmp_path / 'autocast.json').read_text())['rows']
    assert {(r['dtype'], r['impl']) for r in amp} == {
        (d, i) for d in ('bfloat16', 'float16') for i in kernels()}
    bf16_train = [r for r in amp if r['dtype'] == 'bfloat16' and r['backward']]
    assert {r['impl'] for r in bf16_train} == {'reference', 'sdpa', 'blocked'}
    assert all(r['ok'] for r in bf16_train)
    timing = json.loads((tmp_path / 'timing.json').read_text())['rows']
    assert {(r['mode'], r['impl']) for r in timing} == {
        ('infer', i) for i in kernels()} | {
        ('train', i) for i in kernels() if i != 'flex'}
    assert all(r['time_s'] > 0 and r['tflops'] > 0 for r in timing)
    for name in ('parity', 'autocast', 'timing'):
        text = (tmp_path / f'{name}.md').read_text()
        assert 'DRY RUN' in text and '| impl |' in text.replace('| arch | mode | compiled ', '')
