// Addresses and URLs as operators write them: "127.0.0.1:8443",
// "[::1]:443", "gw.example.com:443", "wss://gw.example.com/muxgate".
// Parsing is sans-I/O and reports what is wrong as text.
#pragma once

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace muxgate::net {

struct host_port {
    std::string host;  // without brackets; may be empty ("all addresses")
    std::uint16_t port = 0;
};

// "host:port" or "[v6]:port"; port 1..65535 (0 allowed when allow_zero).
std::optional<host_port> parse_host_port(std::string_view text, std::string& error,
                                         bool allow_zero = false);

// Brackets IPv6 literals: ("::1", 443) -> "[::1]:443".
std::string format_host_port(std::string_view host, std::uint16_t port);

std::string format_endpoint(const boost::asio::ip::tcp::endpoint& ep);
std::string format_endpoint(const boost::asio::generic::stream_protocol::endpoint& ep);

struct url {
    std::string scheme;  // lower case
    std::string user;    // userinfo, percent-decoding not applied
    std::string password;
    std::string host;
    std::uint16_t port = 0;  // default for the scheme when absent
    std::string path;        // "/..." or empty
};

// Parses scheme://[user[:password]@]host[:port][/path]. Known default ports:
// ws 80, wss 443, http 80, https 443.
std::optional<url> parse_url(std::string_view text, std::string& error);

}  // namespace muxgate::net
