// A pipe over a tls_stream: an HTTPS client on the gateway's shared port or a
// plugin's TLS listener, or an agent's TLS connection to a local target.
//
// Same contract as socket_pipe (flow control by watermarks, FIN and reset
// kept apart); TLS half-close is close_notify followed by the TCP FIN.
#pragma once

#include "net/pipe.hpp"
#include "net/tls_stream.hpp"

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <deque>
#include <memory>
#include <string>

namespace muxgate::net {

class tls_pipe final : public pipe {
public:
    // An established stream (handshake done). `first` are bytes already
    // read (an HTTP head) to deliver before anything else.
    tls_pipe(mg_pipe_kind kind, strand_type ex, pipe_limits limits,
             std::shared_ptr<tls_stream> io, std::string peer, std::string first);
    // A client that connect() will open: TCP, then TLS with `ctx`, checking
    // the certificate against `verify_name` unless it is empty.
    tls_pipe(mg_pipe_kind kind, strand_type ex, pipe_limits limits,
             std::shared_ptr<boost::asio::ssl::context> ctx, std::string verify_name);
    ~tls_pipe() override;

    void connect(std::string host, std::uint16_t port);
    void start() override;
    std::string describe_local() override;

private:
    void on_write(chunk&& c) override;
    void on_write_fin() override;
    void on_abort(mg_close_reason why, std::string_view message) override;
    void on_finish() override;
    void on_read_interest() override;

    boost::asio::awaitable<void> reader();
    boost::asio::awaitable<void> writer();
    boost::asio::awaitable<void> dial(std::string host, std::uint16_t port);
    void wake_writer();
    void fail(std::string what, bool reset);

    std::shared_ptr<tls_stream> io_;
    std::shared_ptr<boost::asio::ssl::context> ctx_;  // client side
    std::string verify_name_;
    std::string first_;
    std::deque<chunk> outq_;
    boost::asio::steady_timer read_wake_;   // cancelled when reading may resume
    boost::asio::steady_timer write_wake_;  // cancelled when there is something to write
    bool started_ = false;
    bool connected_ = false;
    bool reader_waiting_ = false;
    bool writer_waiting_ = false;
};

}  // namespace muxgate::net
