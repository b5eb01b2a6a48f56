"""Bounded, seeded fuzzing of what envdoctor reads from files it did not write (issue 10, section 5).

- `diff` inputs: real reports (tests/data/reports) mutated in their structure (a value of another
  type anywhere, keys dropped or added, deep nesting) and in their bytes (flips, cuts). Each case
  goes the whole way `envdoctor diff` goes: read, validate, redact, compare, render text and JSON.
  Allowed outcomes: a diff, or a ReportError (one line, exit 2). Anything else is an internal error.
- `inspect` inputs: torch's real `_C` extension (ELF) and MinGW-built PE files, with bytes set to
  0x00 / 0xff / random values, mostly in the headers. Allowed: an analysis (a damaged file is
  problem "damaged"/"truncated", i.e. ED705). An exception is an internal error.

Fixed seeds, so a failure is reproducible; every distinct failure kind is listed with a sample.
"""

from __future__ import annotations

import collections
import copy
import gc
import io
import json
import os
import random
import shutil
import subprocess
import traceback
from pathlib import Path
from typing import Any, Callable

import pytest

from envdoctor.binary import Context, analyse_file
from envdoctor.report_diff import compare
from envdoctor.errors import ReportError
from envdoctor.redact import Redactor, redact_report
from envdoctor.render.diff import render_diff_json, render_diff_text
from envdoctor.report_io import load_report
from tests.conftest import IN_CI, ROOT

REPORTS = sorted((ROOT / "tests" / "data" / "reports").glob("*.json"))
MARKDOWN = sorted(p for p in (ROOT / "tests" / "data" / "reports").glob("*.md") if p.name != "README.md")
DIFF_CASES = 3000
ELF_CASES = 600
PE_CASES = 500


class Failures:
    def __init__(self) -> None:
        self.kinds: collections.Counter[str] = collections.Counter()
        self.samples: dict[str, str] = {}

    def run(self, label: str, fn: Callable[[], Any], allowed: tuple[type[BaseException], ...] = ()) -> None:
        try:
            fn()
        except allowed:
            pass
        except Exception as exc:  # noqa: BLE001 - every other exception is what the fuzz looks for
            where = traceback.extract_tb(exc.__traceback__)[-1]
            kind = f"{type(exc).__name__} in {Path(where.filename).name}:{where.name}"
            self.kinds[kind] += 1
            self.samples.setdefault(kind, f"{label}: {exc!s:.200}")

    def assert_none(self, n: int) -> None:
        assert not self.kinds, f"{sum(self.kinds.values())} of {n} cases failed:\n" + "\n".join(
            f"  {k} x{v}: {self.samples[k]}" for k, v in self.kinds.most_common())


# --- diff ----------------------------------------------------------------------------------------------------

def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, path + (i,))
    return out


def _random_value(rng: random.Random) -> Any:
    choice = rng.randrange(12)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 2**70, 3])
    if choice == 3:
        return rng.choice([1.5, float("nan"), float("inf"), -0.0])
    if choice == 4:
        return rng.choice(["", "x", "\udcff\udc80", "ok", "import_error", "ED301", "error", "2.1.0", "../../etc"])
    if choice == 5:
        return []
    if choice == 6:
        return {}
    if choice == 7:
        return [rng.choice([None, 1, "a", {}, []]) for _ in range(rng.randrange(4))]
    if choice == 8:
        return {rng.choice(["status", "message", "id", "x", "", "version"]): rng.choice([None, 1, "a", {}, []])}
    if choice == 9:  # deep nesting, past any sane report
        v: Any = "leaf"
        for _ in range(rng.choice([70, 200, 600])):  # deeper only as bytes: json.dumps would recurse
            v = [v] if rng.random() < 0.5 else {"a": v}
        return v
    if choice == 10:
        return "y" * rng.choice([1000, 100_000])
    return rng.choice([{"status": "ok"}, {"id": "ED999", "severity": "fatal"}, [{"name": 1}]])


def _mutate(rng: random.Random, data: Any) -> Any:
    data = copy.deepcopy(data)
    for _ in range(rng.choice([1, 1, 1, 2, 3, 6])):
        paths = _paths(data)
        path = rng.choice(paths[1:]) if len(paths) > 1 else ()
        if not path:
            return _random_value(rng)
        parent: Any = data
        for p in path[:-1]:
            parent = parent[p]
        key = path[-1]
        op = rng.randrange(4)
        if op == 0 and isinstance(parent, dict):
            del parent[key]
        elif op == 1 and isinstance(parent, dict):
            parent[rng.choice(["extra_field", "", "\udcff", key + "_"])] = _random_value(rng)
        else:
            parent[key] = _random_value(rng)
    return data


def _bytes_mutation(rng: random.Random, text: bytes) -> bytes:
    b = bytearray(text)
    op = rng.randrange(3)
    if op == 0:
        return bytes(b[: rng.randrange(len(b))])
    if op == 1:
        for _ in range(rng.choice([1, 3, 20])):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    pos = rng.randrange(len(b))
    return bytes(b[:pos]) + rng.choice([b"[" * 3000, b"\xff\xfe", b'"\\ud800"', b"NaN", b"{}", b","]) + bytes(b[pos:])


def _diff_case(path: Path, base, redactor: Redactor) -> None:
    a = redact_report(load_report(path), redactor)  # the base is redacted once, up front (same redactor)
    for x, y in ((a, base), (base, a)):
        d = compare(x, y, "A", "B")
        render_diff_json(d)
        render_diff_text(d, io.StringIO(), color=False)


def test_diff_inputs_never_cause_an_internal_error(tmp_path):
    rng = random.Random(20261201)
    originals = [(p, json.loads(p.read_text())) for p in REPORTS]
    redactor = Redactor(home="/home/fuzz", user="fuzz", host="fuzzhost", secrets=())
    bases = {p: redact_report(load_report(p), redactor) for p in REPORTS + MARKDOWN}
    failures = Failures()
    case = tmp_path / "case.json"
    for i in range(DIFF_CASES):
        path, data = rng.choice(originals)
        text = None
        if MARKDOWN and rng.random() < 0.1:  # a report saved from an issue: its bytes, fences and all
            path, data = rng.choice(MARKDOWN), None
        if data is not None and rng.random() < 0.75:
            try:
                text = json.dumps(_mutate(rng, data), ensure_ascii=False)
            except RecursionError:  # two deep values stacked: too deep for json.dumps itself; use bytes
                pass
        if text is not None:
            case.write_text(text, encoding="utf-8", errors="surrogatepass")
        else:
            case.write_bytes(_bytes_mutation(rng, path.read_bytes()))
        failures.run(f"case {i} from {path.name}", lambda base=bases[path]: _diff_case(case, base, redactor),
                     allowed=(ReportError,))
    failures.assert_none(DIFF_CASES)


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/urandom"])
def test_diff_reads_a_bounded_amount_from_a_device(special):
    if not os.path.exists(special):
        pytest.skip(f"no {special}")
    with pytest.raises(ReportError, match="not a valid envdoctor report"):
        load_report(special)


# --- inspect -------------------------------------------------------------------------------------------------

def _mutate_binary(rng: random.Random, data: bytes, header: int) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4, 16])):
        pos = rng.randrange(min(len(b), header)) if rng.random() < 0.7 else rng.randrange(len(b))
        b[pos] = rng.choice([0, 0xFF, rng.randrange(256)])
    if rng.random() < 0.05:
        b = b[: rng.randrange(64, len(b))]
    return bytes(b)


def _fuzz_binary(tmp_path: Path, original: Path, cases: int, seed: int, ctx: Callable[[random.Random], Context],
                 header: int) -> None:
    rng = random.Random(seed)
    data = original.read_bytes()
    target = tmp_path / original.name
    failures = Failures()
    damaged = 0
    # pefile.close() runs gc.collect(): over the test process's heap (torch is imported) that is 0.4 s a case
    gc.freeze()
    try:
        for i in range(cases):
            target.write_bytes(_mutate_binary(rng, data, header))
            out: dict[str, Any] = {}
            failures.run(f"case {i}", lambda out=out: out.update(analyse_file(str(target), ctx(rng))))
            damaged += bool(out.get("problem"))
    finally:
        gc.unfreeze()
    failures.assert_none(cases)
    assert damaged > 0  # the mutations do reach the parser's error paths


def test_inspect_mutated_torch_extension(tmp_path):
    import torch

    tdir = Path(torch.__file__).parent
    so = sorted(tdir.glob("_C*.so"))
    if not so:
        pytest.skip("torch has no _C*.so here")

    def ctx(rng: random.Random) -> Context:
        # mostly alone (16 ms); sometimes with the system's libraries (60 ms) or the real torch beside it (0.4 s)
        r = rng.random()
        return Context(torch_dir=str(tdir) if r < 0.02 else None, system=0.02 <= r < 0.12)

    _fuzz_binary(tmp_path, so[0], ELF_CASES, 7, ctx, header=8192)


@pytest.fixture(scope="module")
def pe_files(tmp_path_factory) -> list[Path]:
    cc = "x86_64-w64-mingw32-gcc"
    if shutil.which(cc) is None:
        if IN_CI:
            pytest.fail(f"{cc} is required in CI (tests/run.sh installs gcc-mingw-w64-x86-64)")
        pytest.skip(f"{cc} not installed")
    d = tmp_path_factory.mktemp("fuzzpe")
    (d / "c10.c").write_text("__declspec(dllexport) int dep_fn(int x) { return x + 1; }\n")
    subprocess.run([cc, "-shared", "-o", str(d / "c10.dll"), str(d / "c10.c")], check=True, capture_output=True)
    (d / "ext.c").write_text("__declspec(dllimport) int dep_fn(int);\n"
                             "__declspec(dllexport) void *PyInit__ext(void) { return (void *)(long long)dep_fn(1); }\n")
    pyd = d / "_ext.cp311-win_amd64.pyd"
    subprocess.run([cc, "-shared", "-o", str(pyd), str(d / "ext.c"), str(d / "c10.dll")], check=True,
                   capture_output=True)
    return [pyd, d / "c10.dll"]


def test_inspect_mutated_pe(tmp_path, pe_files):
    lib = pe_files[1].parent

    def ctx(rng: random.Random) -> Context:
        return Context(search_dirs=[str(lib)] if rng.random() < 0.5 else [], system=False)

    _fuzz_binary(tmp_path, pe_files[0], PE_CASES, 11, ctx, header=4096)


@pytest.mark.parametrize("offset, value", [
    (5, b"\x00"),  # EI_DATA: neither little- nor big-endian (was "internal error: ElfReadError")
    (0x28, b"\xff" * 8),  # e_shoff: the section headers lie far past the end (already "truncated")
])
def test_inspect_cli_on_a_damaged_header_is_ed705(tmp_path, offset, value):
    """The issue's repro, through the CLI: header bytes of torch's real `_C` overwritten."""
    import torch

    so = sorted(Path(torch.__file__).parent.glob("_C*.so"))
    if not so:
        pytest.skip("torch has no _C*.so here")
    data = bytearray(so[0].read_bytes())
    data[offset:offset + len(value)] = value
    bad = tmp_path / so[0].name
    bad.write_bytes(bytes(data))
    from tests.conftest import run_cli

    proc = run_cli("inspect", str(bad), "--format", "json")
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert [f["id"] for f in out["findings"]] == ["ED705"]
    assert out["analysis"]["problem"]["kind"] in ("damaged", "truncated")

