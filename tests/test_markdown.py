"""`--format markdown`: a summary for an issue tracker, the JSON in <details>, under GitHub's limit."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from envdoctor.facts import Finding, Fix, LoadError, Package
from envdoctor.render.markdown import BUDGET, GITHUB_LIMIT, code, render_markdown
from envdoctor.report_io import load_report, parse_report
from tests.conftest import real_env, run_cli, validate_report

REPORTS = Path(__file__).parent / "data" / "reports"
_BLOCK = re.compile(r"^(`{3,})json\n(.*?)\n\1$", re.S | re.M)


def embedded_json(md: str) -> dict:
    m = _BLOCK.search(md)
    assert m, "no ```json block"
    return json.loads(m.group(2))


def table_rows(md: str) -> list[list[str]]:
    """Cells of the summary table, split the way GFM does (on | not preceded by a backslash)."""
    rows = [line for line in md.split("<details>")[0].splitlines() if line.startswith("|")]
    return [re.split(r"(?<!\\)\|", r.strip())[1:-1] for r in rows]


def test_check_markdown_of_a_broken_env():
    env = real_env("torch213-tv291")
    proc = run_cli("check", "--python", str(env), "--format", "markdown")
    assert proc.returncode == 1, proc.stderr
    md = proc.stdout
    n_errors = sum(f["severity"] == "error" for f in json.loads(run_cli(
        "check", "--python", str(env), "--format", "json").stdout)["findings"])
    assert n_errors >= 1 and md.startswith(f"### envdoctor report: {n_errors} error(s)")
    rows = {r[0].strip(): r for r in table_rows(md)}
    assert all(len(r) == 3 for r in rows.values()), rows
    assert "`2.13.0+cpu`, CPU-only" in rows["torch"][1] and "imports" in rows["torch"][2]
    assert "import\\_error" in rows["torchvision"][2] or "import_error" in rows["torchvision"][2]
    assert "operator torchvision::nms does not exist" in rows["torchvision"][2]
    assert "**ED301** torchvision 0.29.1+cu130 is built for torch &gt;=2.14.0" in md  # escaped for GFM
    data = embedded_json(md)
    validate_report(data)
    assert data["components"]["torchvision"]["load"]["status"] == "import_error"
    assert len(md) < BUDGET


def test_findings_show_their_one_line_fix_and_escape_markdown():
    report = load_report(REPORTS / "torch213-tv291.json")
    report = replace(report, findings=[Finding(
        id="ED210", name="tv-abi", severity="error", component="torchvision",
        title="torchvision `0.29.1` needs torch 2.14 | installed *2.13* <user>",
        fixes=[Fix(description="Install the torchvision that matches torch 2.13.\nSecond line.",
                   commands=["pip install 'torchvision==0.28.0' --index-url https://download.pytorch.org/whl/cpu"])])])
    report.components["torchvision"].load.error = LoadError(type="RuntimeError", message="a|b `c` <d>\nline 2")
    md = render_markdown(report)
    summary = md.split("<details>")[0]
    assert ("- ❌ **ED210** torchvision `0.29.1` needs torch 2.14 \\| installed \\*2.13\\* &lt;user&gt;" in summary)
    assert ("  fix: Install the torchvision that matches torch 2.13. "
            "`pip install 'torchvision==0.28.0' --index-url https://download.pytorch.org/whl/cpu`") in summary
    row = [r for r in table_rows(md) if r[0].strip() == "torchvision"][0]
    assert len(row) == 3 and "``a\\|b `c` <d>``" in row[2]
    assert "line 2" not in summary


@pytest.mark.parametrize("s, expected", [("x", "`x`"), ("a`b", "``a`b``"), ("`x`", "`` `x` ``"), ("a|b", "`a\\|b`")])
def test_code_spans(s, expected):
    assert code(s) == expected


def test_json_with_backtick_fences_inside_keeps_its_block():
    report = load_report(REPORTS / "torch213.json")
    report = replace(report, probe_errors=["output:\n```\nboom\n```"])
    md = render_markdown(report)
    assert embedded_json(md)["probe_errors"] == report.probe_errors
    assert parse_report(embedded_json(md)).probe_errors == report.probe_errors


def _huge(n_packages: int, tb_lines: int):
    report = load_report(REPORTS / "torch213-tv291.json")
    template = next(iter(report.packages.values()))
    for i in range(n_packages):
        p = copy.deepcopy(template)
        p.name, p.version = f"some-package-{i}", f"1.{i}.0"
        report.packages[p.name] = p
    report.packages["mmcv"] = Package(name="mmcv", version="2.2.0")
    err = report.components["torchvision"].load.error
    err.traceback = "".join(f"  File \"/x/y{i}.py\", line {i}, in f\n    g()\n" for i in range(tb_lines))
    return report


def test_a_large_report_is_trimmed_under_githubs_limit_and_stays_a_report():
    report = _huge(1500, 3000)
    assert len(json.dumps(report.to_dict())) > 3 * GITHUB_LIMIT
    md = render_markdown(report)
    assert len(md) <= BUDGET < GITHUB_LIMIT
    data = embedded_json(md)
    validate_report(data)
    assert "Trimmed to fit GitHub's 65,536-character limit" in md
    assert data["trimmed"][0].startswith("1 traceback(s) shortened")
    # torch/mmcv packages stay in full, the others keep name and version
    assert {"torch", "torchvision", "mmcv"} <= set(data["packages"])
    assert "some-package-7" not in data["packages"]
    trimmed = data.get("packages_trimmed") or {}
    assert trimmed.get("some-package-7") == "1.7.0" or data.get("packages_trimmed_count") == 1500 + len(
        [n for n in load_report(REPORTS / "torch213-tv291.json").packages if n not in data["packages"]])
    tb = data["components"]["torchvision"]["load"]["error"]["traceback"]
    assert tb is None or tb.startswith("[") and tb.count("\n") <= 13


def test_only_as_much_is_trimmed_as_needed():
    md = render_markdown(_huge(0, 3000))
    data = embedded_json(md)
    assert len(data["trimmed"]) == 1 and "some-package" not in md
    assert set(data["packages"]) == set(load_report(REPORTS / "torch213-tv291.json").packages) | {"mmcv"}


def test_untrimmable_report_says_to_attach_the_file():
    report = _huge(0, 0)
    for i in range(3000):  # packages the trimmer keeps: nothing left to cut
        report.packages[f"nvidia-lib{i}"] = Package(name=f"nvidia-lib{i}", version="1.0", location="/x" * 20)
    md = render_markdown(report)
    assert len(md) <= BUDGET
    assert "too large for an issue even after trimming" in md and "```json" not in md


def test_unredacted_markdown_says_so():
    env = real_env("torch213")
    proc = run_cli("check", "--python", str(env), "--format", "markdown", "--no-redact", "--quick")
    assert "**Not redacted**" in proc.stdout
    proc = run_cli("check", "--python", str(env), "--format", "markdown", "--quick")
    assert "**Not redacted**" not in proc.stdout and "Redacted before sharing" in proc.stdout
