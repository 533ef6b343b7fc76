#!/usr/bin/python3
"""HTTP plugin at the edges: malformed and smuggling requests are answered
by the gateway and never reach the backend; two agents with different host
names share the gateway's port; the ACL decides who may claim which name;
per-tunnel basic auth and source-IP allow lists; plain HTTP redirected to
HTTPS; wrk keep-alive load; nginx behind the agent."""
import os
import re
import subprocess

import httpenv as he
from httpenv import h


def one_tunnel(env, opts="{}", plugin_extra=""):
    g = he.setup(env, plugin_extra=plugin_extra)
    b = he.Backend(env)
    a = he.agent(env, g, [("app", b.port, opts)])
    return g, b, a, f"app.{he.BASE}"


def status_of(out):
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", out)
    return int(m.group(1)) if m else None


@h.case()
def malformed_requests_never_forwarded(env):
    g, b, a, host = one_tunnel(env, plugin_extra="max_head = 4096\nmax_headers = 20")
    cases = [
        (431, f"GET / HTTP/1.1\r\nHost: {host}\r\nX-Big: {'x' * 5000}\r\n\r\n"),
        (431, f"GET / HTTP/1.1\r\nHost: {host}\r\n" + "".join(f"X-{i}: v\r\n" for i in range(25)) + "\r\n"),
        (400, f"POST /sha256 HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n"
              f"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hello HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        (400, f"POST /sha256 HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello"),
        (400, f"POST /sha256 HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
        (400, f"POST /sha256 HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
        (400, f"GET / HTTP/1.1\r\nHost: {host}\r\nX-Folded: a\r\n b\r\n\r\n"),
        (400, f"GET / HTTP/1.1\nHost: {host}\n\n"),
        (400, "GET / HTTP/1.1\r\n\r\n"),
        (501, f"POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: gzip\r\n\r\n"),
    ]
    for https in (False, True):
        for want, text in cases:
            out = he.raw_exchange(g.port if https else g.http_port, text.encode(),
                                  tls_ca=g.cert if https else None, server_name=host)
            h.check_eq(status_of(out), want, f"answer to {text[:70]!r} (https={https})")
    h.check_eq(b.requests(), [], "the backend saw none of them")
    # A bad chunk size: the head was fine and went on, the body did not; the
    # client gets 400 and the backend never sees a complete request.
    out = he.raw_exchange(g.http_port, f"POST /sha256 HTTP/1.1\r\nHost: {host}\r\n"
                          f"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".encode())
    h.check_eq(status_of(out), 400, "bad chunk size")
    out = he.raw_exchange(g.http_port, f"POST /sha256 HTTP/1.1\r\nHost: {host}\r\n"
                          f"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n".encode())
    h.check_eq(status_of(out), 400, "chunk longer than its size")
    # The gateway logs what was wrong.
    g.proc.wait_log(r"plugin=http client 127\.0\.0\.1: 400 both Content-Length and Transfer-Encoding")
    # Still serving.
    h.check_eq(he.curl(g, host, "/hello").stdout, b"hello from backend\n", "still serving")


@h.case()
def two_agents_acl_and_explicit_names(env):
    agents = f"""
[[agent]]
name = "alpha"
token_hash = "{h.token_hash('alpha-token')}"
acl.http.hostnames = ["*.other.example"]

[[agent]]
name = "beta"
token_hash = "{h.token_hash('beta-token')}"
"""
    g = he.setup(env, agents=agents)
    b1 = he.Backend(env, "alpha-web")
    b2 = he.Backend(env, "beta-web")

    def start(name, tunnels, token):
        text = f"""[agent]
name = "{name}"
gateway = "wss://127.0.0.1:{g.port}/muxgate"
ca = "{g.cert}"
"""
        for t, port, opts in tunnels:
            text += f'\n[[tunnel]]\nname = "{t}"\nprotocol = "http"\nlocal = "127.0.0.1:{port}"\noptions = {opts}\n'
        return env.agent(config=text, name=name, token=token)

    a1 = start("alpha", [("web", b1.port, '{ hostnames = ["www.other.example"] }')], "alpha-token")
    a1.proc.wait_log(r"tunnel web is open at https://www\.other\.example https://web\.test\.example")
    # beta may not claim a name outside base_domain, nor one alpha holds.
    a2 = start("beta", [("site", b2.port, "{}"),
                        ("steal", b2.port, '{ hostnames = ["www.other.example"] }'),
                        ("taken", b2.port, '{ hostnames = ["web.test.example"] }')], "beta-token")
    a2.proc.wait_log(r"tunnel site is open at https://site\.test\.example")
    a2.proc.wait_log(r"tunnel steal.*www\.other\.example is not allowed for agent beta")
    a2.proc.wait_log(r"tunnel taken.*web\.test\.example is already served by another tunnel")
    h.check_eq(he.curl(g, "www.other.example", "/hello").stdout, b"hello from alpha-web\n", "alpha, explicit")
    h.check_eq(he.curl(g, "web.test.example", "/hello").stdout, b"hello from alpha-web\n", "alpha, base domain")
    h.check_eq(he.curl(g, "site.test.example", "/hello").stdout, b"hello from beta-web\n", "beta")


@h.case()
def basic_auth_and_allow_list(env):
    pw_hash = he.sha256_hex("s3cret")
    g = he.setup(env)
    b = he.Backend(env)
    he.agent(env, g, [
        ("private", b.port, f'{{ basic_auth = ["alice:{pw_hash}"] }}'),
        ("office", b.port, '{ allow_ips = ["10.0.0.0/8", "192.0.2.1"] }'),
        ("local", b.port, '{ allow_ips = ["127.0.0.0/8"] }'),
    ])
    r = he.curl(g, f"private.{he.BASE}", "/hello", args=["-w", "\n%{http_code}", "-D", "-"])
    code, body = he.status_and_body(r)
    h.check_eq(code, 401, "no credentials")
    h.check(b"WWW-Authenticate: Basic realm=" in body, "challenge")
    code, _ = he.status_and_body(he.curl(g, f"private.{he.BASE}", "/hello",
                                         args=["-w", "\n%{http_code}", "-u", "alice:wrong"]))
    h.check_eq(code, 401, "wrong password")
    r = he.curl(g, f"private.{he.BASE}", "/hello", args=["-u", "alice:s3cret"])
    h.check_eq(r.stdout, b"hello from backend\n", "right password")
    code, _ = he.status_and_body(he.curl(g, f"office.{he.BASE}", "/hello", args=["-w", "\n%{http_code}"]))
    h.check_eq(code, 403, "address not in allow_ips")
    h.check_eq(he.curl(g, f"local.{he.BASE}", "/hello").stdout, b"hello from backend\n", "allowed address")
    h.check_eq(len(b.requests()), 2, "only the allowed requests reached the backend")


@h.case()
def redirect_plain_to_https(env):
    g, b, a, host = one_tunnel(env, plugin_extra="redirect_https = true\nhttps_port = 8443")
    r = he.curl(g, host, "/a/b?c=1", https=False, args=["-w", "\n%{http_code}", "-D", "-"])
    code, body = he.status_and_body(r)
    h.check_eq(code, 308, "redirect")
    h.check(f"Location: https://{host}:8443/a/b?c=1\r\n".encode() in body, f"Location: {body!r}")
    h.check_eq(he.curl(g, host, "/hello").stdout, b"hello from backend\n", "https still serves")


@h.case()
def wrk_keepalive_load(env):
    g, b, a, host = one_tunnel(env)
    # wrk cannot resolve our test names: send Host by hand to the plain port.
    r = subprocess.run(["wrk", "-t2", "-c16", "-d3s", "-H", f"Host: {host}",
                        f"http://127.0.0.1:{g.http_port}/hello"],
                       capture_output=True, text=True, timeout=60)
    h.check(r.returncode == 0, f"wrk: {r.stderr}")
    m = re.search(r"(\d+) requests in", r.stdout)
    h.check(m and int(m.group(1)) > 0, f"wrk made requests: {r.stdout}")
    h.check("Non-2xx" not in r.stdout and "Socket errors" not in r.stdout, f"no errors: {r.stdout}")
    print(r.stdout, flush=True)


def start_nginx(env, root):
    for _ in range(10):
        port = h.pick_port()
        conf = env.write("nginx.conf", f"""daemon off;
worker_processes 1;
pid {env.path('nginx.pid')};
error_log {env.path('nginx-error.log')} info;
events {{ worker_connections 256; }}
http {{
    access_log {env.path('nginx-access.log')};
    client_body_temp_path {env.path('nginx-body')};
    proxy_temp_path {env.path('nginx-proxy')};
    fastcgi_temp_path {env.path('nginx-fastcgi')};
    uwsgi_temp_path {env.path('nginx-uwsgi')};
    scgi_temp_path {env.path('nginx-scgi')};
    server {{
        listen 127.0.0.1:{port};
        server_name _;
        root {root};
        location /echo-host {{ return 200 "host=$host xff=$http_x_forwarded_for proto=$http_x_forwarded_proto\\n"; }}
    }}
}}
""")
        p = env.start("nginx", ["nginx", "-c", conf, "-p", env.dir, "-e", env.path("nginx-error.log")])
        env.extra_logs.append(env.path("nginx-error.log"))
        try:
            h.wait_for(lambda: h.port_free(port) is False or not p.alive(), h.START_TIMEOUT, "nginx listening")
        except h.Failure:
            pass
        if p.alive():
            return p, port
    raise h.Failure("nginx would not start")


@h.case()
def nginx_behind_the_agent(env):
    root = env.path("www")
    os.makedirs(root)
    os.chmod(env.dir, 0o755)  # nginx's worker may run as another user
    n = h.scaled(32 * 1024 * 1024, 1024 * 1024)
    data = he.pattern_bytes(n)
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.write(data)
    with open(os.path.join(root, "index.html"), "w") as f:
        f.write("<h1>nginx via muxgate</h1>\n")
    ng, port = start_nginx(env, root)
    g = he.setup(env)
    he.agent(env, g, [("site", port, '{ host_header = "localhost" }')])
    host = f"site.{he.BASE}"
    h.check_eq(he.curl(g, host, "/").stdout, b"<h1>nginx via muxgate</h1>\n", "index")
    r = he.curl(g, host, "/echo-host")
    h.check_eq(r.stdout, b"host=localhost xff=127.0.0.1 proto=https\n", "Host rewritten, forwarded headers kept")
    import hashlib
    r = he.curl(g, host, "/big.bin")
    h.check(hashlib.sha256(r.stdout).digest() == hashlib.sha256(data).digest(), "download through nginx")
    # Range requests and 304s pass through unchanged.
    r = he.curl(g, host, "/big.bin", args=["-r", "100-199"])
    h.check_eq(r.stdout, data[100:200], "range request")
    r = he.curl(g, host, "/index.html", args=["-D", "-", "-o", "/dev/null"])
    m = re.search(rb"Last-Modified: ([^\r]+)\r\n", r.stdout)
    h.check(m, f"Last-Modified: {r.stdout!r}")
    r = he.curl(g, host, "/index.html", args=["-w", "%{http_code}", "-o", "/dev/null",
                                               "-H", "If-Modified-Since: " + m.group(1).decode()])
    h.check_eq(r.stdout, b"304", "304 Not Modified")
    code, _ = he.status_and_body(he.curl(g, host, "/missing", args=["-w", "\n%{http_code}"]))
    h.check_eq(code, 404, "nginx's own 404 passes through")


@h.case()
def slow_and_idle_clients_timed_out(env):
    g, b, a, host = one_tunnel(env, plugin_extra="head_timeout_ms = 300")
    # A head that never completes: 408, then closed.
    out = he.raw_exchange(g.http_port, f"GET /hello HTTP/1.1\r\nHost: {host}\r\n".encode())
    h.check_eq(status_of(out), 408, "incomplete head")
    # An idle keep-alive connection after a response: closed quietly.
    out = he.raw_exchange(g.http_port, f"GET /hello HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    h.check(out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"hello from backend\n"),
            f"one response, then the idle connection closed: {out!r}")


@h.case()
def https_local_server_verified(env):
    """The agent speaks TLS to the local server and checks its certificate."""
    cert, key = env.path("local-cert.pem"), env.path("local-key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", cert, "-subj", "/CN=local.lan", "-days", "1",
                    "-addext", "subjectAltName=DNS:local.lan"], check=True, capture_output=True, timeout=60)
    for _ in range(10):
        port = h.pick_port()
        srv = env.start("s_server", ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", cert,
                                     "-key", key, "-www", "-naccept", "1000"])
        try:
            srv.wait_log(r"ACCEPT", h.START_TIMEOUT)
            break
        except h.Failure:
            continue
    g = he.setup(env)
    he.agent(env, g, [("good", port, f'{{ tls = true, ca = "{cert}", name = "local.lan" }}'),
                      ("badname", port, f'{{ tls = true, ca = "{cert}", name = "other.lan" }}'),
                      ("noverify", port, '{ tls = true, verify = false }')])
    r = he.curl(g, f"good.{he.BASE}", "/", args=["-w", "\n%{http_code}"])
    code, body = he.status_and_body(r)
    h.check_eq(code, 200, "https target, verified")
    h.check(b"s_server" in body, f"openssl s_server's page: {body[:200]!r}")
    code, _ = he.status_and_body(he.curl(g, f"noverify.{he.BASE}", "/", args=["-w", "\n%{http_code}"]))
    h.check_eq(code, 200, "https target, verify = false")
    code, body = he.status_and_body(he.curl(g, f"badname.{he.BASE}", "/", args=["-w", "\n%{http_code}"]))
    h.check_eq(code, 502, "certificate name mismatch refused")


@h.case()
def example_configs_pass_check(env):
    """etc/gateway.http.toml and etc/agent.http.toml pass --check-config
    (with their files and ports pointed into the case directory)."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "etc")
    cert, key = env.path("c.pem"), env.path("k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", cert, "-subj", "/CN=x", "-days", "1"],
                   check=True, capture_output=True, timeout=60)
    token = env.write("token", "tok\n")
    with open(os.path.join(src, "gateway.http.toml")) as f:
        text = f.read()
    text = re.sub(r"/etc/muxgate/[a-z-]+\.pem", cert, text)
    text = re.sub(r"/etc/muxgate/[a-z-]+\.key", key, text)
    text = text.replace('"0.0.0.0:80"', f'"127.0.0.1:{h.pick_port()}"')
    g = env.write("gateway.http.toml", text)
    r = subprocess.run([h.gateway_bin(), "--check-config", "--config", g], capture_output=True,
                       text=True, timeout=h.START_TIMEOUT)
    h.check(r.returncode == 0 and "configuration OK" in r.stdout, f"gateway: {r.stdout} {r.stderr}")
    with open(os.path.join(src, "agent.http.toml")) as f:
        text = f.read()
    text = text.replace("/etc/muxgate/agent.token", token).replace("/etc/muxgate/nas-ca.pem", cert)
    text = text.replace("127.0.0.1:4040", f"127.0.0.1:{h.pick_port()}")
    a = env.write("agent.http.toml", text)
    r = subprocess.run([h.agent_bin(), "--check-config", "--config", a], capture_output=True,
                       text=True, timeout=h.START_TIMEOUT)
    h.check_eq((r.returncode, r.stdout), (0, f"{a}: configuration OK (2 tunnels)\n"), f"agent ({r.stderr})")


if __name__ == "__main__":
    raise SystemExit(h.main())
