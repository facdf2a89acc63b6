"""Whether mmdeploy can run here, said where a user meets it.

mmdeploy 1.3.1 runs only on the 2024 OpenMMLab stack (torch 2.1, mmcv 2.1.0, mmdet 3.3.0,
mmsegmentation 1.2.2); the OneDL stack has none. It is imported only when a function needs it.
"""
from typing import Optional

from ..errors import ConfigError

#: What a user must install, and on which stack.
INSTALL_HINT = ("mmdeploy 1.3.1 runs on the 2024 OpenMMLab stack (torch 2.1, mmcv 2.1.0, "
                "mmdet 3.3.0, mmsegmentation 1.2.2): make env STACK=openmmlab, or pip install "
                "'rmt_mm[deploy]' into such an environment")


def mmdeploy_missing() -> Optional[str]:
    """Why mmdeploy cannot be used here (one line), or None if it can."""
    try:
        import mmdeploy  # noqa: F401
    except ImportError as err:
        return f'rmt_mm: exporting whole models needs mmdeploy ({err}); {INSTALL_HINT}'
    return None


def require_mmdeploy() -> None:
    """A :class:`ConfigError` saying what to install where mmdeploy is missing."""
    problem = mmdeploy_missing()
    if problem:
        raise ConfigError(problem)
