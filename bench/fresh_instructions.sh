#!/usr/bin/env bash
# The verifier's own instructions per fresh token: callgrind counts
# examples/fresh_instructions.rs verifying distinct tokens (20 SMART scopes, token cache
# off), and the signature check (`jwt::decode_signature` and `jwt::verify_decoded_signature`:
# base64url-decoding the signature and the aws-lc verification, the crypto floor's work) is
# subtracted. Like
# bench/instructions.sh, the count does not move with the machine's load.
#
#   bash bench/fresh_instructions.sh            # EdDSA, 2,000 tokens
#   ALG=RS256 TOKENS=1000 bash bench/fresh_instructions.sh
#   CACHE_SIM=1 ALG=ES256 bash bench/fresh_instructions.sh
#
# CACHE_SIM=1 also simulates the caches (64 KiB 16-way L1i, 48 KiB 12-way L1d, 2 MiB L2 as
# the last level: this machine's per-core sizes) and prints the instruction-cache misses
# per token, the signature check's and the rest's. The verifier's code and the crypto
# library's do not fit in L1i together, so each token misses on both, where the floor's
# loop keeps the crypto code resident: a part of why `ours - floor` in `--bench fresh`
# differs between algorithms whose instruction counts are the same (BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

ALG=${ALG:-EdDSA}
TOKENS=${TOKENS:-2000}

# shellcheck source=bench/common.sh
. bench/common.sh
install_if_missing valgrind
echo "== building the example (release)"
cargo build --release --features testing --example fresh_instructions -j1 2>&1 | tail -1
bin="${CARGO_TARGET_DIR:-target}/release/examples/fresh_instructions"

out="$work/callgrind.out"
cache_options=()
if [ "${CACHE_SIM:-0}" = 1 ]; then
  cache_options=(--cache-sim=yes --I1=65536,16,64 --D1=49152,12,64 --LL=2097152,16,64)
fi
valgrind --tool=callgrind "${cache_options[@]}" --callgrind-out-file="$out" \
  --toggle-collect='fresh_instructions::verify_one' "$bin" "$ALG" "$TOKENS" 2>/dev/null
inclusive=$(callgrind_annotate --inclusive=yes --threshold=100 "$out" 2>/dev/null)
total=$(awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }' <<<"$inclusive")
signature=$(awk '/smart_auth::jwt::(decode_signature|verify_decoded_signature) / { gsub(",", "", $1); s += $1 } END { print s + 0 }' <<<"$inclusive")
awk -v t="$total" -v s="$signature" -v n="$TOKENS" -v alg="$ALG" 'BEGIN {
  printf "%s: %.0f instructions per fresh token, %.0f of them the signature check, %.0f the verifier'"'"'s own\n", alg, t / n, s / n, (t - s) / n
}'
if [ "${CACHE_SIM:-0}" = 1 ]; then
  misses=$(callgrind_annotate --inclusive=yes --show=I1mr --threshold=100 "$out" 2>/dev/null)
  total=$(awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }' <<<"$misses")
  signature=$(awk '/smart_auth::jwt::(decode_signature|verify_decoded_signature) / { gsub(",", "", $1); s += $1 } END { print s + 0 }' <<<"$misses")
  awk -v t="$total" -v s="$signature" -v n="$TOKENS" -v alg="$ALG" 'BEGIN {
    printf "%s: %.0f L1i misses per fresh token, %.0f of them in the signature check, %.0f in the verifier'"'"'s own code\n", alg, t / n, s / n, (t - s) / n
  }'
fi
