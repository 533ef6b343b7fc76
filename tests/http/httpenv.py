"""Helpers of the HTTP plugin tests, on top of tests/integration/harness.py.

setup() starts a gateway whose [plugins.http] serves the gateway's own TLS
port (shared with the agents) and a plain-HTTP listener, and returns an
object with both ports. agent() starts an agent with http tunnels from a
TOML file. Backend is a small threaded HTTP/1.1 server in this process that
records every request it sees (so a test can assert that something was
never forwarded) and serves:
    GET  /hello           "hello from <name>"
    GET  /bytes?n=N       N pattern bytes (Content-Length)
    GET  /chunks?n=N      N pattern bytes, chunked
    GET  /headers         the request head as it arrived, as text
    POST /sha256          the sha256 of the body (length or chunked)
    GET  /sse?n=N         N server-sent events; each waits until the test
                          saw the previous one (the backend's `gate`)
curl() runs curl against the gateway with --resolve for a host name.
"""
import hashlib
import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness as h  # noqa: E402

BASE = "test.example"


class Gateway:
    def __init__(self, gw, http_port):
        self.gw = gw
        self.proc = gw.proc
        self.port = gw.port
        self.http_port = http_port
        self.cert = gw.cert


def gateway_config(env, port, http_port, plugin_extra="", agents=""):
    text = h.gateway_toml(env, port, agents=agents, extra="")
    text = text.replace("self_signed = true\n", 'self_signed = true\nself_signed_names = ["*.test.example", '
                        '"*.other.example"]\n', 1)
    return text + f"""
[plugins.http]
https = true
listen = "127.0.0.1:{http_port}"
base_domain = "{BASE}"
{plugin_extra}
"""


def setup(env, plugin_extra="", agents="", name="gateway"):
    """A gateway with the http plugin on its TLS port and a plain port."""
    for _ in range(10):
        http_port = h.pick_port()
        try:
            gw = env.gateway(name=name, config=lambda p: gateway_config(env, p, http_port,
                                                                          plugin_extra, agents))
        except h.Failure:
            if "cannot listen" in env.procs[-1].text() or "Address already in use" in env.procs[-1].text():
                env.procs[-1].expect_clean_exit = False
                continue
            raise
        gw.proc.wait_log(r"plugin=http listening on 127\.0\.0\.1:%d" % http_port,
                         what="http listener")
        return Gateway(gw, http_port)
    raise h.Failure("no free port for the http listener")


def agent(env, g, tunnels, name="agent", agent_name=None, extra=""):
    """tunnels: list of (tunnel name, local port, options TOML inline table)."""
    text = f"""[agent]
name = "{agent_name or name}"
gateway = "wss://127.0.0.1:{g.port}/muxgate"
ca = "{g.cert}"
{extra}
"""
    for tname, port, opts in tunnels:
        text += f"""
[[tunnel]]
name = "{tname}"
protocol = "http"
local = "127.0.0.1:{port}"
options = {opts or "{}"}
"""
    a = env.agent(config=text, name=name, extra_env={"MUXGATE_TOKEN": h.TOKEN})
    for tname, _, _ in tunnels:
        a.proc.wait_log(r"tunnel " + re.escape(tname) + r" is open at ", what=f"tunnel {tname}")
    return a


def curl(g, host, path="/", https=True, args=(), timeout=None, check=True, data_file=None):
    """curl through the gateway with --resolve; returns CompletedProcess
    (stdout bytes). -sS, --fail-with-body off: the status is in the output
    when asked with -w."""
    port = g.port if https else g.http_port
    scheme = "https" if https else "http"
    argv = ["curl", "-sS", "--resolve", f"{host}:{port}:127.0.0.1",
            "--max-time", str(timeout or h.IO_TIMEOUT)]
    if https:
        argv += ["--cacert", g.cert]
    argv += list(args)
    if data_file:
        argv += ["--data-binary", "@" + data_file]
    argv.append(f"{scheme}://{host}:{port}{path}")
    r = subprocess.run(argv, capture_output=True, timeout=(timeout or h.IO_TIMEOUT) + 10)
    if check and r.returncode != 0:
        raise h.Failure(f"curl {' '.join(argv)}: exit {r.returncode}: {r.stderr.decode(errors='replace')}")
    return r


def status_and_body(r):
    """For curl -w '\\n%{http_code}': (status, body bytes)."""
    body, _, code = r.stdout.rpartition(b"\n")
    return int(code), body


def pattern_bytes(n, seed=7):
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    while len(out) < n:
        out += block[: n - len(out)]
    return bytes(out)


class Backend:
    """A threaded HTTP/1.1 server on 127.0.0.1:0 (keep-alive, pipelining)."""

    def __init__(self, env, name="backend"):
        self.name = name
        self.seen = []  # (method, path, headers dict lower-case)
        self.lock = threading.Lock()
        self.gate = threading.Semaphore(0)
        self.errors = []
        self.server = h.Server(env, self._handle, name=name, tolerate_reset=True)
        self.port = self.server.port

    def requests(self):
        with self.lock:
            return list(self.seen)

    def _handle(self, conn, idx):
        conn.settimeout(h.IO_TIMEOUT)
        f = conn.makefile("rb")
        try:
            while True:
                line = f.readline(65536)
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    continue
                method, path, version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
                headers = {}
                raw = [line]
                while True:
                    hl = f.readline(65536)
                    raw.append(hl)
                    if hl in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = hl.decode("latin-1").partition(":")
                    headers.setdefault(k.strip().lower(), v.strip())
                with self.lock:
                    self.seen.append((method, path, headers))
                body_hash = hashlib.sha256()
                nbody = 0
                if "content-length" in headers:
                    left = int(headers["content-length"])
                    while left:
                        b = f.read(min(left, 1 << 20))
                        if not b:
                            return
                        body_hash.update(b)
                        nbody += len(b)
                        left -= len(b)
                elif headers.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        size = int(f.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while f.readline() not in (b"\r\n", b""):
                                pass
                            break
                        left = size
                        while left:
                            b = f.read(min(left, 1 << 20))
                            body_hash.update(b)
                            nbody += len(b)
                            left -= len(b)
                        f.readline()
                keep = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
                if not self._respond(conn, method, path, headers, raw, body_hash, nbody, keep):
                    return
                if not keep:
                    conn.shutdown(socket.SHUT_WR)
                    return
        except (OSError, ValueError) as e:
            if not isinstance(e, (ConnectionResetError, BrokenPipeError, socket.timeout)):
                self.errors.append(repr(e))

    def _send(self, conn, status, body, ctype="text/plain", extra=""):
        head = (f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                f"{extra}\r\n").encode()
        conn.sendall(head + body)

    def _respond(self, conn, method, path, headers, raw, body_hash, nbody, keep):
        p, _, q = path.partition("?")
        args = dict(kv.split("=", 1) for kv in q.split("&") if "=" in kv)
        if p == "/hello":
            self._send(conn, 200, f"hello from {self.name}\n".encode())
        elif p == "/bytes":
            body = pattern_bytes(int(args.get("n", "0")))
            if method == "HEAD":
                conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode())
            else:
                self._send(conn, 200, body, "application/octet-stream")
        elif p == "/chunks":
            n = int(args.get("n", "0"))
            body = pattern_bytes(n)
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            step = 100000
            for i in range(0, n, step):
                part = body[i:i + step]
                conn.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
            conn.sendall(b"0\r\nX-Trailer: done\r\n\r\n")
        elif p == "/headers":
            self._send(conn, 200, b"".join(raw))
        elif p == "/sha256":
            self._send(conn, 200, f"{nbody} {body_hash.hexdigest()}\n".encode())
        elif p == "/sse":
            n = int(args.get("n", "3"))
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(n):
                ev = f"id: {i}\ndata: event {i}\n\n".encode()
                conn.sendall(b"%x\r\n" % len(ev) + ev + b"\r\n")
                # The next event only after the client saw this one: if
                # anything buffered the stream, the test times out here.
                if i + 1 < n and not self.gate.acquire(timeout=h.EVENT_TIMEOUT):
                    self.errors.append(f"SSE event {i} never reached the client")
                    return False
            conn.sendall(b"0\r\n\r\n")
        else:
            self._send(conn, 404, b"no such path\n")
        return True


def raw_exchange(port, data, host="127.0.0.1", tls_ca=None, server_name=None, read_until_close=True,
                 timeout=None):
    """Sends raw bytes and reads until the server closes; returns bytes."""
    import ssl
    s = socket.create_connection((host, port), timeout=timeout or h.IO_TIMEOUT)
    if tls_ca:
        ctx = ssl.create_default_context(cafile=tls_ca)
        ctx.check_hostname = False
        s = ctx.wrap_socket(s, server_hostname=server_name)
    s.sendall(data)
    out = b""
    while True:
        try:
            b = s.recv(65536)
        except ConnectionResetError:
            break
        if not b:
            break
        out += b
    s.close()
    return out


def sha256_hex(text):
    return hashlib.sha256(text.encode()).hexdigest()
