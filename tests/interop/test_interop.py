#!/usr/bin/python3
"""Interop test: pyagent.py (written from docs/protocol.md only) against the real gateway.

Run by CTest (label `interop`) with MUXGATE_BUILD_DIR set to the build tree; the
gateway is $MUXGATE_BUILD_DIR/bin/muxgate. Everything binds 127.0.0.1; ports
are chosen by binding port 0 (the gateway picks the public tunnel ports). Every
wait has a deadline, every process is stopped by its PID in `finally`, and no
assertion depends on how long something took.

Checks (byte-exact):
  echo            one connection through the echo tunnel
  concurrent      20 connections x 4 MiB at once, SHA-256 compared at both ends
  large           32 MiB on one stream through 16 KiB windows (both directions)
  half_close      client sends, shuts its write side, reads the reply, then EOF
  heartbeat       short heartbeat_interval_ms: the agent stays on one session over
                  many heartbeats; a control agent that does not answer is closed (4004)
  refused         a tunnel whose target is not listening: the public client sees the
                  connection closed, the agent answered Refused{connect_failed}
  shutdown        agent SIGTERM -> Goodbye + close 1000, exit 0; gateway SIGTERM ->
                  Goodbye, close 1001, the agent exits 0
"""

import asyncio
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"
AGENT = os.path.join(HERE, "pyagent.py")

STREAM_WINDOW = 16 * 1024          # gateway's receive window per stream (config)
AGENT_WINDOW = 16 * 1024           # pyagent's receive window per stream (Auth)
HEARTBEAT_MS = 200
HEARTBEAT_TIMEOUT_MS = 5000        # generous: a loaded machine must not fail the test
DEADLINE = 120                     # seconds, upper bound for any single wait


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


class Proc:
    """A child process with its stdout collected line by line."""

    def __init__(self, name, argv, env=None, logdir="."):
        self.name = name
        self.lines = []
        self.cv = threading.Condition()
        self.err_path = os.path.join(logdir, name + ".log")
        self.err = open(self.err_path, "w")
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.err, env=env,
                                  stdin=subprocess.DEVNULL, text=True, bufsize=1)
        self.pid = self.p.pid
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stdout:
            with self.cv:
                self.lines.append(line.rstrip("\n"))
                self.cv.notify_all()

    def events(self, kind):
        with self.cv:
            out = []
            for line in self.lines:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "EVENT" and parts[1] == kind:
                    out.append(dict(p.split("=", 1) for p in parts[2:] if "=" in p))
            return out

    def wait_event(self, kind, timeout=DEADLINE, pred=lambda e: True, count=1):
        end = time.monotonic() + timeout
        with self.cv:
            while True:
                evs = [e for e in self.events(kind) if pred(e)]
                if len(evs) >= count:
                    return evs[count - 1]
                left = end - time.monotonic()
                if left <= 0 or (self.p.poll() is not None and not self.t.is_alive()):
                    raise AssertionError("%s: no %s event (have: %s)" % (self.name, kind, self.lines[-5:]))
                self.cv.wait(min(left, 0.2))

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.p.poll() is None:
            os.kill(self.pid, sig)

    def wait_exit(self, timeout=DEADLINE):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s (pid %d) did not exit" % (self.name, self.pid))

    def stop(self):
        if self.p.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.p.wait(10)
        self.t.join(5)
        self.err.close()

    def tail(self, n=30):
        try:
            with open(self.err_path) as f:
                err = f.read().splitlines()[-n:]
        except OSError:
            err = []
        return "\n".join(["--- %s stdout (last %d) ---" % (self.name, n)] + self.lines[-n:] +
                         ["--- %s log (last %d) ---" % (self.name, n)] + err)


# ───────────────────────── local targets (own thread, own loop) ─────────────────────────

class Targets:
    """Echo server and "reply after EOF" server on 127.0.0.1, in a background thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.echo_seen = {}      # 16-byte tag -> (sha256 hex, length) of what the echo server read
        self.lock = threading.Lock()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise AssertionError("local servers did not start")

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)

        async def start():
            self.echo = await asyncio.start_server(self._echo, "127.0.0.1", 0)
            self.reply = await asyncio.start_server(self._reply_after_eof, "127.0.0.1", 0)
            self.echo_port = self.echo.sockets[0].getsockname()[1]
            self.reply_port = self.reply.sockets[0].getsockname()[1]
        self.loop.run_until_complete(start())
        ready.set()
        self.loop.run_forever()

    async def _echo(self, reader, writer):
        h = hashlib.sha256()
        tag = b""
        n = 0
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if len(tag) < 16:
                    tag += data[:16 - len(tag)]
                h.update(data)
                n += len(data)
                writer.write(data)
                await writer.drain()
            with self.lock:
                self.echo_seen[tag] = (h.hexdigest(), n)
            writer.write_eof()
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _reply_after_eof(self, reader, writer):
        """Reads until EOF, then answers `<sha256 hex> <length>\\n` plus 256 KiB of a
        known pattern, then closes."""
        h = hashlib.sha256()
        n = 0
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                h.update(data)
                n += len(data)
            writer.write(("%s %d\n" % (h.hexdigest(), n)).encode())
            writer.write(pattern(256 * 1024))
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def close(self):
        def stop():
            self.echo.close()
            self.reply.close()
            self.loop.stop()
        self.loop.call_soon_threadsafe(stop)
        self.thread.join(10)


def pattern(n, seed=0):
    block = bytes((i * 7 + seed) % 251 for i in range(65536))
    return (block * (n // len(block) + 1))[:n]


# ───────────────────────── public-side clients ─────────────────────────

async def transfer(address, payload, chunk=65536):
    """Connect to the public port, send `payload` while reading; shut write; read to EOF.
    Returns the bytes received."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    received = bytearray()

    async def rx():
        while True:
            d = await reader.read(1 << 16)
            if not d:
                return
            received.extend(d)

    async def tx():
        mv = memoryview(payload)
        for i in range(0, len(payload), chunk):
            writer.write(mv[i:i + chunk])
            await writer.drain()
        writer.write_eof()
        await writer.drain()

    try:
        await asyncio.wait_for(asyncio.gather(rx(), tx()), DEADLINE)
    finally:
        writer.close()
    return bytes(received)


def public_address(reg):
    # the gateway reports where the public reaches the tunnel; it binds 127.0.0.1 here
    host, port = reg["address"].rsplit(":", 1)
    if host in ("0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return "%s:%s" % (host, port)


# ───────────────────────── the tests ─────────────────────────

class Ctx:
    pass


def t_echo(c):
    msg = b"hello muxgate \x00\xff through an independent agent\n"
    got = asyncio.run(transfer(c.addr["echo"], msg))
    assert got == msg, "echo: sent %r, got %r" % (msg, got)


def t_concurrent(c):
    n, size = 20, 4 * 1024 * 1024
    payloads = []
    for i in range(n):
        tag = b"conc-%02d-" % i + os.urandom(8)            # 16-byte tag for the echo server
        payloads.append(tag + os.urandom(size - len(tag)))

    async def run():
        return await asyncio.gather(*[transfer(c.addr["echo"], p) for p in payloads])
    results = asyncio.run(run())
    for i, (p, r) in enumerate(zip(payloads, results)):
        sent = hashlib.sha256(p).hexdigest()
        back = hashlib.sha256(r).hexdigest()
        assert len(r) == len(p), "conn %d: sent %d bytes, echoed %d" % (i, len(p), len(r))
        assert back == sent, "conn %d: SHA-256 differs (sent %s, got %s)" % (i, sent, back)
        with c.targets.lock:
            seen = c.targets.echo_seen.get(p[:16])
        assert seen == (sent, len(p)), "conn %d: the echo server read %s, client sent %s" % (i, seen, sent)


def t_large(c):
    size = 32 * 1024 * 1024          # 2048 x the 16 KiB stream window
    payload = b"larg-" + os.urandom(11) + pattern(size - 16, seed=3)
    got = asyncio.run(transfer(c.addr["echo"], payload))
    assert len(got) == size, "large: %d of %d bytes" % (len(got), size)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest(), "large: content differs"
    with c.targets.lock:
        seen = c.targets.echo_seen.get(payload[:16])
    assert seen == (hashlib.sha256(payload).hexdigest(), size), "large: echo server saw %s" % (seen,)


def t_many_short(c):
    """30 rounds of 40 concurrent short streams of odd sizes (own agent, same small
    limits as the main one): lots of Fins right behind data from many streams."""
    a = c.start_agent("short", ["--window", "16384", "--max-frame", "4096", "--max-message", "16384"],
                      tunnels=["tcp:0:127.0.0.1:%d" % c.targets.echo_port])
    try:
        addr = public_address(a.wait_event("REGISTERED"))
        rnd = __import__("random").Random(1234)
        for rnd_i in range(30):
            payloads = []
            for i in range(40):
                tag = b"shrt-%03d-%02d-" % (rnd_i, i)
                tag += os.urandom(16 - len(tag))
                payloads.append(tag + pattern(rnd.randrange(1, 64 * 1024), seed=i))

            async def run():
                return await asyncio.gather(*[transfer(addr, p) for p in payloads],
                                            return_exceptions=True)
            results = asyncio.run(run())
            if any(r != p for r, p in zip(results, payloads)):
                try:
                    a.wait_event("CLOSED", timeout=5)
                except AssertionError:
                    pass
            assert a.alive() and not a.events("CLOSED"), "round %d: agent closed: %s %s" % (
                rnd_i, a.events("CLOSED"), a.events("CONN_ERROR"))
            for i, (p, r) in enumerate(zip(payloads, results)):
                assert r == p, "round %d conn %d: sent %d bytes, got %s" % (
                    rnd_i, i, len(p), repr(r)[:80] if not isinstance(r, bytes) else "%d bytes" % len(r))
    finally:
        a.stop()


def t_fin_fit(c):
    """Short streams sent in one go. The gateway may put data and the Fin in one
    message, which must still fit the max_message the agent announced (16384, frames
    of at most 4096 bytes). The agent here returns credit only per whole window, so
    the gateway sends the end of each stream as one burst followed by the Fin."""
    a = c.start_agent("finfit", ["--window", "16384", "--max-frame", "4096", "--max-message", "16384",
                                 "--credit-every", "16384"],
                      tunnels=["tcp:0:127.0.0.1:%d" % c.targets.reply_port])
    try:
        addr = public_address(a.wait_event("REGISTERED"))
        for size in range(16384 + 16250, 16384 + 16385, 5):
            payload = b"fin-fit-%05d---" % (size % 100000) + pattern(size - 16, seed=size % 251)
            try:
                got = asyncio.run(transfer(addr, payload))
            except ConnectionError as e:
                got = repr(e).encode()
                try:
                    a.wait_event("CLOSED", timeout=5)
                except AssertionError:
                    pass
            want = ("%s %d\n" % (hashlib.sha256(payload).hexdigest(), size)).encode()
            assert a.alive() and not a.events("CLOSED"), "size %d: agent closed: %s %s" % (
                size, a.events("CLOSED"), a.events("CONN_ERROR"))
            assert got[:len(want)] == want, "size %d: reply %r" % (size, got[:80])
    finally:
        a.stop()


def t_no_flow_control_errors(c):
    # no Reset was needed in either direction so far: both sides kept within the credit
    bad = c.agent.events("STREAM_RESET_SENT") + c.agent.events("STREAM_RESET_RECEIVED")
    assert not bad, "resets during the transfers: %s" % bad
    with open(c.gw_log) as f:
        log = f.read()
    assert "flow_control" not in log, "the gateway logged a flow_control error"


def t_half_close(c):
    async def run():
        host, port = c.addr["reply"].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            body = os.urandom(1024 * 1024 + 7)
            writer.write(body)              # sent at once: arrives before Opened, held by the agent
            await writer.drain()
            writer.write_eof()              # half-close: the server replies only after EOF
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), DEADLINE)
            rest = await asyncio.wait_for(reader.read(), DEADLINE)   # to EOF
            return body, line, rest
        finally:
            writer.close()
    body, line, rest = asyncio.run(run())
    want = ("%s %d\n" % (hashlib.sha256(body).hexdigest(), len(body))).encode()
    assert line == want, "half-close: server read %r, want %r" % (line, want)
    assert rest == pattern(256 * 1024), "half-close: reply after EOF differs (%d bytes)" % len(rest)


def t_heartbeat(c):
    start = len(c.agent.events("HEARTBEAT"))
    # several intervals: at least 10 more heartbeats answered on the same session
    c.agent.wait_event("HEARTBEAT", count=start + 10)
    assert c.agent.alive(), "agent exited"
    assert len(c.agent.events("AUTHOK")) == 1, "agent re-authenticated: %s" % c.agent.events("AUTHOK")
    assert not c.agent.events("CLOSED"), "agent connection closed: %s" % c.agent.events("CLOSED")
    seqs = [int(e["seq"]) for e in c.agent.events("HEARTBEAT")]
    assert all(b == a + 1 for a, b in zip(seqs, seqs[1:])), "heartbeat seq not +1: %s" % seqs[:20]
    t_echo(c)  # and the session still carries traffic
    # control: an agent that never answers is closed by the gateway with 4004
    lazy = c.start_agent("lazy", ["--no-heartbeat-ack"], tunnels=["tcp:0:127.0.0.1:%d" % c.targets.echo_port])
    try:
        lazy.wait_event("AUTHOK")
        closed = lazy.wait_event("CLOSED")
        assert closed["code"] == "4004", "silent agent closed with %s, want 4004" % closed
        assert int(closed["heartbeats"]) >= 1
        assert lazy.wait_exit() != 0
    finally:
        lazy.stop()


def t_refused(c):
    async def run():
        host, port = c.addr["refused"].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(b"anyone there?")
            await writer.drain()
            try:
                return await asyncio.wait_for(reader.read(), DEADLINE)
            except ConnectionResetError:
                return "reset"
        finally:
            writer.close()
    before = len(c.agent.events("STREAM_REFUSED"))
    try:
        got = asyncio.run(run())
    except ConnectionResetError:
        got = "reset"   # the gateway already aborted it while the connect completed
    assert got in (b"", "reset"), "refused target: public client read %r" % got
    ev = c.agent.wait_event("STREAM_REFUSED", count=before + 1)
    assert ev["code"] == "connect_failed", ev


def t_pin(c):
    """Section 1: the pin is sha256// + Base64(SHA-256(DER SubjectPublicKeyInfo)); the
    gateway prints its own at start. pyagent computes it from the certificate it got."""
    m = re.search(r"public key pin (sha256//[A-Za-z0-9+/=]+)", open(c.gw_log).read())
    assert m, "the gateway did not log its public key pin"
    good = c.start_agent("pinned", ["--pin", m.group(1)],
                         tunnels=["tcp:0:127.0.0.1:%d" % c.targets.echo_port])
    bad = c.start_agent("mispinned", ["--pin", "sha256//" + "A" * 43 + "="],
                        tunnels=["tcp:0:127.0.0.1:%d" % c.targets.echo_port])
    try:
        assert good.wait_event("PIN_OK")["pin"] == m.group(1)
        good.wait_event("AUTHOK")
        assert bad.wait_exit() != 0, "an agent with a wrong pin must not connect"
        assert not bad.events("AUTHOK") and not bad.events("CONNECTED")
    finally:
        good.stop()
        bad.stop()


def t_agent_sigterm(c):
    a = c.start_agent("leaver", [], tunnels=["tcp:0:127.0.0.1:%d" % c.targets.echo_port])
    try:
        reg = a.wait_event("REGISTERED")
        got = asyncio.run(transfer(public_address(reg), b"one more"))
        assert got == b"one more"
        a.signal(signal.SIGTERM)
        closed = a.wait_event("CLOSED")
        assert closed["code"] == "1000", closed
        assert a.wait_exit() == 0
        wait_until(lambda: "leaver says goodbye" in open(c.gw_log).read(), DEADLINE,
                   "the gateway to log the agent's Goodbye")
    finally:
        a.stop()


def t_gateway_shutdown(c):
    # the gateway drains: Goodbye, then close 1001; pyagent (no --reconnect) exits 0
    c.gw.signal(signal.SIGTERM)
    bye = c.agent.wait_event("GOODBYE")
    closed = c.agent.wait_event("CLOSED")
    assert closed["code"] == "1001", closed
    assert c.agent.wait_exit() == 0
    assert c.gw.wait_exit() == 0, "gateway exit status"
    assert "drain_ms" in bye
    # what the agent saw over the whole session: the gateway kept within the limits the
    # agent announced (the agent would have closed with 1009 otherwise), and credit was
    # really exercised in both directions
    st = {k: int(v) for k, v in c.agent.wait_event("STATS").items()}
    print("agent stats:", st, flush=True)
    assert st["max_frame_in"] <= 4096, st
    assert st["windows_in"] > 0 and st["windows_out"] > 0, st
    assert st["credit_waits"] > 0, "the agent never ran out of credit: %s" % st


TESTS = [("echo", t_echo), ("concurrent", t_concurrent), ("large", t_large),
         ("credit", t_no_flow_control_errors), ("half_close", t_half_close),
         ("heartbeat", t_heartbeat), ("refused", t_refused),
         ("pin", t_pin), ("fin_fit", t_fin_fit), ("many_short", t_many_short),
         ("agent_sigterm", t_agent_sigterm), ("gateway_shutdown", t_gateway_shutdown)]


def main():
    build = os.environ.get("MUXGATE_BUILD_DIR")
    if not build:
        print("MUXGATE_BUILD_DIR is not set", file=sys.stderr)
        return 2
    muxgate = os.path.join(build, "bin", "muxgate")
    tmp = tempfile.mkdtemp(prefix="muxgate-interop-")
    c = Ctx()
    c.procs = []
    c.targets = None
    failed = []
    try:
        token = "interop-" + os.urandom(16).hex()
        out = subprocess.run([muxgate, "token", "hash"], input=token + "\n", capture_output=True,
                             text=True, timeout=30, check=True).stdout
        token_hash = re.search(r"sha256:[0-9a-f]{64}", out).group(0)
        assert token_hash == "sha256:" + hashlib.sha256(token.encode()).hexdigest()

        c.targets = Targets()
        refused_port = free_port()  # nothing listens there
        gw_port = free_port()
        cert = os.path.join(tmp, "gateway-cert.pem")
        cfg = os.path.join(tmp, "gateway.toml")
        with open(cfg, "w") as f:
            f.write("""# written by tests/interop/test_interop.py
[gateway]
listen = "127.0.0.1:%(port)d"
public_bind = "127.0.0.1"
log_level = "debug"

[tls]
cert = "%(cert)s"
key = "%(key)s"
self_signed = true

[auth]
shared_token_hash = "%(hash)s"

[limits]
stream_window = "%(window)d"
heartbeat_interval_ms = %(hb)d
heartbeat_timeout_ms = %(hbt)d
""" % {"port": gw_port, "cert": cert, "key": os.path.join(tmp, "gateway-key.pem"),
                "hash": token_hash, "window": STREAM_WINDOW, "hb": HEARTBEAT_MS,
                "hbt": HEARTBEAT_TIMEOUT_MS})
        c.gw_log = os.path.join(tmp, "gateway.log")
        c.gw = Proc("gateway", [muxgate, "--config", cfg], logdir=tmp)
        c.procs.append(c.gw)
        c.gw.err.close()
        c.gw_log = c.gw.err_path
        # the gateway writes its log to stderr; wait until it listens
        wait_until(lambda: "listening on" in open(c.gw_log).read() or not c.gw.alive(),
                   DEADLINE, "the gateway to listen")
        assert c.gw.alive(), "gateway exited:\n" + open(c.gw_log).read()

        env = dict(os.environ, INTEROP_TOKEN=token)

        def start_agent(name, extra, tunnels):
            argv = [PYTHON, AGENT, "--gateway", "wss://127.0.0.1:%d" % gw_port, "--ca", cert,
                    "--token-env", "INTEROP_TOKEN", "--name", name, "-v"] + extra
            for t in tunnels:
                argv += ["--tunnel", t]
            p = Proc("agent-" + name, argv, env=env, logdir=tmp)
            c.procs.append(p)
            return p
        c.start_agent = start_agent

        # The main agent announces small frames (4096) but the default max_message (4 MiB):
        # with a small max_message the gateway sometimes overshoots it by a Fin (see
        # t_fin_fit), which would make every other check here fail at random.
        c.agent = start_agent("interop", ["--window", str(AGENT_WINDOW), "--max-frame", "4096"],
                              ["tcp:0:127.0.0.1:%d" % c.targets.echo_port,
                               "tcp:0:127.0.0.1:%d" % c.targets.reply_port,
                               "tcp:0:127.0.0.1:%d" % refused_port])
        ok = c.agent.wait_event("AUTHOK")
        assert int(ok["window"]) == STREAM_WINDOW, ok
        c.addr = {}
        for kind, port in (("echo", c.targets.echo_port), ("reply", c.targets.reply_port),
                           ("refused", refused_port)):
            reg = c.agent.wait_event("REGISTERED", pred=lambda e: e["tunnel"].endswith("-%d" % port))
            c.addr[kind] = public_address(reg)
        print("gateway 127.0.0.1:%d, tunnels %s" % (gw_port, c.addr), flush=True)

        only = os.environ.get("INTEROP_ONLY", "").split(",") if os.environ.get("INTEROP_ONLY") else None
        skip = os.environ.get("INTEROP_SKIP", "").split(",")
        for name, fn in TESTS:
            if only and name not in only or name in skip:
                continue
            t0 = time.monotonic()
            try:
                fn(c)
                print("PASS %-18s (%.1f s)" % (name, time.monotonic() - t0), flush=True)
            except Exception:
                failed.append(name)
                print("FAIL %s" % name, flush=True)
                traceback.print_exc()
                for p in c.procs:
                    print(p.tail(), flush=True)
                if name in ("echo",):
                    break   # nothing else can work
    except Exception:
        failed.append("setup")
        traceback.print_exc()
        for p in c.procs:
            print(p.tail(), flush=True)
    finally:
        for p in reversed(c.procs):
            p.stop()
        if c.targets is not None:
            c.targets.close()
        if failed or os.environ.get("INTEROP_KEEP_LOGS"):
            print("logs kept in", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        print("FAILED:", ", ".join(failed))
        return 1
    print("all interop checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
