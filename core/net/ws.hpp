// The agent WebSocket: the gateway's front door (TLS, HTTP upgrade request,
// subprotocol check) and the agent's dialer side of the same handshake. All
// Beast templates live in ws.cpp.
#pragma once

#include "net/tls_stream.hpp"
#include "net/transport.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace muxgate::net {

struct ws_server_options {
    std::string path = "/muxgate";
    std::chrono::milliseconds handshake_timeout{10'000};  // TLS + HTTP upgrade
    std::size_t max_request_header = 8 * 1024;             // bytes of HTTP request head
    std::size_t max_message = 4 * 1024 * 1024;            // largest message accepted
    // Hand requests for other paths back (an HTTP plugin claimed the port)
    // instead of answering 404.
    bool handoff = false;
};

struct accept_result {
    std::shared_ptr<ws_transport> ws;  // set when an agent WebSocket was accepted
    // With handoff: a request for another path, its head already read.
    std::shared_ptr<tls_stream> other;
    std::string head;
    std::string error;                 // else why not (for the log)
    bool answered = false;             // an HTTP answer was sent (not an agent)
};

// TLS handshake (if `tls`), read the HTTP request, accept the WebSocket when
// it is for `path` with the muxgate subprotocol; answer anything else with a
// short HTTP error. Never throws for what the client sends.
boost::asio::awaitable<accept_result> accept_agent(tls_stream::socket_type sock,
                                                   std::shared_ptr<boost::asio::ssl::context> tls,
                                                   ws_server_options o);

struct ws_client_options {
    std::string host;  // SNI, Host header and certificate name check
    std::uint16_t port = 443;
    std::string path = "/muxgate";
    std::chrono::milliseconds handshake_timeout{10'000};
    std::string user_agent = "muxgate-agent";
    bool verify_host = true;  // false with --insecure
    std::string pin;          // optional SPKI pin, checked after the TLS handshake
    std::size_t max_message = 4 * 1024 * 1024;
};

struct connect_result {
    std::shared_ptr<ws_transport> ws;
    std::string error;
    bool retryable = true;  // false for errors a retry cannot fix soon (bad certificate)
};

// TLS (if `tls`) and the WebSocket handshake over a connected socket.
boost::asio::awaitable<connect_result> connect_gateway(tls_stream::socket_type sock,
                                                       std::shared_ptr<boost::asio::ssl::context> tls,
                                                       ws_client_options o);

// Client side of TLS: SNI for names, and (if `verify`) the certificate must
// name `host` (a DNS name or an IP literal), checked by OpenSSL.
void set_peer_name(SSL* ssl, const std::string& host, bool verify);

}  // namespace muxgate::net
