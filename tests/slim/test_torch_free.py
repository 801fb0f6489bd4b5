"""``pip install crossrank`` without torch: scores, serves, ranks on the command line and plugs into
LangChain, LlamaIndex and Haystack, on an exported folder and on a hub-style ONNX folder."""

from __future__ import annotations

import os

import pytest

from crossrank.testing import SLIM_DOCUMENTS


def test_the_slim_venv_has_no_torch_at_all() -> None:
    """In the slim run (scripts/test.sh sets CROSSRANK_TORCH_FREE=1) torch is not even installed."""
    import importlib.util

    if os.environ.get("CROSSRANK_TORCH_FREE") == "1":
        assert importlib.util.find_spec("torch") is None
        assert importlib.util.find_spec("sentence_transformers") is None
    else:  # the full venv: the same tests run with torch made unimportable (conftest)
        assert importlib.util.find_spec("torch") is not None


@pytest.mark.parametrize("recipe", ["fp32", "int8", "int8-static"])
def test_an_exported_folder_scores_as_the_full_install(torch_free, expected, recipe: str) -> None:
    quantize = None if recipe == "fp32" else recipe
    got = torch_free(
        f"""
        from crossrank import Reranker
        reranker = Reranker(FIXTURES + "/exported", quantize={quantize!r})
        done({{"backend": reranker.backend, "scores": reranker.score(QUERY, DOCS),
              "mixes": reranker.engine.batch_invariant}})
        """
    )
    assert got["backend"] == "onnx"  # the default, "auto", with no torch
    assert got["scores"] == expected[recipe]  # bit for bit the full install's ONNX scores
    assert got["mixes"] is (recipe != "int8")
    if recipe == "fp32":
        assert max(abs(a - b) for a, b in zip(got["scores"], expected["torch"], strict=True)) < 1e-4


def test_a_hub_style_folder_runs_its_own_onnx_files(torch_free, expected) -> None:
    got = torch_free(
        """
        import logging
        from crossrank import Reranker
        records = []

        class Recorder(logging.Handler):
            def emit(self, record):
                records.append(record.getMessage())

        logging.getLogger("crossrank").addHandler(Recorder())
        logging.getLogger("crossrank").setLevel(logging.INFO)
        fp32 = Reranker(FIXTURES + "/hub")
        int8 = Reranker(FIXTURES + "/hub", quantize="int8")
        done({"fp32": fp32.score(QUERY, DOCS), "int8": int8.score(QUERY, DOCS),
              "int8_mixes": int8.engine.batch_invariant, "said": records})
        """
    )
    assert got["fp32"] == expected["fp32"]
    assert got["int8"] == expected["int8"] and got["int8_mixes"] is False
    assert any("onnx/model.onnx (fp32), shipped with the model" in line for line in got["said"])
    assert any(expected["int8_variant"] in line for line in got["said"])


def test_a_model_without_onnx_files_names_both_ways_out(torch_free) -> None:
    got = torch_free(
        """
        from crossrank import BackendUnavailableError, Reranker
        said = {}
        for backend in ("auto", "onnx", "torch"):
            try:
                Reranker(FIXTURES + "/weights-only", backend=backend)
            except BackendUnavailableError as err:
                said[backend] = str(err)
        done(said)
        """
    )
    for backend in ("auto", "onnx"):
        assert "pip install 'crossrank[torch]'" in got[backend] and "crossrank export" in got[backend]
    assert "backend='torch' needs the package torch" in got["torch"]


#: The two folder kinds every face must run on: `crossrank export`'s, and a hub repository's layout.
FOLDERS = ["exported", "hub"]


@pytest.mark.parametrize("folder", FOLDERS)
def test_the_server_answers_cohere_and_tei(torch_free, expected, folder: str) -> None:
    got = torch_free(
        f"""
        from fastapi.testclient import TestClient
        from crossrank import Reranker
        from crossrank.server import create_app
        with TestClient(create_app(Reranker(FIXTURES + "/{folder}"))) as client:
            tei = client.post("/rerank", json={{"query": QUERY, "texts": DOCS, "raw_scores": True}})
            cohere = client.post("/v2/rerank", json={{"query": QUERY, "documents": DOCS, "top_n": 2}})
            info = client.get("/info").json()
        done({{"tei": tei.json(), "cohere": cohere.json()["results"], "backend": info["backend"]}})
        """
    )
    assert {rank["index"]: rank["score"] for rank in got["tei"]} == dict(enumerate(expected["fp32"]))
    assert len(got["cohere"]) == 2 and got["backend"].startswith("crossrank onnx")


@pytest.mark.parametrize("folder", FOLDERS)
def test_the_command_line_ranks(torch_free, tmp_path, folder: str) -> None:
    documents = tmp_path / "docs.txt"
    documents.write_text("\n".join(text for text in SLIM_DOCUMENTS if text) + "\n", encoding="utf-8")
    got = torch_free(
        f"""
        import contextlib, io
        from crossrank.cli import app
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                app(["rank", {str(documents)!r}, "-q", QUERY, "-m", f"{{FIXTURES}}/{folder}", "--json"])
            except SystemExit as exit:
                code = exit.code
        done({{"code": code, "out": json.loads(out.getvalue())}})
        """
    )
    assert got["code"] in (0, None)
    assert got["out"]["model"].endswith(folder) and len(got["out"]["results"]) == 3


@pytest.mark.parametrize("folder", FOLDERS)
def test_the_three_framework_packages_rank(torch_free, folder: str) -> None:
    got = torch_free(
        f"""
        from langchain_core.documents import Document
        from langchain_crossrank import CrossrankRerank
        from llama_index.core.schema import NodeWithScore, TextNode
        from llama_index.postprocessor.crossrank import CrossrankRerank as LlamaRerank
        from haystack import Document as HaystackDocument
        from haystack_integrations.components.rankers.crossrank import CrossrankRanker
        from crossrank import Reranker
        docs, model = DOCS[:4], FIXTURES + "/{folder}"
        alone = [docs[hit.index] for hit in Reranker(model).rank(QUERY, docs, top_n=2)]
        lc = CrossrankRerank(model=model, top_n=2).compress_documents(
            [Document(page_content=t) for t in docs], QUERY
        )
        li = LlamaRerank(model=model, top_n=2).postprocess_nodes(
            [NodeWithScore(node=TextNode(text=t)) for t in docs], query_str=QUERY)
        ranker = CrossrankRanker(model=model, top_k=2)
        ranker.warm_up()
        hs = ranker.run(query=QUERY, documents=[HaystackDocument(content=t) for t in docs])
        hs = hs["documents"]
        done({{"alone": alone, "langchain": [d.page_content for d in lc],
              "llamaindex": [n.node.get_content() for n in li], "haystack": [d.content for d in hs]}})
        """,
        timeout_s=300,
    )
    assert got["langchain"] == got["llamaindex"] == got["haystack"] == got["alone"]


def test_the_core_requires_neither_torch_nor_rapidfuzz() -> None:
    """What `pip install crossrank` pulls: the heavy packages and rapidfuzz come with extras only."""
    from importlib.metadata import requires

    core = {
        line.split(";")[0].split("[")[0].split(">")[0].split("=")[0].strip().lower()
        for line in requires("crossrank") or []
        if "extra ==" not in line
    }
    assert "onnxruntime" in core and "tokenizers" in core
    assert not core & {"torch", "transformers", "sentence-transformers", "onnx", "rapidfuzz"}


def test_ratio_dedupe_names_its_extra_where_rapidfuzz_is_missing(torch_free) -> None:
    got = torch_free(
        """
        import importlib.util
        from crossrank import BackendUnavailableError, RerankerConfig
        try:
            RerankerConfig(dedupe_similarity="ratio")
            said = None
        except BackendUnavailableError as err:
            said = str(err)
        done({"installed": importlib.util.find_spec("rapidfuzz") is not None, "said": said})
        """
    )
    if os.environ.get("CROSSRANK_TORCH_FREE") == "1":  # the slim venv: the core alone
        assert not got["installed"]
    if got["installed"]:
        assert got["said"] is None
    else:
        assert "pip install 'crossrank[ratio]'" in got["said"]


@pytest.mark.parametrize("recipe", ["int8", "int8-static"])
def test_a_shipped_fp32_file_is_quantised_without_torch(torch_free, expected, recipe, tmp_path) -> None:
    """A hub repository with only onnx/model.onnx: int8 and int8-static are made from it with
    ONNX Runtime's quantiser (the onnx extra), as the full install makes them, bit for bit, and
    cached: later starts need no onnx."""
    script = f"""
        import os
        os.environ["CROSSRANK_CACHE"] = {str(tmp_path)!r}
        from crossrank import BackendUnavailableError, Reranker
        try:
            reranker = Reranker(FIXTURES + "/hub-fp32", quantize={recipe!r})
            done({{"scores": reranker.score(QUERY, DOCS), "mixes": reranker.engine.batch_invariant}})
        except BackendUnavailableError as err:
            done({{"said": str(err)}})
        """
    core_alone = torch_free(script)  # onnx is an extra: the core says which
    assert "pip install 'crossrank[onnx]'" in core_alone["said"]
    got = torch_free(script, allow=("onnx",))
    assert got["scores"] == expected[f"hub-fp32 {recipe}"]
    assert got["mixes"] is (recipe == "int8-static")
    fp32 = expected["hub-fp32 fp32"]
    assert max(abs(a - b) for a, b in zip(got["scores"], fp32, strict=True)) < 0.5
    assert torch_free(script)["scores"] == got["scores"]  # cached: the core alone runs it now
