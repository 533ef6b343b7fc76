// Control messages (protocol_id 0): one UTF-8 JSON object with a "type" field.
// docs/protocol.md lists every message and field; this header is the code
// side of that list. Parsing (simdjson) is sans-I/O and reports errors as
// values with the message type and field involved; serializing uses
// Boost.JSON so no message is ever built by string concatenation.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace muxgate::wire {

// The protocol version carried in the WebSocket subprotocol and in Auth.
inline constexpr std::uint32_t protocol_version = 1;
inline constexpr std::string_view subprotocol = "muxgate.v1";

namespace msg {

struct auth {
    std::string token;
    std::string agent;
    std::string version;
    std::uint32_t protocol = protocol_version;
    std::uint32_t window = 0;       // agent's receive window per stream (bytes)
    std::uint32_t max_frame = 0;    // largest frame payload the agent accepts
    std::uint32_t max_message = 0;  // largest WebSocket message the agent accepts
};
struct auth_ok {
    std::string session;
    std::string version;
    std::uint32_t heartbeat_ms = 0;
    std::uint32_t window = 0;       // gateway's receive window per stream
    std::uint32_t max_frame = 0;    // largest frame payload the gateway accepts
    std::uint32_t max_message = 0;  // largest WebSocket message the gateway accepts
    std::uint32_t max_streams = 0;  // concurrent streams per agent
    std::uint32_t max_tunnels = 0;  // tunnels per agent
};
struct auth_error {
    std::string code;
    std::string message;
    std::uint32_t retry_ms = 0;  // 0: use your own backoff
};
struct heartbeat {
    std::uint64_t seq = 0;
};
struct heartbeat_ack {
    std::uint64_t seq = 0;
};
struct register_tunnel {
    std::uint32_t id = 0;  // request id, echoed in the answer
    std::string tunnel;
    std::uint32_t protocol_id = 0;
    std::uint32_t remote_port = 0;  // 0: none requested
    std::string options = "{}";     // JSON object text
};
struct registered {
    std::uint32_t id = 0;
    std::string tunnel;
    std::string address;
};
struct register_error {
    std::uint32_t id = 0;
    std::string tunnel;
    std::string code;
    std::string message;
};
struct unregister {
    std::string tunnel;
};
struct open {
    std::uint32_t stream = 0;
    std::string tunnel;
    std::uint32_t protocol_id = 0;
    std::string peer;
    std::string meta = "{}";  // JSON object text
};
struct opened {
    std::uint32_t stream = 0;
};
struct refused {
    std::uint32_t stream = 0;
    std::string code;
    std::string message;
};
struct fin {
    std::uint32_t stream = 0;
};
struct reset {
    std::uint32_t stream = 0;
    std::string code;
    std::string message;
};
struct window {
    std::uint32_t stream = 0;
    std::uint32_t credit = 0;
};
// The sender has data for the stream and no credit left (a hint: the
// receiver may grow the stream's window).
struct blocked {
    std::uint32_t stream = 0;
};
struct error {
    std::string code;
    std::string message;
};
struct goodbye {
    std::string reason;
    std::uint32_t drain_ms = 0;
};

}  // namespace msg

using control_message =
    std::variant<msg::auth, msg::auth_ok, msg::auth_error, msg::heartbeat, msg::heartbeat_ack,
                 msg::register_tunnel, msg::registered, msg::register_error, msg::unregister,
                 msg::open, msg::opened, msg::refused, msg::fin, msg::reset, msg::window,
                 msg::error, msg::goodbye, msg::blocked>;

// The "type" string of a message ("Auth", "Window", ...).
std::string_view type_name(const control_message& m) noexcept;

struct parse_result {
    bool ok = false;
    control_message message;
    std::string error;  // when !ok: what is wrong, naming the type and field
    // When !ok but the JSON was well-formed with an unknown "type": the peer
    // may be newer; the receiver may ignore the message.
    bool unknown_type = false;
};

// Parses one control payload. Never throws on bad input.
parse_result parse_control(std::string_view json);

// The longest prefix of `s` of at most `max` bytes that does not cut a UTF-8
// sequence in two (for texts that end up in JSON or a close reason).
std::string_view utf8_prefix(std::string_view s, std::size_t max) noexcept;

// Serializes a message to compact JSON.
std::string serialize(const control_message& m);

}  // namespace muxgate::wire
