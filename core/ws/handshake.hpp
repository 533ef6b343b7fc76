// The WebSocket opening handshake (RFC 6455 section 4), sans-I/O: finding
// the end of an HTTP head, parsing the upgrade request (gateway) and the
// answer (agent) with Beast's HTTP parser, and writing the few fixed
// messages of the handshake.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace muxgate::ws {

// Bytes of the HTTP head at the start of `bytes` (through the blank line), or
// 0 if the head is not complete yet.
std::size_t head_size(std::string_view bytes) noexcept;

struct upgrade_request {
    std::string method;
    std::string target;      // as sent, including any query
    std::string path;        // target without the query
    unsigned version = 11;   // 10 or 11
    std::string host;
    std::string key;         // Sec-WebSocket-Key
    std::string ws_version;  // Sec-WebSocket-Version
    std::string protocols;   // Sec-WebSocket-Protocol (comma-separated offers)
    bool upgrade = false;    // Upgrade: websocket and Connection: upgrade
};

// Parses a complete request head. nullopt with `error` when it is not HTTP.
std::optional<upgrade_request> parse_request(std::string_view head, std::string& error);

// Whether a comma-separated header value lists `token` (case-sensitive, as
// subprotocol names are).
bool offers(std::string_view header, std::string_view token) noexcept;

// base64(SHA-1(key + the RFC 6455 GUID)).
std::string accept_key(std::string_view key);
// A fresh random Sec-WebSocket-Key.
std::string new_key();

std::string response_101(std::string_view accept, std::string_view protocol);
std::string response_error(unsigned status, std::string_view body);
std::string client_request(std::string_view host_header, std::string_view path,
                           std::string_view key, std::string_view protocol,
                           std::string_view user_agent);

struct upgrade_response {
    unsigned status = 0;
    std::string reason;
    std::string accept;        // Sec-WebSocket-Accept
    std::string protocol;      // Sec-WebSocket-Protocol
    bool upgrade = false;      // Upgrade: websocket and Connection: upgrade
    std::size_t content_length = 0;
};

std::optional<upgrade_response> parse_response(std::string_view head, std::string& error);

}  // namespace muxgate::ws
