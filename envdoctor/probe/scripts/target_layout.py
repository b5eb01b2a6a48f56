"""The target's layout and the facts pip's own decisions depend on (fix --apply reads them before it acts).

Runs inside the *target* interpreter: standard library only, Python 3.6+. Records, never judges:
sys.prefix, the environment markers of PEP 508, sysconfig's install paths, the user scheme's paths
and whether the user site is enabled, pip's version (None when pip does not import), what its byte-code
files are (magic number and tag), and whether it is externally managed (PEP 668).

Usage: target_layout.py OUT_JSON
"""
import json
import os
import platform
import site
import sys
import sysconfig


def version_text(info):
    v = "%d.%d.%d" % tuple(info[:3])
    if info[3] != "final":
        v += info[3][0] + str(info[4])
    return v


def markers():
    return {
        "implementation_name": sys.implementation.name,
        "implementation_version": version_text(sys.implementation.version),
        "os_name": os.name, "platform_machine": platform.machine(), "platform_release": platform.release(),
        "platform_system": platform.system(), "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]), "sys_platform": sys.platform,
    }


def user_scheme():
    scheme = {"nt": "nt_user", "posix": "posix_user"}.get(os.name)
    if sys.platform == "darwin" and "osx_framework_user" in sysconfig.get_scheme_names():
        scheme = "osx_framework_user"
    try:
        paths = sysconfig.get_paths(scheme=scheme) if scheme else {}
    except KeyError:
        paths = {}
    return {"site": getattr(site, "USER_SITE", None), "enabled": bool(getattr(site, "ENABLE_USER_SITE", False)),
            "paths": paths}


def pip_version():
    try:
        import pip
        return pip.__version__
    except Exception:  # no pip, or a broken one: pip's own run says why
        return None


def bytecode():
    """What this interpreter's byte-code files are: the magic number their header starts with, and the tag in
    their names (None where it writes none)."""
    try:
        import importlib.util
        return {"magic": importlib.util.MAGIC_NUMBER.hex(), "tag": sys.implementation.cache_tag}
    except Exception:
        return None


def externally_managed():
    """PEP 668: a Python whose installs its distribution's package manager owns (pip refuses to write there);
    a venv never is."""
    if sys.prefix != getattr(sys, "base_prefix", sys.prefix):
        return False
    try:
        return os.path.isfile(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
    except Exception:
        return False


def main():
    out = {"prefix": sys.prefix, "executable": sys.executable, "markers": markers(),
           "paths": sysconfig.get_paths(), "user": user_scheme(), "pip": pip_version(), "bytecode": bytecode(),
           "externally_managed": externally_managed()}
    tmp = sys.argv[1] + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(out))  # dumps: the C encoder
    os.replace(tmp, sys.argv[1])


if __name__ == "__main__":
    main()
