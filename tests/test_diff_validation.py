"""`diff` reads reports from anywhere: each bad input is one line, exit 2, naming where it is bad."""

from __future__ import annotations

import json
import os
import threading

import pytest

from envdoctor.report_schema import first_error, report_schema
from tests.conftest import ROOT, SCHEMA, run_cli

GOOD = ROOT / "tests" / "data" / "reports" / "mmcv-lite.json"


def _variant(tmp_path, name, change):
    data = json.loads(GOOD.read_text())
    change(data)
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def _one_line_exit_2(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1 and "internal error" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in proc.stderr, proc.stderr


@pytest.mark.parametrize("name, change, where", [
    ("status.json", lambda d: d["components"]["torch"]["load"].update(status=5),
     "components.torch.load.status: 5 is not one of"),
    ("fixes.json", lambda d: d["findings"].append({**d["findings"][0], "fixes": "reinstall"}) if d["findings"] else
     d["findings"].append({"id": "ED301", "fixes": "reinstall"}), "findings[0]"),
    ("facts.json", lambda d: d["components"]["torch"].update(facts=[1, 2]),
     "components.torch.facts: expected object, found an array"),
    ("devices.json", lambda d: d["gpu"].update(devices={"0": "RTX"}), "gpu.devices: expected array"),
    ("version.json", lambda d: d["packages"]["torch"].update(version=2.13), "packages.torch.version"),
])
def test_wrong_types_deep_inside(tmp_path, name, change, where):
    bad = _variant(tmp_path, name, change)
    _one_line_exit_2(run_cli("diff", str(bad), str(GOOD)), "not a valid envdoctor report:", where)
    _one_line_exit_2(run_cli("diff", str(GOOD), str(bad)), "not a valid envdoctor report:", where)


def test_deep_nesting(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000)
    _one_line_exit_2(run_cli("diff", str(deep), str(GOOD)), "not a valid envdoctor report: nested too deeply")
    inside = _variant(tmp_path, "inside.json", lambda d: d["extra"].update(x=json.loads("[" * 900 + "]" * 900)))
    _one_line_exit_2(run_cli("diff", str(inside), str(GOOD)), "not a valid envdoctor report: extra.x[0][0]",
                     "nested deeper than 64 levels")


def test_dev_zero_is_refused_after_a_bounded_read():
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    _one_line_exit_2(run_cli("diff", "/dev/zero", str(GOOD)), "not a valid envdoctor report", "MiB")


def test_a_report_through_a_pipe_is_read(tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as f:
            f.write(GOOD.read_bytes())

    t = threading.Thread(target=feed)
    t.start()
    proc = run_cli("diff", str(fifo), str(GOOD))
    t.join(timeout=60)
    assert proc.returncode == 0 and "no differences" in proc.stdout, proc.stderr


def test_the_shipped_reports_and_the_schema_agree():
    for p in sorted((ROOT / "tests" / "data" / "reports").glob("*.json")):
        assert first_error(json.loads(p.read_text())) is None, p
    assert report_schema() == SCHEMA  # the validator reads the schema the tests validate with


def test_markdown_full_of_unclosed_fences_is_refused_not_searched_forever(tmp_path):
    # 2 MB of ```json openings that nothing closes: a backtracking search took ~1 min per 0.5 MB
    # (quadratic), so the old reader would hang here for many minutes; the line scan reads it once.
    md = tmp_path / "fences.md"
    md.write_text("```json\nenvdoctor.report/1\n" * 80_000)
    _one_line_exit_2(run_cli("diff", str(md), str(GOOD), timeout=120), "is not an envdoctor report")


def test_markdown_with_nested_fences_finds_the_report(tmp_path):
    body = GOOD.read_text()
    md = tmp_path / "issue.md"
    md.write_text(f"text\n````json\n{{\"not\": \"it\"}}\n````\n```\nnoise\n```\n````json\n{body}\n````\n")
    proc = run_cli("diff", str(md), str(GOOD))
    assert proc.returncode == 0 and "no differences" in proc.stdout, proc.stderr
