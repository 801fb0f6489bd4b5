"""What ``backend="auto"`` (the default) runs: one rule, in one place, per CPU.

The rule picks the fastest engine that still sends the LLM what fp32 would (measured figures in
``docs/performance.md``, "Which engine, by CPU"), from what is installed and what the CPU computes
natively (:func:`crossrank.cpus.native_bf16`). In order:

1. Options only one built-in backend takes choose it (``quantize``: ONNX; ``trust_remote_code``:
   torch; ``cache_dir``: OpenVINO). Options two of them take (``onnx_file``: ONNX or OpenVINO;
   ``precision="bf16"``: torch or OpenVINO) leave the choice to the rules below, or to the first
   of them (torch, ONNX, OpenVINO) where the rules below pick one that doesn't take them.
   Explicit choices always win: ``backend=`` is never overridden.
2. A GPU: torch (an explicit ``device="cuda..."``, or an NVIDIA GPU visible with torch installed).
3. An LLM reranker by name (``Qwen3-Reranker``, ``mxbai-rerank``) with torch installed: torch. Its
   ONNX export is gigabytes and no faster (21.7 s vs 22.7 s per 20 chunks for Qwen3-0.6B, AVX2).
4. A CPU with native bf16 (AMX or AVX512-BF16): OpenVINO where ``crossrank[openvino]`` is
   installed (bf16 by its own default), else torch (bf16 weights: its ``precision="auto"``).
5. Any other CPU (AVX2, AVX512/VNNI without bf16, ARM): ONNX Runtime fp32. On AVX2 it is 1.1x
   torch fp32 with a quarter of the memory and a 7x faster cold start, and it keeps fp32's top 3
   (43/43 DL19 queries). Dynamic int8 is 1.6x faster again but changes the top 3 of 17 queries in
   43, so it stays opt-in (``quantize="int8"``).

A folder with ready ONNX files and no weights (``crossrank export``) runs ONNX Runtime, or OpenVINO
under rule 4. ONNX needs a file: where torch is installed it exports one (once, cached); without
torch, hub repos and folders must ship one.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossrank.cpus import cpu_features, cpu_summary, native_bf16
from crossrank.families import llm_family_named

__all__ = ["Choice", "choose_backend", "installed_engines", "log_choice"]

logger = logging.getLogger(__name__)

#: The built-in engines rule 1 weighs the options against, in the order it prefers them.
ENGINES = ("torch", "onnx", "openvino")

#: Where Linux lists NVIDIA GPUs, read instead of importing torch to ask.
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")
#: The choices logged so far in this process (each is logged once).
_logged: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Choice:
    """The backend ``"auto"`` runs, and the reason, as the log line says it."""

    backend: str
    reason: str


def installed_engines() -> frozenset[str]:
    """Which engines this install can run: ``torch`` (with sentence-transformers), ``onnx``,
    ``openvino``, and ``export`` where torch, transformers and onnx can write an ONNX file.

    Example:
        >>> "onnx" in installed_engines()
        True
    """
    from crossrank.backends.onnx_files import can_export

    def found(*names: str) -> bool:
        try:
            return all(importlib.util.find_spec(name) is not None for name in names)
        except (ImportError, ValueError):
            return False

    engines = {"onnx"} if found("onnxruntime") else set()
    if found("torch", "sentence_transformers"):
        engines.add("torch")
    if found("openvino"):
        engines.add("openvino")
    if can_export():
        engines.add("export")
    return frozenset(engines)


def choose_backend(
    model: str | None,
    options: Mapping[str, Any],
    *,
    device: str | None = None,
    features: Iterable[str] | None = None,
    installed: Iterable[str] | None = None,
    gpu_visible: bool | None = None,
    takes: Callable[[str, Mapping[str, Any]], bool] | None = None,
) -> Choice:
    """The backend ``"auto"`` runs ``model`` with: a pure function of its inputs (the rule above).

    Args:
        model: Hub id or folder (None: the default model).
        options: The backend options given (``quantize``, ``precision``...).
        device: ``Reranker(device=...)``.
        features: The CPU's flags (default :func:`crossrank.cpus.cpu_features`).
        installed: :func:`installed_engines` (tests pass other machines').
        gpu_visible: Whether an NVIDIA GPU is visible (default: read from ``/proc``).
        takes: ``takes(backend, options)``: whether that backend takes those options (default
            :func:`crossrank.backends.check_backend_options` passing).

    Example:
        >>> choose_backend("m", {}, features={"avx2"}, installed={"torch", "onnx", "export"}).backend
        'onnx'
        >>> choose_backend("m", {}, features={"amx_bf16"}, installed={"torch", "onnx", "export"}).backend
        'torch'
        >>> choose_backend("m", {}, features={"amx_bf16"}, installed={"onnx", "openvino"}).backend
        'openvino'
        >>> llm = "Qwen/Qwen3-Reranker-0.6B"
        >>> choose_backend(llm, {}, features={"avx2"}, installed={"torch", "onnx", "export"}).backend
        'torch'
    """
    flags = frozenset(cpu_features() if features is None else features)
    have = frozenset(installed_engines() if installed is None else installed)
    given = dict(options)
    takers = [name for name in ENGINES if (takes or _takes)(name, given)] if given else list(ENGINES)
    named = ", ".join(sorted(given))
    if len(takers) == 1:
        return Choice(takers[0], f"the options given ({named}) run on {takers[0]} only")
    choice = _by_machine(model, device, flags, have, gpu_visible)
    if takers and choice.backend not in takers:
        # The machine's pick doesn't take the options: the first installed engine that does.
        fallback = next((name for name in takers if name in have), takers[0])
        return Choice(
            fallback, f"the options given ({named}) run on {' or '.join(takers)}, not {choice.backend}"
        )
    return choice


def _by_machine(
    model: str | None,
    device: str | None,
    flags: frozenset[str],
    have: frozenset[str],
    gpu_visible: bool | None,
) -> Choice:
    """Rules 2-5: what the device, the model and the CPU decide."""
    if device is not None and device != "cpu":
        return Choice("torch", f"device={device!r} runs on torch")
    if gpu_visible is None:
        gpu_visible = device is None and NVIDIA_GPUS.is_dir() and any(NVIDIA_GPUS.iterdir())
    if gpu_visible and "torch" in have:
        return Choice("torch", "an NVIDIA GPU is visible: torch, fp16 on it")
    bf16 = native_bf16(flags)
    folder = Path(model).expanduser() if model else None
    ready_only = folder is not None and folder.is_dir() and _ready_only(folder)
    if ready_only:
        if bf16 and "openvino" in have:
            return Choice("openvino", "a folder of ONNX files, on a CPU with native bf16: OpenVINO bf16")
        return Choice("onnx", "a folder of ONNX files without weights")
    if "torch" in have and model and llm_family_named(model) is not None:
        return Choice("torch", "an LLM reranker: its ONNX export is gigabytes and no faster than torch")
    can_have_onnx = "export" in have or "torch" not in have
    if bf16:
        if "openvino" in have and can_have_onnx:
            return Choice("openvino", "native bf16 (AMX/AVX512-BF16): OpenVINO bf16, the fastest there")
        if "torch" in have:
            return Choice("torch", "native bf16 (AMX/AVX512-BF16): torch with bf16 weights")
        return Choice("onnx", "native bf16 but neither OpenVINO nor torch installed: ONNX Runtime fp32")
    if can_have_onnx:
        return Choice("onnx", "no native bf16: ONNX Runtime fp32, the fastest engine that keeps fp32's top 3")
    return Choice("torch", "no native bf16, and no onnx package to export with: torch fp32")


def log_choice(choice: Choice) -> None:
    """Log ``choice`` once per process, with this CPU's name and flags."""
    key = (choice.backend, choice.reason)
    if key not in _logged:
        _logged.add(key)
        logger.info("backend='auto' runs %s on %s: %s", choice.backend, cpu_summary(), choice.reason)


def _takes(name: str, options: Mapping[str, Any]) -> bool:
    from crossrank.backends import check_backend_options

    try:
        check_backend_options(name, options)
    except ValueError:
        return False
    return True


def _ready_only(folder: Path) -> bool:
    from crossrank.backends.onnx_files import has_ready_files, has_weights

    return not has_weights(folder) and has_ready_files(folder)
