import langchain_crossrank
from langchain_core.documents import BaseDocumentCompressor

EXPECTED_ALL = ["CrossrankRerank"]


def test_all_imports() -> None:
    assert sorted(EXPECTED_ALL) == sorted(langchain_crossrank.__all__)


def test_is_a_document_compressor() -> None:
    assert issubclass(langchain_crossrank.CrossrankRerank, BaseDocumentCompressor)
