#!/usr/bin/env bash
# Load benchmark: the same hello handler unprotected, behind a layer that only forwards,
# behind SmartAuthLayer with the token cache (per route with Router::layer, and around the
# whole router), and behind it with the cache off, all on 127.0.0.1, driven by wrk.
#
#   bash bench/load.sh
#
# Settings (environment): VARIANTS, the same-token variants to run (default all five:
# "unprotected cached around forwarding uncached"; unprotected is always run, as the
# baseline), DURATION seconds per run (2), ROUNDS (12), CONNECTIONS (32),
# WRK_THREADS (1), DISTINCT_ROUNDS (4), DISTINCT number of distinct tokens minted for the
# distinct-token runs (60000 for RSA algorithms, whose signing is slow: about 40 s on two
# CPUs; 120000 otherwise), DISTINCT_ALG their algorithm (RS256, issue 16's target;
# ES256 gives the distinct-token rows of BENCHMARKS.md before issue 16), COMPARE (1: the
# distinct-token rounds also run the two comparison servers, jwt-authorizer 0.15 and a
# bare jsonwebtoken decode per request, and print ours over each; 0: ours only),
# TWICE_DURATION seconds of the each-token-twice run (6, long enough to fill the cache),
# LOAD_SERVER_THREADS server worker threads (1), PIN (1: with two or more CPUs, run the
# server on CPU 0 and wrk on CPU 1 with taskset; 0: let the scheduler place them).
#
# Pinning matters on a small machine: left to the scheduler, the server and wrk sometimes
# share one CPU and sometimes not, and a run's throughput then jumps by a quarter for
# reasons that have nothing to do with the variant being measured.
#
# Same-token runs are interleaved so that drift on a shared machine hits every variant
# alike: each round runs every variant twice, in mirrored order (unprotected, cached,
# around, forwarding, uncached, then the same backwards), so a speed change that drifts
# steadily through a round cancels out of the round's ratios. The table shows medians over
# the runs, the ratio to the unprotected runs of the same round (summed throughput of the
# two runs, median over rounds), and server CPU per request measured from /proc/<pid>/stat
# around each run: user + system, and user alone (the layer's own work is user time;
# system time is the loopback TCP stack and varies with scheduling).
#
# Distinct-token runs send every request a token the server has not seen, so nothing is
# answered from the cache (and, since a token is stored only when it verifies a second
# time, nothing is stored): they show the cost of a token seen for the first time. A last
# run sends every token twice in a row, so that each is stored and the cache fills up and
# evicts: it shows that memory stays bounded at the cache's capacity. Each cached run
# starts in the token file where the previous cached run stopped, so no token repeats
# (the runs without a cache start where the cached run of their round did: they keep
# nothing, so repeats would not matter to them). When the cached runs send more tokens
# than were minted, they go round the file again and a note says so: a token met again
# after N others is one the cache has most likely forgotten having seen (it notes tokens
# seen once in a table of 10,000 slots, so it remembers one with probability about
# e^(-N/10000), 0.25 % at N = 60,000), so it is still treated as new (a miss, not stored).
#
# Issue 16's comparison (COMPARE=1, the default): in the same distinct-token rounds, the
# same handler behind jwt-authorizer 0.15 and behind a bare jsonwebtoken decode per request
# (examples/load_server.rs: JWT_AUTHORIZER, BARE_JWT; neither caches). The order of the
# four variants is reversed every other round, and each ratio (ours over a comparison
# server) is taken within a round, then the median over rounds. Targets: ours at least
# 1.8x jwt-authorizer and 1.3x the bare decode, RS256. For figures to report, use more
# rounds: DISTINCT_ROUNDS=10 (about 80 s more). Adds about 16 s at the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-2}
ROUNDS=${ROUNDS:-12}
CONNECTIONS=${CONNECTIONS:-32}
WRK_THREADS=${WRK_THREADS:-1}
DISTINCT_ROUNDS=${DISTINCT_ROUNDS:-4}
DISTINCT_ALG=${DISTINCT_ALG:-RS256}
case $DISTINCT_ALG in
  RS* | PS*) DISTINCT=${DISTINCT:-60000} ;;
  *) DISTINCT=${DISTINCT:-120000} ;;
esac
COMPARE=${COMPARE:-1}
TWICE_DURATION=${TWICE_DURATION:-6}
export LOAD_SERVER_THREADS=${LOAD_SERVER_THREADS:-1}
PIN=${PIN:-1}
read -r -a variants <<<"${VARIANTS:-unprotected cached around forwarding uncached}"
if [[ " ${variants[*]} " != *" unprotected "* ]]; then variants=(unprotected "${variants[@]}"); fi
mirrored=("${variants[@]}")
for ((i = ${#variants[@]} - 1; i >= 0; i--)); do mirrored+=("${variants[i]}"); done

server_pin=()
wrk_pin=()
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
  server_pin=(taskset -c 0)
  wrk_pin=(taskset -c 1)
fi

# shellcheck source=bench/common.sh
. bench/common.sh
install_if_missing wrk
build_load_server

echo "== starting the server and minting $DISTINCT distinct $DISTINCT_ALG tokens"
# Started unpinned so that it mints the tokens on every CPU, pinned (all its threads) once
# it is ready.
"$server_bin" --tokens-file "$work/tokens.txt" --distinct-tokens "$DISTINCT" \
  --distinct-alg "$DISTINCT_ALG" >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
wait_until_ready
if [ ${#server_pin[@]} -gt 0 ]; then taskset -a -p -c 0 "$server_pid" >/dev/null; fi
unprotected_url=$(value UNPROTECTED)
forwarding_url=$(value FORWARDING)
cached_url=$(value CACHED)
around_url=$(value AROUND)
uncached_url=$(value UNCACHED)
jwt_authorizer_url=$(value JWT_AUTHORIZER)
bare_jwt_url=$(value BARE_JWT)
stats_url=$(value STATS)
token=$(value TOKEN)

ticks_per_second=$(getconf CLK_TCK)
# utime + stime of the server, in clock ticks (fields 14 and 15 of /proc/<pid>/stat; the
# command name, field 2, has no spaces here).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }
user_ticks() { awk '{ print $14 }' "/proc/$server_pid/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status"; }
cached_tokens() { curl -s "$stats_url" | awk '{ print $2 }'; }

# run NAME URL [wrk options...] [-- script arguments...]: one timed run; appends
# "name rps cpu_us_per_request requests user_us_per_request round" to $work/results.
round=0
run() {
  local name=$1 url=$2
  shift 2
  local options=() script_args=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do options+=("$1"); shift; done
  if [ $# -gt 0 ]; then shift; script_args=("$@"); fi
  local before after user_before user_after output requests rps errors cpu_us user_us
  before=$(cpu_ticks)
  user_before=$(user_ticks)
  # wrk hands the arguments after the URL to the script's init().
  output=$("${wrk_pin[@]}" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "${options[@]}" "$url" "${script_args[@]}")
  after=$(cpu_ticks)
  user_after=$(user_ticks)
  requests=$(echo "$output" | awk '/requests in/ { print $1 }')
  rps=$(echo "$output" | awk '/^Requests\/sec:/ { print $2 }')
  errors=$(echo "$output" | awk '/Non-2xx or 3xx responses:/ { print $5 }')
  if [ -n "$errors" ] || echo "$output" | grep -q 'Socket errors'; then
    echo "$output" >&2
    echo "run $name had failed requests" >&2
    exit 1
  fi
  per_request() { awk -v t="$1" -v hz="$ticks_per_second" -v n="$requests" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }'; }
  cpu_us=$(per_request $((after - before)))
  user_us=$(per_request $((user_after - user_before)))
  echo "$name $rps $cpu_us $requests $user_us $round" >>"$work/results"
  printf '  %-22s %10s req/s  %6s us CPU/request (%5s user)  (%s requests)\n' \
    "$name" "$rps" "$cpu_us" "$user_us" "$requests"
}

middle() { # the median of the numbers on stdin
  sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
median() { # median of column $2 for rows named $1
  awk -v name="$1" -v col="$2" '$1 == name { print $col }' "$work/results" | middle
}
paired_ratio() { # median over rounds of (throughput of $1) / (throughput of ${2:-unprotected}, same round)
  per_round_ratios "$1" "${2:-unprotected}" | middle
}
per_round_ratios() { # (throughput of $1) / (throughput of $2), one line per round
  awk -v name="$1" -v base_name="$2" '$1 == base_name { base[$6] += $2 } $1 == name { rps[$6] += $2 }
    END { for (r in rps) if (r in base) printf "%.3f\n", rps[r] / base[r] }' "$work/results"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
bearer=(-H "Authorization: Bearer $token")
echo "== warm-up (1 s each, not counted)"
for url in "$unprotected_url" "$forwarding_url" "$cached_url" "$around_url" "$uncached_url"; do
  "${wrk_pin[@]}" wrk -t1 -c"$CONNECTIONS" -d1s "${bearer[@]}" "$url" >/dev/null
done
if [ "$COMPARE" = 1 ]; then
  # jwt-authorizer fetches its key set on its first request. Neither server caches
  # tokens, so these do not spoil the token file for the cached runs.
  for url in "$jwt_authorizer_url" "$bare_jwt_url"; do
    "${wrk_pin[@]}" wrk -t1 -c"$CONNECTIONS" -d1s -s bench/distinct.lua "$url" "$work/tokens.txt" 0 >/dev/null
  done
fi

url_of() {
  case $1 in
    unprotected) echo "$unprotected_url" ;;
    cached) echo "$cached_url" ;;
    around) echo "$around_url" ;;
    forwarding) echo "$forwarding_url" ;;
    uncached) echo "$uncached_url" ;;
  esac
}
echo "== same token, $ROUNDS mirrored rounds, ${DURATION} s per run"
for round in $(seq 1 "$ROUNDS"); do
  echo " round $round"
  for name in "${mirrored[@]}"; do
    run "$name" "$(url_of "$name")" "${bearer[@]}"
  done
done

distinct_variants=(distinct_cached distinct_uncached)
if [ "$COMPARE" = 1 ]; then distinct_variants+=(jwt_authorizer bare_jwt); fi
echo "== distinct $DISTINCT_ALG tokens (each request a token not seen before), $DISTINCT_ROUNDS rounds of ${DURATION} s"
rss_start=$(rss_kib)
# Where the next cached run starts in the token file: after every token a cached run sent.
offset=0
requests_of_last_run() { tail -1 "$work/results" | awk '{ print $4 }'; }
for round in $(seq 1 "$DISTINCT_ROUNDS"); do
  echo " round $round"
  order=("${distinct_variants[@]}")
  if ((round % 2 == 0)); then
    order=()
    for ((i = ${#distinct_variants[@]} - 1; i >= 0; i--)); do order+=("${distinct_variants[i]}"); done
  fi
  start=$offset
  for name in "${order[@]}"; do
    case $name in
      distinct_cached)
        run distinct_cached "$cached_url" -s bench/distinct.lua -- "$work/tokens.txt" "$start"
        offset=$((start + $(requests_of_last_run)))
        ;;
      # No cache in these, so repeats would not matter; the cached run's tokens keep the
      # runs alike.
      distinct_uncached) run distinct_uncached "$uncached_url" -s bench/distinct.lua -- "$work/tokens.txt" "$start" ;;
      jwt_authorizer) run jwt_authorizer "$jwt_authorizer_url" -s bench/distinct.lua -- "$work/tokens.txt" "$start" ;;
      bare_jwt) run bare_jwt "$bare_jwt_url" -s bench/distinct.lua -- "$work/tokens.txt" "$start" ;;
    esac
  done
done
rss_distinct=$(rss_kib)
held_distinct=$(cached_tokens)
echo " each token twice in a row (cache on)"
DURATION=$TWICE_DURATION run twice_cached "$cached_url" -s bench/distinct.lua -- "$work/tokens.txt" "$offset" 2
offset=$((offset + ($(requests_of_last_run) + 1) / 2))
rss_end=$(rss_kib)
held=$(cached_tokens)
if [ "$offset" -gt "$DISTINCT" ]; then
  echo "  note: the cached runs sent $offset tokens of the $DISTINCT minted, going round the file;" \
    "each repeat came after $DISTINCT others (see the top of this script; raise DISTINCT to avoid it)" >&2
fi

base=$(median unprotected 2)
echo
echo "== results: medians over the rounds"
echo "   ratio: throughput / unprotected throughput, taken per round and then the median"
echo "   (distinct-token runs: against the unprotected median)"
printf '| %-40s | %9s | %6s | %14s | %14s |\n' "variant" "req/s" "ratio" "CPU us/req" "user us/req"
printf '|%s|%s|%s|%s|%s|\n' "------------------------------------------" "-----------" "--------" \
  "----------------" "----------------"
for name in unprotected forwarding cached around uncached distinct_cached distinct_uncached jwt_authorizer \
  bare_jwt twice_cached; do
  if ! grep -q "^$name " "$work/results"; then continue; fi
  rps=$(median "$name" 2)
  case $name in
    distinct_* | twice_* | jwt_authorizer | bare_jwt) ratio=$(awk -v a="$rps" -v b="$base" 'BEGIN { printf "%.3f", a / b }') ;;
    *) ratio=$(paired_ratio "$name") ;;
  esac
  case $name in
    unprotected) label="unprotected hello" ;;
    forwarding) label="forwarding layer (no auth)" ;;
    cached) label="protected, token cache (RS256)" ;;
    around) label="same, layer around the router" ;;
    uncached) label="protected, no cache (RS256)" ;;
    distinct_cached) label="distinct tokens, cache on ($DISTINCT_ALG)" ;;
    distinct_uncached) label="distinct tokens, no cache ($DISTINCT_ALG)" ;;
    jwt_authorizer) label="distinct, jwt-authorizer 0.15 ($DISTINCT_ALG)" ;;
    bare_jwt) label="distinct, bare jsonwebtoken ($DISTINCT_ALG)" ;;
    twice_cached) label="each token twice, cache on ($DISTINCT_ALG)" ;;
  esac
  printf '| %-40s | %9.0f | %6s | %14.1f | %14.1f |\n' "$label" "$rps" "$ratio" "$(median "$name" 3)" \
    "$(median "$name" 5)"
done
if [ "$COMPARE" = 1 ]; then
  echo
  echo "== issue 16, distinct $DISTINCT_ALG tokens: ours over the comparison servers (per-round ratios," \
    "median over $DISTINCT_ROUNDS rounds)"
  printf '| %-44s | %6s | %13s | %6s | %6s |\n' "ratio" "median" "min .. max" "target" "result"
  printf '|%s|%s|%s|%s|%s|\n' "----------------------------------------------" "--------" \
    "---------------" "--------" "--------"
  for pair in "distinct_uncached jwt_authorizer 1.8" "distinct_uncached bare_jwt 1.3" \
    "distinct_cached jwt_authorizer 1.8" "distinct_cached bare_jwt 1.3"; do
    read -r ours other target <<<"$pair"
    ratio=$(paired_ratio "$ours" "$other")
    range=$(per_round_ratios "$ours" "$other" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s .. %s", lo, hi }')
    result=$(awk -v r="$ratio" -v t="$target" 'BEGIN { print (r >= t ? "PASS" : "FAIL") }')
    printf '| %-44s | %6s | %13s | %6s | %6s |\n' "$ours / $other" "$ratio" "$range" ">= $target" "$result"
  done
  echo "(distinct_uncached: ours with .no_token_cache(); distinct_cached: ours as configured by"
  echo " default, token cache on, every token a miss. Ratios of requests/s, so higher is better.)"
fi
echo
echo "server RSS: ${rss_start} KiB before the distinct-token runs, ${rss_distinct} KiB after them" \
  "(cache: ${held_distinct} tokens); ${rss_end} KiB after the each-token-twice run (cache: ${held}" \
  "tokens, capacity 10000)"
echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)," \
  "load average before the runs: $load_before"
echo "wrk: $WRK_THREADS thread(s), $CONNECTIONS connections; server: $LOAD_SERVER_THREADS worker thread(s);" \
  "pinned: ${server_pin[*]:-no}${wrk_pin[*]:+ / ${wrk_pin[*]}}"
