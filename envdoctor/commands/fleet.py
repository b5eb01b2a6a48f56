"""`envdoctor fleet run|summarize|diff`: one check per node through the cluster's own launcher, compared.

The typer sub-app lives here (cli.py registers it); everything heavy is imported inside the
commands, so `envdoctor check` does not pay for this module.
"""

from __future__ import annotations

import json
import shlex
import sys
from typing import IO, TYPE_CHECKING, Any, List, Optional

import typer

fleet_app = typer.Typer(help="Check every node of a cluster through its launcher (srun, pdsh, mpirun, kubectl, "
                        "Ray) and compare them.", no_args_is_help=True)
FORMATS = ("text", "json", "markdown")

if TYPE_CHECKING:
    from envdoctor.options import FleetRunOptions


def _run(fn: Any) -> None:
    from envdoctor.command_run import run_command

    raise typer.Exit(run_command("fleet", fn, passthrough=(typer.Exit,)))


@fleet_app.command("run", context_settings={"allow_interspersed_args": False})
def run_cmd(
    launcher: List[str] = typer.Argument(..., metavar="-- LAUNCHER...", help="The launcher command; envdoctor "
                                         "appends `envdoctor check --format json --fleet-member RUN ...`."),
    python: Optional[str] = typer.Option(None, "--python", help="Interpreter to probe on every node (pdsh -R exec "
                                         "replaces %h in it)."),
    quick: bool = typer.Option(False, "--quick", help="Static facts only on every node."),
    rules: Optional[List[str]] = typer.Option(None, "--rules", help="Extra rule directory (must exist on the nodes)."),
    select: Optional[List[str]] = typer.Option(None, "--select", help="Only these rule ids."),
    ignore: Optional[List[str]] = typer.Option(None, "--ignore", help="Skip these rule ids."),
    no_redact: bool = typer.Option(False, "--no-redact", help="Real node names, and unredacted member reports."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds each isolated import may take on a node."),
    member_command: str = typer.Option("envdoctor", "--member-command", help="How to start envdoctor on the nodes "
                                       "(e.g. '/shared/venv/bin/envdoctor' or 'python3 -m envdoctor')."),
    fleet_timeout: Optional[float] = typer.Option(None, "--fleet-timeout", help="Stop the launcher after this many "
                                                  "seconds; unfinished nodes are reported as timeouts."),
    expect: Optional[str] = typer.Option(None, "--expect", help="Hosts that must report (node[01-64]); default: "
                                         "the launcher's -w/--nodelist, else the tasks' own count."),
    names: Optional[str] = typer.Option(None, "--names", help="Keep the node-name pseudonyms in this local file "
                                        "(read and updated; stable across runs) instead of printing them."),
    fmt: str = typer.Option("text", "--format", "-f", help="text | json | markdown"),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Write the summary to this file."),
) -> None:
    """Run `LAUNCHER... envdoctor check --fleet-member` once and summarize the nodes' reports."""
    from envdoctor.options import FleetRunOptions

    _run(lambda cmd: cmd.run(FleetRunOptions(
        launcher=launcher, python=python, quick=quick, rules_dirs=rules or [], select=select or [],
        ignore=ignore or [], no_redact=no_redact, timeout=timeout, member_command=member_command,
        fleet_timeout=fleet_timeout, expect=expect, names=names, fmt=fmt, output=output)))


@fleet_app.command("summarize")
def summarize_cmd(
    inputs: List[str] = typer.Argument(..., metavar="REPORTS...|DIR|-", help="Reports (`check --format json`), "
                                       "launcher logs with fleet records, directories of them, or - for stdin."),
    no_redact: bool = typer.Option(False, "--no-redact", help="Show real node names."),
    names: Optional[str] = typer.Option(None, "--names", help="Local pseudonym file (read and updated)."),
    fmt: str = typer.Option("text", "--format", "-f", help="text | json | markdown"),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Write the summary to this file."),
) -> None:
    """Summarize reports gathered any other way (a shared directory, a CI artifact)."""
    _run(lambda cmd: cmd.summarize(inputs, no_redact, names, fmt, output))


@fleet_app.command("diff")
def diff_cmd(
    a: str = typer.Argument(..., metavar="A.json", help="A fleet summary (`fleet ... --format json`)."),
    b: str = typer.Argument(..., metavar="B.json", help="A later fleet summary."),
    fmt: str = typer.Option("text", "--format", "-f", help="text | json"),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Write the diff to this file."),
) -> None:
    """What changed between two fleet summaries, node by node; exit 1 if B is worse."""
    _run(lambda cmd: cmd.diff(a, b, fmt, output))


def _check_format(fmt: str, allowed: tuple[str, ...] = FORMATS) -> None:
    from envdoctor.render.formats import check_format

    check_format(fmt, allowed)


def member_argv(member_command: str, run_id: str, python: Optional[str], quick: bool, rules: list[str],
                select: list[str], ignore: list[str], no_redact: bool, timeout: float) -> list[str]:
    from envdoctor.errors import UsageError

    try:
        argv = shlex.split(member_command)
    except ValueError as exc:
        raise UsageError(f"--member-command {member_command!r}: {exc}") from None
    if not argv:
        raise UsageError("--member-command is empty")
    argv += ["check", "--format", "json", "--fleet-member", run_id, "--timeout", f"{timeout:g}"]
    if python:
        argv += ["--python", python]
    if quick:
        argv.append("--quick")
    if no_redact:
        argv.append("--no-redact")
    for opt, values in (("--rules", rules), ("--select", select), ("--ignore", ignore)):
        for v in values:
            argv += [opt, v]
    return argv


def run(opts: "FleetRunOptions") -> int:
    import secrets

    from envdoctor.options import positive_timeout, split_ids
    from envdoctor.errors import UsageError
    from envdoctor.fleet import hostlist
    from envdoctor.fleet.collect import run_launcher

    launcher, python, quick, rules, no_redact, timeout = (opts.launcher, opts.python, opts.quick, opts.rules_dirs,
                                                          opts.no_redact, opts.timeout)
    fleet_timeout, expect, names, fmt, output = opts.fleet_timeout, opts.expect, opts.names, opts.fmt, opts.output
    _check_format(fmt)
    sel, ign = split_ids(opts.select) or [], split_ids(opts.ignore) or []
    if output or sel or ign:
        # imported only when needed: `check`'s module loads every check, a quarter second before the launcher starts
        from envdoctor.pipeline import check_selectors
        from envdoctor.render.formats import check_output_path

        check_output_path(output)
        check_selectors("--select", sel)
        check_selectors("--ignore", ign)
    if not launcher:
        raise UsageError("give the launcher after --, e.g. `envdoctor fleet run -- srun -N 4 --ntasks-per-node=1`")
    positive_timeout(timeout)
    if fleet_timeout is not None and not (fleet_timeout > 0 and fleet_timeout != float("inf")):
        raise UsageError(f"--fleet-timeout {fleet_timeout:g}: give a positive number of seconds")
    try:
        hosts = hostlist.expand(expect) if expect else hostlist.from_launcher(launcher)
    except ValueError as exc:
        raise UsageError(f"--expect {expect}: {exc}") from None
    run_id = secrets.token_hex(6)
    argv = list(launcher) + member_argv(opts.member_command, run_id, python, quick, rules, sel, ign, no_redact, timeout)
    if sys.stderr.isatty():  # a spinner on stderr while the nodes run, only on a terminal
        from rich.console import Console

        with Console(stderr=True).status(f"fleet: started {argv[0]}, waiting for the nodes") as status:
            collected = run_launcher(argv, run_id, fleet_timeout, hosts, progress=lambda done, started: status.update(
                f"fleet: {done} node(s) reported, {started - done} still checking"))
    else:
        collected = run_launcher(argv, run_id, fleet_timeout, hosts)
    return _finish(collected, no_redact, names, fmt, output)


def summarize(inputs: list[str], no_redact: bool, names: Optional[str], fmt: str, output: Optional[str]) -> int:
    from envdoctor.render.formats import check_output_path
    from envdoctor.fleet.collect import from_files

    _check_format(fmt)
    check_output_path(output)
    return _finish(from_files(inputs), no_redact, names, fmt, output)


def _finish(collected: Any, no_redact: bool, names_file: Optional[str], fmt: str, output: Optional[str]) -> int:
    from envdoctor.fleet.names import Pseudonyms
    from envdoctor.fleet.summary import build

    pseudonyms = None if no_redact else Pseudonyms(names_file)
    summary = build(collected, pseudonyms)
    data = summary.to_dict()
    if pseudonyms is not None:
        if names_file:
            pseudonyms.save()
            if pseudonyms.new:
                print(f"envdoctor: {len(pseudonyms.new)} new node pseudonym(s) saved in {names_file}", file=sys.stderr)
        else:
            # the mapping stays on this machine: stderr, never the summary
            for line in pseudonyms.lines():
                print(f"envdoctor: node name {line}", file=sys.stderr)
    _emit(data, fmt, output, "summary")
    return summary.exit_code


def emit(text: str, output: Optional[str]) -> None:
    if output:
        with _open(output) as f:
            f.write(text)
    else:
        sys.stdout.write(text)


def _emit(data: dict[str, Any], fmt: str, output: Optional[str], kind: str) -> None:
    if fmt == "json":
        emit(json.dumps(data, indent=1, ensure_ascii=False) + "\n", output)
    elif fmt == "markdown":
        from envdoctor.render.fleet_markdown import render_fleet_markdown

        emit(render_fleet_markdown(data), output)
    else:
        from envdoctor.render import fleet_text

        render = fleet_text.render_fleet_text if kind == "summary" else fleet_text.render_fleet_diff_text
        if output:
            with _open(output) as f:
                render(data, f, color=False)
        else:
            render(data)


def _open(output: str) -> IO[str]:
    from envdoctor.errors import UsageError

    try:
        return open(output, "w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"-o {output}: {exc.strerror or exc}") from None


def diff(a: str, b: str, fmt: str, output: Optional[str]) -> int:
    from pathlib import Path

    from envdoctor.render.formats import check_output_path
    from envdoctor.errors import ReportError
    from envdoctor.fleet.rollout import diff_summaries
    from envdoctor.fleet.summary import load_summary

    _check_format(fmt, ("text", "json"))
    check_output_path(output)
    loaded = []
    for path in (a, b):
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
        except OSError as exc:
            raise ReportError(f"cannot read {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ReportError(f"{path} is not an envdoctor fleet summary (not JSON: {exc})") from None
        loaded.append(load_summary(data, path))
    result = diff_summaries(loaded[0], loaded[1], a, b).to_dict()
    _emit(result, fmt, output, "diff")
    return 1 if result["worse"] else 0
