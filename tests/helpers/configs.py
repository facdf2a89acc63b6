"""Which test module checks which configs: each file in configs/ belongs to exactly one family
(``test_every_config_is_tested_by_one_family``), and each family's module parametrises over it."""
import copy
import functools
from typing import List, Tuple

from mmengine.config import Config
from mmengine.registry import init_default_scope

from rmt_mm.cli import load_config

from . import CONFIG_DIR

#: Family -> glob over CONFIG_DIR (``_rest`` also matches ``_restv2``).
FAMILIES = {
    'rmt_det': '*_rmt_*_coco.py',  # test_det_configs.py
    'rmt_seg': '*_rmt_*_ade20k-*.py',  # test_seg_configs.py
    'rest_det': '*_rest*_coco.py',  # test_rest_configs.py
    'rest_seg': '*_rest*_ade20k-*.py',  # test_rest_configs.py
    'dino': 'dino-*_coco.py',  # test_query_heads.py
    'mask2former_seg': 'mask2former_*_ade20k-*.py',  # test_query_heads.py
    'mask2former_det': 'mask2former_*_coco.py',  # test_query_heads.py
}


def family_configs(family: str) -> List[str]:
    """Sorted config names (file stems) of ``family``."""
    return sorted(p.stem for p in CONFIG_DIR.glob(FAMILIES[family]))


@functools.lru_cache(maxsize=None)
def _parse(name: str) -> Tuple[Config, str]:
    return load_config(str(CONFIG_DIR / f'{name}.py'))


def load(name: str) -> Tuple[Config, str]:
    """``load_config`` of configs/<name>.py, parsed once per session and returned as a copy.

    Each ``mmdet::``/``mmseg::`` base costs mmengine a scan of the package's metafiles (about
    0.5 s), so parsing per test would dominate the config tests' time. Like ``load_config``,
    this makes the config's scope the default one, which building its model relies on.
    """
    cfg, scope = _parse(name)
    init_default_scope(scope)
    return copy.deepcopy(cfg), scope
