"""Which supported stack this environment holds and what scripts/stacks/ pins for it."""
import re
from importlib.metadata import PackageNotFoundError, version
from typing import Dict

from . import REPO

STACKS = ('openmmlab', 'onedl')


def installed_stack() -> str:
    """``onedl`` where the fork's mmcv distribution is installed, else ``openmmlab``."""
    try:
        version('onedl-mmcv')
        return 'onedl'
    except PackageNotFoundError:
        return 'openmmlab'


def stack_pins(stack: str) -> Dict[str, str]:
    """``{distribution: version}`` of the exact (``==``) pins in scripts/stacks/<stack>.txt."""
    pins = {}
    for line in (REPO / 'scripts' / 'stacks' / f'{stack}.txt').read_text().splitlines():
        match = re.fullmatch(r'([A-Za-z0-9_.-]+)==([^\s;#]+)', line.strip())
        if match:
            pins[match[1].lower()] = match[2]
    return pins
