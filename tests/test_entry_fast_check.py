"""`envdoctor check` runs without the typer app (envdoctor/entry.py), with the very behaviour of the typer path.

typer (which imports click and pydantic) and rich cost more CPU than `check --quick` itself. The entry parses
a plain `check` command line on its own and hands everything else to typer. Asserted here with real
subprocesses: which modules the real CLI has imported when it exits (`python -m envdoctor` run by runpy, its
sys.modules written at exit; `-X importtime` misses what importlib.import_module imports), that the entry and the
typer app answer the same command lines byte for byte (output, error line, exit code), and that the entry's
option table is the one cli.py declares. Timing is bench/bench_check.py's job.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from envdoctor.entry import CHECK_DEFAULTS, COMMANDS, FIX_DEFAULTS, parse, parse_check
from tests.conftest import ROOT

HEAVY = ("typer", "click", "rich", "pydantic", "pydantic_core", "shellingham")
TYPER_PATH = "import sys; sys.argv[0] = 'envdoctor'; from envdoctor.cli import main; main()"
# `python -m envdoctor ARGS`, and at exit its sys.modules into the file named by ENVDOCTOR_TEST_MODULES
MODULES_AT_EXIT = ("import atexit, os, runpy, sys\n"
                   "def dump():\n"
                   "    with open(os.environ['ENVDOCTOR_TEST_MODULES'], 'w') as f:\n"
                   "        f.write('\\n'.join(sorted(sys.modules)))\n"
                   "atexit.register(dump)\n"
                   "sys.argv[0] = 'envdoctor'\n"
                   "runpy.run_module('envdoctor', run_name='__main__', alter_sys=True)\n")
# what differs between two runs of one command: the time, the probe's scratch directory (on sys.path)
_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+\-Z0-9:]*|envdoctor-[a-z0-9_]{8}")


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("ENVDOCTOR_DEBUG", None)
    return env


def _cli(args: list[str], typer_path: bool = False, cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    how = ["-c", TYPER_PATH] if typer_path else ["-m", "envdoctor"]
    return subprocess.run([sys.executable, *how, *args], capture_output=True, text=True, env=_env(),
                          cwd=cwd or ROOT, timeout=300)


def imported(args: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run the real CLI; (its result, every module it had imported when it exited)."""
    listing = tmp_path / "modules.txt"
    proc = subprocess.run([sys.executable, "-c", MODULES_AT_EXIT, *args], capture_output=True, text=True,
                          env=dict(_env(), ENVDOCTOR_TEST_MODULES=str(listing)), cwd=ROOT, timeout=300)
    return proc, set(listing.read_text().split())


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


@pytest.mark.parametrize("extra", [[], ["-o", "OUT"]])
def test_check_quick_json_imports_no_typer_rich_or_pydantic(tmp_path, extra):
    extra = [str(tmp_path / "r.json") if a == "OUT" else a for a in extra]
    proc, mods = imported(["check", "--quick", "--format", "json", "--python", sys.executable, *extra], tmp_path)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    assert "envdoctor.commands.check" in mods and "envdoctor.render.json_" in mods, sorted(mods)[:50]
    assert heavy(mods) == []
    report = (tmp_path / "r.json").read_text() if extra else proc.stdout
    assert '"mode": "quick"' in report


def test_check_quick_text_needs_rich_but_not_typer(tmp_path):
    proc, mods = imported(["check", "--quick", "--python", sys.executable], tmp_path)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    found = heavy(mods)
    assert "rich.console" in found  # the text renderer draws with rich
    assert [m for m in found if m.split(".")[0] in ("typer", "click", "pydantic")] == []


@pytest.mark.parametrize("args", [["check", "--help"], ["--version"], ["rules"], ["check", "-fjson", "--quick"]])
def test_everything_else_goes_through_typer(tmp_path, args):
    proc, mods = imported(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "typer" in mods


def _same(a: subprocess.CompletedProcess, b: subprocess.CompletedProcess) -> None:
    assert (a.returncode, _STAMP.sub("T", a.stdout), a.stderr) == (b.returncode, _STAMP.sub("T", b.stdout), b.stderr)


@pytest.mark.parametrize("args", [
    ["check", "--quick", "-f", "json", "--python", "PY"],
    ["check", "--quick", "--select", "ED1", "--select=ED3,ED5", "--ignore", "ED102", "-v", "--timeout", "30",
     "--python=PY", "--no-redact", "--format", "markdown"],
    ["check", "--quick", "--no-fork", "--python", "PY", "-f", "text", "--format", "json"],  # the last one wins
    ["check", "--quick", "--select", "ZZ9"],
    ["check", "--quick", "--timeout", "inf"],
    ["check", "--quick", "--timeout=-0"],
    ["check", "--quick", "-f", "yaml"],
    ["check", "--quick", "-o", "DIR"],
    ["check", "--quick", "--python", "/nonexistent/bin/python"],
    ["check", "--quick", "--rules", "/nonexistent/rules"],
    ["fix", "--python", "PY", "--format", "json", "--rules", "/nonexistent/rules"],
    ["fix", "--strategy", "magic"],
    ["fix", "--pin", "mmcv", "--no-redact"],
    ["fix", "--undo", "--recover", "-y"],
    ["fix", "--cpu", "--apply"],
    ["fix", "--on-conflict=maybe", "--recover"],
    ["fix", "--timeout", "0", "--allow-torch-change"],
    ["fix", "--source", "/nonexistent/src", "--strategy", "build", "--index-url", "/nowhere", "-o", "DIR"],
    ["fix", "-f", "yaml", "--pin=mmcv==2.1.0"],
])
def test_the_entry_answers_as_the_typer_app_does(tmp_path, args):
    args = [{"PY": sys.executable, "DIR": str(tmp_path)}.get(a, a) for a in args]
    args = [a.replace("=PY", "=" + sys.executable) for a in args]
    assert parse(args) is not None, args  # the entry's own path is the one compared
    fast, slow = _cli(args, cwd=tmp_path), _cli(args, typer_path=True, cwd=tmp_path)
    _same(fast, slow)
    assert fast.stdout or fast.returncode == 2, fast.stderr


@pytest.mark.parametrize("args", [
    [], ["check"], ["fix"], ["--version", "check"], ["check", "--help"], ["check", "-h"], ["check", "extra"],
    ["check", "--"], ["check", "--bogus"], ["check", "-fjson"], ["check", "-vq"], ["check", "--quick=1"],
    ["check", "--python"], ["check", "--python", "--quick"], ["check", "--timeout", "abc"],
    ["check", "--format=json", "--verbose=1"], ["check", "-o"],
])
def test_what_the_entry_leaves_to_typer(args):
    if args == ["check"]:
        assert parse_check(args) == CHECK_DEFAULTS
    elif args == ["fix"]:
        assert parse(args) == ("fix", FIX_DEFAULTS)
    else:
        assert parse(args) is None, args


@pytest.mark.parametrize("args", [["fix", "--help"], ["fix", "--apply=1"], ["fix", "-ay"], ["fix", "--pin"],
                                  ["fix", "--quick"], ["fix", "--strategy", "--apply"], ["fixit"]])
def test_what_the_entry_leaves_to_typer_for_fix(args):
    assert parse(args) is None, args


def test_the_entry_reads_each_option_as_click_does():
    got = parse_check(["check", "--python", "p", "-f", "json", "--output=o", "--quick", "--rules", "r1", "--rules=r2",
                       "--select", "ED1", "--ignore", "ED2", "--no-redact", "--timeout", "1e1", "-v",
                       "--fleet-member", "run1", "--no-fork"])
    assert got == {"python": "p", "fmt": "json", "output": "o", "quick": True, "rules": ["r1", "r2"],
                   "select": ["ED1"], "ignore": ["ED2"], "no_redact": True, "timeout": 10.0, "verbose": True,
                   "fleet_member": "run1", "no_fork": True}


def test_the_entry_reads_fix_options_as_click_does():
    got = parse(["fix", "--apply", "-y", "--strategy=build", "--cpu", "--source", "src", "--pin", "mmcv==2.1.0",
                 "--pin=x==1", "--rules", "r", "-f", "json", "-o", "o", "--timeout", "5", "--no-redact",
                 "--index-url", "u", "--allow-torch-change", "--on-conflict", "keep", "--python", "p"])
    assert got == ("fix", {"python": "p", "apply": True, "strategy": "build", "cpu": True, "source": "src",
                           "index_url": "u", "allow_torch_change": True, "yes": True, "undo": False,
                           "recover": False, "on_conflict": "keep", "pin": ["mmcv==2.1.0", "x==1"], "rules": ["r"],
                           "fmt": "json", "output": "o", "timeout": 5.0, "no_redact": True})


def test_fix_dry_run_imports_no_typer(tmp_path):
    proc, mods = imported(["fix", "--python", "/nonexistent/bin/python"], tmp_path)
    assert proc.returncode == 2 and "/nonexistent/bin/python" in proc.stderr, proc.stderr[-2000:]
    assert "envdoctor.commands.fix" in mods
    assert [m for m in heavy(mods) if m.split(".")[0] in ("typer", "click", "pydantic")] == []


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_entry_knows_the_options_cli_declares(name):
    # an option added to cli.py's command and not here would only send that command line to typer; a changed
    # spelling or default would make the two paths differ: both fail here
    import typer.main

    from envdoctor.cli import app

    command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
    declared = {}
    for p in command.params:
        kind = "flag" if p.is_flag else "list" if p.multiple else "value"
        declared[p.name] = (kind, sorted(p.opts + p.secondary_opts), p.default)
    spec = COMMANDS[name]
    ours: dict = {}
    for kind, table in (("flag", spec.flags), ("list", spec.lists), ("value", spec.values)):
        for spelling, param in table.items():
            ours.setdefault(param, (kind, [], spec.defaults[param]))[1].append(spelling)
    assert {k: (v[0], sorted(v[1]), v[2]) for k, v in ours.items()} == declared
