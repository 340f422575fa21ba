"""A fixed delay for packets, in user space: holds every packet an iptables NFQUEUE rule hands it for
``--delay-ms`` and then lets it through, in the order they arrived.

For kernels built without ``sch_netem`` (``tc qdisc add ... netem`` answers "Specified qdisc kind is unknown").
Run it in the network namespace whose rule feeds the queue (``ip netns exec NS python -m bench.netdelay``); it
prints ``ready`` once bound, then runs until killed or ``--max-seconds`` pass. Only the packet id is copied to user
space (NFQNL_COPY_META); the packets themselves never leave the kernel, so TCP behaves exactly as on a slow link.
A packet is accepted by a batch verdict covering every id up to the newest one that is due: packets are held in
arrival order and all for the same time, so everything before a due packet is due too.
"""

from __future__ import annotations

import argparse
import collections
import os
import select
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_CONFIG, NFQNL_MSG_VERDICT_BATCH = 0, 2, 3
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NF_ACCEPT = 1
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLMSG_ERROR = 2
SOL_NETLINK, NETLINK_NO_ENOBUFS = 270, 5


def _attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _message(msg_type: int, queue: int, attrs: bytes, seq: int, flags: int = NLM_F_REQUEST) -> bytes:
    body = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack(">H", queue) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type, flags, seq, 0) + body


class DelayQueue:
    def __init__(self, queue: int, delay_s: float) -> None:
        self.queue, self.delay_s = queue, delay_s
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        self.sock.bind((0, 0))
        self.seq = 0
        self.held: collections.deque[tuple[float, int]] = collections.deque()
        self.packets = 0

    def _request(self, msg_type: int, attrs: bytes) -> None:
        self.seq += 1
        self.sock.send(_message(msg_type, self.queue, attrs, self.seq, NLM_F_REQUEST | NLM_F_ACK))
        data = self.sock.recv(65536)
        length, kind = struct.unpack_from("=IH", data, 0)
        if kind == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", data, 16)
            if error:
                raise OSError(-error, f"nfnetlink_queue config: {os.strerror(-error)}")

    def bind(self, maxlen: int = 65536) -> None:
        self._request(NFQNL_MSG_CONFIG, _attr(NFQA_CFG_CMD, struct.pack("=BxH", NFQNL_CFG_CMD_BIND, 0)))
        self._request(NFQNL_MSG_CONFIG, _attr(NFQA_CFG_PARAMS, struct.pack(">IB", 0, NFQNL_COPY_META)) +
                      _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack(">I", maxlen)))

    def _receive(self, now: float) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 20, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            offset = 0
            while offset + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                if length < 16:
                    return
                if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    pos, end = offset + 20, offset + length
                    while pos + 4 <= end:
                        alen, atype = struct.unpack_from("=HH", data, pos)
                        if alen < 4:
                            break
                        if atype & 0x3FFF == NFQA_PACKET_HDR:
                            (packet_id,) = struct.unpack_from(">I", data, pos + 4)
                            self.held.append((now + self.delay_s, packet_id))
                            self.packets += 1
                            break
                        pos += (alen + 3) & ~3
                offset += (length + 3) & ~3

    def _release_due(self, now: float) -> None:
        last = None
        while self.held and self.held[0][0] <= now:
            last = self.held.popleft()[1]
        if last is not None:
            self.seq += 1
            self.sock.send(_message(NFQNL_MSG_VERDICT_BATCH, self.queue,
                                    _attr(NFQA_VERDICT_HDR, struct.pack(">II", NF_ACCEPT, last)), self.seq))

    def run(self, until: float) -> None:
        while True:
            now = time.monotonic()
            if now >= until:
                return
            wait = min(until - now, self.held[0][0] - now if self.held else 1.0)
            readable, _, _ = select.select([self.sock], [], [], max(0.0, wait))
            now = time.monotonic()
            if readable:
                self._receive(now)
            self._release_due(now)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.netdelay", description=__doc__.split("\n")[0])
    parser.add_argument("--queue", type=int, required=True, help="the NFQUEUE number the iptables rule uses")
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    args = parser.parse_args(argv)
    q = DelayQueue(args.queue, args.delay_ms / 1000)
    q.bind()
    print("ready", flush=True)
    try:
        q.run(time.monotonic() + args.max_seconds)
    except KeyboardInterrupt:
        pass
    print(f"packets delayed: {q.packets}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
