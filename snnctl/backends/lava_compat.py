"""Make lava-nc 0.10 importable on Python 3.11 without touching the installed files.

lava-nc 0.10.0 declares Python < 3.11, yet runs on 3.11 except for two lines of import-time code:
- `lava/magma/compiler/var_model.py` gives dataclass fields the mutable default `ByteEncoder()`, which
  Python 3.11's dataclasses reject (`ValueError: mutable default ... use default_factory`);
- `lava/magma/runtime/message_infrastructure/multiprocessing.py` calls `set_start_method('fork')`,
  which raises once anything in the process has asked for the start method (it is then already
  'fork' on Linux, so nothing needs setting).
`install()` puts a meta-path finder in front that loads those two modules from their source with
the lines rewritten; every other module loads untouched.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
from types import ModuleType

from snnctl.errors import UserError

VAR_MODEL = "lava.magma.compiler.var_model"
MULTIPROCESSING = "lava.magma.runtime.message_infrastructure.multiprocessing"
_SET_FORK = "mp.set_start_method('fork')"
_SET_FORK_ONCE = "mp.get_start_method(allow_none=True) == 'fork' or mp.set_start_method('fork')"
_MUTABLE_DEFAULT = re.compile(r"^(\s+\w+\s*:\s*ByteEncoder\s*)=\s*ByteEncoder\(\)\s*$", re.MULTILINE)


def patch_source(source: str, module: str = VAR_MODEL) -> str:
    """var_model: `x: ByteEncoder = ByteEncoder()` fields get a default factory; multiprocessing: the
    start method is set only when it is not 'fork' already."""
    if module == MULTIPROCESSING:
        return source.replace(_SET_FORK, _SET_FORK_ONCE)
    # Spelled through __import__ so that no import line has to be added (the module starts with a
    # `from __future__` import, which must stay first).
    return _MUTABLE_DEFAULT.sub(r"\1= __import__('dataclasses').field(default_factory=ByteEncoder)", source)


class _PatchingLoader(importlib.machinery.SourceFileLoader):
    def source_to_code(self, data, path, *, _optimize=-1):  # type: ignore[override]
        text = importlib.util.decode_source(data) if isinstance(data, bytes) else data
        return compile(patch_source(text, self.name), path, "exec", dont_inherit=True, optimize=_optimize)

    def get_code(self, fullname: str):  # type: ignore[override]
        # Always compile from the patched source; never reuse bytecode cached from the unpatched file.
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):  # type: ignore[override]
        if fullname not in (VAR_MODEL, MULTIPROCESSING):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.origin and spec.origin.endswith(".py"):
                spec.loader = _PatchingLoader(fullname, spec.origin)
                return spec
        return None


def install() -> None:
    """Insert the finder once (idempotent)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def _patched(module: ModuleType) -> bool:
    return isinstance(getattr(module, "__loader__", None), _PatchingLoader)


def import_lava(module: str = "lava") -> ModuleType:
    """Import a lava module through the hook; a missing lava is a user error with the install line."""
    install()
    stale = [m for m in (VAR_MODEL, MULTIPROCESSING) if m in sys.modules and not _patched(sys.modules[m])]
    if stale:
        raise UserError(f"lava was imported before snnctl's compatibility hook ({stale[0]})",
                        hint="import lava through snnctl.backends.lava_compat.import_lava")
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise UserError(
            f"lava-nc is not importable ({err})",
            hint="install it: pip install --no-deps --ignore-requires-python lava-nc==0.10.0 "
            "'asteval<0.10' networkx (make setup does this)",
        ) from None
