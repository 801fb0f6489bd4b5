"""Bad input gets the documented, typed error; model loading fails fast with a useful message."""

from __future__ import annotations

import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import huggingface_hub.constants
import pytest

from crossrank import (
    CrossrankError,
    DocumentTypeError,
    EmptyQueryError,
    InvalidArgumentError,
    ModelLoadError,
    Reranker,
    UnsupportedModelError,
)

# ----------------------------------------------------------------------------- input errors


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
def test_blank_query(tiny_reranker: Reranker, query: str) -> None:
    with pytest.raises(EmptyQueryError, match="query is empty"):
        tiny_reranker.rank(query, ["a document"])
    assert issubclass(EmptyQueryError, ValueError) and issubclass(EmptyQueryError, CrossrankError)


def test_blank_query_is_an_error_even_without_documents(tiny_reranker: Reranker) -> None:
    with pytest.raises(EmptyQueryError):
        tiny_reranker.rank(" ", [])


@pytest.mark.parametrize("query", [None, 42, b"bytes", ["a", "list"]])
def test_query_not_a_string(tiny_reranker: Reranker, query: object) -> None:
    with pytest.raises(DocumentTypeError, match="query must be a str"):
        tiny_reranker.score(query, ["a document"])  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [None, 3, b"bytes", {"text": "x"}])
def test_document_not_a_string_names_its_index(tiny_reranker: Reranker, bad: object) -> None:
    docs = ["fine", "also fine", bad]
    with pytest.raises(DocumentTypeError, match=re.escape(f"documents[2] is {type(bad).__name__}")):
        tiny_reranker.rank("query", docs)  # type: ignore[list-item]
    assert isinstance(DocumentTypeError("x"), TypeError)


def test_single_string_instead_of_a_list(tiny_reranker: Reranker) -> None:
    with pytest.raises(DocumentTypeError, match="got a single str"):
        tiny_reranker.rank("query", "one document")


def test_documents_not_iterable(tiny_reranker: Reranker) -> None:
    with pytest.raises(DocumentTypeError, match="must be a list of str"):
        tiny_reranker.rank("query", 12)  # type: ignore[arg-type]


@pytest.mark.parametrize("top_n", [0, -1, True, 2.5, "3"])
def test_bad_top_n(tiny_reranker: Reranker, top_n: object) -> None:
    with pytest.raises(InvalidArgumentError, match="top_n must be a positive int"):
        tiny_reranker.rank("query", ["a"], top_n=top_n)  # type: ignore[arg-type]
    assert isinstance(InvalidArgumentError("x"), ValueError)


async def test_async_paths_raise_the_same_errors(tiny_reranker: Reranker) -> None:
    with pytest.raises(EmptyQueryError):
        await tiny_reranker.arank("", ["a"])
    with pytest.raises(DocumentTypeError, match=re.escape("documents[0]")):
        await tiny_reranker.ascore("q", [None])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError):
        await tiny_reranker.arank("q", ["a"], top_n=0)


def test_nan_min_score(tiny_reranker: Reranker) -> None:
    with pytest.raises(InvalidArgumentError, match="min_score"):
        tiny_reranker.rank("query", ["a"], min_score=float("nan"))


@pytest.mark.parametrize(
    "kwargs", [{"batch_size": 0}, {"max_length": 0}, {"top_n": 0}, {"max_length": 4096}, {"backend": "tpu"}]
)
def test_bad_constructor_options(tiny_model_dir: Path, kwargs: dict) -> None:
    with pytest.raises(InvalidArgumentError):
        Reranker(tiny_model_dir, device="cpu", **kwargs)


def test_max_length_over_the_model_limit_says_the_limit(tiny_model_dir: Path) -> None:
    with pytest.raises(InvalidArgumentError, match=r"accepts \(128 tokens\)"):
        Reranker(tiny_model_dir, device="cpu", max_length=129)


def test_multi_label_model_is_refused(tiny_two_label_model_dir: Path) -> None:
    with pytest.raises(UnsupportedModelError, match="has 2 output labels"):
        Reranker(tiny_two_label_model_dir, device="cpu")


# ----------------------------------------------------------------------------- model loading


def test_missing_local_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no-model-here"
    with pytest.raises(ModelLoadError, match="no such directory") as info:
        Reranker(str(missing))
    assert info.value.model == str(missing)


def test_directory_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"has no config\.json"):
        Reranker(tmp_path)


def test_directory_with_broken_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="broken"):
        Reranker(broken, device="cpu")


def test_file_instead_of_directory(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="it is a file"):
        Reranker(tiny_model_dir / "config.json")


@pytest.fixture
def empty_hf_cache(tmp_path: Path) -> str:
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    return str(cache)


@pytest.fixture
def unreachable_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def test_unreachable_hub_and_not_cached(unreachable_hub, empty_hf_cache: str) -> None:
    with pytest.raises(ModelLoadError) as info:
        Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", cache_folder=empty_hf_cache)
    message = str(info.value)
    assert "'cross-encoder/ms-marco-MiniLM-L6-v2'" in message
    assert "could not be reached" in message
    assert "local directory" in message and "HF_HOME" in message
    assert info.value.hub_reachable is False


def test_local_files_only_and_not_cached(empty_hf_cache: str) -> None:
    with pytest.raises(ModelLoadError, match="local_files_only=True") as info:
        Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", local_files_only=True, cache_folder=empty_hf_cache)
    assert info.value.hub_reachable is None


def test_offline_env_and_not_cached(monkeypatch: pytest.MonkeyPatch, empty_hf_cache: str) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE is set"):
        Reranker("cross-encoder/ms-marco-MiniLM-L6-v2", cache_folder=empty_hf_cache)


def _fill_hf_cache(cache: str, repo_id: str, model_dir: Path) -> None:
    """Lay ``model_dir`` out in ``cache`` as huggingface_hub does after a download."""
    repo = Path(cache) / f"models--{repo_id.replace('/', '--')}"
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    shutil.copytree(model_dir, repo / "snapshots" / revision)


def test_unreachable_hub_uses_the_cache(unreachable_hub, empty_hf_cache, tiny_model_dir, caplog) -> None:
    _fill_hf_cache(empty_hf_cache, "acme/tiny-reranker", tiny_model_dir)
    reranker = Reranker("acme/tiny-reranker", cache_folder=empty_hf_cache, device="cpu")
    assert "from the local cache" in caplog.text
    assert len(reranker.rank("how long does a flea live", ["fleas live a year", "paris"])) == 2
    offline = Reranker("acme/tiny-reranker", cache_folder=empty_hf_cache, local_files_only=True, device="cpu")
    assert offline.score("flea", ["fleas live a year"]) == reranker.score("flea", ["fleas live a year"])


class _NotFoundHub(BaseHTTPRequestHandler):
    """Answers every request as the hub does for an unknown repository."""

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": "Repository not found"}')

    def log_message(self, *args: object) -> None:
        pass


def test_unknown_model_on_a_reachable_hub(monkeypatch: pytest.MonkeyPatch, empty_hf_cache: str) -> None:
    server = HTTPServer(("127.0.0.1", 0), _NotFoundHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        with pytest.raises(ModelLoadError, match="reachable but has no such model") as info:
            Reranker("acme/does-not-exist", cache_folder=empty_hf_cache)
        assert info.value.hub_reachable is True
    finally:
        server.shutdown()
        server.server_close()
