"""The output of inspect, explain and rules comes from render/ (drawn from data, nothing computed there),
and `--format`/`-o` are handled once (render.formats) for check, diff and inspect."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from envdoctor.checks import load_all
from envdoctor.commands.inspect import inspect_file
from envdoctor.errors import UsageError
from envdoctor.render.explain import render_explain
from envdoctor.render.formats import check_format, write_formatted
from envdoctor.render.inspect import inspect_json, render_inspect
from envdoctor.render.rules import render_rules
from envdoctor.rules import load_tables


def test_rules_lists_every_table_with_its_users_and_redacts_paths():
    tables = load_tables()
    out = io.StringIO()
    render_rules(tables, list(load_all().rules.values()), lambda s: s.replace(str(Path.home()), "~") + " [R]", out)
    text = out.getvalue()
    for name in tables.tables:
        assert f"  {name}: {len(tables.rows(name))} rows" in text
    assert text.count(" [R]") == len(tables.files)  # every path went through the redactor
    assert "used by ED4" in text and text.rstrip().endswith("all rule tables are valid")


def test_explain_shows_the_tables_it_is_given():
    rule = load_all().rules["ED402"]
    assert rule.tables
    without, with_tables = io.StringIO(), io.StringIO()
    render_explain(rule, None, without)
    render_explain(rule, load_tables(), with_tables)
    assert without.getvalue().startswith("ED402 ") and "Tables" not in without.getvalue()
    assert "Tables: " in with_tables.getvalue() and "https://" in with_tables.getvalue()


def test_inspect_renders_a_real_extension_as_text_and_json():
    # a real compiled extension of this interpreter: it loads (it is loaded), so it must say so
    import _json

    if not getattr(_json, "__file__", None):
        pytest.skip("this interpreter has _json built in")
    so = Path(_json.__file__)
    analysis, report = inspect_file(str(so))
    out = io.StringIO()
    render_inspect(analysis, report, True, out)
    text = out.getvalue()
    assert text.startswith(str(so)) and "would load" in text and "would not load" not in text
    data = json.loads(inspect_json(analysis, report, True))
    assert data["schema"] == "envdoctor.inspect/1" and data["would_load"] is True and data["file"] == str(so)


def test_format_and_output_are_handled_once(tmp_path: Path):
    with pytest.raises(UsageError, match="choose one of text, json"):
        check_format("yaml", ("text", "json"))
    seen: list[object] = []

    def text(stream, color):
        seen.append(color)
        stream.write("T\n")

    out = tmp_path / "r.txt"
    write_formatted("text", str(out), text, json=lambda: "{}\n")
    assert out.read_text() == "T\n" and seen == [False]  # never colour into a file
    write_formatted("json", str(out), text, json=lambda: '{"a": 1}\n')
    assert json.loads(out.read_text()) == {"a": 1}
    with pytest.raises(UsageError, match="--format markdown"):
        write_formatted("markdown", str(out), text, json=lambda: "{}")
