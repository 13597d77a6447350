#!/usr/bin/env bash
# Coverage-guided fuzzing of smart-auth's parsers with cargo-afl (AFL++), on stable Rust.
#
#   fuzz/run.sh TARGET SECONDS   run one target for SECONDS
#   fuzz/run.sh all SECONDS      run every target for SECONDS each, one after the other
#   fuzz/run.sh list             print the targets
#
# Installs what it needs (a C toolchain, cargo-afl, AFL++ built from cargo-afl's sources),
# builds the instrumented targets, then runs afl-fuzz with the committed seeds in
# fuzz/seeds/TARGET. Findings go to fuzz/out/TARGET (not committed); the run resumes when
# that directory exists. Each run ends with one summary line read from AFL's statistics.
# A crash (an input that panics, i.e. breaks an invariant) or a hang (an input slower than
# the per-input timeout, 200 ms) makes the script exit 1.
set -euo pipefail
cd "$(dirname "$0")"

TARGETS=(authorization token claims jwks scopes fhir_request enforce_request introspection_answer discovery dev_server_request)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

usage() { echo "usage: $0 TARGET|all SECONDS   (targets: ${TARGETS[*]})" >&2; exit 2; }

install() {
    if ! command -v cc >/dev/null || ! command -v make >/dev/null; then
        apt-get update && apt-get install -y build-essential
    fi
    if ! cargo afl --version >/dev/null 2>&1; then
        cargo install cargo-afl --locked
    fi
    # Builds AFL++ once per rustc version; says so (and fails) when it is already built.
    local help
    help=$(cargo afl fuzz -h 2>&1 || true)
    if [[ $help != *afl-fuzz* ]]; then
        cargo afl config --build
    fi
}

build() {
    cargo afl build --release --bins
}

summary() {
    local target=$1 stats="out/$1/default/fuzzer_stats"
    awk -F' *: *' -v t="$target" '
        { s[$1] = $2 }
        END { printf "%s: run_time=%ss execs_done=%s execs_per_sec=%s corpus_count=%s saved_crashes=%s saved_hangs=%s\n",
              t, s["run_time"], s["execs_done"], s["execs_per_sec"], s["corpus_count"], s["saved_crashes"], s["saved_hangs"] }' "$stats"
    awk -F' *: *' '$1 == "saved_crashes" || $1 == "saved_hangs" { bad += $2 } END { exit bad > 0 }' "$stats"
}

run() {
    local target=$1 seconds=$2
    [[ " ${TARGETS[*]} " == *" $target "* ]] || usage
    mkdir -p out
    AFL_NO_UI=1 AFL_AUTORESUME=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
        AFL_NO_AFFINITY=1 cargo afl fuzz -V "$seconds" -t 200 -i "seeds/$target" -o "out/$target" \
        "$CARGO_TARGET_DIR/release/$target" > "out/$target.log" 2>&1
    summary "$target"
}

case "${1:-}" in
    list) printf '%s\n' "${TARGETS[@]}"; exit 0 ;;
    "") usage ;;
esac
[[ $# -eq 2 && "$2" =~ ^[0-9]+$ ]] || usage
install
build
status=0
if [[ $1 == all ]]; then
    for target in "${TARGETS[@]}"; do run "$target" "$2" || status=1; done
else
    run "$1" "$2" || status=1
fi
exit $status
