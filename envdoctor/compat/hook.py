"""Import hook that serves the compat stand-in when the real ``mmcv._ext`` cannot load.

Activation in a target environment (no envdoctor needed there)::

    enable(site_packages_dir)   # copies this package to <site>/_envdoctor_compat/
                                # and writes <site>/_envdoctor_compat.pth
    disable(site_packages_dir)  # removes both

The ``.pth`` file holds one ``import`` line that imports this module (stdlib
only, no torch) and calls :func:`install`, which puts a finder at the front of
``sys.meta_path``.  The finder reacts to the single name ``mmcv._ext``:

* ``ENVDOCTOR_COMPAT=0`` (also ``off``, ``false``, ``no``, ``disable``): it does
  nothing, the original error comes back;
* ``ENVDOCTOR_COMPAT=force``: it always serves the stand-in;
* otherwise (default ``auto``): it asks the other finders for the real
  ``mmcv._ext``; if there is none, or loading it raises ``ImportError`` /
  ``OSError`` (undefined symbol, missing DLL, wrong ABI...), it serves the
  stand-in (:mod:`.ext`) instead.

When it serves the stand-in it says so once per process on stderr.
"""

# Start-up cost matters (this module is imported by a .pth line in every interpreter start):
# only modules that are already loaded at start-up, or tiny; the rest is imported lazily.
import importlib.machinery
import os
import sys

__all__ = [
    "TARGET",
    "ENV_VAR",
    "PRIVATE_NAME",
    "CompatFinder",
    "install",
    "uninstall",
    "is_installed",
    "mode",
    "pth_line",
    "enable",
    "disable",
]

TARGET = "mmcv._ext"
ENV_VAR = "ENVDOCTOR_COMPAT"
PRIVATE_NAME = "_envdoctor_compat"

_OFF = ("0", "off", "false", "no", "disable", "disabled")
_FORCE = ("force", "always", "1!")

_state = {"announced": False, "last_reason": None}


def mode():
    """'off', 'force' or 'auto', from the ENVDOCTOR_COMPAT environment variable."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in _OFF:
        return "off"
    if value in _FORCE:
        return "force"
    return "auto"


def _announce(reason):
    _state["last_reason"] = reason
    if _state["announced"]:
        return
    _state["announced"] = True
    from .errors import SERVED_SUMMARY  # here, not at start-up: the .pth line stays minimal

    try:
        sys.stderr.write(
            "envdoctor-compat: serving mmcv._ext from the envdoctor compat layer (%s); only "
            "these ops are available: %s. Set %s=0 to disable.\n"
            % (reason, SERVED_SUMMARY, ENV_VAR))
        sys.stderr.flush()
    except Exception:  # pragma: no cover - a closed stderr must not break the import
        pass


def _fill_with_standin(module):
    import importlib

    standin = importlib.import_module(__package__ + ".ext")
    for key, value in vars(standin).items():
        if key in ("__name__", "__spec__", "__loader__", "__package__", "__path__",
                   "__builtins__", "__cached__"):
            continue
        setattr(module, key, value)
    module.__file__ = getattr(standin, "__file__", None)
    module.__envdoctor_compat__ = True


class _StandinLoader(object):
    """Loads ``mmcv._ext`` as a copy of the stand-in's namespace."""

    def __init__(self, reason):
        self.reason = reason

    def create_module(self, spec):
        return None  # default module object

    def exec_module(self, module):
        _fill_with_standin(module)
        _announce(self.reason)


class _FallbackLoader(object):
    """Wraps the real loader; serves the stand-in if the real one raises ImportError/OSError."""

    def __init__(self, real_spec):
        self.real_spec = real_spec
        self.real_loader = real_spec.loader
        self.failed = None

    def create_module(self, spec):
        try:
            return self.real_loader.create_module(self.real_spec)
        except (ImportError, OSError) as exc:
            self.failed = "%s: %s" % (type(exc).__name__, exc)
            return None

    def exec_module(self, module):
        if self.failed is None:
            # the real extension loaded: run its initialisation
            module.__spec__ = self.real_spec
            module.__loader__ = self.real_loader
            return self.real_loader.exec_module(module)
        _fill_with_standin(module)
        _announce("the real mmcv._ext failed to load: %s" % (self.failed,))


class CompatFinder(object):
    """``sys.meta_path`` finder for ``mmcv._ext`` (see the module docstring)."""

    envdoctor_compat_finder = True

    def find_spec(self, fullname, path=None, target=None):
        if fullname != TARGET:
            return None
        m = mode()
        if m == "off":
            return None
        if m == "force":
            return importlib.machinery.ModuleSpec(
                fullname, _StandinLoader("forced by %s=force" % ENV_VAR), origin="envdoctor-compat")
        real = None
        for finder in list(sys.meta_path):
            if finder is self or getattr(finder, "envdoctor_compat_finder", False):
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            try:
                real = find(fullname, path, target)
            except (ImportError, OSError):
                real = None
            if real is not None:
                break
        if real is None or real.loader is None:
            return importlib.machinery.ModuleSpec(
                fullname, _StandinLoader("no compiled mmcv._ext is installed"),
                origin="envdoctor-compat")
        spec = importlib.machinery.ModuleSpec(fullname, _FallbackLoader(real),
                                              origin=real.origin)
        spec.has_location = real.has_location
        spec.submodule_search_locations = real.submodule_search_locations
        return spec


def is_installed():
    return any(getattr(f, "envdoctor_compat_finder", False) for f in sys.meta_path)


def install():
    """Register the finder (idempotent across copies of this package). Never raises."""
    try:
        if not is_installed():
            sys.meta_path.insert(0, CompatFinder())
    except Exception:  # pragma: no cover
        pass


def uninstall():
    sys.meta_path[:] = [f for f in sys.meta_path
                        if not getattr(f, "envdoctor_compat_finder", False)]


# ---------------------------------------------------------------------------
# enabling in a site-packages directory
# ---------------------------------------------------------------------------


def pth_line(package=PRIVATE_NAME):
    """The single line of the ``.pth`` file: import the hook, register the finder."""
    return "import %s.hook as _envdoctor_compat_hook; _envdoctor_compat_hook.install()\n" % package


def _package_dir():
    return os.path.dirname(os.path.abspath(__file__))


def _paths(site_packages_dir):
    from pathlib import Path

    site = Path(site_packages_dir)
    return site, site / PRIVATE_NAME, site / (PRIVATE_NAME + ".pth")


def enable(site_packages_dir):
    """Activate the compat layer in the environment owning ``site_packages_dir``.

    Copies this self-contained package (``*.py`` only) to
    ``<site>/_envdoctor_compat/`` and writes ``<site>/_envdoctor_compat.pth``.
    Idempotent: an existing copy is replaced.  Returns the paths it created
    (the package directory and the ``.pth`` file), for the caller to record
    and undo with :func:`disable`.
    """
    import shutil

    site, pkg, pth = _paths(site_packages_dir)
    if not site.is_dir():
        raise FileNotFoundError("site-packages directory does not exist: %s" % site)
    src = _package_dir()
    tmp = site / (PRIVATE_NAME + ".tmp")
    if tmp.exists():
        shutil.rmtree(str(tmp))
    tmp.mkdir()
    for name in sorted(os.listdir(src)):
        if name.endswith(".py"):
            shutil.copy2(os.path.join(src, name), str(tmp / name))
    if pkg.exists():
        shutil.rmtree(str(pkg))
    os.replace(str(tmp), str(pkg))
    pth_tmp = site / (PRIVATE_NAME + ".pth.tmp")
    pth_tmp.write_text(pth_line())
    os.replace(str(pth_tmp), str(pth))
    return [pkg, pth]


def disable(site_packages_dir):
    """Remove what :func:`enable` created. Returns the paths removed."""
    import shutil

    site, pkg, pth = _paths(site_packages_dir)
    removed = []
    for p in (pth, site / (PRIVATE_NAME + ".pth.tmp")):
        if p.exists():
            p.unlink()
            removed.append(p)
    for p in (pkg, site / (PRIVATE_NAME + ".tmp")):
        if p.exists():
            shutil.rmtree(str(p))
            removed.append(p)
    return removed
