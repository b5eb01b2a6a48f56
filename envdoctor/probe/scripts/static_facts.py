"""Static facts about the interpreter that runs this file. Imports nothing heavy.

Runs inside the *target* interpreter: standard library only, Python 3.6+.
Writes one JSON object to the path given as the first argument (never to
stdout, which imported code may use). Judges nothing. The distributions and package
directories are read by installed_dists.py, loaded from beside this file.
"""
import json
import os
import platform
import site
import sys
import sysconfig


def sibling(name):
    """A helper module beside this script, loaded from its file. This directory is not put on sys.path:
    nothing of envdoctor's may shadow a module of the target."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".py")
    spec = importlib.util.spec_from_file_location("_envdoctor_" + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DISTS = sibling("installed_dists")  # what is installed, read from metadata


def python_facts():
    impl = platform.python_implementation()
    ver = sys.version_info
    abi = None
    soabi = sysconfig.get_config_var("SOABI")
    if impl == "CPython":
        abi = "cp%d%d" % (ver[0], ver[1])
        if sysconfig.get_config_var("Py_GIL_DISABLED"):
            abi += "t"
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    try:
        site_packages = list(site.getsitepackages())
    except AttributeError:  # old virtualenv's site.py
        site_packages = [p for p in sys.path if p.endswith("site-packages")]
    user_site = getattr(site, "USER_SITE", None)
    conda_prefix = None
    if os.path.isdir(os.path.join(sys.prefix, "conda-meta")):
        conda_prefix = sys.prefix
    return {
        "executable": sys.executable,
        "version": "%d.%d.%d" % (ver[0], ver[1], ver[2]),
        "implementation": impl,
        "abi_tag": abi,
        "soabi": soabi,
        "platform_tag": plat,
        "prefix": sys.prefix,
        "base_prefix": getattr(sys, "base_prefix", sys.prefix),
        "is_venv": getattr(sys, "base_prefix", sys.prefix) != sys.prefix,
        "conda_prefix": conda_prefix,
        "site_packages": site_packages,
        "user_site": user_site,
        "user_site_enabled": bool(getattr(site, "ENABLE_USER_SITE", False)),
        "sys_path": [p for p in sys.path if p],
        "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"),
        "maxsize_64bit": sys.maxsize > 2 ** 32,
    }


def path_problems(py):
    """sys.path entries and site-packages directories that exist but cannot be read."""
    out = []
    seen = set()
    for p in list(py["site_packages"]) + ([py["user_site"]] if py["user_site"] else []) + list(sys.path):
        if not p or p in seen:
            continue
        seen.add(p)
        st = DISTS.dir_state(p)
        if st["state"] not in ("ok", "absent"):
            st["site_packages"] = p in py["site_packages"]
            st["under_prefix"] = os.path.abspath(p).startswith(os.path.abspath(sys.prefix) + os.sep)
            out.append(st)
    return out


# Written first thing on stderr: whatever precedes it was printed by the interpreter's start-up
# (site.py reporting a failing .pth line or sitecustomize), before any code of ours ran.
STARTUP_MARK = "ENVDOCTOR-STATIC-START"
MAX_PTH_LINES = 50


def startup_facts(py):
    """The start-up code this interpreter runs: sitecustomize / usercustomize (where, whether they imported)
    and the executable lines (`import ...`) of the .pth files in its site directories. Nothing is run."""
    out = {}
    for name in ("sitecustomize", "usercustomize"):
        try:
            import importlib.util
            spec = importlib.util.find_spec(name)
            origin = getattr(spec, "origin", None) if spec is not None else None
        except Exception:  # a broken finder: the start-up stderr tells the rest
            origin = None
        if origin:
            out[name] = {"path": origin, "imported": name in sys.modules}
    lines = []
    dirs = list(py["site_packages"]) + ([py["user_site"]] if py["user_site_enabled"] and py["user_site"] else [])
    for d in dirs:
        try:
            names = sorted(n for n in os.listdir(d) if n.endswith(".pth"))
        except OSError:
            continue
        for name in names:
            text = DISTS.read_text(os.path.join(d, name), 65536) or ""
            for n, line in enumerate(text.splitlines(), 1):
                if line.startswith(("import ", "import\t")) and len(lines) < MAX_PTH_LINES:
                    lines.append({"path": os.path.join(d, name), "line": n, "text": line[:300]})
    out["pth_exec"] = lines
    return out


def main():
    sys.stderr.write(STARTUP_MARK + "\n")
    sys.stderr.flush()
    out_path = sys.argv[1]
    result = {"python": python_facts()}
    result["startup"] = startup_facts(result["python"])
    dists = DISTS.distributions()
    result["distributions"] = dists

    def owners_of(top):
        owners = []
        prefix = top + "/"
        for _key, d in sorted(dists.items()):
            if top in d.get("top_level", []):
                owners.append(d["name"])
                continue
            # no top_level.txt (e.g. wheels built by other backends): fall back to RECORD paths
            if not d.get("top_level") and d.get("metadata_dir", "").endswith(".dist-info"):
                rec = DISTS.read_text(os.path.join(d["metadata_dir"], "RECORD"), 1 << 20) or ""
                if ("\n" + prefix) in ("\n" + rec):
                    owners.append(d["name"])
        return owners

    comps = {}
    for name in ("torch", "torchvision", "mmcv"):
        comps[name] = DISTS.component(name, dists, owners_of)
    mmcv_dirs = comps["mmcv"].get("package_dirs") or []
    if mmcv_dirs:
        comps["mmcv"]["ext_files"] = DISTS.ext_files(mmcv_dirs[0]["path"], "_ext")
    tv_dirs = comps["torchvision"].get("package_dirs") or []
    if tv_dirs:
        comps["torchvision"]["ext_files"] = DISTS.ext_files(tv_dirs[0]["path"], "_C")
    for name, stem in (("torch", None), ("torchvision", "_C"), ("mmcv", "_ext")):
        comps[name]["owners"] = DISTS.owner_details(name, comps[name]["distributions"], dists, stem)
    result["components"] = comps
    result["path_problems"] = path_problems(result["python"])
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(result))  # dumps: the C encoder (dump streams through the pure-Python one)
    os.replace(tmp, out_path)


if __name__ == "__main__":
    main()
