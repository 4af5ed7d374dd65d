#!/usr/bin/env python3
"""The legitimate trunk of benches/flood.sh: registers with digest auth at a steady pace.

Every --interval seconds: REGISTER (no credentials) -> 401 -> REGISTER with Authorization
computed from the challenge (realm, nonce, qop=auth or none, MD5 or SHA-256, opaque) -> 200.
Like a UA over UDP it retransmits a request after 0.5 s, then 1 s; no final answer within
--timeout seconds (from the first send) counts as "no answer". The latency of a registration is
from its first REGISTER sent to its 200 received (both round trips, retransmissions included).

Runs until --count registrations are done, or SIGTERM/SIGINT, or --max-seconds; then prints one
JSON object: registrations, answered, rejected, no answer, p50/p99/max latency (ms), how many took
over 100 ms, retransmissions. Loopback only.
"""

import argparse
import hashlib
import ipaddress
import json
import math
import random
import re
import select
import signal
import socket
import sys
import time

PARAM_RE = re.compile(r'([A-Za-z-]+)\s*=\s*("([^"]*)"|[^\s,]+)')
HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
stop = False


def on_signal(_sig, _frame):
    global stop
    stop = True


def header_values(msg, name):
    """Values of every header `name` (case-insensitive, compact forms not needed here)."""
    head = msg.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
    out = []
    for line in head:
        k, _, v = line.partition(":")
        if k.strip().lower() == name.lower():
            out.append(v.strip())
    return out


def challenge_params(value):
    """The parameters of one `Digest ...` challenge."""
    scheme, _, rest = value.partition(" ")
    if scheme.lower() != "digest":
        return None
    return {m.group(1).lower(): (m.group(3) if m.group(3) is not None else m.group(2))
            for m in PARAM_RE.finditer(rest)}


def authorization(challenges, user, password, method, uri, cnonce):
    """The Authorization value answering the first challenge whose algorithm we know."""
    for value in challenges:
        c = challenge_params(value)
        if not c:
            continue
        alg = c.get("algorithm", "MD5").upper()
        if alg not in HASHES:
            continue
        h = lambda s: HASHES[alg](s.encode()).hexdigest()  # noqa: E731
        ha1 = h("%s:%s:%s" % (user, c["realm"], password))
        ha2 = h("%s:%s" % (method, uri))
        qops = [q.strip() for q in c.get("qop", "").split(",") if q.strip()]
        parts = ['username="%s"' % user, 'realm="%s"' % c["realm"], 'nonce="%s"' % c["nonce"],
                 'uri="%s"' % uri]
        if "auth" in qops:
            nc = "00000001"
            resp = h("%s:%s:%s:%s:auth:%s" % (ha1, c["nonce"], nc, cnonce, ha2))
            parts += ['response="%s"' % resp, "qop=auth", "nc=%s" % nc, 'cnonce="%s"' % cnonce]
        else:
            parts.append('response="%s"' % h("%s:%s:%s" % (ha1, c["nonce"], ha2)))
        parts.append("algorithm=%s" % alg)
        if "opaque" in c:
            parts.append('opaque="%s"' % c["opaque"])
        return "Digest " + ", ".join(parts)
    return None


class Client:
    def __init__(self, a):
        host, port = a.target.rsplit(":", 1)
        self.target = (host, int(port))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((a.source, 0))
        self.local = self.sock.getsockname()
        self.user, self.password = a.user, a.password
        self.domain = a.domain or host
        self.uri = "sip:%s:%d" % self.target
        self.callid = "%016x@bench" % random.getrandbits(64)
        self.tag = "%08x" % random.getrandbits(32)
        self.cseq = 0
        self.timeout = a.timeout
        self.retransmissions = 0

    def request(self, auth):
        self.cseq += 1
        branch = "z9hG4bK%016x" % random.getrandbits(64)
        lines = [
            "REGISTER %s SIP/2.0" % self.uri,
            "Via: SIP/2.0/UDP %s:%d;branch=%s;rport" % (self.local[0], self.local[1], branch),
            "Max-Forwards: 70",
            "From: <sip:%s@%s>;tag=%s" % (self.user, self.domain, self.tag),
            "To: <sip:%s@%s>" % (self.user, self.domain),
            "Call-ID: %s" % self.callid,
            "CSeq: %d REGISTER" % self.cseq,
            "Contact: <sip:%s@%s:%d>" % (self.user, self.local[0], self.local[1]),
            "Expires: 300",
            "User-Agent: trunk-bench",
        ]
        if auth:
            lines.append("Authorization: %s" % auth)
        lines.append("Content-Length: 0")
        return branch, ("\r\n".join(lines) + "\r\n\r\n").encode()

    def transact(self, deadline, auth=None):
        """Sends one REGISTER, retransmitting like a UA; returns (status, message) or None."""
        branch, data = self.request(auth)
        self.sock.sendto(data, self.target)
        interval = 0.5
        resend_at = time.monotonic() + interval
        while True:
            now = time.monotonic()
            if now >= deadline:
                return None
            if now >= resend_at:
                self.sock.sendto(data, self.target)
                self.retransmissions += 1
                interval = min(interval * 2, 4.0)
                resend_at = now + interval
            ready, _, _ = select.select([self.sock], [], [], max(0.0, min(deadline, resend_at) - now))
            if not ready:
                continue
            msg = self.sock.recv(65536).decode(errors="replace")
            first = msg.split("\r\n", 1)[0].split(" ")
            # only a final answer to this very request counts (a late answer to an older one
            # or a provisional response is skipped)
            if len(first) < 2 or not first[0].startswith("SIP/2.0") or branch not in msg:
                continue
            code = int(first[1])
            if code >= 200:
                return code, msg

    def register(self):
        """One registration: ('ok' | 'no_answer' | 'rejected', seconds)."""
        t0 = time.monotonic()
        deadline = t0 + self.timeout
        r = self.transact(deadline)
        if r is None:
            return "no_answer", time.monotonic() - t0
        code, msg = r
        if code in (401, 407):
            hdr = "WWW-Authenticate" if code == 401 else "Proxy-Authenticate"
            auth = authorization(header_values(msg, hdr), self.user, self.password, "REGISTER",
                                 self.uri, "%08x" % random.getrandbits(32))
            if auth is None:
                return "rejected", time.monotonic() - t0
            r = self.transact(deadline, auth)
            if r is None:
                return "no_answer", time.monotonic() - t0
            code, msg = r
        return ("ok" if 200 <= code < 300 else "rejected"), time.monotonic() - t0


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    # nearest rank
    k = min(len(sorted_values) - 1, max(0, math.ceil(p / 100.0 * len(sorted_values)) - 1))
    return sorted_values[k]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="127.0.0.1:5060")
    p.add_argument("--source", default="127.0.0.1")
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--domain", help="host part of From/To (default: the target's host)")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between registrations")
    p.add_argument("--timeout", type=float, default=2.0, help="no answer after this many seconds")
    p.add_argument("--count", type=int, default=0, help="stop after this many (0: until signalled)")
    p.add_argument("--max-seconds", type=float, default=900, help="hard bound on the run")
    p.add_argument("--slow-ms", type=float, default=100, help="the latency goal")
    a = p.parse_args()
    for addr in (a.target.rsplit(":", 1)[0], a.source):
        if not ipaddress.ip_address(addr).is_loopback:
            sys.exit("register_client.py: %s is not a loopback address; refusing" % addr)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    c = Client(a)
    outcomes = {"ok": 0, "no_answer": 0, "rejected": 0}
    latencies = []
    start = time.monotonic()
    n = 0
    while not stop and time.monotonic() - start < a.max_seconds:
        if a.count and n >= a.count:
            break
        outcome, secs = c.register()
        n += 1
        outcomes[outcome] += 1
        if outcome == "ok":
            latencies.append(secs * 1000.0)
        next_at = start + n * a.interval
        while not stop and time.monotonic() < next_at:
            time.sleep(min(0.05, max(0.0, next_at - time.monotonic())))
    latencies.sort()
    print(json.dumps({
        "registrations": n,
        "ok": outcomes["ok"],
        "no_answer": outcomes["no_answer"],
        "rejected": outcomes["rejected"],
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(latencies[-1], 2) if latencies else 0.0,
        "over_slow_ms": sum(1 for x in latencies if x > a.slow_ms),
        "slow_ms": a.slow_ms,
        "retransmissions": c.retransmissions,
        "seconds": round(time.monotonic() - start, 2),
    }))
    sys.exit(0 if n and outcomes["ok"] == n else 1)


if __name__ == "__main__":
    main()
