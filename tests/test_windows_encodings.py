"""Encodings on Windows terms (issue 12 item 6), with real streams of real encodings on this machine:
a report redirected from a cp936 / cp1252 console, a report saved by PowerShell 5.1's `>` (UTF-16),
code page 65001, a terminal that cannot show ✓, and a probe's stderr in the console's code page."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from envdoctor.facts import Component, LoadError, LoadResult, Report
from envdoctor.render.json_ import render_json
from envdoctor.report_io import load_report
from tests.conftest import ROOT

SEED = "DLL load failed while importing _ext: 找不到指定的程序。"


def _report() -> Report:
    r = Report()
    r.host.os = "Windows"
    c = Component(name="mmcv._ext", installed=True)
    c.load = LoadResult(status="import_error", error=LoadError(type="ImportError", message=SEED, winerror=127))
    r.components["mmcv._ext"] = c
    return r


@pytest.mark.parametrize("console", ["cp936", "cp1252"])
def test_a_report_redirected_from_a_legacy_code_page_is_utf8(tmp_path, console):
    saved = tmp_path / "report.json"
    code = ("import sys; from envdoctor.render.output import emit; from tests.test_windows_encodings import _report;"
            "from envdoctor.render.json_ import render_json; emit(render_json(_report()))")
    with open(saved, "wb") as out:
        proc = subprocess.run([sys.executable, "-c", code], stdout=out, stderr=subprocess.PIPE, cwd=ROOT,
                              env=dict(os.environ, PYTHONIOENCODING=console, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert SEED in saved.read_bytes().decode("utf-8")
    assert load_report(saved).components["mmcv._ext"].load.error.message == SEED


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-8-sig"])
def test_a_report_saved_as_utf16_or_with_a_bom_is_read(tmp_path, encoding):
    saved = tmp_path / "report.json"
    saved.write_bytes(render_json(_report()).replace("\n", "\r\n").encode(encoding))  # utf-16: BOM + LE
    assert load_report(saved).components["mmcv._ext"].load.error.message == SEED


def test_code_page_65001_is_utf8():
    from envdoctor.render.output import is_utf8
    from envdoctor.render.text import TextRenderer

    stream = io.TextIOWrapper(io.BytesIO(), encoding="cp65001")
    assert is_utf8("cp65001") and is_utf8("UTF8") and not is_utf8("cp936")
    assert TextRenderer(stream).ascii is False
    assert TextRenderer(io.TextIOWrapper(io.BytesIO(), encoding="cp1252")).ascii is True


def test_marks_on_a_terminal_that_cannot_show_them_are_ascii():
    """A real terminal (a pty) whose encoding is ASCII: the fix plan's ✓ must not raise UnicodeEncodeError."""
    from envdoctor.render.output import StdoutWriter

    master, slave = os.openpty()
    with open(slave, "w", encoding="ascii", closefd=True) as tty:
        assert tty.isatty()
        StdoutWriter(tty).write("✓ nothing to fix · torch … ok\n")
        tty.flush()
        got = os.read(master, 1000)
    os.close(master)
    assert got.replace(b"\r", b"") == b"ok nothing to fix - torch ... ok\n"


def test_a_probe_writes_its_stderr_in_utf8_whatever_the_console(tmp_path, monkeypatch):
    from envdoctor.probe.target import RunningScript, Target

    monkeypatch.setenv("PYTHONIOENCODING", "cp1252")  # envdoctor started from a legacy console
    (tmp_path / "saysmod.py").write_text("import sys\nsys.stderr.write('找不到指定的程序\\n')\n", encoding="utf-8")
    run = RunningScript(Target(sys.executable, "--python"), "load_probe.py", ["module", "saysmod", "30", str(tmp_path)],
                        40, out_is_dir=True)
    assert "找不到指定的程序" in run.wait().stderr


def test_the_prefix_under_a_non_ascii_user_name_is_read_whatever_the_console(tmp_path, monkeypatch):
    """fix asks the target for sys.prefix (its layout); from a console whose code page lacks 张 that answer failed."""
    from envdoctor.probe import resolve_target, target_layout
    from tests.test_probe_target import make_venv

    venv = make_venv("3.12", tmp_path / "Users" / "张三" / "env")
    monkeypatch.setenv("PYTHONIOENCODING", "ascii")
    monkeypatch.setenv("VIRTUAL_ENV", "")
    assert target_layout(resolve_target(str(venv / "bin" / "python"))).prefix == str(venv)
