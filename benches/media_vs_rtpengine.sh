#!/usr/bin/env bash
# trunkgate's media engine against rtpengine on the same machine and the same load: N calls of
# G.711 (20 ms PCMU, 172-byte RTP, 50 packets/s each way per call), one after the other:
#   1. trunkgate (release build) bridging N PBX calls of plain RTP, set up through SIP with digest
#      auth, to WebRTC (ICE, DTLS-SRTP) calls answered by the carrier simulator (`trunkgate sim`)
#      in echo mode; load, measurement and hang-up by benches/media/tg_load.py;
#   2. rtpengine (Debian rtpengine-daemon, userspace) bridging N calls RTP <-> SDES-SRTP, driven by
#      the baseline's own bench.py (RTPENGINE_BENCH_DIR, see its README.md and RESULTS.md).
# Reports µs of CPU per relayed packet for each (both directions counted), their ratio, loss,
# trunkgate's RSS per call and the echo round trip through trunkgate (p50/p99).
#
# Usage: benches/media_vs_rtpengine.sh N RTPENGINE_BENCH_DIR
#   RTPENGINE_BENCH_DIR: the rtpengine baseline (e.g. /path/to/rtpengine-baseline); not needed with
#   ONLY=trunkgate.
# Environment: DURATION (media seconds, default 20), RATE (call set-ups/s, default 100),
#   TRUNKGATE_BIN (default: $CARGO_TARGET_DIR or ./target, release/trunkgate),
#   OUT (append both JSON results to this file), ONLY=trunkgate|rtpengine (run one side),
#   BATCH_WINDOW (trunkgate's [media] batch_window, default 500us), SIM_BATCH_WINDOW (the simulator's,
#   default 0s: it echoes at once, so the round trip is trunkgate's two passes and a prompt echo),
#   PIN=1 (the relay alone on CPU 1, its far end and the generator on CPU 0; bench.py --pin),
#   QUIET_MAX / QUIET_WAIT (before each side, wait up to QUIET_WAIT s, default 900, until the
#   machine is at most QUIET_MAX % busy, default 10), OTHERS_MAX / TRIES (measure a side again,
#   up to TRIES times in all, default 3, when other processes took more than OTHERS_MAX % of a
#   core, default 30, during its window: a build running alongside is not the relay's load).
# Needs root (rtpengine's install, 32 MiB generator socket buffers), python3, a release build.
# Everything stays on 127.0.0.1, every step is bounded in time, and it cleans up what it started.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
calls=${1:?usage: $0 N RTPENGINE_BENCH_DIR   (ONLY=trunkgate: N alone)}
only=${ONLY:-}
rdir=""
if [ "$only" != trunkgate ]; then
    # the rtpengine baseline (bench.py, install.sh, its config) lives outside this repository
    rdir=$(cd "${2:?usage: $0 N RTPENGINE_BENCH_DIR (e.g. /path/to/rtpengine-baseline)}" && pwd)
fi
duration=${DURATION:-20}
rate=${RATE:-100}
relay_cpu=() far_cpu=() pin_flag=()
if [ -n "${PIN:-}" ]; then relay_cpu=(taskset -c 1) far_cpu=(taskset -c 0) pin_flag=(--pin); fi
bin=${TRUNKGATE_BIN:-${CARGO_TARGET_DIR:-$here/target}/release/trunkgate}
[ -x "$bin" ] || { echo "no release build at $bin: cargo build --release (or set TRUNKGATE_BIN)" >&2; exit 2; }
[ -z "$rdir" ] || [ -f "$rdir/bench.py" ] || { echo "no bench.py in $rdir" >&2; exit 2; }
case "$calls" in '' | *[!0-9]*) echo "N must be a number" >&2; exit 2 ;; esac
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
busy_pct() { # share of both cores busy over 2 s (/proc/stat)
    local a b
    a=$(head -1 /proc/stat); sleep 2; b=$(head -1 /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x); split(b, y); t = 0; i = 0
        for (k = 2; k <= 9; k++) { t += y[k] - x[k]; if (k == 5 || k == 6) i += y[k] - x[k] }
        printf "%d", (t > 0 ? 100 * (t - i) / t : 0) }'
}
quiet() { # waits (at most QUIET_WAIT s) until nothing else keeps the machine busy: a build
          # running alongside would be measured as load on the relay's cores
    local waited=0 b
    while b=$(busy_pct); [ "$b" -gt "${QUIET_MAX:-10}" ]; do
        if [ "$waited" -ge "${QUIET_WAIT:-900}" ]; then
            echo "machine still ${b}% busy after ${waited} s: measuring anyway (see others_cpu_pct)" >&2
            return
        fi
        [ "$waited" = 0 ] && echo "machine ${b}% busy: waiting for it to calm down" >&2
        sleep 8; waited=$((waited + 10))
    done
}
stop() { # SIGTERM one process we started, SIGKILL after 10 s
    kill "$1" 2>/dev/null || return 0
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
}

write_configs() {
    cat > "$work/sim.toml" <<TOML
listen = "127.0.0.1:18443"
control_listen = "127.0.0.1:18444"
cert_out = "$work/sim-cert.pem"
media_ip = "127.0.0.1"
# the far end echoes at once, so the round trip is trunkgate's two passes plus a prompt echo
media_batch_window = "${SIM_BATCH_WINDOW:-0s}"
[[users]]
username = "bench@sim"
password = "bench-password"
[behaviour]
ring_delay = "20ms"
answer_delay = "20ms"
TOML
    cat > "$work/tg.toml" <<TOML
[log]
level = "warn"
[sip]
listen = "127.0.0.1:15060"
realm = "bench"
[[trunks]]
name = "pbx"
auth_username = "pbx"
password = "pbx-password"
[media]
rtp_ports = "20000-29999"
batch_window = "${BATCH_WINDOW:-500us}"
[calls]
max_calls = 5000
# the generator holds every call silent while the others are set up, then hangs up itself
rtp_timeout = "0s"
drain_grace = "2s"
[security]
# one PBX places every call: a trunk source, no per-address budget
never_ban = ["127.0.0.0/8"]
[cdr]
path = "$work/cdr.jsonl"
[status]
listen = "127.0.0.1:19060"
[carrier]
ca_file = "$work/sim-cert.pem"
[[carrier.accounts]]
name = "sim"
base_url = "https://127.0.0.1:18443"
username = "bench@sim"
password = "bench-password"
domain = "sim.bench"
max_calls = 5000
TOML
}

run_trunkgate() { # one run: fresh simulator and daemon, tg_load.py, both stopped; JSON in $1
    rm -f "$work/sim-cert.pem"
    "${far_cpu[@]}" "$bin" sim --config "$work/sim.toml" 2>"$work/sim.log" &
    sim=$!
    pids+=("$sim")
    for _ in $(seq 100); do [ -s "$work/sim-cert.pem" ] && break; sleep 0.1; done
    "${relay_cpu[@]}" "$bin" run --config "$work/tg.toml" 2>"$work/tg.log" &
    tg=$!
    pids+=("$tg")
    ready=
    for _ in $(seq 150); do
        if curl -s 127.0.0.1:19060/status | grep -q '"subscription_state":"active"'; then ready=1; break; fi
        sleep 0.1
    done
    [ -n "$ready" ] || { echo "trunkgate did not subscribe to the simulator; its log:" >&2; tail -20 "$work/tg.log" >&2; exit 1; }
    sleep 1 # idle RSS after start-up settles
    if ! "${far_cpu[@]}" python3 "$here/benches/media/tg_load.py" --calls "$calls" --duration "$duration" --rate "$rate" \
        --tg-pid "$tg" --sim-pid "$sim" > "$1"; then
        echo "trunkgate run failed; last lines of its log:" >&2
        tail -20 "$work/tg.log" >&2
        exit 1
    fi
    stop "$tg"
    stop "$sim"
    pids=()
    warnings=$(grep -c -i ' warn\| error' "$work/tg.log" || true)
    [ "$warnings" = 0 ] || { echo "trunkgate logged $warnings warnings/errors; first ones:" >&2; grep -i ' warn\| error' "$work/tg.log" | head -5 >&2; }
}

run_rtpengine() { # one run of the baseline's bench.py (it starts and stops its own rtpengine)
    python3 "$rdir/bench.py" --mode srtp --calls "$calls" --duration "$duration" "${pin_flag[@]}" > "$1"
}

others() { # CPU (% of one core) that other processes took in a result's window
    python3 -c '
import json, sys
d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
if "others_cpu_pct" in d:
    print(int(d["others_cpu_pct"]))
else:
    print(int(2 * d["machine_busy_pct_of_2"] - d["rtpengine_cpu_pct"] - d["gen_cpu_pct"]))' "$1"
}

measure() { # side, result file: runs until other processes stay under OTHERS_MAX in the window
    local try o
    for try in $(seq "${TRIES:-3}"); do
        quiet
        echo "== $1: $calls calls, ${duration} s of media (try $try)" >&2
        "run_$1" "$2"
        o=$(others "$2")
        [ "$o" -le "${OTHERS_MAX:-30}" ] && return
        echo "other processes took ${o}% of a core during the window: measuring again" >&2
    done
    echo "kept the last try: its window was shared with other processes" >&2
}

if [ "$only" != rtpengine ]; then
    write_configs
    measure trunkgate "$work/tg.json"
fi
if [ "$only" != trunkgate ]; then
    if ! command -v rtpengine >/dev/null || ! python3 -c "import pylibsrtp" 2>/dev/null; then
        sh "$rdir/install.sh" >&2
    fi
    measure rtpengine "$work/re.json"
fi

if [ -n "${OUT:-}" ]; then
    for f in "$work/tg.json" "$work/re.json"; do [ -f "$f" ] && tail -1 "$f" >> "$OUT"; done
fi
if [ -z "$only" ]; then
    python3 "$here/benches/media/report.py" "$work/tg.json" "$work/re.json"
else
    cat "$work"/*.json
fi
