"""Rule tables: every shipped row validates and is sourced; bad files are errors naming file:line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from envdoctor.checks import load_all
from envdoctor.rules import RuleFileError, load_tables, shipped_dir
from envdoctor.rules_schema import SCHEMAS
from tests.conftest import ROOT, run_cli


def test_shipped_tables_load_and_every_row_has_a_source():
    tables = load_tables()
    assert {p.name for p in tables.files} >= {"cuda_driver.toml", "cuda_compat.toml", "torch.toml", "mmcv.toml",
                                              "load_errors.toml"}
    for name in SCHEMAS:
        rows = tables.rows(name)
        assert rows, f"table {name} is empty"
        for row in rows:
            assert re.match(r"^https?://", row["source"]), (name, row)
            assert row["_line"] and row["_file"]


def test_every_table_a_rule_names_exists():
    tables = load_tables()
    for rule in load_all().rules.values():
        for t in rule.tables:
            assert tables.rows(t), f"{rule.id} names table {t} which has no rows"


def _write(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    (d / "user.toml").write_text(text, encoding="utf-8")
    return d


ROW = '[[torch_pair]]\ntorchvision = "0.30.0"\ntorch = "==2.15.0"\nsource = "https://pypi.org/project/torchvision/"\n\n'


@pytest.mark.parametrize("text, line, words", [
    (ROW + '[[torch_pair]]\ntorchvision = "0.31.0"\ntorch = "=>2.16"\nsource = "https://x.org/"\n', 8,
     "not a valid version specifier"),
    (ROW + '[[torch_pair]]\ntorchvision = "zero"\ntorch = ">=2.16"\nsource = "https://x.org/"\n', 7,
     "not a valid version"),
    (ROW + '[[torch_pair]]\ntorchvision = "0.31.0"\ntorch = ">=2.16"\nsorce = "https://x.org/"\n', 9,
     "unknown key 'sorce'"),
    (ROW + '[[torch_pair]]\ntorchvision = "0.31.0"\ntorch = ">=2.16"\n', 6, "missing required key 'source'"),
    (ROW + '[[torch_pairs]]\ntorchvision = "0.31.0"\n', 6, "unknown table [[torch_pairs]]"),
    (ROW + '[[load_error]]\ncause = "x"\npattern = "(unclosed"\nsource = "https://x.org/"\n', 8,
     "not a valid regular expression"),
    (ROW + '[[torch_pair]\ntorchvision = "0.31.0"\n', 6, "not valid TOML"),
    ('[[mmcv_wheels]]\npackage = "mmcv"\nmmcv = ["2.3.0"]\nos = "linux"\npython = ">=3.9"\n'
     'variants = { "2.5" = ["12.4", "rocm"] }\nsource = "https://x.org/"\n', 6, "must be a CUDA version"),
    ('[[torch_pair]]\ntorchvision = "0.31.0"\ntorch = ">=2.16"\nsource = "ftp://x.org/"\n', 4, "http(s) URL"),
])
def test_bad_rule_file_names_file_and_line(tmp_path, text, line, words):
    d = _write(tmp_path, text)
    with pytest.raises(RuleFileError) as exc:
        load_tables([str(d)])
    assert exc.value.line == line, str(exc.value)
    assert str(exc.value).startswith(f"{d / 'user.toml'}:{line}: ")
    assert words in str(exc.value)


def test_cli_rules_bad_file_is_one_line_exit_2(tmp_path):
    d = _write(tmp_path, ROW + '[[torch_pair]]\ntorchvision = "0.31.0"\ntorch = "=>2.16"\nsource = "https://x.org/"\n')
    proc = run_cli("rules", "--rules", str(d))
    assert proc.returncode == 2
    assert "user.toml:8:" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("check", "--quick", "--python", sys.executable, "--rules", str(d))
    assert proc.returncode == 2 and "user.toml:8:" in proc.stderr


def test_cli_rules_lists_and_validates(tmp_path):
    proc = run_cli("rules")
    assert proc.returncode == 0, proc.stderr
    assert "all rule tables are valid" in proc.stdout
    assert re.search(r"mmcv_wheels: \d+ rows", proc.stdout)
    assert "ED402 mmcv-ext-load-fails" in proc.stdout


def test_user_rows_layer_over_shipped_ones(tmp_path):
    shipped = load_tables()
    before = [r for r in shipped.rows("torch_pair") if r["torchvision"] == "0.28.0"]
    assert before and before[0]["torch"] == "==2.13.0"
    d = _write(tmp_path, '[[torch_pair]]\ntorchvision = "0.28.0"\ntorch = "==2.13.1"\nsource = "https://x.org/a"\n\n'
                         '[[torch_pair]]\ntorchvision = "0.30.0"\ntorch = "==2.15.0"\nsource = "https://x.org/b"\n')
    t = load_tables([str(d)])
    rows = [r for r in t.rows("torch_pair") if r["torchvision"] == "0.28.0"]
    assert len(rows) == 1 and rows[0]["torch"] == "==2.13.1"  # replaced, not duplicated
    assert any(r["torchvision"] == "0.30.0" for r in t.rows("torch_pair"))  # added
    assert len(t.rows("torch_pair")) == len(shipped.rows("torch_pair")) + 1


def test_user_rules_change_a_diagnosis_without_a_release(tmp_path):
    """A newer torchvision row, given with --rules, is used by `explain` and the table queries."""
    from envdoctor import tables_query

    d = _write(tmp_path, '[[torch_pair]]\ntorchvision = "0.30.0"\ntorch = "==2.15.0"\nsource = "https://x.org/b"\n')
    assert tables_query.torchvision_for(load_tables(), "2.15.0", None, "3.11") is None or \
        tables_query.torchvision_for(load_tables(), "2.15.0", None, "3.11").version != "0.30.0"
    choice = tables_query.torchvision_for(load_tables([str(d)]), "2.15.0", None, "3.11")
    assert choice is not None and choice.version == "0.30.0"
    proc = run_cli("explain", "ED301", "--rules", str(d))
    assert proc.returncode == 0 and "https://x.org/b" in proc.stdout


def test_missing_rules_dir_is_usage_error(tmp_path):
    proc = run_cli("rules", "--rules", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "not a directory" in proc.stderr


def test_docs_rules_md_is_generated_and_current():
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_rules_md.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_registered_rule_has_a_doc():
    text = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    for rule_id, rule in load_all().rules.items():
        assert f"### {rule_id} {rule.name}" in text, f"{rule_id} has no section in docs/rules.md"


def test_explain_prints_rationale_evidence_fixes_and_sources():
    proc = run_cli("explain", "ed402")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "mmcv-ext-load-fails" in out and "Reads:" in out and "Fixes:" in out
    assert "https://github.com/open-mmlab/mmcv/blob/main/docs/en/_static/version.json" in out
    assert "https://github.com/open-mmlab/mmcv/issues/1594" in out  # the zh-CN WinError 127 row


def test_rule_ids_are_in_their_ranges():
    ranges = {"driver": "ED1", "torch": "ED2", "torchvision": "ED3", "mmcv": "ED4", "python": "ED5"}
    for rule in load_all().rules.values():
        assert re.fullmatch(r"ED\d{3}", rule.id)
        mod = load_all().functions[rule.id].__module__.rsplit(".", 1)[-1].rstrip("_")
        if mod in ranges:
            assert rule.id.startswith(ranges[mod]), (rule.id, mod)


def test_shipped_dir_is_the_repository_rules():
    assert shipped_dir() == ROOT / "rules"


def test_duplicate_identity_in_one_file_names_both_lines(tmp_path):
    d = _write(tmp_path, ROW + '[[torch_pair]]\ntorchvision = "0.31.0"\ntorch = ">=2.16"\nsource = "https://x.org/"\n\n'
                         + ROW)
    with pytest.raises(RuleFileError) as exc:
        load_tables([str(d)])
    assert exc.value.line == 11
    assert "torchvision = '0.30.0'" in str(exc.value) and "lines 1 and 11" in str(exc.value)
    proc = run_cli("rules", "--rules", str(d))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "user.toml:11:" in proc.stderr and "lines 1 and 11" in proc.stderr


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_fifo_or_device_in_rules_dir_is_skipped_with_a_warning(tmp_path, kind):
    d = _write(tmp_path, ROW)
    special = d / "zz-special.toml"
    if kind == "fifo":
        os.mkfifo(special)  # reading it would block forever: nobody writes to it
    else:
        special.symlink_to("/dev/zero")  # reading it would never end
    proc = run_cli("rules", "--rules", str(d), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"envdoctor: warning: --rules: skipped {special}" in proc.stderr
    assert ("a FIFO" if kind == "fifo" else "a device") in proc.stderr
    assert "user.toml" in proc.stdout


def test_rules_lists_paths_redacted(tmp_path):
    home = tmp_path / "zoequill"
    home.mkdir()
    d = _write(home, ROW)
    proc = run_cli("rules", "--rules", str(d), env={"HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    assert "~/rules/user.toml" in proc.stdout and str(home) not in proc.stdout
