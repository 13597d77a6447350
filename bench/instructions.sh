#!/usr/bin/env bash
# Instructions per request: the same server as bench/load.sh, run under valgrind's
# callgrind, which counts the user-space instructions the server executes. Unlike
# throughput, the count does not depend on what else the machine is doing, so it shows
# the layer's own cost exactly, run after run.
#
#   bash bench/instructions.sh
#
# For each variant: reset the counters, send requests over one keep-alive connection with
# wrk for RUN_SECONDS (default 4), dump the counters, and divide by the number of requests wrk
# completed. That is done ROUNDS times (default 3), the order of the variants reversed every
# other round, and each variant's median is reported: a single run of the same binary now
# and then counts about 150 instructions per request more than the others (in the runtime
# and the allocator, for every variant alike), which one run would pass on to the
# differences. PROFILE_DIR=dir keeps each variant's callgrind profile of the last round there
# (for callgrind_annotate). The kernel's share (the loopback TCP stack, the same for every variant) is not
# counted. Installs wrk and valgrind with apt-get if they are missing; talks only to
# 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_SECONDS=${RUN_SECONDS:-4}
ROUNDS=${ROUNDS:-3}

# shellcheck source=bench/common.sh
. bench/common.sh
install_if_missing wrk
install_if_missing valgrind
build_load_server

echo "== starting the server under callgrind"
valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" "$server_bin" \
  >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
wait_until_ready
token=$(value TOKEN)
bearer=(-H "Authorization: Bearer $token")

variants=(UNPROTECTED FORWARDING CACHED AROUND)

echo "== warm-up (not counted)"
for name in "${variants[@]}"; do
  wrk -t1 -c1 -d1s "${bearer[@]}" "$(value "$name")" >/dev/null
done

echo "== counting, ${RUN_SECONDS} s per variant, ${ROUNDS} rounds"
declare -A counts
dump=0
for round in $(seq 1 "$ROUNDS"); do
  order=("${variants[@]}")
  if [ $((round % 2)) -eq 0 ]; then
    order=()
    for ((i = ${#variants[@]} - 1; i >= 0; i--)); do order+=("${variants[i]}"); done
  fi
  echo " round $round"
  for name in "${order[@]}"; do
    callgrind_control --zero "$server_pid" >/dev/null 2>&1
    output=$(wrk -t1 -c1 -d"${RUN_SECONDS}s" "${bearer[@]}" "$(value "$name")")
    callgrind_control --dump="$name" "$server_pid" >/dev/null 2>&1
    dump=$((dump + 1))
    file="$work/callgrind.out.$dump"
    for _ in $(seq 1 100); do
      if [ -s "$file" ] && grep -q '^totals:' "$file"; then break; fi
      sleep 0.1
    done
    if echo "$output" | grep -q 'Non-2xx\|Socket errors'; then
      echo "$output" >&2
      echo "run $name had failed requests" >&2
      exit 1
    fi
    if [ -n "${PROFILE_DIR:-}" ]; then mkdir -p "$PROFILE_DIR" && cp "$file" "$PROFILE_DIR/$name.callgrind"; fi
    requests=$(echo "$output" | awk '/requests in/ { print $1 }')
    instructions=$(awk '/^totals:/ { print $2 }' "$file")
    per_request=$(awk -v i="$instructions" -v n="$requests" 'BEGIN { printf "%.0f", i / n }')
    counts[$name]="${counts[$name]:-} $per_request"
    printf '  %-12s %8s instructions/request (%s requests)\n' "$name" "$per_request" "$requests"
  done
done

# median VALUES...: the median (the lower middle one for an even count).
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
results=()
for name in "${variants[@]}"; do
  # shellcheck disable=SC2086 # the counts are a space-separated list of numbers
  results+=("$name $(median ${counts[$name]})")
done

echo
echo "| variant | instructions/request | over unprotected |"
echo "|---|---:|---:|"
base=$(echo "${results[0]}" | awk '{ print $2 }')
for row in "${results[@]}"; do
  read -r name per_request _ <<<"$row"
  case $name in
    UNPROTECTED) label="unprotected hello" ;;
    FORWARDING) label="forwarding layer (no auth)" ;;
    CACHED) label="protected, token cache (RS256)" ;;
    AROUND) label="same, layer around the router" ;;
  esac
  printf '| %s | %s | %+d |\n' "$label" "$per_request" $((per_request - base))
done

# The layer's own instructions for a cached token (issue 16's target: under 800).
#
# CACHED and FORWARDING are added to the same router the same way (`Router::layer`), so
# both pay what axum charges any per-route layer: boxing the layered route and cloning the
# boxed service for every request (about 850 instructions). FORWARDING's service only
# forwards `call` and returns the inner future unchanged, so it adds nothing of its own;
# CACHED - FORWARDING is therefore exactly the SmartAuthLayer's own work per request:
# finding the Bearer credential, the cache lookup and time checks, putting the claims
# into the request, its future and response glue. (UNPROTECTED is not the baseline for
# that: CACHED - UNPROTECTED also counts axum's per-route boxing, which any layer pays
# and which the layer cannot remove.) AROUND - UNPROTECTED (the layer around the whole
# router, no per-route boxing) is a second view of the same cost; it also includes what
# serving a wrapped service instead of a bare Router changes in axum, so the target is
# judged on CACHED - FORWARDING.
count_of() { for row in "${results[@]}"; do read -r n c _ <<<"$row"; if [ "$n" = "$1" ]; then echo "$c"; fi; done; }
own=$(($(count_of CACHED) - $(count_of FORWARDING)))
around_own=$(($(count_of AROUND) - $(count_of UNPROTECTED)))
echo
echo "layer's own instructions for a cached token = CACHED - FORWARDING = $own" \
  "(target < 800: $(if [ "$own" -lt 800 ]; then echo PASS; else echo FAIL; fi))"
echo "cross-check: AROUND - UNPROTECTED = $around_own (layer around the whole router)"
