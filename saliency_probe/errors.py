"""The project's error type for what the user can fix (a config value, a file, a folder).

Raised anywhere, caught at the entry points (:mod:`saliency_probe.cli`): one line on stderr naming the key or
file and what was expected, exit code 2, no traceback (``HYDRA_FULL_ERROR=1`` shows it). Anything else is a bug
and keeps its traceback. The subclasses keep the built-in type they refine, so ``except ValueError`` and
``except FileNotFoundError`` still catch them.
"""

from __future__ import annotations

__all__ = ["AbortRun", "UserError", "ConfigError", "InputFileError", "MissingInputError", "OutputFolderError", "is_user_error"]


class UserError(Exception):
    """Something the user can fix; its message is one line that names the key or file."""


class ConfigError(UserError, ValueError):
    """A config value that is not allowed (names the key, the value and what is expected)."""


class InputFileError(UserError, ValueError):
    """An input file that exists but is not what was expected (names the file and the expected layout)."""


class MissingInputError(UserError, FileNotFoundError):
    """An input file or folder that does not exist (names it)."""


class OutputFolderError(UserError, FileExistsError):
    """A run folder that cannot be used: another run's results, not writable, a file where a folder goes."""


class AbortRun(BaseException):
    """Carries a :class:`UserError` through code that swallows ``Exception`` (Hydra's callbacks warn and go on)."""

    def __init__(self, error: UserError) -> None:
        super().__init__(str(error))
        self.error = error


def is_user_error(error: BaseException) -> UserError | None:
    """The :class:`UserError` behind ``error`` (itself or a cause, e.g. wrapped by Hydra's instantiate)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, UserError):
            return current
        if isinstance(current, AbortRun):
            return current.error
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
