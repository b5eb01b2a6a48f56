"""The fact model is immutable once built, and no stage after the build changes the facts it is given.

Data flows one way (probe -> facts -> checks -> findings): the checks read a Report and return findings, the
grouping post-pass returns new findings, redaction returns a new Report. Run over every recorded fact set
(tests/data/facts) and recorded report (tests/data/reports), as the probe left them and as built."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from envdoctor.checks import run_checks
from envdoctor.checks.grouping import group_findings
from envdoctor.classify import classified
from envdoctor.facts import Finding, Fix, LoadProbes, Report
from envdoctor.redact import Redactor, redact_report
from envdoctor.rules import load_tables
from tests.conftest import validate_report

DATA = Path(__file__).resolve().parent / "data"
RECORDED = sorted((DATA / "facts").glob("*.json")) + sorted((DATA / "reports").glob("*.json"))
T = load_tables()


def _load(path: Path) -> Report:
    return Report.from_dict(json.loads(path.read_text(encoding="utf-8")))


def test_report_and_finding_cannot_be_changed():
    report = Report(findings=[Finding(id="ED001", name="n", severity="error", component="torch", title="t",
                                      fixes=[Fix(description="d")])])
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.findings = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.fix = {"plan": {}, "applied": False}  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.findings[0].explained_by = "ED003"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.findings[0].severity = "info"  # type: ignore[misc]
    # the sequences are tuples: nothing can be appended to a built report or finding
    assert isinstance(report.findings, tuple) and isinstance(report.findings[0].fixes, tuple)
    with pytest.raises(AttributeError):
        report.findings.append(report.findings[0])  # type: ignore[attr-defined]
    # ... and written as JSON arrays, as the schema says
    data = report.to_dict()
    assert isinstance(data["findings"], list) and isinstance(data["findings"][0]["fixes"], list)
    validate_report(data)


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.name)
def test_building_and_checking_change_nothing_they_are_given(path: Path):
    raw = _load(path)
    before = copy.deepcopy(raw.to_dict())
    facts = classified(raw, T)
    assert raw.to_dict() == before, "classified() changed the probe's report"
    built = copy.deepcopy(facts.to_dict())
    findings = run_checks(facts, T)
    assert facts.to_dict() == built, "a check changed the facts"
    # the post-pass returns new findings and leaves the ones it was given alone
    unexplained = [dataclasses.replace(f, explained_by=None) for f in findings]
    regrouped = group_findings(unexplained)
    assert all(f.explained_by is None for f in unexplained)
    assert [f.explained_by for f in regrouped] == [f.explained_by for f in findings]
    # redaction too: a new report, the checked one as it was
    checked = dataclasses.replace(facts, findings=findings)
    shown = copy.deepcopy(checked.to_dict())
    redact_report(checked, Redactor(home="/home/user", user="user", host="host", secrets=()))
    assert checked.to_dict() == shown


def test_classification_is_part_of_building_the_facts_not_of_the_checks():
    """run_checks no longer classifies what it is given (it used to, when `tables` had `rows`): the load
    causes are there only after classify.classified, and the checks read them from there."""
    raw = _load(DATA / "facts" / "seed_windows_py312_torch251_mmcvfull172.json")
    assert raw.components["mmcv._ext"].load is not None and raw.components["mmcv._ext"].load.cause is None
    run_checks(raw, T)
    assert raw.components["mmcv._ext"].load.cause is None
    facts = classified(raw, T)
    ext = facts.components["mmcv._ext"]
    assert ext.load is not None and ext.load.cause == "missing_procedure"
    assert ext.facts["load_cause"]["winerror"] == 127 and "load_cause" not in raw.components["mmcv._ext"].facts
    by = {f.id: f for f in run_checks(facts, T)}
    assert by["ED402"].evidence["cause"] == "missing_procedure"
    # building twice gives the same facts (a report written by `check` is loaded and checked again by diff/fix)
    assert classified(facts, T).to_dict() == facts.to_dict()


def test_a_damaged_package_keeps_the_probes_own_status_when_built_again():
    raw = _load(DATA / "facts" / "real_mmcv-lite.json")
    torch = raw.components["torch"]
    assert torch.load is not None and torch.load.status == "ok"
    torch.facts["module"] = {"namespace": True, "locations": ["/envs/x/site-packages/torch"]}
    once = classified(raw, T)
    twice = classified(once, T)
    for built in (once, twice):
        t = built.components["torch"]
        assert t.load is not None and (t.load.status, t.load.cause) == ("import_error", "damaged_package")
        assert t.facts["damage"]["probe_status"] == "ok"
    assert raw.components["torch"].load is not None and raw.components["torch"].load.status == "ok"


def test_typed_fields_round_trip_through_json():
    report = Report(load_probes=LoadProbes(fork=True, parallel=3, reused=True, warmed=12), redacted=True, trimmed=["x"],
                    packages_trimmed={"a": "1.0"}, packages_trimmed_count=None,
                    pip_cache={"cache_dir": None, "wheels": [], "complete": True},
                    build={"status": "failed", "log": None, "log_text": "", "tail": [], "message": "m"})
    data = report.to_dict()
    validate_report(data)
    assert data["extra"] == {} and data["load_probes"] == {"fork": True, "parallel": 3, "reused": True, "warmed": 12}
    back = Report.from_dict(json.loads(json.dumps(data)))
    assert back == report
