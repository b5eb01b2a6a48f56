"""Run one command module and turn what it raises into an exit code and one line on stderr.

Shared by cli.py and the `fleet` sub-app (commands/fleet.py). Exit codes: the command's own; 2 a usage
or internal error (one line, never a traceback; ENVDOCTOR_DEBUG=1 shows it); 130 interrupted; 1 a
closed stdout (as rich does).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from types import ModuleType
from typing import Callable

import typer

from envdoctor.errors import UsageError


def set_sigint(handler: "Callable[..., object] | signal.Handlers") -> None:
    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        pass


def quiet_stdout() -> None:
    # The reader went away (`envdoctor check | head -1`): point stdout at /dev/null so the
    # interpreter's final flush does not print "Exception ignored ... BrokenPipeError".
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def scrub(message: str) -> str:
    # an error line quotes paths, URLs and messages: its secrets go (home, user and host stay, to be useful)
    try:
        from envdoctor.redact_secrets import scrub as scrub_secrets

        return scrub_secrets(message)
    except Exception:  # noqa: BLE001 - the error line itself must always be printed
        return message


def run_command(command: str, fn: Callable[[ModuleType], int]) -> None:
    """Import envdoctor.commands.COMMAND and call fn(module); errors become one line."""
    try:
        # From here on Ctrl-C is a KeyboardInterrupt again, so probes, locks and temp files clean up.
        set_sigint(signal.default_int_handler)
        # imported in here so that Ctrl-C during the import is also one line and 130
        code = fn(importlib.import_module(f"envdoctor.commands.{command}"))
        # The command has written its output and cleaned up: a Ctrl-C from here on is too late to stop
        # anything, and the interpreter's shutdown would turn it into a bare death by SIGINT (exit -2, no
        # message). Ignore it, so the exit code is the command's answer. SIG_IGN survives finalization.
        set_sigint(signal.SIG_IGN)
    except UsageError as exc:
        typer.echo(f"envdoctor: error: {scrub(str(exc))}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        set_sigint(signal.SIG_IGN)  # cleanup is done: a second Ctrl-C must not turn 130 into a death by SIGINT
        typer.echo("envdoctor: interrupted", err=True)
        raise typer.Exit(130) from None
    except BrokenPipeError:
        # exit 1 like rich does when its own print meets a closed pipe, so every command behaves alike
        quiet_stdout()
        raise typer.Exit(1) from None
    except typer.Exit:
        raise
    except Exception as exc:  # an internal error is still one line (set ENVDOCTOR_DEBUG=1 for the traceback)
        if os.environ.get("ENVDOCTOR_DEBUG"):
            raise
        typer.echo(f"envdoctor: internal error: {type(exc).__name__}: {scrub(str(exc))} (ENVDOCTOR_DEBUG=1 shows the "
                   "traceback; please report it)", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)
