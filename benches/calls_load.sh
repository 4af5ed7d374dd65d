#!/usr/bin/env bash
# Load benchmark of the call path: N simultaneous calls, each a PBX leg of plain RTP (sipp
# playing g711a.pcap: PCMA, 30 ms, ~33 packets/s each way) bridged by trunkgate to a WebRTC leg
# (ICE, DTLS-SRTP) answered by the carrier simulator, which echoes every packet. Reports, over
# the steady state (all calls up), trunkgate's CPU per relayed packet and as a share of one core,
# the simulator's CPU separately (it is the far end, not trunkgate), and loss from /metrics.
# Compare with RESULTS.md of the rtpengine baseline (outside this repository) (rtpengine RTP<->SDES-SRTP at 50 pkt/s).
#
# Needs: apt-get install sip-tester; root (sipp plays pcaps through a raw socket); a release
# build (cargo build --release). Everything stays on 127.0.0.1 and stops by itself.
# Usage: benches/calls_load.sh [CALLS] [SETUP_RATE]      (defaults 100 calls, 25 calls/s)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin="$here/target/release/trunkgate"
calls=${1:-100}
rate=${2:-25}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 2; }

cpu_of() { # utime+stime (clock ticks) of one pid
    set -- $(sed 's/^.*) //' "/proc/$1/stat")
    echo $((${12} + ${13}))
}
metric() { # sum of the samples of one metric family in file $1
    awk -v m="$2" 'index($1, m) == 1 && (length($1) == length(m) || substr($1, length(m) + 1, 1) == "{") { s += $2 } END { printf "%d", s }' "$1"
}
series() { # one exact series in file $1
    awk -v m="$2" '$1 == m { s += $2 } END { printf "%d", s }' "$1"
}

cat > "$work/sim.toml" <<TOML
listen = "127.0.0.1:18443"
control_listen = "127.0.0.1:18444"
cert_out = "$work/sim-cert.pem"
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
rtp_ports = "30000-39999"
[calls]
max_calls = 5000
# sipp is one PBX placing every call: a trunk source, so no per-address budget
[security]
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
"$bin" sim --config "$work/sim.toml" 2>"$work/sim.log" &
sim=$!
for _ in $(seq 100); do [ -s "$work/sim-cert.pem" ] && break; sleep 0.1; done
"$bin" run --config "$work/tg.toml" 2>"$work/tg.log" &
tg=$!
for _ in $(seq 100); do
    curl -s 127.0.0.1:19060/status | grep -q '"subscription_state":"active"' && break
    sleep 0.1
done

# each call: ~21 s of audio; all N up after N/rate s
sipp -sf "$here/benches/calls_load.xml" -s 0501234567 -au pbx -ap pbx-password \
    -auth_uri 0501234567@127.0.0.1:15060 \
    -i 127.0.0.1 -p 15080 -mi 127.0.0.1 -mp 16000 -r "$rate" -l "$calls" -m "$calls" \
    -timeout 120s -nostdin -trace_stat -stf "$work/sipp.csv" 127.0.0.1:15060 \
    >/dev/null 2>"$work/sipp.err" &
sippid=$!
ramp=$(awk -v n="$calls" -v r="$rate" 'BEGIN { printf "%d", n / r + 3 }')
sleep "$ramp"
curl -s 127.0.0.1:19060/metrics > "$work/m0"
t0=$(cpu_of "$tg"); s0=$(cpu_of "$sim"); w0=$(date +%s.%N)
sleep 10
curl -s 127.0.0.1:19060/metrics > "$work/m1"
t1=$(cpu_of "$tg"); s1=$(cpu_of "$sim"); w1=$(date +%s.%N)
active=$(metric "$work/m1" trunkgate_active_calls)
wait "$sippid" || true
sleep 1
curl -s 127.0.0.1:19060/metrics > "$work/m2"
hz=$(getconf CLK_TCK)
p0=$(metric "$work/m0" trunkgate_rtp_packets_total); p1=$(metric "$work/m1" trunkgate_rtp_packets_total)
up=$(series "$work/m2" 'trunkgate_rtp_packets_total{direction="pbx_to_carrier"}')
down=$(series "$work/m2" 'trunkgate_rtp_packets_total{direction="carrier_to_pbx"}')
lost=$(metric "$work/m2" trunkgate_rtp_lost_packets_total)
answered=$(series "$work/m2" 'trunkgate_calls_total{direction="outbound",outcome="answered"}')
echo "calls $calls (active in the window: $active, answered: $answered of $calls)"
awk -v t="$((t1 - t0))" -v s="$((s1 - s0))" -v hz="$hz" -v p="$((p1 - p0))" -v w0="$w0" -v w1="$w1" 'BEGIN {
    secs = w1 - w0
    printf "steady state %.1f s: %.0f relayed pkt/s (both directions)\n", secs, p / secs
    printf "trunkgate: %.1f %% of one core, %.1f us CPU per relayed packet\n", 100 * t / hz / secs, (p > 0 ? 1e6 * t / hz / p : 0)
    printf "simulator (the far end, for reference): %.1f %% of one core\n", 100 * s / hz / secs
}'
echo "whole run: pbx->carrier $up, carrier->pbx $down packets; sequence gaps $lost"
