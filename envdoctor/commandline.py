"""Printed commands that paste and run on the target's OS: the one quoting function for every command
envdoctor shows (the fix plan, the findings' fix texts). A leaf module (stdlib only), so checks, fix and
render may all use it without breaking the import direction.

POSIX shells: shlex.quote. Windows, cmd.exe: the Microsoft C runtime's argument rules, as
subprocess.list2cmdline writes them, plus double quotes around cmd's own operators (`numpy<2` would
otherwise read from a file named 2). PowerShell differs where the program path is quoted (a quoted
string alone is a value there, so it needs the call operator: `& "C:\\…\\python.exe" -m pip …`) and
where an argument holds `$` or a backtick (double quotes expand them; single quotes do not).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from typing import Sequence

_CMD_SPECIAL = re.compile(r'[\s&|<>^()"%!,;=]')  # cmd.exe splits or acts on these outside double quotes
_PS_SPECIAL = re.compile(r"[\s'\"$`&|<>(){}@#,;%]")


def _cmd_arg(arg: str) -> str:
    if arg and not _CMD_SPECIAL.search(arg):
        return arg
    plain = subprocess.list2cmdline([arg])
    if plain.startswith('"'):
        return plain
    # list2cmdline quotes only for blanks; an argument with an operator is quoted by the same rules:
    # backslashes are doubled before a quote (escaped as \") and at the end, literal elsewhere
    out, slashes = [], 0
    for c in arg:
        if c == "\\":
            slashes += 1
            continue
        out.append("\\" * (2 * slashes + 1) + c if c == '"' else "\\" * slashes + c)
        slashes = 0
    return '"' + "".join(out) + "\\" * (2 * slashes) + '"'


def _ps_arg(arg: str) -> str:
    if arg and not _PS_SPECIAL.search(arg):
        return arg
    return "'" + arg.replace("'", "''") + "'"


def cmd_line(argv: Sequence[str]) -> str:
    """The command for cmd.exe (and for Windows' own argument parsing)."""
    return " ".join(_cmd_arg(a) for a in argv)


def powershell_line(argv: Sequence[str]) -> str:
    """The command for PowerShell: single quotes, and `& ` before a quoted program."""
    parts = [_ps_arg(a) for a in argv]
    if parts and parts[0] != argv[0]:
        parts[0] = "& " + parts[0]
    return " ".join(parts)


def posix_line(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def is_windows(os_name: str) -> bool:
    return (os_name or "").lower().startswith(("win", "nt"))


def command_line(argv: Sequence[str], os_name: str) -> str:
    """`argv` as one line to paste on `os_name` (a report's host.os: "Linux", "Windows", ...)."""
    return cmd_line(argv) if is_windows(os_name) else posix_line(argv)


def forms(argv: Sequence[str], os_name: str) -> list[str]:
    """The line to paste, and on Windows the PowerShell line too when it is not the same text."""
    if not is_windows(os_name):
        return [posix_line(argv)]
    cmd, ps = cmd_line(argv), powershell_line(argv)
    return [cmd] if cmd == ps else [cmd, f"(PowerShell) {ps}"]


def program(exe: str, os_name: str) -> str:
    """Just the program, quoted for `os_name`, for texts that go on with their own words (`<exe> -m pip`)."""
    return command_line([exe], os_name)
