"""How a process's exit code reads: on Windows a crash is an NTSTATUS exit code, not a signal.

A Windows process that dies of an access violation exits with 3221225477 (0xC0000005), which says
nothing until it is written in hex and named. Names and meanings are Microsoft's ([MS-ERREF] 2.3.1,
https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-erref/596a1078-e883-4972-9bbc-49e60bebca55).
"""

from __future__ import annotations

from typing import Optional

NTSTATUS = {
    0xC0000005: ("STATUS_ACCESS_VIOLATION", "access violation: the Windows form of a segmentation fault"),
    0xC000001D: ("STATUS_ILLEGAL_INSTRUCTION", "illegal instruction: code built for a newer CPU"),
    0xC00000FD: ("STATUS_STACK_OVERFLOW", "stack overflow"),
    0xC0000135: ("STATUS_DLL_NOT_FOUND", "a DLL the program needs was not found"),
    0xC0000139: ("STATUS_ENTRYPOINT_NOT_FOUND", "a DLL lacks a function the program imports"),
    0xC0000142: ("STATUS_DLL_INIT_FAILED", "a DLL's initialization failed"),
    0xC0000409: ("STATUS_STACK_BUFFER_OVERRUN", "fail-fast: the C runtime ended the process (abort, a detected "
                 "buffer overrun or an invalid parameter)"),
}


def ntstatus(code: Optional[int]) -> Optional[int]:
    """The 32-bit status an exit code carries when it is an NTSTATUS error (severity bits 11), else None.
    Windows reports it unsigned (3221225477); a signed reading (-1073741819) is accepted too."""
    if code is None or -(1 << 16) < code < 0:  # a POSIX death by signal is -N
        return None
    value = code & 0xFFFFFFFF if -(1 << 31) <= code < (1 << 32) else code
    return value if value >> 30 == 0b11 else None


def describe_exit(code: Optional[int]) -> str:
    """`code 3` or `0xC0000005 (STATUS_ACCESS_VIOLATION: access violation …)`."""
    status = ntstatus(code)
    if status is None:
        return f"code {code}"
    name, meaning = NTSTATUS.get(status, ("an NTSTATUS error", "a Windows crash"))
    return f"0x{status:08X} ({name}: {meaning})"
