#!/usr/bin/env bash
# One command on a two-GPU machine (which reaches no package index): install the carried wheels
# the image lacks (tenacity), then run both GPU proofs. Through the device tool:
#   run(command="bash benchmarks/gpu/run_cluster_on_gpu.sh", carry=[".whl"], kind="nvidia-h100-x2")
set -euo pipefail
cd "$(dirname "$0")/../.."
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi --query-gpu=index,name,memory.used,memory.total --format=csv
status=0
python3 benchmarks/gpu/cluster_proof.py || status=$?
python3 benchmarks/gpu/gpu_proof.py || status=$?
exit $status
