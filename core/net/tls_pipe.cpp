#include "net/tls_pipe.hpp"

#include "net/address.hpp"
#include "net/socket_pipe.hpp"
#include "net/sockopt.hpp"
#include "net/ws.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

namespace muxgate::net {

using boost::system::error_code;
using tcp = asio::ip::tcp;
using io_result = tls_stream::io;

namespace {

constexpr auto forever = clock::time_point::max();

}  // namespace

tls_pipe::tls_pipe(mg_pipe_kind kind, strand_type ex, pipe_limits limits,
                   std::shared_ptr<tls_stream> io, std::string peer, std::string first)
    : pipe(kind, ex, limits),
      io_(std::move(io)),
      first_(std::move(first)),
      read_wake_(ex),
      write_wake_(ex),
      connected_(true)
{
    peer_address = std::move(peer);
    tls = io_->tls();
    sni = io_->sni();
}

tls_pipe::tls_pipe(mg_pipe_kind kind, strand_type ex, pipe_limits limits,
                   std::shared_ptr<asio::ssl::context> ctx, std::string verify_name)
    : pipe(kind, ex, limits),
      ctx_(std::move(ctx)),
      verify_name_(std::move(verify_name)),
      read_wake_(ex),
      write_wake_(ex)
{
    tls = true;
}

tls_pipe::~tls_pipe() = default;

std::string tls_pipe::describe_local()
{
    if (!io_) return {};
    error_code ec;
    const auto ep = io_->socket().local_endpoint(ec);
    return ec ? std::string{} : format_endpoint(ep);
}

void tls_pipe::start()
{
    if (started_ || !connected_ || finished()) return;
    started_ = true;
    auto self = std::static_pointer_cast<tls_pipe>(shared_from_this());
    auto on_error = [self](std::exception_ptr e) {
        if (e) self->fail("internal error", true);
    };
    asio::co_spawn(get_executor(), [self] { return self->reader(); }, on_error);
    asio::co_spawn(get_executor(), [self] { return self->writer(); }, on_error);
}

// ------------------------------------------------------------------- connect

void tls_pipe::connect(std::string host, std::uint16_t port)
{
    auto self = std::static_pointer_cast<tls_pipe>(shared_from_this());
    asio::co_spawn(get_executor(), dial(std::move(host), port), [self](std::exception_ptr e) {
        if (e) self->remote_abort(MG_CLOSE_REFUSED, "internal error while connecting");
    });
}

asio::awaitable<void> tls_pipe::dial(std::string host, std::uint16_t port)
{
    auto self = shared_from_this();
    const std::string target = format_host_port(host, port);
    tcp::resolver resolver{get_executor()};
    auto [rec, results] = co_await resolver.async_resolve(host, std::to_string(port),
                                                          asio::as_tuple(asio::use_awaitable));
    if (finished()) co_return;
    if (rec) {
        remote_abort(MG_CLOSE_REFUSED, fmt::format("cannot resolve {}: {}", target, rec.message()));
        co_return;
    }
    tls_stream::socket_type sock{get_executor()};
    asio::steady_timer deadline{get_executor(), connect_timeout};
    deadline.async_wait([&sock](error_code ec) {
        if (!ec) {
            error_code ignored;
            sock.close(ignored);
        }
    });
    std::string last = "no address";
    for (const auto& r : results) {
        error_code ec;
        sock.close(ec);
        auto [cec] = co_await sock.async_connect(asio::generic::stream_protocol::endpoint{r.endpoint()},
                                                 asio::as_tuple(asio::use_awaitable));
        if (finished()) co_return;
        if (!cec) {
            peer_address = format_endpoint(r.endpoint());
            last.clear();
            break;
        }
        last = cec.message();
    }
    if (!last.empty()) {
        deadline.cancel();
        remote_abort(MG_CLOSE_REFUSED, fmt::format("connect to {} failed: {}", target, last));
        co_return;
    }
    set_nodelay(sock.native_handle());
    io_ = std::make_shared<tls_stream>(std::move(sock), ctx_->native_handle());
    set_peer_name(io_->ssl(), verify_name_.empty() ? host : verify_name_, !verify_name_.empty());
    const auto err = co_await io_->handshake(false);
    deadline.cancel();
    if (finished()) co_return;
    if (!err.empty()) {
        io_->abort();
        remote_abort(MG_CLOSE_REFUSED, fmt::format("{}: {}", target, err));
        co_return;
    }
    connected_ = true;
    mark_open();
    if (finished()) co_return;
    start();
}

// ---------------------------------------------------------------------- read

void tls_pipe::on_read_interest()
{
    if (reader_waiting_ && may_deliver()) read_wake_.cancel();
}

asio::awaitable<void> tls_pipe::reader()
{
    auto self = shared_from_this();
    if (!first_.empty()) {
        // The bytes the host read before handing the connection over.
        while (!may_deliver() && !finished()) {
            reader_waiting_ = true;
            read_wake_.expires_at(forever);
            co_await read_wake_.async_wait(asio::as_tuple(asio::use_awaitable));
            reader_waiting_ = false;
        }
        if (finished()) co_return;
        deliver(chunk::copy_of({reinterpret_cast<const std::uint8_t*>(first_.data()), first_.size()}));
        std::string{}.swap(first_);
    }
    for (;;) {
        if (finished()) co_return;
        if (!may_deliver()) {
            reader_waiting_ = true;
            read_wake_.expires_at(forever);
            co_await read_wake_.async_wait(asio::as_tuple(asio::use_awaitable));
            reader_waiting_ = false;
            continue;
        }
        chunk c = chunk::make();
        std::size_t n = 0;
        io_result x;
        if (!io_->plain().empty()) {
            // Left over from the handshake phase.
            n = std::min(io_->plain().size(), c.room());
            std::memcpy(c.tail(), io_->plain().data(), n);
            io_->plain().consume(n);
            x = io_result::ok;
        } else {
            x = io_->read_into(c.tail(), c.room(), n);
        }
        if (x == io_result::ok) {
            c.commit(n);
            deliver(std::move(c));
            continue;
        }
        if (x == io_result::would_block) {
            if (const auto ec = co_await io_->wait_readable()) {
                if (!finished() && ec != asio::error::operation_aborted)
                    fail(fmt::format("read failed: {}", ec.message()), false);
                co_return;
            }
            continue;
        }
        if (x == io_result::eof) {
            deliver_fin();
            co_return;
        }
        fail(io_->error_text(), io_->error_text().find("reset") != std::string::npos);
        co_return;
    }
}

// --------------------------------------------------------------------- write

void tls_pipe::wake_writer()
{
    if (writer_waiting_) write_wake_.cancel();
}

void tls_pipe::on_write(chunk&& c)
{
    outq_.push_back(std::move(c));
    wake_writer();
}

void tls_pipe::on_write_fin() { wake_writer(); }

asio::awaitable<void> tls_pipe::writer()
{
    auto self = shared_from_this();
    bool fin_done = false;
    for (;;) {
        if (finished()) co_return;
        if (outq_.empty()) {
            if (fin_requested() && !fin_done) {
                fin_done = true;
                io_->close_notify();
                io_->writing = true;
                const auto ec = co_await io_->flush();
                io_->writing = false;
                if (finished()) co_return;
                if (ec) {
                    fail(io_->error_text(), false);
                    co_return;
                }
                error_code ignored;
                io_->socket().shutdown(tls_stream::socket_type::shutdown_send, ignored);
                outbound_fin_done();
                co_return;
            }
            writer_waiting_ = true;
            write_wake_.expires_at(forever);
            co_await write_wake_.async_wait(asio::as_tuple(asio::use_awaitable));
            writer_waiting_ = false;
            continue;
        }
        // Encrypt everything queued, then one flush for all of it.
        std::size_t n = 0;
        bool ok = true;
        while (!outq_.empty() && ok) {
            ok = io_->put(outq_.front().data(), outq_.front().size());
            n += outq_.front().size();
            outq_.pop_front();
        }
        if (!ok) {
            fail(io_->error_text(), false);
            co_return;
        }
        io_->writing = true;
        const auto ec = co_await io_->flush();
        io_->writing = false;
        if (finished()) co_return;
        if (ec) {
            fail(io_->error_text(), ec == asio::error::connection_reset || ec == asio::error::broken_pipe);
            co_return;
        }
        outbound_written(n);
    }
}

// ------------------------------------------------------------------ teardown

void tls_pipe::fail(std::string what, bool reset)
{
    remote_abort(reset ? MG_CLOSE_RESET : MG_CLOSE_ERROR, std::move(what));
}

void tls_pipe::on_abort(mg_close_reason, std::string_view)
{
    if (io_) io_->abort(true);
}

void tls_pipe::on_finish()
{
    outq_.clear();
    read_wake_.cancel();
    write_wake_.cancel();
    if (io_) io_->abort();
}

}  // namespace muxgate::net
