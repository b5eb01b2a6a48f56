"""The console entry point: `envdoctor check` without the typer app, every other command line through it.

typer (with click and pydantic) and rich take longer to import than `check --quick` takes to run, and
in a full `check` they compete with the target's `import torch` for the CPU. So a `check` command line
made only of check's own options, spelled in the plain forms below, is parsed here and runs the very
call the typer app makes (command_run.check). Anything else (--help, a group option, an unknown or
malformed option, a value that looks like an option, a completion request, Windows argument
expansion) goes to the typer app, which gives its usual answer: the fast path changes no behaviour,
and when it cannot be sure it is not taken.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional

from envdoctor import command_run

# the options of `envdoctor check` (cli.py declares them for typer): spelling -> parameter
CHECK_VALUES = {"--python": "python", "--format": "fmt", "-f": "fmt", "-o": "output", "--output": "output",
                "--timeout": "timeout", "--fleet-member": "fleet_member"}
CHECK_LISTS = {"--rules": "rules", "--select": "select", "--ignore": "ignore"}  # repeatable
CHECK_FLAGS = {"--quick": "quick", "--no-redact": "no_redact", "--verbose": "verbose", "-v": "verbose",
               "--no-fork": "no_fork"}
CHECK_DEFAULTS: dict[str, Any] = {"python": None, "fmt": "text", "output": None, "quick": False, "rules": None,
                                  "select": None, "ignore": None, "no_redact": False, "timeout": 60.0,
                                  "verbose": False, "fleet_member": None, "no_fork": False}
# click expands these in arguments on Windows (~, variables, wildcards)
_WINDOWS_EXPANDED = ("~", "$", "%", "*", "?", "[")


def parse_check(args: list[str]) -> Optional[dict[str, Any]]:
    """check's parameters from `check OPTION...`, or None: the typer app must parse this command line."""
    if not args or args[0] != "check":
        return None
    if os.name == "nt" and any(c in a for a in args for c in _WINDOWS_EXPANDED):
        return None
    if any(k.startswith("_") and k.endswith("_COMPLETE") for k in os.environ):  # a shell-completion request
        return None
    params = dict(CHECK_DEFAULTS)
    rest = args[1:]
    i = 0
    while i < len(rest):
        token = rest[i]
        i += 1
        if token in CHECK_FLAGS:
            params[CHECK_FLAGS[token]] = True
            continue
        if token.startswith("--") and "=" in token:
            token, value = token.split("=", 1)
            if token not in CHECK_VALUES and token not in CHECK_LISTS:
                return None
        elif token in CHECK_VALUES or token in CHECK_LISTS:
            if i == len(rest) or rest[i].startswith("-"):
                return None
            value = rest[i]
            i += 1
        else:
            return None
        if token in CHECK_LISTS:
            params[CHECK_LISTS[token]] = [*(params[CHECK_LISTS[token]] or []), value]
        elif CHECK_VALUES[token] == "timeout":
            try:
                params["timeout"] = float(value)  # as click's FLOAT converts it; a bad number is typer's error
            except ValueError:
                return None
        else:
            params[CHECK_VALUES[token]] = value  # given twice: the last one, as click does
    return params


def main() -> None:
    command_run.replace_unencodable()
    # Ctrl-C while the command line is read: one line and 130 (the command's own handling starts in run_command)
    command_run.set_sigint(command_run.interrupted_while_starting)
    params = parse_check(sys.argv[1:])
    if params is None:
        from envdoctor.cli import main as typer_main

        typer_main()
        return
    try:
        code = command_run.check(**params)
    except BrokenPipeError:  # the error line itself met a closed stderr: exit 1, as the typer app does
        command_run.quiet_stdout()
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
