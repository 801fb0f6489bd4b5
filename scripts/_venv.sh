# Sourced by demo.sh and test.sh: make and enter .venv with the CPU build of torch installed.
python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The CPU build of torch first: left to the resolver, a bare `torch` pulls several GB of CUDA wheels.
pip install -q torch==2.13.0
