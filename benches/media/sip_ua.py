"""A minimal PBX-side SIP user agent for the media benchmark: places N calls over one UDP socket
(INVITE, digest challenge, authenticated INVITE, 200, ACK), keeps them up, and hangs them up
(BYE). Enough of RFC 3261 for a trunk call toward trunkgate on loopback: retransmissions of
INVITE and BYE, ACK for every final response (again for a retransmitted 200), a 200 for any
request trunkgate sends inside a dialog. Each call offers plain RTP/AVP PCMU (+ telephone-event)
at one address and port given by the caller, and records the port of trunkgate's answer.
"""

import hashlib
import os
import re
import select
import socket
import time

RETRANSMIT = 0.5    # s between retransmissions of an unanswered INVITE or BYE (T1)
GIVE_UP = 16.0      # s without a final response: the transaction failed (64*T1 would be 32 s)
HEADER_RE = re.compile(r"^([A-Za-z-]+)\s*:\s*(.*)$")
COMPACT = {"i": "call-id", "v": "via", "f": "from", "t": "to", "m": "contact", "l": "content-length",
           "c": "content-type"}
PARAM_RE = re.compile(r'(\w+)\s*=\s*("([^"]*)"|[^\s,]+)')


def parse(data):
    """(first line, {lower-case name: [values]}, body) of a SIP datagram, or None."""
    try:
        text = data.decode("utf-8", "replace")
    except Exception:
        return None
    head, sep, body = text.partition("\r\n\r\n")
    if not sep:
        return None
    lines = head.split("\r\n")
    headers = {}
    for line in lines[1:]:
        m = HEADER_RE.match(line)
        if m:
            name = m.group(1).lower()
            headers.setdefault(COMPACT.get(name, name), []).append(m.group(2).strip())
    return lines[0], headers, body


def tag_of(value):
    m = re.search(r";\s*tag=([^;>\s]+)", value)
    return m.group(1) if m else None


def uri_of(value):
    m = re.search(r"<([^>]+)>", value)
    return m.group(1) if m else value.split(";")[0].strip()


def digest(challenge, method, uri, user, password):
    """The Authorization value answering one `Digest ...` challenge (MD5 or SHA-256)."""
    params = {k.lower(): (q if v.startswith('"') else v) for k, v, q in PARAM_RE.findall(challenge)}
    alg = params.get("algorithm", "MD5").upper()
    h = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}.get(alg)
    if h is None:
        return None
    H = lambda s: h(s.encode()).hexdigest()
    realm, nonce = params.get("realm", ""), params.get("nonce", "")
    ha1 = H("%s:%s:%s" % (user, realm, password))
    ha2 = H("%s:%s" % (method, uri))
    parts = ['username="%s"' % user, 'realm="%s"' % realm, 'nonce="%s"' % nonce, 'uri="%s"' % uri,
             "algorithm=%s" % alg]
    qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
    if "auth" in qops:
        cnonce, nc = os.urandom(8).hex(), "00000001"
        resp = H("%s:%s:%s:%s:auth:%s" % (ha1, nonce, nc, cnonce, ha2))
        parts += ["qop=auth", "nc=%s" % nc, 'cnonce="%s"' % cnonce]
    else:
        resp = H("%s:%s:%s" % (ha1, nonce, ha2))
    parts.append('response="%s"' % resp)
    if "opaque" in params:
        parts.append('opaque="%s"' % params["opaque"])
    return "Digest " + ", ".join(parts)


class Call:
    def __init__(self, index, ua):
        self.index = index
        self.call_id = "mb-%s-%d@127.0.0.1" % (ua.run_id, index)
        self.from_tag = "f%d%s" % (index, ua.run_id)
        self.to_tag = None
        self.remote_uri = None          # Contact of the 200: Request-URI of ACK and BYE
        self.cseq = 1
        self.branch = None
        self.state = "new"              # new, inviting, up, failed, hanging_up, ended
        self.last_msg = None            # the request to retransmit
        self.sent_at = self.first_sent = 0.0
        self.auth_done = False
        self.rtp_port = None            # trunkgate's RTP port for this call (its answer's m= line)
        self.code = None                # final response code of the INVITE
        self.invite_at = self.answered_at = None
        self.ended_by_remote = False


class UserAgent:
    def __init__(self, target, number, user, password, media_port, local="127.0.0.1"):
        self.target = target
        self.number = number
        self.user, self.password = user, password
        self.media_port = media_port
        self.run_id = "%x%x" % (os.getpid(), int(time.time() * 1000) & 0xFFFFFF)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((local, 0))
        self.sock.setblocking(False)
        self.local = self.sock.getsockname()
        self.calls = []
        self.by_id = {}
        self.request_uri = "sip:%s@%s:%d" % (number, target[0], target[1])
        self.unexpected = 0

    # ------------------------------------------------------------------ messages
    def _sdp(self, call):
        return ("v=0\r\no=pbx %d 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"
                "m=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
                "a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n") % (
            1000 + call.index, self.local[0], self.local[0], self.media_port)

    def _request(self, call, method, uri, cseq, branch, extra=(), body=""):
        to = "<sip:%s@%s:%d>" % (self.number, self.target[0], self.target[1])
        if call.to_tag:
            to += ";tag=" + call.to_tag
        lines = [
            "%s %s SIP/2.0" % (method, uri),
            "Via: SIP/2.0/UDP %s:%d;branch=%s;rport" % (self.local[0], self.local[1], branch),
            "Max-Forwards: 70",
            "From: <sip:100@%s:%d>;tag=%s" % (self.local[0], self.local[1], call.from_tag),
            "To: " + to,
            "Call-ID: " + call.call_id,
            "CSeq: %d %s" % (cseq, method),
            "Contact: <sip:100@%s:%d>" % self.local,
            "User-Agent: trunkgate-mediabench",
        ]
        lines += list(extra)
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append("Content-Length: %d" % len(body.encode()))
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    def _send(self, data):
        try:
            self.sock.sendto(data, self.target)
        except BlockingIOError:
            pass  # a retransmission covers it

    def _new_branch(self):
        return "z9hG4bK" + os.urandom(8).hex()

    def _invite(self, call, auth=None, now=None):
        call.branch = self._new_branch()
        extra = [auth] if auth else []
        call.last_msg = self._request(call, "INVITE", self.request_uri, call.cseq, call.branch, extra,
                                      self._sdp(call))
        call.sent_at = call.first_sent = now
        self._send(call.last_msg)

    def _ack(self, call, uri, cseq, branch):
        self._send(self._request(call, "ACK", uri, cseq, branch))

    # ------------------------------------------------------------------ call control
    def start_call(self, now):
        call = Call(len(self.calls), self)
        self.calls.append(call)
        self.by_id[call.call_id] = call
        call.state = "inviting"
        call.invite_at = now
        self._invite(call, now=now)
        return call

    def hang_up(self, call, now):
        if call.state != "up":
            return
        call.state = "hanging_up"
        call.cseq += 1
        call.branch = self._new_branch()
        call.last_msg = self._request(call, "BYE", call.remote_uri, call.cseq, call.branch)
        call.sent_at = call.first_sent = now
        self._send(call.last_msg)

    def tick(self, now):
        """Retransmits what is unanswered; gives up on transactions too old."""
        for call in self.calls:
            if call.state not in ("inviting", "hanging_up") or call.last_msg is None:
                continue
            if now - call.first_sent > GIVE_UP:
                call.code = call.code or 408
                call.state = "failed" if call.state == "inviting" else "ended"
                call.last_msg = None
            elif now - call.sent_at >= RETRANSMIT:
                call.sent_at = now
                self._send(call.last_msg)

    def on_readable(self, now):
        while True:
            try:
                data, src = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            msg = parse(data)
            if msg is None:
                self.unexpected += 1
                continue
            first, headers, body = msg
            if first.startswith("SIP/2.0 "):
                self._on_response(first, headers, body, now)
            else:
                self._on_request(first, headers, src)

    def _on_response(self, first, headers, body, now):
        try:
            code = int(first.split()[1])
        except (IndexError, ValueError):
            self.unexpected += 1
            return
        call = self.by_id.get((headers.get("call-id") or [""])[0])
        cseq = (headers.get("cseq") or ["0 X"])[0].split()
        if call is None or len(cseq) != 2:
            self.unexpected += 1
            return
        num, method = int(cseq[0]), cseq[1].upper()
        to = (headers.get("to") or [""])[0]
        if method == "INVITE":
            if code < 200:
                if call.state == "inviting" and num == call.cseq:
                    call.last_msg = None  # provisional: no more retransmissions
                return
            if code >= 300:
                # ACK for a non-2xx final goes in the INVITE's own transaction (same branch)
                saved = call.to_tag
                call.to_tag = tag_of(to)
                self._ack(call, self.request_uri, num, call.branch)
                call.to_tag = saved
                if call.state != "inviting" or num != call.cseq:
                    return
                if code in (401, 407) and not call.auth_done:
                    name = "proxy-authenticate" if code == 407 else "www-authenticate"
                    header = "Proxy-Authorization" if code == 407 else "Authorization"
                    challenges = headers.get(name, [])
                    value = None
                    for alg in ("MD5", "SHA-256"):
                        for ch in challenges:
                            if re.search(r"algorithm\s*=\s*\"?%s\b" % alg, ch, re.I) or (
                                    alg == "MD5" and "algorithm" not in ch.lower()):
                                value = digest(ch, "INVITE", self.request_uri, self.user, self.password)
                                break
                        if value:
                            break
                    if value:
                        call.auth_done = True
                        call.cseq += 1
                        self._invite(call, "%s: %s" % (header, value), now)
                        return
                call.code = code
                call.state = "failed"
                call.last_msg = None
                return
            # 2xx: a new ACK (its own branch) to the Contact, each time a 200 arrives
            call.to_tag = call.to_tag or tag_of(to)
            contact = (headers.get("contact") or [""])[0]
            call.remote_uri = call.remote_uri or uri_of(contact) or self.request_uri
            self._ack(call, call.remote_uri, num, self._new_branch())
            if call.state == "inviting":
                m = re.search(r"^m=audio (\d+) RTP/AVP", body, re.M)
                call.code = code
                call.last_msg = None
                if m:
                    call.rtp_port = int(m.group(1))
                    call.state = "up"
                    call.answered_at = now
                else:
                    call.state = "failed"
            return
        if method == "BYE" and call.state == "hanging_up" and num == call.cseq and code >= 200:
            call.state = "ended"
            call.last_msg = None

    def _on_request(self, first, headers, src):
        method = first.split(" ", 1)[0].upper()
        if method == "ACK":
            return
        reply = ["SIP/2.0 200 OK"]
        for name in ("via", "from", "to", "call-id", "cseq"):
            for v in headers.get(name, []):
                reply.append("%s: %s" % (name.title() if name != "call-id" else "Call-ID", v))
        reply.append("Content-Length: 0")
        try:
            self.sock.sendto(("\r\n".join(reply) + "\r\n\r\n").encode(), src)
        except BlockingIOError:
            pass
        call = self.by_id.get((headers.get("call-id") or [""])[0])
        if call is not None and method == "BYE" and call.state in ("up", "hanging_up"):
            call.state = "ended"
            call.ended_by_remote = True
            call.last_msg = None

    # ------------------------------------------------------------------ whole phases
    def place_calls(self, n, rate, deadline, in_flight=200):
        """Places n calls at `rate` per second (at most `in_flight` unanswered at once); returns
        when each is up or failed, or at `deadline` (monotonic)."""
        t0 = time.monotonic()
        started = 0
        while time.monotonic() < deadline:
            now = time.monotonic()
            pending = sum(1 for c in self.calls if c.state == "inviting")
            while started < n and started < (now - t0) * rate + 1 and pending < in_flight:
                self.start_call(now)
                started += 1
                pending += 1
            if started == n and pending == 0:
                break
            r, _, _ = select.select([self.sock], [], [], 0.01)
            now = time.monotonic()
            if r:
                self.on_readable(now)
            self.tick(now)
        return [c for c in self.calls if c.state == "up"]

    def hang_up_all(self, deadline):
        now = time.monotonic()
        for c in self.calls:
            self.hang_up(c, now)
        while time.monotonic() < deadline:
            if not any(c.state == "hanging_up" for c in self.calls):
                break
            r, _, _ = select.select([self.sock], [], [], 0.05)
            now = time.monotonic()
            if r:
                self.on_readable(now)
            self.tick(now)
