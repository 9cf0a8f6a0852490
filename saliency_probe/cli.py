"""Running an entry point as a command: a user error is one line on stderr and exit code 2, never a traceback.

Hydra is asked to re-raise (``HYDRA_FULL_ERROR=1`` for the process) so that this module decides: a
:class:`~saliency_probe.errors.UserError` (raised by our validation or readers, also when wrapped by Hydra's
``instantiate``), a config that does not compose (unknown group option, bad override, wrong type for a typed
key) or a mandatory value left unset is printed as ``<program>: error: <one line>`` and exits with 2. Anything
else is a bug and keeps its traceback. Set ``HYDRA_FULL_ERROR=1`` yourself to see the traceback of a user error.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue, ValidationError

from saliency_probe.errors import AbortRun, ConfigError, is_user_error

__all__ = ["run", "stop_on_user_error", "user_message"]

#: Hydra and OmegaConf errors that mean "the command line or the config is wrong", not a bug: a config that does
#: not compose, a bad override, a mandatory value (``???``) left unset, a value of the wrong type for a typed key,
#: an interpolation that does not resolve. Other OmegaConf errors (e.g. our code reading a key that does not
#: exist) keep their traceback.
CONFIG_ERRORS = (ConfigCompositionException, MissingConfigException, OverrideParseException, MissingMandatoryValue,
                 ValidationError, InterpolationResolutionError)


def _one_line(error: BaseException) -> str:
    parts: list[str] = []
    current: BaseException | None = error
    while current is not None and len(parts) < 4:
        text = str(current).split("Config search path")[0]  # Hydra's search path is noise here
        text = "; ".join(line.strip() for line in text.splitlines() if line.strip()).rstrip(";: ")
        if text and not any(text in part for part in parts):
            parts.append(text)
        current = current.__cause__
    return ": ".join(parts) or type(error).__name__


def user_message(error: BaseException) -> str | None:
    """The one-line message of a user error behind ``error``, or None when ``error`` is a bug.

    A :class:`UserError` speaks for itself (its causes, e.g. torch's long explanation of an unsafe file, stay
    out); a Hydra/OmegaConf error gives its lines joined, with the override it could not parse.
    """
    user = is_user_error(error)
    if user is not None:
        return "; ".join(line.strip() for line in str(user).splitlines() if line.strip()) or type(user).__name__
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, OverrideParseException) and getattr(current, "override", None):
            return f"cannot parse the override {current.override!r}: {_one_line(current)}"
        if isinstance(current, CONFIG_ERRORS):
            return _one_line(current)
        current = current.__cause__
    return None


def stop_on_user_error(task: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a Hydra task function: a user error stops the run at once (Hydra would report it as a failed
    job with its overrides, on a line of its own, before re-raising)."""

    @functools.wraps(task)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return task(*args, **kwargs)
        except Exception as error:
            message = user_message(error)
            if message is None:
                raise
            raise AbortRun(is_user_error(error) or ConfigError(message)) from error

    return wrapped


def run(main: Callable[[], Any], program: str) -> None:
    """Call a ``@hydra.main`` function; exit with 2 and one line for a user error."""
    show_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises; the decision is made here
    try:
        main()
    except (Exception, AbortRun) as error:
        message = user_message(error)
        if message is None or show_traceback:
            raise
        print(f"{program}: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
