// The only translation unit that instantiates Beast's WebSocket and HTTP
// templates (keeps build time and CI time down).
#include "net/ws.hpp"

#include "net/tls.hpp"
#include "wire/control.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <fmt/format.h>

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

namespace muxgate::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

// Client frames are masked through this buffer; larger means fewer, larger
// TLS writes per message.
constexpr std::size_t client_mask_buffer = 64 * 1024;

// Above this a transmit staging buffer is released after a small message, so
// idle sessions do not keep a bulk-sized buffer.
constexpr std::size_t staging_keep = 64 * 1024;

using tls_stream = ssl::stream<tcp::socket>;

template <class Next>
class beast_transport final : public ws_transport {
public:
    template <class... Args>
    explicit beast_transport(Args&&... args) : ws_(std::forward<Args>(args)...)
    {
    }

    websocket::stream<Next>& ws() noexcept { return ws_; }

    asio::awaitable<error_code> read(beast::flat_buffer& buf, bool& binary) override
    {
        auto [ec, n] = co_await ws_.async_read(buf, asio::as_tuple(asio::use_awaitable));
        binary = ws_.got_binary();
        if (ec == websocket::error::closed) {
            peer_code_ = ws_.reason().code;
            peer_reason_ = std::string{ws_.reason().reason.c_str()};
        }
        co_return ec;
    }

    asio::awaitable<error_code> write(std::span<const asio::const_buffer> bufs) override
    {
        ws_.binary(true);
        if constexpr (std::is_same_v<Next, tls_stream>) {
            // asio's TLS stream turns each buffer of a sequence into its own
            // SSL_write, i.e. its own TLS record: a 9-byte frame header would
            // become a 30-byte record. Server frames are not masked, so Beast
            // would pass our sequence straight through; gather it here into
            // one buffer so records are full. (Client frames are copied by
            // Beast's masking anyway.)
            if (bufs.size() > 1 && ws_.is_message_done() && server_) {
                std::size_t total = 0;
                for (const auto& b : bufs) total += b.size();
                staging_.resize(total);
                std::size_t at = 0;
                for (const auto& b : bufs) {
                    std::memcpy(staging_.data() + at, b.data(), b.size());
                    at += b.size();
                }
                auto [ec, n] = co_await ws_.async_write(asio::buffer(staging_),
                                                        asio::as_tuple(asio::use_awaitable));
                if (staging_.capacity() > staging_keep && total < staging_keep / 4) {
                    staging_.clear();
                    staging_.shrink_to_fit();
                }
                co_return ec;
            }
        }
        auto [ec, n] = co_await ws_.async_write(bufs, asio::as_tuple(asio::use_awaitable));
        co_return ec;
    }

    asio::awaitable<void> close(std::uint16_t code, std::string reason) override
    {
        if (reason.size() > 120) reason.resize(120);  // a close reason must fit 123 bytes
        websocket::close_reason cr{static_cast<websocket::close_code>(code), reason};
        auto [ec] = co_await ws_.async_close(cr, asio::as_tuple(asio::use_awaitable));
        (void)ec;
    }

    void abort() override
    {
        error_code ec;
        auto& sock = beast::get_lowest_layer(ws_);
        sock.shutdown(tcp::socket::shutdown_both, ec);
        sock.close(ec);
    }

    std::uint16_t peer_close_code() const override { return peer_code_; }
    std::string peer_close_reason() const override { return peer_reason_; }
    void set_read_limit(std::size_t bytes) override { ws_.read_message_max(bytes); }

    void set_server(bool s) noexcept { server_ = s; }

private:
    websocket::stream<Next> ws_;
    std::vector<std::uint8_t> staging_;
    std::uint16_t peer_code_ = 0;
    std::string peer_reason_;
    bool server_ = false;
};

// Closes the connection if the handshake phase outlives its deadline.
template <class Transport>
class deadline {
public:
    deadline(const asio::any_io_executor& ex, std::chrono::milliseconds d,
             const std::shared_ptr<Transport>& t)
        : timer_(std::make_shared<asio::steady_timer>(ex, d)), done_(std::make_shared<bool>(false))
    {
        timer_->async_wait([w = std::weak_ptr<Transport>(t), done = done_](error_code ec) {
            if (ec || *done) return;
            if (auto p = w.lock()) p->abort();
        });
    }
    ~deadline()
    {
        *done_ = true;
        timer_->cancel();
    }
    bool expired() const { return timer_->expiry() <= asio::steady_timer::clock_type::now(); }

private:
    std::shared_ptr<asio::steady_timer> timer_;
    std::shared_ptr<bool> done_;
};

bool offers_subprotocol(std::string_view header)
{
    // Sec-WebSocket-Protocol: a comma-separated list of tokens.
    std::size_t pos = 0;
    while (pos <= header.size()) {
        auto comma = header.find(',', pos);
        if (comma == std::string_view::npos) comma = header.size();
        auto tok = header.substr(pos, comma - pos);
        while (!tok.empty() && (tok.front() == ' ' || tok.front() == '\t')) tok.remove_prefix(1);
        while (!tok.empty() && (tok.back() == ' ' || tok.back() == '\t')) tok.remove_suffix(1);
        if (tok == wire::subprotocol) return true;
        pos = comma + 1;
    }
    return false;
}

template <class Stream>
asio::awaitable<void> answer(Stream& s, http::status status, std::string body, unsigned version)
{
    http::response<http::string_body> res{status, version};
    res.set(http::field::server, "muxgate");
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.set(http::field::connection, "close");
    res.body() = std::move(body);
    res.prepare_payload();
    co_await http::async_write(s, res, asio::as_tuple(asio::use_awaitable));
}

std::string tls_error_text(const error_code& ec, SSL* ssl)
{
    std::string text = ec.message();
    if (ssl) {
        const long v = SSL_get_verify_result(ssl);
        if (v != X509_V_OK)
            text = fmt::format("certificate verification failed: {}",
                               X509_verify_cert_error_string(v));
    }
    return text;
}

template <class Next>
asio::awaitable<accept_result> accept_on(std::shared_ptr<beast_transport<Next>> t,
                                         ws_server_options o)
{
    accept_result out;
    auto& ws = t->ws();
    deadline<beast_transport<Next>> guard{ws.get_executor(), o.handshake_timeout, t};

    if constexpr (std::is_same_v<Next, tls_stream>) {
        auto [ec] = co_await ws.next_layer().async_handshake(ssl::stream_base::server,
                                                             asio::as_tuple(asio::use_awaitable));
        if (ec) {
            out.error = guard.expired() ? "TLS handshake timed out"
                                        : "TLS handshake failed: " + ec.message();
            co_return out;
        }
    }

    beast::flat_buffer buf;
    http::request_parser<http::empty_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(o.max_request_header));
    auto [rec, rn] = co_await http::async_read(ws.next_layer(), buf, parser,
                                               asio::as_tuple(asio::use_awaitable));
    if (rec) {
        out.error = guard.expired() ? "HTTP request timed out" : "bad HTTP request: " + rec.message();
        if (rec == http::error::header_limit) {
            co_await answer(ws.next_layer(), http::status::request_header_fields_too_large,
                            "request header too large\n", 11);
            out.answered = true;
        }
        co_return out;
    }
    auto req = parser.release();
    std::string_view target{req.target().data(), req.target().size()};
    target = target.substr(0, target.find('?'));
    if (target != o.path) {
        co_await answer(ws.next_layer(), http::status::not_found, "not found\n", req.version());
        out.answered = true;
        out.error = fmt::format("HTTP {} {} is not the agent path", std::string{req.method_string()},
                                std::string{target.substr(0, 128)});
        co_return out;
    }
    if (!websocket::is_upgrade(req)) {
        co_await answer(ws.next_layer(), http::status::upgrade_required,
                        "this endpoint takes muxgate agents over WebSocket\n", req.version());
        out.answered = true;
        out.error = "agent path requested without a WebSocket upgrade";
        co_return out;
    }
    const auto offered = req[http::field::sec_websocket_protocol];
    if (!offers_subprotocol({offered.data(), offered.size()})) {
        co_await answer(ws.next_layer(), http::status::bad_request,
                        fmt::format("unsupported or missing WebSocket subprotocol \"{}\": this "
                                    "gateway speaks {}\n",
                                    std::string{offered.substr(0, 64)}, wire::subprotocol),
                        req.version());
        out.answered = true;
        out.error = fmt::format("WebSocket subprotocol \"{}\" refused (want {})",
                                std::string{offered.substr(0, 64)}, wire::subprotocol);
        co_return out;
    }
    ws.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
        res.set(http::field::server, "muxgate");
        res.set(http::field::sec_websocket_protocol, std::string{wire::subprotocol});
    }));
    ws.set_option(websocket::stream_base::timeout{o.handshake_timeout,
                                                  websocket::stream_base::none(), false});
    ws.auto_fragment(false);
    ws.read_message_max(o.max_message);
    auto [aec] = co_await ws.async_accept(req, asio::as_tuple(asio::use_awaitable));
    if (aec) {
        out.error = "WebSocket accept failed: " + aec.message();
        co_return out;
    }
    t->set_server(true);
    out.ws = t;
    co_return out;
}

template <class Next>
asio::awaitable<connect_result> connect_on(std::shared_ptr<beast_transport<Next>> t,
                                           ws_client_options o)
{
    connect_result out;
    auto& ws = t->ws();
    deadline<beast_transport<Next>> guard{ws.get_executor(), o.handshake_timeout, t};

    if constexpr (std::is_same_v<Next, tls_stream>) {
        auto& tls = ws.next_layer();
        error_code aec;
        asio::ip::make_address(o.host, aec);
        const bool ip_literal = !aec;
        // SNI carries names only, never address literals (RFC 6066).
        if (!ip_literal) SSL_set_tlsext_host_name(tls.native_handle(), o.host.c_str());
        if (o.verify_host) tls.set_verify_callback(ssl::host_name_verification(o.host));
        auto [ec] = co_await tls.async_handshake(ssl::stream_base::client,
                                                 asio::as_tuple(asio::use_awaitable));
        if (ec) {
            out.error = guard.expired() ? "TLS handshake timed out"
                                        : "TLS handshake failed: " +
                                              tls_error_text(ec, tls.native_handle());
            out.retryable = SSL_get_verify_result(tls.native_handle()) == X509_V_OK;
            co_return out;
        }
        if (!o.pin.empty()) {
            X509* cert = SSL_get1_peer_certificate(tls.native_handle());
            const std::string got = cert ? spki_pin(cert) : std::string{};
            if (cert) X509_free(cert);
            if (got != o.pin) {
                out.error = fmt::format("gateway public key pin mismatch: expected {}, got {}",
                                        o.pin, got.empty() ? "no certificate" : got);
                out.retryable = false;
                co_return out;
            }
        }
    }

    ws.set_option(websocket::stream_base::decorator([ua = o.user_agent](websocket::request_type& req) {
        req.set(http::field::user_agent, ua);
        req.set(http::field::sec_websocket_protocol, std::string{wire::subprotocol});
    }));
    ws.set_option(websocket::stream_base::timeout{o.handshake_timeout,
                                                  websocket::stream_base::none(), false});
    ws.auto_fragment(false);
    ws.write_buffer_bytes(client_mask_buffer);
    ws.read_message_max(o.max_message);
    websocket::response_type res;
    const std::string host_header =
        (o.port == 443 || o.port == 80) ? o.host
                                        : (o.host.find(':') != std::string::npos
                                               ? fmt::format("[{}]:{}", o.host, o.port)
                                               : fmt::format("{}:{}", o.host, o.port));
    auto [hec] = co_await ws.async_handshake(res, host_header, o.path,
                                             asio::as_tuple(asio::use_awaitable));
    if (hec) {
        if (hec == websocket::error::upgrade_declined) {
            std::string body = res.body();
            if (body.size() > 200) body.resize(200);
            while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
            out.error = fmt::format("gateway refused the WebSocket upgrade: HTTP {} {}",
                                    res.result_int(), body);
        } else {
            out.error = guard.expired() ? "WebSocket handshake timed out"
                                        : "WebSocket handshake failed: " + hec.message();
        }
        co_return out;
    }
    if (res[http::field::sec_websocket_protocol] != wire::subprotocol) {
        out.error = fmt::format("gateway answered without the {} subprotocol", wire::subprotocol);
        out.retryable = false;
        co_return out;
    }
    out.ws = t;
    co_return out;
}

}  // namespace

asio::awaitable<accept_result> accept_agent(tcp::socket sock, std::shared_ptr<ssl::context> tls,
                                            ws_server_options o)
{
    if (tls) {
        auto t = std::make_shared<beast_transport<tls_stream>>(std::move(sock), *tls);
        co_return co_await accept_on(std::move(t), std::move(o));
    }
    auto t = std::make_shared<beast_transport<tcp::socket>>(std::move(sock));
    co_return co_await accept_on(std::move(t), std::move(o));
}

asio::awaitable<connect_result> connect_gateway(tcp::socket sock, std::shared_ptr<ssl::context> tls,
                                                ws_client_options o)
{
    if (tls) {
        auto t = std::make_shared<beast_transport<tls_stream>>(std::move(sock), *tls);
        co_return co_await connect_on(std::move(t), std::move(o));
    }
    auto t = std::make_shared<beast_transport<tcp::socket>>(std::move(sock));
    co_return co_await connect_on(std::move(t), std::move(o));
}

}  // namespace muxgate::net
