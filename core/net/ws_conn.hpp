// A WebSocket connection over TLS (or plain TCP), written for throughput and
// small idle memory.
//
// OpenSSL works on memory: a custom BIO reads ciphertext from our receive
// buffer and appends what it writes to our send buffer. So a 256 KiB message
// is one SSL_write (16 records) and one send(), and a burst of records is one
// recv() — where asio's TLS stream makes one syscall and one posted handler
// per 16 KiB record. Reads wait for readiness before touching any buffer, and
// buffers grown by a burst are given back once traffic is small again.
#pragma once

#include "net/byte_buffer.hpp"
#include "net/transport.hpp"
#include "ws/codec.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <memory>
#include <string>
#include <vector>

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace muxgate::net {

class ws_conn final : public ws_transport, public std::enable_shared_from_this<ws_conn> {
public:
    // `ctx` null: plain TCP. `receiver`: server for the gateway side (reads
    // masked client frames), client for the agent side.
    ws_conn(boost::asio::ip::tcp::socket sock, SSL_CTX* ctx, ws::role receiver,
            std::size_t max_message);
    ~ws_conn() override;
    ws_conn(const ws_conn&) = delete;
    ws_conn& operator=(const ws_conn&) = delete;

    SSL* ssl() const noexcept { return ssl_; }
    boost::asio::ip::tcp::socket& socket() noexcept { return sock_; }

    // ---- opening handshake ----
    // TLS handshake; empty string on success, else the reason.
    boost::asio::awaitable<std::string> tls_handshake(bool server);
    // Read an HTTP head (through the blank line) of at most `max` bytes.
    // Bytes after it stay buffered for the WebSocket. Empty head on failure.
    boost::asio::awaitable<std::string> read_head(std::size_t max, std::string& error);
    // Read `n` more raw bytes (an HTTP error body), best effort.
    boost::asio::awaitable<std::string> read_raw(std::size_t n);
    // Send raw bytes (HTTP) through TLS.
    boost::asio::awaitable<boost::system::error_code> write_raw(std::string_view bytes);

    // ---- ws_transport ----
    boost::asio::awaitable<boost::system::error_code> read(std::span<const std::uint8_t>& message,
                                                           bool& binary) override;
    boost::asio::awaitable<boost::system::error_code> write(
        std::span<const boost::asio::const_buffer> bufs) override;
    boost::asio::awaitable<void> close(std::uint16_t code, std::string reason) override;
    void abort() override;
    std::uint16_t peer_close_code() const override { return peer_code_; }
    std::string peer_close_reason() const override { return peer_reason_; }
    std::string error_text() const override { return error_; }
    void set_read_limit(std::size_t bytes) override { decoder_.set_max_message(bytes); }
    void trim() override;
    void set_close_timeout(std::chrono::milliseconds t) noexcept { close_timeout_ = t; }

private:
    friend struct bio_glue;
    enum class io { ok, would_block, eof, error };

    // Decrypt (or read) what is available into plain_; never blocks.
    io fill_plain(std::size_t want);
    // recv() into rx_; never blocks.
    io fill_rx();
    // Encrypt (or copy) bytes onto tx_.
    bool put_tx(const std::uint8_t* data, std::size_t n);
    // Send tx_ until empty, waiting for writability as needed.
    boost::asio::awaitable<boost::system::error_code> flush();
    // Try to send what is in tx_ now, without waiting.
    void try_flush();
    // Queue a control frame (pong, close) for sending at once or by the writer.
    void send_control(ws::opcode op, std::string_view payload);
    void mask_key(std::uint8_t key[4]);

    boost::asio::ip::tcp::socket sock_;
    SSL* ssl_ = nullptr;
    ws::role receiver_;
    ws::decoder decoder_;

    // Ciphertext received, not yet given to OpenSSL.
    byte_buffer rx_;
    std::size_t rx_want_;  // bytes asked of recv(): grows while recv fills it
    // Plaintext received; the last message returned still occupies its front
    // (pending_consume_ bytes) until the next read().
    byte_buffer plain_;
    std::size_t pending_consume_ = 0;
    // Bytes to send (ciphertext with TLS).
    byte_buffer tx_;
    byte_buffer staging_;  // plaintext of the message being written

    bool writing_ = false;
    bool close_sent_ = false;
    bool close_received_ = false;
    bool aborted_ = false;
    std::uint16_t peer_code_ = 0;
    std::string peer_reason_;
    std::string error_;
    std::chrono::milliseconds close_timeout_{5000};
    std::unique_ptr<boost::asio::steady_timer> close_wait_;
};

}  // namespace muxgate::net
