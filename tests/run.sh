#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with Rust: installs sipp (Debian's
# sip-tester) and coturn when missing, checks formatting and lints, builds once and runs every
# unit and integration test against the real daemon on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive: sipp (sip-tester) plays the PBX, coturn's `turnserver` is the
# TURN relay of the media tests, Kamailio (with kamcmd) and Redis are the cluster tests' edge and
# shared store (the tests start their own of each; the packages' services must not run).
# conf/kamailio/kamailio.cfg needs no module from kamailio-extra-modules.
packages=()
if ! command -v sipp >/dev/null 2>&1; then packages+=(sip-tester); fi
if ! command -v turnserver >/dev/null 2>&1; then packages+=(coturn); fi
if ! command -v kamailio >/dev/null 2>&1 || ! command -v kamcmd >/dev/null 2>&1; then packages+=(kamailio); fi
if ! command -v redis-server >/dev/null 2>&1; then packages+=(redis-server); fi
if [ ${#packages[@]} -gt 0 ]; then
    echo "== installing ${packages[*]}"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    # policy-rc.d answering 101 is Debian's way to keep a package's service from being started
    # by its install; only ours if none was there, and removed afterwards.
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
        trap '$sudo rm -f "$policy"' EXIT
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
    if [ -n "$policy" ]; then $sudo rm -f "$policy"; trap - EXIT; fi
    # Should a service have started anyway (an existing policy-rc.d allowing it), stop it: it
    # would hold 3478/5349, 5060 or 6379 and log under /var.
    for service in coturn kamailio redis-server; do
        if [[ " ${packages[*]} " == *" $service "* ]]; then
            if [ -d /run/systemd/system ]; then
                $sudo systemctl disable --now "$service" >/dev/null 2>&1 || true
            else
                $sudo service "$service" stop >/dev/null 2>&1 || true
            fi
        fi
    done
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "== warning: not root: the call tests need CAP_NET_RAW (sipp's pcap play, the RTP capture on lo)" >&2
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test"
cargo test --locked --no-fail-fast
