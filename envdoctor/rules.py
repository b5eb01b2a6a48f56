"""Load and validate the rule tables (rules/*.toml), shipped ones first, then --rules DIRs.

Every table is an array of tables (``[[name]]``); every row names the public
``source`` it was taken from. The schema below says which keys a row may have
and of what kind; a row that breaks it is an error naming the file and the line
(tomllib reports lines only for syntax errors, so the line of a semantic error
is found in the text here).

Layering: a user's directory comes after the shipped one. In tables that have an
identity key (``KEYS``) a user's row with the same key replaces the shipped row;
everywhere else user rows are added.
"""

from __future__ import annotations

import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from envdoctor.errors import UsageError


def shipped_dir() -> Path:
    """rules/ inside the installed package, or at the top of a source checkout."""
    here = Path(__file__).resolve().parent
    for cand in (here / "rules", here.parent / "rules"):
        if cand.is_dir():
            return cand
    raise UsageError("envdoctor's rule tables are missing from this installation (rules/)")


class RuleFileError(UsageError):
    def __init__(self, path: Path, line: Optional[int], message: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")
        self.path, self.line = path, line


# ---------------------------------------------------------------- value kinds
# Each kind is a checker returning an error message (None = valid).

def _is_str(v: Any) -> Optional[str]:
    return None if isinstance(v, str) and v.strip() else "must be a non-empty string"


def _is_url(v: Any) -> Optional[str]:
    if not isinstance(v, str) or not re.match(r"^https?://\S+$", v):
        return f"must be an http(s) URL, not {v!r}"
    return None


def _is_version(v: Any) -> Optional[str]:
    if not isinstance(v, str):
        return f"must be a version string, not {v!r}"
    try:
        Version(v)
    except InvalidVersion:
        return f"{v!r} is not a valid version"
    return None


def _is_spec(v: Any) -> Optional[str]:
    if not isinstance(v, str):
        return f"must be a version specifier string, not {v!r}"
    try:
        SpecifierSet(v)
    except InvalidSpecifier:
        return f"{v!r} is not a valid version specifier (PEP 440, e.g. \">=2.0.0rc4,<2.2.0\")"
    return None


_MINOR = re.compile(r"^\d+\.\d+$")


def _is_minor(v: Any) -> Optional[str]:
    return None if isinstance(v, str) and _MINOR.match(v) else f"must be \"MAJOR.MINOR\", not {v!r}"


def _is_cuda_variant(v: Any) -> Optional[str]:
    if v in ("cpu", "mps") or (isinstance(v, str) and _MINOR.match(v)):
        return None
    return f"must be a CUDA version \"12.1\" or \"cpu\", not {v!r}"


def _is_driver(v: Any) -> Optional[str]:
    if isinstance(v, str) and re.match(r"^\d+(\.\d+){0,2}$", v):
        return None
    return f"must be a driver version like \"550.54.15\", not {v!r}"


def _is_regex(v: Any) -> Optional[str]:
    if not isinstance(v, str):
        return f"must be a regular expression string, not {v!r}"
    try:
        re.compile(v)
    except re.error as exc:
        return f"{v!r} is not a valid regular expression: {exc}"
    return None


def _is_int(v: Any) -> Optional[str]:
    return None if isinstance(v, int) and not isinstance(v, bool) else f"must be an integer, not {v!r}"


def _is_bool(v: Any) -> Optional[str]:
    return None if isinstance(v, bool) else f"must be true or false, not {v!r}"


def _one_of(*choices: str) -> Callable[[Any], Optional[str]]:
    def check(v: Any) -> Optional[str]:
        return None if v in choices else f"must be one of {', '.join(choices)}, not {v!r}"
    return check


def _list_of(inner: Callable[[Any], Optional[str]]) -> Callable[[Any], Optional[str]]:
    def check(v: Any) -> Optional[str]:
        if not isinstance(v, list) or not v:
            return "must be a non-empty list"
        for item in v:
            err = inner(item)
            if err:
                return f"item {item!r}: {err}"
        return None
    return check


def _variants(v: Any) -> Optional[str]:
    """{ "2.1" = ["11.8", "12.1", "cpu"], ... }: torch minor -> builds."""
    if not isinstance(v, dict) or not v:
        return "must be a table of torch \"MAJOR.MINOR\" = [CUDA versions or \"cpu\"]"
    for key, builds in v.items():
        if _is_minor(key):
            return f"key {key!r}: {_is_minor(key)}"
        err = _list_of(_is_cuda_variant)(builds)
        if err:
            return f"[{key}] {err}"
    return None


_OS = _one_of("linux", "windows", "macos")
_CONFIDENCE = _one_of("SRC", "LOCAL", "3P", "UNVERIFIED")

Kind = Callable[[Any], Optional[str]]

# table -> key -> (checker, required)
COMMON: dict[str, tuple[Kind, bool]] = {
    "source": (_is_url, True),
    "note": (_is_str, False),
    "confidence": (_CONFIDENCE, False),
}

SCHEMAS: dict[str, dict[str, tuple[Kind, bool]]] = {
    # NVIDIA "CUDA Toolkit and Corresponding Driver Versions" (one row per toolkit release)
    "cuda_driver": {"cuda": (_is_minor, True), "release": (_is_str, True),
                    "linux": (_is_driver, False), "windows": (_is_driver, False)},
    # minor-version compatibility per CUDA major
    "cuda_compat": {"major": (_is_int, True), "minor_compat": (_is_bool, True),
                    "linux": (_is_driver, False), "windows": (_is_driver, False)},
    # driver branch -> newest CUDA it runs (for drivers that do not report their CUDA version)
    "driver_branch": {"branch": (_is_int, True), "cuda": (_is_minor, True)},
    "torch_release": {"torch": (_is_minor, True), "python": (_is_spec, True),
                      "cuda": (_list_of(_is_minor), False), "cuda_experimental": (_list_of(_is_minor), False),
                      "cxx": (_is_str, False), "released": (_is_str, False)},
    "torch_pair": {"torchvision": (_is_version, True), "torch": (_is_spec, True),
                   "torchaudio": (_is_version, False), "python": (_is_spec, False)},
    "torch_arch": {"torch": (_is_spec, True), "cuda": (_is_minor, True), "os": (_OS, True),
                   "arch": (_list_of(_is_str), True), "ptx": (_list_of(_is_str), False)},
    "sm_compat": {"sm": (_is_int, True), "runs_on": (_list_of(_is_int), False),
                  "from": (_is_int, False), "exclude": (_list_of(_is_int), False)},
    "pytorch_index": {"torch": (_is_spec, True), "option": (_one_of("--index-url", "--extra-index-url",
                                                                     "-f"), True),
                      "template": (_is_str, True)},
    "mmcv_flavour": {"distribution": (_is_str, True), "mmcv": (_is_spec, True), "ops": (_is_bool, True)},
    "mmcv_index": {"kind": (_one_of("mim", "docs"), True), "template": (_is_str, True)},
    "mmcv_wheels": {"package": (_one_of("mmcv", "mmcv-full"), True), "mmcv": (_list_of(_is_version), True),
                    "os": (_OS, True), "python": (_is_spec, True), "variants": (_variants, True)},
    "mmcv_consumer": {"package": (_is_str, True), "version": (_is_spec, True), "mmcv": (_is_spec, True),
                      "mmengine": (_is_spec, False)},
    # mmcv._ext's names per mmcv version, op families, which families each consumer's models use (mmcv_ops.toml)
    "mmcv_ext_names": {"mmcv": (_is_spec, True), "kernels": (_list_of(_is_str), True),
                       "info": (_list_of(_is_str), False)},
    "mmcv_op_family": {"family": (_is_str, True), "title": (_is_str, True), "kernels": (_list_of(_is_str), True)},
    "mmcv_consumer_ops": {"package": (_is_str, True), "family": (_is_str, True), "configs": (_is_int, False),
                          "of": (_is_int, False)},
    "mmcv_build": {"kind": (_is_str, True), "title": (_is_str, True), "mmcv": (_is_spec, False),
                   "torch": (_is_spec, False), "python": (_is_spec, False), "setuptools": (_is_spec, False),
                   "fix": (_is_str, False)},
    "build_failure": {"id": (_is_str, True), "cause": (_is_str, True), "pattern": (_is_regex, True),
                      "title": (_is_str, True), "fix": (_is_str, True), "priority": (_is_int, False)},
    "nvcc_host_compiler": {"cuda": (_is_minor, True), "gcc_max": (_is_int, True)},
    "load_error": {"cause": (_is_str, True), "pattern": (_is_regex, True), "priority": (_is_int, False),
                   "platform": (_one_of("linux", "windows", "macos", "any"), False), "title": (_is_str, False)},
    "winerror": {"code": (_is_int, True), "cause": (_is_str, True), "name": (_is_str, True)},
    "win_message": {"code": (_is_int, True), "lang": (_is_str, True), "text": (_is_str, True)},
    "glibc_floor": {"package": (_is_str, True), "version": (_is_spec, True), "glibc": (_is_version, False),
                    "glibcxx": (_is_version, False), "cxxabi": (_is_version, False)},
    "manylinux": {"tag": (_is_str, True), "glibc": (_is_minor, True)},
}

# Identity of a row: a user's row with the same key replaces the shipped one.
KEYS: dict[str, tuple[str, ...]] = {
    "cuda_driver": ("release",),
    "cuda_compat": ("major",),
    "driver_branch": ("branch",),
    "torch_release": ("torch",),
    "torch_pair": ("torchvision",),
    "sm_compat": ("sm",),
    "mmcv_index": ("kind",),
    "build_failure": ("id", "cause"),
    "nvcc_host_compiler": ("cuda",),
    "mmcv_consumer": ("package", "version"),
    "mmcv_ext_names": ("mmcv",),
    "mmcv_op_family": ("family",),
    "mmcv_consumer_ops": ("package", "family"),
    "winerror": ("code",),
    "win_message": ("code", "lang"),
    "manylinux": ("tag",),
}

META_KEYS = {"description", "version"}


@dataclass
class Tables:
    """Every table by name; rows keep the file (``_file``) and line (``_line``) they came from."""

    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def rows(self, name: str) -> list[dict[str, Any]]:
        return self.tables.get(name, [])

    def sources(self, *names: str) -> list[str]:
        """The distinct source URLs of the rows of these tables, in order of first use."""
        seen: list[str] = []
        for name in names:
            for row in self.rows(name):
                src = row.get("source")
                if src and src not in seen:
                    seen.append(src)
        return seen


_LINE = re.compile(r"line (\d+)")
_HEADER = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_-]+)\s*\]\]")


def _locate(text: str, table: str, index: int, key: Optional[str] = None) -> Optional[int]:
    """1-based line of row `index` of [[table]] (or of its `key`), found in the file's text."""
    lines = text.splitlines()
    header = re.compile(r"^\s*\[\[\s*" + re.escape(table) + r"\s*\]\]")
    start = None
    count = -1
    for i, line in enumerate(lines):
        if header.match(line):
            count += 1
            if count == index:
                start = i
                break
    if start is None:
        plain = re.compile(r"^\s*(\[\s*" + re.escape(table) + r"\s*\]|" + re.escape(table) + r"\s*=)")
        return next((i + 1 for i, line in enumerate(lines) if plain.match(line)), None)
    if key is None:
        return start + 1
    keyline = re.compile(r"^\s*[\"']?" + re.escape(key) + r"[\"']?\s*=")
    for j in range(start + 1, len(lines)):
        if re.match(r"^\s*\[", lines[j]):
            break
        if keyline.match(lines[j]):
            return j + 1
    return start + 1


def validate_data(path: Path, text: str, data: dict[str, Any]) -> None:
    """Raise RuleFileError (file:line) for the first row that breaks the schema."""
    for name, rows in data.items():
        if name == "meta":
            if not isinstance(rows, dict):
                raise RuleFileError(path, _locate(text, name, 0), "[meta] must be a table")
            for key in rows:
                if key not in META_KEYS:
                    raise RuleFileError(path, _locate(text, name, 0),
                                        f"[meta]: unknown key {key!r} (allowed: {', '.join(sorted(META_KEYS))})")
            continue
        schema = SCHEMAS.get(name)
        if schema is None:
            raise RuleFileError(path, _locate(text, name, 0),
                                f"unknown table [[{name}]] (known: {', '.join(sorted(SCHEMAS))})")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise RuleFileError(path, _locate(text, name, 0), f"[{name}] must be an array of tables ([[{name}]])")
        allowed = {**COMMON, **schema}
        for i, row in enumerate(rows):
            for key, value in row.items():
                if key not in allowed:
                    raise RuleFileError(path, _locate(text, name, i, key),
                                        f"[[{name}]]: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
                err = allowed[key][0](value)
                if err:
                    raise RuleFileError(path, _locate(text, name, i, key), f"[[{name}]] {key}: {err}")
            for key, (_, required) in allowed.items():
                if required and key not in row:
                    raise RuleFileError(path, _locate(text, name, i), f"[[{name}]]: missing required key {key!r}")


def load_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleFileError(path, None, f"cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _LINE.search(str(exc))
        raise RuleFileError(path, int(m.group(1)) if m else None, f"not valid TOML: {exc}") from None
    validate_data(path, text, data)
    # the line of every [[table]] header, found in one pass (for messages and `envdoctor explain`)
    headers: dict[str, list[int]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        m = _HEADER.match(line)
        if m:
            headers.setdefault(m.group(1), []).append(n)
    for name, rows in data.items():
        if name == "meta":
            continue
        lines = headers.get(name, [])
        for i, row in enumerate(rows):
            row["_file"] = str(path)
            row["_line"] = lines[i] if i < len(lines) else _locate(text, name, i)
    return data


def _identity(name: str, row: dict[str, Any]) -> Optional[tuple[Any, ...]]:
    keys = KEYS.get(name)
    return tuple(row.get(k) for k in keys) if keys else None


def _duplicates(path: Path, data: dict[str, Any]) -> None:
    """Two rows with one identity in the same file: which one wins would be an accident of order."""
    for name, rows in data.items():
        if name == "meta" or name not in KEYS:
            continue
        seen: dict[tuple[Any, ...], int] = {}
        for row in rows:
            ident = _identity(name, row)
            assert ident is not None
            if ident in seen:
                keys = ", ".join(f"{k} = {v!r}" for k, v in zip(KEYS[name], ident))
                raise RuleFileError(path, row["_line"], f"[[{name}]] with {keys} is defined twice in this file, "
                                    f"at lines {seen[ident]} and {row['_line']}; keep one")
            seen[ident] = row["_line"]


def _regular(path: Path, warn: Callable[[str], None]) -> bool:
    """A FIFO or device named *.toml would block the read forever (or never end): skipped, with a warning."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise RuleFileError(path, None, f"cannot read: {exc.strerror or exc}") from None
    if stat.S_ISREG(mode):
        return True
    kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else \
        "a directory" if stat.S_ISDIR(mode) else "not a regular file"
    warn(f"--rules: skipped {path}: {kind}, not a rule table file")
    return False


def load_tables(extra_dirs: Iterable[str] = (), warn: Optional[Callable[[str], None]] = None) -> Tables:
    from envdoctor.render.messages import warn as to_stderr

    say: Callable[[str], None] = warn or to_stderr
    tables = Tables()
    dirs = [shipped_dir()] + [Path(d).expanduser() for d in extra_dirs]
    for d in dirs:
        if not d.is_dir():
            raise UsageError(f"--rules {d}: not a directory")
        for path in sorted(d.glob("*.toml")):
            if not _regular(path, say):
                continue
            data = load_file(path)
            _duplicates(path, data)
            tables.files.append(path)
            for name, rows in data.items():
                if name == "meta":
                    continue
                existing = tables.tables.setdefault(name, [])
                for row in rows:
                    ident = _identity(name, row)
                    if ident is not None:
                        # a later directory's row with the same identity replaces the earlier one
                        existing[:] = [r for r in existing if _identity(name, r) != ident]
                    existing.append(row)
    return tables
