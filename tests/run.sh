#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with Rust: installs sipp (Debian's
# sip-tester) when missing, checks formatting and lints, builds once and runs every unit and
# integration test against the real daemon on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v sipp >/dev/null 2>&1; then
    echo "== installing sipp (Debian package sip-tester)"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq sip-tester >/dev/null
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
