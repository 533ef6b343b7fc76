"""What the ssh plugin's tests share: keys, a private OpenSSH sshd, a gateway
with the jump host on, agents with named ssh tunnels, and OpenSSH clients run
through an `-F` config file (OpenSSH does not pass `-o` options to the `-J`
hop, so everything the clients need is in that file).

Everything lives in the case's temporary directory; sshd runs in the
foreground (-D -e) with its own config, host key, authorized_keys and pid
file, on a loopback port below 32768."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness as h  # noqa: E402

SSHD = "/usr/sbin/sshd"


def keygen(env, name, kind="ed25519"):
    path = env.path(name)
    r = subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", name, "-f", path],
                       capture_output=True, text=True, timeout=h.START_TIMEOUT)
    h.check_eq(r.returncode, 0, f"ssh-keygen {name}: {r.stderr}")
    with open(path + ".pub") as f:
        return path, f.read().strip()


def sshd(env, authorized, name="sshd"):
    """Starts a private sshd on 127.0.0.1 that accepts the given public key
    lines; returns its port."""
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privsep chroot
    host_key, _ = keygen(env, f"{name}_host_key")
    ak = env.write(f"{name}_authorized_keys", "\n".join(authorized) + "\n", 0o600)
    for attempt in range(10):
        port = h.pick_port()
        cfg = env.write(f"{name}_config", f"""
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {env.path(name + '.pid')}
AuthorizedKeysFile {ak}
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowTcpForwarding yes
Subsystem sftp internal-sftp
LogLevel VERBOSE
""")
        p = env.start(name, [SSHD, "-D", "-e", "-f", cfg])
        try:
            p.wait_log(r"Server listening on 127\.0\.0\.1 port %d" % port, h.START_TIMEOUT,
                       what="sshd listening")
            return port
        except h.Failure:
            if not p.alive() and "Address already in use" in p.text():
                continue
            raise
    raise h.Failure("could not start sshd on a free port")


def users_toml(users):
    """users: list of (name, [key lines], [allow globs])."""
    out = []
    for name, keys, allow in users:
        keys_s = ", ".join('"' + k + '"' for k in keys)
        allow_s = ", ".join('"' + a + '"' for a in allow)
        out.append(f"""
[[plugins.ssh.jump.users]]
name = "{name}"
keys = [{keys_s}]
allow = [{allow_s}]
""")
    return "".join(out)


def gateway(env, users, name="gateway", extra_jump=""):
    """A gateway with the jump host on a fixed loopback port; returns
    (Gateway, jump port, host key fingerprint)."""
    jport = h.pick_port()
    host_key = env.path(name + "-ssh-host-key")

    def config(port):
        return h.gateway_toml(env, port, name=name, agents=f"""
[plugins.ssh]
log_banners = true

[plugins.ssh.jump]
listen = "127.0.0.1:{jport}"
host_key = "{host_key}"
{extra_jump}
{users_toml(users)}
""")
    gw = env.gateway(name=name, config=config)
    m = gw.proc.wait_log(r"ssh jump: host key \S+(?: \(created\))? fingerprint (SHA256:\S+)",
                         what="jump host key fingerprint")
    gw.proc.wait_log(r"ssh jump: listening on 127\.0\.0\.1:%d" % jport, what="jump listening")
    return gw, jport, m.group(1)


def agent(env, gw, tunnels, name="agent", agent_name=None):
    """An agent (config file) with ssh tunnels: list of (tunnel name, local
    "host:port" or None, options TOML inline table or "", remote_port)."""
    body = f"""
[agent]
name = "{agent_name or name}"
gateway = "{gw.url}"
ca = "{gw.cert}"
"""
    for tname, local, options, remote in tunnels:
        body += f"""
[[tunnel]]
name = "{tname}"
protocol = "ssh"
remote_port = {remote}
"""
        if local:
            body += f'local = "{local}"\n'
        if options:
            body += f"options = {options}\n"
    a = env.agent(gw, name=name, config=body)
    return a


def client_config(env, jport, key, host_key_fp=None, name="ssh_config", jump_user="jump",
                  jump_key=None, extra=""):
    """An ssh -F file: the jump host alias `gw`, every other name through it.
    Host keys go to a known_hosts file of the case (accept-new)."""
    kh = env.path("known_hosts")
    text = f"""
Host gw
  HostName 127.0.0.1
  Port {jport}
  User {jump_user}
  ProxyJump none
  IdentityFile {jump_key or key}
  IdentitiesOnly yes
  UserKnownHostsFile {kh}
  StrictHostKeyChecking accept-new
  BatchMode yes
  ConnectTimeout 20

Host * !gw
  User root
  IdentityFile {key}
  IdentitiesOnly yes
  UserKnownHostsFile {kh}
  StrictHostKeyChecking accept-new
  BatchMode yes
  ConnectTimeout 20
  ProxyJump gw
{extra}
"""
    return env.write(name, text)


def run(argv, timeout=None, input=None, check=True, what=None):
    r = subprocess.run(argv, capture_output=True, timeout=timeout or h.IO_TIMEOUT * 2,
                       input=input)
    if check and r.returncode != 0:
        raise h.Failure(f"{what or argv[0]}: exit {r.returncode}\n  argv: {argv}\n"
                        f"  stderr: {r.stderr.decode(errors='replace')[-2000:]}")
    return r


def make_file(env, name, size, seed=7):
    """A file of `size` pattern bytes; returns (path, sha256 hex)."""
    import hashlib
    path = env.path(name)
    d = hashlib.sha256()
    with open(path, "wb") as f:
        for chunk in h.pattern().chunks(seed, size):
            f.write(chunk)
            d.update(chunk)
    return path, d.hexdigest()


def sha256_file(path):
    import hashlib
    d = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            d.update(b)
    return d.hexdigest()
