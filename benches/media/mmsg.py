"""Batched UDP for the media load generator: sendmmsg(2) and recvmmsg(2) through ctypes, on
arrays of message headers built once, so the generator's CPU goes to the kernel and not to the
interpreter. Received datagrams carry the kernel's receive timestamp (SO_TIMESTAMPNS) and their
source address. x86_64 Linux struct layouts; everything here is loopback-only by its callers.
"""

import ctypes
import errno
import os
import socket
import struct

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
LIBC.recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]

# struct mmsghdr { struct msghdr { name, namelen, iov, iovlen, control, controllen, flags }; len }
MMSG = struct.Struct("<QI4xQQQQi4xI4x")
MMSG_SIZE = MMSG.size  # 64
NAMELEN_OFF = 8
CONTROLLEN_OFF = 40
LEN_OFF = 56
IOV = struct.Struct("<QQ")
MSG_DONTWAIT = 0x40
SO_TIMESTAMPNS = 35  # SO_TIMESTAMPNS_OLD: 64-bit timespec on x86_64
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
CONTROL_SIZE = 64  # one cmsghdr (16) + timespec (16), with room to spare
CMSG_TS = struct.Struct("<QiiqQ")  # cmsg_len, level, type, tv_sec, tv_nsec


def address_of(buf):
    """Address of a bytearray's storage (it must stay alive and never be resized)."""
    return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))


def sockaddr_in(host, port):
    return struct.pack("<H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton(host) + bytes(8)


def big_buffers(sock, size=32 << 20):
    """Socket buffers large enough that the generator is never the one dropping packets."""
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, size)


class SendRing:
    """A ring of `slots` outgoing datagrams of `size` bytes with their headers built once.
    Position p always goes to `dests[p % len(dests)]`, so a caller whose ring length is a
    multiple of the destination count only rewrites packet bytes before sending."""

    def __init__(self, slots, size, dests):
        if slots % len(dests):
            raise ValueError("ring length must be a multiple of the destination count")
        self.slots, self.size = slots, size
        self.packets = bytearray(slots * size)
        self.names = bytearray(b"".join(sockaddr_in(*d) for d in dests))
        self.iov = bytearray(IOV.size * slots)
        self.msgs = bytearray(MMSG_SIZE * slots)
        pk, nm, io = address_of(self.packets), address_of(self.names), address_of(self.iov)
        n = len(dests)
        for p in range(slots):
            IOV.pack_into(self.iov, IOV.size * p, pk + size * p, size)
            MMSG.pack_into(self.msgs, MMSG_SIZE * p, nm + 16 * (p % n), 16, io + IOV.size * p, 1, 0, 0, 0, 0)
        self.base = address_of(self.msgs)
        self.would_block = 0

    def send(self, fd, a, b):
        """Sends ring positions [a, b) (b <= slots). Returns how many left (stops early when the
        socket's buffer is full)."""
        done = a
        while done < b:
            r = LIBC.sendmmsg(fd, self.base + MMSG_SIZE * done, b - done, 0)
            if r < 0:
                e = ctypes.get_errno()
                if e == errno.EINTR:
                    continue
                if e in (errno.EAGAIN, errno.ENOBUFS):
                    self.would_block += 1
                    break
                raise OSError(e, "sendmmsg: " + os.strerror(e))
            done += r
        return done - a


class RecvBatch:
    """Up to `slots` datagrams per recvmmsg, each with its source and kernel receive time."""

    def __init__(self, slots=256, size=2048):
        self.slots, self.size = slots, size
        self.buf = bytearray(slots * size)
        self.names = bytearray(16 * slots)
        self.control = bytearray(CONTROL_SIZE * slots)
        self.iov = bytearray(IOV.size * slots)
        self.msgs = bytearray(MMSG_SIZE * slots)
        b, nm, ct, io = (address_of(x) for x in (self.buf, self.names, self.control, self.iov))
        for j in range(slots):
            IOV.pack_into(self.iov, IOV.size * j, b + size * j, size)
            MMSG.pack_into(self.msgs, MMSG_SIZE * j, nm + 16 * j, 16, io + IOV.size * j, 1,
                           ct + CONTROL_SIZE * j, CONTROL_SIZE, 0, 0)
        self.base = address_of(self.msgs)
        self._len = struct.Struct("<I").unpack_from
        self._port = struct.Struct("!H").unpack_from

    @staticmethod
    def enable_timestamps(sock):
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)

    def recv(self, fd):
        """Number of datagrams now in slots 0..m-1 (0 when none is waiting)."""
        m = LIBC.recvmmsg(fd, self.base, self.slots, MSG_DONTWAIT, None)
        if m < 0:
            e = ctypes.get_errno()
            if e in (errno.EAGAIN, errno.EINTR):
                return 0
            raise OSError(e, "recvmmsg: " + os.strerror(e))
        return m

    def length(self, j):
        return self._len(self.msgs, MMSG_SIZE * j + LEN_OFF)[0]

    def source_port(self, j):
        return self._port(self.names, 16 * j + 2)[0]

    def rx_ns(self, j):
        """Kernel receive time of slot j (CLOCK_REALTIME ns), 0 if it came without one. The
        kernel shrinks msg_controllen to what it wrote: it is restored for the next call."""
        off = MMSG_SIZE * j + CONTROLLEN_OFF
        used = struct.unpack_from("<Q", self.msgs, off)[0]
        struct.pack_into("<Q", self.msgs, off, CONTROL_SIZE)
        struct.pack_into("<I", self.msgs, MMSG_SIZE * j + NAMELEN_OFF, 16)
        if used < CMSG_TS.size:
            return 0
        _, level, typ, sec, nsec = CMSG_TS.unpack_from(self.control, CONTROL_SIZE * j)
        if level != socket.SOL_SOCKET or typ != SCM_TIMESTAMPNS:
            return 0
        return sec * 1_000_000_000 + nsec
