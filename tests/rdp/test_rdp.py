#!/usr/bin/python3
"""The rdp plugin with FreeRDP's own programs: `freerdp-shadow-cli` (an RDP
server sharing an Xvfb display, NLA against a SAM file made with
`winpr-hash`) and `xfreerdp` (the client, on an Xvfb display of its own),
through a real gateway and agent. Cases:

  * auth_only_through_tunnel_port: a tunnel's own public port; xfreerdp
    +auth-only exits 0 with the right password and fails with a wrong one
    (NLA runs end to end); the audit line carries client, target and bytes.
  * full_session_shows_the_frame: a full session; the client's screen shows
    what the server's display shows (a picture drawn there), compared pixel
    by pixel with a tolerance for codec loss.
  * shared_port_routes_by_first_packet: two desktops with different
    passwords behind one public port, selected by /load-balance-info: (plain,
    qualified <agent>.<tunnel>, the session broker's tsv:// form), by the
    mstshash cookie (/u:), by /pcb: and /pcid:, and by a generated .rdp
    file; an unknown name, a wrong name and access lists are refused with a
    log line.
  * stalled_and_malformed_clients: half a TPKT then silence is reset after
    first_packet_timeout_ms and frees its max_pending slot; a TLS ClientHello
    is refused at once; a refused client that keeps its connection open does
    not hold a pending slot.
"""
import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness as h  # noqa: E402

SRC = os.path.dirname(os.path.abspath(__file__))
RDPFILE = os.path.join(SRC, "..", "..", "plugins", "rdp", "muxgate-rdpfile")
SIZE = (320, 240)           # the shared desktop; small keeps the codecs quick
FREERDP_TIMEOUT = 60 * h.SLOW


def freerdp_env(env, display):
    home = env.path("home")
    os.makedirs(home, exist_ok=True)
    return {"HOME": home, "XDG_CONFIG_HOME": os.path.join(home, ".config"),
            "DISPLAY": f":{display}"}


def xvfb(env, name, size):
    """An Xvfb on a free display number (-displayfd); returns the number.
    -noreset: the root window keeps its picture when the last client leaves."""
    out = env.path(f"{name}.displayfd")
    env.start(name, ["sh", "-c", f"exec Xvfb -displayfd 3 -screen 0 {size[0]}x{size[1]}x24 "
                                 f"-nolisten tcp -noreset 3>{out}"])
    def read():
        try:
            with open(out) as f:
                t = f.read()
        except OSError:
            return None
        return t.strip() if t.endswith("\n") else None
    return h.wait_for(read, h.START_TIMEOUT, f"{name} to report its display")


def nt_hash(user, password):
    r = subprocess.run(["winpr-hash", "-u", user, "-p", password], capture_output=True, text=True,
                       timeout=h.START_TIMEOUT)
    h.check(r.returncode == 0 and re.fullmatch(r"[0-9a-f]{32}\n", r.stdout),
            f"winpr-hash: {r.returncode} {r.stdout!r} {r.stderr!r}")
    return r.stdout.strip()


class Desktop:
    """Xvfb + freerdp-shadow-cli with NLA for `users` {name: password}."""

    def __init__(self, env, name, users, picture=None):
        self.display = xvfb(env, f"{name}-xvfb", SIZE)
        self.fenv = freerdp_env(env, self.display)
        if picture:
            draw(env, self.fenv, picture)
        sam = env.write(f"{name}.sam", "".join(f"{u}:::{nt_hash(u, p)}:::\n"
                                              for u, p in users.items()))
        for _ in range(10):
            self.port = h.pick_port()
            self.proc = env.start(f"{name}-shadow", [
                "freerdp-shadow-cli", f"/port:{self.port}", "/bind-address:127.0.0.1",
                f"/sam-file:{sam}", "/sec:nla", "+auth"], extra_env=self.fenv)
            if h.wait_for(lambda: self._listening() or not self.proc.alive(), h.START_TIMEOUT,
                          f"{name} shadow server to listen") is True and self.proc.alive():
                return
            self.proc.stop()
        raise h.Failure(f"{name}: freerdp-shadow-cli did not start")

    def _listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False


def picture_ppm(path, w, h_):
    """Four coloured quadrants with a white bar: easy to recognise after
    lossy codecs, impossible to match by chance."""
    px = bytearray()
    for y in range(h_):
        for x in range(w):
            if h_ // 2 - 8 <= y < h_ // 2 + 8:
                c = (250, 250, 250)
            elif y < h_ // 2:
                c = (220, 30, 30) if x < w // 2 else (30, 200, 40)
            else:
                c = (30, 60, 220) if x < w // 2 else (230, 200, 20)
            px += bytes(c)
    with open(path, "wb") as f:
        f.write(b"P6 %d %d 255\n" % (w, h_) + px)


def draw(env, fenv, picture):
    """Sets the root window of that display to the picture (ImageMagick's
    display exits after setting it)."""
    e = dict(os.environ, **fenv)
    subprocess.run(["display", "-window", "root", picture], env=e, capture_output=True,
                   timeout=h.START_TIMEOUT)


def screenshot(fenv, size):
    """The root window as RGB bytes (ImageMagick's import)."""
    e = dict(os.environ, **fenv)
    r = subprocess.run(["import", "-window", "root", "-depth", "8", "rgb:-"], env=e,
                       capture_output=True, timeout=h.START_TIMEOUT)
    if r.returncode != 0 or len(r.stdout) != size[0] * size[1] * 3:
        return None
    return r.stdout


def similar(a, a_size, b, b_size, w, h_, tolerance=24):
    """Share of pixels in the top-left w x h whose channels all lie within
    `tolerance` (lossy codecs shift colours a little)."""
    ok = 0
    total = 0
    for y in range(0, h_, 4):
        for x in range(0, w, 4):
            i = (y * a_size[0] + x) * 3
            j = (y * b_size[0] + x) * 3
            total += 1
            if all(abs(a[i + k] - b[j + k]) <= tolerance for k in range(3)):
                ok += 1
    return ok / total


def xfreerdp(env, display, port, user, password, *extra, auth_only=True, rdp_file=None):
    argv = ["xfreerdp"] + ([rdp_file] if rdp_file else []) + [
        f"/u:{user}", f"/p:{password}", "/sec:nla", "/cert:ignore", "/log-level:ERROR"]
    if port:
        argv.insert(1, f"/v:127.0.0.1:{port}")
    argv += list(extra)
    if auth_only:
        argv.append("+auth-only")
    e = dict(os.environ, **freerdp_env(env, display))
    r = subprocess.run(argv, env=e, capture_output=True, text=True, timeout=FREERDP_TIMEOUT)
    return r.returncode, r.stdout + r.stderr


def expect_auth(env, display, port, user, password, *extra, ok=True, what="", rdp_file=None):
    rc, out = xfreerdp(env, display, port, user, password, *extra, rdp_file=rdp_file)
    if ok:
        h.check(rc == 0, f"xfreerdp +auth-only {what} exits 0 (got {rc}): {out[-600:]}")
    else:
        h.check(rc != 0, f"xfreerdp +auth-only {what} fails (got {rc}): {out[-600:]}")


def rdp_gateway(env, extra_plugin="", agents="", log_level=h.LOG_LEVEL):
    shared = h.pick_port()
    gw = env.gateway(log_level=log_level, config=lambda p: h.gateway_toml(env, p, agents=agents) + f"""
[plugins.rdp]
listen = "127.0.0.1:{shared}"
{extra_plugin}
""")
    gw.proc.wait_log(r"rdp: shared port 127\.0\.0\.1:%d routes" % shared, what="shared port")
    return gw, shared


def agent_config(gw, name, tunnels):
    text = f"""[agent]
name = "{name}"
gateway = "wss://127.0.0.1:{gw.port}"
ca = "{gw.cert}"
"""
    for tname, local, options in tunnels:
        text += f"""
[[tunnel]]
name = "{tname}"
protocol = "rdp"
remote_port = 0
local = "{local}"
options = {options}
"""
    return text


# ---------------------------------------------------------------------- cases


@h.case("auth_only_through_tunnel_port")
def auth_only(env):
    desk = Desktop(env, "desk", {"user": "pass"})
    client = xvfb(env, "client-xvfb", (640, 480))
    gw = env.gateway()
    agent = env.agent(gw, [f"rdp:0:127.0.0.1:{desk.port}"])
    m = agent.proc.wait_log(r"tunnel (\S+) is open at \S+:(\d+)$", what="rdp tunnel open")
    tname, port = m.group(1), int(m.group(2))

    expect_auth(env, client, port, "user", "pass", what="through the tunnel port")
    audit = gw.proc.wait_log(r"rdp: session client=127\.0\.0\.1:\d+ target=agent/%s via=port "
                             r"bytes_from_client=(\d+) bytes_to_client=(\d+) duration_ms=(\d+) "
                             r"end=" % re.escape(tname), what="audit line")
    h.check(int(audit.group(1)) > 0 and int(audit.group(2)) > 0,
            f"audit line counts bytes both ways: {audit.group(0)}")
    mark = gw.proc.mark()
    expect_auth(env, client, port, "user", "wrong", ok=False, what="with a wrong password")
    gw.proc.wait_log(r"rdp: session client=127\.0\.0\.1:\d+ target=agent/", after=mark,
                     what="audit line of the refused login")
    # The same server directly, for comparison: the tunnel changes nothing.
    expect_auth(env, client, desk.port, "user", "pass", what="directly")


@h.case("full_session_shows_the_frame")
def full_session(env):
    pic = env.path("picture.ppm")
    picture_ppm(pic, *SIZE)
    with open(pic, "rb") as f:
        pixels = f.read().split(b"\n", 1)[1]
    desk = Desktop(env, "desk", {"user": "pass"}, picture=pic)
    server_view = h.wait_for(lambda: screenshot(desk.fenv, SIZE), h.EVENT_TIMEOUT,
                             "a screenshot of the server's display")
    h.check(similar(pixels, SIZE, server_view, SIZE, *SIZE, tolerance=0) == 1.0,
            "the server's display shows the picture")
    client_size = (480, 360)
    client = xvfb(env, "client-xvfb", client_size)
    gw = env.gateway()
    agent = env.agent(gw, [f"rdp:0:127.0.0.1:{desk.port}"])
    port = int(agent.proc.wait_log(r"tunnel \S+ is open at \S+:(\d+)$").group(1))

    viewer = env.start("xfreerdp", ["xfreerdp", f"/v:127.0.0.1:{port}", "/u:user", "/p:pass",
                                    "/sec:nla", "/cert:ignore", "/log-level:ERROR",
                                    f"/size:{SIZE[0]}x{SIZE[1]}"],
                       extra_env=freerdp_env(env, client))
    cfenv = freerdp_env(env, client)
    best = [0.0]

    def frame_arrived():
        h.check(viewer.alive(), "xfreerdp is still running")
        shot = screenshot(cfenv, client_size)
        if not shot:
            return False
        best[0] = max(best[0], similar(server_view, SIZE, shot, client_size, *SIZE))
        return best[0] >= 0.95
    try:
        h.wait_for(frame_arrived, h.EVENT_TIMEOUT, "the server's picture on the client's screen",
                   interval=0.3)
    except h.Failure:
        raise h.Failure(f"the client's screen matches the server's in {best[0]:.0%} of pixels")
    # Sanity: the same comparison against a black screen fails.
    h.check(similar(server_view, SIZE, bytes(len(server_view)), SIZE, *SIZE) < 0.5,
            "the comparison tells the picture from a black screen")
    viewer.stop()
    gw.proc.wait_log(r"rdp: session client=\S+ target=agent/\S+ via=port bytes_from_client=\d+ "
                     r"bytes_to_client=(\d+)", what="audit line of the session")


@h.case("shared_port_routes_by_first_packet")
def shared_port(env):
    # Different passwords: a login that succeeds proves which desktop answered.
    a = Desktop(env, "desk-a", {"user": "pass-a", "alice": "alice-a"})
    b = Desktop(env, "desk-b", {"user": "pass-b", "bob": "bob-b"})
    client = xvfb(env, "client-xvfb", (640, 480))
    tok = h.token_hash(h.TOKEN)
    lo = h.pick_port_block(20)
    agents = f"""
[[agent]]
name = "office"
token_hash = "{tok}"
ports = ["{lo}-{lo + 9}"]

[[agent]]
name = "lab"
token_hash = "{tok}"
ports = ["{lo + 10}-{lo + 19}"]
acl.rdp = {{ allow_from = ["192.0.2.0/24"] }}
"""
    gw, shared = rdp_gateway(env, "route_by_mstshash = true", agents=agents)
    office = env.agent(name="office", config=agent_config(gw, "office", [
        ("desk-a", f"127.0.0.1:{a.port}",
         '{ users = ["alice"], preconnection_id = 7, strip_preconnection = true }'),
        ("desk-b", f"127.0.0.1:{b.port}", '{ public_port = false, names = ["reception"], '
                                          'users = ["bob"], strip_preconnection = true }'),
        ("locked", f"127.0.0.1:{a.port}", '{ allow_from = ["10.0.0.0/8"] }'),
    ]))
    lab = env.agent(name="lab", config=agent_config(gw, "lab", [
        ("desk-c", f"127.0.0.1:{b.port}", "{}")]))
    for t in ("desk-a", "desk-b", "locked"):
        office.proc.wait_log(r"tunnel %s is open at" % t, what=f"tunnel {t} open")
    lab.proc.wait_log(r"tunnel desk-c is open at", what="tunnel desk-c open")

    def routed(user, password, *extra, target, via, ok=True):
        mark = gw.proc.mark()
        expect_auth(env, client, shared, user, password, *extra, ok=ok,
                    what=f"{' '.join(extra)} /u:{user} on the shared port")
        gw.proc.wait_log(r"rdp: 127\.0\.0\.1:\d+ -> %s via %s$" % (re.escape(target), re.escape(via)),
                         after=mark, what=f"routed to {target} via {via}")

    # /load-balance-info: names the tunnel; the password says which desktop
    # answered. FreeRDP's server, like Windows, understands a routing token
    # only in its documented form `Cookie: msts=...`, so that is what clients
    # are given (the gateway also takes the bare name, see the unit tests).
    lbi = "/load-balance-info:Cookie: msts="
    routed("user", "pass-a", lbi + "desk-a", target="office/desk-a", via='token:"desk-a"')
    routed("user", "pass-b", lbi + "desk-b", target="office/desk-b", via='token:"desk-b"')
    routed("user", "pass-a", lbi + "desk-b", target="office/desk-b", via='token:"desk-b"',
           ok=False)
    routed("user", "pass-b", lbi + "office.desk-b", target="office/desk-b",
           via='token:"office.desk-b"')
    routed("user", "pass-b", lbi + "reception", target="office/desk-b", via='token:"reception"')
    # The mstshash cookie (from /u:) when route_by_mstshash is on.
    routed("alice", "alice-a", target="office/desk-a", via='mstshash:"alice"')
    routed("bob", "bob-b", target="office/desk-b", via='mstshash:"bob"')
    # Preconnection PDU: the blob (FreeRDP's /pcb:) and the Id (/pcid:).
    # FreeRDP's server takes no preconnection PDU (Hyper-V does): these
    # tunnels have strip_preconnection.
    dropped = " (preconnection PDU dropped)"
    routed("user", "pass-b", "/pcb:desk-b", target="office/desk-b",
           via='preconnection-blob:"desk-b"' + dropped)
    routed("user", "pass-a", "/pcid:7", target="office/desk-a",
           via='preconnection-id:"7"' + dropped)
    # A .rdp file from muxgate-rdpfile, read by xfreerdp itself.
    rdp = env.path("desk-b.rdp")
    r = subprocess.run(["sh", RDPFILE, "--gateway", f"127.0.0.1:{shared}", "--name", "desk-b",
                        "--user", "user", "--out", rdp], capture_output=True, text=True,
                       timeout=h.START_TIMEOUT)
    h.check_eq(r.returncode, 0, f"muxgate-rdpfile exit status ({r.stderr.strip()})")
    with open(rdp, "rb") as f:
        text = f.read().decode()
    h.check(f"full address:s:127.0.0.1:{shared}\r\n" in text and
            "loadbalanceinfo:s:Cookie: msts=desk-b\r\n" in text, f".rdp file content: {text!r}")
    mark = gw.proc.mark()
    expect_auth(env, client, None, "user", "pass-b", what="with the .rdp file", rdp_file=rdp)
    gw.proc.wait_log(r"-> office/desk-b via token:\"desk-b\"$", after=mark,
                     what="the .rdp file routed to desk-b")

    # Refusals: each closes the client and says why.
    refusals = [
        ("user", [lbi + "nobody"], r'refused: no rdp tunnel named by token:"nobody"'),
        ("user", [lbi + "locked"], r"refused: not in allow_from of office/locked"),
        ("user", [lbi + "desk-c"], r"refused: not in allow_from of lab/desk-c"),
        ("carol", [], r'refused: no rdp tunnel named by mstshash:"carol"'),
    ]
    for user, extra, log in refusals:
        mark = gw.proc.mark()
        expect_auth(env, client, shared, user, "pass-a", *extra, ok=False,
                    what=" ".join(extra) or f"/u:{user}")
        gw.proc.wait_log(log, after=mark, what=log)
    h.check(not gw.proc.find(r"target=office/locked|target=lab/"),
            "no session reached a refused tunnel")
    # Every routed session has its audit line.
    gw.proc.wait_count(r"rdp: session client=127\.0\.0\.1:\d+ target=office/desk-[ab] via=",
                       10, what="audit lines of the routed sessions")


@h.case("stalled_and_malformed_clients")
def stalled(env):
    desk = Desktop(env, "desk", {"user": "pass"})
    client = xvfb(env, "client-xvfb", (640, 480))
    # Long enough that the second connection below surely comes within it
    # (it is a raw connect, microseconds), short enough to keep the case quick.
    timeout_ms = 3000 * h.SLOW
    gw, shared = rdp_gateway(env, f"first_packet_timeout_ms = {timeout_ms}\nmax_pending = 1",
                             log_level="debug")
    agent = env.agent(name="office", config=agent_config(
        gw, "office", [("desk", f"127.0.0.1:{desk.port}", "{}")]))
    agent.proc.wait_log(r"tunnel desk is open at")

    # Half a TPKT (the header says 42 bytes), then silence.
    mark = gw.proc.mark()
    s = h.connect(shared)
    s.sendall(bytes([3, 0, 0, 42, 37, 0xE0]))
    gw.proc.wait_log(r"rdp: 127\.0\.0\.1:%d on the shared port \(1 pending\)" %
                     s.getsockname()[1], after=mark, what="the stalled client accepted")
    # While it stalls it holds the only pending slot: the next client is refused.
    h.check_eq(h.how_connection_ends(shared, send=b""), "rst",
               "a second client while the only pending slot is taken")
    gw.proc.wait_log(r"refused: max_pending 1 clients", after=mark, what="max_pending refusal")
    # The stalled client is reset after first_packet_timeout_ms and says so.
    gw.proc.wait_log(r"rdp: 127\.0\.0\.1:\d+ timed out: 6 bytes of the first packet within "
                     r"first_packet_timeout_ms %d; connection reset" % timeout_ms, after=mark,
                     what="the stall timeout")
    h.check(gw.proc.find(r"refused: max_pending", mark).start() <
            gw.proc.find(r"timed out: 6 bytes", mark).start(),
            "the second client came while the first one still stalled")
    try:
        s.settimeout(h.EVENT_TIMEOUT)
        got = s.recv(100)
        h.check_eq(got, b"", "the stalled client gets nothing but the end")
    except ConnectionResetError:
        pass
    finally:
        s.close()
    # Its slot is free again: a real client gets through.
    expect_auth(env, client, shared, "user", "pass", "/load-balance-info:Cookie: msts=desk",
                what="after the stalled client was dropped")

    # Not RDP at all: a TLS ClientHello is refused at once, with the reason.
    mark = gw.proc.mark()
    h.check_eq(h.how_connection_ends(shared, send=bytes([0x16, 3, 1, 0, 0xA5, 1, 0, 0])), "eof",
               "a TLS client is closed")
    gw.proc.wait_log(r"rdp: 127\.0\.0\.1:\d+ refused: first packet: preconnection PDU: cbSize "
                     r"\d+ leaves no room", after=mark, what="refusal of a TLS ClientHello")
    # A refused client that keeps its end open gives its pending slot back
    # at once: with max_pending = 1 the next client still gets through.
    mark = gw.proc.mark()
    held = h.connect(shared)
    held.sendall(bytes([3, 0, 0, 5, 0]))  # a TPKT too short for a Connection Request
    gw.proc.wait_log(r"refused: first packet: TPKT length 5 is shorter", after=mark,
                     what="refusal of a too short TPKT")
    expect_auth(env, client, shared, "user", "pass", "/load-balance-info:Cookie: msts=desk",
                what="while a refused client keeps its connection open")
    held.close()
    # An RDP client that names nothing (no cookie, mstshash routing off).
    mark = gw.proc.mark()
    expect_auth(env, client, shared, "user", "pass", ok=False, what="naming no tunnel")
    gw.proc.wait_log(r'refused: the first packet names no tunnel \(mstshash="user" ignored',
                     after=mark, what="refusal without a name")


@h.case("example_configs_and_bad_options")
def configs(env):
    """etc/gateway.rdp.toml and etc/agent.rdp.toml pass --check-config; a
    misspelt tunnel option and an out-of-range limit are refused, naming
    the key."""
    etc = os.path.join(SRC, "..", "..", "etc")
    e = dict(os.environ, MUXGATE_TOKEN="x")
    for argv in ([h.gateway_bin(), "--check-config", "--config", os.path.join(etc, "gateway.rdp.toml")],
                 [h.agent_bin(), "--check-config", "--config", os.path.join(etc, "agent.rdp.toml")]):
        r = subprocess.run(argv, capture_output=True, text=True, env=e, timeout=h.START_TIMEOUT)
        h.check_eq(r.returncode, 0, f"{' '.join(argv[1:])}: {r.stdout} {r.stderr}")
        h.check("configuration OK" in r.stdout, f"{argv[-1]}: {r.stdout!r}")
    with open(os.path.join(etc, "agent.rdp.toml")) as f:
        bad = f.read().replace("strip_preconnection = true", "strip_preconection = true")
    r = subprocess.run([h.agent_bin(), "--check-config", "--config", env.write("bad-agent.toml", bad)],
                       capture_output=True, text=True, env=e, timeout=h.START_TIMEOUT)
    h.check(r.returncode != 0 and re.search(r'tunnel "desk2": rdp tunnel options: unknown key '
                                            r'"strip_preconection"', r.stdout + r.stderr),
            f"a misspelt option is refused: {r.returncode} {r.stdout} {r.stderr}")
    with open(os.path.join(etc, "gateway.rdp.toml")) as f:
        bad = f.read().replace("first_packet_timeout_ms = 10000", "first_packet_timeout_ms = 5")
    r = subprocess.run([h.gateway_bin(), "--check-config", "--config", env.write("bad-gw.toml", bad)],
                       capture_output=True, text=True, env=e, timeout=h.START_TIMEOUT)
    h.check(r.returncode != 0 and "first_packet_timeout_ms: 5 is outside 100-600000" in
            r.stdout + r.stderr, f"an out-of-range limit is refused: {r.stdout} {r.stderr}")


if __name__ == "__main__":
    raise SystemExit(h.main())
