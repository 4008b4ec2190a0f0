"""Old import paths (before the subpackage layout), kept for one release.

`import l3.pair_ops` or `from l3 import train_config` still work: a finder
on `sys.meta_path` maps each old name to its new module (the same module
object, so patching one patches the other) and warns once with a
DeprecationWarning naming the new path. Packages that kept their name
(`l3.records`, `l3.model`, `l3.pairs`, `l3.train`, `l3.export`, `l3.demo`,
`l3.hear`) re-export their old public names instead. The list is in
WORKSPACE_NOTES.md ("Old import paths"); it goes in the next release.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MODULES = {
    "l3.constants": "l3.core.constants",
    "l3.presets": "l3.core.presets",
    "l3.errors": "l3.core.errors",
    "l3.fileio": "l3.core.fileio",
    "l3.kinetics_sounds": "l3.core.kinetics_sounds",
    "l3.bin.cli": "l3.core.cli",
    "l3.framing": "l3.records.framing",
    "l3.shard_reader": "l3.records.shard_reader",
    "l3.image": "l3.ops.image",
    "l3.audio": "l3.ops.audio",
    "l3.frontend": "l3.model.frontend",
    "l3.pair_ops": "l3.pairs.sampling",
    "l3.data_service": "l3.pairs.data_service",
    "l3.local_service": "l3.pairs.local_service",
    "l3.train_config": "l3.train.config",
    "l3.train_input": "l3.train.inputs",
    "l3.train_utils": "l3.train.utils",
    "l3.precision": "l3.train.precision",
    "l3.distribute": "l3.train.distribute",
    "l3.run_dir": "l3.train.run_dir",
    "l3.evaluate": "l3.eval.avc",
}
PACKAGES = {
    "l3.transfer": "l3.eval.transfer",
    "l3.analysis": "l3.eval.analysis",
    "l3.corpus": "l3.demo.corpus",
}


def new_name(old: str):
    """The new dotted name of an old module name, or None if it did not move."""
    if old in MODULES:
        return MODULES[old]
    for prefix, target in PACKAGES.items():
        if old == prefix or old.startswith(prefix + "."):
            return target + old[len(prefix):]
    return None


class _Loader(importlib.abc.Loader):
    """Loads an old name as the new module itself (not a second copy of it)."""

    def __init__(self, target: str):
        self.target = target
        self._spec = None

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self._spec  # importlib set it to the alias's spec


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = new_name(fullname)
        if new is None:
            return None
        warnings.warn(f"{fullname} moved to {new}; the old path goes in the next release",
                      DeprecationWarning, stacklevel=3)
        module = importlib.import_module(new)
        spec = importlib.util.spec_from_loader(fullname, _Loader(new),
                                               is_package=hasattr(module, "__path__"))
        if hasattr(module, "__path__"):
            spec.submodule_search_locations = list(module.__path__)
        return spec


def install() -> None:
    """Puts the finder first on `sys.meta_path` (once): before the path finder, which
    would otherwise load `l3.transfer.protocol` a second time from the new folder."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
