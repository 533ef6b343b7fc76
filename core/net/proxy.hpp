// HTTP CONNECT through a corporate proxy (agent side). Building the request
// and parsing the proxy's answer are sans-I/O.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace muxgate::net {

// "CONNECT host:port HTTP/1.1" with Host and, if `user` is set, Basic auth.
std::string connect_request(std::string_view host, std::uint16_t port, std::string_view user,
                            std::string_view password);

struct connect_response {
    enum class state { incomplete, ok, refused, malformed } result = state::incomplete;
    unsigned status = 0;
    std::string reason;       // status line text, for the log
    std::size_t head_size = 0;  // bytes of the response head, incl. the blank line
};

// Looks at what the proxy sent so far. A head longer than `max_head` is
// malformed.
connect_response parse_connect_response(std::string_view bytes, std::size_t max_head = 8192);

}  // namespace muxgate::net
