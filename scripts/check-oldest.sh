#!/usr/bin/env bash
# scripts/check-latest.sh with transformers at the oldest release pyproject.toml accepts
# ("transformers>=X" -> transformers==X; X.Y is read as X.Y.0), everything else newest.
#   bash scripts/check-oldest.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
min="$(sed -nE 's/^[[:space:]]*"transformers>=([0-9][0-9.]*)[,"].*/\1/p' pyproject.toml | head -n1)"
if [ -z "$min" ]; then echo "check-oldest: no \"transformers>=X\" in pyproject.toml" >&2; exit 2; fi
EXTRA_REQUIREMENTS="transformers==$min ${EXTRA_REQUIREMENTS:-}" exec bash scripts/check-latest.sh "$@"
