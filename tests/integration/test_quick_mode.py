#!/usr/bin/python3
"""1. Quick mode exactly as the README documents it: a gateway with
--self-signed --cert-out and a shared MUXGATE_TOKEN, an agent with --ca and
one --tunnel tcp:0:HOST:PORT. curl fetches a file from a local
`python3 -m http.server` through the tunnel, byte-exact."""
import hashlib
import os
import re
import subprocess

import harness as h


@h.case("curl_through_quick_mode_tunnel")
def curl_through_tunnel(env):
    www = env.path("www")
    os.makedirs(www)
    size = h.scaled(8 * h.MiB, 1 * h.MiB) + 12345  # not a multiple of any buffer
    body = h.pattern().bytes(7, size)
    with open(os.path.join(www, "blob.bin"), "wb") as f:
        f.write(body)
    web = env.start("http.server", ["/usr/bin/python3", "-u", "-m", "http.server", "0",
                                    "--bind", "127.0.0.1", "--directory", www])
    web_port = int(web.wait_log(r"Serving HTTP on 127\.0\.0\.1 port (\d+)", h.START_TIMEOUT).group(1))

    # Exactly the documented flags (no --public-bind, no --log-level).
    gw = env.gateway(token="secret", public_bind=None, log_level=None)
    h.check(os.path.exists(gw.cert), "--cert-out wrote the certificate")
    h.check(gw.pin and re.fullmatch(r"sha256//[A-Za-z0-9+/]{43}=", gw.pin),
            f"the gateway logs its public key pin (got {gw.pin!r})")
    agent = env.agent(gw, [f"tcp:0:127.0.0.1:{web_port}"], name="quick", token="secret",
                      log_level=None)
    # Quick mode binds tunnel ports on 0.0.0.0 (public_bind default).
    m = agent.proc.wait_log(r"tunnel (tcp-127\.0\.0\.1-%d) is open at 0\.0\.0\.0:(\d+)$" % web_port)
    port = int(m.group(2))
    gw.proc.wait_log(r"agent=quick tunnel=tcp-127\.0\.0\.1-%d protocol=tcp registered at "
                     r"0\.0\.0\.0:%d" % (web_port, port))

    for attempt in range(2):  # a second request on a new connection
        out = env.path(f"fetched{attempt}.bin")
        r = subprocess.run(["curl", "-sS", "--max-time", str(h.IO_TIMEOUT), "-o", out,
                            "-w", "%{http_code} %{size_download}",
                            f"http://127.0.0.1:{port}/blob.bin"],
                           capture_output=True, text=True, timeout=h.IO_TIMEOUT + 10)
        h.check_eq(r.returncode, 0, f"curl exit status (stderr: {r.stderr.strip()})")
        h.check_eq(r.stdout, f"200 {size}", "curl: HTTP status and bytes downloaded")
        with open(out, "rb") as f:
            got = f.read()
        h.check_eq(hashlib.sha256(got).hexdigest(), hashlib.sha256(body).hexdigest(),
                   "sha256 of the fetched file")
    h.check(web.find(r'"GET /blob\.bin HTTP/1\.1" 200'), "http.server saw the request")


if __name__ == "__main__":
    raise SystemExit(h.main())
