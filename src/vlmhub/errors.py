"""Exception hierarchy of vlmhub.

Every error a user can cause derives from :class:`VlmhubError` and carries a message that names the
problem *and* the fix. Each class also subclasses the matching builtin (``TaskError`` is a ``ValueError``,
``UnknownModelError`` a ``KeyError``, ``MissingAssetError`` a ``FileNotFoundError``, ...), so callers that
catch builtins keep working. The CLI turns any :class:`VlmhubError` into a one-line message and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "VlmhubError",
    "ConfigError",
    "TaskError",
    "DataError",
    "ImageError",
    "UnknownModelError",
    "ModelCheckError",
    "LabelError",
    "NotLabeledError",
    "MissingExtraError",
    "TableError",
    "SelectionError",
    "NotFittedError",
    "MissingAssetError",
    "DownloadError",
    "ChecksumError",
    "UnknownAssetError",
    "PackageError",
    "SubmissionError",
    "DatabaseError",
    "AuthenticationError",
    "PermissionDenied",
    "LeaseLostError",
    "StateError",
    "NotFoundError",
    "ConflictError",
]


class VlmhubError(Exception):
    """Base class of every error vlmhub raises on bad input or a bad environment."""


class ConfigError(VlmhubError, ValueError):
    """Settings, paths or the environment are wrong (e.g. WordNet or the data folder cannot be found)."""


class TaskError(VlmhubError, ValueError):
    """A task description is missing, malformed or inconsistent (no classes, duplicate classes, ...)."""


class DataError(VlmhubError, ValueError):
    """A data folder or data file is missing or malformed."""


class ImageError(DataError):
    """An image cannot be read or decoded."""


class UnknownModelError(VlmhubError, KeyError):
    """A model id is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelCheckError(VlmhubError, ValueError):
    """A model failed the admission checks and was not added to the hub."""

    def __init__(self, message: str, report: object | None = None):
        super().__init__(message)
        self.report = report


class SelectionError(TaskError):
    """A selection option (k, alpha, nodes, metric, weighting, top, ...) is outside its valid range."""


class NotFittedError(VlmhubError, ValueError, AttributeError):
    """A selector or score was used before ``fit()`` (scikit-learn's convention: also a ValueError and an
    AttributeError)."""


class LabelError(VlmhubError, RuntimeError):
    """A stored model label is missing, corrupt or inconsistent with the model or graph."""


class NotLabeledError(LabelError):
    """Selection needs labels that have not been computed yet."""


class MissingExtraError(VlmhubError, ImportError):
    """An optional dependency is not installed; the message says which ``pip install`` to run."""


class TableError(DataError):
    """A performance table is missing, malformed or does not fit the protocol."""


class MissingAssetError(DataError, FileNotFoundError):
    """A registered data asset (image set, table, WordNet, captions) is in none of the data locations;
    the message names the ``vlmhub data fetch ...`` command that gets it."""

    def __str__(self) -> str:  # OSError would format (errno, strerror)
        return str(self.args[0]) if self.args else ""


class DownloadError(DataError, ConnectionError):
    """Downloading a data asset failed (unreachable, refused, cut off); nothing was left behind and the
    message names the URL, how to fetch it by hand, and the mirror option."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ChecksumError(DataError, ValueError):
    """A downloaded or stored data file does not have the sha256 the registry records."""


class UnknownAssetError(DataError, KeyError):
    """A data asset name is not in the registry; the message lists the known names (``vlmhub data list``)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DatabaseError(ConfigError):
    """The hub database is unreachable, at an unknown schema revision, or inconsistent with the home's files."""


class AuthenticationError(VlmhubError, PermissionError):
    """A token is missing, malformed, unknown, revoked or expired (HTTP 401)."""


class PermissionDenied(VlmhubError, PermissionError):
    """An authenticated principal lacks the role or ownership an action needs (HTTP 403)."""


class LeaseLostError(VlmhubError, RuntimeError):
    """A worker acted on a label job whose lease it no longer holds (expired and claimed by another worker)."""


class StateError(VlmhubError, ValueError):
    """A record cannot move to the requested state from its current one (e.g. a rejected model to labeling)."""


class NotFoundError(VlmhubError, LookupError):
    """A record (token, submission, label job, artifact) named by id does not exist (HTTP 404)."""


class ConflictError(VlmhubError, ValueError):
    """A record with that id or content already exists (HTTP 409): a duplicate model id or submission."""


def missing_extra(package: str, extra: str, purpose: str) -> MissingExtraError:
    """Build the error raised when an optional dependency is needed but absent."""
    return MissingExtraError(
        f"{purpose} needs the optional package '{package}', which is not installed. "
        f"Install it with: pip install 'vlmhub[{extra}]'"
    )


class PackageError(DataError):
    """An uploaded model package is refused (unsafe archive member, pickled weights, remote code, over a
    limit, wrong layout); the message names the member and how to pack it correctly."""


class SubmissionError(VlmhubError, ValueError):
    """A submission cannot be made or changed in its current state (duplicate, withdrawn, not yours, ...)."""
