"""The target's layout (prefix, install paths, environment markers, user scheme, pip's version).

`fix --apply` needs it before its first probe: the prefix names the environment's lock, and pip's
decisions (where a wheel's files go, which requirement markers hold) depend on the rest. One light
process of the target (scripts/target_layout.py), run like every probe script: in a scratch
directory, with a timeout, its answer through a private file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class TargetInfo:
    python: str
    prefix: str
    markers: dict[str, str]
    paths: dict[str, str]
    pip: Optional[str]
    user: dict[str, Any] = field(default_factory=dict)  # site, enabled, paths (the user scheme's)
    bytecode: Optional[dict[str, str]] = None  # magic (hex), tag: the target's byte-code files
    externally_managed: bool = False  # PEP 668: pip refuses to install here (and so does envdoctor)

    @property
    def windows(self) -> bool:
        return self.markers.get("os_name") == "nt"

    @classmethod
    def from_data(cls, python: str, data: dict[str, Any]) -> "TargetInfo":
        return cls(python, data["prefix"], data["markers"], data["paths"], data.get("pip"), data.get("user") or {},
                   data.get("bytecode"), bool(data.get("externally_managed")))
