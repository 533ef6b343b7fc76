// A WebSocket connection (RFC 6455 framing) on a tls_stream.
//
// A message is framed, encrypted with one SSL_write and sent with one send();
// received bytes are decoded in place (ws/codec). Buffers a burst grew are
// given back by trim() when the session finds the connection quiet.
#pragma once

#include "net/tls_stream.hpp"
#include "net/transport.hpp"
#include "ws/codec.hpp"

#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace muxgate::net {

class ws_conn final : public ws_transport, public std::enable_shared_from_this<ws_conn> {
public:
    // `receiver`: server for the gateway side (reads masked client frames),
    // client for the agent side.
    ws_conn(std::shared_ptr<tls_stream> io, ws::role receiver, std::size_t max_message);
    ~ws_conn() override;

    tls_stream& io() noexcept { return *io_; }
    const std::shared_ptr<tls_stream>& io_ptr() const noexcept { return io_; }

    // ---- ws_transport ----
    boost::asio::awaitable<boost::system::error_code> read(std::span<const std::uint8_t>& message,
                                                           bool& binary) override;
    boost::asio::awaitable<boost::system::error_code> write(
        std::span<const boost::asio::const_buffer> bufs) override;
    boost::asio::awaitable<void> close(std::uint16_t code, std::string reason) override;
    void abort() override;
    std::uint16_t peer_close_code() const override { return peer_code_; }
    std::string peer_close_reason() const override { return peer_reason_; }
    std::string error_text() const override { return io_->error_text(); }
    void set_read_limit(std::size_t bytes) override { decoder_.set_max_message(bytes); }
    void trim() override;
    void set_close_timeout(std::chrono::milliseconds t) noexcept { close_timeout_ = t; }

private:
    // Queue a control frame (pong, close) for sending at once or by the writer.
    void send_control(ws::opcode op, std::string_view payload);
    static void mask_key(std::uint8_t key[4]);

    std::shared_ptr<tls_stream> io_;
    ws::role receiver_;
    ws::decoder decoder_;
    std::size_t pending_consume_ = 0;  // bytes of the message last returned
    bool close_sent_ = false;
    bool close_received_ = false;
    std::uint16_t peer_code_ = 0;
    std::string peer_reason_;
    std::chrono::milliseconds close_timeout_{5000};
    std::unique_ptr<boost::asio::steady_timer> close_wait_;
};

}  // namespace muxgate::net
