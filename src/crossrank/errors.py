"""Errors raised by crossrank.

Every error crossrank raises on purpose derives from :class:`CrossrankError`, so one
``except crossrank.CrossrankError`` catches them all. Input errors also derive from the
built-in exception a Python user would expect (``ValueError`` / ``TypeError`` /
``ImportError``), so existing handlers keep working::

    CrossrankError
    ├── ModelLoadError                      the model could not be found, downloaded or loaded
    │   └── UnsupportedModelError           it loaded, but is not a one-logit cross-encoder
    ├── BackendUnavailableError (ImportError)  an option's optional dependency is missing
    ├── InvalidArgumentError (ValueError)   a bad option, e.g. ``top_n=0``
    │   └── EmptyQueryError                 the query is empty or only whitespace
    │   └── InputFileError                  a file of documents or settings can't be read as such
    │   └── DocumentTooLongError            a text doesn't fit the model, and cutting it was refused
    ├── DocumentTypeError (TypeError)       a document (or the query) is not a ``str``
    └── ScoringError                        the model returned NaN/inf scores

Example:
    >>> import crossrank
    >>> try:
    ...     crossrank.Reranker("no-such-org/no-such-model", local_files_only=True)
    ... except crossrank.ModelLoadError as err:
    ...     print(err.model)
    no-such-org/no-such-model
"""

from __future__ import annotations

import os

__all__ = [
    "BackendUnavailableError",
    "CrossrankError",
    "DocumentTooLongError",
    "DocumentTypeError",
    "EmptyQueryError",
    "InputFileError",
    "InvalidArgumentError",
    "ModelLoadError",
    "ScoringError",
    "UnsupportedModelError",
]


class CrossrankError(Exception):
    """Base class of every error crossrank raises on purpose."""


class ModelLoadError(CrossrankError):
    """The model could not be loaded (offline and not cached, unknown id, missing files).

    Attributes:
        model: The model id or path as the caller gave it.
        hub_reachable: ``True``/``False`` when the Hugging Face Hub was probed, ``None`` when
            it was not asked (a local path, or offline mode).
    """

    def __init__(self, message: str, *, model: str, hub_reachable: bool | None = None) -> None:
        super().__init__(message)
        self.model = model
        self.hub_reachable = hub_reachable


class UnsupportedModelError(ModelLoadError):
    """The model loaded but cannot rerank: it has more than one output label, or no fast tokenizer."""


class BackendUnavailableError(CrossrankError, ImportError):
    """An option needs an optional dependency that is not installed: a backend's, or a feature's
    (``dedupe_similarity="ratio"`` needs ``crossrank[ratio]``). The message says what to install."""


class InvalidArgumentError(CrossrankError, ValueError):
    """An option has a value crossrank cannot use (``top_n=0``, ``max_length`` over the model's limit...)."""


class EmptyQueryError(InvalidArgumentError):
    """The query is empty or only whitespace: there is nothing to rank against."""


class InputFileError(InvalidArgumentError):
    """A file given to crossrank can't be read as what it should be; the message names it (and the line).

    Attributes:
        path: The file.
        line: The 1-based line at fault, or None when the file as a whole is.
    """

    def __init__(self, message: str, *, path: os.PathLike[str] | str, line: int | None = None) -> None:
        self.path = os.fspath(path)
        self.line = line
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {message}")


class DocumentTooLongError(InvalidArgumentError):
    """A text doesn't fit next to the query, and cutting it was not allowed (``PairEncoder.fit``).

    Attributes:
        index: The text's position in the texts given.
        tokens: Tokens of the (query, text) pair, special tokens included.
        max_length: Most tokens a pair may have.
    """

    def __init__(self, *, index: int, tokens: int, max_length: int) -> None:
        self.index, self.tokens, self.max_length = index, tokens, max_length
        super().__init__(
            f"texts[{index}] has {tokens} tokens with the query, more than max_length={max_length}"
        )


class DocumentTypeError(CrossrankError, TypeError):
    """A document, or the query, is not a ``str``. The message names the offending index."""


class ScoringError(CrossrankError):
    """The model produced scores that are not finite numbers (NaN or infinity)."""
