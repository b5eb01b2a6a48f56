"""The report contract: recorded reports of the current schema major always validate and load."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from envdoctor.errors import ReportError
from envdoctor.facts import MOVED_FROM_EXTRA, SCHEMA, Report
from envdoctor.report_io import CURRENT_MAJOR, load_report, parse_report, schema_major
from tests.conftest import SCHEMA as JSON_SCHEMA
from tests.conftest import validate_report

REPORTS = Path(__file__).parent / "data" / "reports"
RECORDED = sorted(p for p in REPORTS.glob("*.json"))


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.name)
def test_recorded_reports_of_this_major_validate(path):
    data = json.loads(path.read_text())
    assert schema_major(data["schema"]) == CURRENT_MAJOR
    # An incompatible change to docs/report.schema.json (a new required field, a narrowed type)
    # fails here: make new fields optional, or bump the schema major (docs/report.md).
    validate_report(data)
    report = load_report(path)
    # Nothing recorded is lost on load; fields added since (optional, with defaults) may appear, and what
    # envdoctor <= 0.1.0 kept under `extra` is found in its own field (facts.MOVED_FROM_EXTRA).
    missing = _lost(moved_from_extra(data), report.to_dict())
    assert not missing, f"a report must survive load -> to_dict: lost {missing[:5]}"


def moved_from_extra(data: dict) -> dict:
    """The report as this envdoctor writes the same content: `extra`'s known entries at the top level."""
    out = dict(data, extra=dict(data.get("extra") or {}))
    for key in MOVED_FROM_EXTRA:
        if key in out["extra"]:
            out[key] = out["extra"].pop(key)
    return out


def _lost(old, new, where="$"):
    """Paths of values in `old` that `new` does not carry unchanged."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k, v in old.items():
            out += _lost(v, new[k], f"{where}.{k}") if k in new else [f"{where}.{k}"]
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        # items of a list (findings, devices) may gain optional fields too
        return [p for i, (a, b) in enumerate(zip(old, new)) for p in _lost(a, b, f"{where}[{i}]")]
    return [] if old == new else [where]


def test_schema_pattern_names_the_current_major():
    assert JSON_SCHEMA["$defs"]["Report"]["properties"]["schema"]["pattern"] == f"^envdoctor\\.report/{CURRENT_MAJOR}$"
    assert SCHEMA == f"envdoctor.report/{CURRENT_MAJOR}"


def test_every_field_of_the_fact_model_is_in_the_schema():
    """Additive changes go to facts.py and the schema together (additionalProperties is false)."""
    defs = JSON_SCHEMA["$defs"]
    import envdoctor.facts as facts

    for name, definition in defs.items():
        cls = getattr(facts, name, None)
        if not dataclasses.is_dataclass(cls):
            continue
        fields = {f.name for f in dataclasses.fields(cls)}
        assert set(definition["properties"]) == fields, name


def test_unknown_fields_of_the_same_major_are_accepted():
    data = json.loads((REPORTS / "torch213.json").read_text())
    data["future_section"] = {"x": 1}
    data["python"]["future_field"] = True
    report = parse_report(data)
    assert report.python.version == data["python"]["version"]


@pytest.mark.parametrize("schema, words", [
    ("envdoctor.report/2", "schema version 2"),
    ("envdoctor.report/0", "schema version 0; this envdoctor reads version 1 (re-run"),
    ("envdoctor.report/x", "unknown report schema"),
    ("envdoctor.config/1", "not an envdoctor report"),
])
def test_other_schemas_are_refused(schema, words):
    data = json.loads((REPORTS / "torch213.json").read_text())
    data["schema"] = schema
    with pytest.raises(ReportError, match=words.replace("(", r"\(")):
        parse_report(data)


def test_empty_report_object_round_trips():
    data = Report().to_dict()
    validate_report(data)
    assert parse_report(data).to_dict() == data


def test_markdown_pasted_into_an_issue_with_crlf_and_more_text(tmp_path):
    md = (REPORTS / "torch213-tv291.md").read_text()
    body = "### What happened\r\n\r\n```\r\nTraceback ...\r\n```\r\n\r\n" + md.replace("\n", "\r\n")
    p = tmp_path / "issue.md"
    p.write_bytes(body.encode())
    report = load_report(p)
    assert report.components["torchvision"].load.status == "import_error"


def test_markdown_without_a_report_block_is_refused(tmp_path):
    p = tmp_path / "notes.md"
    p.write_text("# notes\n\n```json\n{\"a\": 1}\n```\n")
    with pytest.raises(ReportError, match="is not an envdoctor report"):
        load_report(p)


def test_a_report_of_envdoctor_0_1_0_with_extra_loads_into_the_typed_fields():
    """mmcv-lite-fix-extra.json: `envdoctor fix --format json` (dry run) of the mmcv-lite test environment,
    written by envdoctor 0.1.0 (main 38025bb) before `extra` became typed fields."""
    path = REPORTS / "mmcv-lite-fix-extra.json"
    data = json.loads(path.read_text())
    assert set(data["extra"]) == {"load_probes", "pip_cache", "fix", "redacted"}
    report = load_report(path)
    assert report.extra == {}
    assert report.redacted is True and report.load_probes is not None
    assert (report.load_probes.fork, report.load_probes.parallel) == (data["extra"]["load_probes"]["fork"],
                                                                      data["extra"]["load_probes"]["parallel"])
    assert report.pip_cache == data["extra"]["pip_cache"]
    assert report.fix == data["extra"]["fix"] and report.fix["plan"]["actions"][0]["kind"] == "compat"
    written = report.to_dict()
    validate_report(written)
    assert written["extra"] == {} and written["fix"] == data["extra"]["fix"]
    # and what it writes now reads back the same
    assert parse_report(written).to_dict() == written


def test_extra_entries_of_another_type_stay_in_extra():
    """An old report's `extra` is free-form: an entry that is not of its field's JSON type is not moved
    (the typed field would then hold, say, a number where readers expect an object)."""
    data = json.loads((REPORTS / "torch213.json").read_text())
    data["extra"] = {"redacted": "yes", "pip_cache": 5, "packages_trimmed_count": True, "trimmed": ["x"],
                     "mine": {"a": 1}}
    report = parse_report(data)
    assert report.redacted is False and report.pip_cache is None and report.packages_trimmed_count is None
    assert report.trimmed == ["x"]
    assert report.extra == {"redacted": "yes", "pip_cache": 5, "packages_trimmed_count": True, "mine": {"a": 1}}
    validate_report(report.to_dict())
