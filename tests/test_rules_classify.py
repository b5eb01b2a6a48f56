"""classify.py: load-error texts -> causes, with the library / symbol extracted."""

from __future__ import annotations

import pytest

from envdoctor.classify import classify, classify_text
from envdoctor.facts import LoadError, LoadResult
from envdoctor.rules import load_tables

T = load_tables()


@pytest.mark.parametrize("text, kind, extra", [
    ("DLL load failed while importing _ext: 找不到指定的程序。", "missing_procedure",
     {"winerror": 127, "language": "zh-CN", "module": "_ext"}),
    ("DLL load failed while importing _ext: 找不到指定的模块。", "missing_library",
     {"winerror": 126, "language": "zh-CN"}),
    ("DLL load failed while importing _ext: The specified procedure could not be found.", "missing_procedure",
     {"winerror": 127, "language": "en"}),
    ("DLL load failed: 지정된 모듈을 찾을 수 없습니다.", "missing_library", {"winerror": 126, "language": "ko"}),
    ('[WinError 126] 找不到指定的模块。 Error loading '
     '"D:\\ocr\\venv\\Lib\\site-packages\\torch\\lib\\fbgemm.dll" or one of its dependencies.', "missing_library",
     {"winerror": 126, "library": "D:\\ocr\\venv\\Lib\\site-packages\\torch\\lib\\fbgemm.dll"}),
    ("[WinError 1114] A dynamic link library (DLL) initialization routine failed. Error loading "
     '"C:\\x\\torch\\lib\\c10.dll" or one of its dependencies.', "dll_init_failed", {"winerror": 1114}),
    ("libc10_cuda.so: cannot open shared object file: No such file or directory", "missing_library",
     {"library": "libc10_cuda.so"}),
    ("libcudnn.so.9: cannot open shared object file: No such file or directory", "missing_library",
     {"library": "libcudnn.so.9"}),
    ("/v/mmcv/_ext.cpython-311-x86_64-linux-gnu.so: undefined symbol: "
     "_ZN3c1010ValueErrorC1ENS_14SourceLocationENSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE",
     "undefined_symbol", {"cxx11_symbol": True}),
    ("/v/torchvision/_C.so: undefined symbol: _ZN3c104cuda29c10_cuda_check_implementationEiPKcS2_jb",
     "undefined_symbol", {"symbol": "_ZN3c104cuda29c10_cuda_check_implementationEiPKcS2_jb"}),
    ("/usr/lib/x86_64-linux-gnu/libstdc++.so.6: version `GLIBCXX_3.4.30' not found (required by "
     "/v/torch/lib/libtorch_python.so)", "glibcxx",
     {"version": "GLIBCXX_3.4.30", "library": "/v/torch/lib/libtorch_python.so"}),
    ("/usr/lib64/libstdc++.so.6: version `CXXABI_1.3.8' not found (required by /v/torch/lib/libATen.so)", "glibcxx",
     {"version": "CXXABI_1.3.8"}),
    ("A module that was compiled using NumPy 1.x cannot be run in\nNumPy 2.0.0 as it may crash.", "numpy_abi",
     {"version": "2.0.0"}),
    ("operator torchvision::nms does not exist", "ops_not_registered", {"symbol": "nms"}),
    ("No module named 'mmcv._ext'", "missing_module", {"module": "mmcv._ext"}),
    ("MMCV==2.2.0 is used but incompatible. Please install mmcv>=2.0.0rc4, <2.2.0.", "consumer_range",
     {"version": "2.2.0"}),
    ("nms_impl: implementation for device cuda:0 not found.", "no_cuda_kernels", {"symbol": "nms_impl"}),
    ("dynamic module does not define module export function (PyInit_broken_noinit)", "bad_init",
     {"symbol": "PyInit_broken_noinit"}),
])
def test_classify_text(text, kind, extra):
    cause = classify_text(text, T)
    assert cause is not None and cause.kind == kind, cause
    for key, value in extra.items():
        assert getattr(cause, key) == value, (key, cause)
    assert cause.source is None or cause.source.startswith("https://")


def test_every_localized_message_maps_to_its_code():
    codes = {r["code"]: r["cause"] for r in T.rows("winerror")}
    for row in T.rows("win_message"):
        cause = classify_text(f"DLL load failed while importing _ext: {row['text']}", T)
        assert cause is not None and cause.winerror == row["code"], row
        assert cause.kind == codes[row["code"]] and cause.language == row["lang"]


def test_winerror_attribute_wins_over_text():
    load = LoadResult(status="import_error", error=LoadError(type="OSError", message="whatever", winerror=127))
    assert classify(load, T).kind == "missing_procedure"


def test_statuses_without_a_message():
    assert classify(LoadResult(status="ok"), T) is None
    assert classify(LoadResult(status="skipped"), T) is None
    assert classify(LoadResult(status="crash", error=LoadError(type="Crash", message="the process died (SIGSEGV)",
                                                               signal="SIGSEGV")), T).kind == "crash"
    timeout = LoadResult(status="timeout", error=LoadError(type="Timeout", message="no answer"))
    assert classify(timeout, T).kind == "timeout"
    new = LoadResult(status="import_error", error=LoadError(type="X", message="something new"))
    assert classify(new, T).kind == "unknown"


def test_traceback_is_the_fallback():
    load = LoadResult(status="import_error", error=LoadError(
        type="ImportError", message="numpy.core.multiarray failed to import",
        traceback="A module that was compiled using NumPy 1.x cannot be run in\nNumPy 2.1.0 as it may crash."))
    assert classify(load, T).kind == "numpy_abi"
