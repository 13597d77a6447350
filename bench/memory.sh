#!/usr/bin/env bash
# Memory per cached token (issue 16's target: at most 1 KB at 10,000 tokens, as RSS growth).
#
#   bash bench/memory.sh
#
# Builds examples/cache_memory.rs in release mode and runs it (a few seconds, plus the
# first release build): it mints the tokens first, reads VmRSS, verifies each token twice
# (a token is stored on its second verification) until the cache holds all of them (the
# cache's capacity is TOKENS + 10%: a sharded store of exactly TOKENS entries holds a
# little less than TOKENS distinct tokens), reads
# VmRSS again and prints the growth per cached token with PASS/FAIL. Talks only to
# 127.0.0.1.
#
# Settings (environment): TOKENS (10000), ALG (ES256), TWENTY_SCOPES (0; 1: tokens with
# 20 SMART scopes, patient and fhirUser), RUNS (3: separate processes, each printed; RSS
# moves by a few pages from one process to the next).
set -euo pipefail
cd "$(dirname "$0")/.."

TOKENS=${TOKENS:-10000}
ALG=${ALG:-ES256}
TWENTY_SCOPES=${TWENTY_SCOPES:-0}
RUNS=${RUNS:-3}

echo "== building the example (release)"
cargo build --release --features testing --example cache_memory -j1 2>&1 | tail -1
bin="${CARGO_TARGET_DIR:-target}/release/examples/cache_memory"

args=(--tokens "$TOKENS" --alg "$ALG")
if [ "$TWENTY_SCOPES" = 1 ]; then args+=(--twenty-scopes); fi
for run in $(seq 1 "$RUNS"); do
  echo "== run $run of $RUNS"
  "$bin" "${args[@]}"
done
