#!/usr/bin/env bash
# make gpu-check: every GPU path in one table (src/orchestrator/gpu_check.py, docs/engines.md).
# Runs from the source tree with the first Python here that imports torch (GPU_CHECK_PYTHON first).
cd "$(dirname "$0")/.." || exit 2
for py in ${GPU_CHECK_PYTHON:-} .venv/bin/python python3 python; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c "import torch" >/dev/null 2>&1; then
        PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" exec "$py" -m orchestrator.gpu_check
    fi
done
echo "gpu-check: no GPU here (no Python with torch found; set GPU_CHECK_PYTHON); nothing checked"
exit 2
