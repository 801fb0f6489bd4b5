"""Bad input gets the documented, typed error; model loading fails fast with a useful message."""

from __future__ import annotations

import json
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


def test_the_error_tree() -> None:
    """What errors.py documents: one base class, and the built-in each input error also is."""
    import crossrank.errors

    for name in crossrank.errors.__all__:
        assert issubclass(getattr(crossrank.errors, name), CrossrankError)
    assert issubclass(InvalidArgumentError, ValueError) and issubclass(EmptyQueryError, InvalidArgumentError)
    assert issubclass(DocumentTypeError, TypeError) and not issubclass(DocumentTypeError, ValueError)
    assert issubclass(UnsupportedModelError, ModelLoadError)
    assert issubclass(crossrank.errors.BackendUnavailableError, ImportError)


@pytest.mark.parametrize("query", ["", "   ", "\n\t", "\x00", "\u200b", "\ufffd", " \u200b\u200b "])
def test_a_query_without_tokens_is_blank(tiny_reranker: Reranker, query: str) -> None:
    # "\x00", zero-width spaces and U+FFFD pass str.strip() but tokenise to nothing: ranking
    # documents against them would be a confident, meaningless ranking.
    assert tiny_reranker.count_tokens(query) == 0
    for call in (tiny_reranker.rank, tiny_reranker.score):
        with pytest.raises(EmptyQueryError, match="query has no tokens"):
            call(query, ["a document"])
    with pytest.raises(EmptyQueryError, match=re.escape("requests[1]: query has no tokens")):
        tiny_reranker.score_batch([("flea", ["a"]), (query, ["a"])])


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


def test_numbers_from_numpy_are_numbers(tiny_reranker: Reranker) -> None:
    import numpy as np

    docs = ["flea", "tea", "paris"]
    expected = tiny_reranker.rank("flea", docs, top_n=2, min_score=-100.0)
    assert tiny_reranker.rank("flea", docs, top_n=np.int64(2), min_score=np.float32(-100.0)) == expected
    with pytest.raises(InvalidArgumentError, match="min_score"):
        tiny_reranker.rank("flea", docs, min_score=np.float64("nan"))
    with pytest.raises(InvalidArgumentError, match="top_n"):
        tiny_reranker.rank("flea", docs, top_n=np.bool_(True))


@pytest.mark.parametrize("normalize", ["no", "yes", 1, 0, None])
def test_normalize_must_be_a_bool(tiny_reranker: Reranker, normalize: object) -> None:
    # bool("no") is True: a string must not silently turn normalisation on.
    for call in (tiny_reranker.rank, tiny_reranker.score):
        with pytest.raises(InvalidArgumentError, match="normalize must be True or False"):
            call("flea", ["a"], normalize=normalize)  # type: ignore[arg-type]


@pytest.mark.parametrize("unordered", [{"fleas", "paris"}, frozenset({"a"}), {"a": 1}, {"a": "b"}.keys()])
def test_unordered_documents_are_refused(tiny_reranker: Reranker, unordered: object) -> None:
    # A result's index would follow the set's arbitrary order: mapping it back would be wrong.
    with pytest.raises(DocumentTypeError, match="must be ordered"):
        tiny_reranker.rank("flea", unordered)  # type: ignore[arg-type]


def test_a_lone_surrogate_is_scored_not_a_crash(tiny_reranker: Reranker, caplog) -> None:
    # json.loads of JavaScript-made JSON gives a cut emoji as a lone surrogate; the Rust
    # tokenizer refuses such a str with a TypeError that names no document.
    broken = json.loads('"fleas \\ud83d live"')
    docs = ["paris", broken, "fleas live"]
    with caplog.at_level("WARNING", logger="crossrank"):
        scores = tiny_reranker.score("flea", docs)
    assert scores == tiny_reranker.score("flea", ["paris", "fleas \ufffd live", "fleas live"])
    assert "[1]" in caplog.text and "surrogate" in caplog.text
    assert tiny_reranker.rank(broken, docs, top_n=None)[0].text in docs  # in the query too
    assert docs[1] is broken  # the caller's str is left alone


def test_bad_requests_name_the_request(tiny_reranker: Reranker) -> None:
    with pytest.raises(DocumentTypeError, match=re.escape("requests[1]: documents[0] is int")):
        tiny_reranker.score_batch([("flea", ["a"]), ("flea", [3])])  # type: ignore[list-item]
    with pytest.raises(DocumentTypeError, match=re.escape("requests[0] must be a (query, documents) pair")):
        tiny_reranker.rank_batch(["flea"])  # type: ignore[list-item]
    with pytest.raises(DocumentTypeError, match="requests must be a list"):
        tiny_reranker.score_batch("flea")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="row-aligned"):
        tiny_reranker.score_pairs(["flea", "tea"], ["a"])
    with pytest.raises(EmptyQueryError, match=re.escape("queries[1]")):
        tiny_reranker.score_pairs(["flea", " "], ["a", "b"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": None}, "model: Input should be a valid string"),
        ({"backend": "torch", "quantize": "int8"}, "quantize applies to backend='onnx' only"),
        ({"backend": "onnx", "precision": "bf16"}, "applies to backend='torch'"),
        ({"stride": 16}, "stride applies to long_documents='windows'"),
        ({"normalize": "maybe"}, "normalize"),
    ],
)
def test_constructor_errors_are_typed_and_name_the_option(kwargs: dict, message: str) -> None:
    # Checked before any loading: no model is touched.
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        Reranker(**{"model": "no/such-model", "local_files_only": True, **kwargs})


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
