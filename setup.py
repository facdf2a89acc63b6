"""Everything is declared in pyproject.toml; this adds the one file setuptools cannot place.

``rmt_mm-scopes.pth`` must sit directly in site-packages, where Python runs its import line at
start-up, before any config is parsed (``_rmt_mm_scopes.py`` says why), in regular and in
editable installs alike.
"""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH = 'rmt_mm-scopes.pth'


class BuildPyWithPth(build_py):
    """Wheels: the ``.pth`` file goes to the root of the wheel, i.e. into site-packages."""

    def run(self):
        super().run()
        self.copy_file(PTH, os.path.join(self.build_lib, PTH), preserve_mode=False)

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH)]


class EditableWheelWithPth(editable_wheel):
    """``pip install -e``: the editable wheel holds only setuptools' own finder and ``.pth``
    files; ``_install_namespaces`` is its step that writes extra files into the wheel's root."""

    def _install_namespaces(self, installation_dir, pth_prefix):
        super()._install_namespaces(installation_dir, pth_prefix)
        shutil.copy(PTH, os.path.join(installation_dir, PTH))


setup(cmdclass={'build_py': BuildPyWithPth, 'editable_wheel': EditableWheelWithPth})
