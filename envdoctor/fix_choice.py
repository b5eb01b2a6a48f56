"""The structured choice a finding's fix carries: what to remove, what to install from where, and why.

The checks build a FixChoice once, from the rule tables (envdoctor/checks/advice.py); `check` prints its
commands and `fix`'s planner turns the same object into actions without asking the tables again, so the
advice `check` prints is the action `fix` carries out. Part of the report (`Fix.choice`, an optional field
of docs/report.schema.json). A leaf module (stdlib + commandline): facts.py imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Optional

from envdoctor import commandline as shell

# What `envdoctor fix` carries out: a prebuilt wheel, the bundled compat layer, or a change of torch itself
# (printed; applied only with --allow-torch-change).
CHOICE_STRATEGIES = ("wheel", "compat", "torch")
# every pip install of a choice is binary only and bypasses pip's wheel cache (it keys a local build of
# mmcv by the sdist URL alone, whatever torch it was built against)
PIP_INSTALL = ("--no-cache-dir", "--only-binary=:all:")
# the distribution stays installed under another build (+cu130 vs +cpu of the same version): pip would
# answer "already satisfied", so the replacement is forced, and only of that distribution
REPLACE = ("--force-reinstall", "--no-deps")


def _tuples(obj: Any) -> None:
    """JSON gives lists; a frozen choice holds tuples, so a choice read back from a report equals the one built."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, list):
            object.__setattr__(obj, f.name, tuple(value))


@dataclass(frozen=True)
class ConsumerRange:
    """An installed OpenMMLab package's mmcv range (a [[mmcv_consumer]] row) that the chosen mmcv satisfies."""

    package: str  # "mmdet"
    installed: str  # "3.3.0"
    accepts: str  # ">=2.0.0rc4,<2.2.0"
    source: str = ""  # the table row's source URL


@dataclass(frozen=True)
class PipInstall:
    """One `pip install` of exact requirements from named sources."""

    requirements: tuple[str, ...]  # "mmcv==2.2.0"
    sources: tuple[str, ...] = ()  # pip arguments: --index-url URL, --find-links URL, --extra-index-url URL
    replace: bool = False  # force the reinstall of these distributions only (REPLACE)

    def __post_init__(self) -> None:
        _tuples(self)

    def argv(self, python: str) -> list[str]:
        return [python, "-m", "pip", "install", *PIP_INSTALL, *(REPLACE if self.replace else ()), *self.sources,
                *self.requirements]


@dataclass(frozen=True)
class FixChoice:
    """What a fix does to the target, decided once by the checks from the rule tables."""

    strategy: str  # CHOICE_STRATEGIES
    component: str  # what it repairs: mmcv | torchvision; a torch choice: its finding's (torch, gpu, mmcv._ext)
    python: str  # the interpreter the commands run ("python": a new environment the user makes first)
    os: str  # the target's host.os: how the commands are quoted (cmd.exe and PowerShell on Windows)
    remove: tuple[str, ...] = ()  # distributions uninstalled first (conflicting mmcv flavours)
    installs: tuple[PipInstall, ...] = ()  # in order; empty for the compat layer (envdoctor builds it)
    reason: str = ""  # one line: why this one
    source: str = ""  # the rule table row's source URL
    satisfies: tuple[ConsumerRange, ...] = ()  # the installed consumers' mmcv ranges it is inside
    new_environment: bool = False  # the commands are for a new environment (another Python), not this one

    def __post_init__(self) -> None:
        _tuples(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FixChoice":
        """Back from JSON (a saved plan, a report): unknown keys ignored, like Report.from_dict."""
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["installs"] = tuple(PipInstall(**{k: v for k, v in i.items() if k in ("requirements", "sources", "replace")})
                               for i in d.get("installs") or ())
        kw["satisfies"] = tuple(ConsumerRange(**{k: v for k, v in c.items()
                                                 if k in ("package", "installed", "accepts", "source")})
                                for c in d.get("satisfies") or ())
        return cls(**kw)

    @property
    def requirements(self) -> list[str]:
        return [r for step in self.installs for r in step.requirements]

    def pins(self) -> dict[str, str]:
        """{distribution: exact version} of every requirement ("mmcv==2.2.0" -> {"mmcv": "2.2.0"})."""
        out = {}
        for req in self.requirements:
            name, sep, version = req.partition("==")
            if sep:
                out[name] = version
        return out

    def uninstall_argvs(self) -> list[list[str]]:
        return [[self.python or "python", "-m", "pip", "uninstall", "-y", d] for d in self.remove]

    def commands(self, step: Optional[int] = None) -> list[str]:
        """The exact commands, quoted for the target's OS (on Windows each cmd.exe line followed by its
        PowerShell form where that is other text): the removals, then each install; `step` = the removals
        (0 only) and one install. The compat layer's command is envdoctor's own."""
        if self.strategy == "compat":
            target = f" --python {shell.program(self.python, self.os)}" if self.python else ""
            return [f"envdoctor fix --apply --strategy compat{target}"]
        argvs = self.uninstall_argvs() if step in (None, 0) else []
        steps = self.installs if step is None else self.installs[step:step + 1]
        argvs += [s.argv(self.python or "python") for s in steps]
        return [line for argv in argvs for line in shell.forms(argv, self.os)]
