#include "net/address.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <arpa/inet.h>
#include <cctype>
#include <charconv>
#include <netinet/in.h>
#include <sys/un.h>

namespace muxgate::net {

namespace {

std::optional<std::uint16_t> parse_port(std::string_view s, std::string& error, bool allow_zero)
{
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc{} || p != s.data() + s.size() || v > 65535 ||
        (v == 0 && !allow_zero)) {
        error = fmt::format("\"{}\" is not a port number ({}..65535)", s, allow_zero ? 0 : 1);
        return std::nullopt;
    }
    return static_cast<std::uint16_t>(v);
}

}  // namespace

namespace {

bool valid_host_char(char c)
{
    const auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u != 0x7f && c != '[' && c != ']' && c != '/' && c != '@' && c != '?' &&
           c != '#';
}

// "host", "host:port", "[v6]" or "[v6]:port". `default_port` 0 means the
// port is required.
std::optional<host_port> split_authority(std::string_view text, std::string_view whole,
                                         std::uint16_t default_port, bool allow_zero,
                                         std::string& error)
{
    host_port out;
    std::string_view port;
    bool has_port = false;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos) {
            error = fmt::format("\"{}\": unterminated [ipv6] host", whole);
            return std::nullopt;
        }
        out.host = std::string{text.substr(1, close - 1)};
        const auto after = text.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') {
                error = fmt::format("\"{}\": expected :port after ]", whole);
                return std::nullopt;
            }
            port = after.substr(1);
            has_port = true;
        }
    } else {
        const auto colon = text.find(':');
        if (colon != std::string_view::npos && text.find(':', colon + 1) != std::string_view::npos) {
            error = fmt::format("\"{}\": write IPv6 addresses as [addr]:port", whole);
            return std::nullopt;
        }
        out.host = std::string{text.substr(0, colon)};
        if (colon != std::string_view::npos) {
            port = text.substr(colon + 1);
            has_port = true;
        }
    }
    if (!std::all_of(out.host.begin(), out.host.end(), valid_host_char)) {
        error = fmt::format("\"{}\": invalid character in host", whole);
        return std::nullopt;
    }
    if (!has_port) {
        if (default_port == 0) {
            error = fmt::format("\"{}\" has no port (expected host:port)", whole);
            return std::nullopt;
        }
        out.port = default_port;
        return out;
    }
    auto p = parse_port(port, error, allow_zero);
    if (!p) return std::nullopt;
    out.port = *p;
    return out;
}

}  // namespace

std::optional<host_port> parse_host_port(std::string_view text, std::string& error,
                                         bool allow_zero)
{
    return split_authority(text, text, 0, allow_zero, error);
}

std::string format_host_port(std::string_view host, std::uint16_t port)
{
    if (host.find(':') != std::string_view::npos) return fmt::format("[{}]:{}", host, port);
    return fmt::format("{}:{}", host, port);
}

std::string format_endpoint(const boost::asio::ip::tcp::endpoint& ep)
{
    return format_host_port(ep.address().to_string(), ep.port());
}

std::string format_endpoint(const boost::asio::generic::stream_protocol::endpoint& ep)
{
    const auto* sa = ep.data();
    char buf[INET6_ADDRSTRLEN] = {};
    if (sa->sa_family == AF_INET) {
        const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
        ::inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
        return format_host_port(buf, ntohs(in->sin_port));
    }
    if (sa->sa_family == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
        ::inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
        return format_host_port(buf, ntohs(in6->sin6_port));
    }
    if (sa->sa_family == AF_UNIX) return "unix";
    return "unknown";
}

std::optional<url> parse_url(std::string_view text, std::string& error)
{
    url out;
    const auto sep = text.find("://");
    if (sep == std::string_view::npos || sep == 0) {
        error = fmt::format("\"{}\" is not a URL (expected scheme://host[:port][/path])", text);
        return std::nullopt;
    }
    out.scheme = std::string{text.substr(0, sep)};
    std::transform(out.scheme.begin(), out.scheme.end(), out.scheme.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::uint16_t default_port = 0;
    if (out.scheme == "ws" || out.scheme == "http") default_port = 80;
    else if (out.scheme == "wss" || out.scheme == "https") default_port = 443;
    else {
        error = fmt::format("\"{}\": unsupported scheme \"{}\"", text, out.scheme);
        return std::nullopt;
    }
    std::string_view rest = text.substr(sep + 3);
    const auto slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    if (slash != std::string_view::npos) out.path = std::string{rest.substr(slash)};
    if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
        std::string_view userinfo = authority.substr(0, at);
        authority = authority.substr(at + 1);
        const auto colon = userinfo.find(':');
        out.user = std::string{userinfo.substr(0, colon)};
        if (colon != std::string_view::npos) out.password = std::string{userinfo.substr(colon + 1)};
    }
    if (authority.empty()) {
        error = fmt::format("\"{}\" has no host", text);
        return std::nullopt;
    }
    auto hp = split_authority(authority, text, default_port, false, error);
    if (!hp) return std::nullopt;
    out.host = std::move(hp->host);
    out.port = hp->port;
    if (out.host.empty()) {
        error = fmt::format("\"{}\" has no host", text);
        return std::nullopt;
    }
    return out;
}

}  // namespace muxgate::net
