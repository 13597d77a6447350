# Shared by bench/load.sh and bench/instructions.sh: installing tools, building and
# starting examples/load_server.rs, reading what it prints. Sourced, not run.

# install_if_missing TOOL [PACKAGE]: installs PACKAGE (default TOOL) with apt-get when
# TOOL is not on the PATH.
install_if_missing() {
  local tool=$1 package=${2:-$1}
  if command -v "$tool" >/dev/null 2>&1; then return; fi
  echo "== installing $package"
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$tool is not installed and apt-get is not available: install $package and rerun" >&2
    exit 1
  fi
  local sudo_cmd=""
  if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get install -y "$package" >/dev/null 2>&1 \
    || { $sudo_cmd apt-get update >/dev/null && $sudo_cmd apt-get install -y "$package" >/dev/null; }
}

# build_load_server: builds the example in release mode and sets $server_bin.
# LOAD_SERVER_FEATURES (default `testing`) picks the crate features, e.g. `testing,metrics`
# for the cost of the metrics feature (the server then installs a Prometheus recorder).
build_load_server() {
  echo "== building the server (release, features ${LOAD_SERVER_FEATURES:-testing})"
  cargo build --release --features "${LOAD_SERVER_FEATURES:-testing}" --example load_server -j1 2>&1 | tail -1
  server_bin="${CARGO_TARGET_DIR:-target}/release/examples/load_server"
}

# A scratch directory, and the server (once started) killed on exit.
work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# wait_until_ready: waits for the server started as $server_pid to print READY into
# $work/server.out (up to 5 min: under valgrind it starts slowly, and minting tens of
# thousands of RSA-signed tokens takes a minute or so).
wait_until_ready() {
  for _ in $(seq 1 3000); do
    if grep -q '^READY' "$work/server.out"; then return; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
      if [ -s "$work/server.err" ]; then cat "$work/server.err" >&2; fi
      echo "the server exited" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "the server did not start" >&2
  exit 1
}

# value NAME: what the server printed after NAME (a URL, the token).
value() { awk -v name="$1" '$1 == name { print $2 }' "$work/server.out"; }
