#include "net/ws_conn.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <sys/socket.h>

namespace muxgate::net {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

// Receive buffer: starts at one TLS record and doubles while recv() fills it,
// up to big_buffer, so bulk traffic takes many records per syscall.
constexpr std::size_t small_buffer = 17 * 1024;
constexpr std::size_t big_buffer = 256 * 1024;
// Least free room offered to recv() / SSL_read() at a time.
constexpr std::size_t min_room = 16 * 1024;

std::string ssl_errors()
{
    std::string out;
    unsigned long e;
    while ((e = ERR_get_error()) != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        if (!out.empty()) out += "; ";
        out += buf;
    }
    return out.empty() ? "TLS error" : out;
}

}  // namespace

// OpenSSL reads ciphertext from rx_ and writes ciphertext to tx_ through this
// BIO: no socket inside OpenSSL, so we decide how records meet syscalls.
struct bio_glue {
    static int write(BIO* b, const char* data, int len)
    {
        auto* c = static_cast<ws_conn*>(BIO_get_data(b));
        c->tx_.append(data, static_cast<std::size_t>(len));
        return len;
    }
    static int read(BIO* b, char* out, int len)
    {
        auto* c = static_cast<ws_conn*>(BIO_get_data(b));
        BIO_clear_retry_flags(b);
        const std::size_t avail = c->rx_.size();
        if (avail == 0) {
            BIO_set_retry_read(b);
            return -1;
        }
        const std::size_t n = std::min<std::size_t>(avail, static_cast<std::size_t>(len));
        std::memcpy(out, c->rx_.data(), n);
        c->rx_.consume(n);
        return static_cast<int>(n);
    }
    static long ctrl(BIO* b, int cmd, long, void*)
    {
        switch (cmd) {
        case BIO_CTRL_FLUSH:
        case BIO_CTRL_DUP:
            return 1;
        case BIO_CTRL_PENDING: {
            auto* c = static_cast<ws_conn*>(BIO_get_data(b));
            return static_cast<long>(c->rx_.size());
        }
        default:
            return 0;
        }
    }
    static int create(BIO* b)
    {
        BIO_set_init(b, 1);
        return 1;
    }
    static BIO_METHOD* method()
    {
        static BIO_METHOD* m = [] {
            BIO_METHOD* bm = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "muxgate");
            BIO_meth_set_write(bm, &bio_glue::write);
            BIO_meth_set_read(bm, &bio_glue::read);
            BIO_meth_set_ctrl(bm, &bio_glue::ctrl);
            BIO_meth_set_create(bm, &bio_glue::create);
            return bm;
        }();
        return m;
    }
};

ws_conn::ws_conn(asio::ip::tcp::socket sock, SSL_CTX* ctx, ws::role receiver,
                 std::size_t max_message)
    : sock_(std::move(sock)), receiver_(receiver), decoder_(receiver, max_message), rx_want_(small_buffer)
{
    error_code ec;
    sock_.non_blocking(true, ec);
    if (ctx) {
        ssl_ = SSL_new(ctx);
        BIO* b = BIO_new(bio_glue::method());
        BIO_set_data(b, this);
        SSL_set_bio(ssl_, b, b);
    }
}

ws_conn::~ws_conn()
{
    if (ssl_) SSL_free(ssl_);
}

// -------------------------------------------------------------------- bytes

ws_conn::io ws_conn::fill_rx()
{
    rx_.prepare(rx_want_);
    for (;;) {
        const std::size_t room = rx_.room();
        const ssize_t n = ::recv(sock_.native_handle(), rx_.tail(), room, 0);
        if (n > 0) {
            rx_.commit(static_cast<std::size_t>(n));
            // The kernel had more than we asked for: take more next time.
            if (static_cast<std::size_t>(n) == room && rx_want_ < big_buffer) rx_want_ *= 2;
            return io::ok;
        }
        if (n == 0) {
            error_ = close_received_ ? "connection closed" : "connection closed by the peer";
            return io::eof;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return io::would_block;
        error_ = fmt::format("receive failed: {}", std::strerror(errno));
        return io::error;
    }
}

ws_conn::io ws_conn::fill_plain(std::size_t want)
{
    plain_.prepare(std::max(want, min_room));
    const std::size_t room = plain_.room();
    if (!ssl_) {
        for (;;) {
            const ssize_t n = ::recv(sock_.native_handle(), plain_.tail(), room, 0);
            if (n > 0) {
                plain_.commit(static_cast<std::size_t>(n));
                return io::ok;
            }
            if (n == 0) {
                error_ = "connection closed by the peer";
                return io::eof;
            }
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return io::would_block;
            error_ = fmt::format("receive failed: {}", std::strerror(errno));
            return io::error;
        }
    }
    for (;;) {
        ERR_clear_error();
        const int n = SSL_read(ssl_, plain_.tail(),
                               static_cast<int>(std::min<std::size_t>(room, INT_MAX)));
        if (n > 0) {
            plain_.commit(static_cast<std::size_t>(n));
            // Reading may have produced records to send (TLS 1.3 key
            // updates, tickets): get them out.
            if (!tx_.empty() && !writing_) try_flush();
            return io::ok;
        }
        const int e = SSL_get_error(ssl_, n);
        if (e == SSL_ERROR_WANT_READ) {
            const io r = fill_rx();
            if (r != io::ok) return r;
            continue;
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            error_ = "the peer closed the TLS session";
            return io::eof;
        }
        error_ = "TLS: " + ssl_errors();
        return io::error;
    }
}

bool ws_conn::put_tx(const std::uint8_t* data, std::size_t n)
{
    if (!ssl_) {
        tx_.append(data, n);
        return true;
    }
    while (n > 0) {
        ERR_clear_error();
        const int w = SSL_write(ssl_, data, static_cast<int>(std::min<std::size_t>(n, INT_MAX)));
        if (w <= 0) {
            error_ = "TLS: " + ssl_errors();
            return false;
        }
        data += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

void ws_conn::try_flush()
{
    while (!tx_.empty() && !aborted_) {
        const ssize_t n = ::send(sock_.native_handle(), tx_.data(), tx_.size(), MSG_NOSIGNAL);
        if (n > 0) {
            tx_.consume(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        break;
    }
    if (tx_.empty() || writing_ || aborted_) return;
    // Left over with nobody writing: finish it in the background.
    writing_ = true;
    asio::co_spawn(
        sock_.get_executor(),
        [self = shared_from_this()]() -> asio::awaitable<void> {
            co_await self->flush();
            self->writing_ = false;
        },
        [](std::exception_ptr) {});
}

asio::awaitable<error_code> ws_conn::flush()
{
    while (!tx_.empty()) {
        if (aborted_) co_return asio::error::operation_aborted;
        const ssize_t n = ::send(sock_.native_handle(), tx_.data(), tx_.size(), MSG_NOSIGNAL);
        if (n > 0) {
            tx_.consume(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            auto [ec] = co_await sock_.async_wait(asio::ip::tcp::socket::wait_write,
                                                  asio::as_tuple(asio::use_awaitable));
            if (ec) {
                error_ = fmt::format("send failed: {}", ec.message());
                co_return ec;
            }
            continue;
        }
        const error_code ec{errno, boost::system::system_category()};
        error_ = fmt::format("send failed: {}", ec.message());
        co_return ec;
    }
    co_return error_code{};
}

void ws_conn::mask_key(std::uint8_t key[4])
{
    // Masking exists to stop cache poisoning of plain-HTTP intermediaries
    // (RFC 6455 10.3); OpenSSL's generator is both unpredictable and cheap.
    RAND_bytes(key, 4);
}

void ws_conn::send_control(ws::opcode op, std::string_view payload)
{
    if (aborted_ || close_sent_) return;
    if (op == ws::opcode::close) close_sent_ = true;
    std::uint8_t frame[ws::max_header_size + ws::max_control_payload];
    std::uint8_t key[4];
    const bool client = receiver_ == ws::role::client;
    if (client) mask_key(key);
    const std::size_t n = std::min(payload.size(), ws::max_control_payload);
    const std::size_t h = ws::encode_header(frame, op, true, n, client ? key : nullptr);
    if (client)
        ws::copy_masked(frame + h, reinterpret_cast<const std::uint8_t*>(payload.data()), n, key);
    else
        std::memcpy(frame + h, payload.data(), n);
    if (put_tx(frame, h + n) && !writing_) try_flush();
}

void ws_conn::trim()
{
    // Called by the session when the connection has been quiet for a while:
    // buffers a burst grew go back, so thousands of idle sessions stay small.
    // (Never on the data path: freeing and regrowing a 256 KiB buffer per
    // message costs more than the data.)
    if (rx_.empty()) {
        rx_.release();
        rx_want_ = small_buffer;
    }
    if (plain_.empty() && pending_consume_ == 0) plain_.release();
    if (!writing_ && tx_.empty()) tx_.release();
    if (!writing_) staging_.release();
}

// ------------------------------------------------------------------ handshake

asio::awaitable<std::string> ws_conn::tls_handshake(bool server)
{
    if (!ssl_) co_return std::string{};
    if (server)
        SSL_set_accept_state(ssl_);
    else
        SSL_set_connect_state(ssl_);
    for (;;) {
        ERR_clear_error();
        const int r = SSL_do_handshake(ssl_);
        if (!tx_.empty()) {
            const auto ec = co_await flush();
            if (ec) co_return "TLS handshake: " + error_;
        }
        if (r == 1) co_return std::string{};
        const int e = SSL_get_error(ssl_, r);
        if (e != SSL_ERROR_WANT_READ) {
            const long v = SSL_get_verify_result(ssl_);
            if (!server && v != X509_V_OK)
                co_return fmt::format("TLS handshake failed: certificate verification failed: {}",
                                      X509_verify_cert_error_string(v));
            co_return "TLS handshake failed: " + ssl_errors();
        }
        const io x = fill_rx();
        if (x == io::ok) continue;
        if (x == io::would_block) {
            auto [ec] = co_await sock_.async_wait(asio::ip::tcp::socket::wait_read,
                                                  asio::as_tuple(asio::use_awaitable));
            if (ec) co_return "TLS handshake: " + ec.message();
            continue;
        }
        co_return "TLS handshake: " + error_;
    }
}

asio::awaitable<std::string> ws_conn::read_head(std::size_t max, std::string& error)
{
    for (;;) {
        const std::string_view have{reinterpret_cast<const char*>(plain_.data()), plain_.size()};
        const auto end = have.find("\r\n\r\n");
        if (end != std::string_view::npos && end + 4 <= max) {
            std::string head{have.substr(0, end + 4)};
            plain_.consume(end + 4);
            co_return head;
        }
        if (have.size() >= max) {
            error = "HTTP head too large";
            co_return std::string{};
        }
        const io x = fill_plain(min_room);
        if (x == io::ok) continue;
        if (x == io::would_block) {
            auto [ec] = co_await sock_.async_wait(asio::ip::tcp::socket::wait_read,
                                                  asio::as_tuple(asio::use_awaitable));
            if (ec) {
                error = ec.message();
                co_return std::string{};
            }
            continue;
        }
        error = error_;
        co_return std::string{};
    }
}

asio::awaitable<std::string> ws_conn::read_raw(std::size_t n)
{
    while (plain_.size() < n) {
        const io x = fill_plain(min_room);
        if (x == io::ok) continue;
        if (x != io::would_block) break;
        auto [ec] = co_await sock_.async_wait(asio::ip::tcp::socket::wait_read,
                                              asio::as_tuple(asio::use_awaitable));
        if (ec) break;
    }
    const std::size_t take = std::min(n, plain_.size());
    std::string out{reinterpret_cast<const char*>(plain_.data()), take};
    plain_.consume(take);
    co_return out;
}

asio::awaitable<error_code> ws_conn::write_raw(std::string_view bytes)
{
    if (!put_tx(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()))
        co_return asio::error::invalid_argument;
    co_return co_await flush();
}

// ------------------------------------------------------------------ messages

asio::awaitable<error_code> ws_conn::read(std::span<const std::uint8_t>& message, bool& binary)
{
    if (pending_consume_) {
        plain_.consume(pending_consume_);
        pending_consume_ = 0;
    }
    for (;;) {
        if (aborted_) co_return asio::error::operation_aborted;
        auto d = decoder_.next(plain_.data(), plain_.size());
        switch (d.what) {
        case ws::decoded::kind::message:
            pending_consume_ = decoder_.consumed();
            message = {d.data.data(), d.data.size()};
            binary = d.binary;
            co_return error_code{};
        case ws::decoded::kind::ping: {
            const std::string payload{reinterpret_cast<const char*>(d.data.data()), d.data.size()};
            plain_.consume(decoder_.consumed());
            send_control(ws::opcode::pong, payload);
            continue;
        }
        case ws::decoded::kind::pong:
            plain_.consume(decoder_.consumed());
            continue;
        case ws::decoded::kind::close:
            plain_.consume(decoder_.consumed());
            close_received_ = true;
            peer_code_ = d.close_code;
            peer_reason_ = d.reason.substr(0, ws::max_control_payload);
            if (!close_sent_)
                send_control(ws::opcode::close,
                             ws::close_payload(d.close_code == 1005 ? 1000 : d.close_code, ""));
            if (close_wait_) close_wait_->cancel();
            error_ = fmt::format("the peer closed the WebSocket ({} {})", peer_code_, peer_reason_);
            co_return asio::error::eof;
        case ws::decoded::kind::error:
            error_ = fmt::format("WebSocket protocol error: {}", d.reason);
            send_control(ws::opcode::close, ws::close_payload(d.close_code, d.reason));
            co_return asio::error::invalid_argument;
        case ws::decoded::kind::need_more:
            break;
        }
        // Room for the frame the decoder waits for (bounded: the decoder
        // refuses a frame over max_message from its header).
        const std::size_t want = d.need > plain_.size() ? d.need - plain_.size() : 0;
        const io x = fill_plain(want);
        if (x == io::ok) continue;
        if (x == io::would_block) {
            auto [ec] = co_await sock_.async_wait(asio::ip::tcp::socket::wait_read,
                                                  asio::as_tuple(asio::use_awaitable));
            if (ec) {
                if (error_.empty() || ec == asio::error::operation_aborted) error_ = ec.message();
                co_return ec;
            }
            continue;
        }
        co_return x == io::eof ? error_code{asio::error::eof} : error_code{asio::error::connection_reset};
    }
}

asio::awaitable<error_code> ws_conn::write(std::span<const asio::const_buffer> bufs)
{
    if (aborted_ || close_sent_) co_return asio::error::operation_aborted;
    std::size_t total = 0;
    for (const auto& b : bufs) total += b.size();
    std::uint8_t key[4];
    const bool client = receiver_ == ws::role::client;
    if (client) mask_key(key);
    // Without TLS the frame goes straight into the send buffer; with TLS it
    // is staged so that one SSL_write makes full records and one send()
    // carries them all.
    byte_buffer& out = ssl_ ? staging_ : tx_;
    out.prepare(ws::max_header_size + total);
    std::uint8_t* base = out.tail();
    const std::size_t h =
        ws::encode_header(base, ws::opcode::binary, true, total, client ? key : nullptr);
    std::size_t at = h;
    for (const auto& b : bufs) {
        const auto* src = static_cast<const std::uint8_t*>(b.data());
        if (client)
            ws::copy_masked(base + at, src, b.size(), key, at - h);
        else
            std::memcpy(base + at, src, b.size());
        at += b.size();
    }
    out.commit(at);
    writing_ = true;
    error_code ec;
    if (ssl_) {
        const bool ok = put_tx(staging_.data(), staging_.size());
        staging_.clear();
        if (!ok) ec = asio::error::invalid_argument;
    }
    if (!ec) ec = co_await flush();
    writing_ = false;
    co_return ec;
}

asio::awaitable<void> ws_conn::close(std::uint16_t code, std::string reason)
{
    if (!aborted_ && !close_sent_) {
        writing_ = true;
        send_control(ws::opcode::close, ws::close_payload(code, reason));
        co_await flush();
        writing_ = false;
    }
    if (!aborted_ && !close_received_) {
        close_wait_ = std::make_unique<asio::steady_timer>(sock_.get_executor(), close_timeout_);
        co_await close_wait_->async_wait(asio::as_tuple(asio::use_awaitable));
    }
    if (!aborted_ && ssl_) {
        ERR_clear_error();
        SSL_shutdown(ssl_);  // close_notify, best effort
        try_flush();
    }
    abort();
}

void ws_conn::abort()
{
    aborted_ = true;
    if (close_wait_) close_wait_->cancel();
    error_code ec;
    if (sock_.is_open()) {
        sock_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
        sock_.close(ec);
    }
}

}  // namespace muxgate::net
