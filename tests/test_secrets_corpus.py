"""A corpus of secrets against every output of every command (issue 10, section 3).

A real venv (a clone of the cached "bare" env) holds a real `mmcv` package whose import
prints secrets to stdout and stderr and then raises ImportError with secrets in its message:
some written into the module's source, some read from the real environment variables the
real probe passes on (values that have no recognisable shape and can only be caught by
value), one in the directory path of the module itself. HOME holds a pip.conf and a
.netrc with credentials; proxy and index URLs carry passwords. Every format of check (text,
json, markdown, -o), diff (text, json) and fix (text, json; dry run and --apply) must
contain none of the values; --no-redact must show them (so the test cannot pass vacuously).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from envdoctor.redact_secrets import Scrubber, collect, qualifies
from tests import envs
from tests.conftest import real_env, run_cli, validate_report

# Values without a provider shape: only their variable's name tells they are secret.
SHAPELESS = {
    "WANDB_API_KEY": "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMIK7MDENGbPxRfiCYzz9Qk2LmN3oP",
    "MY_SERVICE_PASSWD": "Tr0ub4dor-and-3",
    "DATABASE_SECRET": "plum-velvet-orbit-1987",
}
# Provider tokens (made up, in each issuer's documented shape).
SHAPED = {
    "GITHUB_TOKEN": "ghp_ZyXwVuTsRqPoNmLkJiHgFeDcBa9876543210",
    "GH_FINEGRAINED": "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ",
    "AWS_ACCESS_KEY_ID": "AKIAQWERTYUIOPASDFGH",
    "HF_TOKEN": "hf_QwErTyUiOpAsDfGhJkLzXcVbNm123456",
    "OPENAI_API_KEY": "sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90",
    "SLACK_BOT_TOKEN": "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
}
PROXY_PASSWORD = "Pr0xy-S3cret-77"
INDEX_TOKEN = "idx-Tok3n-4455aa"
PIPCONF_TOKEN = "pipconf-T0ken-9911"
NETRC_PASSWORD = "netrc-Pa55word-42"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkFsIn0"
       ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
PEM_BODY = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0"
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----"
# a key cut short (no END line) as the last line of a message: fix's one-line problem summary shows only it
TRUNCATED_KEY_LINE = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAABlwAAAAdzc2gtcn"
TRUNCATED_KEY = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{TRUNCATED_KEY_LINE}"
PG_SHORT = "pg7!x"  # short: only its context (PGPASSWORD=...) says it is one
CLI_PASSWORD = "hunter2-cli"
# In the module's directory name: a secret in a path.
PATH_SECRET = SHAPELESS["DATABASE_SECRET"]

ENV = {
    **SHAPELESS, **SHAPED,
    "PGPASSWORD": PG_SHORT,
    "HTTPS_PROXY": f"http://proxyuser:{PROXY_PASSWORD}@proxy.corp.example:3128",
    "PIP_EXTRA_INDEX_URL": f"https://__token__:{INDEX_TOKEN}@pypi.corp.example/simple",
    # not secrets: must stay as they are
    "TOKENIZERS_PARALLELISM": "false", "AWS_DEFAULT_REGION": "eu-west-1",
}
ALL = [*SHAPELESS.values(), *SHAPED.values(), PROXY_PASSWORD, INDEX_TOKEN, PIPCONF_TOKEN, NETRC_PASSWORD, JWT,
       PEM_BODY, PG_SHORT, CLI_PASSWORD, TRUNCATED_KEY_LINE]

MODULE = '''import os, sys
print("wandb login " + os.environ["WANDB_API_KEY"])
sys.stderr.write("aws " + os.environ["AWS_SECRET_ACCESS_KEY"] + " " + os.environ["HF_TOKEN"] + "\\n")
raise ImportError(
    "cannot connect: PGPASSWORD=%s psql --password %s; key %s; secret %s; db %s; proxy %s; index %s; "
    "pip.conf %s; netrc %s; github %s %s; aws %s; openai %s; slack %s; jwt %s; %s"
    % (os.environ["PGPASSWORD"], CLI, os.environ["WANDB_API_KEY"], os.environ["AWS_SECRET_ACCESS_KEY"],
       os.environ["MY_SERVICE_PASSWD"], os.environ["HTTPS_PROXY"], os.environ["PIP_EXTRA_INDEX_URL"], PIPCONF,
       NETRC, os.environ["GITHUB_TOKEN"], os.environ["GH_FINEGRAINED"], os.environ["AWS_ACCESS_KEY_ID"],
       os.environ["OPENAI_API_KEY"], os.environ["SLACK_BOT_TOKEN"], JWT, PEM)
    + " hf " + os.environ["HF_TOKEN"] + "\\n" + KEY)
'''


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    real_env("bare")
    root = tmp_path_factory.mktemp("secrets")
    home = root / "home"
    (home / ".config" / "pip").mkdir(parents=True)
    (home / ".config" / "pip" / "pip.conf").write_text(
        f"[global]\nindex-url = https://ci-bot:{PIPCONF_TOKEN}@pypi.internal.example/simple\n")
    (home / ".netrc").write_text(f"machine pypi.internal.example login ci-bot password {NETRC_PASSWORD}\n")
    venv = envs.clone_env("bare", root / "venv")
    pkg = root / f"proj-{PATH_SECRET}" / "lib" / "mmcv"  # a secret in a directory name
    pkg.mkdir(parents=True)
    consts = f"CLI = {CLI_PASSWORD!r}\nPIPCONF = {PIPCONF_TOKEN!r}\nNETRC = {NETRC_PASSWORD!r}\n" \
             f"JWT = {JWT!r}\nPEM = {PEM!r}\nKEY = {TRUNCATED_KEY!r}\n"
    (pkg / "__init__.py").write_text(consts + MODULE)
    # the package is found through a .pth in the real venv (as `pip install -e` would do)
    (envs.site_packages(venv) / "proj.pth").write_text(str(pkg.parent) + "\n")
    env = {"HOME": str(home), **ENV}
    return {"root": root, "venv": venv, "env": env}


def _run(corpus, *args: str):
    proc = run_cli(*args, env=corpus["env"], cwd=corpus["root"])
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    return proc


def _leaks(text: str) -> list[str]:
    return [v for v in ALL if v in text]


@pytest.fixture(scope="module")
def raw(corpus):
    proc = _run(corpus, "check", "--python", str(corpus["venv"]), "-f", "json", "--no-redact")
    assert proc.returncode in (0, 1), proc.stderr
    path = corpus["root"] / "raw.json"
    path.write_text(proc.stdout)
    # an older report (unredacted, as a user might keep it) whose mmcv failed with another secret-laden error:
    # diff shows both messages
    data = json.loads(proc.stdout)
    err = data["components"]["mmcv"]["load"]["error"]
    err["message"] = "earlier: " + err["message"]
    (corpus["root"] / "older.json").write_text(json.dumps(data))
    return proc.stdout


def test_the_corpus_reaches_the_unredacted_report(raw):
    # every value really is in the raw report: the tests below cannot pass by accident
    missing = [v for v in ALL if v not in raw and json.dumps(v)[1:-1] not in raw]
    assert not missing, missing
    data = json.loads(raw)
    assert data["components"]["mmcv"]["load"]["status"] == "import_error"


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_check_outputs_hold_no_secret(corpus, raw, fmt):
    proc = _run(corpus, "check", "--python", str(corpus["venv"]), "-f", fmt, "-v")
    assert proc.returncode in (0, 1), proc.stderr
    assert not _leaks(proc.stdout + proc.stderr), fmt
    out = corpus["root"] / f"report.{fmt}"
    proc = _run(corpus, "check", "--python", str(corpus["venv"]), "-f", fmt, "-o", str(out))
    assert proc.returncode in (0, 1), proc.stderr
    text = out.read_text()
    assert not _leaks(text + proc.stdout + proc.stderr), fmt
    if fmt == "json":
        data = json.loads(text)
        validate_report(data)
        msg = data["components"]["mmcv"]["load"]["error"]["message"]
        assert "PGPASSWORD=***" in msg and "--password ***" in msg and "BEGIN RSA" not in msg
        assert "proj-***" in data["components"]["mmcv"]["load"]["error"]["traceback"]
        kinds = {r["kind"] for r in data["redactions"]}
        assert {"secret_value", "token", "private_key"} <= kinds
        assert data["environment"].get("PIP_EXTRA_INDEX_URL") == "https://***@<private-host>/simple"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_diff_outputs_hold_no_secret(corpus, raw, fmt):
    a, b = corpus["root"] / "older.json", corpus["root"] / "raw.json"
    proc = _run(corpus, "diff", str(a), str(b), "-f", fmt)
    assert proc.returncode in (0, 1), proc.stderr
    assert "mmcv" in proc.stdout and "earlier" in proc.stdout  # the messages are shown ...
    assert not _leaks(proc.stdout + proc.stderr)  # ... redacted
    raw = _run(corpus, "diff", str(a), str(b), "-f", fmt, "--no-redact").stdout
    assert SHAPELESS["WANDB_API_KEY"] in raw
    # against a fresh probe: both sides
    out = corpus["root"] / f"diff.{fmt}"
    proc = _run(corpus, "diff", str(a), "--python", str(corpus["venv"]), "-f", fmt, "-o", str(out))
    assert proc.returncode in (0, 1), proc.stderr
    assert not _leaks(out.read_text() + proc.stdout + proc.stderr)


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("apply", [False, True])
def test_fix_outputs_hold_no_secret(corpus, fmt, apply):
    args = ["fix", "--python", str(corpus["venv"]), "-f", fmt] + (["--apply", "--yes"] if apply else [])
    proc = _run(corpus, *args)
    assert proc.returncode in (0, 1), proc.stderr
    assert not _leaks(proc.stdout + proc.stderr)
    assert "mmcv" in proc.stdout + proc.stderr
    out = corpus["root"] / f"fix-{apply}.{fmt}"
    proc = _run(corpus, *args, "-o", str(out))
    assert not _leaks(out.read_text() + proc.stdout + proc.stderr)
    if fmt == "json":
        validate_report(json.loads(out.read_text()))


def test_fix_no_redact_shows_raw_values(corpus):
    proc = _run(corpus, "fix", "--python", str(corpus["venv"]), "-f", "json", "--no-redact")
    assert proc.returncode in (0, 1), proc.stderr
    assert SHAPELESS["WANDB_API_KEY"] in proc.stdout and SHAPED["HF_TOKEN"] in proc.stdout


def test_error_lines_hold_no_secret(corpus):
    proc = _run(corpus, "check", "--python", f"/nonexistent/{SHAPELESS['WANDB_API_KEY']}/python")
    assert proc.returncode == 2
    assert SHAPELESS["WANDB_API_KEY"] not in proc.stderr and "***" in proc.stderr


def test_conda_target_variables_are_secrets(tmp_path):
    (tmp_path / "conda-meta").mkdir()
    (tmp_path / "conda-meta" / "state").write_text(json.dumps({"env_vars": {"COMET_API_KEY": "c0met-KEY-abcdef"}}))
    (tmp_path / "etc" / "conda" / "activate.d").mkdir(parents=True)
    (tmp_path / "etc" / "conda" / "activate.d" / "env.sh").write_text("export NEPTUNE_API_TOKEN='nept-Tok-98765'\n")
    os.mkfifo(tmp_path / "etc" / "conda" / "activate.d" / "fifo.sh")  # never read (it would block)
    values = collect({}, [str(tmp_path)])
    assert "c0met-KEY-abcdef" in values and "nept-Tok-98765" in values


@pytest.mark.parametrize("value, expected", [
    ("1", False), ("true", False), ("password", False), ("aaaaaaaaaaaa", False), ("short7!", False),
    ("eu-west-1", True), ("Tr0ub4dor-and-3", True),
])
def test_minimum_for_replacing_a_value_everywhere(value, expected):
    assert qualifies(value) is expected


def test_short_and_common_values_are_not_replaced_everywhere():
    s = Scrubber(collect({"MY_TOKEN": "1", "DEBUG_PASSWORD": "true", "APP_SECRET_FILE": "/etc/app/secret.key",
                          "TOKENIZERS_PARALLELISM": "false"}, []))
    text = "torch 2.1 true false /etc/app/secret.key"
    assert s.text(text) == text
    assert s.text("MY_TOKEN=1 PGPASSWORD=ab --token xy") == "MY_TOKEN=*** PGPASSWORD=*** --token ***"


def test_scrubbing_is_idempotent():
    s = Scrubber(collect({"WANDB_API_KEY": SHAPELESS["WANDB_API_KEY"]}, []))
    text = f"{PEM}\nthen more; key {SHAPELESS['WANDB_API_KEY']}, url https://u:{PROXY_PASSWORD}@h/x token={JWT}"
    once = s.text(text)
    assert not _leaks(once) and "then more" in once
    assert s.text(once) == once


def test_secret_in_url_encoded_form():
    value = "p@ss:w/rd-Very-Long"
    s = Scrubber([value])
    assert value not in s.text(f"https://user:{value}@h/") and "p%40ss%3Aw%2Frd" not in s.text(
        "https://user:p%40ss%3Aw%2Frd-Very-Long@h/")



@pytest.mark.parametrize("fmt", ["text", "json"])
def test_inspect_output_is_redacted(tmp_path, fmt):
    import torch

    so = sorted(Path(torch.__file__).parent.glob("_C*.so"))
    if not so:
        pytest.skip("torch has no _C*.so here")
    home = tmp_path / "zoequill-home"
    lib = home / f"proj-{PATH_SECRET}" / "lib"
    lib.mkdir(parents=True)
    (lib / so[0].name).write_bytes(so[0].read_bytes())
    env = {"HOME": str(home), "DATABASE_SECRET": PATH_SECRET}
    proc = run_cli("inspect", str(lib / so[0].name), "-f", fmt, env=env)
    assert proc.returncode in (0, 1), proc.stderr
    assert str(home) not in proc.stdout and PATH_SECRET not in proc.stdout
    assert "~/proj-***/lib" in proc.stdout
    raw = run_cli("inspect", str(lib / so[0].name), "-f", fmt, "--no-redact", env=env)
    assert str(lib) in raw.stdout.replace("\n", "")
