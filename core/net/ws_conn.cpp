#include "net/ws_conn.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <openssl/rand.h>

#include <cstring>

namespace muxgate::net {

namespace asio = boost::asio;
using boost::system::error_code;
using io_result = tls_stream::io;

namespace {
// Least free room offered to a read.
constexpr std::size_t min_room = 16 * 1024;
}  // namespace

ws_conn::ws_conn(std::shared_ptr<tls_stream> io, ws::role receiver, std::size_t max_message)
    : io_(std::move(io)), receiver_(receiver), decoder_(receiver, max_message)
{
}

ws_conn::~ws_conn() = default;

void ws_conn::mask_key(std::uint8_t key[4])
{
    // Masking exists to stop cache poisoning of plain-HTTP intermediaries
    // (RFC 6455 10.3): keys must be unpredictable, so they come from
    // OpenSSL's generator, drawn 64 keys at a time (each RAND_bytes call
    // costs a getpid() for fork detection, once per message otherwise).
    thread_local std::uint8_t pool[256];
    thread_local std::size_t used = sizeof pool;
    if (used == sizeof pool) {
        if (RAND_bytes(pool, sizeof pool) != 1) {
            RAND_bytes(key, 4);  // retried per key; a failure leaves the pool empty
            return;
        }
        used = 0;
    }
    std::memcpy(key, pool + used, 4);
    used += 4;
}

void ws_conn::send_control(ws::opcode op, std::string_view payload)
{
    if (io_->aborted() || close_sent_) return;
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
    if (io_->put(frame, h + n) && !io_->writing) io_->try_flush();
}

void ws_conn::trim()
{
    io_->trim();
    if (io_->plain().empty() && pending_consume_ == 0) io_->plain().release();
}

asio::awaitable<error_code> ws_conn::read(std::span<const std::uint8_t>& message, bool& binary)
{
    auto& plain = io_->plain();
    if (pending_consume_) {
        plain.consume(pending_consume_);
        pending_consume_ = 0;
    }
    for (;;) {
        if (io_->aborted()) co_return asio::error::operation_aborted;
        auto d = decoder_.next(plain.data(), plain.size());
        switch (d.what) {
        case ws::decoded::kind::message:
            pending_consume_ = decoder_.consumed();
            message = {d.data.data(), d.data.size()};
            binary = d.binary;
            co_return error_code{};
        case ws::decoded::kind::ping: {
            const std::string payload{reinterpret_cast<const char*>(d.data.data()), d.data.size()};
            plain.consume(decoder_.consumed());
            send_control(ws::opcode::pong, payload);
            continue;
        }
        case ws::decoded::kind::pong:
            plain.consume(decoder_.consumed());
            continue;
        case ws::decoded::kind::close:
            plain.consume(decoder_.consumed());
            close_received_ = true;
            peer_code_ = d.close_code;
            peer_reason_ = d.reason.substr(0, ws::max_control_payload);
            if (!close_sent_)
                send_control(ws::opcode::close,
                             ws::close_payload(d.close_code == 1005 ? 1000 : d.close_code, ""));
            if (close_wait_) close_wait_->cancel();
            io_->set_error(
                fmt::format("the peer closed the WebSocket ({} {})", peer_code_, peer_reason_));
            co_return asio::error::eof;
        case ws::decoded::kind::error:
            io_->set_error(fmt::format("WebSocket protocol error: {}", d.reason));
            send_control(ws::opcode::close, ws::close_payload(d.close_code, d.reason));
            co_return asio::error::invalid_argument;
        case ws::decoded::kind::need_more:
            break;
        }
        // Room for the frame the decoder waits for (bounded: the decoder
        // refuses a frame over max_message from its header).
        const std::size_t want = d.need > plain.size() ? d.need - plain.size() : 0;
        const io_result x = io_->fill(std::max(want, min_room));
        if (x == io_result::ok) continue;
        if (x == io_result::would_block) {
            if (const auto ec = co_await io_->wait_readable()) co_return ec;
            continue;
        }
        co_return x == io_result::eof ? error_code{asio::error::eof}
                                      : error_code{asio::error::connection_reset};
    }
}

asio::awaitable<error_code> ws_conn::write(std::span<const asio::const_buffer> bufs)
{
    if (io_->aborted() || close_sent_) co_return asio::error::operation_aborted;
    std::size_t total = 0;
    for (const auto& b : bufs) total += b.size();
    std::uint8_t key[4];
    const bool client = receiver_ == ws::role::client;
    if (client) mask_key(key);
    // Without TLS the frame goes straight into the send buffer; with TLS it
    // is staged so that one SSL_write makes full records and one send()
    // carries them all.
    byte_buffer& out = io_->tls() ? io_->staging() : io_->tx();
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
    io_->writing = true;
    error_code ec;
    if (io_->tls()) {
        const bool ok = io_->put(io_->staging().data(), io_->staging().size());
        io_->staging().clear();
        if (!ok) ec = asio::error::invalid_argument;
    }
    if (!ec) ec = co_await io_->flush();
    io_->writing = false;
    co_return ec;
}

asio::awaitable<void> ws_conn::close(std::uint16_t code, std::string reason)
{
    if (!io_->aborted() && !close_sent_) {
        io_->writing = true;
        send_control(ws::opcode::close, ws::close_payload(code, reason));
        co_await io_->flush();
        io_->writing = false;
    }
    if (!io_->aborted() && !close_received_) {
        close_wait_ = std::make_unique<asio::steady_timer>(io_->socket().get_executor(),
                                                           close_timeout_);
        co_await close_wait_->async_wait(asio::as_tuple(asio::use_awaitable));
    }
    if (!io_->aborted()) {
        io_->close_notify();
        io_->try_flush();
    }
    abort();
}

void ws_conn::abort()
{
    if (close_wait_) close_wait_->cancel();
    io_->abort();
}

}  // namespace muxgate::net
