"""Errors the plugin reports as one line on stderr, with an exit code per kind."""

from __future__ import annotations

# Exit codes (documented in `kubectl taskqueue --help`).
EXIT_ERROR = 1  # anything else: API errors, refused confirmations
EXIT_USAGE = 2  # bad arguments: no selector, malformed duration (argparse uses 2 too)
EXIT_NOT_FOUND = 3  # TaskQueue, Secret (or its key), or job id not found
EXIT_REDIS = 4  # Redis unreachable or refusing us


class CliError(Exception):
    """A failure the user can act on; `str(error)` is the whole message."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


class NotFound(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_NOT_FOUND)


class UsageError(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


class RedisUnavailable(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_REDIS)
