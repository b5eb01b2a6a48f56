"""ED503: start-up code of the target Python (.pth lines, sitecustomize, usercustomize) that raises at every run."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterable

from envdoctor.checks import Rule, check, finding
from envdoctor.facts import Finding, Fix, Report

if TYPE_CHECKING:
    from envdoctor.rules import Tables

STARTUP = Rule(
    id="ED503", name="python-startup-code-fails", severity="warning", component="python",
    summary="A .pth line or sitecustomize/usercustomize raises every time this Python starts.",
    rationale="At start-up site.py runs every line of the site directories' .pth files that begins with "
    "`import`, then imports sitecustomize and usercustomize. An exception there does not stop Python: it prints "
    "'Error processing line N of X.pth' (and ignores the rest of that file) or 'Error in sitecustomize', on "
    "every run of every script, and whatever that code was meant to set up (an editable install, a path hook, "
    "envdoctor's own compat hook) is silently missing.",
    evidence=("python.startup.stderr", "python.startup.pth_exec", "python.startup.sitecustomize"),
    fixes=("repair or remove the failing line (renaming a .pth file to anything not ending in .pth disables it)",
           "repair or remove sitecustomize.py / usercustomize.py"),
)

_PTH_ERROR = re.compile(r"^Error processing line (\d+) of (.+?):\s*$", re.M)
_CUSTOMIZE_ERROR = re.compile(r"^Error in (sitecustomize|usercustomize); set PYTHONVERBOSE for traceback:\n(.*)$", re.M)


def _exception_after(text: str, start: int) -> str:
    """The exception line of the traceback site.py printed after `start` (its last indented line)."""
    block = text[start:].split("Remainder of file ignored", 1)[0]
    lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _disable(path: str) -> str:
    quoted = f'"{path}"' if " " in path else path
    quoted_off = f'"{path}.disabled"' if " " in path else f"{path}.disabled"
    return f"mv {quoted} {quoted_off}"


@check(STARTUP)
def startup_code_fails(report: Report, tables: Tables) -> Iterable[Finding]:
    startup = report.python.startup if isinstance(report.python.startup, dict) else {}
    text = startup.get("stderr")
    if not isinstance(text, str) or not text.strip():
        return
    pth_lines = {(e.get("path"), e.get("line")): e.get("text") for e in startup.get("pth_exec") or []
                 if isinstance(e, dict)}
    seen = set()
    for m in _PTH_ERROR.finditer(text):
        line, path = int(m.group(1)), m.group(2)
        if (path, line) in seen:  # a venv's lib64 -> lib link makes site.py read the same file twice
            continue
        seen.add((path, line))
        error = _exception_after(text, m.end())
        code = pth_lines.get((path, line))
        yield finding(STARTUP, f"line {line} of {path} raises at every start of this Python: {error}",
                      detail=(f"The line is `{code}`. " if code else "")
                      + "site.py prints the traceback on every run and ignores the rest of the file.",
                      evidence={"file": path, "line": line, "error": error, "code": code},
                      fixes=[Fix(description=f"repair or delete line {line} of {path}, or disable the whole file "
                                             "(nothing ending in .pth is read)", commands=[_disable(path)])])
    for m in _CUSTOMIZE_ERROR.finditer(text):
        module, error = m.group(1), m.group(2).strip()
        entry = startup.get(module)
        info: dict[str, Any] = entry if isinstance(entry, dict) else {}
        path = info.get("path") or f"{module}.py"
        yield finding(STARTUP, f"{module} ({path}) raises at every start of this Python: {error}",
                      detail=f"site.py prints 'Error in {module}' on every run; whatever {module} sets up is missing.",
                      evidence={"file": path, "module": module, "error": error},
                      fixes=[Fix(description=f"repair {path}, or move it out of the way",
                                 commands=[_disable(path)] if info.get("path") else [])])
