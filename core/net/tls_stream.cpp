#include "net/tls_stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <openssl/bio.h>
#include <openssl/err.h>
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
        auto* c = static_cast<tls_stream*>(BIO_get_data(b));
        c->tx_.append(data, static_cast<std::size_t>(len));
        return len;
    }
    static int read(BIO* b, char* out, int len)
    {
        auto* c = static_cast<tls_stream*>(BIO_get_data(b));
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
        case BIO_CTRL_PENDING:
            return static_cast<long>(static_cast<tls_stream*>(BIO_get_data(b))->rx_.size());
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

tls_stream::tls_stream(socket_type sock, SSL_CTX* ctx) : sock_(std::move(sock)), rx_want_(small_buffer)
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

tls_stream::~tls_stream()
{
    if (ssl_) SSL_free(ssl_);
}

std::string tls_stream::sni() const
{
    if (!ssl_) return {};
    const char* n = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
    return n ? n : "";
}

// ------------------------------------------------------------------ reading

tls_stream::io tls_stream::fill_rx()
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
            error_ = "connection closed by the peer";
            return io::eof;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return io::would_block;
        error_ = fmt::format("receive failed: {}", std::strerror(errno));
        return io::error;
    }
}

tls_stream::io tls_stream::read_into(std::uint8_t* dst, std::size_t cap, std::size_t& n)
{
    n = 0;
    if (!ssl_) {
        for (;;) {
            const ssize_t r = ::recv(sock_.native_handle(), dst, cap, 0);
            if (r > 0) {
                n = static_cast<std::size_t>(r);
                return io::ok;
            }
            if (r == 0) {
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
        const int r = SSL_read(ssl_, dst, static_cast<int>(std::min<std::size_t>(cap, INT_MAX)));
        if (r > 0) {
            n = static_cast<std::size_t>(r);
            // Reading may have produced records to send (TLS 1.3 key
            // updates, tickets): get them out.
            if (!tx_.empty() && !writing) try_flush();
            return io::ok;
        }
        const int e = SSL_get_error(ssl_, r);
        if (e == SSL_ERROR_WANT_READ) {
            const io x = fill_rx();
            if (x != io::ok) return x;
            continue;
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            close_notify_ = true;
            error_ = "the peer closed the TLS session";
            return io::eof;
        }
        error_ = "TLS: " + ssl_errors();
        return io::error;
    }
}

tls_stream::io tls_stream::fill(std::size_t want)
{
    plain_.prepare(std::max(want, min_room));
    std::size_t n = 0;
    const io x = read_into(plain_.tail(), plain_.room(), n);
    plain_.commit(n);
    return x;
}

asio::awaitable<error_code> tls_stream::wait_readable()
{
    auto [ec] = co_await sock_.async_wait(socket_type::wait_read, asio::as_tuple(asio::use_awaitable));
    if (ec && (error_.empty() || ec == asio::error::operation_aborted)) error_ = ec.message();
    co_return ec;
}

// ------------------------------------------------------------------ writing

bool tls_stream::put(const void* data, std::size_t n)
{
    if (!ssl_) {
        tx_.append(data, n);
        return true;
    }
    const auto* p = static_cast<const std::uint8_t*>(data);
    while (n > 0) {
        ERR_clear_error();
        const int w = SSL_write(ssl_, p, static_cast<int>(std::min<std::size_t>(n, INT_MAX)));
        if (w <= 0) {
            error_ = "TLS: " + ssl_errors();
            return false;
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

void tls_stream::try_flush()
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
    if (tx_.empty() || writing || aborted_) return;
    // Left over with nobody writing: finish it in the background.
    writing = true;
    asio::co_spawn(
        sock_.get_executor(),
        [self = shared_from_this()]() -> asio::awaitable<void> {
            co_await self->flush();
            self->writing = false;
        },
        [](std::exception_ptr) {});
}

asio::awaitable<error_code> tls_stream::flush()
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
            auto [ec] = co_await sock_.async_wait(socket_type::wait_write,
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

// ---------------------------------------------------------------- handshake

asio::awaitable<std::string> tls_stream::handshake(bool server)
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
            if (const auto ec = co_await flush()) co_return "TLS handshake: " + error_;
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
            if (const auto ec = co_await wait_readable()) co_return "TLS handshake: " + ec.message();
            continue;
        }
        co_return "TLS handshake: " + error_;
    }
}

asio::awaitable<std::string> tls_stream::read_head(std::size_t max, std::string& error)
{
    for (;;) {
        const std::string_view have{reinterpret_cast<const char*>(plain_.data()), plain_.size()};
        const auto end = have.find("\r\n\r\n");
        if (end != std::string_view::npos && end + 4 <= max) {
            std::string head{have.substr(0, end + 4)};
            plain_.consume(end + 4);
            co_return head;
        }
        // Bare LF line endings: no CRLF CRLF will ever come. Return what we
        // have up to the blank line, for the parser to refuse (or a plugin
        // that claimed the port to answer).
        if (const auto lf = have.find("\n\n"); lf != std::string_view::npos && lf + 2 <= max) {
            std::string head{have.substr(0, lf + 2)};
            plain_.consume(lf + 2);
            co_return head;
        }
        if (have.size() >= max) {
            error = "HTTP head too large";
            co_return std::string{};
        }
        const io x = fill(min_room);
        if (x == io::ok) continue;
        if (x == io::would_block) {
            if (const auto ec = co_await wait_readable()) {
                error = ec.message();
                co_return std::string{};
            }
            continue;
        }
        error = error_;
        co_return std::string{};
    }
}

asio::awaitable<std::string> tls_stream::read_raw(std::size_t n)
{
    while (plain_.size() < n) {
        const io x = fill(min_room);
        if (x == io::ok) continue;
        if (x != io::would_block) break;
        if (co_await wait_readable()) break;
    }
    const std::size_t take = std::min(n, plain_.size());
    std::string out{reinterpret_cast<const char*>(plain_.data()), take};
    plain_.consume(take);
    co_return out;
}

asio::awaitable<error_code> tls_stream::write_raw(std::string_view bytes)
{
    if (!put(bytes.data(), bytes.size())) co_return asio::error::invalid_argument;
    co_return co_await flush();
}

// ------------------------------------------------------------------ lifetime

void tls_stream::close_notify()
{
    if (aborted_ || !ssl_) return;
    ERR_clear_error();
    SSL_shutdown(ssl_);
}

void tls_stream::abort(bool rst)
{
    aborted_ = true;
    error_code ec;
    if (!sock_.is_open()) return;
    if (rst)
        sock_.set_option(asio::socket_base::linger{true, 0}, ec);
    else
        sock_.shutdown(socket_type::shutdown_both, ec);
    sock_.close(ec);
}

void tls_stream::trim()
{
    // Called when the connection has been quiet: buffers a burst grew go
    // back, so thousands of idle connections stay small. (Never on the data
    // path: freeing and regrowing a 256 KiB buffer per message costs more
    // than the data.)
    if (rx_.empty()) {
        rx_.release();
        rx_want_ = small_buffer;
    }
    if (!writing && tx_.empty()) tx_.release();
    if (!writing) staging_.release();
}

}  // namespace muxgate::net
