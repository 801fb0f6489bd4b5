"""Reading documents from files: the one reader every face uses.

A BEIR ``corpus.jsonl`` holds ``{"_id", "title", "text"}`` per line. ``crossrank rank``,
``crossrank demo`` and ``crossrank eval`` all read it here, so the same document is the same
string to every one of them: ``title + " " + text`` (BEIR's own join; a missing or empty title
gives the text alone).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from crossrank.errors import InputFileError

__all__ = ["CorpusDocument", "document_text", "read_corpus", "read_documents"]


def document_text(title: str | None, body: str) -> str:
    """The string a document is scored and retrieved by: ``title + " " + body``, or the body alone.

    Example:
        >>> document_text("Fleas", "They live a year.")
        'Fleas They live a year.'
        >>> document_text("", "They live a year.")
        'They live a year.'
    """
    return f"{title} {body}" if title else body


@dataclass(frozen=True, slots=True)
class CorpusDocument:
    """One document of a corpus: its id, title and body; :attr:`text` is what both stages read."""

    id: str
    title: str
    body: str

    @property
    def text(self) -> str:
        """``title + " " + body`` (see :func:`document_text`)."""
        return document_text(self.title, self.body)


def read_corpus(path: str | os.PathLike[str], *, require_id: bool = True) -> list[CorpusDocument]:
    """Read a JSONL corpus: one ``{"_id" (or "id"), "title"?, "text"}`` object per line.

    Args:
        path: The file. Blank lines are skipped.
        require_id: With False, a record without an id gets its 0-based record number.

    Raises:
        InputFileError: The file is missing, a folder, not UTF-8, empty, or a line is not such an
            object; the message names the file and the line (a ``ValueError``).

    Example:
        >>> import pathlib, tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     file = pathlib.Path(folder) / "corpus.jsonl"
        ...     _ = file.write_text('{"_id": "d1", "title": "Fleas", "text": "They live a year."}\\n')
        ...     read_corpus(file)[0].text
        'Fleas They live a year.'
    """
    file = Path(path)
    return _parse_records(numbered_lines(file), file, require_id=require_id)


def _parse_records(numbered: list[tuple[int, str]], file: Path, *, require_id: bool) -> list[CorpusDocument]:
    documents = []
    for number, line in numbered:
        record = json_object(line, file, number)
        if not isinstance(record.get("text"), str):
            raise InputFileError("expected a JSON object with a string 'text'", path=file, line=number)
        identifier = record.get("_id", record.get("id"))
        if identifier is None:
            if require_id:
                raise InputFileError("expected an '_id' (or 'id') field", path=file, line=number)
            identifier = len(documents)
        title = record.get("title") or ""
        if not isinstance(title, str):
            raise InputFileError("'title' must be a string", path=file, line=number)
        documents.append(CorpusDocument(str(identifier), title, record["text"]))
    if not documents:
        raise InputFileError("the file holds no documents", path=file)
    return documents


def json_object(line: str, file: Path, number: int) -> dict[str, Any]:
    """Line ``number`` of ``file`` parsed as a JSON object, or an :class:`InputFileError` naming it."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise InputFileError(
            f"not valid JSON ({err.msg} at column {err.colno})", path=file, line=number
        ) from None
    if not isinstance(record, dict):
        raise InputFileError("expected a JSON object", path=file, line=number)
    return record


def numbered_lines(file: Path) -> list[tuple[int, str]]:
    """(line number, line) for the non-blank lines of ``file``; clear errors for what isn't a text file."""
    if file.is_dir():
        raise InputFileError("is a directory; give a file (one document per line, or JSONL)", path=file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError("no such file", path=file) from None
    except UnicodeDecodeError as err:
        raise InputFileError(f"not UTF-8 text ({err.reason} at byte {err.start})", path=file) from None
    except OSError as err:
        raise InputFileError(f"cannot be read ({err.strerror})", path=file) from None
    return [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_documents(source: str | os.PathLike[str] | TextIO) -> list[CorpusDocument]:
    """Documents from a text file (one per non-blank line) or a JSONL corpus, told apart by content.

    ``source`` may be an open text stream (``sys.stdin``). Lines of a text file get their 0-based
    position as id; JSONL records their ``_id``/``id`` (or their position).

    Raises:
        InputFileError: As :func:`read_corpus`.
    """
    if hasattr(source, "read"):
        name, text = "<stdin>", source.read()  # type: ignore[union-attr]
        numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    else:
        name, numbered = os.fspath(source), numbered_lines(Path(source))  # type: ignore[arg-type]
    if numbered and all(line.lstrip().startswith("{") for _, line in numbered):
        return _parse_records(numbered, Path(name), require_id=False)
    if not numbered:
        raise InputFileError("the file holds no documents", path=name)
    return [CorpusDocument(str(i), "", line) for i, (_, line) in enumerate(numbered)]
