#!/usr/bin/env bash
# A separate venv for sentence-transformers' own OpenVINO backend (backend="openvino"), used by
# rank_latency.py's st-openvino and st-openvino-int8 systems: the anchor issue 27 names. Like ST's
# ONNX backend it needs an optimum package (optimum-intel) that pins transformers < 5, so it gets the
# last ST 5.x line, with the CPU torch wheel installed first (a bare install pulls CUDA torch: the
# 6.1 GB venv the issue reports).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv-st-openvino
.venv-st-openvino/bin/pip install -q --upgrade pip
.venv-st-openvino/bin/pip install -q torch==2.13.0  # the local CPU wheel; never a CUDA build
.venv-st-openvino/bin/pip install -q "sentence-transformers[openvino]==5.7.0"
.venv-st-openvino/bin/python -c "import sentence_transformers, transformers, optimum.intel, openvino; \
print('sentence-transformers', sentence_transformers.__version__, 'transformers', transformers.__version__, \
'openvino', openvino.__version__)"
