"""The held process's warm-up (probe_hold.py): while pip installs, import the other packages' modules that fix's
verify statements will import, so the next round's children start with them as they start with torch.

Runs inside the *target* interpreter: standard library only, Python 3.6+.

pip writes while this runs, so nothing here may take in a file pip is writing: never a module of the
statements' own packages, nor one from a path the install writes or removes (`avoid`); and every file the
warm-up loaded, and every name it looked up, is judged by its state when the warm-up ended: one changed (its
ctime) after the warm-up began, or gone, makes the process stale (the next round is a fresh probe). So do an
import that fails other than because the module is absent (it may leave half a package behind), CUDA initialised
by an import (`torch.cuda.is_available()` in mmengine.device: no fork of this process could use CUDA), and a
warm-up that does not end within the probe's timeout (the process ends).
"""
import faulthandler
import importlib
import os
import sys
import time


def real(path):
    return os.path.normcase(os.path.realpath(path))


def under(path, roots):
    path = real(path)
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def threads():
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def cuda_poisoned():
    """Whether a child forked now would find CUDA unusable ("Cannot re-initialize CUDA in forked subprocess"):
    torch marks its children so once this process initialised the CUDA runtime. CPU builds have no such mark."""
    torch_c = getattr(sys.modules.get("torch"), "_C", None)
    in_bad_fork = getattr(torch_c, "_cuda_isInBadFork", None)
    if in_bad_fork is None:
        return False
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            code = 1 if in_bad_fork() else 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)


def absent(name, exc):
    """The ImportError says only that `name` (or a package above it) is not installed: a `try: import x` the
    statements' package has too, with nothing imported on the way."""
    missing = getattr(exc, "name", None)
    return (type(exc).__name__ == "ModuleNotFoundError" and bool(missing)
            and (name == missing or name.startswith(missing + ".")))


def warm(request, baseline, hold, timeout):
    """`request`: {"warm": [STATEMENT...], "avoid": [PATH...]}; `baseline`: probe_hold.Baseline, extended with
    what the warm-up loaded; `hold`: probe_hold's functions (Lookups, found_now). Returns why this process can no
    longer stand for a fresh one, or None. Also returns what it did: (why, {"imported": N, "threads": [a, b]})."""
    statements = list(request.get("warm") or [])
    closure = hold.helper("import_closure")
    own = set(m.split(".")[0] for s in statements for m in closure.statement_modules(s))
    roots = [real(p) for p in request.get("avoid") or []]
    done = {"imported": 0, "threads": [threads(), None]}
    loaded = sorted(p for p in baseline.files if under(p, roots))
    if loaded:  # the round is a fresh probe whatever is imported now
        return "the install changes %s, which this process loaded" % loaded[0], done
    for name in sorted(own):
        where = hold.found_now(name)
        if where and where != "namespace" and under(where, roots):
            return None, done  # the statements' package is being installed: its source now is not what runs
    began = time.time()
    since = int(began * 1e9)  # probe_hold.changed_after_start allows for the kernel's tick and whole seconds
    before = set(sys.modules)
    lookups = hold.Lookups()
    nvml = os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK")
    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"  # torch.cuda.is_available() asks NVML, not the runtime

    def run():
        for name in closure.closure(statements):
            if name in sys.modules or name.split(".")[0] in own:
                continue
            parts = name.split(".")
            first = next(".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) not in
                         sys.modules)  # the first one to import: found without importing anything
            where = hold.found_now(first)
            if where and where != "namespace" and under(where, roots):
                continue  # the install writes it: the round's children import it
            try:
                importlib.import_module(name)
            except ImportError as exc:
                if not absent(name, exc):
                    return "warm-up: import %s: %s: %s" % (name, type(exc).__name__, exc)
            except BaseException as exc:  # SystemExit included: this process ran code a fresh one may not
                return "warm-up: import %s: %s: %s" % (name, type(exc).__name__, exc)
        return None

    if timeout and timeout > 0:  # an import that never returns: the process ends, the round is a fresh probe
        faulthandler.dump_traceback_later(timeout, exit=True)
    try:
        why = lookups.during(run)
    finally:
        if timeout and timeout > 0:
            faulthandler.cancel_dump_traceback_later()
        if nvml is None:
            os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
        else:
            os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = nvml
    new = [n for n in sys.modules if n not in before]
    done["imported"], done["threads"][1] = len(new), threads()
    for name in new:
        path = getattr(sys.modules.get(name), "__file__", None)
        if name.split(".")[0] in own:
            why = why or "warm-up: imported %s" % name
        elif isinstance(path, str) and under(path, roots):
            why = why or "warm-up: imported %s from %s, which the install changes" % (name, path)
    for path in lookups.failed:
        if under(path, roots):
            why = why or "warm-up: looked up %s, which the install changes" % path
    changed = baseline.extend(lookups, since)
    why = why or (changed and "warm-up: %s" % changed[0])
    if not why and cuda_poisoned():
        why = "warm-up: an import initialised CUDA (children forked now could not use it)"
    done["seconds"] = round(time.time() - began, 3)
    return why or None, done
