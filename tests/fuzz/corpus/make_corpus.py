#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target: corpus/<target>/<name>.

The files are committed; run this again (with the system interpreter,
/usr/bin/python3) after changing an input format. Each seed is a small valid
input that reaches deep into its target; the fuzzer mutates from there.
Input formats are described at the top of each fuzz_<target>.cpp.
"""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def u8(v):
    return struct.pack(">B", v)


def u16(v):
    return struct.pack(">H", v)


def u32(v):
    return struct.pack(">I", v)


def control(obj):
    """A control frame holding obj as compact JSON."""
    payload = json.dumps(obj, separators=(",", ":")).encode()
    return u8(0) + u32(len(payload)) + payload


def data(protocol, stream, payload):
    return u8(protocol) + u32(len(payload) + 4) + u32(stream) + payload


def write(target, name, content):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(content)


# Every control message type, with every field (docs/protocol.md section 3).
MESSAGES = {
    "auth": {"type": "Auth", "token": "mgt_Zm9v", "agent": "office", "version": "0.1.0",
             "protocol": 1, "window": 262144, "max_frame": 1048576, "max_message": 4194304},
    "auth_ok": {"type": "AuthOk", "session": "9f2c", "version": "0.1.0", "heartbeat_ms": 10000,
                "window": 262144, "max_frame": 1048576, "max_message": 4194304,
                "max_streams": 4096, "max_tunnels": 64},
    "auth_error": {"type": "AuthError", "code": "bad_token", "message": "no", "retry_ms": 5000},
    "heartbeat": {"type": "Heartbeat", "seq": 7},
    "heartbeat_ack": {"type": "HeartbeatAck", "seq": 7},
    "register": {"type": "Register", "id": 1, "tunnel": "web", "protocol_id": 3,
                 "remote_port": 20001, "options": {"tls": True, "names": ["a"]}},
    "registered": {"type": "Registered", "id": 1, "tunnel": "web", "address": "0.0.0.0:20001"},
    "register_error": {"type": "RegisterError", "id": 1, "tunnel": "web", "code": "duplicate",
                       "message": "taken"},
    "unregister": {"type": "Unregister", "tunnel": "web"},
    "open": {"type": "Open", "stream": 1, "tunnel": "web", "protocol_id": 3,
             "peer": "203.0.113.7:51234", "meta": {"sni": "x.example", "n": 1.5}},
    "opened": {"type": "Opened", "stream": 1},
    "refused": {"type": "Refused", "stream": 1, "code": "connect_failed", "message": "refused"},
    "fin": {"type": "Fin", "stream": 1},
    "reset": {"type": "Reset", "stream": 1, "code": "flow_control", "message": "too much"},
    "window": {"type": "Window", "stream": 1, "credit": 65536},
    "error": {"type": "Error", "code": "protocol_error", "message": "bad frame"},
    "goodbye": {"type": "Goodbye", "reason": "gateway is shutting down", "drain_ms": 15000},
    "unknown_type": {"type": "Priority", "stream": 1, "weight": 4},
}


def control_corpus():
    for name, obj in MESSAGES.items():
        write("fuzz_control", name, json.dumps(obj, separators=(",", ":")).encode())
    write("fuzz_control", "escapes", b'{"type":"Error","code":"a\\u0000\\"\\\\","message":"h\xc3\xa9 \\ud83d\\ude00"}')


def frame_corpus():
    prod = u8(0x80)  # production limits
    write("fuzz_frame", "control", prod + control(MESSAGES["fin"]))
    write("fuzz_frame", "open_and_data", prod + control(MESSAGES["open"]) + data(3, 1, b"hello"))
    write("fuzz_frame", "many", prod + data(1, 1, b"") + data(255, 0xFFFFFFFF, b"x" * 40) +
          control(MESSAGES["window"]) + data(3, 5, b"abc"))
    write("fuzz_frame", "tiny_limits", u8(0x30) + data(3, 1, b"0123456789") + control({"type": "Fin"}))
    write("fuzz_frame", "no_limits", u8(0x7F) + data(7, 9, b"z") + u8(1) + u32(0xFFFFFFFF))
    write("fuzz_frame", "truncated", prod + data(3, 1, b"abc") + u8(3) + u16(0))


# fuzz_engine ops (see fuzz_engine.cpp)
RAW, CTL, DATA, BATCH, ESTABLISH, OPEN, CONFIRM, REFUSE, CONSUMED, RESET, FIN_SENT, CONSUME_CREDIT = range(12)
# build_control types
T_AUTH, T_AUTH_OK, T_AUTH_ERROR, T_HEARTBEAT, T_HEARTBEAT_ACK, T_REGISTER, T_REGISTERED, \
    T_REGISTER_ERROR, T_UNREGISTER, T_OPEN, T_OPENED, T_REFUSED, T_FIN, T_RESET, T_WINDOW, \
    T_ERROR, T_GOODBYE, T_UNKNOWN = range(18)
FIRST = 0  # stream pick: the first known stream


def setup(agent, window_idx, streams_idx, pending_idx, small=False):
    return u8((1 if agent else 0) | window_idx << 1 | streams_idx << 3 | pending_idx << 5 |
              (0x80 if small else 0))


def engine_corpus():
    gw = b"".join([
        setup(False, 1, 3, 3),                       # gateway, window 100
        u8(CTL) + u8(T_AUTH) + u16(4096),           # Auth before establish
        u8(ESTABLISH) + u8(2) + u8(0),              # peer window 65536
        u8(OPEN) + u8(2),                           # stream 1, protocol 3
        u8(OPEN) + u8(0),                           # stream 3, protocol 1
        u8(CTL) + u8(T_OPENED) + u8(FIRST),         # Opened 1
        u8(DATA) + u8(FIRST) + u8(0) + u16(60),     # 60 bytes on 1
        u8(CONSUMED) + u8(FIRST) + u16(30),         # Window 30 goes out
        u8(CONSUME_CREDIT) + u8(FIRST) + u32(65536),
        u8(CTL) + u8(T_WINDOW) + u8(FIRST) + u8(1) + u8(99),  # unblocks: on_credit
        u8(CTL) + u8(T_REFUSED) + u8(1),            # Refused 3
        u8(BATCH) + u8(1) + u8(0) + u8(T_HEARTBEAT_ACK) + u8(1) +
        u8(1) + u8(FIRST) + u8(0) + u16(5) + u8(0) + u8(T_REGISTER) + u8(1) + u8(2),
        u8(CTL) + u8(T_FIN) + u8(FIRST),
        u8(FIN_SENT) + u8(FIRST),                   # both Fins: stream 1 is gone
        u8(CTL) + u8(T_UNKNOWN),                    # ignored
        u8(DATA) + u8(193) + u8(0) + u16(3),        # late data for stream 1 (pick 193: id 193 & 31)
    ])
    write("fuzz_engine", "gateway_session", gw)

    agent = b"".join([
        setup(True, 1, 1, 1),                       # agent, window 100, max_streams 2
        u8(CTL) + u8(T_AUTH_OK) + u16(1000) + u8(4),
        u8(ESTABLISH) + u8(1) + u8(0),              # peer window 100
        u8(CTL) + u8(T_OPEN) + u8(0) + u8(2),       # Open 1
        u8(DATA) + u8(FIRST) + u8(0) + u16(20),     # data before our Opened: fine
        u8(CONFIRM) + u8(FIRST),
        u8(CONSUMED) + u8(FIRST) + u16(20),
        u8(CONSUMED) + u8(FIRST) + u16(0),
        u8(CONSUME_CREDIT) + u8(FIRST) + u32(50),
        u8(CTL) + u8(T_WINDOW) + u8(FIRST) + u8(0),
        u8(CTL) + u8(T_OPEN) + u8(0) + u8(0),       # Open 3
        u8(CTL) + u8(T_OPEN) + u8(0) + u8(1),       # Open 5: Refused{limit}
        u8(REFUSE) + u8(1),                         # refuse 3
        u8(CTL) + u8(T_HEARTBEAT) + u8(9),
        u8(CTL) + u8(T_FIN) + u8(FIRST),
        u8(RESET) + u8(FIRST),
    ])
    write("fuzz_engine", "agent_session", agent)

    auth_ok = control(MESSAGES["auth_ok"])
    open_and_data = control({"type": "Open", "stream": 1, "tunnel": "t", "protocol_id": 3}) + \
        data(3, 1, b"hello")
    write("fuzz_engine", "agent_raw", b"".join([
        setup(True, 2, 3, 3),
        u8(RAW) + u16(len(auth_ok)) + auth_ok,
        u8(ESTABLISH) + u8(3) + u8(3),
        u8(RAW) + u16(len(open_and_data)) + open_and_data,
    ]))

    write("fuzz_engine", "gateway_limits", b"".join([
        setup(False, 0, 0, 0, small=True),          # window 3, 1 stream, 1 pending, small frames
        u8(ESTABLISH) + u8(0) + u8(0),              # peer window 1
        u8(OPEN) + u8(0), u8(OPEN) + u8(0),         # second open refused
        u8(CTL) + u8(T_OPENED) + u8(FIRST),
        u8(DATA) + u8(FIRST) + u8(0) + u16(3),
        u8(CONSUMED) + u8(FIRST) + u16(1),          # Window 1
        u8(DATA) + u8(FIRST) + u8(0) + u16(1),
        u8(DATA) + u8(FIRST) + u8(0) + u16(2),      # beyond credit: flow_control
    ]))


def proxy_corpus():
    write("fuzz_proxy", "ok", u8(1) + b"HTTP/1.1 200 Connection established\r\nVia: p\r\n\r\n\x16\x03\x01")
    write("fuzz_proxy", "auth_required", u8(1) + b"HTTP/1.1 407 Proxy Authentication Required\r\n"
          b"Proxy-Authenticate: Basic realm=\"corp\"\r\n\r\n")
    write("fuzz_proxy", "partial", u8(1) + b"HTTP/1.0 200 OK\r\n")
    write("fuzz_proxy", "small_max_head", u8(40) + b"HTTP/1.1 200 OK\r\nX: yyyyyyyyyyyyyyyy\r\n\r\n")
    write("fuzz_proxy", "credentials", u8(0x41) + b"proxy.corp\x00user\x00pa:ss")


def address_corpus():
    for name, flags, text in [
        ("v4", 0, "127.0.0.1:8443"),
        ("v6", 0, "[::1]:443"),
        ("any_port0", 1, ":0"),
        ("wss_path", 0, "wss://gw.example.com:8443/muxgate"),
        ("proxy_creds", 0, "http://user:pa:ss@[::1]:3128"),
        ("ws_default_port", 0, "WS://gw"),
    ]:
        write("fuzz_address", name, u8(flags) + text.encode())


def rdp_corpus():
    """[mode u8][max u16][bytes]: first packets as FreeRDP 2 sends them
    (tests/rdp/first_packet_test.cpp builds the same), options JSON, CIDRs."""
    neg = bytes([1, 0, 8, 0, 3, 0, 0, 0])

    def cr(user_data):
        n = 11 + len(user_data)
        return bytes([3, 0, n >> 8, n & 0xFF, n - 5, 0xE0, 0, 0, 0, 0, 0]) + user_data

    def pcb(ident, blob, nuls=2):
        text = (blob + "\0" * nuls).encode("utf-16-le") if blob or nuls else b""
        cch = len(text) // 2
        return struct.pack("<IIIIH", 18 + len(text), 0, 2, ident, cch) + text

    pkt = {
        "token": cr(b"desk1\r\n" + neg),
        "broker_token": cr(b"tsv://MS Terminal Services Plugin.1.desk2\r\n" + neg),
        "mstshash": cr(b"Cookie: mstshash=alice\r\n" + neg),
        "pcb_blob": pcb(0, "deskpcb") + cr(b"Cookie: mstshash=root\r\n" + neg),
        "pcb_id": pcb(42, "", 0) + cr(b"Cookie: mstshash=root\r\n" + neg),
        "pcb_v1": struct.pack("<IIII", 16, 0, 1, 7) + cr(neg),
        "empty_cr": cr(b""),
    }
    for name, content in pkt.items():
        write("fuzz_rdp_first_packet", name, u8(0) + u16(8192) + content)
    write("fuzz_rdp_first_packet", "options", u8(2) + u16(0) + json.dumps(
        {"public_port": False, "names": ["a"], "preconnection_id": 7, "users": ["alice"],
         "allow_from": ["10.0.0.0/8", "::1"]}).encode())
    write("fuzz_rdp_first_packet", "config", u8(2) + u16(0) + json.dumps(
        {"listen": "0.0.0.0:3389", "route_by_mstshash": True, "first_packet_timeout_ms": 500,
         "max_first_packet": 1024, "max_pending": 4}).encode())
    write("fuzz_rdp_first_packet", "cidr", u8(3) + u16(0) + b"2001:db8::/33\n[2001:db8::1]:3389")


def main():
    rdp_corpus()
    control_corpus()
    frame_corpus()
    engine_corpus()
    proxy_corpus()
    address_corpus()
    return 0


if __name__ == "__main__":
    sys.exit(main())
