"""Remove personal data from a report before it leaves the machine.

Home directory -> "~", user and host names -> "<user>" / "<host>", credentials in
URLs -> "***", values of secret-looking environment variables -> "***". The
report's ``redactions`` lists what kind was replaced how often, never the value.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from envdoctor.facts import Redaction, Report

_URL_CRED = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<cred>[^/@\s:]+(?::[^/@\s]*)?)@")
_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|_KEY$|CREDENTIAL|AUTH)", re.I)
_TOKEN_VALUE = re.compile(r"\b(ghp_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|hf_[A-Za-z0-9]{20,}|"
                          r"AKIA[0-9A-Z]{16}|glpat-[A-Za-z0-9_-]{20,}|xox[bap]-[A-Za-z0-9-]{10,})\b")


class Redactor:
    def __init__(self, home: Optional[str] = None, user: Optional[str] = None,
                 host: Optional[str] = None) -> None:
        self.home = home if home is not None else str(Path.home())
        self.user = user if user is not None else _safe(getpass.getuser)
        self.host = host if host is not None else _safe(socket.gethostname)
        self.counts: Counter[str] = Counter()
        words = []
        # a user or host name of 1-2 letters would match everywhere; skip those and "root"
        for kind, value in (("user", self.user), ("host", self.host)):
            if value and len(value) >= 3 and value not in ("root", "localhost"):
                words.append((kind, re.compile(r"(?<![A-Za-z0-9])" + re.escape(value) + r"(?![A-Za-z0-9])")))
        self._words = words

    def text(self, s: str) -> str:
        s, n = _URL_CRED.subn(lambda m: m.group("scheme") + "***@", s)
        self.counts["url_credentials"] += n
        s, n = _TOKEN_VALUE.subn("***", s)
        self.counts["tokens"] += n
        if self.home and self.home not in ("/", "") and self.home in s:
            self.counts["home"] += s.count(self.home)
            s = s.replace(self.home, "~")
        for kind, pat in self._words:
            s, n = pat.subn(f"<{kind}>", s)
            self.counts[kind] += n
        return s

    def value(self, obj: Any, key: str = "") -> Any:
        if isinstance(obj, str):
            if key and _SECRET_NAME.search(key) and obj:
                self.counts["secret_env"] += 1
                return "***"
            return self.text(obj)
        if isinstance(obj, dict):
            return {self.text(k) if isinstance(k, str) else k: self.value(v, k if isinstance(k, str) else "")
                    for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.value(v, key) for v in obj]
        return obj

    def redactions(self) -> list[Redaction]:
        return [Redaction(kind=k, count=v) for k, v in sorted(self.counts.items()) if v]


def _safe(fn: Any) -> Optional[str]:
    try:
        return fn()
    except Exception:
        return None


def redact_report(report: Report, redactor: Optional[Redactor] = None) -> Report:
    """A redacted copy of the report (the original is left alone)."""
    r = redactor or Redactor()
    data = report.to_dict()
    data.pop("redactions", None)
    clean = r.value(data)
    out = Report.from_dict(clean)
    out.redactions = r.redactions()
    return out


def env_home() -> str:
    return os.path.expanduser("~")
