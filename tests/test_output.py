"""The one output writer (envdoctor/render/output.py), end to end through the real CLI.

Non-UTF-8 bytes (a real LD_LIBRARY_PATH with a Latin-1 byte) reach every format losslessly;
`-o FILE` never destroys an existing FILE when the write fails (a real RLIMIT_FSIZE makes the
kernel refuse it); stdout on a real full device (/dev/full) is one line and exit 2.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from envdoctor.render.output import emit_rendered, escape_surrogates, write_file
from envdoctor.report_io import load_report
from tests.conftest import ROOT, run_cli, validate_report

PY = sys.executable
LATIN1 = b"/opt/caf\xe9/lib"  # bytes that are not UTF-8, as a French locale would leave them


def _cli_bytes(*args: str, env_bytes: dict[bytes, bytes], **kw) -> subprocess.CompletedProcess:
    env = {os.fsencode(k): os.fsencode(v) for k, v in os.environ.items()}
    env[b"PYTHONPATH"] = os.fsencode(str(ROOT))
    env.pop(b"ENVDOCTOR_DEBUG", None)
    env.update(env_bytes)
    return subprocess.run([PY, "-m", "envdoctor", *args], capture_output=True, env=env, cwd=ROOT, timeout=300, **kw)


@pytest.mark.parametrize("fmt", ["json", "markdown", "text"])
def test_non_utf8_bytes_reach_the_file_losslessly(tmp_path, fmt):
    out = tmp_path / f"report.{fmt}"
    out.write_text("an older report the user keeps\n")
    proc = _cli_bytes("check", "--quick", "--python", PY, "-f", fmt, "-o", str(out),
                      env_bytes={b"LD_LIBRARY_PATH": LATIN1})
    assert proc.returncode in (0, 1), proc.stderr
    assert b"internal error" not in proc.stderr
    data = out.read_bytes()
    data.decode("utf-8")  # always valid UTF-8
    if fmt == "text":
        assert data.strip(), "the text report is empty"
        return
    assert b"caf\\udce9" in data  # the documented escape
    report = load_report(out)
    assert report.environment["LD_LIBRARY_PATH"] == os.fsdecode(LATIN1)  # the very bytes, back
    assert os.fsencode(report.environment["LD_LIBRARY_PATH"]) == LATIN1
    if fmt == "json":
        validate_report(json.loads(data))


def test_non_utf8_bytes_reach_stdout_losslessly():
    proc = _cli_bytes("check", "--quick", "--python", PY, "-f", "json", env_bytes={b"LD_LIBRARY_PATH": LATIN1})
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(proc.stdout.decode("utf-8"))
    assert os.fsencode(data["environment"]["LD_LIBRARY_PATH"]) == LATIN1


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (300, 300))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # ignored dispositions survive exec: EFBIG instead of a kill


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_a_failed_write_leaves_the_existing_file_alone(tmp_path, fmt):
    out = tmp_path / "report.json"
    out.write_text("precious\n")
    # diff runs no probe: the only file it writes is the output (a probe's scratch files would hit the limit)
    proc = subprocess.run([PY, "-m", "envdoctor", "diff", "tests/data/reports/torch213.json",
                           "tests/data/reports/mmcv-lite.json", "-f", fmt, "-o", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, preexec_fn=_limit_file_size,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"envdoctor: error: -o {out}: File too large", proc.stderr
    assert out.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no temporary left behind


def test_an_interrupted_render_leaves_the_existing_file_alone(tmp_path):
    out = tmp_path / "r.txt"
    out.write_text("precious\n")

    def render(stream):
        stream.write("half of it")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        emit_rendered(render, str(out))
    assert out.read_text() == "precious\n" and len(list(tmp_path.iterdir())) == 1


def test_written_file_keeps_mode_and_link(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_file(str(link), "new\udcff")
    assert link.is_symlink() and real.read_text() == "new\\udcff"
    assert real.stat().st_mode & 0o777 == 0o640
    fresh = tmp_path / "fresh.json"
    write_file(str(fresh), "x")
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_escape_is_plain_json_escape():
    s = "caf\udce9 ✓ 找不到"
    assert escape_surrogates(s) == "caf\\udce9 ✓ 找不到"
    assert json.loads(escape_surrogates(json.dumps(s, ensure_ascii=False))) == s


@pytest.mark.parametrize("args", [["check", "--quick", "-f", "json"], ["check", "--quick"],
                                  ["diff", "tests/data/reports/torch213.json", "tests/data/reports/mmcv-lite.json"],
                                  ["diff", "tests/data/reports/torch213.json", "tests/data/reports/mmcv-lite.json",
                                   "-f", "json"], ["fix"], ["rules"], ["explain", "ED301"]])
def test_stdout_on_a_full_disk_is_one_line(args):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    if args[0] in ("check", "fix"):
        args = [*args, "--python", PY]
    with open("/dev/full", "w") as full:
        proc = subprocess.run([PY, "-m", "envdoctor", *args], stdout=full, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert proc.stderr == "envdoctor: error: cannot write output: No space left on device\n"


def test_write_to_a_device_in_place(tmp_path):
    proc = run_cli("diff", "tests/data/reports/torch213.json", "tests/data/reports/torch213.json", "-o", "/dev/stdout")
    assert proc.returncode == 0, proc.stderr
    assert "no differences" in proc.stdout


def test_a_venv_under_a_non_utf8_path(tmp_path):
    from tests import envs
    from tests.conftest import real_env

    real_env("bare")
    base = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9"))
    venv = envs.clone_env("bare", base / "venv")
    out = tmp_path / "r.json"
    out.write_text("older\n")
    proc = subprocess.run([PY, "-m", "envdoctor", "check", "--python", str(venv), "-f", "json", "-o", str(out)],
                          capture_output=True, cwd=ROOT, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(out.read_bytes().decode("utf-8"))
    validate_report(data)
    assert os.fsencode(data["python"]["executable"]).startswith(os.fsencode(str(base)))
