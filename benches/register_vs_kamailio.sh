#!/usr/bin/env bash
# Load benchmark of the REGISTER path, side by side with a Kamailio registrar baseline: the same
# sipp scenario and users (plain digest without qop), the same rate, on loopback. Reports completed
# and failed registrations, the achieved rate and the server's CPU seconds (utime+stime from
# /proc/PID/stat, all its processes) per 1,000 registrations.
#
# The baseline is a directory outside this repository, given as the first argument, holding:
#   kamailio.cfg  the registrar (its `listen=udp:ADDR:PORT` line says where it listens)
#   start.sh      starts it in the background and prints "... pid N"
#   reg_auth.xml  the sipp scenario: REGISTER -> 401 -> REGISTER with Authorization -> 200
#   users.csv     sipp's injection file: `user;[authentication username=U password=P]` lines
# trunkgate gets one [[trunks]] per user of users.csv, on a port of its own.
#
# Needs: apt-get install kamailio sip-tester; a release build (cargo build --release, or set
# TRUNKGATE_BIN). TG_SECURITY=0 leaves [security] out of trunkgate's config (builds before issue 11).
# Fails (non-zero, with the server's log) when a server does not start or sipp completes nothing.
# Usage: benches/register_vs_kamailio.sh BASELINE_DIR [RATE] [REGISTRATIONS]   (defaults 10000 and 100000)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || { echo "usage: $0 BASELINE_DIR [RATE] [REGISTRATIONS]" >&2; exit 2; }
base=$(cd "$1" && pwd) || exit 2
rate=${2:-10000}
calls=${3:-100000}
[[ "$rate" =~ ^[1-9][0-9]*$ && "$calls" =~ ^[1-9][0-9]*$ ]] ||
    { echo "usage: $0 BASELINE_DIR [RATE] [REGISTRATIONS]   (positive integers)" >&2; exit 2; }
for f in kamailio.cfg start.sh reg_auth.xml users.csv; do
    [ -r "$base/$f" ] || { echo "$base has no $f: not the Kamailio baseline directory" >&2; exit 2; }
done
command -v sipp >/dev/null || { echo "sipp is needed: apt-get install sip-tester" >&2; exit 2; }
command -v kamailio >/dev/null || { echo "kamailio is needed: apt-get install kamailio" >&2; exit 2; }
bin=${TRUNKGATE_BIN:-${CARGO_TARGET_DIR:-$here/target}/release/trunkgate}
[ -x "$bin" ] || { echo "no trunkgate at $bin: cargo build --release first" >&2; exit 2; }

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

die_log() { # $1 = log file, rest = message
    local log=$1; shift
    echo "register_vs_kamailio.sh: $*" >&2
    echo "--- last lines of $log:" >&2
    tail -n 30 "$log" >&2 || true
    exit 1
}
rss_kb() { # VmRSS in kB, summed over the given pids
    local p t=0 v
    for p in "$@"; do
        v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || true)
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
cpu_of() { # utime+stime (clock ticks) summed over the given pids
    local p t=0 f
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] || continue
        # fields after the command name (which may hold spaces): $12 utime, $13 stime
        read -r -a f <<<"$(sed 's/^.*) //' "/proc/$p/stat")"
        t=$((t + f[11] + f[12]))
    done
    echo "$t"
}

# run_load NAME PORT LOG PID... : the sipp load against one server; fails when nothing completed
run_load() {
    local name=$1 port=$2 log=$3; shift 3
    local before after t0 t1 rss0 rss1 rc=0
    rss0=$(rss_kb "$@")
    before=$(cpu_of "$@")
    t0=$(date +%s.%N)
    timeout --kill-after=10 $((calls / rate + 180)) \
        sipp -sf "$base/reg_auth.xml" -inf "$base/users.csv" "127.0.0.1:$port" -i 127.0.0.1 -p 5080 \
        -r "$rate" -rp 1000 -m "$calls" -l 20000 -nostdin -buff_size 4194304 \
        -timeout 120s -trace_stat -stf "$work/stat-$name.csv" >"$work/sipp-$name.out" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    after=$(cpu_of "$@")
    rss1=$(rss_kb "$@")
    [ -s "$work/stat-$name.csv" ] ||
        die_log "$work/sipp-$name.out" "$name: sipp wrote no statistics (exit $rc)"
    # the cumulative counters of sipp's last statistics line, found by their header names
    local ok failed
    read -r ok failed < <(awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "SuccessfulCall(C)") s = i; if ($i == "FailedCall(C)") f = i } }
        { last = $0 } END { split(last, v, ";"); print v[s] + 0, v[f] + 0 }' "$work/stat-$name.csv")
    if [ "$ok" -eq 0 ]; then
        echo "register_vs_kamailio.sh: $name: sipp completed no registration (failed: $failed, sipp exit $rc)" >&2
        tail -n 10 "$work/sipp-$name.out" >&2 || true
        die_log "$log" "$name: no successful registration"
    fi
    awk -v n="$name" -v ok="$ok" -v f="$failed" -v t="$((after - before))" -v hz="$(getconf CLK_TCK)" \
        -v w0="$t0" -v w1="$t1" -v r0="$rss0" -v r1="$rss1" 'BEGIN {
        printf "%s: %d registrations completed, %d failed, %.0f/s over %.1f s; server CPU %.2f s = %.1f ms per 1,000; RSS %.0f -> %.0f MiB\n",
            n, ok, f, ok / (w1 - w0), w1 - w0, t / hz, t / hz / ok * 1000000, r0 / 1024, r1 / 1024
    }'
    [ "$failed" -eq 0 ] || echo "$name: WARNING: $failed registrations failed (see sipp's -trace_err)" >&2
}

# ---------------------------------------------------------------- trunkgate
# One [[trunks]] per users.csv line. All registrations come from 127.0.0.1: exempt from the
# per-address budget and bans ([security] never_ban), as a real deployment would exempt its PBXs.
# Each authenticated REGISTER leaves a server transaction that lives on for Timer J (64*T1 = 32 s)
# after its 200: at RATE/s that is RATE*32 live transactions, far over the default ceiling of
# 10,000 (over it trunkgate answers 503), so the ceiling is raised to fit the load.
max_tx=$((rate * 40 > 10000 ? rate * 40 : 10000))
security="[security]
never_ban = [\"127.0.0.0/8\"]
max_transactions = $max_tx"
[ "${TG_SECURITY:-1}" = 0 ] && security='# [security] left out (TG_SECURITY=0)'
{
    printf '[log]\nlevel = "info"\n[sip]\nlisten = "127.0.0.1:0"\nrealm = "127.0.0.1"\ndigest_qop = false\n'
    printf '[cdr]\npath = "%s/cdr.jsonl"\n[status]\nlisten = "127.0.0.1:0"\n%s\n' "$work" "$security"
    sed -n 's/.*\[authentication username=\([^ ]*\) password=\([^] ]*\)\].*/\1 \2/p' "$base/users.csv" |
        while read -r user password; do
            printf '[[trunks]]\nname = "%s"\nauth_username = "%s"\npassword = "%s"\n' "$user" "$user" "$password"
        done
} >"$work/trunkgate.toml"
users=$(grep -c '^\[\[trunks\]\]' "$work/trunkgate.toml" || true)
[ "$users" -gt 0 ] || { echo "no users found in $base/users.csv" >&2; exit 1; }
"$bin" check-config --config "$work/trunkgate.toml" >"$work/check.log" 2>&1 ||
    die_log "$work/check.log" "trunkgate refuses the benchmark's config"
"$bin" run --config "$work/trunkgate.toml" 2>"$work/trunkgate.log" &
tg=$!
started+=("$tg")
tg_port='' status=''
for _ in $(seq 300); do
    kill -0 "$tg" 2>/dev/null || die_log "$work/trunkgate.log" "trunkgate exited while starting"
    line=$(grep -m1 ' ready' "$work/trunkgate.log" || true)
    tg_port=$(sed -n 's/.*listen=127\.0\.0\.1:\([0-9]*\).*/\1/p' <<<"$line")
    status=$(sed -n 's/.*status=\(127\.0\.0\.1:[0-9]*\).*/\1/p' <<<"$line")
    [ -n "$tg_port" ] && break
    sleep 0.1
done
[ -n "$tg_port" ] || die_log "$work/trunkgate.log" "trunkgate did not log its ready line within 30 s"
echo "users: $users; $calls registrations at $rate/s (each: REGISTER, 401, REGISTER with credentials, 200)"
run_load trunkgate "$tg_port" "$work/trunkgate.log" "$tg"
kill -0 "$tg" 2>/dev/null || die_log "$work/trunkgate.log" "trunkgate died during the load"
# why registrations failed, when they did: trunkgate's own refusals
if [ -n "$status" ] && curl -sf "http://$status/metrics" >"$work/metrics"; then
    awk '/^trunkgate_sip_(transaction_limit_refusals_total|auth_failures_total)/ && $2 > 0 { print "trunkgate: " $1 " " $2 }
         /^trunkgate_security_dropped_datagrams_total/ && $2 > 0 { print "trunkgate: " $1 " " $2 }' "$work/metrics"
fi
kill "$tg"; wait "$tg" 2>/dev/null || true

# ---------------------------------------------------------------- Kamailio baseline
k_port=$(sed -n 's/^listen=udp:127\.0\.0\.1:\([0-9]*\).*/\1/p' "$base/kamailio.cfg" | head -n 1)
[ -n "$k_port" ] || { echo "no listen=udp:127.0.0.1:PORT line in $base/kamailio.cfg" >&2; exit 1; }
"$base/start.sh" >"$work/kamailio-start.out" 2>&1 || die_log "$work/kamailio-start.out" "the Kamailio baseline did not start"
kam=$(sed -n 's/.*pid \([0-9][0-9]*\).*/\1/p' "$work/kamailio-start.out" | tail -n 1)
if [ -z "$kam" ] || ! kill -0 "$kam" 2>/dev/null; then
    die_log "$work/kamailio-start.out" "no running Kamailio pid in start.sh's output"
fi
started+=("$kam")
# its log: wherever start.sh sent its stderr
klog=$(readlink "/proc/$kam/fd/2" || true)
[ -f "$klog" ] || klog="$work/kamailio-start.out"
sleep 1   # its workers fork after the pid file is written
mapfile -t kpids < <(echo "$kam"; pgrep -P "$kam")
run_load kamailio "$k_port" "$klog" "${kpids[@]}"
kill -0 "$kam" 2>/dev/null || die_log "$klog" "kamailio died during the load"
