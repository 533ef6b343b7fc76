// One agent connection, on either side: the mux engine plus the I/O around
// it. Everything here runs on the session's strand.
//
//   reader    : WebSocket message -> engine -> stream pipes / delegate
//   writer    : the only WebSocket writer. Each message holds all pending
//               control frames, then data frames taken round-robin from the
//               streams that have credit, at most write_quantum bytes per
//               stream per turn, so a bulk stream cannot starve an
//               interactive one.
//   watchdog  : auth timeout, heartbeats, open and idle timeouts, drain.
#pragma once

#include "mux/engine.hpp"
#include "net/pipe.hpp"
#include "net/transport.hpp"
#include "wire/control.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace muxgate::net {

struct session_options {
    mux::limits limits;
    pipe_limits pipes;
    // Largest WebSocket message we write (never above the peer's max_message).
    std::uint32_t max_message_out = 256 * 1024;
    // Largest WebSocket message we accept.
    std::uint32_t max_message_in = 4 * 1024 * 1024;
    // Bytes one stream may put in a message before the writer moves on.
    std::uint32_t write_quantum = 64 * 1024;
    // Control bytes waiting to be written before the peer is considered not
    // to be reading (the session is closed).
    std::size_t max_control_backlog = 1024 * 1024;
    std::chrono::milliseconds auth_timeout{10'000};
    std::chrono::milliseconds heartbeat_interval{10'000};  // gateway: send period
    std::chrono::milliseconds heartbeat_timeout{30'000};   // silence that ends a session
    std::chrono::milliseconds open_timeout{10'000};        // gateway: Open unanswered
    std::chrono::seconds stream_idle_timeout{7200};        // 0 = never
    std::chrono::milliseconds close_timeout{5'000};        // close handshake bound
};

class session;

// A tunnel stream as a pipe.
class stream_pipe final : public pipe {
public:
    stream_pipe(std::shared_ptr<session> s, std::uint32_t id, std::uint8_t protocol);
    ~stream_pipe() override;
    std::uint32_t id() const noexcept { return stream_id; }
    std::uint8_t protocol() const noexcept { return protocol_; }
    void start() override { on_read_interest(); }

    // From the session (engine events).
    void on_remote_data(std::span<const std::uint8_t> data);
    void on_remote_fin();
    void on_remote_reset(mux::end_reason why, std::string_view code, std::string_view message);
    void on_remote_opened() { mark_open(); }
    // Agent: confirm now (plugin accept_stream, or the first write).
    void confirm();

private:
    friend class session;
    void on_write(chunk&& c) override;
    void on_write_fin() override;
    void on_abort(mg_close_reason why, std::string_view message) override;
    void on_finish() override;
    void on_read_interest() override;
    void on_consumed(std::size_t n, bool keeping_up) override;
    void on_peer_open() override;

    std::weak_ptr<session> session_;
    std::uint8_t protocol_;
    std::deque<chunk> outq_;     // toward the peer, waiting for the writer
    std::deque<chunk> inbox_;    // from the peer, waiting for a consumer
    bool inbox_fin_ = false;
    bool ready_ = false;         // in the writer's round-robin list
    bool fin_sent_ = false;
    bool confirmed_ = false;     // agent: Opened sent
};

class session_delegate {
public:
    virtual ~session_delegate() = default;
    // Non-stream control messages (Auth, Register, Registered, Goodbye, ...).
    // Heartbeat / HeartbeatAck are handled by the session itself.
    virtual void on_session_message(session&, wire::control_message&& m) = 0;
    // Agent: the gateway opened a stream (already in the session's table).
    virtual void on_stream(session&, const std::shared_ptr<stream_pipe>&, wire::msg::open&& m) = 0;
    // The connection is gone; every stream has been aborted.
    virtual void on_closed(session&, mux::close_code code, const std::string& reason) = 0;
};

class session : public std::enable_shared_from_this<session>, private mux::handler {
public:
    session(strand_type ex, std::shared_ptr<ws_transport> ws, mux::role role,
            session_options opts, std::string label);
    ~session() override;

    // The session keeps the delegate alive until it has closed.
    void start(std::shared_ptr<session_delegate> delegate);

    const strand_type& get_executor() const noexcept { return ex_; }
    mux::engine& engine() noexcept { return engine_; }
    const session_options& options() const noexcept { return opts_; }
    const std::string& label() const noexcept { return label_; }
    void set_label(std::string l) { label_ = std::move(l); }

    // Queue a session-level control message.
    void send(const wire::control_message& m);
    // Authentication finished: streams may open.
    void establish(std::uint32_t peer_window, std::uint32_t peer_max_frame,
                   std::uint32_t peer_max_message);
    // Close with a code; control frames already queued go out first. An
    // Error message explains the close first unless `explained` (an
    // AuthError already did).
    void close(mux::close_code code, std::string reason, bool explained = false);
    // Stop opening streams, tell the peer, close when streams are done or
    // after `grace`.
    void drain(std::chrono::milliseconds grace, std::string reason);
    bool closing() const noexcept { return closing_; }
    bool draining() const noexcept { return draining_; }

    // Gateway: open a stream; nullptr with `why` when a limit refuses it.
    // On the session's strand.
    std::shared_ptr<stream_pipe> open_stream(std::uint8_t protocol, const std::string& tunnel,
                                             const std::string& meta, const std::string& peer,
                                             std::string& why);
    // Gateway, from any thread: like open_stream, but off the strand the
    // stream is returned at once and opened there later (a refusal then
    // arrives as the pipe closing with MG_CLOSE_REFUSED). `agent` names the
    // stream's agent in its facts, set before the strand can see the pipe.
    std::shared_ptr<stream_pipe> new_stream(std::uint8_t protocol, std::string tunnel,
                                            std::string meta, std::string peer, std::string agent,
                                            std::string& why);
    std::size_t stream_count() const noexcept { return streams_.size(); }

    // Counters for logs and the benchmark.
    std::uint64_t messages_in = 0, messages_out = 0;

private:
    friend class stream_pipe;

    // mux::handler
    void on_session_message(wire::control_message&& m) override;
    void on_open(wire::msg::open&& m) override;
    void on_opened(std::uint32_t stream) override;
    void on_data(std::uint32_t stream, std::span<const std::uint8_t> data) override;
    void on_fin(std::uint32_t stream) override;
    void on_reset(std::uint32_t stream, mux::end_reason why, std::string_view code,
                  std::string_view message) override;
    void on_credit(std::uint32_t stream) override;
    void send_control(wire::control_message&& m) override;
    void on_ignored(std::string_view what) override;

    boost::asio::awaitable<void> reader();
    boost::asio::awaitable<void> writer();
    boost::asio::awaitable<void> watchdog();

    void append_control(const wire::control_message& m);
    void notify_writer();
    void stream_ready(stream_pipe& s);
    void build_message();
    void message_written();
    void trim();
    void remove_stream(std::uint32_t id);
    void attach_stream(const std::shared_ptr<stream_pipe>& s, const std::string& meta);
    void teardown(mux::close_code code, std::string reason);
    std::shared_ptr<stream_pipe> find(std::uint32_t id);

    strand_type ex_;
    std::shared_ptr<ws_transport> ws_;
    session_options opts_;
    mux::engine engine_;
    std::shared_ptr<session_delegate> delegate_;
    std::string label_;

    std::unordered_map<std::uint32_t, std::shared_ptr<stream_pipe>> streams_;
    std::deque<std::shared_ptr<stream_pipe>> ready_;

    // writer state
    boost::asio::steady_timer wake_;
    bool writer_waiting_ = false;
    bool writing_ = false;  // a message is being written (its buffers are in use)
    std::string ctrl_;           // control frames waiting, back to back
    std::deque<std::uint32_t> ctrl_sizes_;  // size of each frame in ctrl_
    std::string ctrl_inflight_;  // control frames in the message being written
    struct data_slice {
        std::shared_ptr<stream_pipe> stream;
        chunk data;              // holds the block while the write is in flight
        std::uint32_t bytes = 0;
        bool fin = false;
    };
    std::vector<data_slice> inflight_;
    std::vector<std::array<std::uint8_t, wire::data_header_size>> headers_;
    std::deque<std::string> fin_frames_;
    std::vector<boost::asio::const_buffer> seq_;
    std::uint32_t peer_max_message_ = 0;
    clock::time_point last_ack_;

    // lifecycle
    bool started_ = false;
    bool closing_ = false;
    bool closed_ = false;
    bool draining_ = false;
    mux::close_code close_code_ = mux::close_code::normal;
    std::string close_reason_;
    clock::time_point created_;
    clock::time_point last_rx_;
    clock::time_point drain_deadline_;
    std::uint64_t heartbeat_seq_ = 0;
    clock::time_point last_heartbeat_sent_;
    std::uint64_t ignored_ = 0;
};

}  // namespace muxgate::net
