"""Printed commands paste on the target's OS (issue 12 item 7): one quoting function, envdoctor/commandline.py.

cmd.exe lines are checked by parsing them back with the Microsoft C runtime's rules (the ones Python's
own Windows start-up applies; written out below) and by looking for cmd's operators outside quotes;
POSIX lines are run through a real /bin/sh. There is no PowerShell here: its form is checked as text."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from envdoctor.rules import load_tables
from envdoctor.checks import advice
from envdoctor.fix.plan import PlanOptions, make_plan
from envdoctor import commandline as shell
from tests.test_fix_plan import report

WIN_PY = r"C:\Users\张三\My Envs\open-mmlab\python.exe"
ARGVS = [
    [WIN_PY, "-m", "pip", "install", "numpy<2"],
    [r"C:\Python312\python.exe", "-m", "pip", "install", "--find-links", r"\\server\share\wheels\\", "mmcv==2.2.0"],
    [r"\\?\C:\very\long\python.exe", "-c", 'print("a b")', "", "x&y", "tab\there", 'back\\"slash', "100%"],
]


def parse_msvcrt(line: str) -> list[str]:
    """Split a command line as the Microsoft C runtime does (CommandLineToArgvW's rules for arguments
    after the first: 2n backslashes + quote -> n backslashes and a quote toggle; 2n+1 -> n and a quote)."""
    args, cur, quoted, have, i = [], [], False, False, 0
    while i < len(line):
        c = line[i]
        if c == "\\":
            n = 0
            while i < len(line) and line[i] == "\\":
                n += 1
                i += 1
            if i < len(line) and line[i] == '"':
                cur.append("\\" * (n // 2))
                if n % 2:
                    cur.append('"')
                    i += 1
                have = True
            else:
                cur.append("\\" * n)
                have = True
            continue
        if c == '"':
            quoted, have = not quoted, True
        elif c in " \t" and not quoted:
            if have:
                args.append("".join(cur))
            cur, have = [], False
        else:
            cur.append(c)
            have = True
        i += 1
    if have:
        args.append("".join(cur))
    return args


def _outside_quotes(line: str) -> str:
    return "".join(part for i, part in enumerate(line.split('"')) if i % 2 == 0)


@pytest.mark.parametrize("argv", ARGVS)
def test_a_cmd_line_parses_back_to_its_arguments_and_hides_cmds_operators(argv):
    line = shell.cmd_line(argv)
    assert parse_msvcrt(line) == argv
    assert not set("<>&|^") & set(_outside_quotes(line)), line
    assert "'" not in line.split(" ", 1)[0]  # never a POSIX single-quoted program


@pytest.mark.parametrize("argv", ARGVS)
def test_a_posix_line_runs_in_a_real_shell_with_its_arguments(argv):
    line = shell.posix_line(argv)
    out = subprocess.run(["/bin/sh", "-c", "printf '%s\\0' " + shlex.join(argv[1:]) + " >/dev/null; "
                          "printf '%s\\0' " + line], capture_output=True, check=True).stdout
    assert out.decode().split("\0")[:-1] == argv


def test_the_powershell_form_calls_a_quoted_program_and_single_quotes():
    ps = shell.powershell_line([WIN_PY, "-m", "pip", "install", "numpy<2", "it's", "$HOME"])
    assert ps == f"& '{WIN_PY}' -m pip install 'numpy<2' 'it''s' '$HOME'"
    assert shell.forms([r"C:\Python312\python.exe", "-m", "pip", "list"], "Windows") == [
        r"C:\Python312\python.exe -m pip list"]  # the same text in cmd.exe and PowerShell: shown once


def test_a_windows_plan_prints_commands_cmd_and_powershell_run():
    r = report({"mmcv-lite": "2.2.0", "mmcv": "1.7.2", "torch": "2.13.0+cpu"}, {
        "torch": (True, "ok", ""), "mmcv": (True, "ok", ""), "mmcv._ext": (False, "missing", "No module")},
        os_name="Windows")
    r.python.executable = WIN_PY
    plan = make_plan(r, load_tables(), PlanOptions(pins={"mmcv": "2.2.0"}, index_url="https://mirror.example/simple?a=1&b=2"))
    [a] = plan.actions
    assert a.commands[0] == f'"{WIN_PY}" -m pip uninstall -y mmcv'
    assert a.commands[1] == f"(PowerShell) & '{WIN_PY}' -m pip uninstall -y mmcv"
    assert parse_msvcrt(a.commands[-2])[-3:] == ["--index-url", "https://mirror.example/simple?a=1&b=2", "mmcv==2.2.0"]
    assert '"https://mirror.example/simple?a=1&b=2"' in a.commands[-2]  # cmd.exe would run `b=2` otherwise
    assert not any(c.startswith("'") for c in a.commands)
    assert f'--python "{WIN_PY}"' in a.undo


def test_the_findings_fix_texts_quote_for_the_target():
    r = report({"torch": "2.13.0+cpu"}, {"torch": (True, "ok", "")}, os_name="Windows")
    r.python.executable = WIN_PY
    assert advice.pip(r) == f'"{WIN_PY}" -m pip'
    assert advice.envdoctor_fix(r, "compat").endswith(f'--python "{WIN_PY}"')
    r.host.os, r.python.executable = "Linux", "/home/a b/env/bin/python"
    assert advice.pip(r) == "'/home/a b/env/bin/python' -m pip"
