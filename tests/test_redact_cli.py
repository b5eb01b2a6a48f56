"""End to end: `envdoctor check` on a real venv under a fake user's home, seeded with secrets.

HOME is a temp dir named after a fake user, the venv lives under it, pip's index URL
carries a credential, secret variables are set, a broken `mmcv` on PYTHONPATH (under
HOME) fails to import with a message full of personal data, and the machine's real
host name (which the test cannot change) is planted in URLs and messages. The JSON
and Markdown reports must contain none of it, and still say where things are (`~/...`).
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from envdoctor.redact import _distinctive
from envdoctor.report_io import load_report
from tests import envs
from tests.conftest import ROOT, real_env, run_cli, validate_report

USER = "zoequill"
SECRETS = {
    "PIP_INDEX_URL": "https://zoe.quill:pIpT0kenXYZ123@pypi.corp.example.com/simple",
    "HF_TOKEN": "hf_QwErTyUiOpAsDfGhJkLzXcVbNm123456",
    "GITHUB_TOKEN": "ghp_ZyXwVuTsRqPoNmLkJiHgFeDcBa9876543210",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY",
    "MY_SERVICE_PASSWORD": "correct-horse-battery-staple",
}
HOST = socket.gethostname()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    real_env("bare")
    root = tmp_path_factory.mktemp("redact")
    home = root / USER
    home.mkdir()
    venv = envs.clone_env("bare", home / "venvs" / "det")
    (home / ".config" / "pip").mkdir(parents=True)
    (home / ".config" / "pip" / "pip.conf").write_text(f"[global]\nindex-url = {SECRETS['PIP_INDEX_URL']}\n")
    pylib = home / "projects" / "E2FGVI" / "lib"
    (pylib / "mmcv").mkdir(parents=True)
    scratch = root / "scratch" / USER / "lib"
    scratch.mkdir(parents=True)
    free_text = f" on {HOST}" if _distinctive(HOST) else ""
    # the import fails with the home path, a token, a private index, the user and the host in its message
    (pylib / "mmcv" / "__init__.py").write_text(
        "raise ImportError(%r)\n" % (
            f"cannot load {pylib}/mmcv/_ext.cpython-311-x86_64-linux-gnu.so built by {USER}@{HOST}{free_text}: "
            f"fetch from {SECRETS['PIP_INDEX_URL']} (token {SECRETS['GITHUB_TOKEN']}), "
            f"rendezvous {HOST}:29500, mirror http://{HOST}:3141/simple, contact {USER}@example.org"))
    env = {
        "HOME": str(home), "USER": USER, "LOGNAME": USER,
        "PYTHONPATH": f"{ROOT}:{pylib}:{scratch}",
        "PIP_EXTRA_INDEX_URL": f"http://{HOST}:3141/simple https://download.pytorch.org/whl/cpu",
        "LD_LIBRARY_PATH": f"/opt/conda/envs/research/lib:{home}/cuda-12.1/lib64",
        "CONDA_PREFIX": f"{home}/miniconda3/envs/det",
        **SECRETS,
    }
    out = {}
    for fmt in ("json", "markdown"):
        proc = run_cli("check", "--python", str(venv), "--format", fmt, env=env)
        assert proc.returncode in (0, 1), proc.stderr
        out[fmt] = proc.stdout
    proc = run_cli("check", "--python", str(venv), "--format", "json", "--no-redact", env=env)
    out["raw"] = proc.stdout
    return {"home": home, "venv": venv, "out": out, "env": env}


def forbidden(seeded) -> list[str]:
    home = str(seeded["home"])
    values = [home, USER, "zoe.quill", "pypi.corp.example.com", "corp.example.com", *SECRETS.values(),
              "pIpT0kenXYZ123"]
    return values


def test_the_raw_report_does_contain_the_seeded_data(seeded):
    # the corpus reaches the report: otherwise the tests below would pass vacuously
    raw = seeded["out"]["raw"]
    assert str(seeded["home"]) in raw and "pIpT0kenXYZ123" in raw and SECRETS["GITHUB_TOKEN"] in raw
    assert f"{USER}@{HOST}" in raw and f"http://{HOST}:3141/simple" in raw


@pytest.mark.parametrize("fmt", ["json", "markdown"])
def test_no_personal_data_or_secret_survives(seeded, fmt):
    text = seeded["out"][fmt]
    for value in forbidden(seeded):
        assert value not in text, f"{value!r} leaked into the {fmt} report"
        assert value.lower() not in text.lower(), f"{value!r} leaked (other case) into the {fmt} report"
    # the real host name: everywhere if it is distinctive, else where it is unambiguous
    if _distinctive(HOST):
        assert not re.search(rf"(?<![A-Za-z0-9]){re.escape(HOST)}(?![A-Za-z0-9])", text, re.I)
    for spot in (f"@{HOST}", f"{HOST}:29500", f"http://{HOST}:3141"):
        assert spot not in text
    for spot in ("<user>@<host>", "<host>:29500", "http://<host>:3141/simple"):
        assert spot in text


def test_json_report_still_says_where_things_are(seeded):
    data = json.loads(seeded["out"]["json"])
    validate_report(data)
    assert data["python"]["executable"] == "~/venvs/det/bin/python"
    assert data["python"]["prefix"] == "~/venvs/det"
    env = data["environment"]
    assert env["PIP_INDEX_URL"] == "https://***@<private-host>/simple"
    assert env["PIP_EXTRA_INDEX_URL"] == "http://<host>:3141/simple https://download.pytorch.org/whl/cpu"
    assert env["LD_LIBRARY_PATH"] == "/opt/conda/envs/research/lib:~/cuda-12.1/lib64"
    assert env["CONDA_PREFIX"] == "~/miniconda3/envs/det"
    assert env["PYTHONPATH"].split(":")[1:] == ["~/projects/E2FGVI/lib", str(Path(
        seeded["home"]).parent / "scratch" / "<user>" / "lib")]
    # only the allow-list: the secret variables are not even named
    for name in SECRETS:
        if name not in ("PIP_INDEX_URL",):
            assert name not in env
    mmcv = data["components"]["mmcv"]
    assert mmcv["load"]["status"] == "import_error"
    assert mmcv["load"]["error"]["message"].startswith(
        "cannot load ~/projects/E2FGVI/lib/mmcv/_ext.cpython-311-x86_64-linux-gnu.so built by <user>@<host>")
    assert "~/projects/E2FGVI/lib/mmcv/__init__.py" in mmcv["load"]["error"]["traceback"]
    kinds = {r["kind"]: r["count"] for r in data["redactions"]}
    # the token is set in the environment too: it goes as a known value (secret_value) before its shape is seen
    for kind in ("home", "user", "host", "url_credentials", "url_host", "secret_value"):
        assert kinds.get(kind, 0) > 0, (kind, kinds)


def test_markdown_report_embeds_the_redacted_json(seeded, tmp_path):
    md = seeded["out"]["markdown"]
    assert "<details>" in md and "Redacted before sharing:" in md
    # outside code, placeholders are escaped: GitHub would swallow <user> as an HTML tag
    summary = md.split("<details>")[0]
    prose = re.sub(r"(`+).*?\1", "", summary)
    assert "<user>" in summary and "<user>" not in prose and "<host>" not in prose
    p = tmp_path / "issue.md"
    p.write_text(md)
    report = load_report(p)
    validate_report(report.to_dict())
    assert report.python.executable == "~/venvs/det/bin/python"


def test_no_redact_keeps_everything(seeded):
    data = json.loads(seeded["out"]["raw"])
    assert data["redactions"] == [] and data["redacted"] is False and data["extra"] == {}
    assert data["python"]["executable"] == f"{seeded['home']}/venvs/det/bin/python"
