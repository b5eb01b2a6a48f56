"""Remove personal and organisation data from a report before it leaves the machine.

One pass over the *final* report object (not per probe), so nothing a probe adds
later can slip past it. What is replaced, and by what:

- credentials in URLs (``https://user:token@host``) -> ``***``, and the host of such a
  URL -> ``<private-host>`` (a private index host is organisation data); secret query
  parameters (``?token=``) and conda tokens (``/t/<token>/``) -> ``***``;
- well-known token formats anywhere (GitHub, Hugging Face, AWS, GitLab, PyPI, Slack,
  ``Bearer ...``, ``password=...``) -> ``***``;
- values under secret-looking names (``*_TOKEN``, ``*_KEY``, ``*_SECRET``, ``*_PASSWORD``...)
  -> ``***``;
- the *values* of secret variables of envdoctor's environment and the target's, and passwords
  of pip.conf / .netrc / proxy URLs, wherever they appear -> ``***`` (``redact_secrets``: which
  values qualify, where they come from; PEM private keys, ``PGPASSWORD=x``, ``--password x``);
- the home directory (``$HOME``, its real path, the passwd entry; POSIX and Windows
  spellings) -> ``~``; other users' homes -> ``/home/<other-user>``;
- the user name -> ``<user>`` and the machine's host name -> ``<host>``, wherever they
  appear: in any text when the name is distinctive, only in unambiguous places (a path
  component, ``user@``, a URL host) when it is short or a common word;
- NVIDIA GPU UUIDs -> ``GPU-<uuid>``.

The report's ``redactions`` lists each kind with a count, never a value. Redaction
is idempotent (placeholders are never matched again) and keeps the report valid:
only strings change, and fields the schema constrains (ids, enums) are left alone.
"""

from __future__ import annotations

import getpass
import os
import platform
import re
import socket
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union
from urllib.parse import quote

from envdoctor.facts import Redaction, Report
from envdoctor.redact_secrets import cut_credentials, Scrubber, collect, is_secret_key

MASK = "***"
USER = "<user>"
HOST = "<host>"
OTHER_USER = "<other-user>"
PRIVATE_HOST = "<private-host>"

# Names too common to replace in free text: a user called "data" must not turn
# "data" into "<user>" everywhere. They are still replaced where a user or host
# name is unambiguous (a path component, user@, a URL host).
COMMON_WORDS = frozenset("""
admin administrator anaconda app apps bin box build builder ci conda cuda daemon data debian default desktop dev
developer docker ec2-user fedora gpu guest home host jenkins lab laptop lib linux local localhost mac main master
mmcv node nobody nvidia opt other pc pip private public python root runner server shared src test tester torch
torchvision ubuntu user users var vm windows work worker workstation www
""".split()) | frozenset(  # the report's own vocabulary: enum values and sources
    ("ok missing import_error crash timeout skipped error warning info full quick none nvml nvidia-smi procfs "
     "recorded wheel compat").split())
# Path components a system is full of: a user with such a name (a "conda" user in a
# container) is replaced only right under a home parent (/home/conda), never in /opt/conda.
SYSTEM_DIRS = frozenset("""
bin boot cache conda cuda dev envs etc home include lib lib64 local mnt nvidia opt pkgs proc python root run sbin
scripts share site-packages src srv sys tmp usr var
""".split())
# Directories under /home (or C:\\Users) that belong to no person.
NOT_PERSONAL_HOMES = frozenset({"linuxbrew", "shared", "public", "default", "all users", "default user",
                                "defaultapppool", "~"})

# Keys that name a field rather than carry data (report fields, env var names):
# never rewritten, so a user called "jobs" does not turn MAX_JOBS into MAX_<user>.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.()\s]*$")

_URL = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<netloc>[^/\s?#'\"<>\\|`]*)"
                  r"(?P<rest>[^\s'\"<>`]*)")
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;](?:[^=&\s#]*?)(?:token|key|secret|password|passwd|signature|sig|auth|credential)[^=&\s#]*=)"
    r"(?P<value>[^&\s#'\"]+)", re.I)
_CONDA_TOKEN = re.compile(r"(?P<pre>/t/)(?P<value>[^/\s]+)(?=/)")

_GPU_UUID = re.compile(r"\bGPU-[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")

_WIN_HOME = re.compile(r"^(?P<drive>[A-Za-z]):[\\/]+(?P<rest>.*)$")
# After a home path: a separator, a quote, the end... but not more of a name (/home/al vs /home/alice).
_PATH_END = r"(?![\w\-]|\.[\w\-])"
_SEP = r"[\\/]+"
_NAME = r"[^\\/\s:;'\"<>`|*?,()\[\]{}]+"
# Someone else's home (a colleague's venv, a shared cluster): the name goes, the shape stays.
_OTHER_HOME = re.compile(
    r"(?P<pre>(?:(?:(?<=://)|(?<![\w.\\/~\-]))(?:/home|/Users|/export/home|/usr/home|(?:/mnt)?/[a-z]/Users)"
    r"|(?<![\w.\-])[A-Za-z]:[\\/]+Users)[\\/]+)"
    # a Windows name may hold spaces ("Alice Smith"), but then a separator must follow it
    r"(?P<name>" + _NAME + r"(?: " + _NAME + r")*(?=[\\/])|" + _NAME + ")" + _PATH_END, re.I)

Names = Union[str, Sequence[str], None]


@dataclass(frozen=True)
class Identity:
    """What identifies this machine and its user: the values the report must not contain."""

    homes: tuple[str, ...]
    users: tuple[str, ...]
    hosts: tuple[str, ...]


def _safe(fn: Callable[[], Any]) -> Optional[str]:
    try:
        value = fn()
    except Exception:  # a missing passwd entry or odd socket set-up must not stop the report
        return None
    return value if isinstance(value, str) else None


def _uniq(values: Iterable[Optional[str]]) -> tuple[str, ...]:
    out: list[str] = []
    for v in values:
        if v and v not in out:
            out.append(v)
    return tuple(out)


def _realpath(path: str) -> Optional[str]:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return None


def machine_identity() -> Identity:
    """This machine's home directories, user names and host names, from every source that names them."""
    pw_dir = pw_name = None
    try:
        import pwd

        entry = pwd.getpwuid(os.getuid())
        pw_dir, pw_name = entry.pw_dir, entry.pw_name
    except Exception:  # Windows, or a uid without passwd entry (containers)
        pass
    homes: list[Optional[str]] = [os.environ.get("HOME"), os.environ.get("USERPROFILE"),
                                  _safe(lambda: str(Path.home())), pw_dir]
    homes += [_realpath(h) for h in list(homes) if h]
    users = [os.environ.get(k) for k in ("USER", "LOGNAME", "USERNAME")] + [_safe(getpass.getuser), pw_name]
    hosts = [_safe(socket.gethostname), _safe(platform.node), os.environ.get("COMPUTERNAME"),
             os.environ.get("HOSTNAME")]
    # The short name of an FQDN too (no DNS lookup: a broken resolver must not stall the report).
    hosts += [h.split(".", 1)[0] for h in hosts if h and "." in h]
    return Identity(homes=_uniq(homes), users=_uniq(users), hosts=_uniq(hosts))


def _as_tuple(value: Names) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _distinctive(name: str) -> bool:
    """Long and uncommon enough to replace wherever it appears as a word."""
    if name.lower() in COMMON_WORDS:
        return False
    return len(name) >= 4 or (len(name) >= 2 and not name.isascii())


def _home_patterns(home: str) -> list[re.Pattern[str]]:
    """Every spelling of one home directory: as is, and for Windows homes any case and either separator."""
    home = home.rstrip("/\\") if len(home) > 1 else home
    if not home or home in ("/", "\\") or len(home) < 3:
        return []
    out = []
    win = _WIN_HOME.match(home)
    if win or "\\" in home:
        parts = [re.escape(p) for p in re.split(r"[\\/]+", win.group("rest") if win else home) if p]
        tail = _SEP + _SEP.join(parts) if parts else ""
        if win:
            d = win.group("drive")
            # C:\Users\Al, c:/users/al, /c/Users/Al (Git Bash), /mnt/c/Users/Al (WSL)
            prefix = rf"(?:(?<![\w.\-]){re.escape(d)}:|(?<![\w.\\/\-])(?:/mnt)?/{re.escape(d)}(?=[\\/]))"
        else:
            prefix = r"(?<![\w.\-])"
        out.append(re.compile(prefix + tail + _PATH_END, re.I))
        qparts = [re.escape(quote(p, errors="surrogateescape"))
                  for p in re.split(r"[\\/]+", win.group("rest") if win else home) if p]
        if win and qparts != parts:  # file:///C:/Users/Al%20Smith
            out.append(re.compile(prefix + "/" + "/".join(qparts) + _PATH_END, re.I))
    else:
        before = r"(?:(?<=://)|(?<![\w.\\/~\-]))"
        out.append(re.compile(before + re.escape(home) + _PATH_END))
        quoted = quote(home, errors="surrogateescape")  # HOME with bytes that are not UTF-8 -> %FF
        if quoted != home:  # file:// URLs spell "/home/Al Smith" as "/home/Al%20Smith"
            out.append(re.compile(before + re.escape(quoted) + _PATH_END))
    return out


class Redactor:
    """Replaces one machine's personal data in strings; counts what it replaced per kind."""

    def __init__(self, home: Names = None, user: Names = None, host: Names = None,
                 identity: Optional[Identity] = None, secrets: Optional[Iterable[str]] = None) -> None:
        ident = identity or (machine_identity() if None in (home, user, host) else Identity((), (), ()))
        self.homes = _as_tuple(home) if home is not None else ident.homes
        self.users = _as_tuple(user) if user is not None else ident.users
        self.hosts = _as_tuple(host) if host is not None else ident.hosts
        self.counts: Counter[str] = Counter()
        # None: every secret value envdoctor's environment and configuration hold (redact_secrets.collect)
        self.secrets = Scrubber(collect() if secrets is None else secrets)
        self.secrets.counts = self.counts
        self._targets: set[str] = set()
        # Longest home first, so /home/alice/x is not half-replaced by a home /home/alice/x's parent.
        self._homes = [p for h in sorted(set(self.homes), key=len, reverse=True) for p in _home_patterns(h)]
        users = [u for u in self.users if u and u not in ("~",)]
        self._user_names = {u.lower() for u in users}
        self._user_word = self._word_pattern([u for u in users if _distinctive(u)])
        self._user_component = self._component_pattern(
            [u for u in users if not _distinctive(u) and u.lower() not in SYSTEM_DIRS])
        self._user_at = self._at_pattern([u for u in users if not _distinctive(u)])
        hosts = [h for h in self.hosts if h and h.lower() not in ("localhost", "localhost.localdomain")]
        self._host_names = {h.lower() for h in hosts}
        self._host_word = self._word_pattern([h for h in hosts if _distinctive(h)], domain=True)
        self._host_at = self._at_pattern([h for h in hosts if not _distinctive(h)], after=True)

    # --- pattern builders -------------------------------------------------------------------------
    @staticmethod
    def _alternation(names: list[str]) -> Optional[str]:
        names = sorted({n for n in names if n}, key=len, reverse=True)
        return "|".join(re.escape(n) for n in names) if names else None

    def _word_pattern(self, names: list[str], domain: bool = False) -> Optional[re.Pattern[str]]:
        alt = self._alternation(names)
        if alt is None:
            return None
        # a host name takes its domain with it: gpu17.lab.corp.example -> <host>
        suffix = r"(?:\.[A-Za-z0-9\-]+)*" if domain else ""
        return re.compile(rf"(?<![A-Za-z0-9<])(?:{alt}){suffix}(?![A-Za-z0-9>])", re.I)

    def _component_pattern(self, names: list[str]) -> Optional[re.Pattern[str]]:
        alt = self._alternation(names)
        if alt is None:
            return None
        # exactly one path component: /scratch/al/envs, C:\Users\al ; never /usr/lib/al-tools
        return re.compile(rf"(?<=[\\/])(?:{alt})(?=[\\/]|$|[\s:;'\",)\]}}])", re.I)

    def _at_pattern(self, names: list[str], after: bool = False) -> Optional[re.Pattern[str]]:
        alt = self._alternation(names)
        if alt is None:
            return None
        if after:  # user@vm, vm:29500
            return re.compile(rf"(?:(?<=@)(?:{alt})(?![A-Za-z0-9\-])|(?<![\w.\-/\\<])(?:{alt})(?=:\d))", re.I)
        return re.compile(rf"(?<![\w.\-])(?:{alt})(?=@)", re.I)  # al@host

    # --- the rules ---------------------------------------------------------------------------------
    def _sub(self, pattern: Optional[re.Pattern[str]], kind: str, s: str,
             repl: Union[str, Callable[[re.Match[str]], str]]) -> str:
        if pattern is None:
            return s
        s, n = pattern.subn(repl, s)
        self.counts[kind] += n
        return s

    def _mask_group(self, kind: str) -> Callable[[re.Match[str]], str]:
        def repl(m: re.Match[str]) -> str:
            if m.group("value") == MASK:
                return m.group(0)
            self.counts[kind] += 1
            return m.group("pre") + MASK if "pre" in m.groupdict() else m.group("key") + MASK
        return repl

    def _is_own_host(self, host: str) -> bool:
        h = host.lower()
        return bool(self._host_names) and (h in self._host_names or h.split(".", 1)[0] in self._host_names)

    def _url(self, m: re.Match[str]) -> str:
        scheme, netloc, rest = m.group("scheme"), m.group("netloc"), m.group("rest")
        if "@" in netloc:
            cred, hostport = netloc.rsplit("@", 1)  # the last @ ends the credentials (pip does the same)
            if cred != MASK:
                self.counts["url_credentials"] += 1
            host, colon, port = hostport.partition(":") if not hostport.startswith("[") else (hostport, "", "")
            if host and host not in (PRIVATE_HOST, HOST):
                own = self._is_own_host(host)
                self.counts["host" if own else "url_host"] += 1
                host = HOST if own else PRIVATE_HOST
            netloc = f"{MASK}@{host}{colon}{port}"
        elif cut_credentials(netloc):
            self.counts["url_credentials"] += 1
            netloc = MASK
        else:
            host, colon, port = netloc.partition(":")
            if host and self._is_own_host(host):
                self.counts["host"] += 1
                netloc = f"{HOST}{colon}{port}"
        if rest:
            rest = _CONDA_TOKEN.sub(self._mask_group("url_token"), rest)
            rest = _QUERY_SECRET.sub(self._mask_group("url_token"), rest)
        return scheme + netloc + rest

    def _other_home(self, m: re.Match[str]) -> str:
        name = m.group("name")
        if name.lower() in NOT_PERSONAL_HOMES or name in (USER, OTHER_USER):
            return m.group(0)
        if name.lower() in self._user_names:
            self.counts["user"] += 1
            return m.group("pre") + USER
        self.counts["other_home"] += 1
        return m.group("pre") + OTHER_USER

    def add_target(self, prefix: Optional[str]) -> None:
        """Also the secrets the target environment sets for itself (conda variables, activate.d exports)."""
        if prefix and prefix not in self._targets:
            self._targets.add(prefix)
            self.secrets.add(collect({}, [prefix]))

    def text(self, s: str) -> str:
        """One string, redacted. Order matters: known secret values, URLs (their hosts), secret shapes,
        paths, names."""
        if not s:
            return s
        s = self.secrets.values(s)
        s = _URL.sub(self._url, s)
        s = self.secrets.text(s, urls=False)
        for pat in self._homes:
            s = self._sub(pat, "home", s, "~")
        s = _OTHER_HOME.sub(self._other_home, s)
        s = self._sub(self._user_word, "user", s, USER)
        s = self._sub(self._user_component, "user", s, USER)
        s = self._sub(self._user_at, "user", s, USER)
        s = self._sub(self._host_word, "host", s, HOST)
        s = self._sub(self._host_at, "host", s, HOST)
        s = self._sub(_GPU_UUID, "gpu_uuid", s, "GPU-<uuid>")
        return s

    def key(self, k: str) -> str:
        """A dict key: paths used as keys are redacted, field and variable names are not."""
        return self.secrets.values(k) if _IDENTIFIER.match(k) else self.text(k)

    def value(self, obj: Any, key: str = "", path: tuple[str, ...] = ()) -> Any:
        """Any JSON value, recursively. ``path`` locates it in the report (for fields the schema constrains)."""
        if isinstance(obj, str):
            if _protected(path):
                return obj
            if key and is_secret_key(key) and obj and obj != MASK:
                self.counts["secret_value"] += 1
                return MASK
            return self.text(obj)
        if isinstance(obj, dict):
            out: dict[Any, Any] = {}
            for k, v in obj.items():
                nk = self.key(k) if isinstance(k, str) else k
                while nk in out:  # two paths that redact alike must both survive
                    nk = f"{nk} (2)"
                out[nk] = self.value(v, k if isinstance(k, str) else "", path + (str(k),))
            return out
        if isinstance(obj, list):
            return [self.value(v, key, path + ("*",)) for v in obj]
        return obj

    def redactions(self) -> list[Redaction]:
        return [Redaction(kind=k, count=v) for k, v in sorted(self.counts.items()) if v]


# Fields whose values the schema constrains (patterns, enums) or that carry no personal data.
_PROTECTED = (
    ("schema",), ("envdoctor",), ("created",), ("mode",), ("gpu", "source"),
    ("components", "?", "load", "status"), ("findings", "*", "id"), ("findings", "*", "severity"),
    ("redactions",),
)


def _protected(path: tuple[str, ...]) -> bool:
    for pat in _PROTECTED:
        if len(path) >= len(pat) and all(p == "?" or p == q or (p == "*" and q == "*")
                                         for p, q in zip(pat, path)):
            return True
    return False


def redact_report(report: Report, redactor: Optional[Redactor] = None) -> Report:
    """A redacted copy of the report (the original is left alone).

    Redacting an already redacted report changes nothing and keeps its counts.
    """
    r = redactor or Redactor()
    r.add_target(report.python.prefix)
    data = report.to_dict()
    previous = Counter({x["kind"]: x["count"] for x in data.pop("redactions", []) or []})
    before = Counter(r.counts)  # a redactor shared by several reports counts for each one apart
    clean = r.value(data)
    counts = previous + (r.counts - before)
    return replace(Report.from_dict(clean), redacted=True,
                   redactions=[Redaction(kind=k, count=v) for k, v in sorted(counts.items()) if v])
