"""The typer app. Thin: parse options, call one command module, map to an exit code.

Exit codes: 0 nothing at error level / fix verified; 1 error-level findings / fix
failed and rolled back; 2 usage or internal error (one line, never a traceback).
"""

from __future__ import annotations

import os
import sys
from typing import Callable, List, Optional

import typer

from envdoctor import __version__
from envdoctor.errors import UsageError

app = typer.Typer(
    name="envdoctor",
    help="Diagnose and fix broken deep-learning Python environments (driver, CUDA, torch, torchvision, mmcv).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

PythonOpt = typer.Option(None, "--python", help="Interpreter or venv/conda prefix to probe (default: the active one).")
RulesOpt = typer.Option(None, "--rules", help="Extra rule-table directory, layered over the shipped tables.")


def _split(values: Optional[List[str]]) -> Optional[list[str]]:
    if not values:
        return None
    return [p for v in values for p in v.split(",") if p.strip()]


def _run(fn: Callable[[], int]) -> None:
    try:
        code = fn()
    except UsageError as exc:
        typer.echo(f"envdoctor: error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("envdoctor: interrupted", err=True)
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except Exception as exc:  # an internal error is still one line (set ENVDOCTOR_DEBUG=1 for the traceback)
        if os.environ.get("ENVDOCTOR_DEBUG"):
            raise
        typer.echo(f"envdoctor: internal error: {type(exc).__name__}: {exc} (ENVDOCTOR_DEBUG=1 shows the "
                   "traceback; please report it)", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


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
    select: Optional[List[str]] = typer.Option(None, "--select", help="Only these rule ids (prefixes, comma-separated)."),
    ignore: Optional[List[str]] = typer.Option(None, "--ignore", help="Skip these rule ids (prefixes, comma-separated)."),
    no_redact: bool = typer.Option(False, "--no-redact", help="Keep home, user and host names and credentials."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds each isolated import may take."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Text: every finding in full, none folded under "
                                 "its cause."),
) -> None:
    """Probe the machine and one Python environment; print findings with their fixes."""
    from envdoctor.commands import check as cmd

    _run(lambda: cmd.run(python, fmt, output, quick, rules or [], _split(select), _split(ignore), no_redact, timeout,
                         verbose=verbose))


@app.command()
def fix(
    python: Optional[str] = PythonOpt,
    apply: bool = typer.Option(False, "--apply", help="Carry out the plan (default: print it, change nothing)."),
    strategy: str = typer.Option("auto", "--strategy", help="auto | wheel | compat"),
    index_url: Optional[str] = typer.Option(None, "--index-url", help="Where wheels come from (a URL, or a local "
                                            "directory of wheels used with --no-index)."),
    allow_torch_change: bool = typer.Option(False, "--allow-torch-change", help="Allow actions that change torch."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    undo: bool = typer.Option(False, "--undo", help="Revert the last applied fix, byte for byte."),
    pin: Optional[List[str]] = typer.Option(None, "--pin", help="Use this version instead of the table's choice, "
                                            "e.g. --pin mmcv==2.1.0 (repeatable)."),
    rules: Optional[List[str]] = RulesOpt,
    fmt: str = typer.Option("text", "--format", "-f", help="text | json (the report with extra.fix)"),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Write the JSON result to this file."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds each isolated import may take."),
) -> None:
    """Plan the repair of the environment; --apply carries it out transactionally, --undo reverts it."""
    from envdoctor.commands import fix as cmd

    _run(lambda: cmd.run(python, apply, strategy, index_url, allow_torch_change, yes, undo, pin or [], rules or [],
                         fmt, output, timeout))


@app.command()
def explain(rule_id: str = typer.Argument(..., metavar="ID"), rules: Optional[List[str]] = RulesOpt) -> None:
    """What a rule checks, why, what it reads and how it is fixed."""
    from envdoctor.commands import explain as cmd

    _run(lambda: cmd.run(rule_id, rules or []))


@app.command("rules")
def rules_(rules: Optional[List[str]] = RulesOpt) -> None:
    """List and validate the rule tables."""
    from envdoctor.commands import rules_cmd as cmd

    _run(lambda: cmd.run(rules or []))


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
    from envdoctor.commands import diff as cmd

    _run(lambda: cmd.run(a, b, python, fmt, output, no_redact, timeout, rules or []))


@app.command()
def inspect(
    file: str = typer.Argument(..., metavar="FILE", help="A compiled extension: .so, .pyd or .dll."),
    python: Optional[str] = typer.Option(None, "--python", help="Resolve against this interpreter's environment."),
    search_dir: Optional[List[str]] = typer.Option(None, "--search-dir",
                                                   help="Extra library/DLL directory (repeatable)."),
    fmt: str = typer.Option("text", "--format", "-f", help="text | json"),
) -> None:
    """Why one compiled extension would not load, read from the binary itself (ELF or PE)."""
    from envdoctor.commands import inspect as cmd

    _run(lambda: cmd.run(file, python, search_dir or [], fmt))


def main() -> None:
    # Windows consoles with a legacy code page cannot print ✓ / ✗ otherwise.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="replace")  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            pass
    app()


if __name__ == "__main__":
    main()
