#!/usr/bin/env bash
# Reproduce the spike's figures: 3 runs x sizes x candidates, then medians.
# usage: bash run.sh [sizes...]   (default: 0 100000 1000000)
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/root/.cache/ehrchain/target-spike}
cargo build --release
BIN=$CARGO_TARGET_DIR/release/state-store-spike
DATA=${DATA:-/root/.cache/ehrchain/spike-data}
RUNS=${RUNS:-3}
BLOCKS=${BLOCKS:-40}
CANDIDATES=${CANDIDATES:-"qmdb jmt"}
SIZES=${*:-0 100000 1000000}
OUT=${OUT:-results.log}
mkdir -p "$DATA"
for size in $SIZES; do
  for run in $(seq 1 "$RUNS"); do
    for c in $CANDIDATES; do
      dir=$DATA/$c-$size
      echo "# $c size=$size run=$run" | tee -a "$OUT"
      "$BIN" prefill "$c" "$dir" "$size" | tee -a "$OUT"
      "$BIN" bench "$c" "$dir" "$BLOCKS" | tee -a "$OUT"
      rm -rf "$dir"
    done
  done
done
python3 aggregate.py "$OUT"
