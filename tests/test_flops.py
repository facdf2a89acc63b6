"""FLOP counts agree with fvcore on the upstream models, whatever attention kernel is used."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


# fvcore on the upstream detection backbone at 224x224 (shared/reference/rmt.md, section 3.5).
@pytest.mark.parametrize('arch,gflops', [('t', 2.626), ('s', 4.775)])
def test_backbone_flops_match_upstream_fvcore(arch, gflops):
    out = subprocess.run([sys.executable, str(REPO / 'tools' / 'get_flops.py'), '--arch', arch,
                          '--shape', '224', '224'], capture_output=True, text=True, check=True)
    counted = float(out.stdout.split('FLOPs ')[1].split(' G')[0])
    assert counted == pytest.approx(gflops, abs=0.006)
