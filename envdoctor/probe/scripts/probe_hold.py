"""fix's verification reuses its before-probe's `import torch` (load_probe.py components --hold).

Runs inside the *target* interpreter: standard library only, Python 3.6+.

After the first round the probe's parent (torch imported, nothing else of the target's) waits for one
line on stdin. A forked child of it is then what a fresh process would be, provided the install changed
nothing this process had loaded: every module file and mapped shared object is compared with its state
when the round ended, and so is every .pth file of the site directories. Any difference (the fix
reinstalled torch, or replaced a .pth file whose lines already ran here) makes the process say `stale`
and exit: the caller then probes afresh. So does a new file that would change what `import torch` did
here: a module it looked for in vain (Lookups) that is found now, or a module it loaded that is found in
another file now. A .pth file that is new is run here as site would have run it at
start-up (its path lines added, its import lines executed), and the import system forgets what it cached
about the directories, so the children find what was installed.
"""
import importlib
import json
import os
import site
import sys
import types


def file_state(path):
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def loaded_files():
    """Every file this process has loaded: module files, and the shared objects it maps (Linux)."""
    files = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and os.path.isabs(path):
            files.add(path)
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].startswith("/"):
                    # a file deleted since it was mapped reads "(deleted)": its state is then None (changed)
                    files.add(parts[5].rstrip("\n"))
    except (OSError, IOError):
        pass
    return files


def site_dirs():
    """The directories whose .pth files site runs at start-up, as this interpreter has them."""
    dirs = []
    try:
        dirs += list(site.getsitepackages())
    except AttributeError:  # an old virtualenv's own site.py
        pass
    try:
        if site.ENABLE_USER_SITE:
            dirs.append(site.getusersitepackages())
    except AttributeError:
        pass
    on_path = set(os.path.normcase(os.path.abspath(p)) for p in sys.path if p)
    return [d for d in dirs if os.path.normcase(os.path.abspath(d)) in on_path]


def pth_files(dirs):
    out = {}
    for d in dirs:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for name in names:
            if name.endswith(".pth") and not name.startswith("."):
                path = os.path.join(d, name)
                out[path] = file_state(path)
    return out


class Lookups(object):
    """--hold: a pass-through finder first on sys.meta_path while `import torch` runs, noting every module name
    looked for. One looked for and not found then (torch's `try: import pydot`) that an install adds would have
    changed what `import torch` did, though no file this process loaded changes (Baseline.found_now). One found
    but not imported (its code raised ImportError: torch.utils._cxx_pytree without optree) is a file it ran,
    watched as the loaded ones are."""

    def __init__(self):
        self.names = set()
        self.missing = set()
        self.failed = set()  # the files of modules found but not imported (their code raised ImportError)

    def find_spec(self, fullname, path=None, target=None):
        self.names.add(fullname)
        return None

    def during(self, fn):
        sys.meta_path.insert(0, self)
        try:
            return fn()
        finally:
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            for name in self.names:
                if name not in sys.modules:
                    where = found_now(name)
                    if where is None or where == "namespace":  # a directory alone may be an install under way
                        self.missing.add(name)
                    else:
                        self.failed.add(where)


def found_now(name):
    """Where the path-based import system would find `name` now (None: nowhere), without importing anything:
    a submodule only under a package this process has loaded."""
    from importlib.machinery import PathFinder

    parent = name.rpartition(".")[0]
    path = None
    if parent:
        path = getattr(sys.modules.get(parent), "__path__", None)
        if path is None:
            return None
    try:
        spec = PathFinder.find_spec(name, path)
    except (ImportError, ValueError, OSError):
        return None
    return (spec.origin or "namespace") if spec is not None else None


def deleted_object(path):
    """A mapped shared object deleted since (/proc/self/maps says "(deleted)"; not memfd or SysV shm)."""
    return path.endswith(" (deleted)") and ".so" in os.path.basename(path)


# The kernel stamps a file from its coarse clock, which lags the one read before the probe started by up to a
# tick (10 ms at HZ=100); some file systems keep whole seconds only (ext3; FAT: 2 s).
FINE_MARGIN_NS = 10000000
COARSE_MARGIN_NS = 2000000000


def changed_after_start(path, since_ns):
    """Whether the file changed (ctime) after `since_ns` (the process's start, or the warm-up's), when it may
    already have been read."""
    try:
        ctime = os.stat(path).st_ctime_ns
    except (OSError, ValueError):
        return True
    return ctime >= since_ns - (COARSE_MARGIN_NS if ctime % 1000000000 == 0 else FINE_MARGIN_NS)


def in_archive(path):
    """Whether a module's path lies inside a file (a zip archive on sys.path: its members are no files)."""
    parent = os.path.dirname(path)
    while parent and parent != os.path.dirname(parent):
        if os.path.isfile(parent):
            return True
        if os.path.isdir(parent):
            return False
        parent = os.path.dirname(parent)
    return False


def same_file(a, b):
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


class Baseline(object):
    """What this process has loaded and run, as the files were when the first round ended. `since_ns`: when
    the process started. A file changed after that (an install beside the first round) may differ from what
    was read, so the baseline cannot stand for it: the next round is a fresh probe (`unsure`)."""

    def __init__(self, lookups=None, since_ns=None):
        self.dirs = site_dirs()
        self.files = {}
        self.deleted = []  # mapped files already gone: this process runs code no fresh one can load
        self.unsure = []
        for path in loaded_files() | (lookups.failed if lookups else set()):
            state = self.files[path] = file_state(path)
            if deleted_object(path):
                self.deleted.append(path)
            elif since_ns is None or path.endswith(" (deleted)"):
                continue
            elif state is None:  # gone since it was loaded, unless a member of a zip archive (no file of its own)
                if not in_archive(path):
                    self.unsure.append("%s (gone since it was loaded)" % path)
            elif changed_after_start(path, since_ns):
                self.unsure.append("%s (changed while the first round ran)" % path)
        self.pth = pth_files(self.dirs)
        if since_ns is not None:  # one that changed, or is new (site never ran it), since the process started
            self.unsure += ["%s (changed while the first round ran)" % path for path, state in sorted(self.pth.items())
                            if state is not None and changed_after_start(path, since_ns)]
            # an entry added, removed or renamed in a site directory (a .pth file site ran, a package): the
            # directory's ctime says so where the list of its .pth files, taken now, cannot
            self.unsure += ["%s (an entry changed while the first round ran)" % d for d in self.dirs
                            if os.path.isdir(d) and changed_after_start(d, since_ns)]
        self.replayed = set()
        self.missing = sorted((lookups.missing if lookups else set()) | set(
            n for n in ("sitecustomize", "usercustomize") if n not in sys.modules))
        forget_import_caches()
        # where the path finds each top-level module this process has loaded (None, or not the loaded file:
        # a module served by another finder, e.g. an editable install's; only a change of this counts)
        self.tops = {}
        moved = self.take_tops(since_ns or 0)
        if since_ns is not None:
            self.unsure += moved

    def take_tops(self, since_ns):
        """Record where the path finds each top-level module loaded since the last call; returns those it finds
        in another file than the loaded one, written after `since_ns` (a copy earlier on sys.path)."""
        out = []
        for name, module in list(sys.modules.items()):
            path = getattr(module, "__file__", None)
            if "." in name or name in self.tops or not isinstance(path, str):
                continue
            where = self.tops[name] = found_now(name)
            if where and where != "namespace" and not same_file(where, path) and changed_after_start(where, since_ns):
                out.append("%s (now found: %s)" % (name, where))
        return out

    def extend(self, lookups, since_ns):
        """Take in what a warm-up loaded: its files, its top-level modules, the names it looked for in vain (the
        .pth files stay as they were when the first round ended). Its files are taken as they are now, which is
        what it read only if they did not change since it began (`since_ns`): returns those that did, or are
        gone, or a top-level module that the path now finds in another file written since."""
        out = []
        for path in (loaded_files() | lookups.failed) - set(self.files):
            state = self.files[path] = file_state(path)
            if path.endswith(" (deleted)"):  # memfd and SysV mappings are never files: not "gone"
                if deleted_object(path):
                    self.deleted.append(path)
            elif state is None:
                out.append("%s (gone since it was loaded)" % path)
            elif changed_after_start(path, since_ns):
                out.append("%s (changed while the warm-up ran)" % path)
        self.missing = sorted(set(self.missing) | lookups.missing)
        forget_import_caches()
        return out + self.take_tops(since_ns)

    def changes(self):
        """The loaded and run files that differ now: any one means a fresh process would not be this one."""
        out = self.deleted + self.unsure
        for path, state in sorted(self.files.items()):
            if state is not None and file_state(path) != state:
                out.append(path)
        for path, state in sorted(self.pth.items()):
            if file_state(path) != state:
                out.append(path)
        return out

    def found_elsewhere(self):
        """After the new .pth files ran: a module this process looked for in vain that is there now, and a
        top-level module it loaded that the path now finds elsewhere (a new copy earlier on sys.path)."""
        forget_import_caches()  # the children then find what was installed, too
        out = []
        for name in self.missing:
            where = found_now(name)
            if where:
                out.append("%s (now found: %s)" % (name, where))
        for name, then in sorted(self.tops.items()):
            where = found_now(name)
            if where != then and not (where and then and same_file(where, then)):
                out.append("%s (now found: %s)" % (name, where))
        return out

    def run_new_pth_files(self):
        """Run each .pth file that appeared since, as site does at start-up (in name order per directory)."""
        known = set(os.path.normcase(os.path.abspath(p)) for p in sys.path if p and os.path.isdir(p))
        for d in self.dirs:
            for path in sorted(pth_files([d])):
                if path in self.pth or path in self.replayed:
                    continue
                self.replayed.add(path)
                site.addpackage(d, os.path.basename(path), known)


def forget_import_caches():
    """Directory listings cached by the import system predate the install."""
    importlib.invalidate_caches()
    for key, finder in list(sys.path_importer_cache.items()):
        if finder is None:  # a directory that did not exist then (3.6-3.9 keep these)
            del sys.path_importer_cache[key]


def helper(name):
    """A module beside this file, loaded from its file (this directory is never put on sys.path)."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".py")
    spec = importlib.util.spec_from_file_location("_envdoctor_" + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def serve(rec, out_dir, write_json, run_round, lookups=None, timeout=0, since_ns=None):
    """Each line on stdin ({"out": DIR, "verify": [STATEMENT...]}) is one more round: run_round(DIR,
    statements) forks the dependent probes into DIR, then DIR/held.json says it is complete (or
    DIR/stale.json says this process cannot stand for a fresh one, and it exits). A line {"warm":
    [STATEMENT...], "avoid": [PATH...]} asks for the warm-up (probe_warm.py) first. EOF ends it.
    `lookups`: the names `import torch` looked for (Lookups); `timeout`: the probe's, also the warm-up's;
    `since_ns`: when this process started (Baseline)."""
    baseline = Baseline(lookups, since_ns)
    write_json(os.path.join(out_dir, "held.json"), {"pid": os.getpid()})
    tainted = None
    for line in iter(sys.stdin.readline, ""):
        request = json.loads(line)
        if "warm" in request:
            if tainted is None:
                tools = types.SimpleNamespace(helper=helper, found_now=found_now, Lookups=Lookups)
                tainted, done = helper("probe_warm").warm(request, baseline, tools, timeout)
                write_json(os.path.join(out_dir, "warm.json"), dict(done, stale=tainted))
            continue
        new_dir = request["out"]
        changed = [tainted] if tainted else baseline.changes()
        if not changed:
            baseline.run_new_pth_files()  # as site would have, before anything is looked up
            changed = baseline.found_elsewhere()
        if changed:
            write_json(os.path.join(new_dir, "stale.json"), {"changed": changed[:20]})
            return
        rec.path = os.path.join(new_dir, "torch.json")  # this process's own record, as it stands
        rec.flush()
        run_round(new_dir, list(request.get("verify") or []))
        write_json(os.path.join(new_dir, "held.json"), {"pid": os.getpid()})
