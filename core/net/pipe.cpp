#include "net/pipe.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

namespace muxgate::net {

pipe::pipe(mg_pipe_kind kind, strand_type ex, pipe_limits limits)
    : limits_(limits),
      kind_(kind),
      ex_(std::move(ex)),
      created_(clock::now()),
      last_activity_(created_.time_since_epoch().count())
{
}

pipe::~pipe() = default;

template <class F>
void pipe::emit(F&& f)
{
    if (!events_) return;
    auto keep = events_;  // the handler may unbind us
    if (group_) {
        std::lock_guard lock{*group_};
        f(*keep);
    } else {
        f(*keep);
    }
}

template <class F>
void pipe::on_peer(F&& f)
{
    if (!peer_) return;
    if (peer_same_strand_) {
        auto keep = peer_;
        f(*keep);
        return;
    }
    asio::post(peer_->get_executor(),
               [p = peer_, fn = std::forward<F>(f)]() mutable { fn(*p); });
}

const std::string& pipe::local_address()
{
    std::call_once(local_once_, [this] { local_address_ = describe_local(); });
    return local_address_;
}

void pipe::bind(std::shared_ptr<pipe_events> events, void* user)
{
    events_ = std::move(events);
    user_ = user;
    // A plugin names the pipe only by handle (the registry holds it weakly),
    // and a paused socket pipe has no I/O in flight holding it either: the
    // pipe keeps itself until finish() has delivered on_closed.
    if (events_ && !finished_) self_ = shared_from_this();
}

// ------------------------------------------------------------------ outbound

void pipe::write(chunk c)
{
    if (c.empty()) return;
    add_outbound(c.size());
    write_reserved(std::move(c));
}

void pipe::write_reserved(chunk c)
{
    const auto n = c.size();
    if (finished_ || fin_requested_) {
        // Too late: the remote is gone or we already said FIN. The bytes are
        // dropped, and the reservation with them.
        out_bytes_.fetch_sub(n, std::memory_order_relaxed);
        return;
    }
    touch();
    on_write(std::move(c));
}

void pipe::write_copy(std::span<const std::uint8_t> bytes)
{
    if (bytes.empty() || finished_ || fin_requested_) return;
    add_outbound(bytes.size());
    touch();
    on_write_copy(bytes);
}

void pipe::write_fin()
{
    if (finished_ || fin_requested_) return;
    fin_requested_ = true;
    on_write_fin();
}

void pipe::abort(mg_close_reason why, std::string message)
{
    if (finished_) return;
    on_abort(why, message);
    finish(why, std::move(message));
}

void pipe::close()
{
    if (finished_) return;
    discard_input_ = true;
    write_fin();
    if (finished_) return;
    if (in_done_) {
        maybe_finish();
        return;
    }
    if (!linger_) {
        linger_ = std::make_shared<asio::steady_timer>(ex_, close_linger);
        linger_->async_wait([self = shared_from_this()](boost::system::error_code ec) {
            if (!ec) self->abort(MG_CLOSE_TIMEOUT, "remote did not close within close_linger");
        });
    }
    on_read_interest();
}

void pipe::outbound_written(std::size_t n)
{
    if (n == 0) return;
    out_bytes_.fetch_sub(n, std::memory_order_relaxed);
    bytes_out_ += n;
    touch();
    const std::size_t own = std::min(n, pre_link_out_);
    pre_link_out_ -= own;
    if (const std::size_t from_peer = n - own; from_peer && peer_)
        on_peer([from_peer](pipe& p) { p.consumed(from_peer); });
    if (want_writable_ && !peer_ && outbound_bytes() <= limits_.low_watermark) {
        want_writable_ = false;
        emit([h = handle(), u = user_](pipe_events& e) { e.on_writable(h, u); });
    }
}

void pipe::request_writable()
{
    if (finished_ || peer_) return;
    if (outbound_bytes() <= limits_.low_watermark) {
        emit([h = handle(), u = user_](pipe_events& e) { e.on_writable(h, u); });
        return;
    }
    want_writable_ = true;
}

void pipe::outbound_fin_done()
{
    out_done_ = true;
    maybe_finish();
}

// ------------------------------------------------------------------- inbound

bool pipe::may_deliver() const noexcept
{
    if (finished_ || in_done_) return false;
    if (discard_input_) return true;
    if (peer_) return unconsumed_ < limits_.high_watermark;
    if (events_) return reading_enabled_;
    return false;
}

void pipe::set_reading(bool enabled)
{
    reading_enabled_ = enabled;
    if (enabled) on_read_interest();
}

void pipe::consumed(std::size_t n)
{
    unconsumed_ -= std::min(n, unconsumed_);
    on_consumed(n, unconsumed_ <= limits_.low_watermark);
    if (unconsumed_ <= limits_.low_watermark && !finished_) on_read_interest();
}

void pipe::deliver(chunk&& c)
{
    const auto n = c.size();
    bytes_in_ += n;
    touch();
    if (discard_input_) {
        on_consumed(n, false);
        return;
    }
    if (peer_) {
        unconsumed_ += n;
        on_peer([c = std::move(c)](pipe& p) mutable { p.write(std::move(c)); });
        return;
    }
    if (events_) {
        emit([&](pipe_events& e) { e.on_data(handle(), user_, c.bytes()); });
        on_consumed(n, true);
    }
}

void pipe::deliver_copy(std::span<const std::uint8_t> bytes)
{
    const auto n = bytes.size();
    if (peer_ && !peer_same_strand_) {
        deliver(chunk::copy_of(bytes));
        return;
    }
    bytes_in_ += n;
    touch();
    if (discard_input_) {
        on_consumed(n, false);
        return;
    }
    if (peer_) {
        unconsumed_ += n;
        auto keep = peer_;
        keep->write_copy(bytes);
        return;
    }
    if (events_) {
        emit([&](pipe_events& e) { e.on_data(handle(), user_, bytes); });
        on_consumed(n, true);
    }
}

void pipe::deliver_fin()
{
    if (in_done_ || finished_) return;
    in_done_ = true;
    touch();
    if (!discard_input_) {
        if (peer_)
            on_peer([](pipe& p) { p.write_fin(); });
        else
            emit([h = handle(), u = user_](pipe_events& e) { e.on_fin(h, u); });
    }
    maybe_finish();
}

void pipe::remote_abort(mg_close_reason why, std::string message)
{
    finish(why, std::move(message));
}

void pipe::mark_open()
{
    if (opened_ || finished_) return;
    opened_ = true;
    if (peer_)
        on_peer([](pipe& p) { p.on_peer_open(); });
    else if (events_) {
        open_emitted_ = true;
        emit([h = handle(), u = user_](pipe_events& e) { e.on_open(h, u); });
    }
}

void pipe::replay_open()
{
    if (unreported_close_ && events_) {
        const auto keep = weak_from_this().lock();
        const auto rec = std::move(unreported_close_);
        if (const auto h = handle()) pipe_registry::instance().remove(h);
        emit([&](pipe_events& e) { e.on_closed(handle(), user_, *rec); });
        events_.reset();
        self_.reset();
        return;
    }
    if (opened_ && !open_emitted_ && !finished_ && !peer_ && events_) {
        open_emitted_ = true;
        emit([h = handle(), u = user_](pipe_events& e) { e.on_open(h, u); });
    }
    // Bytes that arrived while nobody was bound to take them wait in the
    // pipe (a stream's inbox; an unarmed socket): hand them over now.
    if (!finished_ && events_) on_read_interest();
}

// ----------------------------------------------------------------- lifetime

void pipe::maybe_finish()
{
    if (!finished_ && in_done_ && out_done_) finish(MG_CLOSE_DONE, {});
}

void pipe::finish(mg_close_reason why, std::string message)
{
    if (finished_) return;
    finished_ = true;
    // The registry may hold the last reference: keep the pipe alive until
    // on_closed has been delivered (a plugin may call into it from there).
    const auto keep = weak_from_this().lock();
    if (linger_) linger_->cancel();
    close_record rec;
    rec.reason = why;
    rec.message = message;
    rec.bytes_in = bytes_in_;
    rec.bytes_out = bytes_out_;
    rec.duration_us = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - created_).count());
    last_close_ = why;
    last_message_ = message;

    if (why != MG_CLOSE_DONE && spdlog::should_log(spdlog::level::debug)) {
        static constexpr const char* kinds[] = {"?", "public", "stream", "local"};
        spdlog::debug("{} pipe agent={} tunnel={} stream={} peer={} ended ({}): {} (in {} out {} "
                      "bytes)",
                      kinds[kind_ <= 3 ? kind_ : 0], agent, tunnel, stream_id, peer_address,
                      static_cast<int>(why), message, bytes_in_, bytes_out_);
    }
    on_finish();
    if (const auto h = handle()) pipe_registry::instance().remove(h);

    if (why != MG_CLOSE_DONE && peer_) {
        std::string m = message.empty() ? std::string{"linked pipe aborted"}
                                        : "linked pipe aborted: " + message;
        const auto reason = why == MG_CLOSE_REFUSED ? MG_CLOSE_REFUSED : MG_CLOSE_ABORTED;
        on_peer([reason, m = std::move(m)](pipe& p) mutable { p.abort(reason, std::move(m)); });
    }
    const bool had_peer = peer_ != nullptr;
    // Keep peer_ (the peer may still report consumption to us; harmless once
    // finished) but break the ownership cycle from our side.
    peer_.reset();
    if (events_)
        emit([&](pipe_events& e) { e.on_closed(handle(), user_, rec); });
    else if (!had_peer)  // not bound yet: replay_open() reports it once it is
        unreported_close_ = std::make_unique<close_record>(std::move(rec));
    events_.reset();
    self_.reset();  // `keep` holds it to the end of this call
}

bool pipe::link(const std::shared_ptr<pipe>& a, const std::shared_ptr<pipe>& b)
{
    if (!a || !b || a == b) return false;
    const bool same = a->ex_ == b->ex_;
    auto wire = [same](std::shared_ptr<pipe> self, std::shared_ptr<pipe> other) {
        if (self->finished_) {
            // Gone before the link took effect: take the other side down too.
            const auto why = self->last_close_ == MG_CLOSE_DONE ? MG_CLOSE_ABORTED : self->last_close_;
            std::string m = "linked pipe closed before the link: " + self->last_message_;
            asio::dispatch(other->get_executor(), [other, why, m = std::move(m)]() mutable {
                other->abort(why == MG_CLOSE_REFUSED ? MG_CLOSE_REFUSED : MG_CLOSE_ABORTED,
                             std::move(m));
            });
            return;
        }
        self->peer_ = std::move(other);
        self->peer_same_strand_ = same;
        self->pre_link_out_ = self->outbound_bytes();
        self->want_writable_ = false;
        if (self->opened_) self->on_peer([](pipe& p) { p.on_peer_open(); });
        if (self->in_done_ && !self->discard_input_)
            self->on_peer([](pipe& p) { p.write_fin(); });
        self->on_read_interest();
    };
    asio::dispatch(a->ex_, [wire, a, b] { wire(a, b); });
    asio::dispatch(b->ex_, [wire, a, b] { wire(b, a); });
    return true;
}

// ------------------------------------------------------------------ registry

pipe_registry& pipe_registry::instance()
{
    static pipe_registry r;
    return r;
}

mg_handle pipe_registry::add(const std::shared_ptr<pipe>& p)
{
    std::lock_guard lock{mutex_};
    const mg_handle h = next_++;
    pipes_.emplace(h, p);
    p->set_handle(h);
    return h;
}

void pipe_registry::remove(mg_handle h)
{
    std::lock_guard lock{mutex_};
    pipes_.erase(h);
}

std::shared_ptr<pipe> pipe_registry::find(mg_handle h)
{
    std::lock_guard lock{mutex_};
    auto it = pipes_.find(h);
    return it == pipes_.end() ? nullptr : it->second.lock();
}

std::size_t pipe_registry::size()
{
    std::lock_guard lock{mutex_};
    return pipes_.size();
}

std::vector<std::shared_ptr<pipe>> pipe_registry::snapshot()
{
    std::lock_guard lock{mutex_};
    std::vector<std::shared_ptr<pipe>> out;
    out.reserve(pipes_.size());
    for (auto& [h, w] : pipes_)
        if (auto p = w.lock()) out.push_back(std::move(p));
    return out;
}

}  // namespace muxgate::net
