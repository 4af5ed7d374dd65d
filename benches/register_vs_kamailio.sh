#!/usr/bin/env bash
# Load benchmark of the REGISTER path, side by side with the Kamailio baseline in
# ../shared/bench/kamailio: the same sipp scenario and users (user0..user999 / "secret", plain
# digest without qop), the same rate, on loopback. Reports completed registrations, failures and
# the server's CPU seconds (utime+stime from /proc, all processes) per 1,000 registrations.
#
# Needs: apt-get install kamailio sip-tester; a release build (cargo build --release).
# Usage: benches/register_vs_kamailio.sh [RATE] [CALLS]      (defaults 10000 and 100000)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
base=$(cd "$here/../shared/bench/kamailio" && pwd)
rate=${1:-10000}
calls=${2:-100000}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; kill "$(cat /tmp/kamailio-baseline/kamailio.pid 2>/dev/null)" 2>/dev/null || true' EXIT

cpu_of() { # summed utime+stime (clock ticks) of the given pids
    local t=0
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] || continue
        set -- $(sed 's/^.*) //' "/proc/$p/stat")
        t=$((t + ${12} + ${13}))
    done
    echo "$t"
}

run_load() { # $1 = port, prints the sipp summary line
    sipp -sf "$base/reg_auth.xml" -inf "$base/users.csv" "127.0.0.1:$1" -i 127.0.0.1 -p 5080 \
        -r "$rate" -rp 1000 -m "$calls" -l 20000 -nostdin -buff_size 4194304 \
        -timeout 120s -trace_stat -stf "$work/stat-$1.csv" >/dev/null 2>&1 || true
    tail -1 "$work/stat-$1.csv" | awk -F';' '{ print "successful " $16 ", failed " $18 }'
}

report() { # name ticks
    local hz; hz=$(getconf CLK_TCK)
    awk -v n="$1" -v t="$2" -v hz="$hz" -v c="$calls" \
        'BEGIN { printf "%s: %.2f CPU s for %d registrations = %.1f ms CPU per 1,000\n", n, t/hz, c, t/hz/c*1000000 }'
}

# trunkgate: one [[trunks]] per user
{
    printf '[log]\nlevel = "warn"\n[sip]\nlisten = "127.0.0.1:5090"\nrealm = "127.0.0.1"\ndigest_qop = false\n'
    for i in $(seq 0 999); do printf '[[trunks]]\nname = "user%d"\nauth_username = "user%d"\npassword = "secret"\n' "$i" "$i"; done
} >"$work/trunkgate.toml"
"$here/target/release/trunkgate" run --config "$work/trunkgate.toml" &
tg=$!
sleep 1
before=$(cpu_of "$tg")
echo "trunkgate: $(run_load 5090)"
report trunkgate $(( $(cpu_of "$tg") - before ))
kill "$tg"; wait "$tg" 2>/dev/null || true

# Kamailio baseline
"$base/start.sh" >/dev/null
sleep 1
pids=$(pgrep -f "kamailio -f $base/kamailio.cfg" | tr '\n' ' ')
before=$(cpu_of $pids)
echo "kamailio: $(run_load 5070)"
report kamailio $(( $(cpu_of $pids) - before ))
