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

std::optional<host_port> parse_host_port(std::string_view text, std::string& error,
                                         bool allow_zero)
{
    host_port out;
    std::string_view port;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            error = fmt::format("\"{}\" is not [ipv6]:port", text);
            return std::nullopt;
        }
        out.host = std::string{text.substr(1, close - 1)};
        port = text.substr(close + 2);
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string_view::npos) {
            error = fmt::format("\"{}\" has no port (expected host:port)", text);
            return std::nullopt;
        }
        out.host = std::string{text.substr(0, colon)};
        if (out.host.find(':') != std::string::npos) {
            error = fmt::format("\"{}\": write IPv6 addresses as [addr]:port", text);
            return std::nullopt;
        }
        port = text.substr(colon + 1);
    }
    auto p = parse_port(port, error, allow_zero);
    if (!p) return std::nullopt;
    out.port = *p;
    return out;
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
    const bool bracketed = authority.front() == '[';
    const auto close = bracketed ? authority.find(']') : std::string_view::npos;
    const auto colon = bracketed ? (close == std::string_view::npos ? close : authority.find(':', close))
                                 : authority.rfind(':');
    if (bracketed && close == std::string_view::npos) {
        error = fmt::format("\"{}\": unterminated [ipv6] host", text);
        return std::nullopt;
    }
    if (colon == std::string_view::npos) {
        out.host = std::string{bracketed ? authority.substr(1, close - 1) : authority};
        out.port = default_port;
    } else {
        out.host = std::string{bracketed ? authority.substr(1, close - 1) : authority.substr(0, colon)};
        auto p = parse_port(authority.substr(colon + 1), error, false);
        if (!p) return std::nullopt;
        out.port = *p;
    }
    if (out.host.empty()) {
        error = fmt::format("\"{}\" has no host", text);
        return std::nullopt;
    }
    return out;
}

}  // namespace muxgate::net
