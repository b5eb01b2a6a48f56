"""Where a fix's distributions live: the environment's site-packages or the user's site directory.

`pip install --user` (and Microsoft Store Python, whose own site-packages is read-only, so pip
"defaults to user installation") puts packages in the user site. A fix that ran pip with
`PYTHONNOUSERSITE=1 --no-user` would not see them ("not installed", exit 0), would install beside
them into a directory the user site shadows (or that is not writable: Access denied), and would back
up only site-packages. So the plan says, per distribution, where it lives, and a fix that touches the
user site runs pip with the user site visible and `--user`, backing the user site up too. A mix it
cannot do in one pip run is refused with the reason, before anything changes.

Pure: reads the report's facts (package locations, python.user_site) and the flavour of the
target's paths; `site_writable` is the caller's observation.
"""

from __future__ import annotations

import ntpath
import os
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Optional


@dataclass
class Placement:
    user: bool = False  # pip runs with the user site visible, installs with --user
    refuse: Optional[str] = None  # why this plan cannot be applied as one transaction
    where: dict[str, str] = field(default_factory=dict)  # distribution -> "user" | "site" | "other"
    note: Optional[str] = None


def _norm(p: str, flavour: ModuleType) -> str:
    p = flavour.normpath(p)
    return p.lower() if flavour is ntpath else p  # Windows paths are case-insensitive


def where_is(location: Optional[str], user_site: Optional[str], site_packages: list[str],
             flavour: ModuleType = os.path) -> str:
    if not location:
        return "other"
    loc = _norm(location, flavour)
    if user_site and loc == _norm(user_site, flavour):
        return "user"
    if any(loc == _norm(s, flavour) for s in site_packages):
        return "site"
    return "other"


def placement(report: Any, dists: list[str], site_writable: Optional[bool] = None,
              flavour: Optional[ModuleType] = None) -> Placement:
    """Where the distributions a plan removes or replaces live, and how pip must run for them."""
    py = report.python
    fl = flavour or (ntpath if (report.host.os or "").lower() == "windows" else os.path)
    user_site = py.user_site if py.user_site_enabled else None
    out = Placement()
    for d in dists:
        pkg = report.packages.get(d)
        if pkg is not None:
            out.where[d] = where_is(getattr(pkg, "location", None), user_site, list(py.site_packages), fl)
    in_user = sorted(d for d, w in out.where.items() if w == "user")
    in_site = sorted(d for d, w in out.where.items() if w == "site")
    if in_user:
        out.user = True
        out.note = (f"{', '.join(in_user)} {'is' if len(in_user) == 1 else 'are'} installed in the user site "
                    f"({user_site}): pip runs with the user site visible and --user; the backup covers it")
    elif site_writable is False and user_site:
        out.user = True  # Microsoft Store Python: pip itself would "default to user installation"
        out.note = (f"site-packages is not writable; the fix installs into the user site ({user_site}) "
                    f"and backs it up")
    if out.user and in_site and site_writable is False:
        out.refuse = (f"{', '.join(in_site)} {'is' if len(in_site) == 1 else 'are'} in site-packages, which is "
                      f"not writable, and {', '.join(in_user) or 'the fix'} in the user site: remove "
                      f"{', '.join(in_site)} as an administrator first")
    return out


def site_writable(site_packages: list[str]) -> Optional[bool]:
    """Can this user write the environment's first site-packages? None if there is none to ask about.
    (os.access only reads; on Windows it sees the read-only attribute, not an ACL: a Store Python's
    WindowsApps folder is caught by pip's own refusal, which rolls the fix back.)"""
    for d in site_packages:
        if os.path.isdir(d):
            return os.access(d, os.W_OK)
    return None
