// The multiplexer's protocol state, without I/O.
//
// One engine per agent connection, on either side. It is fed whole WebSocket
// messages (on_message) and local decisions (open, confirm, consume, reset),
// and it tells its handler what happened: stream events to deliver and control
// messages to send. It enforces every rule of docs/protocol.md that can be
// checked from the bytes alone: session phases, stream id allocation, credit
// windows, half-close and reset. The I/O layer (net/session) owns sockets,
// timers and the single WebSocket writer.
//
// Nothing here throws on what the network sends: a violation is either a
// stream error (the stream is reset, others go on) or a session error
// returned as `fatal` (the connection is closed with that code and reason).
#pragma once

#include "wire/control.hpp"
#include "wire/frame.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

namespace muxgate::mux {

enum class role { gateway, agent };

// WebSocket close codes used by muxgate (docs/protocol.md, "Close codes").
enum class close_code : std::uint16_t {
    normal = 1000,
    going_away = 1001,        // drain / shutdown
    protocol_error = 1002,
    unsupported_data = 1003,  // a text message
    policy = 1008,
    too_big = 1009,           // message larger than max_message
    internal = 1011,
    auth_timeout = 4001,
    auth_failed = 4002,
    replaced = 4003,          // a newer session of the same agent took over
    heartbeat_timeout = 4004,
    version = 4005,           // unsupported protocol version
    limit = 4007,             // a configured limit was exceeded
};

struct fatal {
    close_code code;
    std::string reason;
};

// Why a stream ended, as seen by the local side.
enum class end_reason {
    reset_by_peer,    // peer sent Reset
    refused,          // peer sent Refused (gateway only)
    stream_error,     // peer broke a stream rule; we reset it
};

struct limits {
    std::uint32_t max_frame_payload = 1u << 20;  // largest frame payload we accept
    std::uint32_t max_control = 64u << 10;       // largest control payload we accept
    std::uint32_t max_streams = 4096;            // concurrent streams on this connection
    std::uint32_t max_pending_opens = 1024;      // gateway: Opens not yet answered
    std::uint32_t recv_window = 256u << 10;      // our initial receive window per stream
    // Window autotuning: a stream whose sender runs out of credit while its
    // local reader keeps up gets its window doubled, up to max_recv_window,
    // as long as the growth summed over all streams stays within
    // window_growth_budget. max_recv_window <= recv_window turns it off.
    std::uint32_t max_recv_window = 4u << 20;
    std::uint64_t window_growth_budget = 64u << 20;
};

// The most credit a stream may hold (as in HTTP/2): a Window that would push
// the send credit above this is a flow-control error.
inline constexpr std::int64_t max_credit = 0x7fffffff;

class handler {
public:
    virtual ~handler() = default;
    // Messages that are not about one stream (Auth, Heartbeat, Register, ...),
    // already checked against the session phase and the role.
    virtual void on_session_message(wire::control_message&& m) = 0;
    // Agent: the gateway opened a stream. Answer with confirm() or refuse().
    virtual void on_open(wire::msg::open&& m) = 0;
    // Gateway: the agent confirmed a stream.
    virtual void on_opened(std::uint32_t stream) = 0;
    virtual void on_data(std::uint32_t stream, std::span<const std::uint8_t> data) = 0;
    // The peer will send no more data on this stream.
    virtual void on_fin(std::uint32_t stream) = 0;
    // The stream is gone (already erased from the engine).
    virtual void on_reset(std::uint32_t stream, end_reason why, std::string_view code,
                          std::string_view message) = 0;
    // Send credit went from zero to positive.
    virtual void on_credit(std::uint32_t stream) = 0;
    // The engine wants this sent (Window, Reset, Refused). Control messages
    // may overtake queued data, which is correct for all three.
    virtual void send_control(wire::control_message&& m) = 0;
    // A well-formed message of a type this version does not know; ignored.
    virtual void on_ignored(std::string_view what) = 0;
};

class engine {
public:
    engine(role r, limits l, handler& h) : role_(r), limits_(l), handler_(h) {}

    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    role side() const noexcept { return role_; }
    const limits& local_limits() const noexcept { return limits_; }

    // Feed one binary WebSocket message. Stops at the first session error.
    std::optional<fatal> on_message(std::span<const std::uint8_t> message);

    // Authentication finished (gateway: Auth accepted; agent: AuthOk seen).
    // peer_window: initial credit per stream toward the peer; peer_max_frame:
    // largest frame payload the peer accepts.
    void establish(std::uint32_t peer_window, std::uint32_t peer_max_frame);
    bool established() const noexcept { return established_; }
    std::uint32_t peer_max_frame() const noexcept { return peer_max_frame_; }
    std::uint32_t peer_window() const noexcept { return peer_window_; }

    // Gateway: allocate a stream. Returns 0 if a limit is reached (see
    // open_refusal()) or ids are exhausted (reconnect needed).
    std::uint32_t open(std::uint8_t protocol);
    std::string_view open_refusal() const noexcept { return open_refusal_; }
    bool ids_exhausted() const noexcept { return next_id_ > last_gateway_id; }

    // Agent: answer an Open.
    bool confirm(std::uint32_t stream);
    void refuse(std::uint32_t stream, std::string_view code, std::string_view message);

    // Sending side: how much data may go out now, and record that it did.
    std::int64_t send_credit(std::uint32_t stream) const noexcept;
    void consume_credit(std::uint32_t stream, std::uint32_t n) noexcept;
    // The stream has data queued and no send credit: tell the peer once
    // (Blocked) until its next Window, so it may grow the window.
    void blocked(std::uint32_t stream);
    // Whether this side may send data on the stream at all (confirmed on the
    // agent side, not finished).
    bool can_send(std::uint32_t stream) const noexcept;

    // Receiving side: `n` bytes delivered earlier were written to the local
    // socket; return credit to the peer when enough has accumulated.
    // `keeping_up`: the local side has (almost) nothing of this stream left
    // to write, so a sender that ran out of credit since the last return was
    // held back by the window, which may then grow (limits::max_recv_window).
    void consumed(std::uint32_t stream, std::uint32_t n, bool keeping_up = false);
    // The current receive window of a stream (0 if unknown), and the growth
    // granted beyond recv_window over all streams.
    std::uint32_t recv_window(std::uint32_t stream) const noexcept;
    std::uint64_t window_growth() const noexcept { return growth_; }

    // Our Fin for the stream was put on the wire (after all its data).
    void fin_sent(std::uint32_t stream);
    // Abort a stream from this side (sends Reset).
    void reset(std::uint32_t stream, std::string_view code, std::string_view message);
    // Forget a stream without telling the peer (the connection is closing).
    void forget(std::uint32_t stream) noexcept { erase(stream); }

    bool has(std::uint32_t stream) const noexcept { return streams_.count(stream) != 0; }
    std::size_t stream_count() const noexcept { return streams_.size(); }
    std::size_t pending_opens() const noexcept { return pending_; }
    std::uint8_t protocol_of(std::uint32_t stream) const noexcept;

    static constexpr std::uint64_t last_gateway_id = 0xffffffffu;  // largest odd u32

private:
    struct stream_state {
        std::uint8_t protocol = 0;
        bool confirmed = false;  // Opened exchanged
        bool fin_in = false;     // peer's Fin received
        bool fin_out = false;    // our Fin sent
        std::int64_t send_credit = 0;
        std::uint32_t recv_credit = 0;   // what the peer may still send
        std::uint32_t recv_pending = 0;  // consumed, not yet returned as credit
        std::uint32_t window = 0;        // current receive window (autotuned)
        bool starved = false;            // the peer neared zero credit since the last return
        bool blocked_sent = false;       // we sent Blocked; no Window since
    };

    std::optional<fatal> on_control(std::span<const std::uint8_t> payload);
    std::optional<fatal> on_data_frame(const wire::frame& f);
    std::optional<fatal> on_stream_message(wire::control_message&& m);
    std::optional<fatal> unknown_stream(std::uint32_t id, std::string_view what) const;
    void stream_error(std::uint32_t id, std::string_view code, std::string message);
    void erase(std::uint32_t id) noexcept;
    bool seen(std::uint32_t id) const noexcept;

    role role_;
    limits limits_;
    handler& handler_;
    bool established_ = false;
    std::uint32_t peer_window_ = 0;
    std::uint32_t peer_max_frame_ = 0;
    std::uint64_t next_id_ = 1;         // gateway: next stream id to allocate
    std::uint32_t highest_peer_id_ = 0; // agent: highest id the gateway opened
    std::size_t pending_ = 0;           // unconfirmed streams
    std::uint64_t growth_ = 0;          // sum of (window - recv_window) over streams
    std::string open_refusal_;
    std::unordered_map<std::uint32_t, stream_state> streams_;
};

// The close code's name, also used as the code of the Error message sent
// before closing: "protocol_error", "policy_violation", ...
std::string_view describe(close_code c) noexcept;

}  // namespace muxgate::mux
