#include "net/socket_pipe.hpp"

#include "net/address.hpp"
#include "net/sockopt.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <fmt/format.h>

namespace muxgate::net {

using boost::system::error_code;
namespace errc = boost::asio::error;

namespace {

bool would_block(const error_code& ec)
{
    return ec == errc::would_block || ec == errc::try_again;
}


}  // namespace

socket_pipe::socket_pipe(mg_pipe_kind kind, strand_type ex, pipe_limits limits, socket_type&& s,
                         std::string peer, bool tcp)
    : pipe(kind, ex, limits), sock_(std::move(s)), tcp_(tcp), connected_(true)
{
    // Everything about the peer came with accept(): no getpeername() or
    // getsockname() per connection.
    peer_address = std::move(peer);
    error_code ec;
    sock_.non_blocking(true, ec);
    if (tcp_) set_nodelay(sock_.native_handle());
}

socket_pipe::socket_pipe(mg_pipe_kind kind, strand_type ex, pipe_limits limits)
    : pipe(kind, ex, limits), sock_(ex)
{
}

std::string socket_pipe::describe_local()
{
    if (!tcp_) return "socketpair";
    error_code ec;
    const auto ep = sock_.local_endpoint(ec);
    return ec ? std::string{} : format_endpoint(ep);
}

// ------------------------------------------------------------------- connect

void socket_pipe::connect(std::string host, std::uint16_t port)
{
    target_ = format_host_port(host, port);
    connect_timer_ = std::make_unique<asio::steady_timer>(get_executor(), connect_timeout);
    connect_timer_->async_wait([self = std::static_pointer_cast<socket_pipe>(shared_from_this())](
                                   error_code ec) {
        if (ec || self->connected_ || self->finished()) return;
        error_code ignored;
        self->sock_.close(ignored);
        self->remote_abort(MG_CLOSE_REFUSED,
                           fmt::format("connect to {} timed out after {}s", self->target_,
                                       connect_timeout.count()));
    });

    error_code ec;
    auto addr = asio::ip::make_address(host, ec);
    if (!ec) {
        auto eps = std::make_shared<std::vector<asio::ip::tcp::endpoint>>();
        eps->emplace_back(addr, port);
        try_endpoints(std::move(eps), 0, {});
        return;
    }
    auto resolver = std::make_shared<asio::ip::tcp::resolver>(get_executor());
    resolver->async_resolve(
        host, std::to_string(port),
        [self = std::static_pointer_cast<socket_pipe>(shared_from_this()), resolver](
            error_code ec, asio::ip::tcp::resolver::results_type results) {
            if (self->finished()) return;
            if (ec) {
                self->remote_abort(MG_CLOSE_REFUSED, fmt::format("cannot resolve {}: {}",
                                                                 self->target_, ec.message()));
                return;
            }
            auto eps = std::make_shared<std::vector<asio::ip::tcp::endpoint>>();
            for (auto& r : results) eps->push_back(r.endpoint());
            self->try_endpoints(std::move(eps), 0, {});
        });
}

void socket_pipe::try_endpoints(std::shared_ptr<std::vector<asio::ip::tcp::endpoint>> eps,
                                std::size_t i, std::string last_error)
{
    if (finished()) return;
    if (i >= eps->size()) {
        remote_abort(MG_CLOSE_REFUSED,
                     fmt::format("connect to {} failed: {}", target_,
                                 last_error.empty() ? "no address" : last_error));
        return;
    }
    error_code ec;
    sock_.close(ec);
    const asio::generic::stream_protocol::endpoint ep{(*eps)[i]};
    sock_.async_connect(ep, asio::bind_executor(
                                get_executor(),
                                [self = std::static_pointer_cast<socket_pipe>(shared_from_this()),
                                 eps, i](error_code ec) {
                                    if (self->finished()) return;
                                    if (ec) {
                                        if (ec == errc::operation_aborted) return;
                                        self->try_endpoints(eps, i + 1, ec.message());
                                        return;
                                    }
                                    self->peer_address = format_endpoint((*eps)[i]);
                                    self->on_connected();
                                }));
}

void socket_pipe::on_connected()
{
    connected_ = true;
    if (connect_timer_) connect_timer_->cancel();
    error_code ec;
    sock_.non_blocking(true, ec);
    set_nodelay(sock_.native_handle());
    mark_open();
    if (finished()) return;
    flush();
    on_read_interest();
}

// ---------------------------------------------------------------------- read

void socket_pipe::on_read_interest()
{
    if (!connected_ || read_armed_ || finished() || !may_deliver()) return;
    read_armed_ = true;
    sock_.async_wait(socket_type::wait_read,
                     asio::bind_executor(
                         get_executor(),
                         [self = std::static_pointer_cast<socket_pipe>(shared_from_this())](
                             error_code ec) { self->on_readable(ec); }));
}

void socket_pipe::on_readable(const error_code& ec)
{
    read_armed_ = false;
    if (finished()) return;
    if (ec) {
        if (ec != errc::operation_aborted) fail(ec, "wait for read");
        return;
    }
    for (int i = 0; i < max_reads_per_wakeup && may_deliver(); ++i) {
        chunk c = chunk::make();
        error_code rec;
        const std::size_t n = sock_.read_some(asio::buffer(c.tail(), c.room()), rec);
        if (would_block(rec)) break;
        if (rec == errc::eof) {
            deliver_fin();
            return;
        }
        if (rec) {
            fail(rec, "read");
            return;
        }
        const bool full = n == c.room();
        c.commit(n);
        deliver(std::move(c));
        if (finished() || !full) break;
    }
    on_read_interest();
}

// --------------------------------------------------------------------- write

void socket_pipe::on_write_copy(std::span<const std::uint8_t> bytes)
{
    if (connected_ && outq_.empty() && !writing_) {
        error_code ec;
        const std::size_t n = sock_.write_some(asio::buffer(bytes.data(), bytes.size()), ec);
        if (ec && !would_block(ec)) {
            fail(ec, "write");
            return;
        }
        bytes = bytes.subspan(n);
        // Queue the rest before reporting progress: outbound_written() can
        // make the peer deliver more at once (re-entering here), and those
        // bytes must go after these.
        if (!bytes.empty()) append_copy(outq_, bytes);
        if (n) outbound_written(n);
        if (finished() || outq_.empty()) return;
        flush();
        return;
    }
    append_copy(outq_, bytes);
    flush();
}

void socket_pipe::on_write(chunk&& c)
{
    if (connected_ && outq_.empty() && !writing_) {
        error_code ec;
        const std::size_t n = sock_.write_some(asio::buffer(c.data(), c.size()), ec);
        if (ec && !would_block(ec)) {
            fail(ec, "write");
            return;
        }
        c.consume(n);
        // As in on_write_copy: the rest is queued before progress is reported.
        if (!c.empty()) outq_.push_back(std::move(c));
        if (n) outbound_written(n);
        if (finished() || outq_.empty()) return;
        flush();
        return;
    }
    outq_.push_back(std::move(c));
    flush();
}

void socket_pipe::flush()
{
    if (writing_ || !connected_ || finished()) return;
    if (outq_.empty()) {
        maybe_shutdown();
        return;
    }
    // The gather list must outlive this call: asio keeps the buffer sequence
    // object (a span over it) until the write completes.
    std::size_t count = 0;
    for (auto it = outq_.begin(); it != outq_.end() && count < wbufs_.size(); ++it)
        wbufs_[count++] = asio::buffer(it->data(), it->size());
    writing_ = true;
    sock_.async_write_some(
        std::span<const asio::const_buffer>{wbufs_.data(), count},
        asio::bind_executor(get_executor(),
                            [self = std::static_pointer_cast<socket_pipe>(shared_from_this())](
                                error_code ec, std::size_t n) { self->on_written(ec, n); }));
}

void socket_pipe::on_written(const error_code& ec, std::size_t n)
{
    writing_ = false;
    if (finished()) return;
    if (ec) {
        if (ec != errc::operation_aborted) fail(ec, "write");
        return;
    }
    std::size_t left = n;
    while (left && !outq_.empty()) {
        auto& front = outq_.front();
        const std::size_t take = std::min(left, front.size());
        front.consume(take);
        left -= take;
        if (front.empty()) outq_.pop_front();
    }
    outbound_written(n);
    if (finished()) return;
    flush();
}

void socket_pipe::on_write_fin()
{
    if (outq_.empty() && !writing_) maybe_shutdown();
}

void socket_pipe::maybe_shutdown()
{
    if (shut_ || !fin_requested() || !connected_ || !outq_.empty() || writing_) return;
    shut_ = true;
    error_code ec;
    sock_.shutdown(socket_type::shutdown_send, ec);
    outbound_fin_done();
}

// ------------------------------------------------------------------ teardown

void socket_pipe::on_abort(mg_close_reason, std::string_view)
{
    // An abort is a reset: linger 0 makes close() send RST, so the remote
    // sees the difference between "done" (FIN) and "aborted".
    error_code ec;
    if (sock_.is_open()) {
        sock_.set_option(asio::socket_base::linger{true, 0}, ec);
        sock_.close(ec);
    }
}

void socket_pipe::on_finish()
{
    error_code ec;
    if (connect_timer_) connect_timer_->cancel();
    if (sock_.is_open()) sock_.close(ec);
    outq_.clear();
}

void socket_pipe::fail(const error_code& ec, std::string_view what)
{
    const bool reset = ec == errc::connection_reset || ec == errc::broken_pipe;
    std::string m = fmt::format("{} failed: {}", what, ec.message());
    if (reset) {
        // The remote reset us; make sure the other direction's remote learns
        // it as a reset too.
        error_code ignored;
        sock_.set_option(asio::socket_base::linger{true, 0}, ignored);
    }
    remote_abort(reset ? MG_CLOSE_RESET : MG_CLOSE_ERROR, std::move(m));
}

}  // namespace muxgate::net
