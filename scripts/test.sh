#!/usr/bin/env bash
# Install crossrank, both integration packages and the test tools into .venv, then lint and run every test.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not real_model"` for the fast suite only.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
pip install -q -e ".[test]" \
    -e "integrations/langchain-crossrank[test]" \
    -e "integrations/llama-index-postprocessor-crossrank[test]"
ruff check .
python -m pytest tests integrations "$@"
