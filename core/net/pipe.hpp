// Pipes: the host's byte endpoints (public connections, local connections,
// tunnel streams) and the relay between them.
//
// A pipe has a remote (the socket's peer, or the other end of a tunnel
// stream) and a consumer for what the remote sends: either a linked peer pipe
// (the fast relay, no plugin involved) or a plugin binding (events). Every
// pipe lives on one strand; its state is touched only there.
//
// Flow control, end to end:
//  - a pipe delivers inbound bytes to its consumer and counts them as
//    unconsumed until the consumer reports them written (consumed());
//  - a socket pipe stops reading at high_watermark unconsumed bytes and
//    resumes at low_watermark ("the downstream peer is the boss");
//  - a stream pipe cannot stop its remote, but the peer may only send within
//    the credit window, and credit is returned only on consumed();
// so a slow reader stalls only its own pipe pair and memory is bounded by the
// watermarks and windows, not by traffic.
//
// Half-close: remote FIN -> consumer.write_fin() after all data; reset is
// separate and aborts both directions of both pipes.
#pragma once

#include "net/buffer.hpp"

#include <muxgate/plugin.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace muxgate::net {

namespace asio = boost::asio;

using strand_type = asio::strand<asio::io_context::executor_type>;
using clock = std::chrono::steady_clock;

struct pipe_limits {
    // Unconsumed inbound bytes at which a socket pipe stops reading, and at
    // which write() answers MG_AGAIN; reading resumes at the low mark.
    std::size_t high_watermark = 256 * 1024;
    std::size_t low_watermark = 128 * 1024;
};

// How long a gracefully closed pipe waits for the remote's FIN before
// aborting, so a peer that never closes cannot pin a socket.
inline constexpr std::chrono::seconds close_linger{5};

struct close_record {
    mg_close_reason reason = MG_CLOSE_DONE;
    std::string message;
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::uint64_t duration_us = 0;
};

// Receives a pipe's events when a plugin (not a peer pipe) consumes it.
// Calls arrive on the pipe's event strand, in order.
class pipe_events {
public:
    virtual ~pipe_events() = default;
    virtual void on_data(mg_handle, void* user, std::span<const std::uint8_t> data) = 0;
    virtual void on_fin(mg_handle, void* user) = 0;
    virtual void on_writable(mg_handle, void* user) = 0;
    virtual void on_open(mg_handle, void* user) = 0;
    virtual void on_closed(mg_handle, void* user, const close_record&) = 0;
};

class pipe : public std::enable_shared_from_this<pipe> {
public:
    pipe(mg_pipe_kind kind, strand_type ex, pipe_limits limits);
    virtual ~pipe();
    pipe(const pipe&) = delete;
    pipe& operator=(const pipe&) = delete;

    mg_pipe_kind kind() const noexcept { return kind_; }
    const strand_type& get_executor() const noexcept { return ex_; }
    mg_handle handle() const noexcept { return handle_.load(std::memory_order_relaxed); }
    bool finished() const noexcept { return finished_.load(std::memory_order_relaxed); }
    bool opened() const noexcept { return opened_; }

    // Runs f(*this) on the pipe's strand, in the order of the calls, from
    // any thread: at once when the caller is on the strand and no earlier
    // call is still waiting there (a plugin acting inside an event sees the
    // effect at once), else posted behind the waiting ones. Without the
    // second condition, a call made on the pipe's strand would overtake
    // calls another strand posted before it: a request head written from a
    // stream's event ahead of the earlier requests written from the client's.
    template <class F>
    void in_order(F&& f)
    {
        if (runs_in_order_now()) {
            f(*this);
            return;
        }
        waiting_calls_.fetch_add(1, std::memory_order_relaxed);
        asio::post(ex_, [self = shared_from_this(), fn = std::forward<F>(f)]() mutable {
            self->waiting_calls_.fetch_sub(1, std::memory_order_relaxed);
            fn(*self);
        });
    }
    // Would in_order() run a call made now at once?
    bool runs_in_order_now() const noexcept
    {
        return ex_.running_in_this_thread() && waiting_calls_.load(std::memory_order_relaxed) == 0;
    }

    // Facts for logs, audits and mg_pipe_info; set before the pipe is shared.
    std::string peer_address;
    // The local socket address, computed on first use (a getsockname() per
    // connection is wasted when nobody asks); any thread.
    const std::string& local_address();
    std::string agent;
    std::string tunnel;
    std::string sni;
    bool tls = false;
    std::uint32_t stream_id = 0;

    // ---- outbound: toward this pipe's remote (call on the strand) ----
    void write(chunk c);
    void write_copy(std::span<const std::uint8_t> bytes);
    // write() for bytes whose size the caller already added to
    // outbound_bytes() (cross-thread writes reserve before posting).
    void write_reserved(chunk c);
    void reserve_outbound(std::size_t n) noexcept { add_outbound(n); }
    void write_fin();
    // Abort both directions and tell the remote (RST / Reset).
    void abort(mg_close_reason why, std::string message);
    // Graceful: flush, FIN, discard further input, abort after close_linger.
    void close();
    // Bytes accepted toward the remote and not yet written; readable from any
    // thread (used for write()'s MG_AGAIN answer).
    std::size_t outbound_bytes() const noexcept { return out_bytes_.load(std::memory_order_relaxed); }

    // ---- inbound control ----
    void set_reading(bool enabled);
    // The consumer wrote `n` of the bytes we delivered.
    void consumed(std::size_t n);

    // ---- wiring ----
    // Pipes sharing a `group` never have events running at the same time
    // (the owner rule of the ABI); none given: a group of its own. Set once,
    // before bind() and before the handle is published: other threads read
    // it through event_group() (open_stream / timer_add with this pipe as
    // owner), the strand only once bound.
    void set_group(std::shared_ptr<std::recursive_mutex> group)
    {
        group_ = group ? std::move(group) : std::make_shared<std::recursive_mutex>();
    }
    const std::shared_ptr<std::recursive_mutex>& event_group() const noexcept { return group_; }
    // Events of this pipe go to `events` with `user`, under the group's
    // lock. Call on the strand, or before the pipe has any I/O: finish() and
    // the event paths read these fields there.
    void bind(std::shared_ptr<pipe_events> events, void* user);
    void set_user(void* user) { user_ = user; }
    void set_handle(mg_handle h) noexcept { handle_.store(h, std::memory_order_relaxed); }
    // on_open, or on_closed, for a pipe that opened, or ended (a refused
    // stream, a failed connect), before it was bound: open_stream and connect
    // bind the new pipe only after the Open is on its way, from whichever
    // thread the plugin called them, so the peer's answer can come first.
    // Call on the strand after bind().
    void replay_open();
    // Ask for on_writable once outbound_bytes() falls to the low watermark
    // (fires at once if it already has).
    void request_writable();
    const pipe_limits& limits() const noexcept { return limits_; }
    // Relay two pipes to each other. Either may be on another strand.
    static bool link(const std::shared_ptr<pipe>& a, const std::shared_ptr<pipe>& b);
    bool linked() const noexcept { return peer_ != nullptr; }

    // Activity time for idle sweeps (any thread).
    clock::time_point last_activity() const noexcept
    {
        return clock::time_point{clock::duration{last_activity_.load(std::memory_order_relaxed)}};
    }
    clock::time_point created() const noexcept { return created_; }
    std::uint64_t bytes_in() const noexcept { return bytes_in_; }
    std::uint64_t bytes_out() const noexcept { return bytes_out_; }

    // Start I/O (socket pipes arm reading). Called once the pipe is wired.
    virtual void start() {}
    // What local_address() reports (empty for streams).
    virtual std::string describe_local() { return {}; }

protected:
    // ---- hooks for the concrete pipe ----
    virtual void on_write(chunk&& c) = 0;   // queue toward the remote
    virtual void on_write_fin() = 0;        // after everything queued
    virtual void on_abort(mg_close_reason why, std::string_view message) = 0;  // tell the remote, stop I/O
    virtual void on_finish() = 0;           // release resources
    virtual void on_read_interest() = 0;    // the consumer can take more
    // `n` delivered bytes were consumed (streams return credit here);
    // `keeping_up`: little or nothing delivered is still waiting to be written.
    virtual void on_consumed(std::size_t /*n*/, bool /*keeping_up*/) {}
    // Queue bytes that live only for this call (default: copy into a chunk).
    virtual void on_write_copy(std::span<const std::uint8_t> bytes) { on_write(chunk::copy_of(bytes)); }
    // The linked peer became established (an agent stream confirms here).
    virtual void on_peer_open() {}

    // ---- for the concrete pipe ----
    // May inbound bytes be handed to the consumer now?
    bool may_deliver() const noexcept;
    void deliver(chunk&& c);
    void deliver_copy(std::span<const std::uint8_t> bytes);
    void deliver_fin();
    // The remote went away (RST, stream reset, refused) or I/O failed.
    void remote_abort(mg_close_reason why, std::string message);
    // `n` queued outbound bytes reached the remote.
    void outbound_written(std::size_t n);
    // Our FIN reached the remote.
    void outbound_fin_done();
    // The pipe is established (connected / stream confirmed).
    void mark_open();
    void touch() noexcept
    {
        last_activity_.store(clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    }
    void add_outbound(std::size_t n) noexcept { out_bytes_.fetch_add(n, std::memory_order_relaxed); }
    bool input_done() const noexcept { return in_done_; }
    bool output_done() const noexcept { return out_done_; }
    bool fin_requested() const noexcept { return fin_requested_; }
    bool discarding_input() const noexcept { return discard_input_; }

    const pipe_limits limits_;

private:
    void finish(mg_close_reason why, std::string message);
    std::shared_ptr<pipe> self_;  // while bound to a plugin and not finished
    void maybe_finish();
    void notify_peer_consumed(std::size_t n);
    template <class F>
    void emit(F&& f);
    template <class F>
    void on_peer(F&& f);

    const mg_pipe_kind kind_;
    strand_type ex_;
    // in_order() calls posted to the strand and not yet run. Callers that
    // must stay ordered are ordered among themselves (one thread, or the
    // event group's lock), which also orders their reads of this counter.
    std::atomic<std::uint32_t> waiting_calls_{0};
    // Set once by the registry, possibly off the strand (adopt_live).
    std::atomic<mg_handle> handle_{MG_HANDLE_NONE};
    const clock::time_point created_;
    std::atomic<clock::rep> last_activity_;
    std::atomic<std::size_t> out_bytes_{0};

    // consumer
    std::shared_ptr<pipe> peer_;
    bool peer_same_strand_ = true;
    std::shared_ptr<pipe_events> events_;
    void* user_ = nullptr;
    std::shared_ptr<std::recursive_mutex> group_;

    std::size_t unconsumed_ = 0;      // delivered, not yet consumed
    std::size_t pre_link_out_ = 0;    // outbound bytes queued before link (not the peer's)
    bool reading_enabled_ = true;
    bool want_writable_ = false;
    bool in_done_ = false;            // remote FIN delivered (or input discarded)
    bool out_done_ = false;           // our FIN reached the remote
    bool fin_requested_ = false;
    bool discard_input_ = false;
    bool opened_ = false;
    bool open_emitted_ = false;       // on_open reached a consumer
    std::unique_ptr<close_record> unreported_close_;  // finished before bind()
    std::atomic<bool> finished_{false};  // read from plugin threads (write())
    std::uint64_t bytes_in_ = 0;
    std::uint64_t bytes_out_ = 0;
    std::shared_ptr<asio::steady_timer> linger_;
    std::once_flag local_once_;
    std::string local_address_;
    mg_close_reason last_close_ = MG_CLOSE_DONE;
    std::string last_message_;
};

// The pipes a plugin can name by handle. Handles are unique for the process
// lifetime; lookups from any thread.
class pipe_registry {
public:
    static pipe_registry& instance();
    mg_handle add(const std::shared_ptr<pipe>& p);
    void remove(mg_handle h);
    std::shared_ptr<pipe> find(mg_handle h);
    std::size_t size();
    // Snapshot of live pipes (for idle sweeps and shutdown).
    std::vector<std::shared_ptr<pipe>> snapshot();

private:
    std::mutex mutex_;
    std::uint64_t next_ = 1;
    std::unordered_map<mg_handle, std::weak_ptr<pipe>> pipes_;
};

}  // namespace muxgate::net
