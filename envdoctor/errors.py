"""Errors that end a command with a one-line message and exit code 2."""


class UsageError(Exception):
    """Bad input from the user (a path, a file, an option): reported in one line, exit 2."""


class ReportError(UsageError):
    """A file that is not an envdoctor report, or of a schema version we do not read."""
