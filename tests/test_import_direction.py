"""Data flows one way (DESIGN section 2): probe -> facts -> checks -> findings -> plan -> apply, render aside.

Read from the source (ast), not by importing: every `import` (also one inside a function) is an edge.
What does not hold yet is listed in PENDING with the reason; an entry that no longer occurs fails too,
so the list only shrinks, and any new violation fails at once.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "envdoctor"


class Edge(NamedTuple):
    importer: str  # envdoctor.fix.apply
    target: str  # envdoctor.probe.target
    name: str  # the imported name ("*" for `import x`)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> Iterator[tuple[str, ast.AST, Path]]:
    for path in sorted(PKG.rglob("*.py")):
        if "scripts" in path.relative_to(PKG).parts:
            continue  # run by the target interpreter, stdlib only (tests/test_probe_static.py)
        yield module_name(path), ast.parse(path.read_text(encoding="utf-8")), path


def edges_of(module: str, tree: ast.AST, is_package: bool) -> Iterator[Edge]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                yield Edge(module, target, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield Edge(module, alias.name, "*")


def all_edges() -> list[Edge]:
    return [e for module, tree, path in sources() for e in edges_of(module, tree, path.name == "__init__.py")
            if e.target.startswith("envdoctor")]


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


# layer -> layers it must not import, and why
FORBIDDEN = {
    "probe": ({"checks", "fix", "render", "commands", "cli"}, "the probe gathers facts and judges nothing"),
    "binary": ({"checks", "fix", "render", "commands", "cli"}, "binary analysis is a probe: facts only"),
    "checks": ({"probe", "fix", "render", "commands", "cli"}, "checks read facts: they run nothing, print nothing"),
    "render": ({"probe", "fix", "commands", "cli"}, "the renderer formats what it is given; it computes nothing"),
    "fact_readers": ({"probe", "checks", "fix", "render", "commands", "cli"}, "the fact layer sits under all"),
    "facts": ({"probe", "checks", "fix", "render", "commands", "cli"}, "the fact model sits under all"),
    "build": ({"fix", "render", "commands", "cli"}, "fix runs builds: a build knows nothing of the transaction"),
    "tables_query": ({"probe", "checks", "fix", "render", "commands", "cli", "build"},
                     "questions to the rule tables: pure functions of the tables and a few facts"),
    # the checks build a choice and the plan executes it: it depends on neither (nor on the tables' queries)
    "fix_choice": ({"probe", "checks", "fix", "render", "commands", "cli", "tables_query", "rules"},
                   "the fix-choice model is part of the fact model: it sits under checks and fix"),
}
# Leaves shared by layers that must not import each other: they import nothing of envdoctor.
LEAVES = {
    "envdoctor.filehash": "the sha256 both build/cache.py and fix/ compare; build must not import fix",
}
# fix uses the probe's public API only: names of the `envdoctor.probe` package itself
PROBE_API = "envdoctor.probe"

# Not yet so (issue 11), each with its reason. (importer, target, name) as found in the source.
PENDING: dict[Edge, str] = {}
# Modules outside probe/ that start processes, and why that is still so. Every interpreter launch belongs
# in probe/ (it knows how to run the target safely: timeout, crash capture, private channel).
SUBPROCESS_PENDING: dict[str, str] = {}
SUBPROCESS_ALLOWED = {
    "envdoctor.fix.pip_runner": "runs pip of the target: the one process that writes to it, tied to the "
                                "transaction (the lock's descriptor is inherited, it dies with envdoctor, the "
                                "journal's crash points watch it); probe/ runs read-only scripts only",
    "envdoctor.binary.demangle": "runs c++filt on symbol names (a tool, not the target interpreter)",
    "envdoctor.commandline": "uses subprocess.list2cmdline to quote for cmd.exe; starts no process",
    "envdoctor.fleet.collect": "starts the fleet's launchers (ssh, srun, pdsh), which run envdoctor on the nodes",
}


def violations() -> dict[Edge, str]:
    found: dict[Edge, str] = {}
    for e in all_edges():
        src = layer(e.importer)
        forbidden, why = FORBIDDEN.get(src, (set(), ""))
        if layer(e.target) in forbidden:
            found[e] = why
        if src == "fix" and layer(e.target) == "probe" and (e.target != PROBE_API or private(e.name)):
            found[e] = "fix uses the probe's public API (names of envdoctor.probe) only"
        if src == "commands" and private(e.name):
            found[e] = "commands use no private name of another module"
    return found


def test_every_import_goes_the_one_way():
    found = violations()
    new = {e: why for e, why in found.items() if e not in PENDING}
    assert not new, "\n".join(f"{e.importer} imports {e.target}.{e.name}: {why}" for e, why in new.items())
    gone = [e for e in PENDING if e not in found]
    assert not gone, f"no longer so, remove from PENDING: {gone}"


def test_leaves_import_nothing_of_envdoctor():
    edges = all_edges()
    assert set(LEAVES) <= {module for module, _tree, _path in sources()}
    bad = [f"{e.importer} imports {e.target}" for e in edges if e.importer in LEAVES]
    assert not bad
    # the layers that share a leaf use it, so a copy of it elsewhere would be a second one
    users = {e.importer for e in edges if e.target == "envdoctor.filehash"}
    assert {"envdoctor.build.cache", "envdoctor.fix.owned"} <= users


def test_commands_touch_no_private_attribute_of_another_module():
    # `renderer._finding(f)` in a command is output logic living outside render/
    bad = []
    for module, tree, _path in sources():
        if layer(module) != "commands":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and private(node.attr) and not (
                    isinstance(node.value, ast.Name) and node.value.id in ("self", "cls", "sys", "os")):
                bad.append(f"{module}:{node.lineno} {ast.unparse(node)}")
    assert not bad


def test_processes_start_in_probe_only():
    starters = set()
    for module, tree, _path in sources():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if "subprocess" in names and layer(module) != "probe":
                    starters.add(module)
    unexplained = starters - set(SUBPROCESS_PENDING) - set(SUBPROCESS_ALLOWED)
    assert not unexplained, f"start processes through envdoctor/probe/: {sorted(unexplained)}"
    assert not (set(SUBPROCESS_PENDING) - starters), "no longer so: remove from SUBPROCESS_PENDING"


# commands parse options, call the pipeline and render: none of them drives the probe itself
def test_commands_reach_the_probe_through_the_pipeline_only():
    bad = sorted(f"{e.importer} imports {e.target}.{e.name}" for e in all_edges()
                 if layer(e.importer) == "commands" and layer(e.target) == "probe")
    assert not bad


def test_the_scanner_sees_imports_inside_functions_and_relative_ones():
    tree = ast.parse("def f():\n    from envdoctor.probe import target\nfrom .x import _y\nimport envdoctor.fix\n")
    got = set(edges_of("envdoctor.checks.foo", tree, is_package=False))
    assert got == {Edge("envdoctor.checks.foo", "envdoctor.probe", "target"),
                   Edge("envdoctor.checks.foo", "envdoctor.checks.x", "_y"),
                   Edge("envdoctor.checks.foo", "envdoctor.fix", "*")}
    assert layer("envdoctor.checks.foo") == "checks" and private("_y") and not private("__version__")
