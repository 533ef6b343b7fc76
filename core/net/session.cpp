#include "net/session.hpp"

#include "common/log.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <algorithm>

namespace muxgate::net {

namespace msg = wire::msg;
using boost::system::error_code;
using namespace std::chrono_literals;

namespace {

// A connection quiet this long gives back the buffers its last burst grew.
constexpr auto idle_trim_after = std::chrono::seconds{2};

// Frames in one WebSocket message; bounds the header arena and the iovec the
// message becomes.
constexpr std::size_t max_frames_per_message = 256;


std::string_view reset_code(mg_close_reason why)
{
    switch (why) {
    case MG_CLOSE_REFUSED: return "connect_failed";
    case MG_CLOSE_TIMEOUT: return "timeout";
    case MG_CLOSE_ERROR: return "error";
    default: return "reset";
    }
}

mg_close_reason close_reason_for(mux::end_reason why)
{
    switch (why) {
    case mux::end_reason::refused: return MG_CLOSE_REFUSED;
    case mux::end_reason::reset_by_peer: return MG_CLOSE_RESET;
    case mux::end_reason::stream_error: return MG_CLOSE_ERROR;
    }
    return MG_CLOSE_ERROR;
}

}  // namespace

// ================================================================ stream_pipe

stream_pipe::stream_pipe(std::shared_ptr<session> s, std::uint32_t id, std::uint8_t protocol)
    : pipe(MG_PIPE_STREAM, s->get_executor(), s->options().pipes),
      session_(s),
      protocol_(protocol)
{
    stream_id = id;
}

stream_pipe::~stream_pipe() = default;

void stream_pipe::on_remote_data(std::span<const std::uint8_t> data)
{
    if (inbox_.empty() && may_deliver()) {
        deliver_copy(data);
        return;
    }
    // No consumer yet, or it is paused / over its watermark: hold the bytes.
    // The peer cannot exceed the credit window, so this is bounded.
    append_copy(inbox_, data);
}

void stream_pipe::on_remote_fin()
{
    if (inbox_.empty() && may_deliver())
        deliver_fin();
    else
        inbox_fin_ = true;
}

void stream_pipe::on_remote_reset(mux::end_reason why, std::string_view code,
                                  std::string_view message)
{
    inbox_.clear();
    outq_.clear();
    std::string text = message.empty() ? std::string{code} : fmt::format("{}: {}", code, message);
    remote_abort(close_reason_for(why), std::move(text));
}

void stream_pipe::confirm()
{
    auto s = session_.lock();
    if (!s || confirmed_ || finished() || s->engine().side() != mux::role::agent) return;
    confirmed_ = true;
    s->engine().confirm(stream_id);
    mark_open();
}

void stream_pipe::on_peer_open() { confirm(); }

void stream_pipe::on_write(chunk&& c)
{
    auto s = session_.lock();
    if (!s) return;
    if (s->engine().side() == mux::role::agent && !confirmed_) confirm();
    outq_.push_back(std::move(c));
    s->stream_ready(*this);
}

void stream_pipe::on_write_fin()
{
    if (auto s = session_.lock()) s->stream_ready(*this);
}

void stream_pipe::on_abort(mg_close_reason why, std::string_view message)
{
    outq_.clear();
    inbox_.clear();
    auto s = session_.lock();
    if (!s || stream_id == 0) return;
    auto& e = s->engine();
    if (e.side() == mux::role::agent && !confirmed_)
        e.refuse(stream_id, reset_code(why), message);
    else
        e.reset(stream_id, reset_code(why), message);
}

void stream_pipe::on_finish()
{
    outq_.clear();
    inbox_.clear();
    if (auto s = session_.lock()) s->remove_stream(stream_id);
}

void stream_pipe::on_read_interest()
{
    while (!inbox_.empty() && may_deliver()) {
        chunk c = std::move(inbox_.front());
        inbox_.pop_front();
        deliver(std::move(c));
        if (finished()) return;
    }
    if (inbox_.empty() && inbox_fin_ && may_deliver()) {
        inbox_fin_ = false;
        deliver_fin();
    }
}

void stream_pipe::on_consumed(std::size_t n, bool keeping_up)
{
    if (auto s = session_.lock())
        s->engine().consumed(stream_id, static_cast<std::uint32_t>(n),
                             keeping_up && inbox_.empty());
}

// ==================================================================== session

session::session(strand_type ex, std::shared_ptr<ws_transport> ws, mux::role role,
                 session_options opts, std::string label)
    : ex_(ex),
      ws_(std::move(ws)),
      opts_(opts),
      engine_(role, opts.limits, *this),
      label_(std::move(label)),
      wake_(ex),
      created_(clock::now()),
      last_rx_(created_)
{
    ws_->set_read_limit(opts_.max_message_in);
    // The writer's arrays are reserved when data first flows (an idle agent
    // sends only control messages and should not carry them).
}

session::~session() = default;

void session::start(std::shared_ptr<session_delegate> delegate)
{
    delegate_ = std::move(delegate);
    started_ = true;
    auto self = shared_from_this();
    auto on_done = [self](std::exception_ptr e) {
        if (!e) return;
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            spdlog::error("{} internal error: {}", self->label_, ex.what());
        }
        self->teardown(mux::close_code::internal, "internal error");
    };
    asio::co_spawn(ex_, [self] { return self->reader(); }, on_done);
    asio::co_spawn(ex_, [self] { return self->writer(); }, on_done);
    asio::co_spawn(ex_, [self] { return self->watchdog(); }, on_done);
}

void session::establish(std::uint32_t peer_window, std::uint32_t peer_max_frame,
                        std::uint32_t peer_max_message)
{
    engine_.establish(peer_window, peer_max_frame);
    peer_max_message_ = peer_max_message;
    last_ack_ = clock::now();
    last_heartbeat_sent_ = last_ack_;
}

// ------------------------------------------------------------------ control

void session::send(const wire::control_message& m) { append_control(m); }

void session::send_control(wire::control_message&& m) { append_control(m); }

void session::append_control(const wire::control_message& m)
{
    if (closed_) return;
    const auto before = ctrl_.size();
    wire::append_control_frame(ctrl_, wire::serialize(m));
    ctrl_sizes_.push_back(static_cast<std::uint32_t>(ctrl_.size() - before));
    if (ctrl_.size() > opts_.max_control_backlog && !closing_) {
        // The peer sends us work but does not read our answers.
        asio::post(ex_, [self = shared_from_this()] {
            self->teardown(mux::close_code::limit,
                           fmt::format("peer is not reading: over max_control_backlog ({} bytes) "
                                       "of control messages waiting",
                                       self->opts_.max_control_backlog));
        });
        return;
    }
    notify_writer();
}

void session::notify_writer()
{
    if (writer_waiting_) wake_.cancel();
}

void session::on_ignored(std::string_view what)
{
    if (ignored_++ < 10) spdlog::warn("{} ignored: {}", label_, what);
}

void session::on_session_message(wire::control_message&& m)
{
    if (auto* hb = std::get_if<msg::heartbeat>(&m)) {
        send(msg::heartbeat_ack{hb->seq});
        return;
    }
    if (std::holds_alternative<msg::heartbeat_ack>(m)) {
        last_ack_ = clock::now();
        return;
    }
    if (delegate_) delegate_->on_session_message(*this, std::move(m));
}

// ------------------------------------------------------------------ streams

std::shared_ptr<stream_pipe> session::find(std::uint32_t id)
{
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second;
}

std::shared_ptr<stream_pipe> session::open_stream(std::uint8_t protocol, const std::string& tunnel,
                                                  const std::string& meta, const std::string& peer,
                                                  std::string& why)
{
    if (closing_ || closed_ || draining_) {
        why = draining_ ? "agent connection is draining" : "agent connection is closing";
        return nullptr;
    }
    const auto id = engine_.open(protocol);
    if (id == 0) {
        why = std::string{engine_.open_refusal()};
        if (engine_.ids_exhausted())
            drain(opts_.heartbeat_timeout, "stream ids exhausted; reconnect");
        return nullptr;
    }
    auto s = std::make_shared<stream_pipe>(shared_from_this(), id, protocol);
    s->tunnel = tunnel;
    s->peer_address = peer;
    streams_.emplace(id, s);
    msg::open o;
    o.stream = id;
    o.tunnel = tunnel;
    o.protocol_id = protocol;
    o.peer = peer;
    o.meta = meta.empty() ? "{}" : meta;
    append_control(o);
    return s;
}

std::shared_ptr<stream_pipe> session::new_stream(std::uint8_t protocol, std::string tunnel,
                                                 std::string meta, std::string peer,
                                                 std::string agent, std::string& why)
{
    if (ex_.running_in_this_thread()) {
        auto s = open_stream(protocol, tunnel, meta, peer, why);
        if (s) s->agent = std::move(agent);
        return s;
    }
    auto s = std::make_shared<stream_pipe>(shared_from_this(), 0, protocol);
    s->tunnel = std::move(tunnel);
    s->peer_address = std::move(peer);
    s->agent = std::move(agent);
    asio::post(ex_, [self = shared_from_this(), s, meta = std::move(meta)] {
        self->attach_stream(s, meta);
    });
    return s;
}

void session::attach_stream(const std::shared_ptr<stream_pipe>& s, const std::string& meta)
{
    if (s->finished()) return;
    if (closing_ || closed_ || draining_) {
        s->abort(MG_CLOSE_REFUSED, draining_ ? "agent connection is draining"
                                             : "agent connection is closing");
        return;
    }
    const auto id = engine_.open(s->protocol());
    if (id == 0) {
        s->abort(MG_CLOSE_REFUSED, std::string{engine_.open_refusal()});
        return;
    }
    s->stream_id = id;
    streams_.emplace(id, s);
    msg::open o;
    o.stream = id;
    o.tunnel = s->tunnel;
    o.protocol_id = s->protocol();
    o.peer = s->peer_address;
    o.meta = meta.empty() ? "{}" : meta;
    append_control(o);
    stream_ready(*s);
}

void session::on_open(msg::open&& m)
{
    auto s = std::make_shared<stream_pipe>(shared_from_this(), m.stream,
                                           static_cast<std::uint8_t>(m.protocol_id));
    s->tunnel = m.tunnel;
    s->peer_address = m.peer;
    streams_.emplace(m.stream, s);
    if (closing_) {
        s->abort(MG_CLOSE_ABORTED, "agent is closing");
        return;
    }
    if (delegate_) delegate_->on_stream(*this, s, std::move(m));
}

void session::on_opened(std::uint32_t stream)
{
    if (auto s = find(stream)) s->on_remote_opened();
}

void session::on_data(std::uint32_t stream, std::span<const std::uint8_t> data)
{
    if (auto s = find(stream)) s->on_remote_data(data);
}

void session::on_fin(std::uint32_t stream)
{
    if (auto s = find(stream)) s->on_remote_fin();
}

void session::on_reset(std::uint32_t stream, mux::end_reason why, std::string_view code,
                       std::string_view message)
{
    if (auto s = find(stream)) s->on_remote_reset(why, code, message);
}

void session::on_credit(std::uint32_t stream)
{
    if (auto s = find(stream)) stream_ready(*s);
}

void session::stream_ready(stream_pipe& s)
{
    if (s.ready_ || closed_ || s.stream_id == 0) return;
    const bool data = !s.outq_.empty() && engine_.send_credit(s.stream_id) > 0;
    const bool fin = s.outq_.empty() && s.fin_requested() && !s.fin_sent_;
    if (!data && !fin) return;
    s.ready_ = true;
    ready_.push_back(std::static_pointer_cast<stream_pipe>(s.shared_from_this()));
    notify_writer();
}

void session::remove_stream(std::uint32_t id)
{
    if (engine_.has(id)) engine_.reset(id, "closed", "stream closed locally");
    streams_.erase(id);
}

// ------------------------------------------------------------------- writer

void session::build_message()
{
    seq_.clear();
    headers_.clear();
    fin_frames_.clear();
    inflight_.clear();
    ctrl_inflight_.clear();

    // Every frame counts against the peer's max_message: control frames are
    // taken whole, as many as fit (at least one), then data, then Fins.
    // write_message bounds the control and data bytes of a message; the
    // data frames' 9-byte headers come on top (within the peer's limit), so
    // a stream that has exactly write_message bytes ready sends them in one
    // message instead of one full message and a tiny tail.
    const std::size_t peer_max = peer_max_message_ ? peer_max_message_ : opts_.max_message_out;
    const std::size_t budget = std::min<std::size_t>(opts_.max_message_out, peer_max);
    const std::size_t hard = std::min<std::size_t>(
        peer_max, opts_.max_message_out + max_frames_per_message * wire::data_header_size);
    std::size_t used = 0;
    while (!ctrl_sizes_.empty() && (used == 0 || used + ctrl_sizes_.front() <= budget)) {
        used += ctrl_sizes_.front();
        ctrl_sizes_.pop_front();
    }
    if (used == ctrl_.size()) {
        std::swap(ctrl_, ctrl_inflight_);
        ctrl_.clear();
    } else {
        ctrl_inflight_.assign(ctrl_, 0, used);
        ctrl_.erase(0, used);
    }
    if (used) seq_.emplace_back(ctrl_inflight_.data(), ctrl_inflight_.size());
    std::size_t payload = used;  // control bytes and data bytes, not data headers
    if (closing_) {
        ready_.clear();
        return;
    }

    const std::size_t max_payload =
        std::max<std::size_t>(1, std::size_t{engine_.peer_max_frame()} - wire::stream_id_size);
    // seq_ points into headers_: it must never reallocate while a message is
    // built, so it holds room for every frame a message may have.
    if (!ready_.empty() && headers_.capacity() < max_frames_per_message)
        headers_.reserve(max_frames_per_message);

    while (!ready_.empty() && payload < budget && used + wire::data_header_size < hard &&
           headers_.size() < max_frames_per_message) {
        auto s = std::move(ready_.front());
        ready_.pop_front();
        s->ready_ = false;
        if (s->finished() && s->outq_.empty() && s->fin_sent_) continue;
        const std::uint32_t id = s->stream_id;
        if (!engine_.has(id)) {
            s->outq_.clear();
            continue;
        }
        std::size_t quantum = opts_.write_quantum;
        if (engine_.can_send(id)) {
            std::int64_t credit = engine_.send_credit(id);
            while (!s->outq_.empty() && credit > 0 && quantum > 0 && payload < budget &&
                   used + wire::data_header_size < hard &&
                   headers_.size() < max_frames_per_message) {
                chunk& c = s->outq_.front();
                const std::size_t n =
                    std::min({c.size(), static_cast<std::size_t>(credit), quantum, budget - payload,
                              hard - used - wire::data_header_size, max_payload});
                auto& h = headers_.emplace_back();
                wire::encode_data_header(h.data(), s->protocol_, id, static_cast<std::uint32_t>(n));
                seq_.emplace_back(h.data(), h.size());
                seq_.emplace_back(c.data(), n);
                inflight_.push_back({s, c, static_cast<std::uint32_t>(n), false});
                c.consume(n);
                if (c.empty()) s->outq_.pop_front();
                engine_.consume_credit(id, static_cast<std::uint32_t>(n));
                credit -= static_cast<std::int64_t>(n);
                quantum -= n;
                used += wire::data_header_size + n;
                payload += n;
            }
        }
        if (s->outq_.empty() && s->fin_requested() && !s->fin_sent_) {
            std::string f;
            wire::append_control_frame(f, wire::serialize(msg::fin{id}));
            if (used + f.size() > hard) {
                // No room left in this message: the Fin leads the next one.
                s->ready_ = true;
                ready_.push_front(std::move(s));
                break;
            }
            auto& stored = fin_frames_.emplace_back(std::move(f));
            seq_.emplace_back(stored.data(), stored.size());
            used += stored.size();
            engine_.fin_sent(id);
            s->fin_sent_ = true;
            inflight_.push_back({s, chunk{}, 0, true});
        }
        if (!s->outq_.empty() && engine_.can_send(id)) {
            if (engine_.send_credit(id) > 0) {
                s->ready_ = true;
                ready_.push_back(std::move(s));
            } else {
                engine_.blocked(id);
            }
        }
    }
}

void session::trim()
{
    // Quiet for a while: the writer's arrays go back until data flows again.
    std::vector<std::array<std::uint8_t, wire::data_header_size>>{}.swap(headers_);
    std::vector<asio::const_buffer>{}.swap(seq_);
    std::vector<data_slice>{}.swap(inflight_);
    std::string{}.swap(ctrl_inflight_);
    fin_frames_.clear();
}

void session::message_written()
{
    // Copy out first: completing a slice can re-enter the session (a socket
    // resumes reading and queues more).
    auto done = std::move(inflight_);
    inflight_.clear();
    for (auto& slice : done) {
        if (slice.fin)
            slice.stream->outbound_fin_done();
        else
            slice.stream->outbound_written(slice.bytes);
    }
    done.clear();
    if (inflight_.capacity() < done.capacity()) inflight_ = std::move(done);
}

asio::awaitable<void> session::writer()
{
    auto self = shared_from_this();
    for (;;) {
        if (closed_) co_return;
        if (ctrl_.empty() && ready_.empty()) {
            if (closing_) break;
            writer_waiting_ = true;
            wake_.expires_at(clock::time_point::max());
            co_await wake_.async_wait(asio::as_tuple(asio::use_awaitable));
            writer_waiting_ = false;
            continue;
        }
        build_message();
        if (seq_.empty()) continue;
        writing_ = true;
        const auto ec = co_await ws_->write(seq_);
        writing_ = false;
        ++messages_out;
        message_written();
        if (ec) {
            teardown(mux::close_code::internal, fmt::format("write failed: {}", ec.message()));
            co_return;
        }
    }
    // Closing: everything queued before close() is out; say goodbye.
    co_await ws_->close(static_cast<std::uint16_t>(close_code_), close_reason_);
    teardown(close_code_, close_reason_);
}

// ------------------------------------------------------------------- reader

asio::awaitable<void> session::reader()
{
    auto self = shared_from_this();
    for (;;) {
        bool binary = true;
        std::span<const std::uint8_t> message;
        const auto ec = co_await ws_->read(message, binary);
        if (closed_) co_return;
        if (ec) {
            std::string why;
            mux::close_code code = mux::close_code::going_away;
            if (ws_->peer_close_code() != 0) {
                code = static_cast<mux::close_code>(ws_->peer_close_code());
                why = fmt::format("peer closed the connection ({} {})", ws_->peer_close_code(),
                                  ws_->peer_close_reason());
            } else {
                why = fmt::format("connection lost: {}", ws_->error_text());
            }
            if (closing_) {
                code = close_code_;
                why = close_reason_;
            }
            teardown(code, std::move(why));
            co_return;
        }
        last_rx_ = clock::now();
        ++messages_in;
        if (closing_) continue;  // keep reading until the peer answers our close
        if (!binary) {
            close(mux::close_code::unsupported_data, "text message (only binary messages are allowed)");
            continue;
        }
        if (auto err = engine_.on_message(message)) close(err->code, std::move(err->reason));
    }
}

// ----------------------------------------------------------------- watchdog

asio::awaitable<void> session::watchdog()
{
    auto self = shared_from_this();
    asio::steady_timer timer{ex_};
    using ms = std::chrono::milliseconds;
    const ms tick = std::clamp(
        std::min({opts_.heartbeat_interval, opts_.heartbeat_timeout, opts_.auth_timeout}) / 4,
        ms{10}, ms{1000});
    clock::time_point next_sweep = clock::now() + 1s;
    clock::time_point close_deadline{};
    for (;;) {
        timer.expires_after(tick);
        co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        if (closed_) co_return;
        const auto now = clock::now();

        if (closing_) {
            if (close_deadline == clock::time_point{}) close_deadline = now + opts_.close_timeout;
            if (now >= close_deadline) {
                ws_->abort();
                teardown(close_code_, close_reason_);
                co_return;
            }
            continue;
        }
        if (!engine_.established()) {
            if (now - created_ > opts_.auth_timeout)
                close(mux::close_code::auth_timeout,
                      fmt::format("no authentication within auth_timeout ({} ms)",
                                  opts_.auth_timeout.count()));
            continue;
        }
        if (engine_.side() == mux::role::gateway) {
            if (now - last_heartbeat_sent_ >= opts_.heartbeat_interval) {
                send(msg::heartbeat{++heartbeat_seq_});
                last_heartbeat_sent_ = now;
            }
            if (now - last_ack_ > opts_.heartbeat_timeout) {
                close(mux::close_code::heartbeat_timeout,
                      fmt::format("no HeartbeatAck for {} ms (heartbeat_timeout)",
                                  std::chrono::duration_cast<ms>(now - last_ack_).count()));
                continue;
            }
        } else if (now - last_rx_ > opts_.heartbeat_timeout) {
            close(mux::close_code::heartbeat_timeout,
                  fmt::format("nothing from the gateway for {} ms (heartbeat_timeout)",
                              std::chrono::duration_cast<ms>(now - last_rx_).count()));
            continue;
        }
        if (draining_ && (streams_.empty() || now >= drain_deadline_)) {
            close(mux::close_code::going_away, close_reason_.empty() ? "draining" : close_reason_);
            continue;
        }
        if (now >= next_sweep) {
            next_sweep = now + 1s;
            if (now - last_rx_ > idle_trim_after && ready_.empty() && ctrl_.empty() &&
                !writing_) {
                ws_->trim();
                trim();
            }
            std::vector<std::shared_ptr<stream_pipe>> expired;
            std::vector<std::shared_ptr<stream_pipe>> idle;
            for (auto& [id, s] : streams_) {
                if (engine_.side() == mux::role::gateway && !s->opened() &&
                    now - s->created() > opts_.open_timeout)
                    expired.push_back(s);
                else if (opts_.stream_idle_timeout.count() > 0 &&
                         now - s->last_activity() > opts_.stream_idle_timeout)
                    idle.push_back(s);
            }
            for (auto& s : expired)
                s->abort(MG_CLOSE_TIMEOUT,
                         fmt::format("agent did not answer Open within open_timeout ({} ms)",
                                     opts_.open_timeout.count()));
            for (auto& s : idle)
                s->abort(MG_CLOSE_TIMEOUT,
                         fmt::format("idle for stream_idle_timeout ({} s)",
                                     opts_.stream_idle_timeout.count()));
        }
    }
}

// --------------------------------------------------------------- lifecycle

void session::close(mux::close_code code, std::string reason, bool explained)
{
    if (closing_ || closed_) return;
    closing_ = true;
    close_code_ = code;
    close_reason_ = std::move(reason);
    if (!explained && code != mux::close_code::normal && code != mux::close_code::going_away)
        send(msg::error{std::string{mux::describe(code)}, close_reason_});
    notify_writer();
}

void session::drain(std::chrono::milliseconds grace, std::string reason)
{
    if (draining_ || closing_ || closed_) return;
    draining_ = true;
    drain_deadline_ = clock::now() + grace;
    close_reason_ = reason;
    send(msg::goodbye{std::move(reason), static_cast<std::uint32_t>(grace.count())});
}

void session::teardown(mux::close_code code, std::string reason)
{
    if (closed_) return;
    closed_ = true;
    closing_ = true;
    ws_->abort();
    wake_.cancel();
    ready_.clear();
    auto streams = std::move(streams_);
    streams_.clear();
    const std::string why = fmt::format("agent connection closed: {}", reason);
    for (auto& [id, s] : streams) {
        engine_.forget(id);
        s->on_remote_reset(mux::end_reason::reset_by_peer, "disconnected", why);
    }
    if (auto d = std::move(delegate_)) d->on_closed(*this, code, reason);
}

}  // namespace muxgate::net
