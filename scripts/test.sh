#!/usr/bin/env bash
# Install crossrank, its three integration packages and the test tools into .venv, the LiteLLM proxy into
# .venv-litellm (an app crossrank is tested behind, in an environment of its own as it is deployed:
# litellm[proxy] pins an older huggingface_hub), then lint and run every test; last, the torch-free
# install in .venv-slim (`pip install crossrank[server,onnx]` and the framework packages, no torch) runs
# tests/slim on folders exported here.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not real_model"` for the fast suite only.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
pip install -q -e ".[test]" \
    -e "integrations/langchain-crossrank[test]" \
    -e "integrations/llama-index-postprocessor-crossrank[test]" \
    -e "integrations/crossrank-haystack[test]"
python3 -m venv .venv-litellm
.venv-litellm/bin/python -m pip install -q --upgrade pip
.venv-litellm/bin/pip install -q "litellm[proxy]>=1.100"
export CROSSRANK_LITELLM_PROXY="$PWD/.venv-litellm/bin/litellm"
ruff check .
python -m pytest tests integrations "$@"

python3 -m venv .venv-slim
.venv-slim/bin/python -m pip install -q --upgrade pip
.venv-slim/bin/pip install -q -e ".[server,onnx]" \
    -e integrations/langchain-crossrank \
    -e integrations/llama-index-postprocessor-crossrank \
    -e integrations/crossrank-haystack \
    pytest pytest-asyncio httpx
fixtures="$(mktemp -d)"
trap 'rm -rf "$fixtures"' EXIT
python -c "import sys; from crossrank.testing import build_torch_free_fixtures as b; b(sys.argv[1])" "$fixtures"
CROSSRANK_TORCH_FREE=1 CROSSRANK_TORCH_FREE_FIXTURES="$fixtures" \
    .venv-slim/bin/python -m pytest tests/slim --confcutdir=tests/slim -p no:cacheprovider
