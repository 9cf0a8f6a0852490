"""Checks of config values before any work starts: each raises a one-line ConfigError naming the key."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from saliency_probe.errors import ConfigError

__all__ = ["value_of", "target_class", "require_int", "require_number", "require_choice", "as_name_list", "check_common",
           "MIN_IMAGE_SIDE"]

#: The smallest input side the trunk accepts: VGG-16 halves it 5 times up to pool5 (1x1).
MIN_IMAGE_SIDE = 32

_MISSING = object()


def value_of(cfg: DictConfig, key: str) -> Any:
    """``cfg``'s value at the dotted ``key`` (``_MISSING`` sentinel when absent)."""
    value = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)
    return value


def target_class(target: Any) -> type | None:
    """The class a ``_target_`` names, without building it; None when it cannot be imported (instantiation
    reports that with its own message)."""
    from hydra.utils import get_class

    try:
        found = get_class(str(target or ""))
    except Exception:  # noqa: BLE001 - any unresolvable target: the caller's check does not apply
        return None
    return found if isinstance(found, type) else None


def require_int(
    cfg: DictConfig, key: str, minimum: int | None = None, *, optional: bool = False, why: str = ""
) -> int | None:
    """The integer at ``key`` (``>= minimum``); absent or null is allowed with ``optional``."""
    value = value_of(cfg, key)
    if value is _MISSING or value is None:
        if optional:
            return None
        raise ConfigError(f"{key} is required: expected an integer{f' >= {minimum}' if minimum is not None else ''}")
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            bound = f" >= {minimum}" if minimum is not None else ""
            raise ConfigError(f"{key}={value!r}: expected an integer{bound}{why}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{key}={value}: expected an integer >= {minimum}{why}")
    return int(value)


def require_number(cfg: DictConfig, key: str, minimum: float | None = None, *, exclusive: bool = False) -> float:
    """The number at ``key`` (``> minimum`` with ``exclusive``, else ``>=``)."""
    value = value_of(cfg, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}={value!r}: expected a number")
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        raise ConfigError(f"{key}={value}: expected a number {'>' if exclusive else '>='} {minimum}")
    return float(value)


def require_choice(cfg: DictConfig, key: str, choices: Sequence[Any]) -> Any:
    """The value at ``key``, one of ``choices``."""
    value = value_of(cfg, key)
    if value not in choices:
        raise ConfigError(f"{key}={value!r}: expected one of {list(choices)}")
    return value


def as_name_list(value: Any, key: str) -> list[str]:
    """A list of names from a list or a single name (``analyses=inner`` is ``[inner]``)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if OmegaConf.is_list(value) or isinstance(value, (list, tuple)):
        return [str(item) for item in value]
    raise ConfigError(f"{key}={value!r}: expected a name or a list of names")


def check_common(cfg: DictConfig) -> None:
    """The keys both entry points share: ``seed`` and the ``data`` group's sizes and loader settings."""
    require_int(cfg, "seed")
    require_int(cfg, "data.image_size", MIN_IMAGE_SIDE, why=" (the smallest side the trunk accepts)")
    require_int(cfg, "data.batch_size", 1)
    require_int(cfg, "data.num_workers", 0)
    for key in ("data.num_train", "data.num_val", "data.num_probe", "data.num_observers", "data.limit",
                "data.limit_train", "data.limit_val"):
        if value_of(cfg, key) is not _MISSING:
            require_int(cfg, key, 1, optional=True)
