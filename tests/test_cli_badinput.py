"""Bad input to every command, as a user would type it: one line on stderr, exit 2, no traceback,
nothing changed. Real subprocesses (`python -m envdoctor ...`), real files, real interpreters.

Decisions recorded here (and in docs/cli.md):
- `--select` / `--ignore` with an id or prefix that matches no rule is an error (exit 2): a typo
  would otherwise run no check and exit 0, and a CI gate on `check` would always pass.
- `inspect` on a file that is neither named like a library nor a binary is a usage error (exit 2);
  an empty or garbled `*.so` / `*.pyd` is a finding (ED705, exit 1): that is what a git-lfs pointer
  or an interrupted download looks like.
- A closed pipe (`envdoctor check | head -1`) ends the command quietly with exit 1, as rich does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, need_python, run_cli

# evidence of a Python traceback or of click's multi-line usage box
TRACEBACK_MARKS = ("Traceback", "Exception ignored", "╭", "Usage:")


def assert_one_line_error(res: subprocess.CompletedProcess, *, contains: str = "", code: int = 2) -> str:
    err = res.stderr
    assert res.returncode == code, (res.returncode, err, res.stdout[-500:])
    for mark in TRACEBACK_MARKS:
        assert mark not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("envdoctor: "), err
    assert contains in lines[0], (contains, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.json").write_bytes(b"")
    (d / "array.json").write_text("[1, 2, 3]\n")
    (d / "v2.json").write_text('{"schema": "envdoctor.report/2", "host": {}, "findings": []}\n')
    (d / "other.json").write_text('{"schema": "something.else/1"}\n')
    (d / "truncated.json").write_text('{"schema": "envdoctor.report/1", "host": {"os": "Li')
    (d / "binary.dat").write_bytes(bytes(range(256)) * 8)
    (d / "adir").mkdir()
    with open(d / "huge.json", "wb") as f:  # sparse: 100 MiB on paper, nothing on disk
        f.truncate(100 * 2**20)
    (d / "loop1").symlink_to(d / "loop2")
    (d / "loop2").symlink_to(d / "loop1")
    (d / "dangling").symlink_to(d / "nowhere")
    script = d / "script.sh"
    script.write_text("#!/bin/sh\necho hello\n")
    script.chmod(0o755)
    for name, text in {
        "badtoml": '[[mmcv_flavour]]\ndistribution = "x"\nmmcv = ">=1.0\n',
        "unknownkey": '\n[[mmcv_flavour]]\ndistribution = "x"\nmmcv = ">=1.0"\nops = true\ncolour = "red"\n'
                      'source = "https://example.org"\n',
        "badspec": '\n\n[[mmcv_flavour]]\ndistribution = "x"\nmmcv = "=>banana"\nops = true\n'
                   'source = "https://example.org"\n',
    }.items():
        (d / name).mkdir()
        (d / name / "extra.toml").write_text(text)
    return d


def snapshot(d: Path) -> dict[str, tuple[int, float]]:
    return {str(p): (p.lstat().st_size, p.lstat().st_mtime) for p in d.rglob("*")}


# --- files where a report is expected (diff) -------------------------------------------------------

@pytest.mark.parametrize("name, says", [
    ("missing.json", "cannot read"),
    ("adir", "cannot read"),
    ("binary.dat", "not UTF-8"),
    ("empty.json", "not JSON"),
    ("array.json", "no \"schema\" field"),
    ("v2.json", "schema version 2"),
    ("other.json", "not an envdoctor report"),
    ("truncated.json", "not JSON"),
    ("huge.json", "at most 64 MiB"),
])
def test_diff_bad_report(bad, name, says):
    before = snapshot(bad)
    res = run_cli("diff", str(bad / name), str(bad / name))
    assert_one_line_error(res, contains=says)
    assert snapshot(bad) == before


def test_diff_unreadable_special_file():
    # root reads any mode-000 file, so an unreadable file is one the kernel refuses to read
    assert_one_line_error(run_cli("diff", "/proc/self/mem"), contains="cannot read")


# --- inspect -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, says", [
    ("missing.so", "no such file"),
    ("adir", "not a file"),
    ("binary.dat", "not a compiled extension"),
    ("empty.json", "not a compiled extension (an empty file)"),
])
def test_inspect_bad_file(bad, name, says):
    assert_one_line_error(run_cli("inspect", str(bad / name)), contains=says)


def test_inspect_garbled_library_is_a_finding_not_a_usage_error(bad, tmp_path):
    so = tmp_path / "_ext.cpython-311-x86_64-linux-gnu.so"
    so.write_bytes((bad / "binary.dat").read_bytes())
    res = run_cli("inspect", str(so))
    assert res.returncode == 1, res.stderr
    assert "ED705" in res.stdout and "Traceback" not in res.stderr


# --- rules, explain, --rules ----------------------------------------------------------------------

@pytest.mark.parametrize("rules_dir, line, says", [
    ("badtoml", 3, "not valid TOML"),
    ("unknownkey", 6, "unknown key 'colour'"),
    ("badspec", 5, "not a valid version specifier"),
])
@pytest.mark.parametrize("command", [["rules"], ["explain", "ED301"], ["check", "--quick"]])
def test_broken_rule_file_names_file_and_line(bad, rules_dir, line, says, command):
    res = run_cli(*command, "--rules", str(bad / rules_dir))
    assert_one_line_error(res, contains=f"{bad / rules_dir / 'extra.toml'}:{line}: ")
    assert says in res.stderr


@pytest.mark.parametrize("target", ["array.json", "missing-dir"])
def test_rules_option_not_a_directory(bad, target):
    assert_one_line_error(run_cli("rules", "--rules", str(bad / target)), contains="not a directory")


@pytest.mark.parametrize("rule_id", ["ED999", "", "rm -rf /"])
def test_explain_unknown_rule(rule_id):
    assert_one_line_error(run_cli("explain", rule_id), contains="no rule")


# --- options ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, says", [
    (["check", "--format", "yaml"], "--format yaml"),
    (["fix", "--format", "yaml"], "--format yaml"),
    (["diff", "x.json", "--format", "yaml"], "--format yaml"),
    (["inspect", "x.so", "--format", "yaml"], "--format yaml"),
    (["fix", "--strategy", "magic"], "--strategy magic"),
    (["fix", "--pin", "mmcv"], "--pin mmcv"),
    (["check", "--bogus"], "No such option: --bogus"),
    (["bogus"], "No such command"),
    (["explain"], "Missing argument 'ID'"),
    (["diff"], "Missing argument"),
    (["inspect"], "Missing argument"),
    (["check", "--python"], "requires an argument"),
    (["check", "--timeout", "abc"], "--timeout"),
])
def test_bad_option(args, says):
    assert_one_line_error(run_cli(*args), contains=says)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
@pytest.mark.parametrize("command", [["check", "--quick"], ["fix"], ["diff", "x.json"]])
def test_bad_timeout(value, command):
    assert_one_line_error(run_cli(*command, "--timeout", value), contains="--timeout")


@pytest.mark.parametrize("option, value", [("--select", "ZZ9"), ("--select", "ED301,ED3O1"), ("--ignore", "XX")])
def test_unknown_rule_selector_is_an_error(option, value):
    res = run_cli("check", "--quick", option, value)
    assert_one_line_error(res, contains="no rule id starts with it")
    assert res.stdout == ""


def test_known_selector_prefixes_still_work():
    res = run_cli("check", "--quick", "--select", "ed3,ED1", "--ignore", "ED102")
    assert res.returncode in (0, 1), res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_output_into_missing_dir_fails_before_probing(tmp_path, fmt):
    t0 = time.monotonic()
    out = tmp_path / "no" / "such" / "dir" / "report.out"
    res = run_cli("check", "-f", fmt, "-o", str(out))  # a full probe would take seconds
    assert_one_line_error(res, contains="no such directory")
    assert not out.parent.exists()
    assert time.monotonic() - t0 < 30


@pytest.mark.parametrize("args", [["check", "--quick"], ["fix"], ["diff", "x.json"]])
def test_output_onto_a_directory(tmp_path, args):
    assert_one_line_error(run_cli(*args, "-o", str(tmp_path)), contains="is a directory")


def test_output_into_unwritable_file():
    # /proc refuses the write even to root: the error surfaces while writing, still as one line
    assert_one_line_error(run_cli("check", "--quick", "-f", "json", "-o", "/proc/version"), contains="-o /proc")


# --- --python ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["check", "--quick"], ["fix"], ["fix", "--undo"]])
@pytest.mark.parametrize("target, says", [
    ("missing", "no such file"),
    ("loop1", "symbolic link loop"),
    ("dangling", "broken symbolic link"),
    ("adir", "no bin/python"),
    ("binary.dat", "not an executable file"),
])
def test_bad_python(bad, command, target, says):
    assert_one_line_error(run_cli(*command, "--python", str(bad / target)), contains=says)


@pytest.mark.parametrize("command", [["check", "--quick"], ["fix"], ["fix", "--undo"]])
def test_python_is_a_shell_script(bad, command):
    assert_one_line_error(run_cli(*command, "--python", str(bad / "script.sh")), contains="not a Python interpreter")


@pytest.mark.parametrize("command", [["check"], ["check", "--quick"], ["fix"]])
def test_python_27_is_explained(command):
    py27 = need_python("2.7")
    res = run_cli(*command, "--python", str(py27))
    assert_one_line_error(res, contains="Python 2.7")
    assert "3.6 and newer" in res.stderr


# --- environment: encodings, HOME ---------------------------------------------------------------

@pytest.mark.parametrize("env", [{"PYTHONIOENCODING": "ascii"}, {"LANG": "C", "LC_ALL": "C", "PYTHONUTF8": "0",
                                                                   "PYTHONCOERCECLOCALE": "0",
                                                                   "PYTHONIOENCODING": "ascii:strict"}])
@pytest.mark.parametrize("args", [["check", "--quick"], ["rules"], ["explain", "ED301"]])
def test_ascii_terminal(env, args):
    res = subprocess.run([sys.executable, "-m", "envdoctor", *args], capture_output=True, env={
        **os.environ, "PYTHONPATH": str(ROOT), **env})
    assert res.returncode in (0, 1), res.stderr.decode(errors="replace")
    assert b"Traceback" not in res.stderr and b"internal error" not in res.stderr
    res.stdout.decode("ascii")  # pure ASCII: the marks fell back
    if args[0] == "check":
        assert b"  + python" in res.stdout or b"  x python" in res.stdout or b"  ! python" in res.stdout, res.stdout


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_home_not_utf8(tmp_path, fmt):
    home = os.fsencode(tmp_path) + b"/h\xff\xfeme"
    os.mkdir(home)
    env = {k: v for k, v in os.environ.items()}
    env.update(PYTHONPATH=str(ROOT))
    env_b = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
    env_b[b"HOME"] = home
    res = subprocess.run([sys.executable, "-m", "envdoctor", "check", "--quick", "-f", fmt], capture_output=True,
                         env=env_b)  # type: ignore[arg-type]
    assert res.returncode in (0, 1), res.stderr.decode(errors="replace")
    assert res.stderr == b""


# --- pipes and signals ------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["check", "--quick"], ["check", "--quick", "-f", "json"],
                                  ["check", "--quick", "-f", "markdown"], ["rules"], ["explain", "ED301"],
                                  ["--help"], ["--version"]])
def test_closed_pipe(args):
    # the reader is gone before envdoctor writes a byte: the harshest `| head -1`
    r, w = os.pipe()
    os.close(r)
    try:
        res = subprocess.run([sys.executable, "-m", "envdoctor", *args], stdout=w, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    finally:
        os.close(w)
    assert res.stderr == "", res.stderr
    assert res.returncode == 1


def test_head_dash_one():
    res = subprocess.run(f"'{sys.executable}' -m envdoctor rules | head -1", shell=True, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert res.stdout.strip() == "Rule tables"
    assert res.stderr == ""


@pytest.mark.parametrize("whole_group", [False, True], ids=["parent", "process-group"])
def test_ctrl_c_during_check(whole_group):
    # a full check of this interpreter (torch imports in isolated children) takes seconds; Ctrl-C in
    # a terminal signals the whole process group, `kill -INT` only the parent
    proc = subprocess.Popen([sys.executable, "-m", "envdoctor", "check", "--python", sys.executable],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    time.sleep(1.5)
    (os.killpg if whole_group else os.kill)(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert err.strip() == "envdoctor: interrupted", err
