#!/usr/bin/env bash
# Measures what an operator feels of the daemon at rest: time from exec to
# /readyz 200, and resident memory after idling, with N watches, over RUNS
# runs; prints the medians. Usage: benches/startup.sh [BINARY] [WATCHES] [RUNS]
set -euo pipefail
bin=${1:-target/release/rollbackd}
watches=${2:-10}
runs=${3:-7}
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/watches.d"
cat > "$dir/rollbackd.toml" <<TOML
[daemon]
watches = ["watches.d"]
state_dir = "state"
listen = "127.0.0.1:0"
[defaults]
notify = ["audit"]
[notifiers.audit]
type = "webhook"
url = "http://127.0.0.1:9/audit"
[prometheus.default]
url = "http://127.0.0.1:9090"
TOML
for i in $(seq 1 "$watches"); do
  cat >> "$dir/watches.d/w.toml" <<TOML
[[watch]]
name = "w$i"
target = { kind = "deployment", namespace = "shop", name = "w$i" }
[[watch.health]]
url = "http://127.0.0.1:9/health"
[[watch.prometheus]]
name = "errors"
query = 'sum(rate(http_requests_total{deployment="w$i",status=~"5.."}[1m]))'
max = 0.05
TOML
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ready_ms=(); rss_kb=()
for _ in $(seq 1 "$runs"); do
  rm -rf "$dir/state" "$dir/log"
  start=$(date +%s%N)
  "$bin" run -c "$dir/rollbackd.toml" --log-format json 2> "$dir/log" &
  pid=$!
  port=""
  while [ -z "$port" ]; do
    port=$(grep -o '"addr":"127.0.0.1:[0-9]*"' "$dir/log" 2>/dev/null | grep -o '[0-9]*"$' | tr -d '"' || true)
  done
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ]; do :; done
  end=$(date +%s%N)
  ready_ms+=("$(( (end - start) / 1000 ))")
  sleep 2
  rss_kb+=("$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")")
  kill -TERM "$pid"; wait "$pid"
done
printf 'watches=%s runs=%s\n' "$watches" "$runs"
printf 'start to /readyz 200: median %s ms (all, us: %s)\n' \
  "$(printf '%s\n' "${ready_ms[@]}" | median | awk '{printf "%.1f", $1/1000}')" "${ready_ms[*]}"
printf 'idle RSS after 2 s: median %s MiB (all, KiB: %s)\n' \
  "$(printf '%s\n' "${rss_kb[@]}" | median | awk '{printf "%.1f", $1/1024}')" "${rss_kb[*]}"
