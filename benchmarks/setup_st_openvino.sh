#!/usr/bin/env bash
# A separate venv for sentence-transformers' own OpenVINO backend (backend="openvino"), used by
# rank_latency.py's st-openvino system: the anchor issue 27 names. Like ST's
# ONNX backend it needs an optimum package (optimum-intel) that pins transformers < 5, so it gets the
# last ST 5.x line, with the CPU torch wheel installed first (a bare install pulls CUDA torch: the
# 6.1 GB venv the issue reports).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv-st-openvino
.venv-st-openvino/bin/pip install -q --upgrade pip
.venv-st-openvino/bin/pip install -q torch==2.13.0  # the local CPU wheel; never a CUDA build
# One resolve with torch pinned: a later unpinned step upgrades torch to a CUDA wheel. The
# sentence-transformers[openvino] extra alone resolves to optimum-intel 1.15 (openvino.runtime, gone
# from OpenVINO 2026): ask for a current optimum-intel and the transformers it supports.
.venv-st-openvino/bin/pip install -q torch==2.13.0 "sentence-transformers==5.7.0" \
    "optimum-intel[openvino]>=2.2" "transformers<5"
# optimum-intel pulls torchvision from PyPI, built for PyPI's CUDA torch: its ops don't load on the
# CPU wheel, and transformers then fails to import. Nothing here uses it.
.venv-st-openvino/bin/pip uninstall -q -y torchvision
.venv-st-openvino/bin/python -c "import sentence_transformers, transformers, optimum.intel, openvino; \
from optimum.intel.openvino import OVModelForSequenceClassification; \
print('sentence-transformers', sentence_transformers.__version__, 'transformers', transformers.__version__, \
'openvino', openvino.__version__)"
