#!/usr/bin/env bash
# The GPU checks, as one command for a machine with a CUDA device (the `device` tool runs it in
# a copy of the working tree): the GPU-marked tests (CUDA forecasts equal to CPU within 1e-4,
# TorchServe giving each worker a GPU) and the GPU benchmark (batch-1 latency, batch-256
# throughput, CUDA-graph replay). Results go to $OUT (default gpu-results/).
#
#   scripts/gpu_check.sh                  # .venv/bin/python, set up by scripts/setup_env.sh
#   ALM_GPU_PYTHON=/path/python scripts/gpu_check.sh   # an interpreter whose torch has CUDA
set -euo pipefail
cd "$(dirname "$0")/.."
python=${ALM_GPU_PYTHON:-.venv/bin/python}
out=${OUT:-gpu-results}
mkdir -p "$out"
if ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "error: $python's torch has no CUDA device (torch $("$python" -c 'import torch; print(torch.__version__)'))" >&2
    exit 2
fi
nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
status=0
"$python" -m pytest -m gpu tests/test_gpu.py -rs -p no:cacheprovider 2>&1 | tee "$out/gpu-tests.txt" || status=1
"$python" scripts/bench_gpu.py --json "$out/gpu-bench.json" 2>&1 | tee "$out/gpu-bench.txt" || status=1
exit "$status"
