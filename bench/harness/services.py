"""The things the benchmark starts: targets (echo/sink/source, iperf3, nginx)
and the paths to them (direct, ssh -R through a private sshd, muxgate).

A path maps each target to the port a client connects to, and names the
processes on its public side (gateway, sshd session) and agent side (agent,
ssh client) so work can read their CPU time and memory.
"""
from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from .util import (BenchError, Procs, descendants_of, echo_once, free_port, rss_kb, wait_echo,
                   wait_port)

HERE = Path(__file__).resolve().parent.parent      # bench/
TARGETS = ("echo", "echo1", "sink", "source", "iperf", "http")

# The page wrk fetches: about the size of nginx's default index page, so the
# test is about requests, not bytes.
PAGE = "<!doctype html><title>muxgate bench</title>\n<p>" + ("muxgate benchmark page. " * 24) + "</p>\n"


def build_helper(work_dir: Path) -> Path:
    """Compile bench/tools/mgbench.c with gcc unless an up-to-date copy exists."""
    src = HERE / "tools" / "mgbench.c"
    out = work_dir / "mgbench"
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return out
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise BenchError("no C compiler (gcc) to build bench/tools/mgbench.c")
    cp = subprocess.run([cc, "-O2", "-Wall", "-pthread", "-o", str(out), str(src), "-lm"],
                        capture_output=True, text=True)
    if cp.returncode != 0:
        raise BenchError(f"building mgbench failed:\n{cp.stderr}")
    return out


class Targets:
    """The servers every path leads to, started once per run."""

    def __init__(self, procs: Procs, run_dir: Path, helper: Path, need_http: bool, need_iperf: bool):
        self.ports: dict[str, int] = {}
        # Two servers: the bulk sink/source in its own process, so a bulk
        # neighbour's writes never delay an echo in the same event loop.
        for role, keys in (("echo-server", ("echo", "echo1")), ("bulk-server", ("sink", "source"))):
            p = procs.start(role, [str(helper), "serve"], stdout=subprocess.PIPE)
            line = p.popen.stdout.readline().decode()
            try:
                ports = json.loads(line)
            except ValueError:
                raise BenchError(f"{role} did not start: {p.log_text()}")
            self.ports.update({k: ports[k] for k in keys})

        if need_iperf:
            self.iperf_port = free_port()
            self._procs = procs
            self._start_iperf()
            self.ports["iperf"] = self.iperf_port
        if need_http:
            self.ports["http"] = self._start_nginx(procs, run_dir)

    def _start_iperf(self) -> None:
        self.iperf = self._procs.start("iperf3-server",
                                       ["iperf3", "-s", "-p", str(self.iperf_port), "-B", "127.0.0.1"])
        if not wait_port(self.iperf_port):
            raise BenchError(f"iperf3 server did not listen: {self.iperf.log_text()}")

    def restart_iperf(self) -> None:
        """An iperf3 server left 'busy' by a failed test is replaced."""
        self._procs.stop(self.iperf)
        self._start_iperf()

    @staticmethod
    def _start_nginx(procs: Procs, run_dir: Path) -> int:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(nginx):
            raise BenchError("nginx is not installed (scripts/deps.sh --test installs nginx-light)")
        d = run_dir / "nginx"
        (d / "www").mkdir(parents=True, exist_ok=True)
        (d / "tmp").mkdir(exist_ok=True)
        (d / "www" / "index.html").write_text(PAGE)
        port = free_port()
        # keepalive_requests is raised so wrk measures requests over kept-alive
        # connections; new connections are the connection-rate test's job.
        conf = f"""
daemon off;
master_process on;
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    default_type text/html;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ root {d}/www; }}
    }}
}}
"""
        (d / "nginx.conf").write_text(conf)
        # -e: nginx >= 1.19.5 opens its default error log before reading the
        # configuration; point it at ours so no system path is touched.
        p = procs.start("nginx", [nginx, "-e", str(d / "error.log"), "-p", str(d), "-c",
                                  str(d / "nginx.conf")])
        if not wait_port(port):
            raise BenchError(f"nginx did not listen: {p.log_text()} {(d / 'error.log').read_text()}")
        return port


# ------------------------------------------------------------------ paths

class BenchPath:
    """One configuration: how a client reaches each target."""
    name = "?"
    label = "?"
    kind = "?"
    ports: dict[str, int]

    def public_pids(self) -> list[int]:
        return []

    def agent_pids(self) -> list[int]:
        return []

    def alive(self) -> bool:
        return True

    def stop(self) -> None:
        pass


class Direct(BenchPath):
    name, label, kind = "direct", "direct", "direct"

    def __init__(self, targets: Targets):
        self.ports = dict(targets.ports)


class Sshd:
    """A private sshd on loopback: own config, host key and authorized_keys."""

    def __init__(self, procs: Procs, run_dir: Path):
        self.dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"muxgate-bench-ssh.{os.getpid()}"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(mode=0o700)
        d = self.dir
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        if not os.path.exists(sshd) or not shutil.which("ssh"):
            raise BenchError("sshd/ssh missing (scripts/deps.sh --test installs openssh-server/client)")
        for key in ("host_ed25519", "client_ed25519"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)],
                           check=True)
        shutil.copy(d / "client_ed25519.pub", d / "authorized_keys")
        self.port = free_port()
        self.user = getpass.getuser()
        (d / "sshd_config").write_text(f"""
Port {self.port}
ListenAddress 127.0.0.1
HostKey {d}/host_ed25519
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
UsePAM no
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
GatewayPorts no
PermitTTY yes
X11Forwarding no
PrintMotd no
PrintLastLog no
UseDNS no
MaxStartups 200
MaxSessions 200
LogLevel ERROR
""")
        (d / "ssh_config").write_text(f"""
Host bench
    HostName 127.0.0.1
    Port {self.port}
    User {self.user}
    IdentityFile {d}/client_ed25519
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    BatchMode yes
    ExitOnForwardFailure yes
    ControlMaster no
    ControlPath none
    Compression no
    LogLevel ERROR
""")
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", exist_ok=True)  # privilege separation directory
        check = subprocess.run([sshd, "-t", "-f", str(d / "sshd_config")], capture_output=True,
                               text=True)
        if check.returncode != 0:
            raise BenchError(f"sshd rejects the private configuration: {check.stderr}")
        self.proc = procs.start("sshd", [sshd, "-D", "-e", "-f", str(d / "sshd_config")])
        if not wait_port(self.port):
            raise BenchError(f"sshd did not listen: {self.proc.log_text()}")
        self.pid = self.proc.pid

    def session_pids(self) -> set[int]:
        """sshd processes serving connections (not the listener)."""
        out = set()
        for pid in descendants_of(self.pid):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                    out.add(pid)
            except OSError:
                pass
        return out

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class SshTunnel(BenchPath):
    """`ssh -R` for every target: the remote forward listens on the sshd
    side (the public side) and leads back to the target, as muxgate does."""
    kind = "ssh"

    def __init__(self, name: str, label: str, procs: Procs, sshd: Sshd, targets: Targets,
                 cipher: str | None, tty: bool, which: tuple[str, ...] = TARGETS):
        self.name, self.label = name, label
        self._procs = procs
        self.ports = {}
        argv = ["ssh", "-F", str(sshd.dir / "ssh_config")]
        if cipher:
            argv += ["-o", f"Ciphers={cipher}"]
        for t in which:
            if t not in targets.ports:
                continue
            p = free_port()
            self.ports[t] = p
            argv += ["-R", f"127.0.0.1:{p}:127.0.0.1:{targets.ports[t]}"]
        before = sshd.session_pids()
        if tty:
            # A terminal makes both ends set TCP_NODELAY: the best OpenSSH does.
            argv += ["-tt", "bench", "sleep 1000000"]
            stdin = subprocess.PIPE   # kept open: EOF would end the session
        else:
            argv += ["-N", "bench"]
            stdin = subprocess.DEVNULL
        self.proc = procs.start(name, argv, stdin=stdin)
        if not wait_echo(self.ports["echo"], timeout=20):
            raise BenchError(f"{name}: the ssh -R tunnel did not come up: {self.proc.log_text()}")
        self._sessions = sorted(sshd.session_pids() - before)
        self._sshd = sshd

    def public_pids(self) -> list[int]:
        return [p for p in self._sessions if rss_kb(p)["rss_kb"]]

    def agent_pids(self) -> list[int]:
        return [self.proc.pid]

    def alive(self) -> bool:
        return self.proc.alive()

    def stop(self) -> None:
        self._procs.stop(self.proc)


class Muxgate(BenchPath):
    """A gateway and an agent on loopback in quick mode, one tunnel per target."""
    kind = "muxgate"

    TOKEN = "bench-token-not-secret"
    # bench.py --gateway-args / --agent-args (e.g. "--threads 1")
    extra_gateway_args: list[str] = []
    extra_agent_args: list[str] = []

    def __init__(self, name: str, label: str, procs: Procs, bin_dir: Path, run_dir: Path,
                 targets: Targets | None, tls: bool, which: tuple[str, ...] = TARGETS,
                 agent: bool = True, gateway_args: list[str] = (), agent_args: list[str] = ()):
        self.name, self.label, self.tls = name, label, tls
        self.gateway_args = list(self.extra_gateway_args) + list(gateway_args)
        self.agent_args = list(self.extra_agent_args) + list(agent_args)
        self._procs = procs
        self.ports = {}
        self.gw_port = free_port()
        env = {"MUXGATE_TOKEN": self.TOKEN}
        self.cert = run_dir / f"{name}-gateway.pem"
        gw = [str(bin_dir / "muxgate"), "--listen", f"127.0.0.1:{self.gw_port}",
              "--public-bind", "127.0.0.1"]
        gw += ["--self-signed", "--cert-out", str(self.cert)] if tls else ["--insecure-plaintext"]
        gw += self.gateway_args
        self.gateway = procs.start(f"{name}-gateway", gw, env=env)
        deadline = time.monotonic() + 15
        while "listening on" not in self.gateway.log_text():
            if not self.gateway.alive() or time.monotonic() > deadline:
                raise BenchError(f"{name}: gateway did not start: {self.gateway.log_text()}")
            time.sleep(0.05)
        self.agent = None
        if agent and targets is not None:
            self.start_agent(bin_dir, targets, which)

    @property
    def url(self) -> str:
        scheme = "wss" if self.tls else "ws"
        return f"{scheme}://127.0.0.1:{self.gw_port}/muxgate"

    def start_agent(self, bin_dir: Path, targets: Targets, which: tuple[str, ...]) -> None:
        argv = [str(bin_dir / "muxgate-agent"), "--gateway", self.url, "--name", f"bench-{self.name}"]
        argv += ["--ca", str(self.cert)] if self.tls else ["--insecure"]
        argv += self.agent_args
        wanted = {}
        for t in which:
            if t in targets.ports:
                argv += ["--tunnel", f"tcp:0:127.0.0.1:{targets.ports[t]}"]
                wanted[targets.ports[t]] = t
        self.agent = self._procs.start(f"{self.name}-agent", argv,
                                       env={"MUXGATE_TOKEN": self.TOKEN})
        # "tunnel tcp-127.0.0.1-8080 is open at 127.0.0.1:41234"
        pat = re.compile(r"tunnel \S*?-(\d+) is open at \S+:(\d+)")
        deadline = time.monotonic() + 20
        while len(self.ports) < len(wanted):
            for m in pat.finditer(self.agent.log_text()):
                target_port, public = int(m.group(1)), int(m.group(2))
                if target_port in wanted:
                    self.ports[wanted[target_port]] = public
            if len(self.ports) == len(wanted):
                break
            if not self.agent.alive() or time.monotonic() > deadline:
                raise BenchError(f"{self.name}: agent did not open its tunnels:\n"
                                 f"{self.agent.log_text()[-2000:]}")
            time.sleep(0.05)
        if "echo" in self.ports and not wait_echo(self.ports["echo"]):
            raise BenchError(f"{self.name}: no echo through the tunnel")

    def public_pids(self) -> list[int]:
        return [self.gateway.pid]

    def agent_pids(self) -> list[int]:
        return [self.agent.pid] if self.agent else []

    def alive(self) -> bool:
        return self.gateway.alive() and (self.agent is None or self.agent.alive())

    def stop(self) -> None:
        if self.agent:
            self._procs.stop(self.agent)
        self._procs.stop(self.gateway)


# name -> label; the order is the table's column order. bench.py --variant
# appends muxgate WSS variants (extra gateway / agent options) at the end.
CONFIGS = {
    "direct": "direct (no tunnel)",
    "ssh-N-aes": "ssh -N -R, aes128-gcm",
    "ssh-N-chacha": "ssh -N -R, chacha20-poly1305 (default)",
    "ssh-tt-aes": "ssh -tt -R 'sleep', aes128-gcm",
    "muxgate-wss": "muxgate, WSS",
    "muxgate-ws": "muxgate, plain WS (--insecure)",
}


# muxgate-wss-<label> -> (gateway args, agent args), from bench.py --variant
VARIANTS: dict[str, tuple[list[str], list[str]]] = {}


def add_variant(spec: str) -> str:
    """'LABEL=GATEWAY ARGS[;AGENT ARGS]' -> a WSS configuration 'muxgate-wss-LABEL'."""
    import shlex
    label, _, rest = spec.partition("=")
    if not label or not re.fullmatch(r"[A-Za-z0-9_.-]+", label):
        raise BenchError(f"--variant {spec!r}: want LABEL=GATEWAY ARGS[;AGENT ARGS]")
    gw, _, ag = rest.partition(";")
    name = f"muxgate-wss-{label}"
    VARIANTS[name] = (shlex.split(gw), shlex.split(ag))
    CONFIGS[name] = f"muxgate, WSS, gateway `{gw.strip()}`" + (f", agent `{ag.strip()}`" if ag.strip() else "")
    return name


def make_path(name: str, procs: Procs, run_dir: Path, bin_dir: Path, targets: Targets,
              sshd: Sshd | None, which: tuple[str, ...] = TARGETS) -> BenchPath:
    label = CONFIGS[name]
    if name == "direct":
        return Direct(targets)
    if name == "ssh-N-aes":
        return SshTunnel(name, label, procs, sshd, targets, "aes128-gcm@openssh.com", False, which)
    if name == "ssh-N-chacha":
        return SshTunnel(name, label, procs, sshd, targets, None, False, which)
    if name == "ssh-tt-aes":
        return SshTunnel(name, label, procs, sshd, targets, "aes128-gcm@openssh.com", True, which)
    if name == "muxgate-wss":
        return Muxgate(name, label, procs, bin_dir, run_dir, targets, True, which)
    if name == "muxgate-ws":
        return Muxgate(name, label, procs, bin_dir, run_dir, targets, False, which)
    if name in VARIANTS:
        gw_args, agent_args = VARIANTS[name]
        return Muxgate(name, label, procs, bin_dir, run_dir, targets, True, which,
                       gateway_args=gw_args, agent_args=agent_args)
    raise BenchError(f"unknown configuration {name}")


def tool_versions() -> dict:
    def first_line(argv):
        try:
            cp = subprocess.run(argv, capture_output=True, text=True, timeout=5)
            return (cp.stdout or cp.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    return {"openssh": first_line(["ssh", "-V"]), "iperf3": first_line(["iperf3", "--version"]),
            "wrk": first_line(["wrk", "-v"]), "nginx": first_line(["nginx", "-v"])}


def sanity_echo(path: BenchPath) -> bool:
    return echo_once(path.ports["echo"])
