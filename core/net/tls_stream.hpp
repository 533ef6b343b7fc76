// A byte stream over TLS (or plain TCP), written for throughput and small
// idle memory; the WebSocket (ws_conn) and HTTPS pipes (tls_pipe) sit on it.
//
// OpenSSL works on memory: a custom BIO reads ciphertext from our receive
// buffer and appends what it writes to our send buffer. So a 256 KiB write is
// one SSL_write (16 records) and one send(), and a burst of records is one
// recv() — where asio's TLS stream makes one syscall and one posted handler
// per 16 KiB record. Reads wait for readiness before touching a buffer.
//
// Used from one strand: at most one reader and one writer at a time.
#pragma once

#include "net/byte_buffer.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/system/error_code.hpp>

#include <memory>
#include <string>
#include <string_view>

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

namespace muxgate::net {

class tls_stream : public std::enable_shared_from_this<tls_stream> {
public:
    using socket_type = boost::asio::generic::stream_protocol::socket;
    enum class io { ok, would_block, eof, error };

    // `ctx` null: plain TCP.
    tls_stream(socket_type sock, SSL_CTX* ctx);
    ~tls_stream();
    tls_stream(const tls_stream&) = delete;
    tls_stream& operator=(const tls_stream&) = delete;

    SSL* ssl() const noexcept { return ssl_; }
    bool tls() const noexcept { return ssl_ != nullptr; }
    socket_type& socket() noexcept { return sock_; }
    // The TLS server name the client asked for (server side), if any.
    std::string sni() const;

    // TLS handshake; empty string on success, else the reason.
    boost::asio::awaitable<std::string> handshake(bool server);

    // ---- reading (never blocks; wait_readable() when would_block) ----
    // Received plaintext not yet taken.
    byte_buffer& plain() noexcept { return plain_; }
    // Decrypt (or receive) what is available into plain(), offering at least
    // `want` bytes of room.
    io fill(std::size_t want);
    // Decrypt (or receive) straight into `dst`: plain() must be empty.
    io read_into(std::uint8_t* dst, std::size_t cap, std::size_t& n);
    boost::asio::awaitable<boost::system::error_code> wait_readable();

    // ---- writing ----
    // Encrypt (or copy) bytes onto the send buffer.
    bool put(const void* data, std::size_t n);
    // The send buffer itself (without TLS a frame may be built in place).
    byte_buffer& tx() noexcept { return tx_; }
    // Scratch space for building plaintext before put().
    byte_buffer& staging() noexcept { return staging_; }
    // Send everything queued, waiting for writability as needed.
    boost::asio::awaitable<boost::system::error_code> flush();
    // Send what the socket takes now; finish the rest in the background if
    // no writer is active.
    void try_flush();
    // A writer is active (set by whoever awaits flush()).
    bool writing = false;

    // ---- handshake helpers (HTTP heads around the WebSocket upgrade) ----
    boost::asio::awaitable<std::string> read_head(std::size_t max, std::string& error);
    boost::asio::awaitable<std::string> read_raw(std::size_t n);
    boost::asio::awaitable<boost::system::error_code> write_raw(std::string_view bytes);

    // ---- lifetime ----
    // Queue TLS close_notify (the TLS way to say "no more"); flush() it, then
    // shut the TCP write side for the FIN.
    void close_notify();
    // Drop the connection now, failing pending waits; `rst` sends a reset.
    void abort(bool rst = false);
    bool aborted() const noexcept { return aborted_; }
    // The connection is quiet: give back buffers a burst grew.
    void trim();

    const std::string& error_text() const noexcept { return error_; }
    void set_error(std::string e) { error_ = std::move(e); }
    bool close_notify_received() const noexcept { return close_notify_; }

private:
    friend struct bio_glue;
    io fill_rx();

    socket_type sock_;
    SSL* ssl_ = nullptr;
    byte_buffer rx_;       // ciphertext received, not yet given to OpenSSL
    std::size_t rx_want_;  // bytes asked of recv(): grows while recv fills it
    byte_buffer plain_;
    byte_buffer tx_;
    byte_buffer staging_;
    bool aborted_ = false;
    bool close_notify_ = false;
    std::string error_;
};

}  // namespace muxgate::net
