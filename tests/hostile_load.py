#!/usr/bin/env python3
"""Hostile-peer experiments of issue 18 against a running seata-tc, with a canary TM.

The canary (from 127.0.0.1) registers as a TM and does begin + commit every 100 ms; the
experiment runs meanwhile and the canary's latencies are reported with it:

  headers  N connections (from 127.0.0.2-127.0.0.9) each send one 16-byte frame header
           claiming an 8,000,000-byte frame and nothing more; reports the TC's RSS
           (VmRSS of --pid) before and with them.
  holders  N connections (from 127.0.1.x) never register and send a PING every 8 s; then a
           new client (127.0.0.1) connects, registers and begins: reports how long it waited
           (capped at --cap seconds). Run the TC with max-connections below N.
  flood    a registered TM (127.0.0.3) sends N GlobalBegins without reading any answer, then
           a PING every 5 s for --hold seconds: reports whether and when the TC closed it and
           the TC's largest RSS meanwhile.
  lockkey  an RM registers one AT branch whose lock key holds N rows (t:1,2,...,N) and a
           RegisterRM with N resource ids: reports their answers' times and failures.

Usage: python3 tests/hostile_load.py --tc 127.0.0.1:8091 --pid PID headers --n 2000
Needs only the standard library (Linux: every 127.x.y.z address is loopback).
"""

import argparse
import asyncio
import struct
import time

MAGIC = b"\xda\xda\x01"
REQUEST, RESPONSE, PING = 0, 1, 3


def str16(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def frame(msg_type, request_id, body=b""):
    return (
        MAGIC
        + struct.pack(">ih", 16 + len(body), 16)
        + bytes([msg_type, 1, 0])
        + struct.pack(">i", request_id)
        + body
    )


def register_tm():
    return struct.pack(">h", 101) + str16("1.2.0") + str16("canary") + str16("g") + str16("")


def begin_body():
    return struct.pack(">hi", 1, 60000) + str16("canary")


def commit_body(xid):
    return struct.pack(">h", 7) + str16(xid) + str16("")


async def read_frame(reader):
    head = await reader.readexactly(16)
    full_len, head_len = struct.unpack(">ih", head[3:9])
    rest = await reader.readexactly(full_len - 16)
    request_id = struct.unpack(">i", head[12:16])[0]
    return head[9], request_id, rest[head_len - 16:]


def str32(s):
    b = s.encode()
    return struct.pack(">i", len(b)) + b


def register_rm(resources):
    return (struct.pack(">h", 103) + str16("1.2.0") + str16("hostile") + str16("g")
            + str16("") + str32(resources))


def branch_register(xid, resource, lock_key):
    return (struct.pack(">h", 11) + str16(xid) + bytes([0]) + str16(resource)
            + str32(lock_key) + str32(""))


def result_ok(body):
    """resultCode of a transaction response body (after its type code)."""
    return body[2] == 1


def begin_xid(body):
    """The xid of a GlobalBeginResponse body, or None if it failed."""
    pos = 2
    ok = body[pos]
    pos += 1
    if ok == 0:
        (n,) = struct.unpack(">h", body[pos:pos + 2])
        pos += 2 + n
    pos += 1  # exception code
    (n,) = struct.unpack(">h", body[pos:pos + 2])
    return body[pos + 2:pos + 2 + n].decode() if ok == 1 else None


class Tm:
    """A registered TM connection answering one request at a time."""

    def __init__(self, reader, writer):
        self.reader, self.writer, self.next_id = reader, writer, 1

    @classmethod
    async def connect(cls, host, port, local="127.0.0.1"):
        r, w = await asyncio.open_connection(host, port, local_addr=(local, 0))
        tm = cls(r, w)
        await tm.call(register_tm())
        return tm

    async def call(self, body):
        self.next_id += 1
        rid = self.next_id
        self.writer.write(frame(2, rid, body))
        await self.writer.drain()
        while True:
            kind, got, reply = await read_frame(self.reader)
            if kind == PING:
                self.writer.write(frame(4, got))
            elif got == rid:
                return reply


async def canary(host, port, stop, latencies, errors):
    tm = await Tm.connect(host, port)
    while not stop.is_set():
        started = time.monotonic()
        try:
            xid = begin_xid(await asyncio.wait_for(tm.call(begin_body()), 30))
            if xid:
                await asyncio.wait_for(tm.call(commit_body(xid)), 30)
            else:
                errors.append("begin failed")
        except Exception as e:  # noqa: BLE001 - reported, not handled
            errors.append(repr(e))
            tm = await Tm.connect(host, port)
        latencies.append((time.monotonic() - started) * 1000)
        await asyncio.sleep(0.1)


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def summary(name, lat, errors):
    if not lat:
        return f"{name}: no canary round"
    s = sorted(lat)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731
    return (f"{name}: canary rounds={len(s)} p50={pick(0.5):.1f}ms p99={pick(0.99):.1f}ms "
            f"max={s[-1]:.1f}ms errors={len(errors)}")


async def headers(host, port, pid, n, hold):
    stop, lat, err = asyncio.Event(), [], []
    task = asyncio.create_task(canary(host, port, stop, lat, err))
    await asyncio.sleep(1)
    before = rss_mb(pid)
    conns = []
    for i in range(n):
        try:
            r, w = await asyncio.open_connection(
                host, port, local_addr=(f"127.0.0.{2 + i % 8}", 0))
        except OSError as e:
            print(f"connection {i} failed: {e}")
            break
        w.write(MAGIC + struct.pack(">ih", 8_000_000, 16) + bytes([0, 1, 0]) + b"\0\0\0\1")
        conns.append(w)
    await asyncio.sleep(hold)
    during = rss_mb(pid)
    open_now = sum(1 for w in conns if not w.is_closing())
    stop.set()
    await task
    print(f"headers: n={len(conns)} rss_before={before:.1f}MB rss_with_headers={during:.1f}MB")
    print(summary("headers", lat, err))
    for w in conns:
        w.close()
    return open_now


async def holders(host, port, n, cap):
    stop, lat, err = asyncio.Event(), [], []
    task = asyncio.create_task(canary(host, port, stop, lat, err))
    await asyncio.sleep(1)
    conns = []

    async def hold(i):
        try:
            r, w = await asyncio.open_connection(
                host, port, local_addr=(f"127.0.1.{1 + i % 200}", 0))
        except OSError:
            return
        conns.append(w)
        while not stop.is_set():
            w.write(frame(PING, i + 1))
            try:
                await w.drain()
            except OSError:
                return
            await asyncio.sleep(8)

    tasks = [asyncio.create_task(hold(i)) for i in range(n)]
    await asyncio.sleep(2)
    started = time.monotonic()
    try:
        tm = await asyncio.wait_for(Tm.connect(host, port), cap)
        xid = begin_xid(await asyncio.wait_for(tm.call(begin_body()), cap))
        waited = f"{(time.monotonic() - started) * 1000:.1f}ms (begin {'ok' if xid else 'failed'})"
    except asyncio.TimeoutError:
        waited = f"> {cap}s (timed out)"
    stop.set()
    for t in tasks:
        t.cancel()
    await task
    print(f"holders: n={n} new client waited {waited}")
    print(summary("holders", lat, err))
    for w in conns:
        w.close()


async def flood(host, port, pid, n, hold):
    stop, lat, err = asyncio.Event(), [], []
    task = asyncio.create_task(canary(host, port, stop, lat, err))
    await asyncio.sleep(1)
    before = rss_mb(pid)
    r, w = await asyncio.open_connection(host, port, local_addr=("127.0.0.3", 0))
    w.write(frame(2, 1, register_tm()))
    await w.drain()
    await read_frame(r)
    started = time.monotonic()
    burst = b"".join(frame(2, 10 + i, begin_body()) for i in range(1000))
    closed_at, peak = None, before
    sent = 0
    try:
        for _ in range(n // 1000):
            w.write(burst)
            await asyncio.wait_for(w.drain(), hold)
            sent += 1000
            peak = max(peak, rss_mb(pid))
        until = time.monotonic() + hold
        while time.monotonic() < until:
            w.write(frame(PING, 5))
            await asyncio.wait_for(w.drain(), hold)
            peak = max(peak, rss_mb(pid))
            await asyncio.sleep(min(5, max(0.0, until - time.monotonic())))
    except (OSError, asyncio.TimeoutError) as e:
        closed_at = time.monotonic() - started
        closed_how = type(e).__name__
    stop.set()
    await task
    state = (f"closed by the TC after {closed_at:.1f}s ({closed_how})" if closed_at is not None
             else f"still open after {time.monotonic() - started:.1f}s")
    print(f"flood: begins_sent={sent} connection {state}; rss_before={before:.1f}MB "
          f"rss_peak={peak:.1f}MB")
    print(summary("flood", lat, err))
    w.close()


async def lockkey(host, port, n):
    # Built before the canary starts: building them would stall this process's own loop.
    key = "t:" + ",".join(str(i) for i in range(1, n + 1))
    many = register_rm(",".join(f"r{i}" for i in range(n)))
    tm = await Tm.connect(host, port, "127.0.0.4")
    xid = begin_xid(await tm.call(begin_body()))
    big = branch_register(xid, "res", key)
    stop, lat, err = asyncio.Event(), [], []
    task = asyncio.create_task(canary(host, port, stop, lat, err))
    await asyncio.sleep(1)
    r, w = await asyncio.open_connection(host, port, local_addr=("127.0.0.5", 0))
    rm = Tm(r, w)
    await rm.call(register_rm("res"))
    started = time.monotonic()
    ok = result_ok(await rm.call(big))
    reg_ms = (time.monotonic() - started) * 1000
    r2, w2 = await asyncio.open_connection(host, port, local_addr=("127.0.0.6", 0))
    rm2 = Tm(r2, w2)
    started = time.monotonic()
    reply = await rm2.call(many)
    rm_ms = (time.monotonic() - started) * 1000
    identified = reply[2] == 1
    await asyncio.sleep(1)
    stop.set()
    await task
    print(f"lockkey: n={n} key_bytes={len(key)} branch_register={'ok' if ok else 'refused'} "
          f"in {reg_ms:.1f}ms; register_rm identified={identified} in {rm_ms:.1f}ms")
    print(summary("lockkey", lat, err))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tc", required=True, help="host:port of seata-tc")
    p.add_argument("--pid", type=int, help="seata-tc's pid (headers: RSS)")
    p.add_argument("experiment", choices=["headers", "holders", "flood", "lockkey"])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--hold", type=float, default=5,
                   help="headers: seconds before measuring; flood: seconds of PINGs")
    p.add_argument("--cap", type=float, default=20, help="holders: longest wait measured, s")
    a = p.parse_args()
    host, port = a.tc.rsplit(":", 1)
    if a.experiment == "headers":
        asyncio.run(headers(host, int(port), a.pid, a.n, a.hold))
    elif a.experiment == "holders":
        asyncio.run(holders(host, int(port), a.n, a.cap))
    elif a.experiment == "flood":
        asyncio.run(flood(host, int(port), a.pid, a.n, a.hold))
    else:
        asyncio.run(lockkey(host, int(port), a.n))


if __name__ == "__main__":
    main()
