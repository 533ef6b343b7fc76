#include "net/proxy.hpp"

#include "net/address.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>

namespace muxgate::net {

std::string connect_request(std::string_view host, std::uint16_t port, std::string_view user,
                            std::string_view password)
{
    const std::string target = format_host_port(host, port);
    std::string req = fmt::format("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n", target);
    if (!user.empty()) {
        const std::string cred = fmt::format("{}:{}", user, password);
        std::string b64(4 * ((cred.size() + 2) / 3) + 1, '\0');
        const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(b64.data()),
                                      reinterpret_cast<const unsigned char*>(cred.data()),
                                      static_cast<int>(cred.size()));
        b64.resize(static_cast<std::size_t>(n));
        req += fmt::format("Proxy-Authorization: Basic {}\r\n", b64);
    }
    req += "\r\n";
    return req;
}

connect_response parse_connect_response(std::string_view bytes, std::size_t max_head)
{
    connect_response r;
    const auto end = bytes.find("\r\n\r\n");
    if (end == std::string_view::npos) {
        if (bytes.size() > max_head) r.result = connect_response::state::malformed;
        return r;
    }
    if (end + 4 > max_head) {
        r.result = connect_response::state::malformed;
        return r;
    }
    r.head_size = end + 4;
    const auto line_end = bytes.find("\r\n");
    const std::string_view line = bytes.substr(0, line_end);
    // HTTP/1.x SP 3DIGIT SP reason
    if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[7] < '0' || line[7] > '9' ||
        line[8] != ' ' || (line.size() > 12 && line[12] != ' ')) {
        r.result = connect_response::state::malformed;
        r.reason = std::string{line.substr(0, 80)};
        return r;
    }
    unsigned status = 0;
    for (int i = 9; i < 12; ++i) {
        const char c = line[static_cast<std::size_t>(i)];
        if (c < '0' || c > '9') {
            r.result = connect_response::state::malformed;
            r.reason = std::string{line.substr(0, 80)};
            return r;
        }
        status = status * 10 + static_cast<unsigned>(c - '0');
    }
    r.status = status;
    r.reason = std::string{line.size() > 13 ? line.substr(13, 80) : std::string_view{}};
    r.result = status / 100 == 2 ? connect_response::state::ok : connect_response::state::refused;
    return r;
}

}  // namespace muxgate::net
