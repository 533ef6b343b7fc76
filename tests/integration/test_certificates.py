#!/usr/bin/python3
"""9. The agent's checks of the gateway's certificate.

--ca with another gateway's self-signed certificate: "certificate
verification failed", the agent says it will not fix itself and keeps
retrying. --insecure connects (with a warning). --pin with the pin the
gateway printed connects (with --ca, and with --insecure where the pin is
the only check); a wrong pin fails with "pin mismatch" naming both pins.
Dialling an address the certificate does not name (127.0.0.3, through a
relay) fails host name verification, while "localhost" through the same
kind of relay works.

Known failing: the pin is printed only when a certificate is generated, not
when the gateway reuses its saved one; and a host name mismatch is reported
as "unspecified certificate verification error"."""
import re

import harness as h

VERIFY_FAILED = r"cannot reach gateway \S+: TLS handshake failed: certificate verification failed: "


def other_gateway_identity(env):
    """A second gateway's self-signed certificate and pin."""
    other = env.gateway(name="other-gateway")
    cert, pin = other.cert, other.pin
    rc, killed = other.proc.stop()
    h.check(rc == 0 and not killed, "the other gateway stopped")
    return cert, pin


def tunnel_works(env, agent, srv):
    h.echo_round_trip(agent.wait_tunnel(h.tunnel_name(srv.port)))


@h.case("wrong_ca_fails_and_retries")
def wrong_ca(env):
    other_cert, _ = other_gateway_identity(env)
    srv = env.echo_server()
    gw = env.gateway(log_level="debug")
    agent = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"], ca=other_cert, wait_connected=False)
    agent.proc.wait_count(VERIFY_FAILED, 2, timeout=30 * h.SLOW, what="two verification failures")
    agent.proc.wait_log(r"this will not fix itself: check --ca / --pin / the gateway's certificate")
    h.check(not agent.proc.find(r"connected to gateway"), "the agent never connected")
    h.check(agent.proc.alive(), "the agent keeps retrying")
    gw.proc.wait_log(r"front door 127\.0\.0\.1:\d+: TLS handshake failed")


@h.case("insecure_connects_with_warning")
def insecure(env):
    srv = env.echo_server()
    gw = env.gateway()
    agent = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"], ca=None, args=["--insecure"])
    agent.proc.wait_log(r"--insecure: the gateway's certificate is NOT verified; anyone in the "
                        r"path can impersonate it")
    tunnel_works(env, agent, srv)


@h.case("pin_right_and_wrong")
def pins(env):
    _, other_pin = other_gateway_identity(env)
    srv = env.echo_server()
    gw = env.gateway()
    h.check(gw.pin and gw.pin != other_pin, "two gateways, two different pins")
    right = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"], name="pin-ca", args=["--pin", gw.pin])
    tunnel_works(env, right, srv)
    right.proc.stop()
    right2 = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"], name="pin-insecure", ca=None,
                       args=["--insecure", "--pin", gw.pin])
    right2.proc.wait_log(r"the gateway's certificate is NOT verified \(only the public key pin "
                         r"is checked\)")
    tunnel_works(env, right2, srv)
    right2.proc.stop()
    for name, ca, extra in (("wrongpin-ca", True, []), ("wrongpin-insecure", None, ["--insecure"])):
        wrong = env.agent(gw, [f"tcp:0:127.0.0.1:{srv.port}"], name=name, ca=ca,
                          args=extra + ["--pin", other_pin], wait_connected=False)
        wrong.proc.wait_count(r"cannot reach gateway \S+: gateway public key pin mismatch: "
                              r"expected %s, got %s$" % (re.escape(other_pin), re.escape(gw.pin)),
                              2, timeout=30 * h.SLOW, what="two pin mismatches")
        h.check(not wrong.proc.find(r"connected to gateway"), f"{name} never connected")


@h.case("host_name_mismatch")
def host_mismatch(env):
    srv = env.echo_server()
    gw = env.gateway()
    # The certificate names localhost, 127.0.0.1 and ::1 (and the listen host).
    fwd_bad = h.Forwarder(env, ("127.0.0.1", gw.port), listen_host="127.0.0.3")
    # Build the agent by hand: --gateway is not the gateway's own URL.
    bad = env.start("agent-mismatch", [h.agent_bin(), "--gateway", f"wss://127.0.0.3:{fwd_bad.port}",
                                       "--ca", gw.cert, "--name", "mismatch",
                                       "--tunnel", f"tcp:0:127.0.0.1:{srv.port}"],
                    extra_env={"MUXGATE_TOKEN": h.TOKEN}, muxgate=True)
    bad.wait_count(r"cannot reach gateway wss://127\.0\.0\.3:%d/muxgate: TLS handshake failed: "
                   % fwd_bad.port, 2, timeout=30 * h.SLOW, what="two handshake failures")
    h.check(not bad.find(r"connected to gateway"), "the mismatching agent never connected")

    fwd_good = h.Forwarder(env, ("127.0.0.1", gw.port), listen_host="127.0.0.1")
    good = env.start("agent-localhost", [h.agent_bin(), "--gateway", f"wss://localhost:{fwd_good.port}",
                                         "--ca", gw.cert, "--name", "by-name",
                                         "--tunnel", f"tcp:0:127.0.0.1:{srv.port}"],
                     extra_env={"MUXGATE_TOKEN": h.TOKEN}, muxgate=True)
    good.wait_log(r"connected to gateway as \"by-name\"")
    tunnel_works(env, h.Agent(good), srv)


@h.case("pin_printed_for_saved_certificate")
def pin_after_restart(env):
    """Known failing (see README): the README says the pin is "printed by the
    gateway at start", but a gateway that reuses its saved self-signed
    certificate (or loads --cert/--key) prints no pin, so after the first
    start an operator cannot read the pin an agent's --pin needs."""
    cert, key = env.path("saved-cert.pem"), env.path("saved-key.pem")
    gw = env.gateway(cert=cert, key=key)
    first_pin = gw.pin
    h.check(first_pin, "the first start prints the pin of the certificate it generates")
    rc, killed = gw.proc.stop()
    h.check(rc == 0 and not killed, "the gateway stopped")
    again = env.gateway(cert=cert, key=key, port=gw.port)
    h.check(not again.proc.find(r"self-signed certificate sha256 fingerprint"),
            "the restart reused the saved certificate")
    h.check_eq(again.pin, first_pin, "the pin printed at the second start")


@h.case("host_name_mismatch_says_so")
def host_mismatch_message(env):
    """Known failing (see README): the failure reads "unspecified certificate
    verification error", which does not tell the operator that the name or
    address is the problem."""
    srv = env.echo_server()
    gw = env.gateway()
    fwd = h.Forwarder(env, ("127.0.0.1", gw.port), listen_host="127.0.0.3")
    bad = env.start("agent-mismatch", [h.agent_bin(), "--gateway", f"wss://127.0.0.3:{fwd.port}",
                                       "--ca", gw.cert, "--name", "mismatch",
                                       "--tunnel", f"tcp:0:127.0.0.1:{srv.port}"],
                    extra_env={"MUXGATE_TOKEN": h.TOKEN}, muxgate=True)
    m = bad.wait_log(r"cannot reach gateway \S+: TLS handshake failed: (.*)$")
    h.check(re.search(r"certificate verification failed: .*(mismatch|127\.0\.0\.3)", m.group(1), re.I),
            f"the failure names the host name / IP address mismatch (got {m.group(1)!r})")


if __name__ == "__main__":
    raise SystemExit(h.main())
