#!/usr/bin/env bash
# One command on the GPU machine (which reaches no package index): install the carried wheels
# the image lacks (tenacity), then run the proof. Through the device tool:
#   run(command="bash benchmarks/gpu/run_on_gpu.sh", carry=[".whl"])
# Fetch the wheels here first (see benchmarks/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name,memory.used,memory.total --format=csv
python3 benchmarks/gpu/gpu_proof.py
