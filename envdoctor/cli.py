"""The typer app. Thin: parse options, call one command module, map to an exit code.

Exit codes: 0 nothing at error level / fix verified; 1 error-level findings / fix
failed and rolled back; 2 usage or internal error (one line, never a traceback).
"""

from __future__ import annotations

import signal
import sys

from envdoctor.command_run import interrupted_while_starting as _interrupted_while_starting

# Only for the imports below; restored right after them, so importing this module leaves no trace.
try:
    _previous_sigint = signal.signal(signal.SIGINT, _interrupted_while_starting)
except ValueError:  # not the main thread (imported by a test or an embedding program)
    _previous_sigint = None

from types import ModuleType  # noqa: E402
from typing import Callable, List, Optional  # noqa: E402

import typer  # noqa: E402

from envdoctor import __version__, command_run  # noqa: E402
from envdoctor.command_run import quiet_stdout as _quiet_stdout  # noqa: E402
from envdoctor.command_run import run_command  # noqa: E402
from envdoctor.command_run import set_sigint as _set_sigint  # noqa: E402
from envdoctor.options import (  # noqa: E402
    DiffOptions, InspectOptions, positive_timeout)

if _previous_sigint is not None:
    signal.signal(signal.SIGINT, _previous_sigint)

app = typer.Typer(
    name="envdoctor",
    help="Diagnose and fix broken deep-learning Python environments (driver, CUDA, torch, torchvision, mmcv).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

PythonOpt = typer.Option(None, "--python", help="Interpreter or venv/conda prefix to probe (default: the active one).")
RulesOpt = typer.Option(None, "--rules", help="Extra rule-table directory, layered over the shipped tables.")


def _run(command: str, fn: Callable[[ModuleType], int]) -> None:
    """Import envdoctor.commands.COMMAND and call fn(module); errors become one line (command_run)."""
    raise typer.Exit(run_command(command, fn, passthrough=(typer.Exit,)))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"envdoctor {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    pass


@app.command()
def check(
    python: Optional[str] = PythonOpt,
    fmt: str = typer.Option("text", "--format", "-f", help="text | json | markdown"),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Write the report to this file."),
    quick: bool = typer.Option(False, "--quick", help="Static facts only: import nothing heavy."),
    rules: Optional[List[str]] = RulesOpt,
    select: Optional[List[str]] = typer.Option(None, "--select",
                                               help="Only these rule ids (prefixes, comma-separated)."),
    ignore: Optional[List[str]] = typer.Option(None, "--ignore",
                                               help="Skip these rule ids (prefixes, comma-separated)."),
    no_redact: bool = typer.Option(False, "--no-redact", help="Keep home, user and host names and credentials."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds each isolated import may take."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Text: every finding in full, none folded under "
                                 "its cause."),
    fleet_member: Optional[str] = typer.Option(None, "--fleet-member", metavar="RUN",
                                               help="Run as one node of `envdoctor fleet run`: write the report "
                                               "as tagged records for run RUN."),
    no_fork: bool = typer.Option(False, "--no-fork", help="Each import probe in its own process (as on Windows "
                                 "and macOS), as many at once as free memory allows."),
) -> None:
    """Probe the machine and one Python environment; print findings with their fixes."""
    raise typer.Exit(command_run.check(python, fmt, output, quick, rules, select, ignore, no_redact, timeout,
                                       verbose, fleet_member, no_fork, passthrough=(typer.Exit,)))


@app.command()
def fix(
    python: Optional[str] = PythonOpt,
    apply: bool = typer.Option(False, "--apply", help="Carry out the plan (default: print it, change nothing)."),
    strategy: str = typer.Option("auto", "--strategy", help="auto | wheel | compat | build (compile mmcv's ops "
                                 "for this torch; never chosen by auto)"),
    cpu: bool = typer.Option(False, "--cpu", help="--strategy build: compile CPU kernels only (no nvcc needed)."),
    source: Optional[str] = typer.Option(None, "--source", metavar="DIR|FILE", help="--strategy build: build "
                                         "from this source checkout or sdist instead of the index's sdist."),
    index_url: Optional[str] = typer.Option(None, "--index-url", help="Where wheels come from (a URL, or a local "
                                            "directory of wheels used with --no-index)."),
    allow_torch_change: bool = typer.Option(False, "--allow-torch-change", help="Allow actions that change torch."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    undo: bool = typer.Option(False, "--undo", help="Revert the last applied fix, byte for byte."),
    recover: bool = typer.Option(False, "--recover", help="Roll back what an interrupted fix wrote (only that)."),
    on_conflict: Optional[str] = typer.Option(None, "--on-conflict", help="keep | restore: a path the interrupted "
                                              "fix wrote and you changed since: keep yours, or restore the backup."),
    pin: Optional[List[str]] = typer.Option(None, "--pin", help="Use this version instead of the table's choice, "
                                            "e.g. --pin mmcv==2.1.0 (repeatable)."),
    rules: Optional[List[str]] = RulesOpt,
    fmt: str = typer.Option("text", "--format", "-f", help="text | json (the report with its `fix` field)"),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Write the JSON result to this file."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds each isolated import may take."),
    no_redact: bool = typer.Option(False, "--no-redact", help="Keep home, user and host names and credentials "
                                   "in fix's output."),
) -> None:
    """Plan the repair of the environment; --apply carries it out transactionally, --undo reverts it."""
    raise typer.Exit(command_run.fix(python, apply, strategy, cpu, source, index_url, allow_torch_change, yes, undo,
                                     recover, on_conflict, pin, rules, fmt, output, timeout, no_redact,
                                     passthrough=(typer.Exit,)))


@app.command()
def explain(rule_id: str = typer.Argument(..., metavar="ID"), rules: Optional[List[str]] = RulesOpt) -> None:
    """What a rule checks, why, what it reads and how it is fixed."""
    _run("explain", lambda cmd: cmd.run(rule_id, rules or []))


@app.command("rules")
def rules_(rules: Optional[List[str]] = RulesOpt) -> None:
    """List and validate the rule tables."""
    _run("rules_cmd", lambda cmd: cmd.run(rules or []))


@app.command()
def diff(
    a: str = typer.Argument(..., metavar="A.json", help="A report (JSON, or the Markdown of --format markdown)."),
    b: Optional[str] = typer.Argument(None, metavar="[B.json]", help="Default: a fresh probe of this environment."),
    python: Optional[str] = PythonOpt,
    fmt: str = typer.Option("text", "--format", "-f", help="text | json"),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Write the diff to this file."),
    rules: Optional[List[str]] = RulesOpt,
    no_redact: bool = typer.Option(False, "--no-redact", help="Compare without redacting either side."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds each isolated import may take (fresh probe)."),
) -> None:
    """What differs between two reports, most important first; exit 1 if B is worse than A."""
    _run("diff", lambda cmd: cmd.run(DiffOptions(a=a, b=b, python=python, fmt=fmt, output=output, no_redact=no_redact,
                                                 timeout=positive_timeout(timeout), rules_dirs=rules or [])))


@app.command()
def inspect(
    file: str = typer.Argument(..., metavar="FILE", help="A compiled extension: .so, .pyd or .dll."),
    python: Optional[str] = typer.Option(None, "--python", help="Resolve against this interpreter's environment."),
    search_dir: Optional[List[str]] = typer.Option(None, "--search-dir",
                                                   help="Extra library/DLL directory (repeatable)."),
    fmt: str = typer.Option("text", "--format", "-f", help="text | json"),
    no_redact: bool = typer.Option(False, "--no-redact", help="Keep home, user and host names in paths."),
) -> None:
    """Why one compiled extension would not load, read from the binary itself (ELF or PE)."""
    _run("inspect", lambda cmd: cmd.run(InspectOptions(file=file, python=python, search_dirs=search_dir or [],
                                                       fmt=fmt, no_redact=no_redact)))


from envdoctor.commands.fleet import fleet_app  # noqa: E402

app.add_typer(fleet_app, name="fleet")


def main() -> None:
    command_run.replace_unencodable()
    try:
        from typer._click import exceptions as click_exceptions  # typer >= 0.20 vendors click
    except ImportError:  # pragma: no cover - older typer uses click itself
        from click import exceptions as click_exceptions  # type: ignore[no-redef]
    # Ctrl-C while typer parses the command line would otherwise end silently with 130.
    _set_sigint(_interrupted_while_starting)
    try:
        code = app(standalone_mode=False)
    except click_exceptions.ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `envdoctor` alone: the help, as before
            exc.show()
            sys.exit(exc.exit_code)
        # a bad option or argument: one line naming it, not click's usage box
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "envdoctor"
        typer.echo(f"envdoctor: error: {exc.format_message()} (see '{where} --help')", err=True)
        code = exc.exit_code
    except typer.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # click turns a late Ctrl-C into Abort
            typer.echo("envdoctor: interrupted", err=True)
            code = 130
        else:
            typer.echo("envdoctor: aborted", err=True)
            code = 1
    except BrokenPipeError:  # --help or --version into a closed pipe
        _quiet_stdout()
        code = 1
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
