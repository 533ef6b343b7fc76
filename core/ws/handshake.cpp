#include "ws/handshake.hpp"

#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>

namespace muxgate::ws {

namespace http = boost::beast::http;

namespace {

constexpr std::string_view guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

// Largest head we parse; the caller bounds what it reads the same way.
constexpr std::uint32_t max_head = 16 * 1024;

std::string base64(const unsigned char* data, std::size_t n)
{
    std::string out(4 * ((n + 2) / 3) + 1, '\0');
    const int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data,
                                    static_cast<int>(n));
    out.resize(static_cast<std::size_t>(len));
    return out;
}

bool iequals(std::string_view a, std::string_view b)
{
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

// Case-insensitive token membership for Connection / Upgrade lists.
bool lists_token(std::string_view header, std::string_view token)
{
    std::size_t pos = 0;
    while (pos <= header.size()) {
        auto comma = header.find(',', pos);
        if (comma == std::string_view::npos) comma = header.size();
        auto tok = header.substr(pos, comma - pos);
        while (!tok.empty() && (tok.front() == ' ' || tok.front() == '\t')) tok.remove_prefix(1);
        while (!tok.empty() && (tok.back() == ' ' || tok.back() == '\t')) tok.remove_suffix(1);
        if (iequals(tok, token)) return true;
        pos = comma + 1;
    }
    return false;
}

std::string_view sv(boost::beast::string_view s) { return {s.data(), s.size()}; }

}  // namespace

std::size_t head_size(std::string_view bytes) noexcept
{
    const auto end = bytes.find("\r\n\r\n");
    return end == std::string_view::npos ? 0 : end + 4;
}

bool offers(std::string_view header, std::string_view token) noexcept
{
    std::size_t pos = 0;
    while (pos <= header.size()) {
        auto comma = header.find(',', pos);
        if (comma == std::string_view::npos) comma = header.size();
        auto tok = header.substr(pos, comma - pos);
        while (!tok.empty() && (tok.front() == ' ' || tok.front() == '\t')) tok.remove_prefix(1);
        while (!tok.empty() && (tok.back() == ' ' || tok.back() == '\t')) tok.remove_suffix(1);
        if (tok == token) return true;
        pos = comma + 1;
    }
    return false;
}

std::optional<upgrade_request> parse_request(std::string_view head, std::string& error)
{
    http::request_parser<http::empty_body> p;
    p.header_limit(max_head);
    p.eager(false);
    p.body_limit(boost::none);  // the body is never read here; its size is not our business
    boost::system::error_code ec;
    p.put(boost::asio::buffer(head.data(), head.size()), ec);
    if (ec && ec != http::error::need_more) {
        error = "bad HTTP request: " + ec.message();
        return std::nullopt;
    }
    if (!p.is_header_done()) {
        error = "incomplete HTTP request head";
        return std::nullopt;
    }
    const auto& req = p.get();
    upgrade_request r;
    r.method = std::string{sv(req.method_string())};
    r.target = std::string{sv(req.target())};
    r.path = r.target.substr(0, r.target.find('?'));
    r.version = req.version();
    r.host = std::string{sv(req[http::field::host])};
    r.key = std::string{sv(req[http::field::sec_websocket_key])};
    r.ws_version = std::string{sv(req[http::field::sec_websocket_version])};
    r.protocols = std::string{sv(req[http::field::sec_websocket_protocol])};
    r.upgrade = lists_token(sv(req[http::field::upgrade]), "websocket") &&
                lists_token(sv(req[http::field::connection]), "upgrade") &&
                req.method() == http::verb::get && req.version() >= 11;
    return r;
}

std::string accept_key(std::string_view key)
{
    std::string in{key};
    in.append(guid);
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(in.data()), in.size(), digest);
    return base64(digest, sizeof digest);
}

std::string new_key()
{
    unsigned char raw[16];
    RAND_bytes(raw, sizeof raw);
    return base64(raw, sizeof raw);
}

std::string response_101(std::string_view accept, std::string_view protocol)
{
    return fmt::format("HTTP/1.1 101 Switching Protocols\r\nServer: muxgate\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n"
                       "Sec-WebSocket-Protocol: {}\r\n\r\n",
                       accept, protocol);
}

std::string response_error(unsigned status, std::string_view body)
{
    const std::string_view reason = status == 400   ? "Bad Request"
                                    : status == 404 ? "Not Found"
                                    : status == 426 ? "Upgrade Required"
                                    : status == 431 ? "Request Header Fields Too Large"
                                    : status == 503 ? "Service Unavailable"
                                                    : "Error";
    return fmt::format("HTTP/1.1 {} {}\r\nServer: muxgate\r\nContent-Type: text/plain; "
                       "charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n{}",
                       status, reason, body.size(),
                       status == 426 ? "Upgrade: websocket\r\n" : "", body);
}

std::string client_request(std::string_view host_header, std::string_view path,
                           std::string_view key, std::string_view protocol,
                           std::string_view user_agent)
{
    return fmt::format("GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n"
                       "Sec-WebSocket-Protocol: {}\r\n\r\n",
                       path.empty() ? "/" : path, host_header, user_agent, key, protocol);
}

std::optional<upgrade_response> parse_response(std::string_view head, std::string& error)
{
    http::response_parser<http::empty_body> p;
    p.header_limit(max_head);
    p.eager(false);
    p.skip(false);
    boost::system::error_code ec;
    p.put(boost::asio::buffer(head.data(), head.size()), ec);
    if (ec && ec != http::error::need_more) {
        error = "bad HTTP response: " + ec.message();
        return std::nullopt;
    }
    if (!p.is_header_done()) {
        error = "incomplete HTTP response head";
        return std::nullopt;
    }
    const auto& res = p.get();
    upgrade_response r;
    r.status = res.result_int();
    r.reason = std::string{sv(res.reason())};
    r.accept = std::string{sv(res[http::field::sec_websocket_accept])};
    r.protocol = std::string{sv(res[http::field::sec_websocket_protocol])};
    r.upgrade = lists_token(sv(res[http::field::upgrade]), "websocket") &&
                lists_token(sv(res[http::field::connection]), "upgrade");
    if (auto cl = p.content_length()) r.content_length = static_cast<std::size_t>(*cl);
    return r;
}

}  // namespace muxgate::ws
