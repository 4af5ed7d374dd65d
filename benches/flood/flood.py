#!/usr/bin/env python3
"""SIPVicious-style scanner flood for benches/flood.sh (loopback only, bounded, stops by itself).

Sends a bounded number of UDP datagrams at a paced rate to one SIP server from several source
addresses (127.0.0.10 .. 127.0.0.18 by default, one socket bound to each). The traffic is what
a scanner and a password guesser send to an exposed SIP port:

  * OPTIONS probes, REGISTERs and INVITEs to random extensions and usernames;
  * the "noisy" sources say who they are (User-Agent: friendly-scanner and friends), the
    "disguised" ones use ordinary phone and PBX user agents;
  * a share of the REGISTERs and INVITEs carry an Authorization / Proxy-Authorization header with
    a guessed (wrong) password, computed over the latest nonce the server handed out (as svcrack
    does), or over a made-up nonce before any challenge came back.

Every datagram is distinct (Call-ID, branch, tag, username). Replies are read and counted but
never answered. Prints one JSON object: datagrams sent, the achieved rate, replies received.
"""

import argparse
import hashlib
import ipaddress
import json
import multiprocessing
import random
import re
import select
import socket
import sys
import time

SCANNER_UAS = ["friendly-scanner", "sipvicious", "sipcli/v1.8", "VaxSIPUserAgent/3.1", "iWar",
               "sundayddr", "SIVuS", "pplsip", "smap 0.6.0"]
ORDINARY_UAS = ["Zoiper rv2.10.20.3", "Linphone/5.2.0 (belle-sip/5.2.0)", "Yealink SIP-T46S 66.86.0.15",
                "Grandstream GXP2170 1.0.11.23", "Asterisk PBX 18.20.0", "3CXPhoneSystem 18.0.9.20",
                "MicroSIP/3.21.3", "FPBX-16.0.40(18.20.0)", "PolycomVVX-VVX_411-UA/6.4.3.5018"]
PASSWORDS = ["1234", "123456", "password", "admin", "100", "12345678", "qwerty", "secret1", "0000"]
USERS = ["100", "101", "102", "200", "1000", "1001", "admin", "test", "pbx", "trunk", "sip", "user"]
NONCE_RE = re.compile(rb'nonce="([^"]+)"')
REALM_RE = re.compile(rb'realm="([^"]+)"')


def md5(s):
    return hashlib.md5(s.encode()).hexdigest()


class Source:
    """One scanner source address: its socket, its user agents and the latest nonce it saw."""

    def __init__(self, addr, disguised, target, rng):
        self.addr = addr
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((addr, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.uas = ORDINARY_UAS if disguised else SCANNER_UAS
        self.target = target
        self.rng = rng
        self.realm = target[0]
        self.nonce = None
        self.replies = 0
        self.send_errors = 0

    def drain(self):
        """Reads whatever came back; keeps the latest realm and nonce for the password guesses."""
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ICMP port unreachable surfaces here once the server is gone
                return
            self.replies += 1
            m = NONCE_RE.search(data)
            if m:
                self.nonce = m.group(1).decode(errors="replace")
                r = REALM_RE.search(data)
                if r:
                    self.realm = r.group(1).decode(errors="replace")

    def message(self, n):
        rng = self.rng
        host, port = self.target
        ua = rng.choice(self.uas)
        user = rng.choice(USERS) if rng.random() < 0.5 else str(rng.randint(100, 99999))
        callid = "%08x%08x@%s" % (rng.getrandbits(32), n, self.addr)
        branch = "z9hG4bK%x%08x" % (rng.getrandbits(40), n)
        tag = "%x" % rng.getrandbits(32)
        pick = rng.random()
        if pick < 0.2:
            method, ruri, to_user, hdr = "OPTIONS", "sip:%s@%s:%d" % (user, host, port), user, None
        elif pick < 0.65:
            method, ruri, to_user, hdr = "REGISTER", "sip:%s:%d" % (host, port), user, "Authorization"
        else:
            to_user = str(rng.randint(0, 9)) + str(rng.randint(10 ** 9, 10 ** 10 - 1))
            method, ruri, hdr = "INVITE", "sip:%s@%s:%d" % (to_user, host, port), "Proxy-Authorization"
        lines = [
            "%s %s SIP/2.0" % (method, ruri),
            "Via: SIP/2.0/UDP %s:%d;branch=%s;rport" % (self.addr, self.port, branch),
            "Max-Forwards: 70",
            "From: \"%s\" <sip:%s@%s>;tag=%s" % (user, user, host, tag),
            "To: \"%s\" <sip:%s@%s>" % (to_user, to_user, host),
            "Call-ID: %s" % callid,
            "CSeq: 1 %s" % method,
            "Contact: <sip:%s@%s:%d>" % (user, self.addr, self.port),
            "User-Agent: %s" % ua,
            "Accept: application/sdp",
        ]
        if method == "REGISTER":
            lines.append("Expires: 3600")
        # one REGISTER/INVITE in three guesses a password
        if hdr and rng.random() < 1 / 3:
            nonce = self.nonce or "%032x" % rng.getrandbits(128)
            ha1 = md5("%s:%s:%s" % (user, self.realm, rng.choice(PASSWORDS)))
            resp = md5("%s:%s" % (ha1, md5("%s:%s" % (method, ruri))))
            lines.append('%s: Digest username="%s", realm="%s", nonce="%s", uri="%s", '
                         'response="%s", algorithm=MD5' % (hdr, user, self.realm, nonce, ruri, resp))
        body = ""
        if method == "INVITE":
            body = ("v=0\r\no=- %d 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"
                    "m=audio %d RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
                    % (n, self.addr, self.addr, 10000 + n % 50000))
            lines.append("Content-Type: application/sdp")
        lines.append("Content-Length: %d" % len(body))
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    def send(self, n):
        try:
            self.sock.sendto(self.message(n), self.target)
        except (BlockingIOError, InterruptedError):
            self.send_errors += 1
        except OSError:  # ECONNREFUSED from an earlier ICMP: the server is not there (yet)
            self.send_errors += 1


def worker(idx, sources, disguised, target, count, rate, seed, out):
    """Sends `count` datagrams at `rate`/s, round-robin over its sources; reports to `out`."""
    rng = random.Random(seed + idx)
    srcs = [Source(a, a in disguised, target, rng) for a in sources]
    # replies are read only from the sockets that have some (there may be thousands of sources)
    poller = select.poll()
    by_fd = {}
    for s in srcs:
        poller.register(s.sock, select.POLLIN)
        by_fd[s.sock.fileno()] = s

    def drain():
        for fd, _ in poller.poll(0):
            by_fd[fd].drain()

    start = time.monotonic()
    sent = 0
    # Pacing: send what is due every millisecond-ish; a late wake-up catches up in the next batch.
    while sent < count:
        due = min(count, int((time.monotonic() - start) * rate) + 1)
        while sent < due:
            srcs[sent % len(srcs)].send(sent * 131 + idx)
            sent += 1
        drain()
        next_at = start + sent / rate
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(min(delay, 0.002))
    elapsed = time.monotonic() - start
    time.sleep(0.3)  # the last replies
    drain()
    out.put({
        "sent": sent,
        "elapsed": elapsed,
        "replies": sum(s.replies for s in srcs),
        "send_errors": sum(s.send_errors for s in srcs),
        "replies_by_source": {s.addr: s.replies for s in srcs},
    })


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="127.0.0.1:5060", help="HOST:PORT of the server (loopback)")
    p.add_argument("--count", type=int, default=100000, help="datagrams in all")
    p.add_argument("--rate", type=float, default=10000, help="datagrams per second in all")
    p.add_argument("--first-source", default="127.0.0.10")
    p.add_argument("--sources", type=int, default=9, help="source addresses from --first-source on")
    p.add_argument("--disguised", type=int, default=5,
                   help="how many of the sources (the last ones) use ordinary user agents")
    p.add_argument("--procs", type=int, default=0, help="sender processes (0: 1 per 10k/s, at least 1)")
    p.add_argument("--seed", type=int, default=11)
    a = p.parse_args()

    host, port = a.target.rsplit(":", 1)
    target = (host, int(port))
    first = ipaddress.ip_address(a.first_source)
    sources = [str(first + i) for i in range(a.sources)]
    # Loopback only: this tool must never send anywhere else.
    for addr in [host] + sources:
        if not ipaddress.ip_address(addr).is_loopback:
            sys.exit("flood.py: %s is not a loopback address; refusing" % addr)
    if a.count <= 0 or a.rate <= 0 or a.sources <= 0:
        sys.exit("flood.py: --count, --rate and --sources must be positive")
    disguised = set(sources[len(sources) - a.disguised:]) if a.disguised > 0 else set()

    procs = a.procs or max(1, min(len(sources), int(a.rate // 10000) + (a.rate % 10000 > 0)))
    procs = min(procs, len(sources))
    out = multiprocessing.Queue()
    jobs = []
    for i in range(procs):
        mine = sources[i::procs]
        count = a.count // procs + (1 if i < a.count % procs else 0)
        j = multiprocessing.Process(target=worker,
                                    args=(i, mine, disguised, target, count, a.rate / procs, a.seed, out))
        j.start()
        jobs.append(j)
    results = [out.get(timeout=3600) for _ in jobs]
    for j in jobs:
        j.join()
    sent = sum(r["sent"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    by_source = {}
    for r in results:
        by_source.update(r["replies_by_source"])
    print(json.dumps({
        "sent": sent,
        "seconds": round(elapsed, 3),
        "rate": round(sent / elapsed if elapsed else 0.0),
        "target_rate": a.rate,
        "processes": procs,
        "sources": sources,
        "disguised": sorted(disguised),
        "replies": sum(r["replies"] for r in results),
        "send_errors": sum(r["send_errors"] for r in results),
        "replies_by_source": by_source,
    }))


if __name__ == "__main__":
    main()
