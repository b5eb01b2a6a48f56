"""Markdown for issue trackers: a compact summary, then the full JSON report in a <details> block.

GitHub refuses an issue body or comment over 65,536 characters. The whole output is
kept under ``BUDGET`` (leaving room for the user's own words): when the JSON is too
large, its bulkiest parts are trimmed step by step (tracebacks, then the package
list), the JSON stays a valid report, and both the block and its ``trimmed`` field say
what was cut. Everything outside code blocks is escaped, so a path like ``<user>``
or a message with ``|`` or ``__init__`` shows as written.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any, Callable, Optional

from envdoctor.facts import Component, Report
from envdoctor.render.text import blocks

GITHUB_LIMIT = 65536
BUDGET = 60000
TRACEBACK_LINES = 12

# Packages that stay in full when the package list is trimmed: what the checks judge.
_KEEP_PACKAGE = re.compile(r"^(torch.*|mmcv.*|mmengine|mmdet.*|mmseg.*|mmpose|mmagic|mmedit|mmocr|mmyolo|mmpretrain"
                           r"|mmcls|mmaction2|openmim|nvidia-.*|triton|numpy|pip|setuptools|wheel|opencv.*"
                           r"|envdoctor|xformers|cupy.*|onnxruntime.*)$")
_MD_SPECIAL = re.compile(r"([\\`*\[\]|#~])")
# An underscore inside a word (x86_64, __init__'s middle) is no emphasis in GFM; at a word edge it may be.
_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
STATUS_MARK = {"ok": "✅", "missing": "➖", "skipped": "➖", "import_error": "❌", "crash": "❌", "timeout": "❌",
               "error": "❌"}
SEVERITY_MARK = {"error": "❌", "warning": "⚠️", "info": "ℹ️"}
ROWS = ("torch", "torchvision", "torchvision.ops", "mmcv", "mmcv._ext")


def text(s: Any) -> str:
    """Plain text safe in a Markdown table cell or list item (no HTML, no emphasis, one line)."""
    s = re.sub(r"\s+", " ", str(s))
    s = _MD_SPECIAL.sub(r"\\\1", s)
    s = _UNDERSCORE.sub(r"\\_", s)
    return s.replace("<", "&lt;").replace(">", "&gt;")


def inline(s: Any, table: bool = False) -> str:
    """Text in which `backticked` parts stay code spans (check titles are written that way)."""
    parts = re.split(r"(`[^`]+`)", " ".join(str(s).split()))
    return "".join(code(p[1:-1], table) if p.startswith("`") and p.endswith("`") and len(p) > 1 else text(p)
                   for p in parts)


def code(s: Any, table: bool = True) -> str:
    """An inline code span that survives any content (backticks, newlines; pipes in a table cell)."""
    s = " ".join(str(s).split())
    longest = max((len(run) for run in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s else ""
    if table:  # GFM splits cells on | before it parses code spans
        s = s.replace("|", "\\|")
    return f"{fence}{pad}{s}{pad}{fence}"


def _first_line(s: Optional[str], width: int = 160) -> str:
    lines = (s or "").strip().splitlines()
    first = lines[0] if lines else ""
    return first if len(first) <= width else first[: width - 1] + "…"


def _load_cell(comp: Component) -> str:
    load = comp.load
    if load is None:
        return ""
    if load.status == "missing" and not comp.installed:
        return "➖ not installed"
    if load.status == "skipped":
        return "➖ not imported"
    mark = STATUS_MARK.get(load.status, "")
    if load.status == "ok":
        return f"{mark} imports" + (f" ({load.seconds:.2f} s)" if load.seconds is not None else "")
    msg = _first_line(load.error.message if load.error else "")
    cause = f" ({text(load.cause)})" if load.cause else ""
    return f"{mark} {text(load.status)}{cause}" + (f": {code(msg)}" if msg else "")


def _version_cell(name: str, comp: Component) -> str:
    if not comp.installed and not comp.version:
        return "–"
    out = code(comp.version or "?")
    if comp.distribution and comp.distribution != name.split(".")[0]:
        out += f" ({text(comp.distribution)})"
    if name == "torch":
        cuda = (comp.facts.get("version_py") or {}).get("cuda")
        out += f", CUDA {code(cuda)}" if cuda else ", CPU-only"
    return out


def summary(report: Report) -> list[str]:
    py, g, tk, h = report.python, report.gpu, report.cuda_toolkit, report.host
    n_err = sum(f.severity == "error" for f in report.findings)
    n_warn = sum(f.severity == "warning" for f in report.findings)
    verdict = "no problems found" if not report.findings else f"{n_err} error(s), {n_warn} warning(s)"
    env = "conda" if py.conda_prefix else ("venv" if py.is_venv else "system")
    lines = [
        f"### envdoctor report: {verdict}",
        "",
        f"envdoctor {text(report.envdoctor)} · {text(report.created)} · {text(report.mode)} probe",
        "",
        "| | version | status |",
        "|---|---|---|",
        f"| OS | {text(' '.join(x for x in (h.os, h.os_version, h.arch) if x))}"
        + (f", glibc {code(h.glibc)}" if h.glibc else "") + " | |",
    ]
    if report.mode == "quick":
        lines.append("| NVIDIA driver | not probed (--quick) | |")
    elif g.source == "none":
        lines.append(f"| NVIDIA driver | none found | {text('; '.join(g.notes)[:200])} |")
    else:
        devs = ", ".join(f"{text(d.name)} (sm {text(d.compute_capability or '?')})" for d in g.devices)
        lines.append(f"| NVIDIA driver | {code(g.driver_version or '?')}, CUDA {code(g.cuda_driver_version or '?')}"
                     f" | {text(g.source)}; {devs or 'no devices'} |")
    if tk.nvcc or tk.cuda_home:
        lines.append(f"| CUDA toolkit | {code(tk.version or '?')} | {code(tk.cuda_home or tk.nvcc or '')} |")
    lines.append(f"| Python | {code(py.version)} {text(py.implementation)} ({text(py.abi_tag or '?')}, "
                 f"{text(py.platform_tag or '?')}) | {env}: {code(py.executable)} |")
    names = [n for n in ROWS if n in report.components] + sorted(set(report.components) - set(ROWS))
    for name in names:
        comp = report.components[name]
        lines.append(f"| {text(name)} | {_version_cell(name, comp)} | {_load_cell(comp)} |")
    for err in report.probe_errors:
        lines.append(f"| probe | incomplete | {text(_first_line(err))} |")
    lines += ["", "**Findings**", ""]
    if not report.findings:
        lines.append("None.")
    # one item per root cause (Finding.explained_by, set by the checks); what it explains is nested under it,
    # one line each; a fix command already shown is not shown again
    shown: set[str] = set()
    for b in blocks(report.findings):
        f = b.primary
        lines.append(f"- {SEVERITY_MARK.get(f.severity, '')} **{text(f.id)}** {inline(f.title)}")
        if f.fixes:
            fix = f.fixes[0]
            cmd = fix.commands[0] if fix.commands else None
            again = cmd is not None and cmd in shown
            shown.update(fix.commands[:1])
            lines.append(f"  fix: {text(_first_line(fix.description, 200))}"
                         + (" (the command above)" if again else f" {code(cmd, table=False)}" if cmd else ""))
        for x in b.folded:
            lines.append(f"  - also: {SEVERITY_MARK.get(x.severity, '')} **{text(x.id)}** "
                         f"{inline(_first_line(x.title, 200))}")
    lines.append("")
    if report.redactions:
        kinds = ", ".join(f"{text(r.kind)} ×{r.count}" for r in report.redactions)
        lines.append(f"Redacted before sharing: {kinds} (values are never listed).")
    elif not report.redacted:
        lines.append("**Not redacted** (`--no-redact`): check the report for personal data before posting it.")
    else:
        lines.append("Redacted before sharing: nothing personal found.")
    return lines


# --- the JSON block ------------------------------------------------------------------------------

def dump(data: dict[str, Any]) -> str:
    """Indented JSON with one package per line: the package list is most of a report."""
    packages = data.get("packages") or {}
    compact = [json.dumps(p, ensure_ascii=False, separators=(",", ":")) for p in packages.values()]
    # each package becomes a marker string (NUL cannot occur unescaped in JSON), then its one-line JSON
    shallow = dict(data, packages={name: f"\x00{i}\x00" for i, name in enumerate(packages)})
    out = json.dumps(shallow, indent=1, ensure_ascii=False)
    return re.sub(r'"\\u0000(\d+)\\u0000"', lambda m: compact[int(m.group(1))], out)


def _tail(s: Optional[str], n: int) -> Optional[str]:
    if not s:
        return s
    lines = s.rstrip("\n").splitlines()
    if len(lines) <= n:
        return s
    return f"[{len(lines) - n} lines trimmed]\n" + "\n".join(lines[-n:]) + "\n"


def _each_traceback(d: dict[str, Any], fn: Callable[[Optional[str]], Optional[str]]) -> int:
    n = 0
    for comp in d.get("components", {}).values():
        err = (comp.get("load") or {}).get("error")
        if err and err.get("traceback"):
            new = fn(err["traceback"])
            n += new != err["traceback"]
            err["traceback"] = new
    for f in d.get("findings", []):
        ev = f.get("evidence") or {}
        for key in [k for k in ev if "traceback" in k.lower() and isinstance(ev[k], str)]:
            new = fn(ev[key])
            n += new != ev[key]
            ev[key] = new
    return n


def _short_tracebacks(d: dict[str, Any]) -> Optional[str]:
    n = _each_traceback(d, lambda s: _tail(s, TRACEBACK_LINES))
    return f"{n} traceback(s) shortened to their last {TRACEBACK_LINES} lines" if n else None


def _fewer_packages(d: dict[str, Any]) -> Optional[str]:
    pk = d.get("packages") or {}
    keep = {n for n in pk if _KEEP_PACKAGE.match(n)}
    for comp in d.get("components", {}).values():
        owners = comp.get("facts", {}).get("distributions", [])
        keep.update(x.lower().replace("_", "-").replace(".", "-") for x in owners)
    drop = [n for n in pk if n not in keep]
    if not drop:
        return None
    d["packages_trimmed"] = {n: pk[n].get("version", "") for n in drop}
    d["packages"] = {n: v for n, v in pk.items() if n in keep}
    return (f"{len(drop)} package(s) other than torch/mmcv/NVIDIA ones reduced to name and version "
            "(packages_trimmed)")


def _no_tracebacks(d: dict[str, Any]) -> Optional[str]:
    n = _each_traceback(d, lambda s: None if s else s)
    for comp in d.get("components", {}).values():
        err = (comp.get("load") or {}).get("error")
        if err and len(err.get("message") or "") > 1000:
            err["message"] = err["message"][:1000] + " [trimmed]"
    return f"{n} traceback(s) removed, long error messages cut to 1000 characters" if n else None


def _no_package_names(d: dict[str, Any]) -> Optional[str]:
    names = d.get("packages_trimmed")
    if not names:
        return None
    d["packages_trimmed"] = None
    d["packages_trimmed_count"] = len(names)
    return f"the names of {len(names)} trimmed package(s) removed"


TRIM_STEPS = (_short_tracebacks, _fewer_packages, _no_tracebacks, _no_package_names)


def render_markdown(report: Report, budget: int = BUDGET) -> str:
    head = summary(report)
    data = report.to_dict()
    trimmed: list[str] = []
    tail_room = 400  # the <details> lines and the trimming note

    def size(body: str) -> int:
        return sum(len(x) + 1 for x in head) + len(body) + tail_room + sum(len(t) + 4 for t in trimmed)

    body = dump(data)
    for step in TRIM_STEPS:
        if size(body) <= budget:
            break
        data = copy.deepcopy(data)
        note = step(data)
        if note:
            trimmed.append(note)
            data["trimmed"] = list(trimmed)
            body = dump(data)
    lines = head + ["", f"<details><summary>Full report (JSON, {text(report.schema)})</summary>", ""]
    if trimmed:
        lines.append(f"Trimmed to fit GitHub's {GITHUB_LIMIT:,}-character limit: " + "; ".join(text(t) for t in trimmed)
                     + ". `envdoctor check --format json -o report.json` writes the whole report; attach that file "
                     "if asked.")
        lines.append("")
    if size(body) > budget:
        lines += ["The JSON report is too large for an issue even after trimming. Run "
                  "`envdoctor check --format json -o report.json` and attach the file.", "", "</details>", ""]
        return "\n".join(lines)
    longest = max((len(run) for run in re.findall(r"`{3,}", body)), default=0)
    fence = "`" * max(3, longest + 1)
    lines += [f"{fence}json", body, fence, "", "</details>", ""]
    return "\n".join(lines)
