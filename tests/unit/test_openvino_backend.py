"""backend="openvino": the ONNX backend's fp32 file compiled by OpenVINO: its scores, every face, no torch."""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from crossrank import (
    BackendUnavailableError,
    InvalidArgumentError,
    ModelLoadError,
    Reranker,
    RerankerConfig,
)
from crossrank.cpus import cpu_features, native_bf16

pytest.importorskip("openvino", reason="backend='openvino' needs the openvino extra")  # in the test extra

QUERY = "how long does a flea live"
DOCS = [
    "fleas live a year with a host",
    "the eiffel tower is in paris",
    "",
    "coffee has caffeine " * 40,
    "flea",
    "a dog and a cat live in paris with fleas for years",
]


@pytest.fixture(scope="module", autouse=True)
def crossrank_cache(tmp_path_factory: pytest.TempPathFactory):
    """ONNX exports and OpenVINO's compiled models in a folder of this module's."""
    cache = tmp_path_factory.mktemp("crossrank-cache")
    previous = os.environ.get("CROSSRANK_CACHE")
    os.environ["CROSSRANK_CACHE"] = str(cache)
    yield cache
    if previous is None:
        del os.environ["CROSSRANK_CACHE"]
    else:
        os.environ["CROSSRANK_CACHE"] = previous


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from crossrank.families_testing import build_tiny_qwen3_reranker

    return build_tiny_qwen3_reranker(tmp_path_factory.mktemp("m") / "Qwen3-Reranker-tiny")


@pytest.fixture(scope="module", params=["cross-encoder", "qwen3-reranker"])
def model_dir(request: pytest.FixtureRequest, tiny_model_dir: Path) -> Path:
    return tiny_model_dir if request.param == "cross-encoder" else request.getfixturevalue("qwen3_dir")


@pytest.fixture(scope="module")
def tiny_ov(tiny_model_dir: Path) -> Reranker:
    return Reranker(tiny_model_dir, backend="openvino", precision="fp32")


def test_fp32_scores_equal_onnx_runtime_and_rank_alike(model_dir: Path) -> None:
    ov = Reranker(model_dir, backend="openvino", precision="fp32")
    ort = Reranker(model_dir, backend="onnx")
    assert (ov.backend, ov.device, ov.engine.name) == ("openvino", "cpu", "openvino")
    assert ov.engine.path == ort.engine.path  # the one file-finding rule, the one cached export
    assert ov.family == ort.family and ov.max_length == ort.max_length
    assert ov.engine.precision == "fp32" and ov.engine.batch_invariant
    ours, theirs = ov.score(QUERY, DOCS), ort.score(QUERY, DOCS)
    assert all(type(score) is float for score in ours)
    assert np.max(np.abs(np.subtract(ours, theirs))) <= 1e-4
    assert [hit.index for hit in ov.rank(QUERY, DOCS, top_n=None)] == [
        hit.index for hit in ort.rank(QUERY, DOCS, top_n=None)
    ]


def test_an_llm_reranker_runs_with_its_prompt(qwen3_dir: Path) -> None:
    ov = Reranker(qwen3_dir, backend="openvino")
    assert ov.family == "qwen3-reranker" and ov.engine.prompt is not None
    assert not ov.engine.uses_token_type_ids
    first = ov.encoder.encode(QUERY, DOCS[:1]).first[0]
    assert "<Instruct>:" in ov.tokenizer.decode(first.ids, skip_special_tokens=False)


def test_fp32_rows_do_not_depend_on_their_batch_mates(model_dir: Path) -> None:
    """What batch_invariant=True rests on: each row scored alone, and in padded batches of mixed
    lengths, agrees within 1e-5 (measured: < 1e-7, float rounding)."""
    import random

    engine_owner = Reranker(model_dir, backend="openvino", precision="fp32")
    rng = random.Random(7)
    words = ["flea", "cat", "dog", "year", "life", "blood", "egg", "larva", "host", "jump", "bite"]
    docs = [" ".join(rng.choices(words, k=rng.randint(1, 60))) for _ in range(24)] + [""]
    encoder, engine = engine_owner.encoder, engine_owner.engine
    pairs = encoder.encode(QUERY, docs).first
    alone = {int(b.positions[0]): engine.logits(b)[0] for b in encoder.batches(pairs, 1)}
    for size in (2, 5, 8, 32):
        for batch in encoder.batches(pairs, size, overhead_tokens=10**6):  # wide, mixed lengths
            for position, logit in zip(batch.positions, engine.logits(batch), strict=True):
                assert abs(logit - alone[int(position)]) <= 1e-5


def test_logits_leave_their_inputs_alone(tiny_ov: Reranker) -> None:
    docs = list(DOCS)
    before = copy.deepcopy(docs)
    (batch,) = tiny_ov.encoder.batches(tiny_ov.encoder.encode(QUERY, docs).first, 64, overhead_tokens=10**6)
    arrays = {name: value.copy() for name, value in batch.as_dict().items()}
    logits = tiny_ov.engine.logits(batch)
    assert logits.dtype == np.float32 and logits.shape == (len(docs),)
    assert all(np.array_equal(value, arrays[name]) for name, value in batch.as_dict().items())
    tiny_ov.rank(QUERY, docs, top_n=2)
    assert docs == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"backend_options": {"colour": "red"}},
            r"colour is not an option of backend='openvino' \(its options: precision, cache_dir, "
            r"onnx_file, family\)",
        ),
        ({"quantize": "int8"}, r"quantize applies to backend='onnx' only \(backend='openvino'\)"),
        ({"precision": "fp16"}, "precision: Input should be 'auto', 'fp32' or 'bf16'"),
        ({"trust_remote_code": True}, "trust_remote_code applies to backend='torch' only"),
        ({"device": "cuda"}, "backend='openvino' runs on the CPU"),
    ],
)
def test_bad_openvino_options_are_refused(tiny_model_dir: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        Reranker(tiny_model_dir, backend="openvino", **kwargs)


def test_a_missing_onnx_file_is_a_load_error(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"has no ONNX file 'onnx/nope\.onnx'"):
        Reranker(tiny_model_dir, backend="openvino", onnx_file="onnx/nope.onnx")


def test_auto_picks_openvino_only_where_the_cpu_has_bf16(tiny_model_dir: Path) -> None:
    from crossrank.backends.choice import choose_backend

    resolved = RerankerConfig(model=str(tiny_model_dir)).resolved_backend()
    assert resolved == choose_backend(str(tiny_model_dir), {}).backend
    assert (resolved == "openvino") is native_bf16()
    with pytest.raises(ValueError, match=r"cache_dir applies to backend='openvino' only"):
        RerankerConfig(model=str(tiny_model_dir), backend="onnx", backend_options={"cache_dir": "/tmp/x"})
    assert RerankerConfig(backend="openvino", precision="bf16").engine_options() == {
        "precision": "bf16",
        "cache_dir": None,
        "onnx_file": None,
        "family": None,
    }


def test_without_openvino_the_error_says_what_to_install(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)
    monkeypatch.delitem(sys.modules, "crossrank.backends.openvino_backend", raising=False)
    with pytest.raises(BackendUnavailableError, match=r"pip install 'crossrank\[openvino\]'"):
        Reranker(tiny_model_dir, backend="openvino")


@pytest.mark.skipif(
    bool({"avx512_bf16", "amx_bf16", "avx_ne_convert"} & cpu_features()),
    reason="this CPU computes bf16 natively",
)
def test_bf16_on_a_cpu_without_bf16_runs_fp32_and_says_so(
    tiny_model_dir: Path, tiny_ov: Reranker, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="crossrank.backends.openvino_backend"):
        bf16 = Reranker(tiny_model_dir, backend="openvino", precision="bf16")
    assert "this CPU has no native bf16" in caplog.text
    assert bf16.engine.precision == "fp32" and bf16.engine.batch_invariant
    assert bf16.score(QUERY, DOCS) == tiny_ov.score(QUERY, DOCS)


def test_a_bf16_engine_declares_itself_batch_variant(tiny_ov: Reranker) -> None:
    """No CPU here runs bf16, so the rule is checked on a compiled model that says it does."""
    import openvino as ov

    from crossrank.backends.openvino_backend import OpenVinoBackend

    real = tiny_ov.engine.compiled_model

    class SaysBf16:
        inputs, outputs = real.inputs, real.outputs

        def get_property(self, name: str):
            return ov.Type.bf16 if name == "INFERENCE_PRECISION_HINT" else real.get_property(name)

        def output(self, name: str):
            return real.output(name)

        def create_infer_request(self):
            return real.create_infer_request()

    engine = OpenVinoBackend(
        SaysBf16(), tiny_ov.engine.tokenizer, max_positions=128, pad_token_id=0, path=tiny_ov.engine.path
    )
    assert engine.precision == "bf16" and engine.batch_invariant is False
    assert Reranker.from_backend(engine).engine.batch_invariant is False


def test_threads_are_honoured(tiny_model_dir: Path, tiny_ov: Reranker) -> None:
    from crossrank.cpus import usable_cpus

    one = Reranker(tiny_model_dir, backend="openvino", threads=1)
    assert one.engine.compiled_model.get_property("INFERENCE_NUM_THREADS") == 1 == one.engine.threads
    assert tiny_ov.engine.compiled_model.get_property("INFERENCE_NUM_THREADS") == usable_cpus()
    assert one.engine.compiled_model.get_property("ENABLE_CPU_PINNING") is False
    assert one.score(QUERY, DOCS) == pytest.approx(tiny_ov.score(QUERY, DOCS), abs=1e-5)


def test_compiled_models_are_cached(
    tiny_model_dir: Path, tiny_ov: Reranker, crossrank_cache: Path, tmp_path: Path
) -> None:
    assert list((crossrank_cache / "openvino").glob("*.blob"))  # the default: under CROSSRANK_CACHE
    folder = tmp_path / "compiled"
    first = Reranker(tiny_model_dir, backend="openvino", backend_options={"cache_dir": str(folder)})
    assert list(folder.glob("*.blob"))
    assert first.engine.compiled_model.get_property("LOADED_FROM_CACHE") is False
    again = Reranker(tiny_model_dir, backend="openvino", backend_options={"cache_dir": str(folder)})
    assert again.engine.compiled_model.get_property("LOADED_FROM_CACHE") is True
    assert again.score(QUERY, DOCS) == first.score(QUERY, DOCS)


def test_a_cache_folder_that_cant_be_made_only_costs_compiling(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="crossrank.backends.openvino_backend"):
        engine = Reranker(tiny_model_dir, backend="openvino", backend_options={"cache_dir": str(blocked)})
    assert "every start compiles" in caplog.text
    assert len(engine.score(QUERY, DOCS)) == len(DOCS)


def test_every_face_runs_on_openvino(tiny_ov: Reranker) -> None:
    from fastapi.testclient import TestClient
    from langchain_core.documents import Document
    from langchain_crossrank import CrossrankRerank

    from crossrank.server import create_app

    want = [hit.index for hit in tiny_ov.rank(QUERY, DOCS, top_n=3)]
    assert tiny_ov.to_config().backend == "openvino"
    with TestClient(create_app(tiny_ov)) as client:
        answer = client.post("/v2/rerank", json={"query": QUERY, "documents": DOCS, "top_n": 3})
        info = client.get("/info").json()
    assert answer.status_code == 200, answer.text
    assert [hit["index"] for hit in answer.json()["results"]] == want
    assert info["backend"] == "crossrank openvino on cpu"
    kept = CrossrankRerank(reranker=tiny_ov, top_n=3).compress_documents(
        [Document(page_content=text) for text in DOCS], QUERY
    )
    assert [doc.page_content for doc in kept] == [DOCS[i] for i in want]


def test_an_exported_folder_scores_without_torch(tiny_model_dir: Path, tmp_path: Path) -> None:
    """What `pip install 'crossrank[openvino]'` runs: a `crossrank export` folder, with torch,
    transformers, sentence-transformers and onnx unimportable."""
    from crossrank.export import export_model

    folder = export_model(tiny_model_dir, tmp_path / "exp").folder
    expected = Reranker(folder, backend="onnx").score(QUERY, DOCS)
    script = textwrap.dedent(
        f"""
        import json, sys
        HEAVY = ("torch", "transformers", "sentence_transformers", "onnx")
        for name in HEAVY:
            sys.modules[name] = None
        from crossrank import Reranker
        reranker = Reranker({str(folder)!r}, backend="openvino", precision="fp32")
        scores = reranker.score({QUERY!r}, {DOCS!r})
        heavy = sorted({{m.split(".")[0] for m, module in sys.modules.items() if module}} & set(HEAVY))
        print(json.dumps({{"scores": scores, "heavy": heavy, "precision": reranker.engine.precision}}))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [] and report["precision"] == "fp32"
    assert np.max(np.abs(np.subtract(report["scores"], expected))) <= 1e-4


def test_ctrl_c_after_loading_from_the_compiled_cache_interrupts_cleanly(
    tiny_model_dir: Path, tmp_path
) -> None:
    """OpenVINO leaves the loading thread an alternate signal stack it later frees; without crossrank
    putting the old one back, the next Ctrl-C was a segmentation fault (a server that can't stop)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        import os, signal, time
        from crossrank import Reranker
        options = {{"cache_dir": {str(tmp_path / "compiled")!r}}}
        for _ in range(2):  # compiled, then loaded from the cache
            reranker = Reranker({str(tiny_model_dir)!r}, backend="openvino", backend_options=options)
        reranker.score("flea", ["fleas live a year"])
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            print("interrupted")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip().endswith("interrupted")
