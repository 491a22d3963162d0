#!/usr/bin/env bash
# ADR 0008's follow-up: can JMT over redb get a 2,000-change block at 1 M entries under ~100 ms?
# Runs the jmt candidate at one size under each knob combination (see src/jmt_store.rs) and
# prints the lines to results-followup.log.  usage: bash followup.sh [entries] [runs]
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/root/.cache/ehrchain/target-spike}
cargo build --release -q
BIN=$CARGO_TARGET_DIR/release/state-store-spike
DATA=${DATA:-/root/.cache/ehrchain/spike-data}
N=${1:-1000000}
RUNS=${2:-1}
OUT=${OUT:-results-followup.log}
mkdir -p "$DATA"
configs=(
  "base:"
  "be-keys:JMT_KEY=be"
  "be+defer:JMT_KEY=be JMT_DEFER_STALE=1"
  "be+defer+512MiB:JMT_KEY=be JMT_DEFER_STALE=1 JMT_CACHE_MIB=512"
  "be+defer+512MiB+nofsync:JMT_KEY=be JMT_DEFER_STALE=1 JMT_CACHE_MIB=512 JMT_DURABILITY=none"
)
for run in $(seq 1 "$RUNS"); do
  for c in "${configs[@]}"; do
    name=${c%%:*}; envs=${c#*:}
    dir=$DATA/jmt-followup
    echo "# config=$name size=$N run=$run" | tee -a "$OUT"
    env $envs "$BIN" prefill jmt "$dir" "$N" | tee -a "$OUT"
    env $envs "$BIN" bench jmt "$dir" 40 | tee -a "$OUT"
    rm -rf "$dir"
  done
done
