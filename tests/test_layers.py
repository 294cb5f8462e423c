"""The walls of DESIGN.md "Layers", checked on every module of `src/crmsync`.

Imports go down the layers only: cli → control → daemon → runtime → engine → store →
connectors → emulators → config, with `crmsync.records` (and the package root, which holds the
version) below all. On top of the order:

- the engine imports nothing of runtime, store or connectors (nor emulators): it is pure;
- production code never imports an emulator, except the cli's `demo` (with its Pipedrive
  variant) and `emulator` commands, which serve one;
- an emulator never imports a connector (the order says so too: connectors sit above).

Every import counts: at module level, inside functions, under `TYPE_CHECKING`, relative ones,
`from crmsync import <module>`, `importlib.import_module("crmsync.…")`, and a
`"crmsync.pkg.module:Class"` string, the form a registry names what it imports later (the app
connectors' table).

And two checks of what a process really loads (`sys.modules` in a fresh interpreter): the
control protocol's schema loads nothing of the daemon, runtime, store or connectors, and
`crmsync run` loads no emulator.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import crmsync

SRC = Path(crmsync.__file__).parent
ORDER = ("cli", "control", "daemon", "runtime", "engine", "store", "connectors", "emulators",
         "config")
BOTTOM = ("records", "")  # crmsync.records, and the package root (its __version__)
# Layers the engine may import (DESIGN.md: it imports nothing of runtime, store or connectors).
ENGINE_MAY_IMPORT = ("engine", "config", *BOTTOM)
# The commands that serve an emulator: the only production modules that may import one.
# `crmsync demo --app pipedrive` is demo_pipedrive (demo.run imports it for that app only).
EMULATOR_USERS = ("crmsync.cli.demo", "crmsync.cli.demo_pipedrive", "crmsync.cli.emulator")
# What a registry imports later: "crmsync.pkg.module:Class". (A bare dotted string is not
# taken for one: loggers are named that way, "crmsync.sync".)
DYNAMIC = re.compile(r"crmsync(\.\w+)+:\w+")


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    imported: str  # dotted module name
    line: int

    def __str__(self) -> str:
        return f"{self.importer}:{self.line} imports {self.imported}"


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _exists(name: str, src: Path) -> bool:
    rel = Path(*name.split("."))
    return (src.parent / rel).with_suffix(".py").exists() or (src.parent / rel).is_dir()


def imports_of(path: Path, src: Path = SRC) -> list[Import]:
    """Every crmsync module `path` imports, wherever in the file the import is."""
    me = module_name(path, src)
    tree = ast.parse(path.read_text(), str(path))
    found: list[Import] = []

    def add(name: str, node: ast.AST) -> None:
        if name == "crmsync" or name.startswith("crmsync."):
            found.append(Import(me, name, getattr(node, "lineno", 0)))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = me.split(".") if _is_package(path) else me.split(".")[:-1]
                base = package[:len(package) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            add(module, node)
            for alias in node.names:  # `from crmsync import records`: a module, not a name
                sub = f"{module}.{alias.name}"
                if sub.startswith("crmsync.") and _exists(sub, src):
                    add(sub, node)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(
                node.func, "id", None)) == "import_module" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                add(arg.value, node)
            elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(
                    arg.values[0], ast.Constant):
                # f"crmsync.cli.{name}": the part before the first field names the package
                add(str(arg.values[0].value).rstrip("."), node)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and DYNAMIC.fullmatch(node.value):
            add(node.value.partition(":")[0], node)
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return ""
    if parts[1] == "__main__":  # `python -m crmsync`: the command line's entry point
        return "cli"
    return parts[1]


def rank(name: str) -> int:
    return len(ORDER) if name in BOTTOM else ORDER.index(name)


def violation(imp: Import) -> str | None:
    """Why `imp` goes against DESIGN.md's layers, or None."""
    src, dst = layer(imp.importer), layer(imp.imported)
    for name in (src, dst):
        if name not in ORDER and name not in BOTTOM:
            return f"{name!r} is in no layer of DESIGN.md"
    if dst == "emulators" and src != "emulators" and imp.importer not in EMULATOR_USERS:
        return "production code never imports an emulator"
    if src == "emulators" and dst == "connectors":
        return "an emulator never imports a connector"
    if src == "engine" and dst not in ENGINE_MAY_IMPORT:
        return "the engine is pure: it imports nothing of runtime, store or connectors"
    if rank(dst) < rank(src):
        return f"{src} sits below {dst}: imports go down the layers only"
    return None


def test_every_import_goes_down_the_layers() -> None:
    modules = sorted(SRC.rglob("*.py"))
    assert len(modules) > 150, SRC  # the walk sees the whole package
    imports = [imp for path in modules for imp in imports_of(path)]
    assert len(imports) > 500
    bad = [f"{imp}: {why}" for imp in imports if (why := violation(imp)) is not None]
    assert bad == []


def test_the_walk_sees_every_kind_of_import(tmp_path: Path) -> None:
    # A fake package laid out like crmsync: each import below breaks a wall, one way each.
    src = tmp_path / "crmsync"
    for d in ("engine", "store", "connectors", "emulators", "runtime", "daemon", "control",
              "cli"):
        (src / d).mkdir(parents=True)
        (src / d / "__init__.py").write_text("")
    (src / "__init__.py").write_text("")
    (src / "records.py").write_text("")
    for rel in ("store/items.py", "daemon/main.py", "control/protocol.py"):
        (src / rel).write_text("")
    code = {
        "engine/decide.py": """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from crmsync.store.items import Item
            """,
        "engine/rules.py": """
            def f():
                from ..runtime import worker
            """,
        "connectors/fake.py": """
            def f():
                import crmsync.emulators.hubspot
            """,
        "emulators/fake.py": """
            from importlib import import_module
            def f():
                return import_module("crmsync.connectors.fake")
            """,
        "store/db.py": """
            from crmsync import engine
            """,
        "runtime/table.py": """
            REGISTRY = {"x": "crmsync.control.server:Server"}
            """,
        "control/ok.py": """
            from crmsync import records
            from crmsync.daemon import main
            from . import protocol
            """,
        "cli/demo.py": """
            from crmsync.emulators.hubspot import HubSpotEmulator
            """,
    }
    for rel, text in code.items():
        (src / rel).write_text(textwrap.dedent(text))
    found = {str(imp): violation(imp) for path in sorted(src.rglob("*.py"))
             for imp in imports_of(path, src)}
    assert {k: v for k, v in found.items() if v is not None} == {
        "crmsync.engine.decide:4 imports crmsync.store.items":
            "the engine is pure: it imports nothing of runtime, store or connectors",
        "crmsync.engine.rules:3 imports crmsync.runtime":
            "the engine is pure: it imports nothing of runtime, store or connectors",
        "crmsync.connectors.fake:3 imports crmsync.emulators.hubspot":
            "production code never imports an emulator",
        "crmsync.emulators.fake:4 imports crmsync.connectors.fake":
            "an emulator never imports a connector",
        "crmsync.store.db:2 imports crmsync.engine":
            "store sits below engine: imports go down the layers only",
        "crmsync.runtime.table:2 imports crmsync.control.server":
            "runtime sits below control: imports go down the layers only",
    }
    # Down the layers, or an emulator used by the demo: allowed.
    assert found["crmsync.control.ok:2 imports crmsync.records"] is None
    assert found["crmsync.control.ok:3 imports crmsync.daemon.main"] is None
    assert found["crmsync.control.ok:4 imports crmsync.control.protocol"] is None
    assert found["crmsync.cli.demo:2 imports crmsync.emulators.hubspot"] is None


def _loaded(code: str) -> list[str]:
    """The crmsync modules a fresh interpreter has loaded after running `code`."""
    probe = (f"{code}\nimport json, sys\n"
             "print(json.dumps(sorted(m for m in sys.modules if m.startswith('crmsync'))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, check=True)
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def _of(loaded: list[str], *layers: str) -> list[str]:
    return [m for m in loaded if layer(m) in layers]


def test_the_control_schema_loads_no_daemon() -> None:
    # What a client of the socket needs (`crmsync ctl`): the protocol, its views, the client.
    loaded = _loaded("import crmsync.control.protocol, crmsync.control.client, crmsync.cli.ctl")
    assert _of(loaded, "daemon", "runtime", "store", "connectors", "emulators") == []
    assert "crmsync.control.views" in loaded and "crmsync.cli.ctl" in loaded


def test_crmsync_run_loads_no_emulator(tmp_path: Path) -> None:
    # `crmsync run` up to the daemon's start: the command line, the control server and the
    # daemon (a missing file is a config error, exit 2, after the imports of `run`). The
    # daemon running for real, connectors open, is tests/daemon/test_process.py's
    # test_a_running_daemon_loads_no_emulator.
    loaded = _loaded("from crmsync.cli.main import main\n"
                     f"assert main(['run', '--config', {str(tmp_path / 'none.toml')!r}]) == 2")
    assert "crmsync.daemon.main" in loaded and "crmsync.control.server" in loaded
    assert _of(loaded, "emulators") == []
