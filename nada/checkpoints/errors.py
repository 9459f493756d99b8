"""One clear :class:`CheckpointError` per problem: the file, what is wrong, the first bad keys."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import CheckpointError

_SHOW = 5  # keys listed per category


def _first(keys: Sequence[str]) -> str:
    keys = list(keys)
    more = f" (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def layout_error(
    path: str,
    what: str,
    missing: Sequence[str] = (),
    unexpected: Sequence[str] = (),
    mismatched: Sequence[str] = (),
    hint: str | None = None,
) -> CheckpointError:
    """A CheckpointError naming the file and the first missing / unexpected / mismatched keys."""
    parts = [f"{path}: {what}"]
    if missing:
        parts.append(f"missing keys: {_first(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {_first(unexpected)}")
    if mismatched:
        parts.append(f"mismatched: {_first(mismatched)}")
    return CheckpointError("; ".join(parts), hint)
