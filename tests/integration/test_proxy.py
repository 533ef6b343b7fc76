#!/usr/bin/python3
"""15. The agent reaches the gateway through an HTTP CONNECT proxy
(tinyproxy, private configuration on loopback).

A proxy that allows CONNECT to the gateway's port: the agent connects
through it (tinyproxy logs the CONNECT) and the tunnel carries verified
data; with BasicAuth the agent's user:password@ works and a wrong password
gets refused (tinyproxy answers 401), which the agent logs. A proxy whose ConnectPort excludes the
gateway's port refuses (403), and the agent logs the refusal and retries. A
proxy address where nothing listens is reported as such."""
import socket
import threading

import harness as h


def start_tinyproxy(env, connect_port, basic_auth=None, name="tinyproxy"):
    for _ in range(10):
        port = h.pick_port()
        conf = env.write(f"{name}.conf", f"""Port {port}
Listen 127.0.0.1
Timeout 60
Allow 127.0.0.1
ConnectPort {connect_port}
LogLevel Info
MaxClients 20
""" + (f"BasicAuth {basic_auth[0]} {basic_auth[1]}\n" if basic_auth else ""))
        p = env.start(name, ["tinyproxy", "-d", "-c", conf])
        try:
            p.wait_log(r"Starting main loop\. Accepting connections\.", h.START_TIMEOUT)
            return p, port
        except h.Failure:
            if p.alive():
                raise
    raise h.Failure("could not start tinyproxy on a free port")


def transfer_ok(port):
    size = h.scaled(4 * h.MiB, 512 * h.KiB)
    s = h.connect(port)
    out = {}

    def sender():
        out["sent"] = h.send_pattern(s, 61, size)
        s.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=sender)
    t.start()
    n, digest = h.recv_hash(s)
    t.join(h.IO_TIMEOUT)
    s.close()
    h.check_eq((n, digest), (size, out.get("sent")), "echo through a tunnel whose agent uses a proxy")


@h.case("through_tinyproxy")
def via_proxy(env):
    srv = env.echo_server()
    gw = env.gateway()
    proxy, pport = start_tinyproxy(env, gw.port)
    agent = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"], args=["--proxy", f"http://127.0.0.1:{pport}"])
    port = agent.wait_tunnel(h.tunnel_name(srv.port))
    proxy.wait_log(r"CONNECT 127\.0\.0\.1:%d HTTP/1\.1" % gw.port)
    transfer_ok(port)


@h.case("through_tinyproxy_with_basic_auth")
def via_proxy_auth(env):
    srv = env.echo_server()
    gw = env.gateway()
    proxy, pport = start_tinyproxy(env, gw.port, basic_auth=("muxuser", "s3cret"))
    bad = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"], name="badpass", wait_connected=False,
                    args=["--proxy", f"http://muxuser:wrong@127.0.0.1:{pport}"])
    bad.proc.wait_log(r"cannot reach gateway \S+: proxy refused CONNECT: 40[17] ")
    h.check(not bad.proc.find(r"connected to gateway"), "the wrong password got nowhere")
    bad.proc.stop()
    agent = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"],
                      args=["--proxy", f"http://muxuser:s3cret@127.0.0.1:{pport}"])
    port = agent.wait_tunnel(h.tunnel_name(srv.port))
    transfer_ok(port)


@h.case("proxy_refuses_connect")
def proxy_refuses(env):
    srv = env.echo_server()
    gw = env.gateway()
    other = gw.port + 1 if gw.port < 32000 else gw.port - 1
    proxy, pport = start_tinyproxy(env, other)  # CONNECT allowed to another port only
    agent = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"], wait_connected=False,
                      args=["--proxy", f"http://127.0.0.1:{pport}"])
    agent.proc.wait_count(r"cannot reach gateway wss://127\.0\.0\.1:%d/muxgate: proxy refused "
                          r"CONNECT: 403 " % gw.port, 2, timeout=30 * h.SLOW,
                          what="two proxy refusals (it retries)")
    h.check(not agent.proc.find(r"connected to gateway"), "never connected")
    h.check(not gw.proc.find(r"agent=agent connected"), "the gateway never saw the agent")


@h.case("proxy_not_listening")
def proxy_down(env):
    gw = env.gateway()
    dead = h.pick_port()
    agent = env.agent(gw, ["tcp:0:127.0.0.1:9"], wait_connected=False,
                      args=["--proxy", f"http://127.0.0.1:{dead}"])
    agent.proc.wait_log(r"cannot reach gateway \S+: cannot connect to 127\.0\.0\.1:%d \(proxy\): "
                        r"Connection refused" % dead)


if __name__ == "__main__":
    raise SystemExit(h.main())
