"""Try to import one component in this (isolated, disposable) process.

Runs inside the *target* interpreter: standard library only, Python 3.6+.
Usage: load_probe.py OUT_JSON COMPONENT [MODULE]. The result goes to OUT_JSON,
rewritten after every stage, so that when an import kills the process the
parent still knows which stage was running. Never judges: it records.
"""
import faulthandler
import json
import os
import sys
import time
import traceback

STATE = {"stages": [], "facts": {}}
OUT = None


def flush():
    tmp = OUT + ".tmp"
    with open(tmp, "w") as f:
        json.dump(STATE, f, default=str)
    os.replace(tmp, OUT)


def describe(exc):
    err = {"type": type(exc).__name__, "message": str(exc)[:4000]}
    if isinstance(exc, OSError):
        err["errno"] = exc.errno
        err["winerror"] = getattr(exc, "winerror", None)
    if isinstance(exc, ImportError):
        err["module"] = getattr(exc, "name", None)
        err["path"] = getattr(exc, "path", None)
    err["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-6000:]
    return err


def stage(name, fn):
    """Run one stage; record status and timing. Returns fn's value or None."""
    rec = {"name": name, "status": "running"}
    STATE["stages"].append(rec)
    flush()
    start = time.time()
    try:
        value = fn()
    except BaseException as exc:  # noqa: B902 - SystemExit from an import is a result too
        rec["seconds"] = round(time.time() - start, 4)
        rec["error"] = describe(exc)
        missing = isinstance(exc, ImportError) and type(exc).__name__ == "ModuleNotFoundError"
        rec["status"] = "missing" if missing and getattr(exc, "name", None) == name else "import_error"
        flush()
        return None
    rec["seconds"] = round(time.time() - start, 4)
    rec["status"] = "ok"
    flush()
    return value


def safe(fn, default=None):
    try:
        return fn()
    except Exception as exc:  # facts are best-effort; the import result is what matters
        return "error: %s: %s" % (type(exc).__name__, exc)


def loaded_libraries(*needles):
    """Shared objects mapped into this process whose name contains a needle (Linux)."""
    found = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and any(n in parts[-1] for n in needles) and parts[-1] not in found:
                    found.append(parts[-1])
    except (OSError, IOError):
        pass
    return found


def import_module(name):
    return lambda: __import__(name, fromlist=["__name__"])


def torch_facts(torch):
    f = STATE["facts"]
    f["version"] = safe(lambda: torch.__version__)
    f["file"] = safe(lambda: torch.__file__)
    f["cuda"] = safe(lambda: torch.version.cuda)
    f["hip"] = safe(lambda: getattr(torch.version, "hip", None))
    f["cxx11_abi"] = safe(lambda: bool(torch._C._GLIBCXX_USE_CXX11_ABI))
    f["debug"] = safe(lambda: bool(torch.version.debug))
    f["cudnn"] = safe(lambda: torch.backends.cudnn.version())
    f["arch_list"] = safe(lambda: torch.cuda.get_arch_list())
    f["cuda_available"] = safe(lambda: torch.cuda.is_available())
    flush()
    if f["cuda_available"] is True:
        f["device_count"] = safe(lambda: torch.cuda.device_count())
        devices = []
        for i in range(f["device_count"] if isinstance(f["device_count"], int) else 0):
            devices.append({
                "index": i,
                "name": safe(lambda: torch.cuda.get_device_name(i)),
                "capability": safe(lambda: "%d.%d" % torch.cuda.get_device_capability(i)),
            })
        f["devices"] = devices
    f["libcudart"] = loaded_libraries("libcudart", "cudart64")
    f["libraries"] = loaded_libraries("libtorch", "libc10")[:10]
    flush()


def probe_torch():
    torch = stage("torch", import_module("torch"))
    if torch is not None:
        torch_facts(torch)


def probe_torchvision():
    torch = stage("torch", import_module("torch"))
    if torch is None:
        return
    tv = stage("torchvision", import_module("torchvision"))
    if tv is not None:
        STATE["facts"]["version"] = safe(lambda: tv.__version__)
        STATE["facts"]["cuda"] = safe(lambda: tv.version.cuda)

        def nms():
            import torchvision.ops
            boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
            return torchvision.ops.nms(boxes, torch.tensor([1.0]), 0.5).tolist()

        stage("torchvision.ops", nms)
    ops_ok = any(s["name"] == "torchvision.ops" and s["status"] == "ok" for s in STATE["stages"])
    if not ops_ok:
        # torchvision hides the loader error ("operator torchvision::nms does not exist");
        # loading the library directly, after torch, surfaces the real one.
        import glob
        import importlib.util
        spec = importlib.util.find_spec("torchvision")
        if spec and spec.submodule_search_locations:
            libs = []
            for loc in spec.submodule_search_locations:
                libs += glob.glob(os.path.join(loc, "_C.*"))
            STATE["facts"]["ops_library"] = libs[0] if libs else None
            if libs:
                stage("torchvision._C(direct)", lambda: torch.ops.load_library(libs[0]))


def probe_mmcv():
    try:
        import importlib.util
        has_torch = importlib.util.find_spec("torch") is not None
    except Exception:
        has_torch = False
    if has_torch:
        # mmcv._ext needs torch's libraries loaded first, as in real use.
        stage("torch", import_module("torch"))
    mmcv = stage("mmcv", import_module("mmcv"))
    if mmcv is not None:
        STATE["facts"]["version"] = safe(lambda: getattr(mmcv, "__version__", None))
        STATE["facts"]["file"] = safe(lambda: getattr(mmcv, "__file__", None))
    ext = stage("mmcv._ext", import_module("mmcv._ext"))
    if ext is not None:
        STATE["facts"]["ext_file"] = safe(lambda: ext.__file__)
        STATE["facts"]["compiling_cuda_version"] = safe(lambda: ext.get_compiling_cuda_version())
        STATE["facts"]["compiler_version"] = safe(lambda: ext.get_compiler_version())


def probe_module(name):
    mod = stage(name, import_module(name))
    if mod is not None:
        STATE["facts"]["file"] = safe(lambda: getattr(mod, "__file__", None))


PROBES = {"torch": probe_torch, "torchvision": probe_torchvision, "mmcv": probe_mmcv}


def main():
    global OUT
    OUT = sys.argv[1]
    what = sys.argv[2]
    # A crash prints the Python stack to stderr, which the parent keeps.
    faulthandler.enable(all_threads=False)
    if "" in sys.path:  # the probe runs in a scratch directory: never import from it
        sys.path.remove("")
    STATE["component"] = what
    flush()
    PROBES.get(what, lambda: probe_module(what))()
    STATE["done"] = True
    flush()
    sys.stdout.flush()
    # Skip interpreter teardown: some extensions crash in their destructors,
    # which is not what we are asked about.
    os._exit(0)


if __name__ == "__main__":
    main()
