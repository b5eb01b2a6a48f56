"""The console entry point: `envdoctor check` and `fix` without the typer app, every other command line through it.

typer (with click and pydantic) and rich take longer to import than `check --quick` takes to run, and in a full
`check` they compete with the target's `import torch` for the CPU. So a `check` (or `fix`) command line made
only of that command's own options, spelled in the plain forms below, is parsed here and runs the very call the
typer app makes (command_run.check, command_run.fix: fix's dry run is a check and a plan, held to check's
speed). Anything else (--help, a group option, an unknown or malformed option, a value that looks like an
option, a completion request, Windows argument expansion) goes to the typer app, which gives its usual answer:
the fast path changes no behaviour, and when it cannot be sure it is not taken.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
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
# the options of `envdoctor fix`, likewise
FIX_VALUES = {"--python": "python", "--strategy": "strategy", "--source": "source", "--index-url": "index_url",
              "--on-conflict": "on_conflict", "--format": "fmt", "-f": "fmt", "-o": "output", "--output": "output",
              "--timeout": "timeout"}
FIX_LISTS = {"--pin": "pin", "--rules": "rules"}
FIX_FLAGS = {"--apply": "apply", "--cpu": "cpu", "--allow-torch-change": "allow_torch_change", "--yes": "yes",
             "-y": "yes", "--undo": "undo", "--recover": "recover", "--no-redact": "no_redact"}
FIX_DEFAULTS: dict[str, Any] = {"python": None, "apply": False, "strategy": "auto", "cpu": False, "source": None,
                                "index_url": None, "allow_torch_change": False, "yes": False, "undo": False,
                                "recover": False, "on_conflict": None, "pin": None, "rules": None, "fmt": "text",
                                "output": None, "timeout": 60.0, "no_redact": False}


@dataclass(frozen=True)
class CommandLine:
    """One command's options as click reads them: valued, repeatable and flag spellings, and the defaults."""
    values: dict[str, str]
    lists: dict[str, str]
    flags: dict[str, str]
    defaults: dict[str, Any]


COMMANDS = {"check": CommandLine(CHECK_VALUES, CHECK_LISTS, CHECK_FLAGS, CHECK_DEFAULTS),
            "fix": CommandLine(FIX_VALUES, FIX_LISTS, FIX_FLAGS, FIX_DEFAULTS)}
# click expands these in arguments on Windows (~, variables, wildcards)
_WINDOWS_EXPANDED = ("~", "$", "%", "*", "?", "[")


def parse(args: list[str]) -> Optional[tuple[str, dict[str, Any]]]:
    """(command, its parameters) from `check|fix OPTION...`, or None: the typer app must parse this line."""
    if not args or args[0] not in COMMANDS:
        return None
    if os.name == "nt" and any(c in a for a in args for c in _WINDOWS_EXPANDED):
        return None
    if any(k.startswith("_") and k.endswith("_COMPLETE") for k in os.environ):  # a shell-completion request
        return None
    spec = COMMANDS[args[0]]
    params = dict(spec.defaults)
    rest = args[1:]
    i = 0
    while i < len(rest):
        token = rest[i]
        i += 1
        if token in spec.flags:
            params[spec.flags[token]] = True
            continue
        if token.startswith("--") and "=" in token:
            token, value = token.split("=", 1)
            if token not in spec.values and token not in spec.lists:
                return None
        elif token in spec.values or token in spec.lists:
            if i == len(rest) or rest[i].startswith("-"):
                return None
            value = rest[i]
            i += 1
        else:
            return None
        if token in spec.lists:
            params[spec.lists[token]] = [*(params[spec.lists[token]] or []), value]
        elif spec.values[token] == "timeout":
            try:
                params["timeout"] = float(value)  # as click's FLOAT converts it; a bad number is typer's error
            except ValueError:
                return None
        else:
            params[spec.values[token]] = value  # given twice: the last one, as click does
    return args[0], params


def parse_check(args: list[str]) -> Optional[dict[str, Any]]:
    """check's parameters from `check OPTION...`, or None (the typer app parses it)."""
    parsed = parse(args) if args[:1] == ["check"] else None
    return parsed[1] if parsed else None


def main() -> None:
    command_run.replace_unencodable()
    # Ctrl-C while the command line is read: one line and 130 (the command's own handling starts in run_command)
    command_run.set_sigint(command_run.interrupted_while_starting)
    parsed = parse(sys.argv[1:])
    if parsed is None:
        from envdoctor.cli import main as typer_main

        typer_main()
        return
    command, params = parsed
    try:
        code = command_run.check(**params) if command == "check" else command_run.fix(**params)
    except BrokenPipeError:  # the error line itself met a closed stderr: exit 1, as the typer app does
        command_run.quiet_stdout()
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
