#!/usr/bin/env bash
# Install crossrank, its three integration packages and the test tools into .venv, the LiteLLM proxy into
# .venv-litellm (an app crossrank is tested behind, in an environment of its own as it is deployed:
# litellm[proxy] pins an older huggingface_hub), then lint and run every test.
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
