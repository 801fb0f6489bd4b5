# Sourced by demo.sh and test.sh: make and enter .venv with torch 2.13.0 installed first.
python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first: left to the resolver, a bare `torch` pulls several GB of CUDA wheels. On a stock
# Linux machine PyPI's torch==2.13.0 is itself the CUDA build; for the CPU one (~200 MB) set
# CROSSRANK_TORCH_INDEX=https://download.pytorch.org/whl/cpu. Unset, pip uses its configured
# index, which is what offline machines with a local mirror need.
pip install -q torch==2.13.0 ${CROSSRANK_TORCH_INDEX:+--index-url "$CROSSRANK_TORCH_INDEX"}
