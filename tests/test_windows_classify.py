"""Windows load failures that were unclassified (issue 12 item 9): ctypes' own wording of error 126,
WinError 193 and 1455, and crash exit codes named as NTSTATUS instead of "3221225477, no signal".

The texts are verbatim from real tracebacks (torchvision, ctypes users; see rules/load_errors.toml);
the exit codes are what Windows' process API returns (unsigned 32-bit), which Linux cannot produce."""

from __future__ import annotations

import pytest

from envdoctor.classify import classify, classify_text
from envdoctor.probe.exitcodes import describe_exit, ntstatus
from envdoctor.probe.loads import ProbeOutcome, _died
from envdoctor.rules import load_tables

T = load_tables()
TV = r"C:\Users\张三\mambaforge\envs\pytorch-arc\Lib\site-packages\torchvision\image.pyd"


@pytest.mark.parametrize("text, kind, extra", [
    (f"Could not find module '{TV}' (or one of its dependencies). Try using the full path with constructor syntax.",
     "missing_library", {"library": TV}),
    ("[WinError 1455] The paging file is too small for this operation to complete. Error loading "
     r'"C:\x\torch\lib\cudnn_cnn_infer64_8.dll" or one of its dependencies.', "out_of_memory",
     {"winerror": 1455, "library": r"C:\x\torch\lib\cudnn_cnn_infer64_8.dll"}),
    ("OSError: [WinError 1455] 页面文件太小，无法完成操作。", "out_of_memory", {"winerror": 1455}),
    ("[WinError 193] %1 is not a valid Win32 application", "bad_image", {"winerror": 193}),
    ("DLL load failed while importing _ext: %1 is not a valid Win32 application.", "bad_image",
     {"winerror": 193, "module": "_ext", "language": "en"}),
    ("DLL load failed while importing _C: The paging file is too small for this operation to complete.",
     "out_of_memory", {"winerror": 1455}),
])
def test_windows_texts_are_classified(text, kind, extra):
    cause = classify_text(text, T)
    assert cause is not None and cause.kind == kind, cause
    for k, v in extra.items():
        assert getattr(cause, k) == v


@pytest.mark.parametrize("code, name, kind", [
    (3221225477, "STATUS_ACCESS_VIOLATION", "crash"),
    (3221225781, "STATUS_DLL_NOT_FOUND", "missing_library"),
    (3221225785, "STATUS_ENTRYPOINT_NOT_FOUND", "missing_procedure"),
    (3221226505, "STATUS_STACK_BUFFER_OVERRUN", "crash"),
    (-1073741819, "STATUS_ACCESS_VIOLATION", "crash"),  # the same status read as a signed int
])
def test_a_windows_crash_exit_code_is_named(code, name, kind):
    res = _died(ProbeOutcome("mmcv._ext", None, code, stderr="Windows fatal exception: access violation"), {})
    assert res.status == "crash" and f"0x{ntstatus(code):08X} ({name}" in res.error.message
    assert str(code) not in res.error.message
    cause = classify(res, T)
    assert cause is not None and cause.kind == kind and name in cause.title


@pytest.mark.parametrize("code", [0, 1, 3, 9009, -11, -9, None])
def test_ordinary_exit_codes_and_signals_are_not_ntstatus(code):
    assert ntstatus(code) is None and describe_exit(code) == f"code {code}"
