#!/usr/bin/env bash
# Scanner-flood benchmark (issue 11): what a SIPVicious-style flood costs the server, and whether
# the legitimate trunk still registers promptly while it lasts. trunkgate with its [security]
# defaults, then beside it Kamailio 5.6 as a hardened edge registrar (pike, an htable ban list,
# a scanner user-agent drop, digest challenges: benches/flood/kamailio-pike.cfg).
#
# For each server, on loopback ports of its own:
#   - benches/flood/flood.py sends DATAGRAMS datagrams at RATE/s from 127.0.0.10..127.0.0.18
#     (OPTIONS/REGISTER/INVITE, scanner and ordinary user agents, random users, some wrong
#     passwords), then stops;
#   - benches/flood/register_client.py, the trunk "pbx" on 127.0.0.1, registers with digest
#     (401 challenge + authenticated REGISTER) every 200 ms from 1 s before the flood to 1 s after;
#   - measured: the server's CPU (utime+stime from /proc/PID/stat, all its processes) per 100,000
#     flood datagrams, its memory (VmRSS from /proc/PID/status, summed over its processes:
#     before, peak sampled every 100 ms, after), datagrams the kernel dropped at its socket
#     (/proc/net/udp), the replies the flood got back, and the trunk's registration latency.
# Goals printed beside the figures: trunkgate spends no more CPU per flood datagram than Kamailio,
# its RSS grows by less than 20 MiB, and every legitimate registration is answered within 100 ms.
#
# Needs: python3, curl, apt-get install kamailio (5.6); builds trunkgate with cargo build --release
# (set TRUNKGATE_BIN=path to measure a given binary instead; CARGO_TARGET_DIR is honoured).
# FLOOD_ARGS adds options to flood.py, e.g. FLOOD_ARGS="--first-source 127.1.0.1 --sources 5000
# --disguised 2500" spreads the flood over 5,000 addresses (loopback; mind ulimit -n).
# TG_SECURITY=0 leaves the [security] section out of trunkgate's config, to measure a build from
# before issue 11 (which refuses the table) for comparison.
# Everything stays on 127.0.0.0/8, is bounded in count and time and is stopped on exit.
# Usage: benches/flood.sh [DATAGRAMS] [RATE]      (defaults 100000 datagrams, 10000/s)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
flood_dir="$here/benches/flood"
datagrams=${1:-100000}
rate=${2:-10000}
[[ "$datagrams" =~ ^[1-9][0-9]*$ && "$rate" =~ ^[1-9][0-9]*$ ]] ||
    { echo "usage: $0 [DATAGRAMS] [RATE]   (positive integers)" >&2; exit 2; }

# the legitimate trunk, the same on both servers
trunk_user=pbx
trunk_password=flood-bench-password
realm=flood.bench
hz=$(getconf CLK_TCK)
# bounds: the flood should take DATAGRAMS/RATE seconds; allow three times that plus a minute
flood_budget=$((datagrams * 3 / rate + 60))

die() { echo "flood.sh: $*" >&2; exit 1; }
die_log() { # $1 = log file, rest = message
    local log=$1; shift
    echo "flood.sh: $*" >&2
    echo "--- last lines of $log:" >&2
    tail -n 30 "$log" >&2 || true
    exit 1
}

command -v python3 >/dev/null || die "python3 is needed"
command -v curl >/dev/null || die "curl is needed"
command -v kamailio >/dev/null || die "kamailio is needed: apt-get install kamailio"

work=$(mktemp -d)
started=()   # pids to stop on exit
cleanup() {
    local p
    for p in "${started[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${started[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    done
    if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work files kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

if [ -n "${TRUNKGATE_BIN:-}" ]; then
    bin=$TRUNKGATE_BIN
else
    echo "building trunkgate (release)..." >&2
    (cd "$here" && cargo build --release --quiet) || die "cargo build --release failed"
    bin="${CARGO_TARGET_DIR:-$here/target}/release/trunkgate"
fi
[ -x "$bin" ] || die "no trunkgate binary at $bin"

free_udp_port() { # a currently free UDP port on 127.0.0.1
    python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
cpu_ticks() { # utime+stime, in clock ticks, summed over the given pids
    local p t=0 f
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] || continue
        # fields after the command name (which may hold spaces): $12 utime, $13 stime
        read -r -a f <<<"$(sed 's/^.*) //' "/proc/$p/stat")"
        t=$((t + f[11] + f[12]))
    done
    echo "$t"
}
rss_kb() { # VmRSS in kB, summed over the given pids
    local p t=0 v
    for p in "$@"; do
        v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || true)
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
pss_kb() { # proportional set size in kB, summed: shared pages counted once across the processes
    local p t=0 v
    for p in "$@"; do
        v=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || true)
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
udp_drops() { # datagrams the kernel dropped at the socket bound to 127.0.0.1:$1 (receive buffer full)
    awk -v a="$(printf '0100007F:%04X' "$1")" '$2 == a { d += $NF } END { printf "%d", d }' /proc/net/udp
}
json_field() { # $1 = file with one JSON object, $2 = key
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}
metric() { # sum of one metric family (all its labels) in a /metrics dump; "n/a" when absent
    awk -v m="$2" 'index($1, m) == 1 && (length($1) == length(m) || substr($1, length(m) + 1, 1) == "{") { s += $2; found = 1 }
        END { if (found) printf "%d", s; else printf "n/a" }' "$1"
}

# measure NAME SIP_PORT PID... : runs the trunk and the flood against one server, prints its figures
# and records them in $work/NAME.result for the summary.
measure() {
    local name=$1 port=$2; shift 2
    local pids=("$@")
    local out="$work/$name"
    # the trunk must register before the flood, or there is nothing to measure
    python3 "$flood_dir/register_client.py" --target "127.0.0.1:$port" --user "$trunk_user" \
        --password "$trunk_password" --count 3 >"$out.smoke" ||
        die "$name: the trunk could not register before the flood: $(cat "$out.smoke")"

    local rss0 cpu0 cpu1 rss1 pss1 drops0 drops1
    rss0=$(rss_kb "${pids[@]}")
    drops0=$(udp_drops "$port")
    python3 "$flood_dir/register_client.py" --target "127.0.0.1:$port" --user "$trunk_user" \
        --password "$trunk_password" --interval 0.2 --max-seconds "$((flood_budget + 30))" >"$out.trunk" &
    local trunk=$!
    started+=("$trunk")
    sleep 1
    # memory sampled every 100 ms while the flood runs
    (while :; do rss_kb "${pids[@]}"; sleep 0.1; done) >"$out.rss" &
    local sampler=$!
    started+=("$sampler")
    cpu0=$(cpu_ticks "${pids[@]}")
    # shellcheck disable=SC2086 # FLOOD_ARGS is a list of options
    timeout --kill-after=5 "$flood_budget" python3 "$flood_dir/flood.py" --target "127.0.0.1:$port" \
        --count "$datagrams" --rate "$rate" ${FLOOD_ARGS:-} >"$out.flood" || die "$name: the flood generator failed"
    # the server may still be working through its receive queue
    sleep 1
    cpu1=$(cpu_ticks "${pids[@]}")
    kill "$sampler"; wait "$sampler" 2>/dev/null || true
    kill -TERM "$trunk"; wait "$trunk" || true   # its exit status says whether all were answered
    rss1=$(rss_kb "${pids[@]}")
    pss1=$(pss_kb "${pids[@]}")
    drops1=$(udp_drops "$port")
    [ -s "$out.trunk" ] || die "$name: the trunk client printed nothing"
    local peak
    peak=$(sort -n "$out.rss" | tail -n 1)
    peak=$(( ${peak:-0} > rss1 ? ${peak:-0} : rss1 ))

    local sent achieved replies
    sent=$(json_field "$out.flood" sent)
    achieved=$(json_field "$out.flood" rate)
    replies=$(json_field "$out.flood" replies)
    python3 - "$out.trunk" "$name" "$sent" "$achieved" "$replies" "$((cpu1 - cpu0))" "$hz" \
        "$rss0" "$peak" "$rss1" "$pss1" "$((drops1 - drops0))" >"$out.result" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
name, sent, achieved, replies, ticks, hz, rss0, peak, rss1, pss1, drops = sys.argv[2:]
sent, ticks, hz = int(sent), int(ticks), int(hz)
cpu = ticks / hz
r = {"name": name, "sent": sent, "achieved": int(achieved), "replies": int(replies),
     "cpu_s": cpu, "cpu_per_100k": cpu * 100000 / sent if sent else 0.0,
     "rss0_mib": int(rss0) / 1024, "peak_mib": int(peak) / 1024, "rss1_mib": int(rss1) / 1024,
     "pss1_mib": int(pss1) / 1024,
     "growth_mib": (int(peak) - int(rss0)) / 1024, "kernel_drops": int(drops)}
r.update({"trunk_" + k: v for k, v in t.items()})
print(json.dumps(r))
PY
    python3 - "$out.result" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("flood: %d datagrams at %d/s achieved; %d replies went back to the flood" % (r["sent"], r["achieved"], r["replies"]))
print("server CPU (user+sys): %.2f s = %.2f s per 100,000 flood datagrams (%.1f us each)"
      % (r["cpu_s"], r["cpu_per_100k"], r["cpu_per_100k"] * 10))
print("server RSS: before %.1f MiB, peak %.1f MiB, after %.1f MiB (growth to peak %+.1f MiB); "
      "PSS after %.1f MiB" % (r["rss0_mib"], r["peak_mib"], r["rss1_mib"], r["growth_mib"], r["pss1_mib"]))
print("datagrams dropped by the kernel at the server's socket: %d" % r["kernel_drops"])
print("trunk during the flood: %d registrations, %d answered, %d rejected, %d no answer; "
      "latency p50 %.2f ms, p99 %.2f ms, max %.2f ms; over 100 ms: %d; retransmissions: %d"
      % (r["trunk_registrations"], r["trunk_ok"], r["trunk_rejected"], r["trunk_no_answer"],
         r["trunk_p50_ms"], r["trunk_p99_ms"], r["trunk_max_ms"], r["trunk_over_slow_ms"],
         r["trunk_retransmissions"]))
PY
}

# ---------------------------------------------------------------- trunkgate
# The legitimate trunk's address is exempt from bans and the per-address budget (never_ban), the
# flood sources (127.0.0.10-18) are not; everything else is [security]'s defaults.
security='[security]
never_ban = ["127.0.0.1/32"]'
[ "${TG_SECURITY:-1}" = 0 ] && security='# [security] left out (TG_SECURITY=0)'
cat >"$work/trunkgate.toml" <<TOML
[log]
level = "info"
[sip]
listen = "127.0.0.1:0"
realm = "$realm"
[[trunks]]
name = "$trunk_user"
auth_username = "$trunk_user"
password = "$trunk_password"
[cdr]
path = "$work/cdr.jsonl"
[status]
listen = "127.0.0.1:0"
$security
TOML
"$bin" check-config --config "$work/trunkgate.toml" >"$work/check.log" 2>&1 ||
    die_log "$work/check.log" "trunkgate refuses the benchmark's config"
"$bin" run --config "$work/trunkgate.toml" 2>"$work/trunkgate.log" &
tg=$!
started+=("$tg")
# ready when the log names the bound SIP and status addresses
tg_port='' status=''
for _ in $(seq 300); do
    kill -0 "$tg" 2>/dev/null || die_log "$work/trunkgate.log" "trunkgate exited while starting"
    line=$(grep -m1 ' ready' "$work/trunkgate.log" || true)
    if [ -n "$line" ]; then
        tg_port=$(sed -n 's/.*listen=127\.0\.0\.1:\([0-9]*\).*/\1/p' <<<"$line")
        status=$(sed -n 's/.*status=\(127\.0\.0\.1:[0-9]*\).*/\1/p' <<<"$line")
        break
    fi
    sleep 0.1
done
if [ -z "$tg_port" ] || [ -z "$status" ]; then
    die_log "$work/trunkgate.log" "trunkgate did not log its ready line (listen=, status=) within 30 s"
fi
curl -sf "http://$status/healthz" >/dev/null || die_log "$work/trunkgate.log" "trunkgate's status endpoint does not answer"
echo "== trunkgate $("$bin" --version | awk '{ print $2 }') (pid $tg, udp 127.0.0.1:$tg_port, status $status)"
curl -sf "http://$status/metrics" >"$work/metrics0" || true
measure trunkgate "$tg_port" "$tg"
curl -sf "http://$status/metrics" >"$work/metrics1" || die_log "$work/trunkgate.log" "trunkgate's status endpoint stopped answering"
kill -0 "$tg" 2>/dev/null || die_log "$work/trunkgate.log" "trunkgate died during the flood"
printf 'trunkgate counters: datagrams received %s; dropped banned %s, scanner %s, rate_limited %s; bans %s; stateless responses %s; auth failures %s\n' \
    "$(metric "$work/metrics1" trunkgate_sip_datagrams_received_total)" \
    "$(metric "$work/metrics1" 'trunkgate_security_dropped_datagrams_total{reason="banned"}')" \
    "$(metric "$work/metrics1" 'trunkgate_security_dropped_datagrams_total{reason="scanner"}')" \
    "$(metric "$work/metrics1" 'trunkgate_security_dropped_datagrams_total{reason="rate_limited"}')" \
    "$(metric "$work/metrics1" trunkgate_security_bans_total)" \
    "$(metric "$work/metrics1" trunkgate_sip_stateless_responses_total)" \
    "$(metric "$work/metrics1" trunkgate_sip_auth_failures_total)"
kill "$tg"; wait "$tg" 2>/dev/null || true

# ---------------------------------------------------------------- Kamailio
k_port=$(free_udp_port)
kamailio -f "$flood_dir/kamailio-pike.cfg" -l "udp:127.0.0.1:$k_port" -P "$work/kamailio.pid" -Y "$work" \
    -m 64 -M 8 -DD -E >"$work/kamailio.log" 2>&1 &
kam=$!
started+=("$kam")
for _ in $(seq 100); do
    kill -0 "$kam" 2>/dev/null || die_log "$work/kamailio.log" "kamailio exited while starting"
    [ -s "$work/kamailio.pid" ] && break
    sleep 0.1
done
[ -s "$work/kamailio.pid" ] || die_log "$work/kamailio.log" "kamailio did not start within 10 s"
sleep 0.5   # its workers fork after the pid file is written
mapfile -t kpids < <(echo "$kam"; pgrep -P "$kam")
echo
echo "== $(kamailio -v | awk 'NR == 1 { print $2, $3 }') (pid $kam + ${#kpids[@]} processes in all, udp 127.0.0.1:$k_port)"
measure kamailio "$k_port" "${kpids[@]}"
kill -0 "$kam" 2>/dev/null || die_log "$work/kamailio.log" "kamailio died during the flood"
echo "kamailio bans: $(grep -c 'address banned' "$work/kamailio.log" || true)"
kill "$kam"; wait "$kam" 2>/dev/null || true

# ---------------------------------------------------------------- summary and goals
echo
python3 - "$work/trunkgate.result" "$work/kamailio.result" <<'PY'
import json, sys
rows = [json.load(open(f)) for f in sys.argv[1:]]
print("| server | flood datagrams (achieved/s) | replies to the flood | CPU s per 100k datagrams | RSS before / peak / after (MiB) | trunk registrations | answered | p50 / p99 / max (ms) | > 100 ms | no answer | kernel drops |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print("| %s | %d (%d) | %d | %.2f | %.1f / %.1f / %.1f | %d | %d | %.2f / %.2f / %.2f | %d | %d | %d |" % (
        r["name"], r["sent"], r["achieved"], r["replies"], r["cpu_per_100k"], r["rss0_mib"],
        r["peak_mib"], r["rss1_mib"], r["trunk_registrations"], r["trunk_ok"], r["trunk_p50_ms"],
        r["trunk_p99_ms"], r["trunk_max_ms"], r["trunk_over_slow_ms"], r["trunk_no_answer"] + r["trunk_rejected"],
        r["kernel_drops"]))
tg, kam = rows
def verdict(ok):
    return "met" if ok else "NOT MET"
print()
print("goal: CPU per flood datagram no more than Kamailio's: trunkgate %.2f s vs Kamailio %.2f s per 100k: %s"
      % (tg["cpu_per_100k"], kam["cpu_per_100k"], verdict(tg["cpu_per_100k"] <= kam["cpu_per_100k"])))
print("goal: RSS growth under 20 MiB: trunkgate %+.1f MiB: %s" % (tg["growth_mib"], verdict(tg["growth_mib"] < 20)))
for r in rows:
    ok = r["trunk_ok"] == r["trunk_registrations"] and r["trunk_over_slow_ms"] == 0
    print("goal: every registration answered within 100 ms: %s %d/%d answered, %d over 100 ms: %s"
          % (r["name"], r["trunk_ok"], r["trunk_registrations"], r["trunk_over_slow_ms"], verdict(ok)))
PY
