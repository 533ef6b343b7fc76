// The agent WebSocket's opening handshake on both sides, over ws_conn.
#include "net/ws.hpp"

#include "net/tls.hpp"
#include "net/ws_conn.hpp"
#include "wire/control.hpp"
#include "ws/handshake.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace muxgate::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

// The largest error body we read from a gateway that refused the upgrade.
constexpr std::size_t max_error_body = 512;

// Aborts the connection if the handshake outlives its deadline.
class deadline {
public:
    deadline(const asio::any_io_executor& ex, std::chrono::milliseconds d,
             const std::shared_ptr<tls_stream>& c)
        : timer_(std::make_shared<asio::steady_timer>(ex, d)), done_(std::make_shared<bool>(false))
    {
        timer_->async_wait([w = std::weak_ptr<tls_stream>(c), done = done_](error_code ec) {
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

std::string trim_body(std::string body)
{
    if (body.size() > 200) body.resize(200);
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
    return body;
}

}  // namespace

asio::awaitable<accept_result> accept_agent(tls_stream::socket_type sock,
                                            std::shared_ptr<asio::ssl::context> tls,
                                            ws_server_options o)
{
    accept_result out;
    auto c = std::make_shared<tls_stream>(std::move(sock), tls ? tls->native_handle() : nullptr);
    deadline guard{c->socket().get_executor(), o.handshake_timeout, c};

    if (auto err = co_await c->handshake(true); !err.empty()) {
        out.error = guard.expired() ? "TLS handshake timed out" : err;
        co_return out;
    }
    std::string err;
    std::string head = co_await c->read_head(o.max_request_header, err);
    if (head.empty() && o.handoff && err == "HTTP head too large") {
        // Longer than the agent handshake may be, but an HTTP plugin has
        // its own limit: hand over what was read, it reads on.
        auto& plain = c->plain();
        out.other = c;
        out.head.assign(reinterpret_cast<const char*>(plain.data()), plain.size());
        plain.consume(plain.size());
        co_return out;
    }
    if (head.empty()) {
        if (err == "HTTP head too large") {
            co_await c->write_raw(ws::response_error(431, "request header too large\n"));
            out.answered = true;
        }
        out.error = guard.expired() ? "HTTP request timed out" : "bad HTTP request: " + err;
        co_return out;
    }
    auto req = ws::parse_request(head, err);
    if (!req && o.handoff) {
        // Not an agent handshake for sure: the plugin gives its own answer.
        out.other = c;
        out.head = std::move(head);
        co_return out;
    }
    if (!req) {
        co_await c->write_raw(ws::response_error(400, "bad request\n"));
        out.answered = true;
        out.error = err;
        co_return out;
    }
    if (req->path != o.path) {
        if (o.handoff) {
            out.other = c;
            out.head = std::move(head);
            co_return out;
        }
        co_await c->write_raw(ws::response_error(404, "not found\n"));
        out.answered = true;
        out.error = fmt::format("HTTP {} {} is not the agent path", req->method.substr(0, 16),
                                req->path.substr(0, 128));
        co_return out;
    }
    if (!req->upgrade || req->key.empty() || req->ws_version != "13") {
        co_await c->write_raw(
            ws::response_error(426, "this endpoint takes muxgate agents over WebSocket\n"));
        out.answered = true;
        out.error = "agent path requested without a WebSocket upgrade";
        co_return out;
    }
    if (!ws::offers(req->protocols, wire::subprotocol)) {
        co_await c->write_raw(ws::response_error(
            400, fmt::format("unsupported or missing WebSocket subprotocol \"{}\": this gateway "
                             "speaks {}\n",
                             req->protocols.substr(0, 64), wire::subprotocol)));
        out.answered = true;
        out.error = fmt::format("WebSocket subprotocol \"{}\" refused (want {})",
                                req->protocols.substr(0, 64), wire::subprotocol);
        co_return out;
    }
    if (auto ec = co_await c->write_raw(ws::response_101(ws::accept_key(req->key), wire::subprotocol))) {
        out.error = "WebSocket accept failed: " + c->error_text();
        co_return out;
    }
    auto conn = std::make_shared<ws_conn>(c, ws::role::server, o.max_message);
    conn->set_close_timeout(o.handshake_timeout);
    out.ws = conn;
    co_return out;
}

asio::awaitable<connect_result> connect_gateway(tls_stream::socket_type sock,
                                                std::shared_ptr<asio::ssl::context> tls,
                                                ws_client_options o)
{
    connect_result out;
    auto c = std::make_shared<tls_stream>(std::move(sock), tls ? tls->native_handle() : nullptr);
    deadline guard{c->socket().get_executor(), o.handshake_timeout, c};

    if (SSL* ssl = c->ssl()) {
        set_peer_name(ssl, o.host, o.verify_host);
        if (auto err = co_await c->handshake(false); !err.empty()) {
            out.error = guard.expired() ? "TLS handshake timed out" : err;
            out.retryable = SSL_get_verify_result(ssl) == X509_V_OK;
            co_return out;
        }
        if (!o.pin.empty()) {
            X509* cert = SSL_get1_peer_certificate(ssl);
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

    const std::string host_header =
        (o.port == 443 || o.port == 80) ? o.host
                                        : (o.host.find(':') != std::string::npos
                                               ? fmt::format("[{}]:{}", o.host, o.port)
                                               : fmt::format("{}:{}", o.host, o.port));
    const std::string key = ws::new_key();
    if (auto ec = co_await c->write_raw(
            ws::client_request(host_header, o.path, key, wire::subprotocol, o.user_agent))) {
        out.error = "WebSocket handshake: " + c->error_text();
        co_return out;
    }
    std::string err;
    const std::string head = co_await c->read_head(16 * 1024, err);
    if (head.empty()) {
        out.error = guard.expired() ? "WebSocket handshake timed out" : "WebSocket handshake: " + err;
        co_return out;
    }
    auto res = ws::parse_response(head, err);
    if (!res) {
        out.error = "WebSocket handshake: " + err;
        co_return out;
    }
    if (res->status != 101) {
        const std::string body = co_await c->read_raw(std::min(res->content_length, max_error_body));
        out.error = fmt::format("gateway refused the WebSocket upgrade: HTTP {} {}", res->status,
                                trim_body(body));
        co_return out;
    }
    if (!res->upgrade || res->accept != ws::accept_key(key)) {
        out.error = "gateway answered the upgrade without a valid Sec-WebSocket-Accept";
        co_return out;
    }
    if (res->protocol != wire::subprotocol) {
        out.error = fmt::format("gateway answered without the {} subprotocol", wire::subprotocol);
        out.retryable = false;
        co_return out;
    }
    auto conn = std::make_shared<ws_conn>(c, ws::role::client, o.max_message);
    conn->set_close_timeout(o.handshake_timeout);
    out.ws = conn;
    co_return out;
}

void set_peer_name(SSL* ssl, const std::string& host, bool verify)
{
    error_code aec;
    asio::ip::make_address(host, aec);
    const bool ip_literal = !aec;
    // SNI carries names only, never address literals (RFC 6066).
    if (!ip_literal) SSL_set_tlsext_host_name(ssl, host.c_str());
    if (!verify) return;
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (ip_literal)
        X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
    else
        X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
}

}  // namespace muxgate::net
