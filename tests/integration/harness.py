"""Shared machinery of the integration tests (standard library only).

Every test file is a script run by /usr/bin/python3 that imports this module,
defines its cases with @case and calls main(). A case gets a fresh `Env`: a
temporary directory, and every process and server it starts, stopped in
`finally` (SIGTERM, then SIGKILL after a deadline). When a case fails, the
tail of every log is printed and the directory is kept.

Rules the helpers enforce:
  * every wait has a deadline (wait_for, Proc.wait_log, Proc.wait_exit);
    nothing sleeps "to let things settle";
  * ports: our own servers bind port 0; tunnels use remote port 0 and read
    the port from the agent's log; fixed ports (the gateway's listener,
    iperf3, socat, tinyproxy) are drawn at random below the kernel's
    ephemeral range (20000-32000) and the start is retried if taken;
  * children get PR_SET_PDEATHSIG, so a test killed by ctest's TIMEOUT
    does not leave gateways behind;
  * sanitizer reports in any muxgate log fail the case, and so does a
    muxgate process that does not exit 0 when asked to stop with SIGTERM.

Environment:
  MUXGATE_BUILD_DIR   build tree (bin/muxgate, bin/muxgate-agent)   required
  MUXGATE_SANITIZED   1 for ASan/UBSan builds: default scale 1/8
  MUXGATE_TEST_SCALE  multiplies the data sizes of bulk tests (float)
  MUXGATE_KEEP        1 keeps the temporary directories of passing cases
"""
import asyncio
import ctypes
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

# ----------------------------------------------------------------- settings

BUILD_DIR = os.environ.get("MUXGATE_BUILD_DIR", "")
SANITIZED = os.environ.get("MUXGATE_SANITIZED", "") == "1"
SCALE = float(os.environ.get("MUXGATE_TEST_SCALE", "0.125" if SANITIZED else "1"))
KEEP = os.environ.get("MUXGATE_KEEP", "") == "1"
# Overrides the log level of every gateway and agent started with the default.
LOG_LEVEL = os.environ.get("MUXGATE_TEST_LOG_LEVEL", "info")

# Deadlines. Generous: they bound a hang, they never judge speed. Sanitized
# binaries start and run several times slower.
SLOW = 3 if SANITIZED else 1
START_TIMEOUT = 20 * SLOW     # a process prints its "ready" line
EVENT_TIMEOUT = 30 * SLOW     # a log line or state change caused by the test
STOP_TIMEOUT = 25 * SLOW      # SIGTERM to exit (drain with nothing open is fast)
IO_TIMEOUT = int(os.environ.get("MUXGATE_TEST_IO_TIMEOUT", "60")) * SLOW        # one socket operation making no progress at all

# Fixed ports are drawn from here: below the ephemeral range, so they never
# collide with the source port of some outgoing connection.
PORT_RANGE = (20000, 32000)

TOKEN = "integration-secret-token"


def gateway_bin():
    return os.path.join(BUILD_DIR, "bin", "muxgate")


def agent_bin():
    return os.path.join(BUILD_DIR, "bin", "muxgate-agent")


def scaled(n, minimum=1):
    return max(minimum, int(n * SCALE))


MiB = 1024 * 1024
KiB = 1024

# ------------------------------------------------------------------ failures


class Failure(AssertionError):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def check_eq(got, want, what):
    if got != want:
        raise Failure(f"{what}: got {got!r}, want {want!r}")


def wait_for(pred, timeout, what, interval=0.05):
    """Polls pred() until it returns a true value (returned) or the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise Failure(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------ processes

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.setpgrp()  # a group of its own: our SIGTERM to it never hits ctest


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "ERROR: UndefinedBehaviorSanitizer", "AddressSanitizer:DEADLYSIGNAL")

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z (\w+)\s+(.*)$")


class Proc:
    """A child process with its stdout and stderr in one log file."""

    def __init__(self, env, name, argv, extra_env=None, stdin=None, muxgate=False, cwd=None):
        self.env = env
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = env.path(f"{name}.log")
        self.muxgate = muxgate
        self.expect_clean_exit = muxgate
        e = dict(os.environ)
        e.pop("MUXGATE_TOKEN", None)
        e.update(extra_env or {})
        # Each start gets its own log file; restarts append a counter.
        n = 1
        while os.path.exists(self.log_path):
            n += 1
            self.log_path = env.path(f"{name}.{n}.log")
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            env=e, cwd=cwd or env.dir, preexec_fn=_die_with_parent)
        self.pid = self.popen.pid
        self.stopped_by_test = False
        env.procs.append(self)

    # ---- log
    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def mark(self):
        """A position in the log; wait_log(after=mark) looks only past it."""
        return len(self.text())

    def lines(self, after=0):
        """Log messages (timestamp and level cut off) as (level, text)."""
        out = []
        for line in self.text()[after:].splitlines():
            m = LOG_LINE.match(line)
            out.append((m.group(1), m.group(2)) if m else ("", line))
        return out

    def find(self, regex, after=0):
        return re.search(regex, self.text()[after:], re.M)

    def findall(self, regex, after=0):
        return re.findall(regex, self.text()[after:], re.M)

    def wait_log(self, regex, timeout=EVENT_TIMEOUT, after=0, what=None):
        """Waits for a line matching `regex` past `after`; returns the match.
        Fails at once if the process exits without printing it."""
        pat = re.compile(regex, re.M)
        deadline = time.monotonic() + timeout
        while True:
            m = pat.search(self.text()[after:])
            if m:
                return m
            if self.popen.poll() is not None:
                # One more look: the line may have been written just before exit.
                m = pat.search(self.text()[after:])
                if m:
                    return m
                raise Failure(f"{self.name} exited ({self.popen.returncode}) without logging "
                              f"{what or regex!r}")
            if time.monotonic() >= deadline:
                raise Failure(f"{self.name}: no log line {what or regex!r} within {timeout:.0f} s")
            time.sleep(0.05)

    def wait_count(self, regex, count, timeout=EVENT_TIMEOUT, after=0, what=None):
        """Waits until `regex` matched at least `count` times past `after`."""
        return wait_for(lambda: len(self.findall(regex, after)) >= count or
                        (self._exited_fail(what or regex)), timeout,
                        f"{self.name} to log {what or regex!r} {count} times")

    def _exited_fail(self, what):
        if self.popen.poll() is not None:
            raise Failure(f"{self.name} exited ({self.popen.returncode}) while waiting for {what!r}")
        return False

    # ---- lifetime
    def alive(self):
        return self.popen.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def wait_exit(self, timeout, what=None):
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"{self.name} did not exit within {timeout:.0f} s"
                          + (f" ({what})" if what else ""))

    def kill9(self):
        """SIGKILL on purpose: no exit status is expected."""
        self.expect_clean_exit = False
        self.stopped_by_test = True
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=STOP_TIMEOUT)

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, then SIGKILL after `timeout`. Returns the exit status and
        whether SIGKILL was needed."""
        self.stopped_by_test = True
        killed = False
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                killed = True
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=timeout)
        self._log.close()
        return self.popen.returncode, killed

    def sanitizer_report(self):
        t = self.text()
        for m in SANITIZER_MARKS:
            i = t.find(m)
            if i >= 0:
                return t[max(0, i - 200):i + 3000]
        return None


# ------------------------------------------------------------------- servers


class Server:
    """A TCP server on 127.0.0.1:0 running handler(conn, index) per
    connection in a thread. Exceptions in handlers are kept and fail the
    case when the Env closes (unless the case expects them)."""

    def __init__(self, env, handler, name="server", backlog=1024, host="127.0.0.1",
                 tolerate_reset=False):
        self.env = env
        self.tolerate_reset = tolerate_reset  # the case resets connections on purpose
        self.name = name
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.host = host
        self.errors = []
        self.accepted = 0
        self.conns = []
        self._stop = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"{name}-accept")
        self._thread.start()
        env.servers.append(self)

    def _loop(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                idx = self.accepted
                self.accepted += 1
                self.conns.append(conn)
            threading.Thread(target=self._run, args=(conn, idx), daemon=True,
                             name=f"{self.name}-{idx}").start()

    def _run(self, conn, idx):
        try:
            conn.settimeout(IO_TIMEOUT)
            self.handler(conn, idx)
        except (ConnectionResetError, BrokenPipeError) as e:
            if not self.tolerate_reset:
                with self._lock:
                    if not self._stop:
                        self.errors.append(f"{self.name} connection {idx}: {e!r}")
        except Exception as e:  # kept for the report
            with self._lock:
                if not self._stop:  # not our own teardown closing it
                    self.errors.append(f"{self.name} connection {idx}: {e!r}")
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def close(self):
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self._lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


def echo_handler(conn, idx):
    """Echoes until EOF, then half-closes: keeps the client's half-close."""
    while True:
        b = conn.recv(256 * KiB)
        if not b:
            break
        conn.sendall(b)
    conn.shutdown(socket.SHUT_WR)


class Forwarder:
    """A plain TCP relay listen_host:0 -> target that the test can break:
    cut() aborts every relayed connection with RST on both sides (a network
    failure), freeze() stops relaying on them without closing anything (a
    network that silently drops everything). Connections made after either
    are relayed normally. Also used to dial the gateway by an address its
    certificate does not name."""

    def __init__(self, env, target, listen_host="127.0.0.1"):
        self.target = target
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((listen_host, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.host = listen_host
        self.pairs = []  # (client socket, target socket, relay-allowed event)
        self.frozen = []
        self.connections = 0
        self._cutting = False
        self._lock = threading.Lock()
        threading.Thread(target=self._loop, daemon=True, name="forwarder").start()
        env.servers.append(self)

    def _loop(self):
        while True:
            try:
                a, _ = self.sock.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(self.target, timeout=10)
            except OSError:
                a.close()
                continue
            b.settimeout(None)
            go = threading.Event()
            go.set()
            with self._lock:
                self.pairs.append((a, b, go))
                self.connections += 1
            for x, y in ((a, b), (b, a)):
                threading.Thread(target=self._pump, args=(x, y, go), daemon=True).start()

    def _pump(self, x, y, go):
        try:
            while True:
                d = x.recv(256 * KiB)
                go.wait()
                if not d:
                    if not self._cutting:
                        y.shutdown(socket.SHUT_WR)
                    return
                y.sendall(d)
        except OSError:
            if not self._cutting:
                for s in (x, y):
                    try:
                        s.close()
                    except OSError:
                        pass

    def freeze(self):
        with self._lock:
            pairs, self.pairs = self.pairs, []
            self.frozen += pairs
        for _, _, go in pairs:
            go.clear()

    def cut(self):
        self._cutting = True
        with self._lock:
            pairs, self.pairs = self.pairs + self.frozen, []
            self.frozen = []
        for a, b, go in pairs:
            for s in (a, b):
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.shutdown(socket.SHUT_RD)  # wakes the pump blocked in recv()
                except OSError:
                    pass
            for s in (a, b):
                try:
                    s.close()  # linger 0: RST
                except OSError:
                    pass
        for _, _, go in pairs:
            go.set()
        self._cutting = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.cut()
        self.errors = []


# --------------------------------------------------------------------- ports


def port_free(port, host="127.0.0.1"):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


# Ports already handed out by this process: a port picked for one server is
# still free until that server binds it, so without this two picks made
# before either server starts (a gateway's port and its jump host's) can
# return the same port.
_handed_out = set()


def pick_port(host="127.0.0.1"):
    """A port below the ephemeral range that is free right now and was not
    handed out before (the caller retries its start if someone takes it
    meanwhile)."""
    for _ in range(200):
        p = random.randrange(*PORT_RANGE)
        if p not in _handed_out and port_free(p, host):
            _handed_out.add(p)
            return p
    raise Failure("no free port found in 20000-32000")


def pick_port_block(n, host="127.0.0.1"):
    """The first of n consecutive ports, all free right now and not handed
    out before, below the ephemeral range."""
    for _ in range(200):
        base = random.randrange(PORT_RANGE[0], PORT_RANGE[1] - n)
        block = range(base, base + n)
        if not _handed_out.intersection(block) and all(port_free(p, host) for p in block):
            _handed_out.update(block)
            return base
    raise Failure(f"no block of {n} free ports found in 20000-32000")


def connect(port, host="127.0.0.1", timeout=IO_TIMEOUT):
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass  # already reset by the peer: the caller's next read says so
    return s


def how_connection_ends(port, send=b"x", timeout=EVENT_TIMEOUT, host="127.0.0.1"):
    """Connects, sends, reads until the end: "eof" or "rst" (also when the
    reset already beats connect() back, as it can on a fast refusal)."""
    try:
        s = socket.create_connection((host, port), timeout=timeout)
    except ConnectionResetError:
        return "rst"
    try:
        s.settimeout(timeout)
        try:
            s.sendall(send)
        except OSError:
            pass  # the reset may arrive first; the read below tells
        while s.recv(65536):
            pass
        return "eof"
    except ConnectionResetError:
        return "rst"
    except socket.timeout:
        raise Failure(f"connection to port {port} still open after {timeout} s")
    finally:
        s.close()


def connection_refused(port, host="127.0.0.1"):
    """True if a connect to host:port is refused (nothing listens)."""
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect((host, port))
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        s.close()


def recv_all(sock, limit=None):
    """Reads until EOF; returns the bytes. ConnectionResetError propagates."""
    parts = []
    n = 0
    while True:
        b = sock.recv(256 * KiB)
        if not b:
            return b"".join(parts)
        parts.append(b)
        n += len(b)
        if limit is not None and n > limit:
            raise Failure(f"more than {limit} bytes received")


def echo_round_trip(port, payload=b"round trip\n"):
    """One connection to an echo target: send, half-close, read the echo up
    to the EOF. The stream then has ended cleanly at both ends, so stopping
    a process right after cannot reset it."""
    s = connect(port)
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = recv_all(s, limit=len(payload))
    finally:
        s.close()
    check_eq(got, payload, f"echo through port {port}")
    return True


def recv_exact(sock, n):
    parts = []
    while n:
        b = sock.recv(min(n, 256 * KiB))
        if not b:
            raise Failure(f"EOF with {n} bytes still expected")
        parts.append(b)
        n -= len(b)
    return b"".join(parts)


# ---------------------------------------------------------------- test data


class Pattern:
    """Deterministic, non-repeating-looking bytes. Stream `seed` at offset o
    is pool[(start(seed) + o) % len(pool)]; the pool's length is not a power
    of two, so no chunking of a transfer lines up with its period and any
    reordered, duplicated, dropped or cross-stream chunk changes the hash."""

    POOL_SIZE = 4 * MiB + 4093

    def __init__(self, seed=1234):
        rnd = random.Random(seed)
        pool = rnd.randbytes(self.POOL_SIZE)
        self.pool = pool + pool[:1 * MiB]  # wrap-around room for slices
        self.view = memoryview(self.pool)

    def start(self, seed):
        return (seed * 2654435761) % self.POOL_SIZE

    def chunks(self, seed, total, chunk=256 * KiB):
        off = self.start(seed)
        left = total
        while left:
            n = min(chunk, left, 1 * MiB)
            yield self.view[off:off + n]
            off = (off + n) % self.POOL_SIZE
            left -= n

    def digest(self, seed, total):
        h = hashlib.sha256()
        for c in self.chunks(seed, total):
            h.update(c)
        return h.hexdigest()

    def bytes(self, seed, total):
        return b"".join(bytes(c) for c in self.chunks(seed, total))


_pattern = None


def pattern():
    global _pattern
    if _pattern is None:
        _pattern = Pattern()
    return _pattern


def send_pattern(sock, seed, total, progress=None):
    """Sends `total` pattern bytes; returns their sha256."""
    h = hashlib.sha256()
    for c in pattern().chunks(seed, total):
        sock.sendall(c)
        h.update(c)
        if progress is not None:
            progress[0] += len(c)
    return h.hexdigest()


def recv_hash(sock, progress=None):
    """Reads until EOF; returns (byte count, sha256)."""
    h = hashlib.sha256()
    n = 0
    buf = bytearray(256 * KiB)
    mv = memoryview(buf)
    while True:
        k = sock.recv_into(buf)
        if k == 0:
            return n, h.hexdigest()
        h.update(mv[:k])
        n += k
        if progress is not None:
            progress[0] += k


# ------------------------------------------------------------ gateway, agent


class Gateway:
    def __init__(self, proc, port, host, cert, config=None):
        self.proc = proc
        self.port = port
        self.host = host
        self.cert = cert
        self.config = config
        m = proc.find(r"public key pin (sha256//\S+)")
        self.pin = m.group(1) if m else None

    @property
    def url(self):
        return f"wss://{self.host}:{self.port}"


class Agent:
    def __init__(self, proc):
        self.proc = proc

    def wait_tunnel(self, name, timeout=EVENT_TIMEOUT, after=0):
        """Waits for 'tunnel <name> is open at HOST:PORT'; returns PORT."""
        m = self.proc.wait_log(r"tunnel " + re.escape(name) + r" is open at (\S+):(\d+)$",
                               timeout, after, what=f"tunnel {name} is open")
        return int(m.group(2))


def tunnel_name(local_port, host="127.0.0.1"):
    """The default name of --tunnel tcp:0:HOST:PORT."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"tcp-{host}-{local_port}")[:64]


class Env:
    """Everything one case starts, and its temporary directory."""

    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"muxgate-it-{name}-")
        self.procs = []
        self.servers = []
        self.extra_logs = []

    def path(self, *names):
        return os.path.join(self.dir, *names)

    def write(self, name, text, mode=0o644):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        return p

    # ---- processes
    def start(self, name, argv, **kw):
        return Proc(self, name, argv, **kw)

    def gateway(self, name="gateway", args=(), config=None, token=TOKEN, host="127.0.0.1",
                port=None, log_level=LOG_LEVEL, cert=None, key=None, self_signed=True,
                extra_env=None, public_bind="127.0.0.1"):
        """Starts a gateway and waits for its 'listening' line. Quick mode
        unless `config` is given: then `config` is a function port -> TOML
        text. A port taken meanwhile by someone else is retried."""
        cert_out = self.path(f"{name}-cert.pem")
        for attempt in range(10):
            p = port or pick_port(host)
            argv = [gateway_bin()]
            if config is not None:
                cfg = self.write(f"{name}.toml", config(p))
                argv += ["--config", cfg]
            else:
                argv += ["--listen", f"{host}:{p}" if ":" not in host else f"[{host}]:{p}"]
                if self_signed:
                    argv += ["--self-signed", "--cert-out", cert_out]
                if cert:
                    argv += ["--cert", cert, "--key", key]
                if public_bind:
                    argv += ["--public-bind", public_bind]
            if log_level:
                argv += ["--log-level", log_level]
            argv += list(args)
            e = dict(extra_env or {})
            if token is not None:
                e["MUXGATE_TOKEN"] = token
            proc = self.start(name, argv, extra_env=e, muxgate=True)
            try:
                proc.wait_log(r"listening on \S+:%d " % p, START_TIMEOUT, what="listening")
            except Failure:
                if not proc.alive() and "cannot listen" in proc.text() and port is None:
                    proc.expect_clean_exit = False
                    continue  # taken meanwhile: another port
                raise
            # Quick mode's --cert-out and gateway_toml() both use <name>-cert.pem.
            return Gateway(proc, p, host if ":" not in host else f"[{host}]",
                           cert or (cert_out if self_signed or config else None),
                           config=self.path(f"{name}.toml") if config else None)
        raise Failure("could not start the gateway on a free port")

    def agent(self, gw=None, tunnels=(), name="agent", agent_name=None, args=(), token=TOKEN,
              ca=True, config=None, log_level=LOG_LEVEL, extra_env=None, wait_connected=True,
              url=None):
        """Starts an agent. Quick mode (flags) unless `config` (TOML text) is
        given. ca=True uses the gateway's certificate as --ca."""
        argv = [agent_bin()]
        if config is not None:
            argv += ["--config", self.write(f"{name}.toml", config)]
        else:
            argv += ["--gateway", url or gw.url, "--name", agent_name or name]
            if ca is True:
                argv += ["--ca", gw.cert]
            elif ca:
                argv += ["--ca", ca]
            for t in tunnels:
                argv += ["--tunnel", t]
        if log_level:
            argv += ["--log-level", log_level]
        argv += list(args)
        e = dict(extra_env or {})
        if token is not None:
            e["MUXGATE_TOKEN"] = token
        proc = self.start(name, argv, extra_env=e, muxgate=True)
        if wait_connected:
            proc.wait_log(r"connected to gateway as ", START_TIMEOUT, what="connected to gateway")
        return Agent(proc)

    def server(self, handler, name="server", **kw):
        return Server(self, handler, name, **kw)

    def echo_server(self, name="echo", **kw):
        return Server(self, echo_handler, name, **kw)

    # ---- teardown
    def close(self):
        """Stops everything; returns a list of problems found on the way."""
        problems = []
        for s in reversed(self.servers):
            s.close()
        # Agents first (they say goodbye), then gateways, then the rest.
        def order(p):
            return 0 if p.argv[0] == agent_bin() else 1 if p.argv[0] == gateway_bin() else 2
        for p in sorted(reversed(self.procs), key=order):
            died = not p.alive() and not p.stopped_by_test  # on its own, unasked
            rc, killed = p.stop()
            if p.muxgate and p.expect_clean_exit:
                if killed:
                    problems.append(f"{p.name} (pid {p.pid}) did not exit within "
                                    f"{STOP_TIMEOUT} s of SIGTERM")
                elif rc != 0:
                    problems.append(f"{p.name} (pid {p.pid}) exited with status {rc}"
                                    + (" on its own, before anyone stopped it" if died else
                                       " after SIGTERM"))
            if p.muxgate:
                rep = p.sanitizer_report()
                if rep:
                    problems.append(f"{p.name}: sanitizer report:\n{rep}")
        for s in self.servers:
            for e in getattr(s, "errors", []):
                problems.append(e)
        return problems

    def dump_logs(self, lines=60):
        for p in self.procs:
            text = p.text().splitlines()
            print(f"----- {p.name} (pid {p.pid}, exit {p.popen.returncode}): "
                  f"{p.log_path}, last {min(lines, len(text))} of {len(text)} lines",
                  file=sys.stderr)
            for line in text[-lines:]:
                print("  " + line, file=sys.stderr)
        for path in self.extra_logs:
            try:
                with open(path, errors="replace") as f:
                    text = f.read().splitlines()
            except OSError:
                continue
            print(f"----- {path}: last {min(lines, len(text))} lines", file=sys.stderr)
            for line in text[-lines:]:
                print("  " + line, file=sys.stderr)


def token_hash(token):
    """The token_hash line value, from `muxgate token hash`."""
    r = subprocess.run([gateway_bin(), "token", "hash"], input=token + "\n", capture_output=True,
                       text=True, timeout=START_TIMEOUT)
    m = re.fullmatch(r'token_hash = "(sha256:[0-9a-f]{64})"\n', r.stdout)
    if r.returncode != 0 or not m:
        raise Failure(f"muxgate token hash: exit {r.returncode}, output {r.stdout!r} {r.stderr!r}")
    return m.group(1)


def gateway_toml(env, port, extra="", agents="", shared=True, limits="", auth="",
                 name="gateway"):
    """A gateway configuration on 127.0.0.1:port with a self-signed
    certificate saved in the case directory (so restarts keep it)."""
    shared_line = f'shared_token_hash = "{token_hash(TOKEN)}"' if shared else ""
    return f"""# written by the integration harness
[gateway]
listen = "127.0.0.1:{port}"
public_bind = "127.0.0.1"
{extra}

[tls]
self_signed = true
cert = "{env.path(name + '-cert.pem')}"
key = "{env.path(name + '-key.pem')}"

[auth]
{shared_line}
{auth}

[limits]
{limits}

{agents}
"""


# ------------------------------------------------------ raw WebSocket client
#
# python3-websockets 10.4 (asyncio). Used for what a real agent never sends.


def frame(protocol, payload):
    return struct.pack(">BI", protocol, len(payload)) + payload


def control(obj):
    return frame(0, json.dumps(obj, separators=(",", ":")).encode())


def data_frame(protocol, stream, payload):
    return frame(protocol, struct.pack(">I", stream) + payload)


def parse_frames(message):
    """Yields (protocol, payload) of each frame; control payloads as dicts."""
    i = 0
    while i < len(message):
        proto, n = struct.unpack_from(">BI", message, i)
        payload = message[i + 5:i + 5 + n]
        i += 5 + n
        yield proto, (json.loads(payload) if proto == 0 else payload)


def auth_msg(token=TOKEN, agent="raw", **over):
    m = {"type": "Auth", "token": token, "agent": agent, "version": "raw-test", "protocol": 1,
         "window": 262144, "max_frame": 1048576, "max_message": 4194304}
    m.update(over)
    return control(m)


def client_ssl():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def ws_connect(gw, path="/muxgate", subprotocols=("muxgate.v1",), local_addr=None,
                     host=None):
    import websockets
    kw = {}
    if local_addr:
        kw["local_addr"] = (local_addr, 0)
    return await asyncio.wait_for(websockets.connect(
        f"wss://{host or gw.host}:{gw.port}{path}", ssl=client_ssl(),
        subprotocols=list(subprotocols) if subprotocols else None, max_size=None,
        open_timeout=EVENT_TIMEOUT, close_timeout=5, ping_interval=None, **kw), EVENT_TIMEOUT)


async def ws_recv_controls(ws, timeout=EVENT_TIMEOUT):
    """Next message's control frames (list of dicts)."""
    msg = await asyncio.wait_for(ws.recv(), timeout)
    if isinstance(msg, str):
        raise Failure(f"gateway sent a text message: {msg!r}")
    return [p for proto, p in parse_frames(msg) if proto == 0]


async def ws_until(ws, pred, timeout=EVENT_TIMEOUT):
    """Reads control messages until pred(msg) is true; returns that message."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Failure("timed out waiting for a control message")
        for m in await ws_recv_controls(ws, left):
            if pred(m):
                return m


async def ws_closed(ws, timeout=EVENT_TIMEOUT):
    """Reads until the gateway closes; returns (code, reason, control
    messages seen before the close)."""
    import websockets
    seen = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure(f"the gateway did not close the connection within {timeout:.0f} s")
            msg = await asyncio.wait_for(ws.recv(), left)
            if isinstance(msg, bytes):
                try:
                    seen += [p for proto, p in parse_frames(msg) if proto == 0]
                except Exception:
                    pass
    except websockets.exceptions.ConnectionClosed:
        pass
    except asyncio.TimeoutError:
        raise Failure(f"the gateway did not close the connection within {timeout:.0f} s")
    return ws.close_code, ws.close_reason, seen


# ----------------------------------------------------------------- running

_cases = []


def case(name=None, slow=False):
    def deco(fn):
        _cases.append((name or fn.__name__, fn))
        return fn
    return deco


def _watchdog(seconds, state):
    """Prints the logs and exits before ctest's TIMEOUT would kill us silently."""
    def fire():
        print(f"\nFAIL: the test file exceeded its own deadline of {seconds} s "
              f"(case {state.get('case')})", file=sys.stderr)
        env = state.get("env")
        if env:
            env.dump_logs()
            for p in env.procs:
                if p.alive():
                    os.kill(p.pid, signal.SIGKILL)
        sys.stderr.flush()
        os._exit(3)
    t = threading.Timer(seconds, fire)
    t.daemon = True
    t.start()
    return t


def main():
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", action="append", default=[], help="run only these cases")
    ap.add_argument("--skip", action="append", default=[], help="skip these cases")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--deadline", type=float, default=float(os.environ.get(
        "MUXGATE_TEST_DEADLINE", "1500")), help="seconds for the whole file")
    a = ap.parse_args()
    if a.list:
        for n, _ in _cases:
            print(n)
        return 0
    for b in (gateway_bin(), agent_bin()):
        if not os.access(b, os.X_OK):
            print(f"FAIL: {b} not found: set MUXGATE_BUILD_DIR to a build tree", file=sys.stderr)
            return 2
    for k in a.k + a.skip:
        if k not in [n for n, _ in _cases]:
            print(f"FAIL: no case named {k!r}", file=sys.stderr)
            return 2
    selected = [(n, f) for n, f in _cases
                if (not a.k or n in a.k) and n not in a.skip]
    state = {}
    _watchdog(a.deadline, state)
    failed = []
    print(f"build {BUILD_DIR} sanitized={SANITIZED} scale={SCALE}", flush=True)
    for n, fn in selected:
        env = Env(n)
        state.update(case=n, env=env)
        t0 = time.monotonic()
        err = None
        try:
            fn(env)
        except Exception:
            err = traceback.format_exc()
        problems = env.close()
        dt = time.monotonic() - t0
        if err or problems:
            failed.append(n)
            print(f"FAIL {n} ({dt:.1f} s)", flush=True)
            if err:
                print(err, file=sys.stderr)
            for p in problems:
                print(f"  problem at teardown: {p}", file=sys.stderr)
            env.dump_logs()
            print(f"  logs kept in {env.dir}", file=sys.stderr)
            sys.stderr.flush()
        else:
            print(f"ok   {n} ({dt:.1f} s)", flush=True)
            if not KEEP:
                shutil.rmtree(env.dir, ignore_errors=True)
    print(f"{len(selected) - len(failed)} passed, {len(failed)} failed", flush=True)
    return 1 if failed else 0
