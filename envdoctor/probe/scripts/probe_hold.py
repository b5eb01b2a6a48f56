"""fix's verification reuses its before-probe's `import torch` (load_probe.py components --hold).

Runs inside the *target* interpreter: standard library only, Python 3.6+.

After the first round the probe's parent (torch imported, nothing else of the target's) waits for one
line on stdin. A forked child of it is then what a fresh process would be, provided the install changed
nothing this process had loaded: every module file and mapped shared object is compared with its state
when the round ended, and so is every .pth file of the site directories. Any difference (the fix
reinstalled torch, or replaced a .pth file whose lines already ran here) makes the process say `stale`
and exit: the caller then probes afresh. A .pth file that is new is run here as site would have run it at
start-up (its path lines added, its import lines executed), and the import system forgets what it cached
about the directories, so the children find what was installed.
"""
import importlib
import json
import os
import site
import sys


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


class Baseline(object):
    """What this process has loaded and run, as the files were when the first round ended."""

    def __init__(self):
        self.dirs = site_dirs()
        self.files = dict((p, file_state(p)) for p in loaded_files())
        self.pth = pth_files(self.dirs)
        self.replayed = set()

    def changes(self):
        """The files that differ now: any one means a fresh process would not be this one."""
        out = []
        for path, state in sorted(self.files.items()):
            if state is not None and file_state(path) != state:
                out.append(path)
        for path, state in sorted(self.pth.items()):
            if file_state(path) != state:
                out.append(path)
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


def serve(rec, out_dir, write_json, run_round):
    """Each line on stdin ({"out": DIR, "verify": [STATEMENT...]}) is one more round: run_round(DIR,
    statements) forks the dependent probes into DIR, then DIR/held.json says it is complete (or
    DIR/stale.json says this process cannot stand for a fresh one, and it exits). EOF ends it."""
    baseline = Baseline()
    write_json(os.path.join(out_dir, "held.json"), {"pid": os.getpid()})
    for line in iter(sys.stdin.readline, ""):
        request = json.loads(line)
        new_dir = request["out"]
        changed = baseline.changes()
        if changed:
            write_json(os.path.join(new_dir, "stale.json"), {"changed": changed[:20]})
            return
        baseline.run_new_pth_files()
        forget_import_caches()
        rec.path = os.path.join(new_dir, "torch.json")  # this process's own record, as it stands
        rec.flush()
        run_round(new_dir, list(request.get("verify") or []))
        write_json(os.path.join(new_dir, "held.json"), {"pid": os.getpid()})
