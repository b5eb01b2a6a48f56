"""fix --strategy build, the mechanics: a small real torch C++ extension package generated here is built
with the cached `torch213` environment's own interpreter and torch, by real pip (no isolation) with the
build requirements in a private overlay, real ninja and gcc. Failures are real: a compile error, a link
error, setuptools without pkg_resources, a compiler job killed by SIGKILL (what the OOM killer sends),
and a real SIGINT in the middle of a build. The GPU facts of the decision tests are recorded reports
(tests/data/facts), the only thing that cannot exist on this machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Optional

import pytest

from envdoctor import build as build_mod
from envdoctor.build import cache
from envdoctor.build.failures import classify
from envdoctor.build.overlay import Overlay, make_overlay
from envdoctor.build.runner import BuildProgress, run_build
from envdoctor.build.spec import BuildSpec, decide
from envdoctor.facts import CudaToolkit, Package, Report
from envdoctor.probe.buildhost import BuildHost, probe_build_host
from envdoctor.render.build import outcome_lines, progress_line, spec_lines
from envdoctor.rules import load_tables
from tests.conftest import ROOT, real_env
from tests.envs import CACHE, python_in, site_packages

FACTS = ROOT / "tests" / "data" / "facts"
# long enough that a test can stop it half-way; the tests never wait for it to finish
SLOW_SPIN = 20_000_000
SPIN_FLAGS = ["-fconstexpr-loop-limit=2000000000", "-fconstexpr-ops-limit=2000000000000"]


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def tables():
    return load_tables()


@pytest.fixture(scope="module")
def torch213() -> Path:
    return real_env("torch213")


@pytest.fixture(scope="module")
def requirement_wheels() -> Path:
    return fetch_requirement_wheels()


def fetch_requirement_wheels() -> Path:
    """setuptools<81, wheel, ninja as local wheels (fetched once from the configured index, like tests/envs.py
    builds its environments; the tests themselves install them with --no-index)."""
    dest = CACHE / "build-requirements"
    if not (dest / ".ready").exists():
        tmp = CACHE / "build-requirements.tmp"
        subprocess.run(["rm", "-rf", str(tmp)], check=True)
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(tmp),
                               "setuptools<81", "wheel", "ninja"], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot fetch the build requirements: {proc.stderr[-500:]}")
        (tmp / ".ready").write_text("ok")
        subprocess.run(["rm", "-rf", str(dest)], check=True)
        os.replace(tmp, dest)
    return dest


@pytest.fixture(scope="module")
def overlay(torch213: Path, requirement_wheels: Path, tmp_path_factory) -> Overlay:
    return make_overlay(str(python_in(torch213)), tmp_path_factory.mktemp("overlay") / "o",
                        ("setuptools<81", "wheel", "ninja"), ("--no-index", "--find-links", str(requirement_wheels)))


def target_state(prefix: Path) -> dict[str, float]:
    """Every file of the environment with its mtime: a build must not change one. Not the test cache's own
    `.ready` mark, whose time says when a test last used the env (tests/envs.py `_used`: another test process
    sharing the cache touches it)."""
    out = {}
    for dirpath, _dirs, files in os.walk(prefix):
        if "__pycache__" in dirpath:
            continue
        for name in files:
            p = os.path.join(dirpath, name)
            out[p] = os.lstat(p).st_mtime
    out.pop(str(prefix / ".ready"), None)
    return out


def tiny_package(root: Path, *, extra_source: str = "", libraries: tuple[str, ...] = (), spin: int = 0,
                 units: int = 3) -> Path:
    """A torch C++ extension package: setup.py imports torch and pkg_resources (as mmcv's does) and bakes
    torch.__version__ into the module, so the built module says which torch it was compiled against."""
    pkg = root / "tinyext-src"
    (pkg / "src").mkdir(parents=True)
    (pkg / "tinyext").mkdir()
    (pkg / "tinyext" / "__init__.py").write_text("")
    sources = ["src/main.cpp"] + [f"src/part{i}.cpp" for i in range(1, units)]
    if spin:
        sources.append("src/slow.cpp")
        (pkg / "src" / "slow.cpp").write_text(textwrap.dedent(f"""\
            constexpr long spin(long n) {{ long s = 0; for (long i = 0; i < n; ++i) s += i % 7; return s; }}
            static_assert(spin({spin}) >= 0, "spin");
            int slow_part() {{ return 0; }}
            """))
    (pkg / "setup.py").write_text(textwrap.dedent(f"""\
        import pkg_resources  # noqa: F401 - mmcv's setup.py does this too; setuptools >= 82 has none
        import torch
        from setuptools import setup
        from torch.utils.cpp_extension import BuildExtension, CppExtension

        ext = CppExtension("tinyext._ext", {sources!r}, libraries={list(libraries)!r},
                           define_macros=[("TORCH_BUILT", '"%s"' % torch.__version__),
                                          ("TORCH_FILE", '"%s"' % torch.__file__)],
                           extra_compile_args={SPIN_FLAGS!r})
        setup(name="tinyext", version="0.1", packages=["tinyext"], ext_modules=[ext],
              cmdclass={{"build_ext": BuildExtension}})
        """))
    decls = "".join(f"int part{i}();" for i in range(1, units))
    total = " + ".join([f"part{i}()" for i in range(1, units)] or ["0"])
    (pkg / "src" / "main.cpp").write_text(textwrap.dedent(f"""\
        #include <Python.h>
        #include <c10/macros/Macros.h>
        {extra_source}
        {decls}
        static PyObject* built(PyObject*, PyObject*) {{ return PyUnicode_FromString(TORCH_BUILT); }}
        static PyObject* torch_file(PyObject*, PyObject*) {{ return PyUnicode_FromString(TORCH_FILE); }}
        static PyObject* value(PyObject*, PyObject*) {{ return PyLong_FromLong({total}); }}
        static PyMethodDef m[] = {{{{"built", built, METH_NOARGS, nullptr}}, {{"value", value, METH_NOARGS, nullptr}},
                                  {{"torch_file", torch_file, METH_NOARGS, nullptr}},
                                  {{nullptr, nullptr, 0, nullptr}}}};
        static struct PyModuleDef def = {{PyModuleDef_HEAD_INIT, "_ext", nullptr, -1, m}};
        PyMODINIT_FUNC PyInit__ext(void) {{ return PyModule_Create(&def); }}
        """))
    for i in range(1, units):
        (pkg / "src" / f"part{i}.cpp").write_text(f"int part{i}() {{ return {i * 10}; }}\n")
    return pkg


@pytest.fixture(scope="module")
def spec213(torch213: Path, tables) -> BuildSpec:
    """The real decision for the torch213 environment, from a real probe of it."""
    from envdoctor.probe import collect

    report = collect(str(python_in(torch213)), timeout=120)
    return decide(report, tables, probe_build_host())


def copy_spec(spec: BuildSpec, **changes) -> BuildSpec:
    return BuildSpec(**{**spec.__dict__, **changes})


# ---------------------------------------------------------------- decisions (facts -> spec)

def _recorded(name: str) -> Report:
    return Report.from_dict(json.loads((FACTS / name).read_text()))


HOST = BuildHost(cores=16, mem_available_mib=20000, disk_free_mib=100000, cxx="/usr/bin/c++", cxx_version="GCC 12.2.0")


def test_spec_for_a_real_cpu_torch(torch213: Path, spec213: BuildSpec) -> None:
    spec = spec213
    version_py = (site_packages(torch213) / "torch" / "version.py").read_text()
    assert spec.package == "mmcv" and spec.version == "2.2.0", spec.why
    assert spec.torch_version == "2.13.0+cpu" and spec.torch_cuda is None and spec.device == "cpu"
    assert spec.torch_git and f"git_version = '{spec.torch_git}'" in version_py
    assert spec.python_tag == "cp311" and spec.cxx11_abi is True
    assert not spec.blockers, spec.blockers
    env = spec.build_env()
    assert env["MMCV_WITH_OPS"] == "1" and env["FORCE_CUDA"] == "0" and "CUDA_HOME" not in env
    assert 1 <= spec.max_jobs <= (os.cpu_count() or 1)
    text = "\n".join(spec_lines(spec, "/x/build.log"))
    assert "setuptools<81" in text and "no build isolation" in text and "/x/build.log" in text


def test_spec_for_a_recorded_gpu_machine(tables) -> None:
    """RTX 5090 (sm_120), torch 2.5.1+cu124: the arch list comes from the GPU, nvcc must be CUDA 12."""
    report = _recorded("linux_rtx5090_torch251_cu124.json")
    no_nvcc = decide(report, tables, HOST)
    assert no_nvcc.device == "cuda" and any("no nvcc" in b and "--cpu" in b for b in no_nvcc.blockers)
    report = replace(report, cuda_toolkit=CudaToolkit(nvcc="/usr/local/cuda-11.8/bin/nvcc", version="11.8",
                                                      cuda_home="/usr/local/cuda-11.8", cuda_home_source="CUDA_HOME"))
    wrong = decide(report, tables, HOST)
    assert any("another CUDA major" in b for b in wrong.blockers)
    report = replace(report, cuda_toolkit=CudaToolkit(nvcc="/usr/local/cuda-12.4/bin/nvcc", version="12.4",
                                                      cuda_home="/usr/local/cuda-12.4", cuda_home_source="CUDA_HOME"))
    spec = decide(report, tables, HOST)
    assert not spec.blockers, spec.blockers
    assert spec.arch_list == ["12.0"]
    env = spec.build_env()
    assert env["FORCE_CUDA"] == "1" and env["CUDA_HOME"] == "/usr/local/cuda-12.4"
    assert env["TORCH_CUDA_ARCH_LIST"] == "12.0"
    # 20000 MiB / 4000 MiB per CUDA job bounds the 16 cores
    assert spec.max_jobs == 5
    cpu = decide(report, tables, HOST, cpu=True)
    assert cpu.device == "cpu" and cpu.build_env()["FORCE_CUDA"] == "0" and not cpu.blockers
    assert cpu.max_jobs == 6  # 20000 // 3000
    assert cache.cache_key(cpu) != cache.cache_key(spec)


def test_spec_keeps_inside_the_consumers_range(tables) -> None:
    report = _recorded("linux_rtx5090_torch251_cu124.json")
    report.packages["mmdet"] = Package(name="mmdet", version="3.3.0")
    spec = decide(report, tables, HOST, cpu=True)
    assert spec.version == "2.1.0" and "mmdet 3.3.0" in spec.why["version"]


def test_spec_refuses_a_host_compiler_nvcc_rejects(tables) -> None:
    report = _recorded("linux_driver470_torch212_cu121.json")  # Tesla T4, torch 2.1.2+cu121
    report = replace(report, cuda_toolkit=CudaToolkit(nvcc="/usr/local/cuda-12.1/bin/nvcc", version="12.1",
                                                      cuda_home="/usr/local/cuda-12.1", cuda_home_source="PATH"))
    ok = decide(report, tables, HOST)  # GCC 12.2.0
    assert not ok.blockers and ok.arch_list == ["7.5"]
    new_gcc = BuildHost(**{**HOST.__dict__, "cxx_version": "GCC 13.2.0"})
    refused = decide(report, tables, new_gcc)
    assert len(refused.blockers) == 1 and "gcc <= 12" in refused.blockers[0]
    assert not decide(report, tables, new_gcc, cpu=True).blockers  # CPU kernels do not go through nvcc


def test_spec_says_what_blocks_torch_214(tables) -> None:
    report = _recorded("linux_torch2141_cu130_tv0280.json")
    spec = decide(report, tables, HOST, cpu=True)
    assert any("C++20" in b for b in spec.blockers)


# ---------------------------------------------------------------- real builds

def _snapshot_then_build(torch213: Path, overlay: Overlay, pkg: Path, work: Path, env: dict[str, str],
                         progress: Optional[list[BuildProgress]] = None):
    before = target_state(torch213)
    outcome = run_build(str(python_in(torch213)), pkg, overlay, env, work, work / "build.log",
                        progress.append if progress is not None else None)
    assert target_state(torch213) == before, "the build changed the target environment"
    return outcome


def test_build_uses_the_targets_torch_and_the_overlay(torch213: Path, requirement_wheels: Path, tmp_path: Path,
                                                      spec213: BuildSpec) -> None:
    """build(): overlay, no isolation, [n/N] progress, a wheel of the target's torch, into envdoctor's cache."""
    # the target's own setuptools has no pkg_resources: only the overlay's makes setup.py run
    target_setuptools = [p.name for p in site_packages(torch213).glob("setuptools-*.dist-info")]
    assert target_setuptools and not (site_packages(torch213) / "pkg_resources").exists()
    spec = spec213
    pkg = tiny_package(tmp_path)
    seen: list[BuildProgress] = []
    root = tmp_path / "cache"
    before = target_state(torch213)
    res = build_mod.build(spec, source=pkg, cache_root=root, progress=seen.append,
                          pip_sources=("--no-index", "--find-links", str(requirement_wheels)))
    assert target_state(torch213) == before, "the build changed the target environment"
    assert res.status == "built" and res.outcome is not None, res.report_extra()["tail"]
    assert [(p.done, p.total) for p in seen] == [(1, 3), (2, 3), (3, 3)]
    assert progress_line(seen[-1]).endswith("[3/3] 100%")
    assert not (pkg / "build").exists(), "the user's source directory was written to"
    assert res.wheel is not None and res.log == res.wheel.parent / "build.log"
    log = res.log.read_text()
    assert "--no-build-isolation" in log and "[3/3]" in log and "MMCV_WITH_OPS=1" in log
    with zipfile.ZipFile(res.wheel) as z:
        z.extractall(tmp_path / "unpacked")
    run = subprocess.run([str(python_in(torch213)), "-c", "import torch, tinyext._ext as e; "
                          "print(e.built(), e.value(), torch.__version__, e.torch_file())"],
                         env={**os.environ, "PYTHONPATH": str(tmp_path / "unpacked")}, capture_output=True, text=True)
    # compiled against the target's own torch (an isolated build would import a torch of its own)
    assert run.stdout.split() == ["2.13.0+cpu", "30", "2.13.0+cpu",
                                  str(site_packages(torch213) / "torch" / "__init__.py")], run.stderr

    # envdoctor's cache is keyed by the torch it was built against
    cached = res.wheel
    assert cache.lookup(spec, root) == cached
    again = build_mod.build(spec, source=tmp_path / "nonexistent", cache_root=root)
    assert again.status == "cached" and again.wheel == cached
    for field_name, other in (("torch_git", "0" * 40), ("torch_version", "2.14.1+cpu"), ("python_tag", "cp312"),
                              ("cxx11_abi", False)):
        changed = copy_spec(spec, **{field_name: other})
        assert cache.lookup(changed, root) is None, field_name
    cached.write_bytes(b"not the wheel")  # a damaged entry is not served
    assert cache.lookup(spec, root) is None


def test_build_returns_cached_wheel_without_building(spec213: BuildSpec, tmp_path: Path) -> None:
    spec = spec213
    wheel = tmp_path / "mmcv-2.2.0-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("mmcv/_ext.cpython-311-x86_64-linux-gnu.so", b"\x7fELF")
    cache.store(spec, wheel, None, tmp_path / "c")
    # the source does not exist: only a lookup can succeed
    res = build_mod.build(spec, cache_root=tmp_path / "c", source=tmp_path / "nonexistent")
    assert res.status == "cached" and res.wheel is not None and res.wheel.read_bytes() == wheel.read_bytes()
    # a wheel cached for exactly this key needs no build: what would block one does not block it
    assert build_mod.build(copy_spec(spec, blockers=["no nvcc"]), cache_root=tmp_path / "c").status == "cached"
    blocked = build_mod.build(copy_spec(spec, blockers=["no nvcc"]), cache_root=tmp_path / "empty")
    assert blocked.status == "blocked" and blocked.wheel is None and "no nvcc" in blocked.message


def test_compile_error(torch213: Path, overlay: Overlay, tmp_path: Path, tables) -> None:
    pkg = tiny_package(tmp_path, extra_source="#error envdoctor-injected-compile-error")
    outcome = _snapshot_then_build(torch213, overlay, pkg, tmp_path / "w", {"MAX_JOBS": "1"})
    assert outcome.status == "failed" and outcome.wheel is None
    assert not list((tmp_path / "w").glob("wheel/*.whl"))
    # the compiler's own message, not only pip's traceback that ends the log
    assert any("error: #error envdoctor-injected-compile-error" in ln for ln in outcome.errors), outcome.errors
    lines = outcome_lines(outcome)
    assert lines[0].startswith("✗ the build failed") and str(outcome.log) in lines[1]
    assert any("envdoctor-injected-compile-error" in ln for ln in lines)
    found = classify(outcome.log.read_text(), tables)
    assert [f.id for f in found] == ["ED800"]
    assert "envdoctor-injected-compile-error" in found[0].detail


def test_link_error(torch213: Path, overlay: Overlay, tmp_path: Path, tables) -> None:
    pkg = tiny_package(tmp_path, libraries=("envdoctor_no_such_lib",))
    outcome = _snapshot_then_build(torch213, overlay, pkg, tmp_path / "w", {"MAX_JOBS": "2"})
    assert outcome.status == "failed" and outcome.units_done == 3  # every unit compiled; the link failed
    found = classify(outcome.log.read_text(), tables)
    assert [f.id for f in found] == ["ED810"] and found[0].evidence["detail"] == "envdoctor_no_such_lib"


def test_without_the_overlays_setuptools(torch213: Path, requirement_wheels: Path, tmp_path: Path, tables,
                                         spec213: BuildSpec) -> None:
    """The failure users hit: setuptools >= 82 (the target's) has no pkg_resources. Through build(): the log
    outlives the work directory, and report.extra["build"] becomes the ED805 finding."""
    spec = copy_spec(spec213, requirements=("wheel", "ninja"))
    before = target_state(torch213)
    res = build_mod.build(spec, source=tiny_package(tmp_path), cache_root=tmp_path / "cache",
                          pip_sources=("--no-index", "--find-links", str(requirement_wheels)))
    assert target_state(torch213) == before
    assert res.status == "failed" and res.wheel is None
    assert res.log is not None and res.log.parent == tmp_path / "cache" / "failed" and res.log.is_file()
    assert cache.lookup(spec, tmp_path / "cache") is None
    report = Report(build=res.report_extra())
    from envdoctor.checks import run_checks

    found = run_checks(report, tables, select=["ED8"])
    assert [f.id for f in found] == ["ED805"]
    assert "pkg_resources" in found[0].evidence["line"]


def _wait_for(cond, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def _cmd(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _procs_with(marker: str) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmd:
            out.append(int(pid))
    return out


def test_killed_compiler_job_is_an_oom_finding(torch213: Path, overlay: Overlay, tmp_path: Path, tables) -> None:
    """SIGKILL to cc1plus is what the kernel's OOM killer does; gcc reports it as it would then."""
    pkg = tiny_package(tmp_path, spin=SLOW_SPIN)
    work = tmp_path / "w"

    def killer() -> None:
        _wait_for(lambda: any(b"cc1plus" in _cmd(p) and b"slow.cpp" in _cmd(p) for p in _procs_with(str(work))))
        for p in _procs_with(str(work)):
            if b"cc1plus" in _cmd(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass

    import threading

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    outcome = _snapshot_then_build(torch213, overlay, pkg, work, {"MAX_JOBS": "1"})
    t.join(5)
    assert outcome.status == "failed"
    found = classify(outcome.log.read_text(), tables)
    assert found[0].id == "ED803" and found[0].evidence["detail"] == "cc1plus"
    assert "MAX_JOBS=1" in found[0].fixes[0].description


DRIVER = """
import signal
import sys
from pathlib import Path
# as in a terminal: a suite started in the background by a non-interactive shell inherits SIGINT ignored
signal.signal(signal.SIGINT, signal.default_int_handler)
from envdoctor.build.overlay import Overlay
from envdoctor.build.runner import run_build
from envdoctor.render.build import outcome_lines
python, overlay, pkg, work = sys.argv[1:5]
o = run_build(python, Path(pkg), Overlay(Path(overlay), ()), {"MAX_JOBS": "2"}, Path(work), Path(work) / "build.log")
print("\\n".join(outcome_lines(o)), flush=True)
sys.exit(130 if o.status == "interrupted" else 0 if o.ok else 1)
"""


def test_ctrl_c_stops_the_build_and_changes_nothing(torch213: Path, overlay: Overlay, tmp_path: Path) -> None:
    pkg = tiny_package(tmp_path, spin=SLOW_SPIN)
    work = tmp_path / "w"
    before = target_state(torch213)
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(python_in(torch213)), str(overlay.path), str(pkg),
                             str(work)], env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # mid-build: once a compiler job for the slow unit runs
    _wait_for(lambda: any(b"cc1plus" in _cmd(p) for p in _procs_with(str(work))))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert out.startswith("! build interrupted") and "nothing was installed" in out
    assert "Traceback" not in err
    _wait_for(lambda: not _procs_with(str(work)), timeout=10)  # no compiler job outlives the build
    assert not list(work.glob("wheel/*.whl"))
    assert "[interrupted" in (work / "build.log").read_text()
    assert target_state(torch213) == before


# ---------------------------------------------------------------- classification of recorded real messages

# Lines as they appear in the real logs cited by each row's source (and the testbed's own builds).
RECORDED = [
    ("ED801", "RuntimeError:\nThe detected CUDA version (11.8) mismatches the version that was used to compile\n"
              "PyTorch (12.8). Please make sure to use the same CUDA versions."),
    ("ED802", "/usr/local/cuda-11.8/include/crt/host_config.h:132:2: error: #error -- unsupported GNU version! gcc "
              "versions later than 11 are not supported! The nvcc flag '-allow-unsupported-compiler' can be used"),
    ("ED803", "c++: fatal error: Killed signal terminated program cc1plus\ncompilation terminated."),
    ("ED804", "/usr/local/lib/python3.6/dist-packages/torch/include/torch/csrc/python_headers.h:9:20: fatal error: "
              "Python.h: No such file or directory"),
    ("ED805", '  File "<string>", line 5\nModuleNotFoundError: No module named \'pkg_resources\''),
    ("ED806", "UserWarning: Error checking compiler version for cl: [WinError 2]\nerror: Microsoft Visual C++ 14.0 or "
              'greater is required. Get it with "Microsoft C++ Build Tools"'),
    ("ED807", "/mnt/build/ws/out/Release/obj/gen/node_javascript.cc:72921:1: fatal error: error writing to "
              "/tmp/cc3j4pBT.s: No space left on device"),
    ("ED808", "torch/include/ATen/ATen.h:5:2: error: #error C++20 or later compatible compiler is required to use "
              "ATen."),
    ("ED809", '  File "setup.py", line 462, in <module>\n    version=get_version(),\nKeyError: \'__version__\''),
    ("ED811", "Skip building ext ops due to the absence of torch."),
]


@pytest.mark.parametrize("rule_id,text", RECORDED, ids=[r for r, _ in RECORDED])
def test_recorded_failure_messages(rule_id: str, text: str, tables) -> None:
    found = classify("  [12/77] c++ -c x.cpp\n" + text + "\nninja: build stopped: subcommand failed.\n", tables)
    assert [f.id for f in found] == [rule_id]
    assert found[0].fixes and found[0].evidence["source"].startswith("https://")


def test_count_units(tmp_path: Path) -> None:
    from envdoctor.build.runner import count_units

    src = tmp_path / "mmcv-9.9.9"
    for rel in ("mmcv/ops/csrc/pytorch/nms.cpp", "mmcv/ops/csrc/pytorch/pybind.cpp",
                "mmcv/ops/csrc/pytorch/cpu/nms.cpp", "mmcv/ops/csrc/pytorch/cuda/nms_cuda.cu",
                "mmcv/ops/csrc/pytorch/npu/nms_npu.cpp", "mmcv/ops/csrc/common/x.hpp"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text("")
    assert count_units(src, "cpu") == 3 and count_units(src, "cuda") == 4
    import tarfile

    with tarfile.open(tmp_path / "mmcv-9.9.9.tar.gz", "w:gz") as t:
        t.add(src, arcname="mmcv-9.9.9")
    assert count_units(tmp_path / "mmcv-9.9.9.tar.gz", "cpu") == 3
