"""Redaction rules on a corpus of strings seeded with personal data and secrets.

The identity (home, user, host) is given explicitly, so Windows homes and odd user
names can be tested on this Linux machine; the end-to-end test with the real
hostname is in test_redact_cli.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from envdoctor.facts import Component, Finding, LoadError, LoadResult, Report
from envdoctor.redact import Redactor, machine_identity, redact_report
from envdoctor.redact_secrets import Scrubber
from envdoctor.report_io import load_report
from tests.conftest import validate_report

REPORTS = Path(__file__).parent / "data" / "reports"


def red(s: str, home="/home/alice", user="alice", host="gpu-node-17") -> str:
    return Redactor(home=home, user=user, host=host).text(s)


@pytest.mark.parametrize("raw, expected", [
    # home prefixes: /home/al is not a prefix of /home/alice
    ("/home/al/venv/bin/python", "~/venv/bin/python"),
    ("/home/al", "~"),
    ("PATH=/home/al/bin:/usr/bin", "PATH=~/bin:/usr/bin"),
    ("file:///home/al/src/mmcv", "file://~/src/mmcv"),
    ("see /home/al.", "see ~."),
    ("/home/alice/venv", "/home/<other-user>/venv"),
    ("/home/al-old/x", "/home/<other-user>/x"),
    ("/home/al.bak/x", "/home/<other-user>/x"),
    ("/data/home/al/x", "/data/home/<user>/x"),
    # a short user name: only where it is unambiguously the user
    ("/scratch/al/envs/x", "/scratch/<user>/envs/x"),
    ("al@example.org", "<user>@example.org"),
    ("/usr/lib/al-tools/libx.so", "/usr/lib/al-tools/libx.so"),
    ("an alarm; al fresco", "an alarm; al fresco"),
])
def test_short_user_and_home_prefixes(raw, expected):
    assert red(raw, home="/home/al", user="al", host="vm") == expected


@pytest.mark.parametrize("raw, leaked", [
    ("https://alice:s3cr3tT0k@pypi.corp.example.com/simple", ["s3cr3tT0k", "corp.example.com", "alice"]),
    ("https://__token__:glpat-AbCdEfGhIjKlMnOpQrSt@gitlab.example.org/api/v4/projects/7/packages/pypi/simple",
     ["glpat-", "gitlab.example.org"]),
    ("https://u:p@ss@w0rd@idx.example.net:8443/simple", ["ss@w0rd", "w0rd", "idx.example.net"]),
    ("git+https://ghp_0123456789abcdefghijABCDEFGHIJ@github.com/org/private.git", ["ghp_0123"]),
    ("https://conda.anaconda.org/t/ab-1234abcd-5678-90ef/my-channel/linux-64", ["ab-1234abcd-5678-90ef"]),
    ("https://files.example.com/torch.whl?X-Amz-Signature=deadbeefcafe&X-Amz-Credential=AKIDEXAMPLE",
     ["deadbeefcafe", "AKIDEXAMPLE"]),
    ("HTTPError: 401 for url https://bob:hunter2hunter2@pypi.corp.example.com/simple/torch/",
     ["hunter2", "corp.example.com"]),
    ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345", ["abcdefghijklmnop"]),
    ("hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123 in HF_TOKEN", ["hf_AbCd"]),
    ("aws AKIAIOSFODNN7EXAMPLE / secret_access_key=wJalrXUtnFEMI/K7MDENG", ["AKIAIOSFODNN7EXAMPLE", "wJalrXUt"]),
    ('{"password": "correct horse"}', ["correct"]),
    ("xoxb-1234567890-abcdefghij", ["xoxb-1234567890"]),
])
def test_secrets_in_urls_and_messages(raw, leaked):
    out = red(raw)
    for s in leaked:
        assert s not in out, out
    assert "***" in out or "<private-host>" in out


URL = "pip: 401 for https://zoe.quill:pIpT0kenXYZ123@pypi.corp.example.com/simple/torch/"


@pytest.mark.parametrize("cut", range(URL.index("quill:") + 8, URL.index("@")))
@pytest.mark.parametrize("tail", ["", "...", "\u2026"])
def test_a_credential_url_cut_before_its_at_sign_is_still_masked(cut, tail):
    # messages are shortened (title[:160]) before the report is redacted: the cut can fall inside the
    # password, and without its `@` the rest no longer looks like a URL credential
    text = URL[:cut] + tail
    secret = URL[URL.index("quill:") + 6:cut]
    for out in (red(text), Scrubber().text(text)):
        assert secret not in out and "***" in out, out


@pytest.mark.parametrize("raw", ["http://localhost:8080", "see https://example.org:443", "http://[::1]:80",
                                 "https://pypi.org", "file://C:"])
def test_a_host_and_port_at_the_end_is_not_taken_for_a_credential(raw):
    assert red(raw) == raw and Scrubber().text(raw) == raw


def test_private_index_host_and_own_host():
    out = red("--index-url https://alice:tok@pypi.corp.example.com:8443/simple "
              "--extra-index-url http://gpu-node-17:3141/root/dev "
              "--extra-index-url http://GPU-NODE-17.lab.example.com/simple "
              "https://download.pytorch.org/whl/cu121")
    assert out == ("--index-url https://***@<private-host>:8443/simple "
                   "--extra-index-url http://<host>:3141/root/dev "
                   "--extra-index-url http://<host>/simple "
                   "https://download.pytorch.org/whl/cu121")


@pytest.mark.parametrize("host", ["vm", "ubuntu"])
def test_short_or_common_host_only_where_unambiguous(host):
    out = red(f"http://{host}:8080/simple root@{host} connect {host}:29500; /proc/sys/vm; Ubuntu 22.04",
              host=host)
    assert out == "http://<host>:8080/simple root@<host> connect <host>:29500; /proc/sys/vm; Ubuntu 22.04"


def test_distinctive_host_everywhere_with_its_domain():
    out = red("NCCL error on gpu-node-17.cluster.example.com (rank 0); GPU-NODE-17 is busy")
    assert out == "NCCL error on <host> (rank 0); <host> is busy"


@pytest.mark.parametrize("raw, expected", [
    (r"C:\Users\Alice Smith\miniconda3\envs\det\python.exe", r"~\miniconda3\envs\det\python.exe"),
    (r"c:\users\alice smith\AppData\Local", r"~\AppData\Local"),
    ("C:/Users/Alice Smith/src", "~/src"),
    (r"'C:\\Users\\Alice Smith\\x.pyd'", r"'~\\x.pyd'"),
    ("/c/Users/Alice Smith/x", "~/x"),
    ("/mnt/c/Users/Alice Smith/x", "~/x"),
    ("file:///C:/Users/Alice%20Smith/wheels", "file:///~/wheels"),
    (r"ImportError: DLL load failed while importing _ext: C:\Users\Alice Smith\x", "ImportError: DLL load failed "
     r"while importing _ext: ~\x"),
    (r"D:\Users\Alice Smith\x", r"D:\Users\<user>\x"),
    (r"C:\Users\Bob\venv", r"C:\Users\<other-user>\venv"),
    (r"C:\Users\Public\x", r"C:\Users\Public\x"),
    (r"built by asmith on DESKTOP-7QK2", "built by <user> on <host>"),
])
def test_windows_homes(raw, expected):
    assert red(raw, home=r"C:\Users\Alice Smith", user=["Alice Smith", "asmith"], host="DESKTOP-7QK2") == expected


def test_conda_env_paths():
    r = Redactor(home="/home/alice", user="alice", host="gpu-node-17")
    assert r.text("/opt/conda/envs/research/bin/python") == "/opt/conda/envs/research/bin/python"
    assert r.text("/home/alice/miniconda3/envs/x/lib") == "~/miniconda3/envs/x/lib"
    assert r.text("/shared/conda/envs/alice/bin") == "/shared/conda/envs/<user>/bin"
    assert r.text("/shared/conda/envs/alice-det/bin") == "/shared/conda/envs/<user>-det/bin"


def test_common_word_user_is_not_replaced_in_prose():
    r = Redactor(home="/home/data", user="data", host="gpu-node-17")
    assert r.text("/home/data/x /mnt/data/y no data here") == "~/x /mnt/<user>/y no data here"


def test_keys_values_and_protected_fields():
    # a host called "nvml" or a user called "error" must not break enums the schema constrains
    report = Report(mode="full")
    report.gpu.source = "nvml"
    report.components["torch"] = Component(name="torch", installed=True, load=LoadResult(
        status="import_error", error=LoadError(type="ImportError", message="error in /home/error/x: nvml")))
    report = replace(report, findings=[Finding(id="ED001", name="import-fails", severity="error", component="torch",
                                               title="error", evidence={"/home/error/site/x.so": "missing",
                                                                        "GITHUB_TOKEN": "abc", "MAX_JOBS": "4"})],
                     environment={"MAX_JOBS": "4", "PIP_INDEX_URL": "https://u:p@idx.example.com/simple"})
    out = redact_report(report, Redactor(home="/home/error", user="error", host="nvml"))
    validate_report(out.to_dict())
    assert out.gpu.source == "nvml" and out.components["torch"].load.status == "import_error"
    assert out.findings[0].severity == "error"
    assert out.components["torch"].load.error.message == "error in ~/x: nvml"
    assert out.findings[0].evidence == {"~/site/x.so": "missing", "GITHUB_TOKEN": "***", "MAX_JOBS": "4"}
    assert out.environment == {"MAX_JOBS": "4", "PIP_INDEX_URL": "https://***@<private-host>/simple"}
    kinds = {r.kind: r.count for r in out.redactions}
    assert kinds["home"] == 2 and kinds["secret_value"] == 1 and kinds["url_credentials"] == 1


def test_two_keys_that_redact_alike_both_survive():
    r = Redactor(home="/home/alice", user="alice", host="h")
    assert r.value({"/home/alice/x": 1, "~/x": 2}) == {"~/x": 1, "~/x (2)": 2}


def test_no_value_in_redactions():
    report = Report(environment={"PIP_INDEX_URL": "https://alice:tok3n@idx.example.com/simple"})
    out = redact_report(report, Redactor(home="/home/alice", user="alice", host="h"))
    assert "tok3n" not in json.dumps(out.to_dict())
    assert all(set(vars(r)) == {"kind", "count"} for r in out.redactions)


SEEDED = [
    "/home/al/x /home/alice/y C:\\Users\\Al\\z https://al:pw@idx.example.com/s?token=abc",
    "ghp_0123456789abcdefghijABCDEFGHIJ password=hunter22 http://vm:1/ root@vm vm:22 /t/abc/ GPU-12345678-1234-"
    "1234-1234-123456789abc <user> <host> *** ~ <private-host> <other-user>",
]


@pytest.mark.parametrize("s", SEEDED)
def test_text_is_idempotent(s):
    r = Redactor(home=["/home/al", "C:\\Users\\Al"], user="al", host="vm")
    once = r.text(s)
    counts = dict(r.counts)
    assert r.text(once) == once
    assert dict(r.counts) == counts, "a second pass found something to replace"


@pytest.mark.parametrize("name", sorted(p.name for p in REPORTS.glob("*.json")))
def test_real_reports_stay_valid_and_redaction_is_idempotent(name):
    report = load_report(REPORTS / name)
    # an identity that hits many strings of these reports: the env dirs and the machine
    ident = dict(home="/work/main/.cache", user=["main", "test-envs"], host=["work", "cache"])
    once = redact_report(report, Redactor(**ident))
    validate_report(once.to_dict())
    assert "/work/main/.cache" not in json.dumps(once.to_dict())
    twice = redact_report(once, Redactor(**ident))
    assert twice.to_dict() == once.to_dict()


def test_machine_identity_reads_this_machine(monkeypatch, tmp_path):
    home = tmp_path / "zoequill"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USER", "zoequill")
    ident = machine_identity()
    assert str(home) in ident.homes and "zoequill" in ident.users
    import socket

    assert socket.gethostname() in ident.hosts
    assert re.sub(r"\s", "", socket.gethostname()) == socket.gethostname()


def test_user_named_like_a_system_directory():
    r = Redactor(home="/tmp/h", user="conda", host="h")
    assert r.text("/opt/conda/envs/x /home/conda/venv conda@host") == "/opt/conda/envs/x /home/<user>/venv <user>@host"
