#!/usr/bin/env bash
# A separate venv for sentence-transformers' own ONNX backend, used by rank_latency.py's st-onnx
# system. It can't live beside crossrank: ST's backend="onnx" needs optimum-onnx, whose releases
# (0.1.0 at the time of writing) pin transformers < 4.58, while sentence-transformers 6 needs
# transformers >= 5. So this venv holds the last ST 5.x line with the transformers 4 it resolves to.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv-st-onnx
.venv-st-onnx/bin/pip install -q --upgrade pip
.venv-st-onnx/bin/pip install -q torch==2.13.0  # the local CPU wheel; never a CUDA build
.venv-st-onnx/bin/pip install -q "sentence-transformers[onnx]==5.7.0"
.venv-st-onnx/bin/python -c "import sentence_transformers, transformers, optimum.onnxruntime; \
print('sentence-transformers', sentence_transformers.__version__, 'transformers', transformers.__version__)"
