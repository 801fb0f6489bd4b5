#!/usr/bin/env bash
# The torch-free installs rank_latency.py compares, each in a venv of its own so that its
# site-packages is its install alone:
#   .venv-slim         pip install crossrank            (the core: no torch, no extras)
#   .venv-slim-server  pip install 'crossrank[server]'  (sized only)
#   .venv-flashrank    pip install flashrank==0.2.10
#   .venv-fastembed    pip install 'fastembed>=0.9,<0.10'
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd .. && pwd)"
make_venv() {  # name, then what pip installs
    local name="$1"; shift
    python3 -m venv "$name"
    "$name/bin/pip" install -q "$@"
}
make_venv .venv-slim -e "$root"
make_venv .venv-slim-server -e "$root[server]"
make_venv .venv-flashrank "flashrank==0.2.10"
make_venv .venv-fastembed "fastembed>=0.9,<0.10"
for venv in .venv-slim .venv-slim-server .venv-flashrank .venv-fastembed; do
    "$venv/bin/python" -c "import importlib.util as u, sys; \
assert u.find_spec('torch') is None, 'torch got in'; print(sys.argv[1], 'ready, no torch')" "$venv"
done
