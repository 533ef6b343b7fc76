#include "mux/engine.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

namespace muxgate::mux {

namespace msg = wire::msg;

std::string_view describe(close_code c) noexcept
{
    switch (c) {
    case close_code::normal: return "normal";
    case close_code::going_away: return "going_away";
    case close_code::protocol_error: return "protocol_error";
    case close_code::unsupported_data: return "unsupported_data";
    case close_code::policy: return "policy_violation";
    case close_code::too_big: return "message_too_big";
    case close_code::internal: return "internal_error";
    case close_code::auth_timeout: return "auth_timeout";
    case close_code::auth_failed: return "auth_failed";
    case close_code::replaced: return "replaced";
    case close_code::heartbeat_timeout: return "heartbeat_timeout";
    case close_code::version: return "version";
    case close_code::limit: return "limit";
    }
    return "unknown";
}

std::optional<fatal> engine::on_message(std::span<const std::uint8_t> message)
{
    wire::frame_decoder dec{message, {limits_.max_frame_payload, limits_.max_control}};
    wire::frame f;
    while (dec.next(f)) {
        std::optional<fatal> err;
        if (f.protocol == wire::control_protocol)
            err = on_control(f.payload);
        else
            err = on_data_frame(f);
        if (err) return err;
    }
    if (dec.error() != wire::frame_errc::ok) {
        const auto code = dec.error() == wire::frame_errc::payload_too_large ||
                                  dec.error() == wire::frame_errc::control_too_large
                              ? close_code::too_big
                              : close_code::protocol_error;
        return fatal{code, dec.error_text()};
    }
    return std::nullopt;
}

std::optional<fatal> engine::on_control(std::span<const std::uint8_t> payload)
{
    auto parsed = wire::parse_control(
        std::string_view{reinterpret_cast<const char*>(payload.data()), payload.size()});
    if (!parsed.ok) {
        if (parsed.unknown_type && established_) {
            handler_.on_ignored(parsed.error);
            return std::nullopt;
        }
        return fatal{close_code::protocol_error, std::move(parsed.error)};
    }
    auto& m = parsed.message;
    const auto type = wire::type_name(m);

    if (!established_) {
        const bool expected = role_ == role::gateway
                                  ? std::holds_alternative<msg::auth>(m)
                                  : (std::holds_alternative<msg::auth_ok>(m) ||
                                     std::holds_alternative<msg::auth_error>(m) ||
                                     std::holds_alternative<msg::error>(m) ||
                                     std::holds_alternative<msg::goodbye>(m));
        if (!expected) {
            // A gateway refuses anything but Auth as policy; an agent that
            // hears something else from a gateway faces a broken peer.
            return fatal{role_ == role::gateway ? close_code::policy : close_code::protocol_error,
                         fmt::format("{} before authentication (expected {})", type,
                                     role_ == role::gateway ? "Auth" : "AuthOk")};
        }
        handler_.on_session_message(std::move(m));
        return std::nullopt;
    }

    // Which side may send what, after authentication.
    const bool from_agent_only = std::holds_alternative<msg::heartbeat_ack>(m) ||
                                 std::holds_alternative<msg::register_tunnel>(m) ||
                                 std::holds_alternative<msg::unregister>(m) ||
                                 std::holds_alternative<msg::opened>(m) ||
                                 std::holds_alternative<msg::refused>(m);
    const bool from_gateway_only = std::holds_alternative<msg::heartbeat>(m) ||
                                   std::holds_alternative<msg::registered>(m) ||
                                   std::holds_alternative<msg::register_error>(m) ||
                                   std::holds_alternative<msg::open>(m);
    const bool auth_phase_only = std::holds_alternative<msg::auth>(m) ||
                                 std::holds_alternative<msg::auth_ok>(m) ||
                                 std::holds_alternative<msg::auth_error>(m);
    if (auth_phase_only || (role_ == role::gateway && from_gateway_only) ||
        (role_ == role::agent && from_agent_only)) {
        return fatal{close_code::protocol_error,
                     fmt::format("unexpected {} from the {}", type,
                                 role_ == role::gateway ? "agent" : "gateway")};
    }

    if (std::holds_alternative<msg::open>(m) || std::holds_alternative<msg::opened>(m) ||
        std::holds_alternative<msg::refused>(m) || std::holds_alternative<msg::fin>(m) ||
        std::holds_alternative<msg::reset>(m) || std::holds_alternative<msg::window>(m) ||
        std::holds_alternative<msg::blocked>(m))
        return on_stream_message(std::move(m));

    handler_.on_session_message(std::move(m));
    return std::nullopt;
}

bool engine::seen(std::uint32_t id) const noexcept
{
    // Stream ids only grow, so an id at or below the highest one opened is a
    // stream that existed; frames for it after it closed are late, not wrong.
    if (role_ == role::gateway) return wire::is_gateway_stream(id) && id < next_id_;
    return wire::is_gateway_stream(id) && id <= highest_peer_id_;
}

std::optional<fatal> engine::unknown_stream(std::uint32_t id, std::string_view what) const
{
    if (seen(id)) return std::nullopt;  // late frame for a closed stream: ignore
    return fatal{close_code::protocol_error,
                 fmt::format("{} for stream {} that was never opened", what, id)};
}

std::optional<fatal> engine::on_data_frame(const wire::frame& f)
{
    if (!established_)
        return fatal{role_ == role::gateway ? close_code::policy : close_code::protocol_error,
                     "stream data before authentication"};
    auto it = streams_.find(f.stream);
    if (it == streams_.end()) return unknown_stream(f.stream, "data");
    auto& s = it->second;
    if (s.protocol != f.protocol) {
        stream_error(f.stream, "protocol_mismatch",
                     fmt::format("data frame with protocol_id {} on a stream of protocol_id {}",
                                 f.protocol, s.protocol));
        return std::nullopt;
    }
    if (role_ == role::gateway && !s.confirmed) {
        stream_error(f.stream, "protocol_error", "data before Opened");
        return std::nullopt;
    }
    if (s.fin_in) {
        stream_error(f.stream, "stream_closed", "data after Fin");
        return std::nullopt;
    }
    if (f.data.size() > s.recv_credit) {
        stream_error(f.stream, "flow_control",
                     fmt::format("{} bytes sent with {} bytes of credit", f.data.size(),
                                 s.recv_credit));
        return std::nullopt;
    }
    if (f.data.empty()) return std::nullopt;
    s.recv_credit -= static_cast<std::uint32_t>(f.data.size());
    // The peer is (nearly) out of credit: the window may be what limits it.
    if (s.recv_credit < std::max<std::uint32_t>(1, s.window / 4)) s.starved = true;
    handler_.on_data(f.stream, f.data);
    return std::nullopt;
}

std::optional<fatal> engine::on_stream_message(wire::control_message&& m)
{
    if (auto* o = std::get_if<msg::open>(&m)) {
        // Agent side (the role check already happened).
        if (!wire::is_gateway_stream(o->stream) || o->stream <= highest_peer_id_)
            return fatal{close_code::protocol_error,
                         fmt::format("Open for stream {}: ids must be odd and increasing "
                                     "(highest so far {})",
                                     o->stream, highest_peer_id_)};
        highest_peer_id_ = o->stream;
        if (streams_.size() >= limits_.max_streams) {
            handler_.send_control(msg::refused{
                o->stream, "limit",
                fmt::format("agent at max_streams ({})", limits_.max_streams)});
            return std::nullopt;
        }
        auto& s = streams_[o->stream];
        s.protocol = static_cast<std::uint8_t>(o->protocol_id);
        s.send_credit = peer_window_;
        s.recv_credit = limits_.recv_window;
        s.window = limits_.recv_window;
        ++pending_;
        handler_.on_open(std::move(*o));
        return std::nullopt;
    }
    if (auto* o = std::get_if<msg::opened>(&m)) {
        auto it = streams_.find(o->stream);
        if (it == streams_.end()) return unknown_stream(o->stream, "Opened");
        if (it->second.confirmed) {
            stream_error(o->stream, "protocol_error", "second Opened");
            return std::nullopt;
        }
        it->second.confirmed = true;
        --pending_;
        handler_.on_opened(o->stream);
        return std::nullopt;
    }
    if (auto* r = std::get_if<msg::refused>(&m)) {
        auto it = streams_.find(r->stream);
        if (it == streams_.end()) return unknown_stream(r->stream, "Refused");
        if (it->second.confirmed) {
            stream_error(r->stream, "protocol_error", "Refused after Opened");
            return std::nullopt;
        }
        erase(r->stream);
        handler_.on_reset(r->stream, end_reason::refused, r->code, r->message);
        return std::nullopt;
    }
    if (auto* f = std::get_if<msg::fin>(&m)) {
        auto it = streams_.find(f->stream);
        if (it == streams_.end()) return unknown_stream(f->stream, "Fin");
        auto& s = it->second;
        if (role_ == role::gateway && !s.confirmed) {
            stream_error(f->stream, "protocol_error", "Fin before Opened");
            return std::nullopt;
        }
        if (s.fin_in) {
            stream_error(f->stream, "protocol_error", "second Fin");
            return std::nullopt;
        }
        s.fin_in = true;
        const bool done = s.fin_out;
        if (done) erase(f->stream);
        handler_.on_fin(f->stream);
        return std::nullopt;
    }
    if (auto* r = std::get_if<msg::reset>(&m)) {
        if (!has(r->stream)) return unknown_stream(r->stream, "Reset");
        erase(r->stream);
        handler_.on_reset(r->stream, end_reason::reset_by_peer, r->code, r->message);
        return std::nullopt;
    }
    if (auto* w = std::get_if<msg::window>(&m)) {
        auto it = streams_.find(w->stream);
        if (it == streams_.end()) return unknown_stream(w->stream, "Window");
        auto& s = it->second;
        const bool was_blocked = s.send_credit <= 0;
        s.send_credit += w->credit;
        if (s.send_credit > max_credit) {
            stream_error(w->stream, "flow_control",
                         fmt::format("Window pushes credit to {} (max {})", s.send_credit,
                                     max_credit));
            return std::nullopt;
        }
        s.blocked_sent = false;
        if (was_blocked && s.send_credit > 0) handler_.on_credit(w->stream);
        return std::nullopt;
    }
    if (auto* b = std::get_if<msg::blocked>(&m)) {
        auto it = streams_.find(b->stream);
        if (it == streams_.end()) return unknown_stream(b->stream, "Blocked");
        // The peer waits for credit: the window may grow at the next return.
        it->second.starved = true;
        return std::nullopt;
    }
    return std::nullopt;
}

void engine::establish(std::uint32_t peer_window, std::uint32_t peer_max_frame)
{
    established_ = true;
    // A window is at most max_credit: larger announcements are read as that,
    // so the first Window returning credit cannot overflow the stream.
    peer_window_ = static_cast<std::uint32_t>(std::min<std::int64_t>(peer_window, max_credit));
    peer_max_frame_ = peer_max_frame;
}

std::uint32_t engine::open(std::uint8_t protocol)
{
    if (role_ != role::gateway || !established_) {
        open_refusal_ = "session not established";
        return 0;
    }
    if (next_id_ > last_gateway_id) {
        open_refusal_ = "stream ids exhausted on this connection";
        return 0;
    }
    if (streams_.size() >= limits_.max_streams) {
        open_refusal_ = fmt::format("max_streams_per_agent ({}) reached", limits_.max_streams);
        return 0;
    }
    if (pending_ >= limits_.max_pending_opens) {
        open_refusal_ = fmt::format("max_pending_opens ({}) reached", limits_.max_pending_opens);
        return 0;
    }
    const auto id = static_cast<std::uint32_t>(next_id_);
    next_id_ += 2;
    auto& s = streams_[id];
    s.protocol = protocol;
    s.send_credit = peer_window_;
    s.recv_credit = limits_.recv_window;
    s.window = limits_.recv_window;
    ++pending_;
    return id;
}

bool engine::confirm(std::uint32_t stream)
{
    auto it = streams_.find(stream);
    if (it == streams_.end() || it->second.confirmed || role_ != role::agent) return false;
    it->second.confirmed = true;
    --pending_;
    handler_.send_control(msg::opened{stream});
    return true;
}

void engine::refuse(std::uint32_t stream, std::string_view code, std::string_view message)
{
    auto it = streams_.find(stream);
    if (it == streams_.end()) return;
    if (it->second.confirmed) {
        reset(stream, code, message);
        return;
    }
    erase(stream);
    handler_.send_control(msg::refused{stream, std::string{code}, std::string{message}});
}

std::int64_t engine::send_credit(std::uint32_t stream) const noexcept
{
    auto it = streams_.find(stream);
    return it == streams_.end() ? 0 : std::max<std::int64_t>(0, it->second.send_credit);
}

void engine::consume_credit(std::uint32_t stream, std::uint32_t n) noexcept
{
    auto it = streams_.find(stream);
    if (it != streams_.end()) it->second.send_credit -= n;
}

bool engine::can_send(std::uint32_t stream) const noexcept
{
    auto it = streams_.find(stream);
    if (it == streams_.end() || it->second.fin_out) return false;
    return role_ == role::gateway || it->second.confirmed;
}

std::uint8_t engine::protocol_of(std::uint32_t stream) const noexcept
{
    auto it = streams_.find(stream);
    return it == streams_.end() ? 0 : it->second.protocol;
}

void engine::consumed(std::uint32_t stream, std::uint32_t n, bool keeping_up)
{
    auto it = streams_.find(stream);
    if (it == streams_.end() || it->second.fin_in) return;
    auto& s = it->second;
    s.recv_pending += n;
    // Return credit in quarter-window steps: few Window messages for bulk
    // transfers, and the peer never waits for a full window round trip.
    const std::uint32_t threshold = std::max<std::uint32_t>(1, s.window / 4);
    if (s.recv_pending < threshold) return;
    std::uint32_t credit = s.recv_pending;
    s.recv_pending = 0;
    // Autotuning. The peer ran (nearly) out of credit since the last return
    // while our side keeps writing out what it gets: the bytes in flight
    // fill the window, so the window, not a reader, limits this stream.
    // Double it.
    const bool starved = std::exchange(s.starved, false);
    if (keeping_up && starved && s.window < limits_.max_recv_window &&
        growth_ < limits_.window_growth_budget) {
        const std::uint64_t grow = std::min<std::uint64_t>(
            {s.window, limits_.max_recv_window - s.window, limits_.window_growth_budget - growth_});
        s.window += static_cast<std::uint32_t>(grow);
        growth_ += grow;
        credit += static_cast<std::uint32_t>(grow);
    }
    s.recv_credit += credit;
    handler_.send_control(msg::window{stream, credit});
}

void engine::blocked(std::uint32_t stream)
{
    auto it = streams_.find(stream);
    if (it == streams_.end() || it->second.blocked_sent || it->second.send_credit > 0) return;
    it->second.blocked_sent = true;
    handler_.send_control(msg::blocked{stream});
}

std::uint32_t engine::recv_window(std::uint32_t stream) const noexcept
{
    auto it = streams_.find(stream);
    return it == streams_.end() ? 0 : it->second.window;
}

void engine::fin_sent(std::uint32_t stream)
{
    auto it = streams_.find(stream);
    if (it == streams_.end()) return;
    it->second.fin_out = true;
    if (it->second.fin_in) erase(stream);
}

void engine::reset(std::uint32_t stream, std::string_view code, std::string_view message)
{
    if (!has(stream)) return;
    erase(stream);
    handler_.send_control(msg::reset{stream, std::string{code}, std::string{message}});
}

void engine::stream_error(std::uint32_t id, std::string_view code, std::string message)
{
    erase(id);
    handler_.send_control(msg::reset{id, std::string{code}, message});
    handler_.on_reset(id, end_reason::stream_error, code, message);
}

void engine::erase(std::uint32_t id) noexcept
{
    auto it = streams_.find(id);
    if (it == streams_.end()) return;
    if (!it->second.confirmed) --pending_;
    if (it->second.window > limits_.recv_window) growth_ -= it->second.window - limits_.recv_window;
    streams_.erase(it);
}

}  // namespace muxgate::mux
