#!/usr/bin/python3
"""HTTP plugin with curl: routing by Host on the gateway's TLS port (shared
with the agents) and on the plain port, bodies both ways with checksums,
chunked, HTTP/1.0, keep-alive, forwarded headers, and the answers the
gateway gives itself (404 unknown host, 503 agent offline, 502 local service
refusing, 421 SNI/Host mismatch)."""
import hashlib
import os
import re
import socket

import httpenv as he
from httpenv import h


def one_tunnel(env, opts="{}", plugin_extra="", tunnel="app"):
    g = he.setup(env, plugin_extra=plugin_extra)
    b = he.Backend(env)
    a = he.agent(env, g, [(tunnel, b.port, opts)])
    return g, b, a, f"{tunnel}.{he.BASE}"


@h.case()
def get_over_https_and_http(env):
    g, b, a, host = one_tunnel(env)
    r = he.curl(g, host, "/hello")
    h.check_eq(r.stdout, b"hello from backend\n", "body over https")
    r = he.curl(g, host.upper(), "/hello", https=False)
    h.check_eq(r.stdout, b"hello from backend\n", "body over plain http, host in capitals")
    # The agent's log reports where the tunnel is reachable.
    a.proc.wait_log(r"tunnel app is open at https://app\.test\.example")
    # Agents still connect on the same port: this one did.
    h.check(b.requests()[0][2]["x-forwarded-proto"] == "https", "X-Forwarded-Proto https")
    h.check(b.requests()[1][2]["x-forwarded-proto"] == "http", "X-Forwarded-Proto http")


@h.case()
def forwarded_headers(env):
    g, b, a, host = one_tunnel(env)
    r = he.curl(g, host, "/headers", args=["-H", "X-Forwarded-For: 6.6.6.6",
                                            "-H", "Forwarded: for=6.6.6.6"])
    text = r.stdout.decode()
    h.check("6.6.6.6" not in text, f"untrusted forwarding headers removed: {text}")
    h.check("X-Forwarded-For: 127.0.0.1\r\n" in text, f"X-Forwarded-For: {text}")
    h.check(f"X-Forwarded-Host: {host}\r\n" in text, f"X-Forwarded-Host: {text}")
    h.check(f"Forwarded: for=127.0.0.1;proto=https;host={host}\r\n" in text, f"Forwarded: {text}")


@h.case()
def trusted_forwarded_headers(env):
    g, b, a, host = one_tunnel(env, plugin_extra="trust_forwarded = true")
    r = he.curl(g, host, "/headers", args=["-H", "X-Forwarded-For: 6.6.6.6"])
    h.check("X-Forwarded-For: 6.6.6.6, 127.0.0.1\r\n" in r.stdout.decode(), r.stdout.decode())


@h.case()
def upload_and_download_checksums(env):
    g, b, a, host = one_tunnel(env)
    n = h.scaled(100 * 1024 * 1024, 1024 * 1024)
    path = env.path("upload.bin")
    data = he.pattern_bytes(n)
    with open(path, "wb") as f:
        f.write(data)
    want = hashlib.sha256(data).hexdigest()
    r = he.curl(g, host, "/sha256", data_file=path, args=["-H", "Content-Type: application/octet-stream"])
    h.check_eq(r.stdout.decode().strip(), f"{n} {want}", "POST with Content-Length")
    r = he.curl(g, host, "/sha256", data_file=path, https=False,
                args=["-H", "Transfer-Encoding: chunked"])
    h.check_eq(r.stdout.decode().strip(), f"{n} {want}", "chunked POST")
    # Downloads: Content-Length and chunked.
    r = he.curl(g, host, f"/bytes?n={n}")
    h.check(hashlib.sha256(r.stdout).hexdigest() == want, f"download of {n} bytes")
    r = he.curl(g, host, f"/chunks?n={n}")
    h.check(hashlib.sha256(r.stdout).hexdigest() == want, f"chunked download of {n} bytes")
    # Expect: 100-continue (curl sends it for large bodies; forced here).
    r = he.curl(g, host, "/sha256", data_file=path, args=["-H", "Expect: 100-continue"])
    h.check_eq(r.stdout.decode().strip(), f"{n} {want}", "POST with 100-continue")


@h.case()
def http10_head_and_keepalive(env):
    g, b, a, host = one_tunnel(env)
    r = he.curl(g, host, "/hello", args=["--http1.0", "-i"])
    h.check(r.stdout.endswith(b"hello from backend\n"), "HTTP/1.0 request")
    r = he.curl(g, host, "/bytes?n=1000", args=["-I"])
    h.check(b"Content-Length: 1000" in r.stdout, f"HEAD: {r.stdout!r}")
    # Many requests on one connection (curl reuses it for URLs given together).
    n = 200
    urls = []
    for i in range(n):
        urls.append(f"https://{host}:{g.port}/hello")
    r = he.curl(g, host, "/hello", args=["-w", "%{num_connects}\n"] + urls)
    text = r.stdout.decode()
    h.check_eq(text.count("hello from backend"), n + 1, "every response arrived")
    connects = [int(x) for x in re.findall(r"^(\d+)$", text, re.M)]
    h.check_eq(sum(connects), 1, "one TCP connection for all requests")
    h.check_eq(b.server.accepted, 3, "the backend saw one connection per client connection")


@h.case()
def pipelined_requests_answered_in_order(env):
    g, b, a, host = one_tunnel(env)
    reqs = b""
    n = 150  # more than the plugin keeps in flight (64): reading pauses and resumes
    for i in range(n):
        reqs += f"GET /bytes?n={1000 + i} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    reqs += f"GET /hello HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    out = he.raw_exchange(g.http_port, reqs)
    lens = [int(x) for x in re.findall(rb"Content-Length: (\d+)", out)]
    h.check_eq(lens, [1000 + i for i in range(n)] + [len(b"hello from backend\n")], "order")
    h.check(out.endswith(b"hello from backend\n"), "last response complete")


@h.case()
def host_switch_on_one_connection(env):
    g = he.setup(env)
    b1 = he.Backend(env, "one")
    b2 = he.Backend(env, "two")
    he.agent(env, g, [("one", b1.port, "{}"), ("two", b2.port, "{}")])
    reqs = b""
    for name in ["one", "two", "one"]:
        reqs += f"GET /hello HTTP/1.1\r\nHost: {name}.{he.BASE}\r\n\r\n".encode()
    reqs += f"GET /hello HTTP/1.1\r\nHost: two.{he.BASE}\r\nConnection: close\r\n\r\n".encode()
    out = he.raw_exchange(g.http_port, reqs)
    got = re.findall(rb"hello from (\w+)", out)
    h.check_eq(got, [b"one", b"two", b"one", b"two"], "each request routed by its own Host")


@h.case()
def unknown_host_404(env):
    g, b, a, host = one_tunnel(env)
    r = he.curl(g, "nothing.test.example", "/", args=["-w", "\n%{http_code}"])
    code, body = he.status_and_body(r)
    h.check_eq(code, 404, "unknown host")
    h.check(b"agent" not in body.lower() and b"app" not in body, f"404 names nothing internal: {body!r}")
    h.check_eq(len(b.requests()), 0, "nothing forwarded")


@h.case()
def sni_host_mismatch_421(env):
    g = he.setup(env)
    b = he.Backend(env)
    he.agent(env, g, [("one", b.port, "{}"), ("two", b.port, "{}")])
    out = he.raw_exchange(g.port, f"GET /hello HTTP/1.1\r\nHost: two.{he.BASE}\r\n\r\n".encode(),
                          tls_ca=g.cert, server_name=f"one.{he.BASE}")
    h.check(out.startswith(b"HTTP/1.1 421 "), f"421 for a Host other than the SNI: {out[:80]!r}")
    h.check_eq(len(b.requests()), 0, "nothing forwarded")


@h.case()
def local_service_refusing_502(env):
    g = he.setup(env)
    dead = h.pick_port()
    he.agent(env, g, [("dead", dead, "{}")])
    r = he.curl(g, f"dead.{he.BASE}", "/", args=["-w", "\n%{http_code}"])
    code, body = he.status_and_body(r)
    h.check_eq(code, 502, "local service refusing")
    h.check(b"could not reach the local service" in body, f"explanation: {body!r}")


@h.case()
def agent_offline_503(env):
    g, b, a, host = one_tunnel(env)
    he.curl(g, host, "/hello")
    a.proc.stop()
    g.proc.wait_log(r"agent=agent disconnected")
    r = he.curl(g, host, "/hello", args=["-w", "\n%{http_code}"])
    code, body = he.status_and_body(r)
    h.check_eq(code, 503, "agent offline")
    h.check(b"not connected" in body, f"explanation: {body!r}")
    # It comes back: the same name serves again.
    he.agent(env, g, [("app", b.port, "{}")], name="agent2", agent_name="agent")
    r = he.curl(g, host, "/hello")
    h.check_eq(r.stdout, b"hello from backend\n", "back online")


if __name__ == "__main__":
    raise SystemExit(h.main())
