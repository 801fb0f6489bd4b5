#!/usr/bin/env bash
# Install crossrank with the offline stage-1 model into .venv and run the two-stage demo.
# Extra arguments go to `crossrank demo`, e.g. `bash scripts/demo.sh --query "why is the sky blue"`.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The CPU build of torch first: left to the resolver, a bare `torch` pulls several GB of CUDA wheels.
pip install -q torch==2.13.0
pip install -q -e ".[demo]"
crossrank demo "$@"
