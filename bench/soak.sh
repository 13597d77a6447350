#!/usr/bin/env bash
# Soak benchmark: the protected API at saturation for DURATION seconds while the service
# it depends on misbehaves on a schedule, with a mix of reused, fresh, expired and forged
# tokens, all on 127.0.0.1, driven by wrk (bench/soak.lua). The server is
# examples/soak_server.rs; it counts every answer per token class and per phase, and
# times each answer inside the server (around the auth layer).
#
#   bash bench/soak.sh                      # JWTs against a JWK Set
#   MODE=introspection bash bench/soak.sh   # opaque tokens by RFC 7662 introspection
#
# JWT mode, phases (DURATION split evenly): normal, rotate (new keys published beside the
# old), down (503), slow (3 x the fetch timeout), 500, garbage (a 200 that is not a key
# set), back up. Introspection mode: normal, down (503), slow, 500, garbage (a 200 that
# is not JSON), back up.
#
# Settings (environment): MODE (jwt), DURATION seconds (60), FETCH_TIMEOUT_MS (1000),
# CONNECTIONS (32), FRESH (300000): one-shot JWTs to mint, and a third as many signed by
# the rotated-in keys (introspection: twice as many fresh opaque tokens and as many
# forged ones); enough up to ~30000 req/s. SOAK_SERVER_THREADS server worker threads (1),
# PIN (1: server on CPU 0, wrk on CPU 1 with taskset when there are two CPUs or more),
# SOAK_LOG (the server's log filter, default warn) and SOAK_SERVER_LOG (a path to keep
# the server's log at; by default it is dropped).
#
# The run fails (exit 1) when an expired or forged token is answered 200 (a wrong
# accept); on a 5xx outside the documented cases; when the p99 latency while the
# authority is slow is not under the fetch timeout; when JWKS fetches exceed the bound
# the cooldowns set, or introspection calls to the failing endpoint exceed
# max_concurrent_calls per failure cooldown, or more run at once than max_concurrent_calls;
# when RSS changes by more than 10 % between the end of the first phase and the end of
# the run; or when the probe (a curl request with a reused token every 100 ms) gets
# anything but 200 (introspection: 200 or 503, see below).
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${MODE:-jwt}
DURATION=${DURATION:-60}
FETCH_TIMEOUT_MS=${FETCH_TIMEOUT_MS:-1000}
CONNECTIONS=${CONNECTIONS:-32}
FRESH=${FRESH:-300000}
export SOAK_SERVER_THREADS=${SOAK_SERVER_THREADS:-1}
PIN=${PIN:-1}
case $MODE in jwt | introspection) ;; *) echo "MODE must be jwt or introspection" >&2; exit 2 ;; esac

server_pin=()
wrk_pin=()
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
  server_pin=(taskset -c 0)
  wrk_pin=(taskset -c 1)
fi

# shellcheck source=bench/common.sh
. bench/common.sh
install_if_missing wrk
install_if_missing curl

echo "== building the server (release)"
cargo build --release --features testing,introspection --example soak_server -j1 2>&1 | tail -1
server_bin="${CARGO_TARGET_DIR:-target}/release/examples/soak_server"

echo "== starting the server ($MODE) and minting the tokens"
"${server_pin[@]}" "$server_bin" --mode "$MODE" --tokens-file "$work/tokens.txt" \
  --duration "$DURATION" --fetch-timeout-ms "$FETCH_TIMEOUT_MS" --fresh "$FRESH" \
  >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
wait_until_ready
api_url=$(value API)
control_url=$(value CONTROL)
read -r -a mix <<<"$(sed -n 's/^MIX //p' "$work/server.out")"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== $DURATION s at saturation: ${mix[*]}"
reused_token=$(awk '$1 == "reused" { print $2; exit }' "$work/tokens.txt")
curl -sf "$control_url/start" >/dev/null
# An independent client: one request with a reused token every 100 ms, timed by curl
# (connect included), to see what a legitimate client sees through the whole schedule.
probe_started=$(date +%s.%N)
(
  end=$(($(date +%s) + DURATION))
  while [ "$(date +%s)" -lt "$end" ]; do
    curl -s -o /dev/null -m 10 -w "$(date +%s.%N) %{time_total} %{http_code}\n" \
      -H "Authorization: Bearer $reused_token" "$api_url" || true
    sleep 0.1
  done
) >"$work/probe.txt" &
probe_pid=$!
# wrk stops by itself after DURATION; the outer timeout is a safety net.
timeout $((DURATION + 60)) "${wrk_pin[@]}" wrk --latency -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s \
  -s bench/soak.lua "$api_url" "$work/tokens.txt" "${mix[@]}" >"$work/wrk.out"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
wait "$probe_pid" || true
# The schedule ends DURATION after /start, just before wrk does; give it a moment.
for _ in $(seq 1 50); do
  curl -sf "$control_url/report" >"$work/report.md"
  if ! grep -q 'the schedule has not finished' "$work/report.md"; then break; fi
  sleep 0.2
done

sed -n "/Latency Distribution/,/requests in/p;/Socket errors/p;/Non-2xx/p;/Requests\/sec/p" "$work/wrk.out"
cp "$work/server.err" "${SOAK_SERVER_LOG:-/dev/null}" 2>/dev/null || true
grep -v '^PHASES ' "$work/report.md"
repeats=$(awk '$1 == "ONE_SHOT_REPEATS" { print $2 }' "$work/wrk.out")
echo
wrk_value() { awk -v name="$1" '$1 == name { print $2 }' "$work/wrk.out"; }
# Little's law: with CONNECTIONS requests at most in flight, the mean latency is at most
# CONNECTIONS / throughput. wrk's latency figures are shown only when they respect it.
little_ms=$(awk -v c="$CONNECTIONS" -v n="$(wrk_value WRK_REQUESTS)" -v s="$(wrk_value WRK_SECONDS)" \
  'BEGIN { printf "%.2f", c / (n / s) * 1000 }')
echo "- wrk's own latency figures (whole run): mean $(wrk_value WRK_MEAN_MS) ms, p99" \
  "$(wrk_value WRK_P99_MS) ms, max $(wrk_value WRK_MAX_MS) ms; Little's law allows a mean of at most" \
  "$little_ms ms ($CONNECTIONS connections at the measured rate): when wrk's mean is above that, its" \
  "latency figures are not consistent with its own request count and are not used (see BENCHMARKS.md, Soak)"
echo "- one-shot tokens sent again after their pool ran out: ${repeats:-0}"
echo "- settings: fetch timeout ${FETCH_TIMEOUT_MS} ms; wrk 1 thread, $CONNECTIONS connections;" \
  "server $SOAK_SERVER_THREADS worker thread(s); pinned: ${server_pin[*]:-no}${wrk_pin[*]:+ / ${wrk_pin[*]}}"
echo "- machine: $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo);" \
  "load average before $load_before, after $load_after"
# The probe's answers by phase: phase = (when - start) / (DURATION / phases).
phase_names=$(sed -n 's/^PHASES //p' "$work/report.md")
echo
echo "Probe (curl, reused token, one request every 100 ms, $(wc -l <"$work/probe.txt") requests):"
echo
echo "| phase | requests | not 200 | p99 ms | max ms |"
echo "|---|---|---|---|---|"
awk -v start="$probe_started" -v duration="$DURATION" -v names="$phase_names" '
  BEGIN { n = split(names, name, ","); length_s = duration / n }
  { p = int(($1 - start) / length_s) + 1; if (p > n) p = n
    count[p]++; if ($3 != 200) bad[p]++; t[p, count[p]] = $2 * 1000 }
  END {
    for (p = 1; p <= n; p++) {
      m = count[p]; for (i = 1; i <= m; i++) v[i] = t[p, i]
      # insertion sort: a few dozen values per phase
      for (i = 2; i <= m; i++) { x = v[i]; j = i - 1; while (j > 0 && v[j] > x) { v[j + 1] = v[j]; j-- } v[j + 1] = x }
      r = int(m * 0.99 + 0.999); if (r < 1) r = 1
      printf "| %s | %d | %d | %.1f | %.1f |\n", name[p], m, bad[p] + 0, (m ? v[r] : 0), (m ? v[m] : 0)
    }
  }' "$work/probe.txt"
# JWT: a valid token is always answered 200. Introspection: a cached answer serves for
# its TTL (60 s); in an outage longer than that, 503 is the documented answer.
allowed=200
if [ "$MODE" = introspection ]; then allowed="200|503"; fi
if awk -v allowed="^($allowed)$" '$3 !~ allowed { bad = 1 } END { exit !bad }' "$work/probe.txt"; then
  echo "CHECK FAIL the probe's reused token was answered outside $allowed" >&2
  failed=1
fi
if [ "${repeats:-0}" -gt 0 ]; then
  echo "note: raise FRESH: $repeats one-shot tokens were sent a second time" >&2
fi
if grep -q '^VERDICT PASS' "$work/report.md" && [ -z "${failed:-}" ]; then
  echo "soak ($MODE): PASS"
else
  echo "soak ($MODE): FAIL" >&2
  exit 1
fi
