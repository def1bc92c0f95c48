"""A small memcached text-protocol client for compat-tests/memcached.sh (stdlib only).

usage: memcache_client.py HOST PORT [--keys N] [--conns C] [--seed S]

C threads, each over its own connection, own the keys i with i % C == thread. Each thread stores its keys
with random flags and random binary values (0 B to 256 KiB; most small), pipelining the sets in batches and
checking every reply; reads them back with single and multi-key gets; deletes, appends and increments a few;
and compares everything byte for byte. Exit 0 when every value matched, 1 otherwise.
"""

import argparse
import random
import socket
import sys
import threading
import time


class ProtocolError(Exception):
    pass


class Conn:
    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ProtocolError("connection closed by the server")
        self.buf += chunk

    def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return out
            self._fill()

    def exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def expect(self, want):
        got = self.line()
        if got != want:
            raise ProtocolError("expected %r, got %r" % (want, got[:200]))

    def get_many(self, keys, cmd=b"get"):
        """Returns {key: (flags, value)} for the keys the server has."""
        self.send(cmd + b" " + b" ".join(keys) + b"\r\n")
        out = {}
        while True:
            hdr = self.line()
            if hdr == b"END":
                return out
            parts = hdr.split()
            if len(parts) < 4 or parts[0] != b"VALUE":
                raise ProtocolError("bad get reply line %r" % hdr[:200])
            key, flags, n = parts[1], int(parts[2]), int(parts[3])
            data = self.exact(n)
            if self.exact(2) != b"\r\n":
                raise ProtocolError("value of %r not followed by CRLF" % key)
            out[key] = (flags, data)


def value_size(rng, i):
    if i % 997 == 0:
        return 0
    if i % 101 == 0:
        return rng.randint(64 * 1024, 256 * 1024)
    if i % 7 == 0:
        return rng.randint(2048, 16384)
    return rng.randint(1, 2048)


def worker(args, tid, keys, results):
    rng = random.Random(args.seed * 1000 + tid)
    errors = []
    try:
        c = Conn(args.host, args.port, args.timeout)
        items = {}
        for i in keys:
            k = b"compat:%d:%08d" % (args.seed, i)
            items[k] = (rng.randint(0, 65535), rng.randbytes(value_size(rng, i)))
        order = list(items)

        # Pipelined sets, 50 per batch, every reply checked.
        for b in range(0, len(order), 50):
            batch = order[b:b + 50]
            req = bytearray()
            for k in batch:
                flags, v = items[k]
                req += b"set %s %d 0 %d\r\n" % (k, flags, len(v)) + v + b"\r\n"
            c.send(bytes(req))
            for _ in batch:
                c.expect(b"STORED")

        def check(k, got, what):
            if k not in got:
                errors.append("%s: key %r missing" % (what, k))
                return
            f, v = got[k]
            wf, wv = items[k]
            if f != wf or v != wv:
                errors.append("%s: key %r: flags %d/%d, %d/%d bytes, equal=%s"
                              % (what, k, f, wf, len(v), len(wv), v == wv))

        # Single gets of a random quarter, multi-gets (20 keys) of everything.
        for k in rng.sample(order, len(order) // 4):
            check(k, c.get_many([k]), "get")
        shuffled = order[:]
        rng.shuffle(shuffled)
        for b in range(0, len(shuffled), 20):
            batch = shuffled[b:b + 20]
            got = c.get_many(batch, b"gets" if b % 40 == 0 else b"get")
            for k in batch:
                check(k, got, "multi-get")
            if len(got) != len(batch):
                errors.append("multi-get returned %d values for %d keys" % (len(got), len(batch)))

        # Delete, append, incr.
        for k in order[:10]:
            c.send(b"delete %s\r\n" % k)
            c.expect(b"DELETED")
            if c.get_many([k]):
                errors.append("key %r still there after delete" % k)
            del items[k]
        for k in order[10:20]:
            extra = rng.randbytes(100)
            c.send(b"append %s 0 0 %d\r\n%s\r\n" % (k, len(extra), extra))
            c.expect(b"STORED")
            items[k] = (items[k][0], items[k][1] + extra)
            check(k, c.get_many([k]), "append")
        ck = b"compat:%d:counter:%d" % (args.seed, tid)
        c.send(b"set %s 0 0 1\r\n0\r\n" % ck)
        c.expect(b"STORED")
        for n in range(1, 101):
            c.send(b"incr %s 1\r\n" % ck)
            c.expect(b"%d" % n)
        c.sock.close()
    except (OSError, ProtocolError) as e:
        errors.append("thread %d: %s: %s" % (tid, type(e).__name__, e))
    results[tid] = (len(keys), errors)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--keys", type=int, default=10000)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()

    results = {}
    threads = []
    for t in range(args.conns):
        keys = list(range(t, args.keys, args.conns))
        th = threading.Thread(target=worker, args=(args, t, keys, results))
        th.start()
        threads.append(th)
    for th in threads:
        th.join()
    errors = [e for t in sorted(results) for e in results[t][1]]
    checked = sum(results[t][0] for t in results)
    if len(results) != args.conns:
        errors.append("only %d of %d threads reported" % (len(results), args.conns))
    if errors:
        for e in errors[:20]:
            print("ERROR:", e)
        print("memcache_client: %d errors (%d more not shown)" % (len(errors), max(0, len(errors) - 20)))
        return 1
    print("memcache_client: %d keys over %d connections, all values byte-exact (seed %d)"
          % (checked, args.conns, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
