"""PyTorch backend: the model is a sentence-transformers ``CrossEncoder``.

Loading goes through ``CrossEncoder`` so every model it supports (and its saved settings) works
the same here; scoring calls the CrossEncoder module on crossrank's own token ids, so scores
equal ``CrossEncoder.predict`` with the identity activation (raw logits).

The model's last layer is computed for the first token only, the one the score reads
(:mod:`crossrank.backends.first_token`): the same logits within float rounding, ~14% less work
for MiniLM-L6.

``precision="auto"`` is fp16 on a GPU (autocast: the weights stay fp32, matrix products run in
half precision on the tensor cores), bf16 on a CPU that computes it natively (AMX or AVX512-BF16,
:func:`crossrank.cpus.native_bf16`) and fp32 on other CPUs. bf16 on a CPU casts the weights of a
model crossrank loaded to bf16, as sentence-transformers' ``model_kwargs={"dtype":
torch.bfloat16}`` does, rather than autocasting over fp32 weights: autocast converts every weight
on every call (crossrank bf16 autocast 149 ms vs sentence-transformers bf16 weights 126 ms per 20
chunks on a 2-vCPU Xeon with AMX, issue 27). A ``CrossEncoder`` handed in
(:meth:`TorchBackend.from_cross_encoder`) is the caller's and is never cast: it runs under autocast.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from crossrank.backends.first_token import use_first_token_last_layer
from crossrank.cpus import native_bf16, usable_cpus
from crossrank.encoding import EncodedBatch
from crossrank.errors import InvalidArgumentError, ModelLoadError, UnsupportedModelError
from crossrank.families import CROSS_ENCODER, FAMILIES, Family, detect_family
from crossrank.model_source import ModelSource

__all__ = ["PRECISIONS", "TorchBackend"]

logger = logging.getLogger(__name__)

#: Values of ``Reranker(precision=...)``; "auto" is fp16 on CUDA, bf16 on CPUs with native bf16, else fp32.
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
#: Cost of one more forward pass, in padded tokens (see crossrank.encoding.plan_batches). CPU:
#: measured (32-128 gave the same latency). CUDA: not measured yet; a small forward on a GPU is
#: bound by kernel launches, not tokens, so it is set to favour few, wide batches.
_OVERHEAD_TOKENS = {"cpu": 128, "cuda": 4096}


def _resolve_precision(precision: str, device: str) -> str:
    if precision not in PRECISIONS:
        raise InvalidArgumentError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    on_cuda = device.startswith("cuda")
    if precision == "auto":
        return "fp16" if on_cuda else "bf16" if native_bf16() else "fp32"
    if precision == "fp16" and not on_cuda:
        raise InvalidArgumentError(
            f"precision='fp16' needs a CUDA device (device={device!r}); use 'fp32', or 'bf16' on a CPU "
            "that supports it"
        )
    return precision


#: Guards the state below: backends may be loaded in several threads at once.
_threads_lock = threading.Lock()
#: Whether a torch backend was created in this process already.
_created = False
#: The count the last backend with ``threads=`` applied; None while none has set one.
_applied_threads: int | None = None
#: Whether a backend with ``threads=None`` already checked torch's count against the usable CPUs.
_checked_usable = False


def _apply_threads(threads: int | None) -> None:
    """Apply ``threads`` to torch's intra-op thread count, once, when a backend is created.

    The count is a process setting (``torch.set_num_threads``), so it is set here and never
    per call: changing it around each forward pass made two Rerankers with different counts
    run with each other's count and leave the process at the wrong one. A later backend with a
    different count replaces it for every torch Reranker, with a warning naming both. With
    ``threads=None`` the count is lowered (never raised) to the CPUs this process may use
    (:func:`crossrank.cpus.usable_cpus`), once per process, unless an explicit count is in force.
    """
    global _created, _applied_threads, _checked_usable
    with _threads_lock:
        current = torch.get_num_threads()
        earlier, _created = _created, True
        if threads is not None:
            if earlier and threads != current:
                logger.warning(
                    "threads=%d replaces torch's intra-op thread count %d, which the torch Reranker "
                    "loaded earlier ran with: the count is process-wide, so every torch Reranker in "
                    "this process now runs with %d threads.",
                    threads,
                    current,
                    threads,
                )
            else:
                logger.info(
                    "threads=%d: torch's intra-op thread count is process-wide; set to %d for the whole "
                    "process (was %d).",
                    threads,
                    threads,
                    current,
                )
            torch.set_num_threads(threads)
            _applied_threads = threads
            return
        if _checked_usable or _applied_threads is not None:
            return  # checked already, or an explicit count is in force
        _checked_usable = True
        usable = usable_cpus()
        if current > usable:
            logger.info(
                "torch used %d intra-op threads but this process may use %d CPUs (affinity, cgroup "
                "quota): set to %d for the whole process.",
                current,
                usable,
                usable,
            )
            torch.set_num_threads(usable)


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class TorchBackend:
    """Runs a sentence-transformers ``CrossEncoder`` with torch.

    Use :meth:`load`; the constructor takes an already loaded ``CrossEncoder``.

    Threads: torch's intra-op thread count is a process setting, not a per-model one. ``threads=``
    is applied once, when the backend is created (``torch.set_num_threads``, logged at INFO), and
    holds for all torch work in the process; a later backend with another count replaces it
    (logged as a WARNING naming both). Scoring never changes it. With ``threads=None`` the count
    torch chose is kept, except that it is lowered to :func:`crossrank.cpus.usable_cpus` (the
    affinity mask and cgroup quota) if above it, once per process. With torch's OpenMP builds a
    thread that ran torch code before the backend was created keeps the count it had then; the
    threads started later take the new one, so create the Reranker before the serving threads.
    """

    name = "torch"
    #: fp32/fp16 logits of a row don't depend on its batch-mates beyond float rounding; bf16 ones
    #: do (set per instance): MiniLM-L6 with bf16 weights, each DL19 passage alone vs in its batch
    #: of 20, differed by up to 0.0625, a bf16 step at the logits' magnitude (AMD EPYC, AVX2).
    batch_invariant = True

    def __init__(
        self,
        model: Any,
        hf_tokenizer: Any,
        *,
        model_name: str,
        max_positions: int,
        precision: str = "auto",
        threads: int | None = None,
        family: Family | None = None,
    ) -> None:
        """Use :meth:`load`. ``model`` maps ``{"input_ids", "attention_mask"[, "token_type_ids"]}``
        to ``{"scores": (rows, 1)}``: a ``CrossEncoder``, or a :class:`.yes_no.YesNoScore`."""
        backend_tokenizer = getattr(hf_tokenizer, "backend_tokenizer", None)
        if not isinstance(backend_tokenizer, Tokenizer):
            raise UnsupportedModelError(
                f"Model {model_name!r} has no fast (Rust `tokenizers`) tokenizer, which crossrank needs "
                "to tokenise pairs the same way on every backend. Save one with "
                "`AutoTokenizer.from_pretrained(..., use_fast=True).save_pretrained(dir)`.",
                model=model_name,
            )
        self._model = model.eval()
        self._lock = threading.Lock()
        self.device = str(model.device)
        #: Compute precision actually used: "fp32", "fp16" or "bf16".
        self.precision = _resolve_precision(precision, self.device)
        #: Whether the weights themselves are half precision (bf16 on a CPU, cast at load): no autocast.
        self._half_weights = next(self._model.parameters()).dtype != torch.float32
        self.batch_invariant = self.precision != "bf16"
        #: The ``threads=`` asked for: torch's process-wide count, applied once here (None: torch's
        #: own count, lowered to the usable CPUs if above them). See the class docstring.
        self.threads = threads
        _apply_threads(threads)
        on_cuda = self.device.startswith("cuda")
        self.batch_overhead_tokens = _OVERHEAD_TOKENS["cuda" if on_cuda else "cpu"]
        self.default_batch_size = 128 if on_cuda else 32  # a CPU gains nothing from wider batches
        #: What kind of reranker this is (:mod:`crossrank.families`), and its prompt if an LLM one.
        self.family = family or FAMILIES[CROSS_ENCODER]
        self.prompt = self.family.prompt
        self.tokenizer = self.family.pair_tokenizer(backend_tokenizer, model_name)
        self.max_positions = max_positions
        self.pad_token_id = int(hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else 0)
        self.uses_token_type_ids = "token_type_ids" in hf_tokenizer.model_input_names

    @classmethod
    def from_cross_encoder(
        cls, cross_encoder: Any, *, model_name: str, precision: str = "auto", threads: int | None = None
    ) -> TorchBackend:
        """A backend over a loaded sentence-transformers ``CrossEncoder`` with one output label.

        Raises:
            UnsupportedModelError: More than one label, or no fast tokenizer.
        """
        num_labels = cross_encoder.num_labels
        if num_labels != 1:
            labels = getattr(cross_encoder.config, "id2label", None)
            raise UnsupportedModelError(
                f"Model {model_name!r} has {num_labels} output labels ({labels}); crossrank reranks with "
                "models that give one relevance logit per pair, such as the MS MARCO cross-encoders "
                "(cross-encoder/ms-marco-MiniLM-L6-v2). NLI or multi-class classifiers can't rank.",
                model=model_name,
            )
        max_positions = int(cross_encoder.max_seq_length or cross_encoder.config.max_position_embeddings)
        return cls(
            cross_encoder,
            cross_encoder.tokenizer,
            model_name=model_name,
            max_positions=max_positions,
            precision=precision,
            threads=threads,
        )

    @classmethod
    def load(
        cls,
        source: ModelSource,
        *,
        device: str | None = None,
        precision: str = "auto",
        threads: int | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        trust_remote_code: bool = False,
        family: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> TorchBackend:
        """Load ``source`` as a ``CrossEncoder`` on ``device`` (default: CUDA if present, else CPU).

        Args:
            precision: ``"auto"`` (fp16 autocast on CUDA, bf16 on CPUs with native bf16, fp32
                elsewhere), ``"fp32"``, ``"fp16"`` (CUDA only) or ``"bf16"`` (on a CPU: the
                weights of a model loaded here cast to bf16; a ``CrossEncoder`` handed in: autocast).
            threads: torch's intra-op thread count, for the whole process: set once here, never
                per call (see the class docstring). None keeps torch's count, lowered to the
                CPUs this process may use if above them.
            family: The model's family (:mod:`crossrank.families`); None detects it. An LLM
                reranker loads as its causal LM with the yes-no row folded (:mod:`.yes_no`).

        Raises:
            InvalidArgumentError: Unknown ``precision`` or ``family``, or fp16 without CUDA.
            ModelLoadError: ``CrossEncoder`` (or transformers, for an LLM reranker) failed to load.
            UnsupportedModelError: The model has more than one label or no fast tokenizer, or is a
                causal LM crossrank has no prompt for.
        """
        _resolve_precision(precision, device or _default_device())  # fail before loading weights
        hub = {
            "cache_dir": cache_folder,
            "revision": revision,
            "token": token,
            "local_files_only": source.local_files_only,
            "trust_remote_code": trust_remote_code,
        }
        config = _model_config(source, hub)
        chosen = detect_family(source.name, config, family)
        if chosen.prompt is not None:
            return cls._load_llm(source, chosen, hub, device, precision, threads, model_kwargs)
        from sentence_transformers import CrossEncoder

        try:
            cross_encoder = CrossEncoder(
                source.location,
                device=device or _default_device(),
                cache_folder=cache_folder,
                revision=revision,
                token=token,
                local_files_only=source.local_files_only,
                trust_remote_code=trust_remote_code,
                model_kwargs=model_kwargs,
                # crossrank applies its own activation (sigmoid on request); keep raw logits here.
                activation_fn=torch.nn.Identity(),
            )
        except Exception as err:
            raise ModelLoadError(
                f"Cannot load model {source.name!r} with sentence-transformers: {type(err).__name__}: {err}",
                model=source.name,
            ) from err
        # Same logits, less work: the last layer runs for the first token only (see first_token).
        hf_model = getattr(cross_encoder, "model", None)
        if isinstance(hf_model, torch.nn.Module):
            use_first_token_last_layer(hf_model)
        _cast_for(cross_encoder, precision, cross_encoder.device)
        return cls.from_cross_encoder(
            cross_encoder, model_name=source.name, precision=precision, threads=threads
        )

    @classmethod
    def _load_llm(
        cls,
        source: ModelSource,
        family: Family,
        hub: dict[str, Any],
        device: str | None,
        precision: str,
        threads: int | None,
        model_kwargs: dict[str, Any] | None,
    ) -> TorchBackend:
        """An LLM reranker: its causal LM with the output layer folded to the yes-no row."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from crossrank.backends.yes_no import YesNoScore

        assert family.prompt is not None
        try:
            hf_tokenizer = AutoTokenizer.from_pretrained(source.location, **hub)
            causal_lm = AutoModelForCausalLM.from_pretrained(source.location, **hub, **(model_kwargs or {}))
        except Exception as err:
            raise ModelLoadError(
                f"Cannot load model {source.name!r} with transformers: {type(err).__name__}: {err}",
                model=source.name,
            ) from err
        true_id, false_id = family.prompt.token_ids(hf_tokenizer.backend_tokenizer, source.name)
        model = YesNoScore(causal_lm, true_id, false_id).to(device or _default_device())
        _cast_for(causal_lm, precision, model.direction.device)  # the folded row stays fp32
        positions = int(getattr(causal_lm.config, "max_position_embeddings", 0) or 0)
        declared = getattr(hf_tokenizer, "model_max_length", None)
        if isinstance(declared, int) and 0 < declared < positions:
            positions = declared
        logger.info(
            "Model %r is an LLM reranker (%s): scored as logit(%r) - logit(%r).",
            source.name,
            family.name,
            family.prompt.true_token,
            family.prompt.false_token,
        )
        return cls(
            model,
            hf_tokenizer,
            model_name=source.name,
            max_positions=positions,
            precision=precision,
            threads=threads,
            family=family,
        )

    @property
    def cross_encoder(self) -> Any:
        """The sentence-transformers ``CrossEncoder`` this backend runs (its ``.model`` is the HF model)."""
        return self._model

    def logits(self, batch: EncodedBatch) -> np.ndarray:
        """Raw logits of ``batch`` as a float32 array of shape ``(rows,)``."""
        features = {key: torch.from_numpy(value) for key, value in batch.as_dict().items()}
        # One forward at a time: the model is shared, and parallel forwards on a CPU only fight
        # over the same cores (torch already uses them all inside one call). The thread count is
        # not touched here: it is a process setting, applied at load (_apply_threads).
        with self._lock, torch.inference_mode(), self._autocast():
            features = {key: value.to(self._model.device) for key, value in features.items()}
            scores = self._model(features)["scores"]
        return scores.float().reshape(-1).cpu().numpy()

    def _autocast(self) -> Any:
        """fp16/bf16 autocast on the model's device; a no-op context for fp32 or half weights."""
        if self.precision == "fp32" or self._half_weights:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self._model.device.type, dtype=_AUTOCAST_DTYPES[self.precision])


def _cast_for(model: torch.nn.Module, precision: str, device: torch.device | str) -> None:
    """Cast the weights of ``model`` (one crossrank loaded) to bf16 where ``precision`` is bf16 on a CPU."""
    if str(device) == "cpu" and _resolve_precision(precision, "cpu") == "bf16":
        for parameter in model.parameters():
            parameter.data = parameter.data.to(torch.bfloat16)


def _model_config(source: ModelSource, hub: dict[str, Any]) -> dict[str, Any]:
    """The model's ``config.json`` as a dict (architectures, model_type...), to tell its family."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source.location, **hub).to_dict()
    except Exception as err:
        raise ModelLoadError(
            f"Cannot read the config of model {source.name!r}: {type(err).__name__}: {err}",
            model=source.name,
        ) from err
