#!/usr/bin/python3
"""A third-party plugin, built out of tree against the installed SDK, in the
installed gateway and agent.

 1. cmake --install <build dir> --prefix <work>/prefix
 2. build tests/plugins/outoftree (echo, protocol_id 42) with only
    find_package(muxgate-sdk) and -DCMAKE_PREFIX_PATH=<work>/prefix, plain flags
 3. copy echo.so into <prefix>/lib/muxgate/modules/
 4. run <prefix>/bin/muxgate and <prefix>/bin/muxgate-agent WITHOUT --modules:
    each must find its bundled modules directory by itself
 5. talk to the tunnel's public port: small messages, several clients at
    once, half-close, a client that resets mid-stream, and 64 MiB with a
    SHA-256 on both ends while the reader holds back until the plugin has
    been told MG_AGAIN (so the pause / on_writable / resume path really runs)

Every wait has a deadline (a bound against hangs, never a measure of speed);
every process is stopped by its PID in a finally block. Only 127.0.0.1.

Usage: outoftree_test.py --cmake CMAKE --generator GEN --cxx CXX
                         --build-dir BUILD --source OUTOFTREE_SRC --work DIR
"""
import argparse
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

# Bounds against hangs (generous: sanitizer builds are several times slower).
INSTALL_TIMEOUT_S = 300     # cmake --install, configure, build
START_TIMEOUT_S = 60        # a process prints its "ready" line
IO_TIMEOUT_S = 60           # one socket operation
BULK_TIMEOUT_S = 300        # the whole 64 MiB round trip
STOP_TIMEOUT_S = 30         # a process exits after SIGTERM
PORT_ATTEMPTS = 5           # a port picked free may be taken before the gateway binds it

BULK_BYTES = 64 * 1024 * 1024
BULK_BLOCK = 1024 * 1024

TOKEN = "plugins-outoftree-" + os.urandom(8).hex()


class TestFailure(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise TestFailure(what)


def deadline_after(seconds):
    return time.monotonic() + seconds


def remaining(deadline):
    left = deadline - time.monotonic()
    if left <= 0:
        raise TestFailure("deadline passed")
    return left


# ------------------------------------------------------------------ processes

class Process:
    """A child whose combined output is collected line by line (and copied to
    a log file) so the test can wait for a line without ever blocking it."""

    def __init__(self, name, argv, env, cwd, log_path):
        self.name = name
        self.argv = argv
        self.lines = []
        self.cond = threading.Condition()
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, errors="replace")
        self.pid = self.proc.pid
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def mark(self):
        """An index: wait_for(after=mark) looks only at lines printed later."""
        with self.cond:
            return len(self.lines)

    def wait_for(self, pattern, timeout, after=0):
        """The first match of `pattern` in a line printed after `after`, or a
        failure when the deadline passes or the process exits first."""
        rx = re.compile(pattern)
        deadline = deadline_after(timeout)
        seen = after
        with self.cond:
            while True:
                for i in range(seen, len(self.lines)):
                    m = rx.search(self.lines[i])
                    if m:
                        return m
                seen = len(self.lines)
                if self.proc.poll() is not None and not self.reader.is_alive():
                    raise TestFailure(f"{self.name} exited ({self.proc.returncode}) before "
                                      f"printing /{pattern}/")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TestFailure(f"{self.name} did not print /{pattern}/ within {timeout} s")
                self.cond.wait(min(left, 1.0))

    def find(self, pattern, after=0):
        rx = re.compile(pattern)
        with self.cond:
            return [m for m in (rx.search(l) for l in self.lines[after:]) if m]

    def stop(self):
        """SIGTERM by PID, bounded wait, then SIGKILL. Returns the exit status."""
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                print(f"{self.name} (pid {self.pid}) ignored SIGTERM; killing it", file=sys.stderr)
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except ProcessLookupError:
                pass
        self.reader.join(timeout=STOP_TIMEOUT_S)
        self.log.close()
        return self.proc.returncode

    def dump(self):
        with self.cond:
            text = "\n".join(self.lines[-200:])
        print(f"---- {self.name} (pid {self.pid}, last 200 lines) ----\n{text}", file=sys.stderr)


def run_checked(argv, what, env=None, cwd=None):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, env=env,
                       cwd=cwd)
    if r.returncode != 0:
        raise TestFailure(f"{what} failed ({r.returncode}): {' '.join(argv)}\n"
                          f"{r.stdout}\n{r.stderr}")
    return r


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- socket I/O

def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S)
    s.settimeout(IO_TIMEOUT_S)
    return s


def recv_exactly(s, n):
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(min(n - len(out), 1 << 20))
        if not chunk:
            raise TestFailure(f"EOF after {len(out)} of {n} echoed bytes")
        out += chunk
    return bytes(out)


def recv_to_eof(s, limit):
    out = bytearray()
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            return bytes(out)
        out += chunk
        if len(out) > limit:
            raise TestFailure(f"more than {limit} bytes came back")


# --------------------------------------------------------------------- tests

def test_small_messages(port):
    """Byte-exact echo of messages of several sizes on one connection, in
    turn (each is read back before the next is sent)."""
    messages = [b"x", b"hello, echo\n", bytes(range(256)), os.urandom(4096),
                os.urandom(100_003)]
    with connect(port) as s:
        for m in messages:
            s.sendall(m)
            back = recv_exactly(s, len(m))
            expect(back == m, f"echo of a {len(m)}-byte message differs")


def test_concurrent_clients(port, clients=8, rounds=20):
    """Several clients at once, each on its own stream: no bytes cross
    between streams."""
    errors = []

    def client(i):
        try:
            with connect(port) as s:
                for r in range(rounds):
                    m = f"client {i} round {r} ".encode() * (1 + (i * 7 + r) % 50)
                    s.sendall(m)
                    expect(recv_exactly(s, len(m)) == m, f"client {i} round {r}: echo differs")
        except Exception as e:  # collected and re-raised below
            errors.append(f"client {i}: {e!r}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=BULK_TIMEOUT_S)
        expect(not t.is_alive(), "a concurrent client did not finish")
    expect(not errors, "; ".join(errors))


def test_half_close(port, agent):
    """Send, shut our write side, read everything back, then EOF: the plugin
    answers on_fin with shutdown_write after the last echoed byte."""
    payload = os.urandom(10_007)  # an odd size to find this stream in the agent's log
    mark = agent.mark()
    with connect(port) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        back = recv_to_eof(s, len(payload))
    expect(back == payload, f"half-close: got {len(back)} of {len(payload)} bytes back, or "
                            "different bytes")
    # The stream ended cleanly on the agent (FIN both ways = reason 0).
    agent.wait_for(r"plugin=echo stream \d+ closed: echoed 10007 bytes, paused 0 times, "
                   r"0 on_data while paused, close reason 0$", IO_TIMEOUT_S, after=mark)


def test_client_reset(port, agent):
    """A client that vanishes (RST) mid-stream ends its stream only; the
    plugin still serves the next client."""
    mark = agent.mark()
    s = connect(port)
    s.sendall(os.urandom(300_007))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()  # RST
    agent.wait_for(r"plugin=echo stream \d+ closed: .*close reason [1-5]\b", IO_TIMEOUT_S,
                   after=mark)
    with connect(port) as s:
        s.sendall(b"still there?")
        expect(recv_exactly(s, 12) == b"still there?", "echo after a reset differs")


def test_bulk(port, agent):
    """64 MiB through the echo with a SHA-256 on both ends. The reader starts
    only once the agent's plugin has logged a pause (write answered MG_AGAIN):
    until then nothing drains the way back, so the bytes pile up on the agent
    until its high watermark; the sender blocks rather than the memory grow.
    Then everything must come back, in order, followed by EOF."""
    mark = agent.mark()
    sent_digest = hashlib.sha256()
    progress = {"sent": 0, "received": 0}
    sender_error = []
    sender_done = threading.Event()
    s = connect(port)  # every socket operation is bounded by IO_TIMEOUT_S

    def sender():
        try:
            for _ in range(BULK_BYTES // BULK_BLOCK):
                block = os.urandom(BULK_BLOCK)
                sent_digest.update(block)
                s.sendall(block)
                progress["sent"] += len(block)
            s.shutdown(socket.SHUT_WR)
        except Exception as e:  # reported below
            sender_error.append(repr(e))
        finally:
            sender_done.set()

    def failure(what):
        return TestFailure(f"bulk: {what} (sent {progress['sent']}, received "
                           f"{progress['received']} of {BULK_BYTES} bytes; sender: "
                           f"{sender_error or 'no error'})")

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    try:
        # Hold the reader back until the pause (or until the sender finished,
        # which would mean nothing ever pushed back: checked below).
        pause_rx = r"plugin=echo stream (\d+) paused: write answered MG_AGAIN"
        deadline = deadline_after(BULK_TIMEOUT_S)
        while not agent.find(pause_rx, after=mark) and not sender_done.is_set():
            if agent.proc.poll() is not None:
                raise failure("the agent exited")
            if time.monotonic() >= deadline:
                raise failure(f"neither a pause on the agent nor the sender finishing within "
                              f"{BULK_TIMEOUT_S} s")
            with agent.cond:
                agent.cond.wait(0.5)  # woken by every new agent line
        found = agent.find(pause_rx, after=mark)
        paused = found[0] if found else None
        if paused is None:
            raise failure("the sender pushed all 64 MiB without the plugin ever being told "
                          "MG_AGAIN (backpressure did not reach the agent)")

        got = hashlib.sha256()
        while True:
            if time.monotonic() >= deadline:
                raise failure(f"the round trip took more than {BULK_TIMEOUT_S} s")
            try:
                chunk = s.recv(1 << 20)
            except OSError as e:
                raise failure(f"recv: {e!r}")
            if not chunk:
                break
            got.update(chunk)
            progress["received"] += len(chunk)
            if progress["received"] > BULK_BYTES:
                raise failure("more bytes came back than were sent")
        t.join(timeout=remaining(deadline))
        if t.is_alive():
            raise failure("the sender did not finish")
        if sender_error:
            raise failure("the sender failed")
        if progress["received"] != BULK_BYTES:
            raise failure("EOF before everything came back")
        expect(got.hexdigest() == sent_digest.hexdigest(), "bulk: SHA-256 of the echo differs")
    finally:
        try:
            s.shutdown(socket.SHUT_RDWR)  # wakes a sender blocked in sendall
        except OSError:
            pass
        s.close()
        t.join(timeout=STOP_TIMEOUT_S)

    stream = paused.group(1)
    done = agent.wait_for(rf"plugin=echo stream {stream} closed: echoed (\d+) bytes, "
                          r"paused (\d+) times, (\d+) on_data while paused, close reason (.*)$",
                          IO_TIMEOUT_S, after=mark)
    expect(int(done.group(1)) == BULK_BYTES, f"the plugin echoed {done.group(1)} bytes")
    expect(int(done.group(2)) >= 1, "the plugin counted no pause")
    expect(done.group(3) == "0", f"{done.group(3)} on_data events arrived after "
                                 "set_reading(false) and before on_writable")
    expect(done.group(4) == "0", f"the stream ended with close reason {done.group(4)}, not 0")
    resumed = agent.find(rf"plugin=echo stream {stream} resumed: on_writable", after=mark)
    expect(len(resumed) >= 1, "no on_writable after a pause")
    print(f"bulk: 64 MiB echoed, {done.group(2)} pause(s), {len(resumed)} on_writable(s)")


# ---------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cmake", required=True)
    ap.add_argument("--generator", required=True)
    ap.add_argument("--cxx", required=True)
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()

    work = os.path.abspath(a.work)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    prefix = os.path.join(work, "prefix")
    modules = os.path.join(prefix, "lib", "muxgate", "modules")

    # A plain environment for the plugin build: no flags leak in from ours.
    env = {k: v for k, v in os.environ.items()
           if k not in ("CFLAGS", "CXXFLAGS", "LDFLAGS", "CMAKE_PREFIX_PATH", "MUXGATE_TOKEN")}

    # 1. install
    run_checked([a.cmake, "--install", a.build_dir, "--prefix", prefix], "cmake --install", env)
    for f in ("bin/muxgate", "bin/muxgate-agent", "include/muxgate/plugin.h",
              "include/muxgate/plugin.hpp", "lib/cmake/muxgate-sdk/muxgate-sdk-config.cmake",
              "lib/muxgate/modules/tcp.so"):
        expect(os.path.exists(os.path.join(prefix, f)), f"the install has no {f}")

    # 2. build the plugin against the install only
    echo_build = os.path.join(work, "echo-build")
    run_checked([a.cmake, "-S", a.source, "-B", echo_build, "-G", a.generator,
                 "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_CXX_COMPILER={a.cxx}",
                 f"-DCMAKE_PREFIX_PATH={prefix}"], "configuring the out-of-tree plugin", env)
    run_checked([a.cmake, "--build", echo_build], "building the out-of-tree plugin", env)
    with open(os.path.join(echo_build, "CMakeCache.txt")) as f:
        cache = f.read()
    sdk_dir = re.search(r"^muxgate-sdk_DIR:PATH=(.*)$", cache, re.M)
    expect(sdk_dir and os.path.realpath(sdk_dir.group(1)) ==
           os.path.realpath(os.path.join(prefix, "lib", "cmake", "muxgate-sdk")),
           f"find_package(muxgate-sdk) found {sdk_dir.group(1) if sdk_dir else 'nothing'}, "
           "not the installed SDK")
    echo_so = os.path.join(echo_build, "echo.so")
    expect(os.path.exists(echo_so), "muxgate_add_plugin(echo ...) did not produce echo.so")

    # 3. install the plugin next to the bundled ones
    shutil.copy(echo_so, os.path.join(modules, "echo.so"))

    # 4. run the installed binaries from an unrelated directory, no --modules
    run_env = dict(env, MUXGATE_TOKEN=TOKEN)
    cert = os.path.join(work, "gateway-cert.pem")
    procs = []
    ok = False
    try:
        gateway = None
        for attempt in range(PORT_ATTEMPTS):
            port = free_port()
            gateway = Process("gateway", [os.path.join(prefix, "bin", "muxgate"),
                                          "--listen", f"127.0.0.1:{port}",
                                          "--public-bind", "127.0.0.1", "--self-signed",
                                          "--cert-out", cert, "--threads", "2"],
                              run_env, work, os.path.join(work, f"gateway.{attempt}.log"))
            procs.append(gateway)
            m = gateway.wait_for(r"listening on 127\.0\.0\.1:(\d+)|cannot listen on|"
                                 r"Address already in use", START_TIMEOUT_S)
            if m.group(1):
                break
            gateway.stop()
            gateway = None
        expect(gateway is not None, f"the gateway found no free port in {PORT_ATTEMPTS} tries")
        gateway.wait_for(re.escape(f"plugin echo 1.0.0 (protocol_id 42) loaded from "
                                   f"{os.path.join(modules, 'echo.so')}"), 0.1)

        agent = Process("agent", [os.path.join(prefix, "bin", "muxgate-agent"),
                                  "--gateway", f"wss://127.0.0.1:{port}", "--ca", cert,
                                  "--name", "plugins-test", "--tunnel", "echo:0:127.0.0.1:1",
                                  "--log-level", "debug"],
                        run_env, work, os.path.join(work, "agent.log"))
        procs.append(agent)
        m = agent.wait_for(r"tunnel (\S+) is open at 127\.0\.0\.1:(\d+)$", START_TIMEOUT_S)
        public_port = int(m.group(2))
        agent.wait_for(re.escape(f"plugin echo 1.0.0 (protocol_id 42) loaded from "
                                 f"{os.path.join(modules, 'echo.so')}"), 0.1)
        print(f"gateway pid {gateway.pid} on {port}, agent pid {agent.pid}, tunnel "
              f"{m.group(1)} on 127.0.0.1:{public_port}")

        # 5. the echo
        for name, test in (("small messages", lambda: test_small_messages(public_port)),
                           ("concurrent clients", lambda: test_concurrent_clients(public_port)),
                           ("half-close", lambda: test_half_close(public_port, agent)),
                           ("client reset", lambda: test_client_reset(public_port, agent)),
                           ("64 MiB", lambda: test_bulk(public_port, agent))):
            try:
                test()
            except TestFailure as e:
                raise TestFailure(f"{name}: {e}") from None
            except OSError as e:
                raise TestFailure(f"{name}: {e!r}") from None
            print(f"ok: {name}")

        # Both shut down cleanly on SIGTERM (a sanitizer report would make
        # the exit status non-zero).
        rc = agent.stop()
        expect(rc == 0, f"the agent exited with {rc} after SIGTERM")
        rc = gateway.stop()
        expect(rc == 0, f"the gateway exited with {rc} after SIGTERM")
        ok = True
    except (TestFailure, OSError, subprocess.SubprocessError) as e:
        print(f"FAIL: {e}", file=sys.stderr)
        for p in procs:
            p.dump()
    finally:
        for p in procs:
            p.stop()
    if ok:
        shutil.rmtree(work, ignore_errors=True)
        print("out-of-tree echo plugin: all checks passed")
        return 0
    print(f"logs and files kept in {work}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except TestFailure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
