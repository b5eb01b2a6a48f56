"""What each command was asked, as data: cli.py parses the command line into these, commands/ read them.

Plain dataclasses (no typer, no rich): the fleet's member, the tests and the benchmarks build them too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Optional

from envdoctor.errors import UsageError

DEFAULT_TIMEOUT = 60.0
FIX_STRATEGIES = ("auto", "wheel", "compat", "build")  # fix --strategy
ON_CONFLICT = ("keep", "restore")  # fix --recover --on-conflict


def split_ids(values: Optional[Iterable[str]]) -> Optional[list[str]]:
    """`--select ED1,ED2 --select ED3` -> [ED1, ED2, ED3]; None when none was given."""
    if not values:
        return None
    return [p for v in values for p in v.split(",") if p.strip()]


def positive_timeout(value: float, option: str = "--timeout") -> float:
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"{option} {value}: give a positive number of seconds")
    return value


@dataclass
class CheckOptions:
    python: Optional[str] = None
    fmt: str = "text"
    output: Optional[str] = None
    quick: bool = False
    rules_dirs: list[str] = field(default_factory=list)
    select: Optional[list[str]] = None  # rule ids or prefixes, already split at commas
    ignore: Optional[list[str]] = None
    no_redact: bool = False
    timeout: float = DEFAULT_TIMEOUT
    verbose: bool = False
    fleet_member: Optional[str] = None
    no_fork: bool = False


@dataclass
class FixOptions:
    python: Optional[str] = None
    apply: bool = False
    strategy: str = "auto"
    index_url: Optional[str] = None
    allow_torch_change: bool = False
    yes: bool = False
    undo: bool = False
    recover: bool = False
    on_conflict: Optional[str] = None
    pins: list[str] = field(default_factory=list)  # NAME==VERSION as given
    rules_dirs: list[str] = field(default_factory=list)
    fmt: str = "text"
    output: Optional[str] = None
    timeout: float = DEFAULT_TIMEOUT
    no_redact: bool = False
    cpu: bool = False
    source: Optional[str] = None


@dataclass
class DiffOptions:
    a: str
    b: Optional[str] = None
    python: Optional[str] = None
    fmt: str = "text"
    output: Optional[str] = None
    no_redact: bool = False
    timeout: float = DEFAULT_TIMEOUT
    rules_dirs: list[str] = field(default_factory=list)


@dataclass
class InspectOptions:
    file: str
    python: Optional[str] = None
    search_dirs: list[str] = field(default_factory=list)
    fmt: str = "text"
    no_redact: bool = False


@dataclass
class FleetRunOptions:
    launcher: list[str]
    python: Optional[str] = None
    quick: bool = False
    rules_dirs: list[str] = field(default_factory=list)
    select: list[str] = field(default_factory=list)  # as given (split at commas by the command)
    ignore: list[str] = field(default_factory=list)
    no_redact: bool = False
    timeout: float = DEFAULT_TIMEOUT
    member_command: str = "envdoctor"
    fleet_timeout: Optional[float] = None
    expect: Optional[str] = None
    names: Optional[str] = None
    fmt: str = "text"
    output: Optional[str] = None
