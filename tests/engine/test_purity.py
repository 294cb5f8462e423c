"""The engine is pure (DESIGN.md "Layers"): it imports nothing of runtime, store or connectors,
no Trio, no HTTP, no SQLite, and does no file or network I/O."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import crmsync.engine

ENGINE_DIR = Path(crmsync.engine.__file__).parent
MODULES = sorted(ENGINE_DIR.glob("*.py"))

FORBIDDEN_IMPORTS = ("trio", "anyio", "asyncio", "httpx", "sqlite3", "_sqlite3", "socket",
                     "ssl", "http.client", "urllib.request", "crmsync.store",
                     "crmsync.runtime", "crmsync.connectors", "crmsync.daemon",
                     "crmsync.control", "crmsync.emulators")

_PROBE = """
import json, sys
before = set(sys.modules)
import crmsync.engine
from crmsync.config.model import FieldMapping, ObjectSync
from crmsync.engine import Record, Snapshot, compile_rules, decide
from crmsync.engine.stages import auto_map
from crmsync.records import PipelineInfo, StageInfo

rules = compile_rules(ObjectSync(connection="c", hub_object="contacts", app_object="customers",
                                 mappings=[FieldMapping(hub="hs_n", app="n", transform="number"),
                                           FieldMapping(hub="hs_d", app="d", transform="date")]))
hub = Record("1", {"email": "a@example.com", "firstname": "A", "hs_n": "1.0", "hs_d": "0"})
app = Record("2", {"email": "a@example.com", "first_name": "B", "n": 1})
warm = [decide(rules, hub, app, None), decide(rules, hub, None, None)]
pipes = [PipelineInfo("p", "Sales", (StageInfo("w", "Closed Won"),))]
auto_map(pipes, pipes)

events = []
def hook(event, args):
    if event.split(".")[0] in ("open", "socket", "subprocess", "os", "shutil", "sqlite3",
                               "urllib", "http", "ftplib", "smtplib", "ctypes"):
        events.append(event)
sys.addaudithook(hook)
for _ in range(3):
    d = decide(rules, hub, app, None)
    decide(rules, hub, app, d.snapshot)
    decide(rules, None, app, d.snapshot)
    decide(rules, hub, None, None)
    auto_map(pipes, pipes)
print(json.dumps({"modules": sorted(set(sys.modules) - before), "events": events}))
"""


def _probe() -> dict[str, list[str]]:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_importing_the_engine_imports_no_io_layer() -> None:
    loaded = _probe()["modules"]
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN_IMPORTS)]
    assert bad == [], f"importing crmsync.engine pulls in {bad}"
    assert "crmsync.engine.decide" in loaded  # the probe did import the engine


def test_deciding_does_no_file_or_network_io() -> None:
    assert _probe()["events"] == []


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


IO_MODULES = {"os", "io", "pathlib", "socket", "ssl", "subprocess", "shutil", "tempfile",
              "sqlite3", "urllib", "http", "httpx", "trio", "anyio", "asyncio", "requests",
              "time", "random", "threading", "logging", "structlog"}
IO_CALLS = {"open", "print", "input", "exec", "eval", "__import__"}


def test_no_engine_module_imports_io_or_calls_open() -> None:
    assert MODULES, ENGINE_DIR
    for path in MODULES:
        imported = {n.split(".")[0] for n in _imports(path)}
        assert not imported & IO_MODULES, f"{path.name} imports {imported & IO_MODULES}"
        for name in _imports(path):
            assert not name.startswith(("crmsync.store", "crmsync.runtime",
                                        "crmsync.connectors")), f"{path.name} imports {name}"
        tree = ast.parse(path.read_text(), str(path))
        calls = {n.func.id for n in ast.walk(tree)
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        assert not calls & IO_CALLS, f"{path.name} calls {calls & IO_CALLS}"
