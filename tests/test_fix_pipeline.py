"""One pipeline: `fix` resolves the target once, probes once before and once to verify (its verify
statements run inside that probe), and its dry run starts exactly the processes `check` starts.

Every interpreter start in the target is counted for real: a `.pth` file in the (copied) venv appends
the process id and `sys.orig_argv` of every interpreter that starts there to a log file.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import pytest

from envdoctor.probe import Target, collect_verified
from tests.conftest import run_cli
from tests.envs import site_packages
from tests.test_fix_apply import clone, templates, wheel_args, wheels  # noqa: F401 - fixtures

LOGGER = ('import os, sys; p = os.environ.get("ENVDOCTOR_TEST_LAUNCH_LOG"); '
          'p and open(p, "a").write(repr([os.getpid(), sys.orig_argv]) + "\\n")\n')


def with_launch_log(env: Path) -> Path:
    (site_packages(env) / "zz_launch_log.pth").write_text(LOGGER)
    return env.parent / f"{env.name}-launches.log"


def launches(log: Path) -> list[str]:
    """What each interpreter start ran, in order, once per process (lib64 -> lib reads a .pth twice):
    the probe script's name, `pip <command>`, or the `-c` program."""
    seen: dict[int, str] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        pid, argv = ast.literal_eval(line)
        if pid in seen:
            continue
        if argv[1:3] == ["-m", "pip"]:
            seen[pid] = "pip " + next(a for a in argv[3:] if not a.startswith("-"))
        elif len(argv) > 2 and argv[1].endswith("bootstrap.py"):
            seen[pid] = os.path.basename(argv[2])
        else:
            seen[pid] = " ".join(argv[1:])[:80]
    return list(seen.values())


def run_logged(log: Path, *args: str) -> str:
    proc = run_cli(*args, env={"ENVDOCTOR_TEST_LAUNCH_LOG": str(log)}, timeout=600)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return proc.stdout


def test_fix_apply_probes_once_before_and_verifies_in_one_probe(templates, wheels, tmp_path):  # noqa: F811
    env = clone(templates, "nops", tmp_path)
    log = with_launch_log(env)
    out = run_logged(log, "fix", "--python", str(env), *wheel_args(wheels), "--apply", "--yes")
    assert "Result: verified" in out, out
    got = launches(log)
    # the layout (prefix for the lock, pip's paths), the before-state, the verification: no other start
    # (before: a prefix query, a layout query and one `python -c "import mmcv.ops"` per verify statement)
    assert sorted(g for g in got if not g.startswith("pip ")) == sorted(
        ["target_layout.py"] + 2 * ["static_facts.py"] + ["load_probe.py"]), got
    assert got[0] == "target_layout.py" and got.index("pip uninstall") < got.index("pip install"), got
    pip_at = got.index("pip install")
    after = got[pip_at + 1:]
    # the one verification probe: the static facts afresh; its imports are children forked from the
    # before-probe's `import torch`, which waited (pip changed no file that process had loaded: probe/held.py)
    assert after == ["static_facts.py"], got
    assert not [g for g in got[:pip_at] if g.startswith("pip ") and g not in ("pip download", "pip uninstall")]


def test_fix_dry_run_starts_what_check_starts(templates, wheels, tmp_path):  # noqa: F811
    env = clone(templates, "nops", tmp_path)
    log_check, log_fix = tmp_path / "check.log", tmp_path / "fix.log"
    (site_packages(env) / "zz_launch_log.pth").write_text(LOGGER)
    run_logged(log_check, "check", "--python", str(env))
    out = run_logged(log_fix, "fix", "--python", str(env), *wheel_args(wheels))
    assert "Dry run: nothing was changed" in out
    assert sorted(launches(log_check)) == ["load_probe.py", "static_facts.py"]
    assert sorted(launches(log_fix)) == sorted(launches(log_check))


def test_undo_asks_only_for_the_layout(templates, wheels, tmp_path):  # noqa: F811
    env = clone(templates, "nops", tmp_path)
    log = with_launch_log(env)
    proc = run_cli("fix", "--python", str(env), "--undo", env={"ENVDOCTOR_TEST_LAUNCH_LOG": str(log)})
    assert proc.returncode == 2 and "nothing to undo" in proc.stderr
    assert launches(log) == ["target_layout.py"]


STATEMENTS = ["import json", "import no_such_module_xyz", "import ctypes; ctypes.string_at(0)",
              "raise SystemExit(3)"]


@pytest.mark.parametrize("fork", [True, False], ids=["fork", "no-fork"])
def test_verify_statements_run_inside_the_probe_and_fail_as_imports_do(fork):
    if fork and not sys.platform.startswith("linux"):
        pytest.skip("fork after `import torch` is the Linux mode")
    from tests.conftest import real_env

    python = str(real_env("bare") / "bin" / "python")
    report, got = collect_verified(Target(python, "--python"), STATEMENTS, timeout=60, fork=fork)
    assert report.components["torch"].load is not None and report.components["torch"].load.status == "missing"
    assert set(got) == set(STATEMENTS)
    assert got["import json"].status == "ok"
    bad = got["import no_such_module_xyz"]
    assert bad.status == "import_error" and bad.error is not None and bad.error.type == "ModuleNotFoundError"
    crash = got["import ctypes; ctypes.string_at(0)"]
    assert crash.status == "crash" and crash.error is not None and crash.error.signal == "SIGSEGV"
    exit3 = got["raise SystemExit(3)"]
    assert exit3.status == "import_error" and exit3.error is not None and exit3.error.type == "SystemExit"
