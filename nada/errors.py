"""Exceptions that name the bad value and the fix.

Every error a user can cause derives from :class:`NadaError`; the CLI prints it as
one line (plus the hint) instead of a traceback.
"""

from __future__ import annotations


class NadaError(Exception):
    """Base class for user-facing errors: ``message`` says what is wrong, ``hint`` how to fix it."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class CheckpointError(NadaError):
    """A generator checkpoint is missing, corrupt, of an unknown format or does not fit."""


class ModelNotFoundError(NadaError):
    """A CLIP model spec names a model or weights that cannot be had here."""


class ConfigError(NadaError):
    """An option value is out of range or inconsistent with another option."""


class DataError(NadaError):
    """Input data (a style-image folder, an image file) is missing or unreadable."""


class DownloadError(NadaError):
    """A download failed or its checksum did not match."""


def one_line(exc: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message``, at most ``limit`` characters: how a foreign exception
    (a damaged file's) is named inside one of nada's one-line errors."""
    lines = [x.strip() for x in str(exc).splitlines() if x.strip()]
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def reject_unknown_keys(cls: type, d: dict, what: str) -> None:
    """Raise ConfigError naming the keys of ``d`` that are not fields of dataclass ``cls``."""
    import dataclasses

    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"unknown {what} {unknown}", f"known: {', '.join(sorted(known))}")
