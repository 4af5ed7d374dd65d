#!/usr/bin/env python3
"""trunkgate's half of benches/media_vs_rtpengine.sh: N PBX calls through a running trunkgate
toward a running carrier simulator in echo mode, 50 RTP packets/s each way per call, measured.

1. SIP: N calls placed by sip_ua.py (digest-authenticated INVITEs, PCMU offer at one local
   address for all calls), paced at --rate calls/s; trunkgate bridges each to a WebRTC call
   (ICE, DTLS-SRTP) that the simulator answers and echoes.
2. Media, once every call is up: from one socket, every call sends 172-byte PCMU RTP packets
   (20 ms) to its own trunkgate RTP port, calls spread evenly over each 20 ms, with sendmmsg;
   the echoes come back (trunkgate -> simulator -> trunkgate -> here) and are read with
   recvmmsg. Each payload carries its call and packet number, so every echo is matched to its
   call (and to the trunkgate port it must come from) and to its own send time: the round trip
   is the kernel's receive timestamp (SO_TIMESTAMPNS) minus the packet's send time (taken
   around its sendmmsg call, interpolated within the batch).
3. CPU of trunkgate, of the simulator and of this generator (utime+stime from /proc/PID/stat)
   and the packets trunkgate relayed (its /metrics, both directions) over the steady window
   (--warmup s after the media starts until the last send); trunkgate's RSS idle (before the
   first call) and with every call up (end of the window).
4. Loss per leg: sent here vs received by the far ends (the simulator's per-call counters) vs
   echoed by them vs received back here; then every call is hung up (BYE).

Prints one JSON object. Loopback only, bounded (calls <= 5000, duration <= 120 s), stops by
itself.
"""

import argparse
import array
import gc
import json
import os
import select
import socket
import struct
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmsg  # noqa: E402
import sip_ua  # noqa: E402

PTIME = 0.020
PAYLOAD = 160
PKT = 12 + PAYLOAD
SSRC_BASE = 0x5EED0000
CLK_TCK = os.sysconf("SC_CLK_TCK")
HIST_US = 200_000   # round trips histogrammed at 1 us up to 200 ms; beyond: counted as over


def proc_cpu(pid):
    with open("/proc/%s/stat" % pid) as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / CLK_TCK, int(v[11]) / CLK_TCK, int(v[12]) / CLK_TCK


def machine_cpu():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]) - v[3] - v[4], sum(v[:8])


def rss_kib(pid):
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def thread_cpu(pid):
    """utime+stime seconds of each thread, by thread name (same names summed)."""
    out = {}
    base = "/proc/%s/task" % pid
    for tid in os.listdir(base):
        try:
            with open("%s/%s/stat" % (base, tid)) as f:
                head, _, rest = f.read().rpartition(")")
        except OSError:
            continue
        name = head.split("(", 1)[1]
        v = rest.split()
        out[name] = out.get(name, 0.0) + (int(v[11]) + int(v[12])) / CLK_TCK
    return out


def context_switches(pid):
    """Voluntary context switches of all of a process's threads: its wake-ups, about."""
    total = 0
    base = "/proc/%s/task" % pid
    for tid in os.listdir(base):
        try:
            with open("%s/%s/status" % (base, tid)) as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def threads(pid):
    return len(os.listdir("/proc/%s/task" % pid))


def udp_counters():
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return dict(zip(rows[0][1:], map(int, rows[1][1:])))


def socket_drops():
    """Receive-buffer drops of every UDP socket on the machine: inode -> (local port, drops)."""
    out = {}
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            v = line.split()
            out[v[9]] = (int(v[1].split(":")[1], 16), int(v[-1]))
    return out


def socket_inodes(pid):
    inodes = set()
    base = "/proc/%s/fd" % pid
    for fd in os.listdir(base):
        try:
            link = os.readlink(os.path.join(base, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    return inodes


def drops_by_process(before, after, pids):
    """Which process's sockets dropped datagrams for want of buffer space between two reads,
    with the local ports of the five that dropped most."""
    owners = {name: socket_inodes(pid) for name, pid in pids.items()}
    res = {name: 0 for name in owners}
    res["other"] = 0
    worst = []
    for inode, (port, d) in after.items():
        d -= before.get(inode, (port, 0))[1]
        if d <= 0:
            continue
        name = next((n for n, s in owners.items() if inode in s), "other")
        res[name] += d
        worst.append((d, "%s:%d" % (name, port)))
    res["worst"] = {where: d for d, where in sorted(worst, reverse=True)[:5]}
    return res


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def metric(text, name, labels=None):
    """Sum of the samples of one family (or of one labelled series) in a Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        key, _, value = line.rpartition(" ")
        if key == name or (key.startswith(name + "{") and (labels is None or key == "%s{%s}" % (name, labels))):
            total += float(value)
    return int(total)


def relayed(text):
    return metric(text, "trunkgate_rtp_packets_total")


def bind_pair():
    """An RTP socket on an even port with the odd one above it bound too (RTCP sink): trunkgate
    sends its RTCP reports there, and nothing answers them with ICMP."""
    for port in range(41000, 42000, 2):
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            a.bind(("127.0.0.1", port))
            b.bind(("127.0.0.1", port + 1))
            return a, b
        except OSError:
            a.close()
            b.close()
    sys.exit("no free even/odd port pair in 41000-41999")


def percentile(hist, over, count, q):
    """The q-quantile (0..1) in us from the 1 us histogram; None past its range."""
    if count == 0:
        return None
    target = q * count
    seen = 0
    for us, c in enumerate(hist):
        seen += c
        if seen >= target:
            return us
    return None if over else HIST_US


def media(ua, up, args, pids, sock, rtcp):
    n = len(up)
    npk = int(round(args.duration / PTIME))
    total = n * npk                          # slot j: packet k = j // n of call i = j % n
    slot = PTIME / n
    ports = [c.rtp_port for c in up]
    periods = max(4, -(-4096 // n))
    ring_len = n * periods
    ring = mmsg.SendRing(ring_len, PKT, [("127.0.0.1", p) for p in ports])
    fill = struct.Struct("!HIIII").pack_into  # seq, timestamp, SSRC, then payload: call, packet
    pk = ring.packets
    for p in range(ring_len):
        pk[PKT * p:PKT * (p + 1)] = bytes((0x80, 0)) + bytes(PKT - 2)
        pk[PKT * p + 20:PKT * (p + 1)] = b"\xff" * (PKT - 20)
    rx = mmsg.RecvBatch()
    rx.enable_timestamps(sock)
    txt = array.array("q", bytes(8 * total))  # send time of slot j (ns, CLOCK_REALTIME)
    got = [0] * n
    bad = {"stray": 0, "bad_len": 0, "wrong_source": 0, "no_timestamp": 0}
    hist = [0] * (HIST_US + 1)
    over = [0]
    lat = {"count": 0, "max": 0, "sum": 0}
    rtcp_in = [0]
    spans = [0, 0]                           # longest sendmmsg (ns), and how many took > 1 ms
    untimed = [0]                            # echoes of packets sent by such a slow call
    fd, rfd, sfd = sock.fileno(), rtcp.fileno(), ua.sock.fileno()
    ep = select.epoll()
    ep.register(fd, select.EPOLLIN)
    ep.register(rfd, select.EPOLLIN)
    ep.register(sfd, select.EPOLLIN)
    unpack_ik = struct.Struct("!II").unpack_from
    rbuf = rx.buf
    window = [None, None]                    # tx time bounds (ns) of packets whose echo counts

    def drain():
        count = 0
        while True:
            m = rx.recv(fd)
            for j in range(m):
                off = rx.size * j
                ts = rx.rx_ns(j)
                if rx.length(j) != PKT:
                    bad["bad_len"] += 1
                    continue
                i, k = unpack_ik(rbuf, off + 12)
                if i >= n or k >= npk:
                    bad["stray"] += 1
                    continue
                if rx.source_port(j) != ports[i]:
                    bad["wrong_source"] += 1
                    continue
                got[i] += 1
                count += 1
                sent = txt[k * n + i]
                if not ts:
                    bad["no_timestamp"] += 1
                elif sent < 0:
                    untimed[0] += 1
                elif window[0] is not None and sent >= window[0] and (window[1] is None or sent < window[1]):
                    us = (ts - sent) // 1000
                    if us < 0:
                        us = 0
                    if us > HIST_US:
                        over[0] += 1
                    else:
                        hist[us] += 1
                    lat["count"] += 1
                    lat["sum"] += us
                    if us > lat["max"]:
                        lat["max"] = us
            if m < rx.slots:
                return count

    def send(a, b):
        """Slots [a, b): filled in the ring and sent; returns how far it got."""
        j = a
        while j < b:
            p0 = j % ring_len
            e = min(b, j + (ring_len - p0))
            for q in range(j, e):
                k, i = divmod(q, n)
                fill(pk, PKT * (q % ring_len) + 2, k & 0xFFFF, (k * PAYLOAD) & 0xFFFFFFFF, SSRC_BASE + i, i, k)
            want = e - j
            t0 = time.time_ns()
            sent = ring.send(fd, p0, p0 + want)
            t1 = time.time_ns()
            span = t1 - t0
            if span > spans[0]:
                spans[0] = span
            if span > 1_000_000:
                # preempted inside the call: its packets' send times are unknown, not timed
                spans[1] += 1
                for x in range(sent):
                    txt[j + x] = -1
            else:
                for x in range(sent):
                    txt[j + x] = t0 + span * (x + 1) // sent
            j += sent
            if sent < want:
                break
        return j

    def snap():
        return {"t": time.monotonic(), "tg": proc_cpu(pids["tg"]), "sim": proc_cpu(pids["sim"]),
                "gen": proc_cpu("self"), "machine": machine_cpu(), "got": sum(got),
                "tg_threads": thread_cpu(pids["tg"]), "tg_wakeups": context_switches(pids["tg"]),
                "metrics": http_get(args.metrics)}

    max_batch = max(64, n // 10)
    nxt = 0
    s0 = s1 = None
    max_lag = 0.0
    late5 = late20 = 0
    rcvd = 0
    tick_at = 0.0
    mono = time.monotonic
    udp0 = udp_counters()
    drops0 = socket_drops()
    gc.collect()
    gc.freeze()
    gc.disable()
    t0 = mono() + 0.05
    win_start, win_end = args.warmup, args.duration - 0.5 * PTIME
    while True:
        now = mono()
        el = now - t0
        if s0 is None and el >= win_start:
            window[0] = time.time_ns()
            s0 = snap()
        if s1 is None and el >= win_end:
            window[1] = time.time_ns()
            s1 = snap()
            s1["rss_kib"] = rss_kib(pids["tg"])
            s1["sim_rss_kib"] = rss_kib(pids["sim"])
        if nxt >= total:
            break
        due = min(total, int(el / slot) + 1)
        if nxt < due:
            lag = el - nxt * slot
            if lag > max_lag:
                max_lag = lag
            if lag > 0.005:
                late5 += 1
                if lag > 0.020:
                    late20 += 1
            nxt = send(nxt, min(due, nxt + max_batch))
        if now >= tick_at:
            ua.tick(now)
            tick_at = now + 0.1
        wait = t0 + nxt * slot - mono()
        for f, _ in ep.poll(min(max(wait, 0.0), 0.005)):
            if f == fd:
                rcvd += drain()
            elif f == rfd:
                while True:
                    try:
                        rtcp.recv(2048)
                        rtcp_in[0] += 1
                    except BlockingIOError:
                        break
            else:
                ua.on_readable(mono())
    if s1 is None:
        window[1] = time.time_ns()
        s1 = snap()
        s1["rss_kib"] = rss_kib(pids["tg"])
        s1["sim_rss_kib"] = rss_kib(pids["sim"])
    end = mono() + args.drain
    while mono() < end:
        for f, _ in ep.poll(0.05):
            if f == fd:
                rcvd += drain()
            elif f == sfd:
                ua.on_readable(mono())
            else:
                try:
                    while True:
                        rtcp.recv(2048)
                        rtcp_in[0] += 1
                except BlockingIOError:
                    pass
    udp1 = udp_counters()
    sock_drops = drops_by_process(drops0, socket_drops(), {"tg": pids["tg"], "sim": pids["sim"], "gen": "self"})
    gc.enable()
    gc.unfreeze()
    ep.close()

    win = s1["t"] - s0["t"]
    tg_cpu = s1["tg"][0] - s0["tg"][0]
    rel = relayed(s1["metrics"]) - relayed(s0["metrics"])
    busy = (s1["machine"][0] - s0["machine"][0]) / max(1, s1["machine"][1] - s0["machine"][1])
    res = {
        "window_s": round(win, 3),
        "pps_offered": round(2 * n / PTIME),
        "pps_relayed_in_window": round(rel / win),
        "tg_cpu_pct": round(100 * tg_cpu / win, 1),
        "tg_usr_pct": round(100 * (s1["tg"][1] - s0["tg"][1]) / win, 1),
        "tg_sys_pct": round(100 * (s1["tg"][2] - s0["tg"][2]) / win, 1),
        "tg_us_per_pkt": round(1e6 * tg_cpu / max(1, rel), 2),
        "tg_threads": threads(pids["tg"]),
        "tg_wakeups_per_s": round((s1["tg_wakeups"] - s0["tg_wakeups"]) / win),
        "tg_pkts_per_wakeup": round(rel / max(1, s1["tg_wakeups"] - s0["tg_wakeups"]), 2),
        "sim_cpu_pct": round(100 * (s1["sim"][0] - s0["sim"][0]) / win, 1),
        "gen_cpu_pct": round(100 * (s1["gen"][0] - s0["gen"][0]) / win, 1),
        "machine_busy_pct_of_2": round(100 * busy, 1),
        # what else ran meanwhile (a build, say), in % of one core: a run with much of it is noise
        "others_cpu_pct": round(200 * busy - 100 * (tg_cpu + s1["sim"][0] - s0["sim"][0]
                                                    + s1["gen"][0] - s0["gen"][0]) / win, 1),
        "socket_drops": sock_drops,
        # trunkgate's busiest threads, % of one core each: a media thread near 100 is the ceiling
        "tg_thread_cpu_pct": dict(sorted(
            ((name, round(100 * (t - s0["tg_threads"].get(name, 0.0)) / win, 1))
             for name, t in s1["tg_threads"].items()), key=lambda x: -x[1])[:5]),
        "echo_rx_pps_in_window": round((s1["got"] - s0["got"]) / win),
        "tg_rss_up_kib": s1["rss_kib"],
        "sim_rss_up_kib": s1["sim_rss_kib"],
        "sent": nxt,
        "echoed_back": sum(got),
        "calls_with_loss": sum(1 for x in got if x < npk),
        "rtcp_from_tg": rtcp_in[0],
        "gen_max_lag_ms": round(1000 * max_lag, 2),
        "gen_late_batches_5ms": late5,
        "gen_late_batches_20ms": late20,
        "gen_send_would_block": ring.would_block,
        # send times are interpolated within a sendmmsg call: its length bounds their error
        "gen_sendmmsg_max_us": spans[0] // 1000,
        "gen_sendmmsg_over_1ms": spans[1],
        "rtt_untimed": untimed[0],
        "rtt_samples": lat["count"],
        "rtt_over_200ms": over[0],
        "rtt_mean_us": round(lat["sum"] / lat["count"], 1) if lat["count"] else None,
        "rtt_max_us": lat["max"],
    }
    for q, name in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p999")):
        res["rtt_%s_us" % name] = percentile(hist, over[0], lat["count"] + over[0], q)
    res.update(bad)
    for k in ("RcvbufErrors", "SndbufErrors", "NoPorts", "InErrors"):
        res["udp_" + k] = udp1[k] - udp0[k]
    return res


def sim_media(control):
    """Sums of the simulator's per-call media counters (what the far ends received and echoed)."""
    calls = json.loads(http_get(control + "/calls", timeout=30))
    rin = sum(c.get("media", {}).get("rtp_packets_in", 0) for c in calls)
    rout = sum(c.get("media", {}).get("rtp_packets_out", 0) for c in calls)
    return rin, rout, len(calls)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, required=True)
    ap.add_argument("--duration", type=float, default=20.0, help="media seconds")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of media before the CPU window")
    ap.add_argument("--drain", type=float, default=1.0, help="seconds to keep reading after the last send")
    ap.add_argument("--rate", type=float, default=100.0, help="call set-ups per second")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds between the last answer and the media")
    ap.add_argument("--tg-pid", type=int, required=True)
    ap.add_argument("--sim-pid", type=int, required=True)
    ap.add_argument("--sip", default="127.0.0.1:15060")
    ap.add_argument("--number", default="0501234567")
    ap.add_argument("--user", default="pbx")
    ap.add_argument("--password", default="pbx-password")
    ap.add_argument("--metrics", default="http://127.0.0.1:19060/metrics")
    ap.add_argument("--sim-control", default="http://127.0.0.1:18444")
    args = ap.parse_args()
    if args.calls > 5000 or args.duration > 120 or args.calls < 1:
        sys.exit("refusing: keep loads bounded (1 <= calls <= 5000, duration <= 120 s)")
    if args.warmup >= args.duration - 0.5:
        sys.exit("--warmup must end at least 0.5 s before --duration")
    host, port = args.sip.rsplit(":", 1)
    if not host.startswith("127."):
        sys.exit("loopback only")
    pids = {"tg": args.tg_pid, "sim": args.sim_pid}

    sock, rtcp = bind_pair()
    mmsg.big_buffers(sock)
    sock.setblocking(False)
    rtcp.setblocking(False)
    ua = sip_ua.UserAgent((host, int(port)), args.number, args.user, args.password, sock.getsockname()[1])

    res = {"calls": args.calls, "duration_s": args.duration, "setup_rate": args.rate}
    res["tg_rss_idle_kib"] = rss_kib(pids["tg"])
    res["sim_rss_idle_kib"] = rss_kib(pids["sim"])
    m_before = http_get(args.metrics)
    t = time.monotonic()
    up = ua.place_calls(args.calls, args.rate, t + args.calls / args.rate + 60)
    res["setup_s"] = round(time.monotonic() - t, 2)
    res["calls_up"] = len(up)
    codes = {}
    for c in ua.calls:
        if c.state != "up":
            codes[str(c.code)] = codes.get(str(c.code), 0) + 1
    res["setup_failures"] = codes
    setup = sorted(c.answered_at - c.invite_at for c in up)
    if setup:
        res["setup_ms_p50"] = round(1000 * setup[len(setup) // 2], 1)
        res["setup_ms_max"] = round(1000 * setup[-1], 1)
    if not up:
        print(json.dumps(res), flush=True)
        sys.exit("no call came up")
    end = time.monotonic() + args.settle
    while time.monotonic() < end:
        r, _, _ = select.select([ua.sock], [], [], 0.05)
        if r:
            ua.on_readable(time.monotonic())
        ua.tick(time.monotonic())
    res["tg_rss_calls_up_no_media_kib"] = rss_kib(pids["tg"])
    rin0, rout0, _ = sim_media(args.sim_control)

    res.update(media(ua, up, args, pids, sock, rtcp))

    rin, rout, sim_calls = sim_media(args.sim_control)
    m_after = http_get(args.metrics)
    res["far_end_received"] = rin - rin0
    res["far_end_echoed"] = rout - rout0
    res["sim_calls"] = sim_calls
    sent, back = res["sent"], res["echoed_back"]
    res["loss_to_far_end_pct"] = round(100 * (sent - res["far_end_received"]) / max(1, sent), 4)
    res["loss_back_pct"] = round(100 * (res["far_end_echoed"] - back) / max(1, res["far_end_echoed"]), 4)
    res["loss_round_trip_pct"] = round(100 * (sent - back) / max(1, sent), 4)
    for d in ("pbx_to_carrier", "carrier_to_pbx"):
        lbl = 'direction="%s"' % d
        res["tg_" + d] = (metric(m_after, "trunkgate_rtp_packets_total", lbl)
                          - metric(m_before, "trunkgate_rtp_packets_total", lbl))
    res["tg_seq_gaps"] = (metric(m_after, "trunkgate_rtp_lost_packets_total")
                          - metric(m_before, "trunkgate_rtp_lost_packets_total"))
    res["ended_by_tg_before_hangup"] = sum(1 for c in up if c.ended_by_remote)

    ua.hang_up_all(time.monotonic() + 20)
    res["hung_up"] = sum(1 for c in up if c.state == "ended")
    time.sleep(2)
    res["tg_rss_after_kib"] = rss_kib(pids["tg"])
    res["tg_active_calls_after"] = metric(http_get(args.metrics), "trunkgate_active_calls")
    n = len(up)
    res["tg_rss_per_call_kib"] = round((res["tg_rss_up_kib"] - res["tg_rss_idle_kib"]) / n, 1)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
