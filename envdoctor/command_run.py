"""Running one command module: its errors become one line on stderr and an exit code.

Free of typer and rich, so that the entry's own `check` path (envdoctor/entry.py) and the typer app
(cli.py) run a command the same way, with the same messages and exit codes: 2 usage or internal
error, 130 interrupted, 1 a closed stdout, else the command's own code.
"""

from __future__ import annotations

import codecs
import importlib
import os
import re
import signal
import sys
from types import ModuleType
from typing import Callable, List, Optional

from envdoctor.errors import UsageError

# what click's echo removes from a line written to a stream that is not a terminal
_ANSI = re.compile(r"\033\[[;?0-9]*[a-zA-Z]")


def interrupted_while_starting(signum: int, frame: object) -> None:
    # Ctrl-C while the CLI's own modules import or parse the command line: one line, not a traceback.
    sys.stderr.write("envdoctor: interrupted\n")
    os._exit(130)


def set_sigint(handler: "Callable[..., object] | signal.Handlers") -> None:
    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        pass


def replace_unencodable() -> None:
    """Windows consoles with a legacy code page cannot print ✓ / ✗ otherwise: such characters become '?'."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="replace")  # type: ignore[union-attr]
        except (AttributeError, ValueError):
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


def error_line(text: str) -> None:
    """One line on stderr, written as typer.echo(text, err=True) writes it."""
    stream = sys.stderr
    if stream is None:
        return
    line = text + "\n"
    try:
        tty = stream.isatty()
    except (OSError, ValueError, AttributeError):
        tty = False
    if not tty:
        line = _ANSI.sub("", line)
    buffer = getattr(stream, "buffer", None)
    if buffer is not None and _is_ascii(getattr(stream, "encoding", None) or "ascii"):
        # click writes UTF-8 (errors replaced) under an ASCII stream, e.g. PYTHONIOENCODING=ascii
        stream.flush()
        buffer.write(line.encode("utf-8", "replace"))
        buffer.flush()
        return
    stream.write(line)
    stream.flush()


def _is_ascii(encoding: str) -> bool:
    try:
        return codecs.lookup(encoding).name == "ascii"
    except LookupError:
        return False


def run_command(command: str, fn: Callable[[ModuleType], int],
                passthrough: tuple[type[BaseException], ...] = ()) -> int:
    """Import envdoctor.commands.COMMAND, call fn(module) and return its exit code; errors become one line.

    `passthrough`: exceptions raised again as they are (the typer app's own Exit)."""
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
        error_line(f"envdoctor: error: {scrub(str(exc))}")
        return 2
    except KeyboardInterrupt:
        set_sigint(signal.SIG_IGN)  # cleanup is done: a second Ctrl-C must not turn 130 into a death by SIGINT
        error_line("envdoctor: interrupted")
        return 130
    except BrokenPipeError:
        # exit 1 like rich does when its own print meets a closed pipe, so every command behaves alike
        quiet_stdout()
        return 1
    except passthrough:
        raise
    except Exception as exc:  # an internal error is still one line (set ENVDOCTOR_DEBUG=1 for the traceback)
        if os.environ.get("ENVDOCTOR_DEBUG"):
            raise
        error_line(f"envdoctor: internal error: {type(exc).__name__}: {scrub(str(exc))} (ENVDOCTOR_DEBUG=1 shows "
                   "the traceback; please report it)")
        return 2
    return code


def check(python: Optional[str], fmt: str, output: Optional[str], quick: bool, rules: Optional[List[str]],
          select: Optional[List[str]], ignore: Optional[List[str]], no_redact: bool, timeout: float,
          verbose: bool, fleet_member: Optional[str], no_fork: bool,
          passthrough: tuple[type[BaseException], ...] = ()) -> int:
    """`envdoctor check` with its options as parsed: the one call both the entry and the typer app make."""
    from envdoctor.options import CheckOptions, positive_timeout, split_ids

    return run_command("check", lambda cmd: cmd.run(CheckOptions(
        python=python, fmt=fmt, output=output, quick=quick, rules_dirs=rules or [], select=split_ids(select),
        ignore=split_ids(ignore), no_redact=no_redact, timeout=positive_timeout(timeout), verbose=verbose,
        fleet_member=fleet_member, no_fork=no_fork)), passthrough)


def fix(python: Optional[str], apply: bool, strategy: str, cpu: bool, source: Optional[str], index_url: Optional[str],
        allow_torch_change: bool, yes: bool, undo: bool, recover: bool, on_conflict: Optional[str],
        pin: Optional[List[str]], rules: Optional[List[str]], fmt: str, output: Optional[str], timeout: float,
        no_redact: bool, passthrough: tuple[type[BaseException], ...] = ()) -> int:
    """`envdoctor fix` with its options as parsed: the one call both the entry and the typer app make."""
    from envdoctor.options import FixOptions, positive_timeout

    return run_command("fix", lambda cmd: cmd.run(FixOptions(
        python=python, apply=apply, strategy=strategy, index_url=index_url, allow_torch_change=allow_torch_change,
        yes=yes, undo=undo, recover=recover, on_conflict=on_conflict, pins=pin or [], rules_dirs=rules or [],
        fmt=fmt, output=output, timeout=positive_timeout(timeout), no_redact=no_redact, cpu=cpu, source=source)),
        passthrough)
