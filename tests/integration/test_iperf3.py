#!/usr/bin/python3
"""2. iperf3 through a tunnel: one stream, -P 8, -R and --bidir. Each run
must complete (bounded) and report more than 0 bytes in every direction it
measures (parsed from --json). --bidir sends both ways at once on each
connection, which stalls a relay that writes with blocking calls."""
import json
import subprocess

import harness as h

DURATION_S = "3"


def start_iperf_server(env):
    for _ in range(10):
        port = h.pick_port()
        p = env.start("iperf3-server", ["iperf3", "-s", "-B", "127.0.0.1", "-p", str(port),
                                        "--forceflush"])
        try:
            p.wait_log(r"Server listening on %d" % port, h.START_TIMEOUT)
            return p, port
        except h.Failure:
            if p.alive():
                raise
    raise h.Failure("could not start iperf3 -s on a free port")


def run_client(env, port, extra, label):
    argv = ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", DURATION_S, "--json",
            "--connect-timeout", "10000"] + extra
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=h.IO_TIMEOUT + 30)
    except subprocess.TimeoutExpired:
        raise h.Failure(f"iperf3 {label} did not finish within {h.IO_TIMEOUT + 30} s (a stall?)")
    with open(env.path(f"iperf3-{label}.json"), "w") as f:
        f.write(r.stdout + r.stderr)
    try:
        res = json.loads(r.stdout)
    except ValueError:
        raise h.Failure(f"iperf3 {label}: no JSON (exit {r.returncode}): {r.stdout[-500:]} "
                        f"{r.stderr[-500:]}")
    h.check("error" not in res, f"iperf3 {label} reports an error: {res.get('error')}")
    h.check_eq(r.returncode, 0, f"iperf3 {label} exit status")
    return res


def positive(res, key, label):
    b = res["end"][key]["bytes"]
    h.check(b > 0, f"iperf3 {label}: end.{key}.bytes is {b}")
    return b


@h.case("iperf3_single_parallel_reverse_bidir")
def iperf3_runs(env):
    server, sport = start_iperf_server(env)
    gw = env.gateway()
    agent = env.agent(gw, [f"tcp:0:127.0.0.1:{sport}"])
    port = agent.wait_tunnel(h.tunnel_name(sport))

    runs = [("single", []), ("parallel8", ["-P", "8"]), ("reverse", ["-R"]),
            ("bidir", ["--bidir"])]
    for i, (label, extra) in enumerate(runs):
        # iperf3 -s serves one test at a time: wait until it listens again.
        server.wait_count(r"Server listening on %d" % sport, i + 1)
        res = run_client(env, port, extra, label)
        sent = positive(res, "sum_sent", label)
        received = positive(res, "sum_received", label)
        if label == "parallel8":
            streams = res["end"]["streams"]
            h.check_eq(len(streams), 8, "iperf3 -P 8: streams in the result")
            for k, s in enumerate(streams):
                h.check(s["sender"]["bytes"] > 0 and s["receiver"]["bytes"] > 0,
                        f"iperf3 -P 8: stream {k} moved no bytes: {s}")
        if label == "bidir":
            positive(res, "sum_sent_bidir_reverse", label)
            positive(res, "sum_received_bidir_reverse", label)
        print(f"  iperf3 {label}: sent {sent} received {received} bytes", flush=True)
    server.wait_count(r"Server listening on %d" % sport, len(runs) + 1)
    h.check(not agent.proc.find(r"gateway connection closed"), "the agent stayed connected")


if __name__ == "__main__":
    raise SystemExit(h.main())
