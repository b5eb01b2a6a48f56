"""`envdoctor diff` on pairs of real reports: healthy vs broken environments built by the tests."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from envdoctor.report_diff import SECTIONS, compare
from envdoctor.report_io import load_report
from tests.conftest import real_env, run_cli

REPORTS = Path(__file__).parent / "data" / "reports"


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Fresh JSON reports of real test environments, written by `envdoctor check -o`."""
    out = tmp_path_factory.mktemp("reports")
    paths = {}
    for name in ("torch213", "torch213-tv291", "mmcv-lite"):
        env = real_env(name)
        p = out / f"{name}.json"
        proc = run_cli("check", "--python", str(env), "--format", "json", "-o", str(p))
        assert proc.returncode in (0, 1), proc.stderr
        paths[name] = p
    return paths


def diff_json(*args: str) -> tuple[int, dict]:
    proc = run_cli("diff", *args, "--format", "json")
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_healthy_to_broken_torchvision_lists_load_then_findings_first(reports):
    code, d = diff_json(str(reports["torch213"]), str(reports["torch213-tv291"]))
    assert code == 1 and d["worse"] is True
    ch = d["changes"]
    # nothing differs in driver/CUDA or the torch build, so the load changes lead...
    assert [(c["section"], c["key"], c["a"], c["b"]) for c in ch[:2]] == [
        ("load", "torchvision", "missing", "import_error"), ("load", "torchvision.ops", "missing", "import_error")]
    assert ch[0]["direction"] == "worse" and "torchvision::nms does not exist" in ch[0]["note"]
    # ...then the findings that appeared (the pairing, the hidden loader error, the CUDA build, the binary's
    # needed CUDA libraries), then the package that was added
    new = [c for c in ch[2:] if c["section"] == "findings"]
    assert {c["key"] for c in new} == {"ED301", "ED302", "ED303", "ED703"}
    assert all((c["a"], c["b"], c["direction"]) == (None, "error", "worse") for c in new)
    after = ch[2 + len(new)]
    assert (after["section"], after["key"], after["b"]) == ("packages", "torchvision", "0.29.1")
    sections = [c["section"] for c in ch]
    assert sections == sorted(sections, key=SECTIONS.index)


def test_broken_to_healthy_is_better_and_exits_0(reports):
    code, d = diff_json(str(reports["torch213-tv291"]), str(reports["torch213"]))
    assert code == 0 and d["worse"] is False
    first = d["changes"][0]
    assert (first["key"], first["direction"]) == ("torchvision", "better")
    assert any(c["section"] == "findings" and c["key"] == "ED301" and c["direction"] == "better"
               for c in d["changes"])


def test_fresh_probe_is_b_by_default(reports):
    env = real_env("mmcv-lite")
    code, d = diff_json(str(reports["torch213"]), "--python", str(env))
    assert code == 0
    assert d["b"]["label"].startswith("fresh probe of ") and d["b"]["python"].endswith("/bin/python")
    keys = [(c["section"], c["key"]) for c in d["changes"]]
    assert keys[0] == ("load", "mmcv")
    assert ("packages", "mmcv-lite") in keys
    # the package diff lists what the checks judge (mmcv*, numpy...) before the rest
    pk = [c["key"] for c in d["changes"] if c["section"] == "packages"]
    assert pk.index("mmcv-lite") < min((i for i, k in enumerate(pk) if not k.startswith(("mm", "numpy"))),
                                       default=len(pk))


def test_same_report_has_no_differences(reports):
    proc = run_cli("diff", str(reports["torch213"]), str(reports["torch213"]))
    assert proc.returncode == 0
    assert "no differences" in proc.stdout
    assert "\x1b[" not in proc.stdout  # not a TTY: plain text


def test_text_output_most_important_first(reports):
    proc = run_cli("diff", str(reports["torch213"]), str(reports["torch213-tv291"]))
    assert proc.returncode == 1
    out = proc.stdout
    heads = [out.index(f"\n{section}\n") for section in ("load", "findings", "packages", "other")]
    assert heads == sorted(heads)
    assert "B is worse than A" in out and "\x1b[" not in out


def test_quick_report_says_what_could_not_be_compared(reports):
    code, d = diff_json(str(REPORTS / "torch213-quick.json"), str(reports["torch213-tv291"]))
    assert any("whether components import" in n for n in d["not_compared"])
    assert not any(c["section"] == "load" for c in d["changes"])


def test_markdown_from_an_issue_compares_like_its_json():
    a = load_report(REPORTS / "torch213.json")
    b_md, b_json = load_report(REPORTS / "torch213-tv291.md"), load_report(REPORTS / "torch213-tv291.json")
    keys = lambda d: [(c.section, c.key, c.direction) for c in d.changes if c.section != "other"]  # noqa: E731
    assert keys(compare(a, b_md)) == keys(compare(a, b_json))
    assert keys(compare(a, b_md))[0] == ("load", "torchvision", "worse")


def test_driver_and_torch_build_come_before_load():
    a = load_report(REPORTS / "torch213.json")
    b = load_report(REPORTS / "torch213-tv291.json")
    b.gpu.driver_version, b.gpu.cuda_driver_version = "550.54.14", "12.4"
    b.components["torch"].facts["version_py"]["cuda"] = "12.1"
    b.environment["CUDA_VISIBLE_DEVICES"] = "1"
    d = compare(a, b)
    assert [(c.section, c.key) for c in d.changes[:5]] == [
        ("driver/CUDA", "driver"), ("driver/CUDA", "driver CUDA version"), ("driver/CUDA", "$CUDA_VISIBLE_DEVICES"),
        ("torch build", "torch cuda"), ("load", "torchvision")]


@pytest.mark.parametrize("name, words", [
    ("schema-v2.json", "schema version 2; this envdoctor reads version 1"),
    ("other-schema.json", "is not an envdoctor report (schema 'otherthing/1'"),
    ("pip-install-report.json", "is not an envdoctor report (no \"schema\" field)"),
    ("collect_env.txt", "is not an envdoctor report (not JSON"),
    ("truncated.json", "is not an envdoctor report (not JSON"),
    ("damaged-components.json", "damaged envdoctor report: 'components' is missing or not a JSON object"),
])
def test_non_reports_are_refused_in_one_line(name, words, reports):
    for args in ((str(REPORTS / "invalid" / name), str(reports["torch213"])),
                 (str(reports["torch213"]), str(REPORTS / "invalid" / name))):
        proc = run_cli("diff", *args)
        assert proc.returncode == 2, proc.stdout
        assert words in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, words", [
    (("/nonexistent/a.json",), "cannot read /nonexistent/a.json"),
    (("{a}", "{a}", "--python", sys.executable), "give either B.json or --python"),
    (("{a}", "{a}", "--format", "yaml"), "--format yaml"),
])
def test_usage_errors_exit_2(args, words, reports):
    proc = run_cli("diff", *(x.format(a=reports["torch213"]) for x in args))
    assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr
