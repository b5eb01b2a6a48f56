"""What a fix, an undo or a recovery ended in (FixResult), and the failure that ends a transaction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional


class FixFailed(Exception):
    """A step failed; the transaction is rolled back."""


@dataclass
class FixResult:
    status: str  # verified | rolled_back | rollback_incomplete | aborted | undone | undo_refused | busy
    message: str = ""
    txn: Optional[str] = None
    failures: list[str] = field(default_factory=list)
    changes: dict[str, int] = field(default_factory=dict)
    pip: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what a rollback could not restore

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
