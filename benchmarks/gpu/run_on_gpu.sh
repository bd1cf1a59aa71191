#!/usr/bin/env bash
# One command on the GPU machine (which reaches no package index): install the carried wheels
# the image lacks (tenacity), then run the given proofs (default: the shutdown proof). Through
# the device tool:
#   run(command="bash benchmarks/gpu/run_on_gpu.sh", carry=[".whl"])
#   run(command="bash benchmarks/gpu/run_on_gpu.sh cluster_proof.py gpu_proof.py",
#       carry=[".whl"], kind="nvidia-h100-x2")
# Fetch the wheels here first (see benchmarks/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
# NVLink multicast stays off on shared hosts (the device tool's rule).
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi --query-gpu=index,name,memory.used,memory.total --format=csv
status=0
for proof in "${@:-gpu_proof.py}"; do
  python3 "benchmarks/gpu/$proof" || status=$?
done
exit $status
