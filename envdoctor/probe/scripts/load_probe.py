"""Try to import torch, torchvision, mmcv (or any one module) in disposable processes.

Runs inside the *target* interpreter: standard library only, Python 3.6+.
Never judges: it records. Results go to JSON files in OUT_DIR (never stdout,
which imported modules print to), rewritten after every stage, so that when an
import kills its process the parent still knows which stage was running.

Usage:
  load_probe.py OUT_DIR components TIMEOUT [--no-fork] [--hold NS] [--verify STATEMENT]...
      `import torch` once in this process, then (on Linux) fork one child per
      dependent probe: torch.cuda facts, torchvision (+ ops), mmcv (+ _ext), and
      one per STATEMENT (fix's verification: verify-N.json, its stage named by
      the statement).
      Each child reports through its own file and its own stdout/stderr files,
      so a crash in mmcv._ext cannot take the torch or torchvision result with
      it. --hold: then wait for more rounds on stdin (probe_hold.py); NS: when it started (ns).
      Without fork (Windows, macOS, --no-fork) the dependent probes run one
      after another in this process; the caller runs them as separate
      processes instead (mode `component`).
  load_probe.py OUT_DIR component NAME TIMEOUT
      one of torch | torchvision | mmcv in this process (no fork).
  load_probe.py OUT_DIR statement NAME TIMEOUT STATEMENT
      run one of fix's verify statements alone in this process (NAME.json).
  load_probe.py OUT_DIR module NAME TIMEOUT [EXTRA_SYS_PATH...]
      a plain `import NAME`, with EXTRA_SYS_PATH entries put first on sys.path.

Files: OUT_DIR/<probe>.json with {"component", "stages": [...], "facts", "done"} (probe_record.py); OUT_DIR/
children.json with each forked child's exit (pid, status, signal, timed_out, seconds); <probe>.stdout/.stderr.
"""
import faulthandler
import os
import signal
import sys
import time
import traceback

KILL_GRACE = 3.0  # a child this late past its deadline is killed (faulthandler's watchdog normally ends it first)


def sibling(name):
    """A helper module beside this script, loaded from its file. This directory is not put on sys.path:
    nothing of envdoctor's may shadow a module of the target."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".py")
    spec = importlib.util.spec_from_file_location("_envdoctor_" + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_record = sibling("probe_record")
Recorder, safe, write_json = _record.Recorder, _record.safe, _record.write_json


def loaded_libraries(*needles):
    """Shared objects mapped into this process whose file name contains a needle (Linux)."""
    found = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 6:
                    continue
                path = parts[-1]
                base = os.path.basename(path)
                if any(n in base for n in needles) and path not in found:
                    found.append(path)
    except (OSError, IOError):
        pass
    return found


def importer(name):
    return lambda: __import__(name, fromlist=["__name__"])


def installed(name):
    """Whether a top-level module can be found, without importing it."""
    try:
        import importlib.util
        return importlib.util.find_spec(name) is not None
    except Exception:  # a broken parent package or finder: let the import itself tell
        return True


def with_watchdog(timeout, fn):
    """Run fn; if it has not returned after `timeout` s, dump every thread's stack and _exit(1)."""
    if timeout and timeout > 0:
        faulthandler.dump_traceback_later(timeout, exit=True)
    try:
        return fn()
    finally:
        if timeout and timeout > 0:
            faulthandler.cancel_dump_traceback_later()


# ---------------------------------------------------------------- the probes


def torch_static_facts(rec, torch):
    """Facts that need the imported torch but do not initialise CUDA (safe before fork)."""
    f = rec.facts
    f["version"] = safe(lambda: torch.__version__)
    f["file"] = safe(lambda: torch.__file__)
    f["cuda"] = safe(lambda: torch.version.cuda)
    f["hip"] = safe(lambda: getattr(torch.version, "hip", None))
    f["cxx11_abi"] = safe(lambda: bool(torch._C._GLIBCXX_USE_CXX11_ABI))
    f["debug"] = safe(lambda: bool(torch.version.debug))
    # nothing here may touch the CUDA driver: children are forked after this, and CUDA does
    # not survive a fork (arch list, cuDNN and devices are asked in the torch.cuda child)
    f["libcudart"] = loaded_libraries("libcudart", "cudart64")
    f["libstdcxx"] = loaded_libraries("libstdc++")
    f["libraries"] = loaded_libraries("libtorch", "libc10")[:12]
    rec.flush()


def torch_cuda_facts(rec, torch):
    """cuda_available, devices, capabilities: this may initialise the driver (and crash or hang)."""
    f = rec.facts

    def query():
        f["arch_list"] = safe(lambda: torch.cuda.get_arch_list())
        f["cudnn"] = safe(lambda: torch.backends.cudnn.version())
        rec.flush()
        f["cuda_available"] = safe(lambda: torch.cuda.is_available())
        rec.flush()
        if f["cuda_available"] is True:
            f["device_count"] = safe(lambda: torch.cuda.device_count())
            devices = []
            for i in range(f["device_count"] if isinstance(f["device_count"], int) else 0):
                devices.append({
                    "index": i,
                    "name": safe(lambda i=i: torch.cuda.get_device_name(i)),
                    "capability": safe(lambda i=i: "%d.%d" % torch.cuda.get_device_capability(i)),
                })
            f["devices"] = devices
        else:
            f["device_count"] = 0
        # the CUDA runtime may be loaded lazily, on first use
        f["libcudart"] = loaded_libraries("libcudart", "cudart64")
        return True

    rec.stage("torch.cuda", query)


def torchvision_probe(rec, torch):
    tv = rec.stage("torchvision", importer("torchvision"))
    if tv is not None:
        rec.facts["version"] = safe(lambda: tv.__version__)
        rec.facts["file"] = safe(lambda: tv.__file__)
        rec.facts["cuda"] = safe(lambda: getattr(getattr(tv, "version", None), "cuda", None))
        rec.flush()

        def nms():
            import torchvision.ops
            boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
            return torchvision.ops.nms(boxes, torch.tensor([1.0, 0.5]), 0.5).tolist()

        rec.stage("torchvision.ops", nms)
    if rec.stage_status("torchvision.ops") != "ok" and torch is not None:
        # torchvision hides the loader error ("operator torchvision::nms does not exist");
        # loading the library directly, after torch, surfaces the real one.
        libs = ops_libraries()
        rec.facts["ops_library"] = libs[0] if libs else None
        rec.flush()
        if libs:
            import ctypes
            rec.stage("torchvision._C(direct)", lambda: ctypes.CDLL(libs[0]) and True)


def ops_libraries():
    """torchvision's compiled ops: `_C_stable.so` (0.29+), `_C.so` / `_C.cpython-*.so` / `_C.pyd` before."""
    import glob
    import importlib.util
    try:
        spec = importlib.util.find_spec("torchvision")
    except Exception:
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    found = []
    for loc in spec.submodule_search_locations:
        for pattern in ("_C.*", "_C_*.so", "_C_*.pyd"):
            for path in sorted(glob.glob(os.path.join(loc, pattern))):
                if path.endswith((".so", ".pyd", ".dylib")) and path not in found:
                    found.append(path)
    # prefer the stable-ABI library that new torchvision loads
    found.sort(key=lambda p: 0 if "_C_stable" in os.path.basename(p) else 1)
    return found


def mmcv_probe(rec):
    mmcv = rec.stage("mmcv", importer("mmcv"))
    if mmcv is not None:
        rec.facts["version"] = safe(lambda: getattr(mmcv, "__version__", None))
        rec.facts["file"] = safe(lambda: getattr(mmcv, "__file__", None))
        rec.flush()
    ext = rec.stage("mmcv._ext", importer("mmcv._ext"))
    if ext is not None:
        rec.facts["ext_file"] = safe(lambda: ext.__file__)
        rec.facts["compiling_cuda_version"] = safe(lambda: ext.get_compiling_cuda_version())
        rec.facts["compiler_version"] = safe(lambda: ext.get_compiler_version())
        if getattr(ext, "__envdoctor_compat__", False):
            # the stand-in says what it serves, so a kernel added to the layer counts without a table change
            rec.facts["compat"] = safe(lambda: {"served": sorted(str(n) for n in (
                getattr(ext, "IMPLEMENTED", None) or getattr(ext, "__all__", ())))})
        rec.flush()


def statement_runner(statement):
    """fix's verification statement (`import mmcv.ops`, `from mmcv.ops import X`), run at module level."""
    def run():
        exec(compile(statement, "<envdoctor verify>", "exec"), {"__name__": "__envdoctor_verify__"})
        return True
    return run


def module_probe(rec, name):
    mod = rec.stage(name, importer(name))
    if mod is not None:
        rec.facts["file"] = safe(lambda: getattr(mod, "__file__", None))
        rec.facts["version"] = safe(lambda: getattr(mod, "__version__", None))
        rec.flush()


# ---------------------------------------------------------------- process plumbing


def fork_child(out_dir, name, fn):
    """Run fn(Recorder) in a forked child with its own result, stdout and stderr files."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        for fd, suffix in ((1, ".stdout"), (2, ".stderr")):
            target = os.open(os.path.join(out_dir, name + suffix), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(target, fd)
            os.close(target)
        rec = Recorder(os.path.join(out_dir, name + ".json"), name)
        fn(rec)
        rec.done()
        try:
            sys.stdout.flush()
        except Exception:
            pass
    except BaseException:  # the probe machinery itself failed: say so on the child's stderr
        code = 3
        try:
            traceback.print_exc()
            sys.stderr.flush()
        except Exception:
            pass
    # never return into the parent's code, never run its atexit handlers or teardown
    os._exit(code)


def wait_children(out_dir, children, timeout):
    """Wait for every child, killing those past their deadline; record how each ended."""
    report = {}
    pending = dict(children)
    while pending:
        now = time.time()
        for name, (pid, started) in list(pending.items()):
            try:
                wpid, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                wpid, status = pid, 0
            info = report.setdefault(name, {"pid": pid, "timed_out": False})
            if wpid == 0:
                if timeout and now - started > timeout + KILL_GRACE:
                    info["timed_out"] = True
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                continue
            info["seconds"] = round(now - started, 4)
            info["ended"] = now
            if os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
                info["signal"] = signal_name(sig)
                info["returncode"] = -sig
            else:
                info["returncode"] = os.WEXITSTATUS(status)
            del pending[name]
        if pending:
            time.sleep(0.005)
        write_json(os.path.join(out_dir, "children.json"), report)
    return report


def signal_name(num):
    try:
        return signal.Signals(num).name
    except (ValueError, AttributeError):  # a number Python has no name for
        return "signal %d" % num


def run_components(out_dir, timeout, use_fork, statements=(), hold=None):  # hold: None, or when it started (ns)
    rec = Recorder(os.path.join(out_dir, "torch.json"), "torch")
    torch = None
    looks = sibling("probe_hold").Lookups() if hold is not None and use_fork else None  # what `import torch` looked for
    if installed("torch"):
        imp = lambda: rec.stage("torch", importer("torch"))  # noqa: E731
        torch = with_watchdog(timeout, (lambda: looks.during(imp)) if looks else imp)
        if torch is not None:
            torch_static_facts(rec, torch)
    else:
        rec.state["stages"].append({"name": "torch", "status": "missing", "seconds": 0.0})
        rec.flush()
    run_dependents(rec, out_dir, timeout, use_fork, torch, statements)
    rec.done()
    if hold is not None and use_fork and torch is not None:
        # fix's verification: more rounds of the dependent probes, forked from this very import
        sibling("probe_hold").serve(rec, out_dir, write_json, lambda new_dir, statements: run_dependents(
            rec, new_dir, timeout, True, torch, statements), looks, timeout, hold)


def run_dependents(rec, out_dir, timeout, use_fork, torch, statements):  # all but torch: forked if use_fork
    jobs = []
    if torch is not None:
        jobs.append(("torch.cuda", lambda r: with_watchdog(timeout, lambda: torch_cuda_facts(r, torch))))
    for name, fn in (("torchvision", lambda r: with_watchdog(timeout, lambda: torchvision_probe(r, torch))),
                     ("mmcv", lambda r: with_watchdog(timeout, lambda: mmcv_probe(r)))):
        if installed(name):
            jobs.append((name, fn))
        else:
            missing = Recorder(os.path.join(out_dir, name + ".json"), name)
            missing.state["stages"].append({"name": name, "status": "missing", "seconds": 0.0})
            missing.done()
    for i, statement in enumerate(statements):
        jobs.append(("verify-%d" % i, lambda r, s=statement: with_watchdog(
            timeout, lambda: r.stage(s, statement_runner(s)))))
    if use_fork:
        children = {}
        for name, fn in jobs:
            children[name] = (fork_child(out_dir, name, fn), time.time())
        rec.state["children"] = dict((n, c[0]) for n, c in children.items())
        rec.flush()
        wait_children(out_dir, children, timeout)
    else:
        for name, fn in jobs:
            sub = Recorder(os.path.join(out_dir, name + ".json"), name)
            fn(sub)
            sub.done()


def main():
    out_dir, mode, name_or_timeout = sys.argv[1], sys.argv[2], sys.argv[3]
    # Only envdoctor ends a probe (it kills the whole group). A console Ctrl-C that reaches this process too
    # (Windows sends it to every process on the console) must not turn into an import "result".
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError, AttributeError):
        pass
    # A crash prints the Python stack to stderr, which the parent keeps.
    faulthandler.enable(all_threads=True)
    script_dir = os.path.dirname(os.path.abspath(__file__))
    # never import from the scratch directory the probe runs in ("") nor from envdoctor's own scripts directory
    sys.path[:] = [p for p in sys.path if p not in ("", script_dir)]
    import warnings
    warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: "fork() in a multi-threaded process"
    if mode == "components":
        timeout = float(name_or_timeout)
        flags = sys.argv[4:]
        use_fork = hasattr(os, "fork") and sys.platform.startswith("linux") and "--no-fork" not in flags
        statements = [flags[i + 1] for i, f in enumerate(flags[:-1]) if f == "--verify"]
        hold = next((int(flags[i + 1]) for i, f in enumerate(flags[:-1]) if f == "--hold"), None)
        run_components(out_dir, timeout, use_fork, statements, hold)
    elif mode == "component":
        name, timeout = name_or_timeout, float(sys.argv[4])
        rec = Recorder(os.path.join(out_dir, name + ".json"), name)
        if name == "torch":
            torch = with_watchdog(timeout, lambda: rec.stage("torch", importer("torch")))
            if torch is not None:
                torch_static_facts(rec, torch)
                with_watchdog(timeout, lambda: torch_cuda_facts(rec, torch))
        elif name == "torchvision":
            # torch's import under the watchdog too: a hang there must leave its stack, not a bare kill
            torch = with_watchdog(timeout, lambda: rec.stage("torch", importer("torch"))) \
                if installed("torch") else None
            with_watchdog(timeout, lambda: torchvision_probe(rec, torch))
        elif name == "mmcv":
            if installed("torch"):  # mmcv._ext needs torch's libraries loaded first, as in real use
                with_watchdog(timeout, lambda: rec.stage("torch", importer("torch")))
            with_watchdog(timeout, lambda: mmcv_probe(rec))
        rec.done()
    elif mode == "statement":
        name, timeout, statement = name_or_timeout, float(sys.argv[4]), sys.argv[5]
        rec = Recorder(os.path.join(out_dir, name + ".json"), name)
        with_watchdog(timeout, lambda: rec.stage(statement, statement_runner(statement)))
        rec.done()
    elif mode == "module":
        name, timeout = name_or_timeout, float(sys.argv[4])
        for extra in reversed(sys.argv[5:]):
            sys.path.insert(0, extra)
        rec = Recorder(os.path.join(out_dir, "module.json"), name)
        with_watchdog(timeout, lambda: module_probe(rec, name))
        rec.done()
    else:
        sys.stderr.write("load_probe.py: unknown mode %r\n" % mode)
        sys.exit(2)
    try:
        sys.stdout.flush()
    except Exception:
        pass
    # Skip interpreter teardown: some extensions crash in their destructors,
    # which is not what we are asked about.
    os._exit(0)


if __name__ == "__main__":
    main()
