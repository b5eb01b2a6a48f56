"""The distributions installed for the interpreter that loads this file, read from their metadata and RECORD
files (never imported), and the package directories of the components on its sys.path.

Loaded by static_facts.py from this file, in the *target* interpreter: standard library only, Python 3.6+.
"""
import errno
import json
import os
import re
import sys

COMPILED_SUFFIXES = (".so", ".pyd", ".dll", ".dylib")
# Distributions whose whole RECORD is checked against the disk (shared-package clashes).
FULL_RECORD = ("mmcv", "mmcv-full", "mmcv-lite", "torch", "torchvision")
MAX_LISTED = 20


def norm_name(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def read_text(path, limit=None):
    try:
        with open(path, "rb") as f:
            data = f.read() if limit is None else f.read(limit)
        return data.decode("utf-8", "replace")
    except (OSError, IOError):
        return None


def headers(text):
    """Name/Version/... from an email-style METADATA header block."""
    out = {}
    for line in text.splitlines():
        if not line.strip():
            break
        if ":" in line and not line[0].isspace():
            key, _, value = line.partition(":")
            out.setdefault(key.strip().lower(), value.strip())
    return out


def path_dirs():
    seen = []
    for p in sys.path:
        if p and os.path.isdir(p) and p not in seen:
            seen.append(p)
    return seen


def dir_state(path):
    """ok | absent | broken-symlink | not-a-directory | unreadable (with the OS error)."""
    if not os.path.lexists(path):
        return {"path": path, "state": "absent"}
    if not os.path.exists(path):
        return {"path": path, "state": "broken-symlink", "target": safe_readlink(path)}
    if not os.path.isdir(path):
        return {"path": path, "state": "not-a-directory"}
    try:
        os.listdir(path)
    except OSError as exc:
        return {"path": path, "state": "unreadable", "errno": exc.errno, "error": exc.strerror or str(exc)}
    return {"path": path, "state": "ok"}


def safe_readlink(path):
    try:
        return os.readlink(path)
    except OSError:
        return None


class DirCache(object):
    """Which files exist, one listdir per directory instead of one stat per file (torch's
    RECORD lists ~15,000 files in ~1,000 directories)."""

    def __init__(self):
        self.listing = {}

    def names(self, head):
        """The names in directory `head`; empty when it does not exist, None when it cannot be read."""
        if head not in self.listing:
            try:
                self.listing[head] = frozenset(os.listdir(head or os.sep))
            except OSError as exc:
                gone = exc.errno in (errno.ENOENT, errno.ENOTDIR)
                self.listing[head] = frozenset() if gone else None
        return self.listing[head]

    def exists(self, path):
        """True / False, or None when the directory cannot be read (its files are not *missing*)."""
        head, _, name = path.rpartition(os.sep)
        names = self.names(head)
        return None if names is None else name in names


def is_compiled(path):
    if path.endswith(COMPILED_SUFFIXES):
        return True
    return ".so." in path and ".so." in path.rpartition("/")[2]  # libfoo.so.1


def record_facts(dist_dir, location, full, cache):
    text = read_text(os.path.join(dist_dir, "RECORD"))
    out = {"compiled_files": 0, "compiled_missing": [], "record_files": 0, "record_missing": 0,
           "compiled_paths": [], "missing_paths": []}
    if text is None:
        return out
    # the directory part of a RECORD path is resolved once per directory, not per file (torch: ~15,000
    # files in ~1,000 directories); RECORD separates with "/", some Windows tools wrote "\\"
    heads = {}
    for line in text.splitlines():
        path = line.split(",", 1)[0]
        if not path:
            continue
        out["record_files"] += 1
        compiled = is_compiled(path)
        if not (compiled or full):
            continue
        rel_head, _, name = (path if os.sep == "/" else path.replace(os.sep, "/")).rpartition("/")
        if rel_head in heads:
            head = heads[rel_head]
        else:
            head = heads[rel_head] = os.path.normpath(os.path.join(location, rel_head))
        if name in ("", ".", ".."):  # not a file name: normalise the whole path, as written
            exists = cache.exists(os.path.normpath(os.path.join(location, path)))
        else:
            names = cache.names(head)
            exists = None if names is None else name in names
        if compiled:
            out["compiled_files"] += 1
            if len(out["compiled_paths"]) < MAX_LISTED:
                out["compiled_paths"].append(path)
            if exists is False and len(out["compiled_missing"]) < MAX_LISTED:
                out["compiled_missing"].append(path)
        if exists is False and not is_bytecode(path):
            out["record_missing"] += 1
            if len(out["missing_paths"]) < MAX_LISTED:
                out["missing_paths"].append(path)
    return out


def is_bytecode(path):
    """A cached .pyc: Python rewrites it, and deleting __pycache__ directories is routine clean-up."""
    return path.endswith(".pyc") and "__pycache__/" in path


def distributions():
    dists = {}
    cache = DirCache()
    for location in path_dirs():
        try:
            entries = sorted(os.listdir(location))
        except OSError:
            continue
        for entry in entries:
            if not (entry.endswith(".dist-info") or entry.endswith(".egg-info")):
                continue
            dist_dir = os.path.join(location, entry)
            meta_file = "METADATA" if entry.endswith(".dist-info") else "PKG-INFO"
            meta_path = os.path.join(dist_dir, meta_file) if os.path.isdir(dist_dir) else dist_dir
            meta = read_text(meta_path, 65536)
            if meta is None:
                continue
            h = headers(meta)
            name = h.get("name")
            if not name:
                continue
            key = norm_name(name)
            if key in dists:  # first on sys.path wins, as for imports; remember the shadowed one
                dists[key].setdefault("shadowed_locations", []).append(location)
                continue
            info = {"name": name, "version": h.get("version", ""), "location": location,
                    "metadata_dir": dist_dir}
            if os.path.isdir(dist_dir):
                installer = read_text(os.path.join(dist_dir, "INSTALLER"))
                info["installer"] = installer.strip() if installer else None
                info["requested"] = os.path.exists(os.path.join(dist_dir, "REQUESTED"))
                direct = read_text(os.path.join(dist_dir, "direct_url.json"))
                if direct:
                    try:
                        info["direct_url"] = json.loads(direct)
                    except ValueError:
                        info["direct_url"] = {"unparsable": True}
                wheel = read_text(os.path.join(dist_dir, "WHEEL"))
                if wheel:
                    info["wheel_tags"] = [ln.split(":", 1)[1].strip() for ln in wheel.splitlines()
                                          if ln.startswith("Tag:")]
                    gen = [ln.split(":", 1)[1].strip() for ln in wheel.splitlines()
                           if ln.startswith("Generator:")]
                    info["wheel_generator"] = gen[0] if gen else None
                top = read_text(os.path.join(dist_dir, "top_level.txt"))
                info["top_level"] = [t.strip() for t in top.splitlines() if t.strip()] if top else []
                info.update(record_facts(dist_dir, location, key in FULL_RECORD, cache))
            dists[key] = info
    return dists


ASSIGN = re.compile(r"^(\w+)(?:\s*:\s*[^=]+)?\s*=\s*(.+?)\s*$")


def parse_version_py(path):
    """Top-level simple assignments of a generated version.py, without executing it."""
    text = read_text(path, 65536)
    if text is None:
        return None
    out = {}
    for line in text.splitlines():
        m = ASSIGN.match(line)
        if not m:
            continue
        key, value = m.group(1), m.group(2)
        if value in ("None",):
            out[key] = None
        elif value in ("True", "False"):
            out[key] = value == "True"
        elif len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0]:
            out[key] = value[1:-1]
    return out


def package_dirs(name):
    """Every directory on sys.path that holds an importable `name` package (first one wins)."""
    found = []
    for location in path_dirs():
        pkg = os.path.join(location, name)
        if os.path.isdir(pkg):
            entry = {"path": pkg, "has_init": os.path.exists(os.path.join(pkg, "__init__.py"))}
            state = dir_state(pkg)
            if state["state"] != "ok":  # e.g. unreadable: Python then imports it as an empty namespace package
                entry["state"] = state["state"]
                entry["error"] = state.get("error")
            ver = parse_version_py(os.path.join(pkg, "version.py"))
            if ver and ver.get("__version__"):
                entry["version"] = ver["__version__"]
            found.append(entry)
    return found


def ext_files(pkg_dir, stem):
    try:
        names = os.listdir(pkg_dir)
    except OSError:
        return []
    # torchvision 0.29 ships `_C_stable.so`, older ones `_C.so` / `_C.cpython-*.so`
    return sorted(n for n in names if re.match(re.escape(stem) + r"[._]", n) and n.endswith(COMPILED_SUFFIXES))


def component(name, dists, owners_of):
    dirs = package_dirs(name)
    info = {"name": name, "package_dirs": dirs, "installed": bool(dirs)}
    owners = owners_of(name)
    info["distributions"] = owners
    if not dirs:
        return info
    pkg = dirs[0]["path"]
    info["location"] = os.path.dirname(pkg)
    ver = parse_version_py(os.path.join(pkg, "version.py"))
    if ver is not None:
        info["version_py"] = ver
    return info


def owner_details(top, owners, dists, ext_stem=None):
    """For each distribution that owns package `top`: version, wheel tags, and its compiled
    extension (`top/<ext_stem>.*`) as listed in RECORD and as found on disk."""
    out = []
    for name in owners:
        d = dists.get(norm_name(name))
        if d is None:
            continue
        info = {"name": d["name"], "version": d.get("version", ""), "location": d.get("location"),
                "installer": d.get("installer"), "wheel_tags": d.get("wheel_tags", []),
                "wheel_generator": d.get("wheel_generator"), "direct_url": d.get("direct_url"),
                "record_files": d.get("record_files", 0), "record_missing": d.get("record_missing", 0)}
        if ext_stem:
            listed = []
            rec = read_text(os.path.join(d.get("metadata_dir", ""), "RECORD"), 1 << 22) or ""
            pat = re.compile(r"^" + re.escape(top) + "/" + re.escape(ext_stem) + r"(?:[._][^/]*)?\.(so|pyd|dylib)$")
            for line in rec.splitlines():
                path = line.split(",", 1)[0]
                if pat.match(path):
                    listed.append({"path": path,
                                   "exists": os.path.exists(os.path.join(d.get("location", ""), path))})
            info["ext_in_record"] = listed
        out.append(info)
    return out
