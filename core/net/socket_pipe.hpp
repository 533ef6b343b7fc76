// A pipe over a stream socket: a public TCP connection, a local TCP target,
// or one end of a socketpair bridge.
//
// Reading waits for readiness first and only then takes a block from the
// pool, so an idle connection holds no buffer. Writing tries the socket at
// once and queues only what the kernel did not take.
#pragma once

#include "net/pipe.hpp"

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <chrono>
#include <deque>
#include <string>

namespace muxgate::net {

// A local connect that takes longer than this is refused.
inline constexpr std::chrono::seconds connect_timeout{10};

// Reads per readiness event before yielding to other connections on the
// strand, so one fast sender cannot monopolize it.
inline constexpr int max_reads_per_wakeup = 8;

// Buffers gathered into one writev.
inline constexpr std::size_t max_write_gather = 16;

class socket_pipe final : public pipe {
public:
    using socket_type = asio::generic::stream_protocol::socket;

    // An already connected socket: accepted (`peer` from accept, `tcp`) or
    // one end of a socketpair bridge (`tcp` false).
    socket_pipe(mg_pipe_kind kind, strand_type ex, pipe_limits limits, socket_type&& s,
                std::string peer, bool tcp);
    // A socket that connect() will open.
    socket_pipe(mg_pipe_kind kind, strand_type ex, pipe_limits limits);

    std::string describe_local() override;

    // Resolve and connect; writes queue until connected. Failure finishes the
    // pipe with MG_CLOSE_REFUSED.
    void connect(std::string host, std::uint16_t port);

    void start() override { on_read_interest(); }

private:
    void on_write(chunk&& c) override;
    void on_write_copy(std::span<const std::uint8_t> bytes) override;
    void on_write_fin() override;
    void on_abort(mg_close_reason why, std::string_view message) override;
    void on_finish() override;
    void on_read_interest() override;

    void on_connected();
    void try_endpoints(std::shared_ptr<std::vector<asio::ip::tcp::endpoint>> eps, std::size_t i,
                       std::string last_error);
    void on_readable(const boost::system::error_code& ec);
    void flush();
    void on_written(const boost::system::error_code& ec, std::size_t n);
    void maybe_shutdown();
    void fail(const boost::system::error_code& ec, std::string_view what);

    socket_type sock_;
    std::deque<chunk> outq_;
    std::array<asio::const_buffer, max_write_gather> wbufs_;  // the write in flight
    std::unique_ptr<asio::steady_timer> connect_timer_;
    std::string target_;  // host:port being connected to
    bool tcp_ = true;
    bool connected_ = false;
    bool read_armed_ = false;
    bool writing_ = false;
    bool shut_ = false;
};

}  // namespace muxgate::net
