"""Secrets: which values are secret, where they are found, and how text is scrubbed of them.

Two complementary nets (see docs/report.md, "Redaction"):

1. **Known values.** The value of every secret-named variable in envdoctor's own environment
   (which the probed interpreter inherits) and in the target's (a conda env's
   ``conda-meta/state`` variables and ``etc/conda/activate.d/*.sh`` exports), the password
   (or lone user) of every URL credential in any variable (``HTTPS_PROXY``, ``PIP_INDEX_URL``)
   or pip configuration file, and ``password`` entries of ``~/.netrc`` are replaced *wherever
   they appear*: inside import errors, tracebacks, probe output, paths. A value qualifies only
   when it is at least ``MIN_LENGTH`` (8) characters long with at least ``MIN_DISTINCT`` (5)
   different characters and is not a placeholder word: ``1``, ``true``, ``us-east``, ``aaaaaaaa``
   or ``password`` are never replaced everywhere (they would wreck the report, and reveal little).
   Names that say where a secret is kept (``*_FILE``, ``*_PATH``, ``*_DIR``) are not secrets.
2. **Shapes and contexts**, for secrets envdoctor cannot know: provider token formats (GitHub,
   Hugging Face, AWS, OpenAI, Slack, GitLab, PyPI, npm, Google, Stripe, JWTs), PEM private-key
   blocks, ``NAME=value`` / ``NAME: value`` under a secret name (``PGPASSWORD=…``, any length),
   ``--password x`` / ``--token=x`` on a command line, ``Bearer …``, ``scheme://user:pass@``.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping, Optional
from urllib.parse import quote, unquote

MASK = "***"
MIN_LENGTH = 8
MIN_DISTINCT = 5
READ_CAP = 1 << 20  # bytes read from any one configuration file

# Names under which a value is a secret, matched case-insensitively on whole
# underscore/dash/dot-separated words: GITHUB_TOKEN, hf_token, AWS_SECRET_ACCESS_KEY, db-password.
SECRET_WORD = re.compile(
    r"(?:^|[_\-.])(?:TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|KEY|APIKEY|CREDENTIALS?|AUTH|AUTHORIZATION|COOKIE"
    r"|SESSION|SIGNATURE)S?(?:$|[_\-.])", re.I)
# ... and anywhere inside a name (PGPASSWORD, MYSQLPASSWORD, OPENAI_APIKEY), or a whole family (AWS_*).
_SECRET_INSIDE = re.compile(r"PASSWORD|PASSWD|SECRET|APIKEY|ACCESSKEY|PRIVATEKEY|^AWS_", re.I)
# An environment variable with TOKEN anywhere (HFTOKEN, TOKENIZERS_PARALLELISM) is looked at too: its value
# still has to pass qualifies(). Report keys are not (a package called "tokenizers" is no secret).
_ENV_INSIDE = re.compile(r"TOKEN", re.I)
# Names that say where a secret is kept, not what it is.
_LOCATION = re.compile(r"[_\-.](?:FILE|FILENAME|PATH|DIR|DIRECTORY|SOCK|SOCKET|HOME|URL_FILE)$", re.I)
_PLACEHOLDERS = frozenset("""
password passwd changeme changeit secret secrets undefined disabled enabled example localhost production
development staging default none null true false yes no
""".split())


def is_secret_key(name: str) -> bool:
    """A report field or variable name whose value is a secret."""
    return bool(SECRET_WORD.search(name) or _SECRET_INSIDE.search(name)) and not _LOCATION.search(name)


def is_secret_name(name: str) -> bool:
    """An environment variable whose value, if it qualifies, is replaced everywhere."""
    return (is_secret_key(name) or bool(_ENV_INSIDE.search(name))) and not _LOCATION.search(name)


def qualifies(value: str) -> bool:
    """Long and varied enough to be replaced wherever it appears (the documented minimum)."""
    v = value.strip()
    return len(v) >= MIN_LENGTH and len(set(v)) >= MIN_DISTINCT and v.lower() not in _PLACEHOLDERS


_URL_CRED = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://(?P<cred>[^/\s@?#'\"<>]+)@")


def url_credentials(text: str) -> list[str]:
    """The secret parts of URL credentials in text: the password, or the user when it stands alone
    (``https://ghp_xxx@github.com``, ``https://__token__:pypi-xxx@``)."""
    out = []
    for m in _URL_CRED.finditer(text):
        user, colon, password = m.group("cred").partition(":")
        for part in ((password,) if colon else (user,)):
            out += [part, unquote(part)]
    return out


def _read_small(path: Path) -> str:
    """A regular file's text, at most READ_CAP bytes; '' for anything else (a FIFO must not hang us)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError):
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return os.read(fd, READ_CAP).decode("utf-8", "replace")
    except OSError:
        return ""
    finally:
        os.close(fd)


def _pip_configs(environ: Mapping[str, str], home: Optional[str]) -> list[Path]:
    out = [Path("/etc/pip.conf"), Path("/etc/xdg/pip/pip.conf")]
    if home:
        out += [Path(home, ".pip", "pip.conf"), Path(home, ".config", "pip", "pip.conf"),
                Path(home, "pip", "pip.ini"), Path(home, ".pypirc")]
    if environ.get("XDG_CONFIG_HOME"):
        out.append(Path(environ["XDG_CONFIG_HOME"], "pip", "pip.conf"))
    if environ.get("PIP_CONFIG_FILE"):
        out.append(Path(environ["PIP_CONFIG_FILE"]))
    return out


_NETRC_PASSWORD = re.compile(r"(?:^|\s)password\s+(\S+)")
_CONF_PASSWORD = re.compile(r"^\s*password\s*[=:]\s*(\S.*?)\s*$", re.M | re.I)
_EXPORT = re.compile(r"^\s*(?:export\s+|set\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*?)\s*$", re.M)


def _unquote_shell(v: str) -> str:
    return v[1:-1] if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"" else v


def environment_secrets(environ: Mapping[str, str]) -> list[str]:
    out = []
    for name, value in environ.items():
        if is_secret_name(name):
            out.append(value)
        out += url_credentials(value)
    return out


def config_secrets(environ: Mapping[str, str], home: Optional[str]) -> list[str]:
    out = []
    for p in _pip_configs(environ, home):
        text = _read_small(p)
        out += url_credentials(text) + _CONF_PASSWORD.findall(text)
    netrc = environ.get("NETRC") or (os.path.join(home, ".netrc") if home else None)
    if netrc:
        out += _NETRC_PASSWORD.findall(_read_small(Path(netrc)))
    return out


def target_secrets(prefix: Optional[str]) -> list[str]:
    """Secrets the target environment sets for itself: conda env variables and activation scripts, pip.conf."""
    if not prefix:
        return []
    root = Path(prefix)
    out: list[str] = []
    try:
        state = json.loads(_read_small(root / "conda-meta" / "state") or "{}")
    except ValueError:
        state = {}
    env_vars = state.get("env_vars") if isinstance(state, dict) else None
    if isinstance(env_vars, dict):
        out += environment_secrets({str(k): str(v) for k, v in env_vars.items()})
    scripts = root / "etc" / "conda" / "activate.d"
    try:
        names = sorted(os.listdir(scripts))[:50]
    except OSError:
        names = []
    for n in names:
        text = _read_small(scripts / n)
        out += environment_secrets({m.group("name"): _unquote_shell(m.group("value"))
                                    for m in _EXPORT.finditer(text)})
    for conf in ("pip.conf", "pip.ini"):
        out += url_credentials(_read_small(root / conf))
    return out


def collect(environ: Optional[Mapping[str, str]] = None, prefixes: Iterable[Optional[str]] = ()) -> list[str]:
    """Every qualifying secret value envdoctor can know of, longest first."""
    env = os.environ if environ is None else environ
    values = environment_secrets(env) + config_secrets(env, env.get("HOME") or env.get("USERPROFILE"))
    for p in prefixes:
        values += target_secrets(p)
    return sorted({v.strip() for v in values if isinstance(v, str) and qualifies(v)}, key=len, reverse=True)


# --- shapes and contexts ----------------------------------------------------------------------------------

TOKEN_SHAPES = re.compile(
    r"(?<![A-Za-z0-9_])(?:"
    r"gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"  # GitHub
    r"|hf_[A-Za-z0-9]{20,}"  # Hugging Face
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key ids
    r"|glpat-[A-Za-z0-9_\-]{20,}"  # GitLab
    r"|pypi-[A-Za-z0-9_\-]{40,}"  # PyPI API tokens
    r"|xox[a-z]-[A-Za-z0-9\-]{10,}|xapp-[A-Za-z0-9\-]{10,}"  # Slack
    r"|sk-[A-Za-z0-9_\-]{32,}"  # OpenAI / Anthropic-style secret keys
    r"|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe
    r"|npm_[A-Za-z0-9]{36}"  # npm
    r"|AIza[0-9A-Za-z_\-]{35}"  # Google API keys
    r"|eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}"  # JWTs
    r")(?![A-Za-z0-9_])")
PEM_KEY = re.compile(r"-----BEGIN (?P<kind>[A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
                     re.S)
# "Authorization: Bearer xyz", "token xyz" in messages and tracebacks.
BEARER = re.compile(r"(?P<pre>\b(?:Bearer|Basic|token)\s+)(?P<value>[A-Za-z0-9_\-.=+/]{16,})", re.I)
_SECRET_NAME_TAIL = r"(?:password|passwd|passphrase|secret|token|apikey|api[_\-]key|access[_\-]?key" \
                    r"|private[_\-]?key|secret[_\-]?key|[_\-.]key|credentials?)"
# NAME=value, NAME: value, "name": "value" under a secret name: PGPASSWORD=x, WANDB_API_KEY: x
KV_SECRET = re.compile(
    r"(?P<pre>(?<![A-Za-z0-9_\-.])[A-Za-z0-9_\-.]*?" + _SECRET_NAME_TAIL + r"[\"']?\s*[=:]\s*[\"']?)"
    r"(?P<value>[^\s\"',;)}\]]+)", re.I)
# --password x, --token=x, --api-key x on a command line
CLI_SECRET = re.compile(
    r"(?P<pre>(?<![\w\-])--?[A-Za-z0-9_\-]*?(?:password|passwd|passphrase|secret|token|api-?key|apikey"
    r"|access-key|private-key|auth)(?:=|\s+))(?P<value>(?!-)[^\s\"']+)", re.I)
URL_CRED_MASK = re.compile(r"(?P<pre>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<value>[^/\s@?#'\"<>]+)(?=@)")
# A URL's authority with no `@` left: `user:pass` once a message was shortened inside the password
# (checks cut titles at a fixed length before the report is redacted). host:port has digits after the colon.
URL_AUTHORITY = re.compile(r"(?P<pre>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<value>[^/\s@?#'\"<>\\|`]+)")


def cut_credentials(netloc: str) -> bool:
    """Whether a URL authority without `@` is credentials cut short, not a host and port."""
    if "@" in netloc or netloc.startswith("["):
        return False
    _host, colon, port = netloc.partition(":")
    return bool(colon and port) and not port.isdigit()




class Scrubber:
    """Replaces secrets in text (known values, shapes, contexts); counts per kind, never keeps a value."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self.counts: Counter[str] = Counter()
        self._values: list[str] = []
        self._pattern: Optional[re.Pattern[str]] = None
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        new = [v for v in values if qualifies(v) and v not in self._values]
        if not new:
            return
        self._values += new
        spellings = set(self._values) | {quote(v, safe="") for v in self._values}  # in a URL: %40 for @
        alt = "|".join(re.escape(s) for s in sorted(spellings, key=len, reverse=True))
        self._pattern = re.compile(alt)

    def _mask(self, kind: str):
        def repl(m: re.Match[str]) -> str:
            if m.group("value") == MASK:
                return m.group(0)
            self.counts[kind] += 1
            return m.group("pre") + MASK
        return repl

    def _cut_credentials(self, m: re.Match[str]) -> str:
        if m.group("value") == MASK or not cut_credentials(m.group("value")):
            return m.group(0)
        self.counts["url_credentials"] += 1
        return m.group("pre") + MASK

    def values(self, s: str) -> str:
        if self._pattern is None or not s:
            return s
        s, n = self._pattern.subn(MASK, s)
        self.counts["secret_value"] += n
        return s

    def text(self, s: str, urls: bool = True) -> str:
        """Known values first (they may sit inside any of the shapes), then shapes and contexts.
        ``urls=False`` when the caller masks URL credentials itself (the report's redactor does, with hosts)."""
        if not s:
            return s
        s = self.values(s)
        if "PRIVATE KEY-----" in s:
            # its lines are learnt as known values: a later one-line excerpt (fix's problem line) has no BEGIN
            self.add(line.strip() for m in PEM_KEY.finditer(s) for line in re.split(r"\\n|\n", m.group(0))
                     if len(line.strip()) >= 16 and "PRIVATE KEY" not in line)
            # the replacement has no BEGIN line, so a second pass does not take it for a truncated block
            s, n = PEM_KEY.subn(lambda m: f"-----{m.group('kind')}PRIVATE KEY {MASK}-----", s)
            self.counts["private_key"] += n
        if urls:
            s = URL_CRED_MASK.sub(self._mask("url_credentials"), s)
            s = URL_AUTHORITY.sub(self._cut_credentials, s)
        s, n = TOKEN_SHAPES.subn(lambda m: m.group(0) if m.group(0) == MASK else MASK, s)
        self.counts["token"] += n
        s = BEARER.sub(self._mask("token"), s)
        s = KV_SECRET.sub(self._mask("token"), s)
        s = CLI_SECRET.sub(self._mask("token"), s)
        return s


_default: Optional[Scrubber] = None


def scrub(text: str) -> str:
    """Secrets only (no home, user or host): for error lines, which have no --no-redact of their own."""
    global _default
    if _default is None:
        _default = Scrubber(collect())
    return _default.text(text)
