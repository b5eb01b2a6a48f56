"""One load probe's record: its stages (status, timing, the error an import raised) and facts, rewritten whole
to its JSON file after every change, so that when an import kills the process the parent still knows which
stage was running.

Loaded by load_probe.py from this file, in the *target* interpreter: standard library only, Python 3.6+.
"""
import json
import os
import sys
import time
import traceback
import types


class Recorder(object):
    """One probe's state, flushed atomically to its own file after every change."""

    def __init__(self, path, component):
        self.path = path
        self.state = {"component": component, "stages": [], "facts": {}, "pid": os.getpid()}
        self.flush()

    @property
    def facts(self):
        return self.state["facts"]

    def flush(self):
        write_json(self.path, self.state)  # never raises: a failed write must not become the stage's result

    def stage(self, name, fn, module=None):
        """Run one stage; record status, timing and the error. Returns fn's value or None."""
        rec = {"name": name, "status": "running", "started": time.time()}
        self.state["stages"].append(rec)
        self.flush()
        start = time.time()
        try:
            value = fn()
        except KeyboardInterrupt:
            # A Ctrl-C that got here (SIGINT is ignored, but an imported module may set its own handler) is
            # not what the import did: say so, and end as interrupted rather than record an import_error.
            rec["seconds"] = round(time.time() - start, 4)
            rec["status"] = "interrupted"
            self.flush()
            raise
        except BaseException as exc:  # noqa: B902 - SystemExit from an import is a result too
            rec["seconds"] = round(time.time() - start, 4)
            rec["error"] = describe(exc)
            rec["status"] = "missing" if is_missing(exc, module or name) else "import_error"
            self.flush()
            return None
        rec["seconds"] = round(time.time() - start, 4)
        rec["status"] = "ok"
        if isinstance(value, types.ModuleType):
            rec["module"] = module_shape(value)
        self.flush()
        return value

    def stage_status(self, name):
        for st in self.state["stages"]:
            if st["name"] == name:
                return st["status"]
        return None

    def done(self):
        self.state["done"] = True
        self.flush()


def module_shape(mod):
    """What the import yielded: its file (None for a namespace package: a directory without __init__.py,
    or one Python cannot read), its search path, and its __version__ or the error asking for it gave."""
    shape = {}
    try:
        spec = getattr(mod, "__spec__", None)
        shape["file"] = getattr(mod, "__file__", None)
        locations = getattr(spec, "submodule_search_locations", None)
        shape["origin"] = getattr(spec, "origin", None)
        shape["package"] = locations is not None
        if locations is not None:
            shape["locations"] = [str(p) for p in list(locations)[:5]]
        shape["namespace"] = locations is not None and shape["file"] is None
    except Exception as exc:  # a module object that breaks on attribute access is a fact too
        shape["error"] = "%s: %s" % (type(exc).__name__, str(exc)[:300])
    try:
        version = mod.__version__
        shape["version"] = version if isinstance(version, str) else repr(version)[:100]
    except Exception as exc:
        shape["version_error"] = "%s: %s" % (type(exc).__name__, str(exc)[:300])
    return shape


def is_missing(exc, module):
    """ModuleNotFoundError for the module itself or one of its parent packages (not a dependency)."""
    if type(exc).__name__ != "ModuleNotFoundError":
        return False
    name = getattr(exc, "name", None) or ""
    return bool(name) and (module == name or module.startswith(name + "."))


def describe(exc):
    err = {"type": type(exc).__name__, "message": str(exc)[:4000]}
    if isinstance(exc, OSError):
        err["errno"] = exc.errno
        err["winerror"] = getattr(exc, "winerror", None)
    if isinstance(exc, ImportError):
        err["module"] = getattr(exc, "name", None)
        err["path"] = getattr(exc, "path", None)
    # the chain matters: torch.ops.load_library re-raises "Could not load this library"
    # from the loader's real message
    chain = []
    cur = exc.__cause__ or exc.__context__
    while cur is not None and len(chain) < 5:
        chain.append("%s: %s" % (type(cur).__name__, str(cur)[:1000]))
        cur = cur.__cause__ or cur.__context__
    if chain:
        err["chain"] = chain
    err["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-6000:]
    return err


def safe(fn, default=None):
    try:
        return fn()
    except Exception as exc:  # facts are best-effort; the import result is what matters
        return "error: %s: %s" % (type(exc).__name__, exc)


def replace_file(tmp, path, tries=20):
    """os.replace, retried. On Windows it fails (WinError 5, 32) for as long as the parent holds the old
    file open to read it: milliseconds, every 50 ms. Returns whether the file was replaced."""
    delay = 0.002
    for _ in range(tries):
        try:
            os.replace(tmp, path)
            return True
        except PermissionError:
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
    return False


def write_json(path, data):
    """Make `path` hold `data`: written aside and swapped in whole, so a reader never sees half of it; if
    the swap keeps failing, written in place (a reader that gets half a file reads it again next time).
    Never raises: the next write brings the file up to date, and the probe's result is the import's."""
    text = json.dumps(data, default=str)
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        if replace_file(tmp, path):
            return True
        with open(path, "w") as f:
            f.write(text)
        try:
            os.remove(tmp)
        except OSError:
            pass
        return True
    except (OSError, ValueError) as exc:
        try:
            sys.stderr.write("envdoctor probe: could not write %s: %s\n" % (os.path.basename(path), exc))
        except Exception:
            pass
        return False
