"""Let mmengine find ``mmseg::``/``mmdet::`` base configs whichever distribution ships the module.

mmengine resolves ``_base_ = 'mmseg::...'`` by mapping the scope to a *distribution* name
(``MODULE2PACKAGE``: ``mmseg`` -> ``mmsegmentation``) and asking whether that distribution is
installed; when it is not, it tries to import a module of that name. The maintained OneDL fork
ships the same ``mmseg`` module in the distribution ``onedl-mmsegmentation``, so both checks fail
and every config inheriting from mmseg stops with ``mmsegmentation is not installed``.
(``mmdet::`` survives by accident: its distribution and module names coincide.)

That happens while the config is parsed, before its ``custom_imports`` can import ``rmt_mm``, so
the fix cannot wait for ``import rmt_mm``: the ``rmt_mm-scopes.pth`` file installed beside this
module calls :func:`install` at interpreter start-up. It imports nothing heavy and costs nothing
until ``mmengine.config.utils`` is imported; then it redirects only the scopes whose listed
distribution is absent while exactly one installed distribution provides the module. Importing
``rmt_mm`` calls :func:`install` as well, for interpreters started without site-packages' ``.pth``
files. Kept outside the ``rmt_mm`` package so that start-up does not import torch.
"""
import importlib.abc
import importlib.util
import sys
import warnings
from typing import Dict, List, Optional

TARGET = 'mmengine.config.utils'


def redirect_scopes(module2package: Dict[str, str]) -> Dict[str, str]:
    """Point each importable scope whose distribution is missing at the installed distribution
    that provides its module; return ``{scope: new distribution}`` for what changed."""
    from importlib.metadata import PackageNotFoundError, version

    providers: Optional[Dict[str, List[str]]] = None
    changed = {}
    for module, dist in module2package.items():
        try:
            version(dist)
            continue
        except PackageNotFoundError:
            pass
        if importlib.util.find_spec(module) is None:
            continue
        if providers is None:  # scans every installed distribution: only when needed
            from importlib.metadata import packages_distributions  # Python >= 3.10, as the fork
            providers = packages_distributions()
        candidates = sorted(set(providers.get(module, ())))
        if len(candidates) == 1:
            changed[module] = candidates[0]
    module2package.update(changed)
    return changed


def _redirect_in(module) -> None:
    mapping = getattr(module, 'MODULE2PACKAGE', None)
    if not isinstance(mapping, dict):
        return
    try:
        redirect_scopes(mapping)
    except Exception as err:  # never break importing mmengine; its own error follows if needed
        warnings.warn(f'rmt_mm: could not map config scopes to distributions: {err!r}',
                      stacklevel=2)


class _RedirectOnImport(importlib.abc.MetaPathFinder):
    """Runs :func:`redirect_scopes` right after ``mmengine.config.utils`` is executed."""

    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET:
            return None
        sys.meta_path.remove(self)  # one shot; also keeps the lookup below from recursing
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, 'exec_module'):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_redirect(module):
            exec_module(module)
            _redirect_in(module)

        spec.loader.exec_module = exec_then_redirect
        return spec


def install() -> None:
    """Redirect now if mmengine's config utilities are loaded, else when they are."""
    if TARGET in sys.modules:
        _redirect_in(sys.modules[TARGET])
    elif not any(isinstance(f, _RedirectOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RedirectOnImport())
