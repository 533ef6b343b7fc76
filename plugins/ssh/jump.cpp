#include "jump.hpp"

#include <libssh/callbacks.h>

#include <cerrno>
#include <chrono>
#include <deque>
#include <poll.h>
#include <stdexcept>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#pragma GCC diagnostic ignored "-Wdeprecated-declarations"  // ssh_message_auth_pubkey & co.

namespace muxgate::ssh {

namespace {

using clock = std::chrono::steady_clock;

// Stream bytes queued toward one SSH channel before the stream is paused
// (set_reading 0); it resumes at half. The channel's own window (the
// client's, ~2 MiB for OpenSSH) bounds what libssh buffers beyond this.
constexpr std::size_t channel_queue_high = 256 * 1024;
// Bytes read from a channel per call.
constexpr std::size_t read_chunk = 64 * 1024;
// The session loop wakes at least this often to notice a stop request.
constexpr int poll_ms = 1000;
// When the session ends, how long libssh may take to send what it still
// holds (the disconnect message above all) to a client that reads slowly or
// not at all, before the session's thread gives up on it.
constexpr int flush_ms = 2000;
// After that, how long the socket stays open to let the last packets leave
// and the client's last bytes arrive.
constexpr int linger_ms = 2000;

// A lingering close: send FIN after what was written, read and drop what the
// peer still sends until its FIN (or linger_ms), then close. Closing a socket
// that still has unread input aborts the connection instead, and the host
// then drops what was not yet relayed, such as the disconnect message that
// tells the user why.
void linger_close(int fd)
{
    ::shutdown(fd, SHUT_WR);
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(linger_ms);
    char sink[4096];
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                              until - std::chrono::steady_clock::now())
                              .count();
        if (left <= 0) break;
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left)) <= 0) break;
        const auto n = ::recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n == 0) break;
        if (n < 0 && errno != EAGAIN && errno != EINTR) break;
    }
    ::close(fd);
}

// Ends a session so that its DISCONNECT (and the text OpenSSH shows the
// user) reaches the client. ssh_disconnect() sends the packet and closes the
// socket in one go, but libssh's non-blocking writer only writes once a poll
// has reported the socket writable since its last write; otherwise it queues
// the packet for a POLLOUT that never comes, and the close drops it. So the
// queued output is flushed first, libssh is told the socket is writable, and
// the disconnect then goes out at once. Requests that arrive during the flush
// are dropped unanswered (a callback returning 0 frees them): without a
// callback libssh would queue them, without bound.
void disconnect_flushed(ssh_session s)
{
    if (!ssh_is_connected(s)) return;
    ssh_set_message_callback(s, [](ssh_session, ssh_message, void*) { return 0; }, nullptr);
    ssh_blocking_flush(s, flush_ms);
    ssh_set_fd_towrite(s);
    ssh_disconnect(s);
}

std::string json_escape(std::string_view s)
{
    std::string out;
    for (char c : s) {
        if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(c);
        } else if (static_cast<unsigned char>(c) < 0x20) {
            out += "?";
        } else {
            out.push_back(c);
        }
    }
    return out;
}

class jump_session;

// One direct-tcpip channel and the stream behind it. Fields under the
// session's mutex are touched by host threads (stream events); the rest only
// by the session thread.
class jump_channel final : public pipe_ctx {
public:
    enum class state { opening, open, failed };

    explicit jump_channel(std::shared_ptr<jump_session> s) : sess_(std::move(s)) {}
    void keep_alive(std::shared_ptr<jump_channel> me) { self_ = std::move(me); }
    void drop() { self_.reset(); }

    void on_open(mg_handle) override;
    void on_data(mg_handle, const std::uint8_t* d, std::size_t n) override;
    void on_fin(mg_handle) override;
    void on_writable(mg_handle) override;
    void on_closed(mg_handle, const mg_close_info& info) override;

    std::shared_ptr<jump_session> sess_;
    mg_handle stream_ = MG_HANDLE_NONE;

    // Under sess_->m_:
    state state_ = state::opening;
    std::string fail_message_;
    std::deque<std::string> in_;  // stream -> channel
    std::size_t in_bytes_ = 0;
    bool stream_paused_ = false;
    bool stream_fin_ = false;
    bool stream_closed_ = false;
    bool stream_clean_ = false;    // closed with MG_CLOSE_DONE
    bool writable_ = false;

    // Session thread only:
    ssh_channel ch_ = nullptr;
    bool ch_paused_ = false;       // host.write said MG_AGAIN: stop reading the channel
    bool eof_sent_ = false;        // SSH EOF toward the client
    bool fin_sent_ = false;        // FIN toward the agent
    bool close_sent_ = false;
    bool stream_ended_ = false;    // we closed or reset the stream
    std::uint64_t up_ = 0, down_ = 0;
    clock::time_point start_ = clock::now();
    std::string target_, agent_, tunnel_;
    int port_ = 0;
};

class jump_session final : public pipe_ctx, public std::enable_shared_from_this<jump_session> {
public:
    jump_session(jump_server& srv, mg_handle client, std::string peer)
        : srv_(srv), client_(client), peer_(std::move(peer))
    {
        wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    }
    ~jump_session() override
    {
        if (wake_fd_ >= 0) ::close(wake_fd_);
    }
    void keep_alive(std::shared_ptr<jump_session> me) { self_ = std::move(me); }

    // The client pipe is bridged: only on_closed arrives for it.
    void on_closed(mg_handle, const mg_close_info&) override
    {
        client_closed_ = true;
        wake();
        auto keep = std::move(self_);
    }

    void wake()
    {
        const std::uint64_t one = 1;
        if (wake_fd_ >= 0) [[maybe_unused]] auto r = ::write(wake_fd_, &one, sizeof one);
    }

    void run(int fd);

    jump_server& srv_;
    mg_handle client_;
    std::string peer_;
    int wake_fd_ = -1;
    std::atomic<bool> client_closed_{false};

    std::mutex m_;
    std::condition_variable cv_;

private:
    bool authenticate();
    void serve();
    void pump(jump_channel& c);
    bool finished(jump_channel& c);
    void audit(jump_channel& c, std::string_view end);
    int on_message(ssh_message msg);
    void open_channel(ssh_message msg);
    void refuse(ssh_message msg, const std::string& why);
    static int message_cb(ssh_session, ssh_message msg, void* self)
    {
        return static_cast<jump_session*>(self)->on_message(msg);
    }
    // The eventfd is drained by serve() just before it looks at the queues,
    // never here: libssh also polls it from inside channel reads and writes
    // (pump()), and a wake-up drained there, after pump() had looked, would
    // leave the new bytes waiting for the poll_ms timeout.
    static int wake_cb(socket_t, int, void*) { return 0; }
    void drain_wake()
    {
        std::uint64_t v;
        if (wake_fd_ >= 0) [[maybe_unused]] auto r = ::read(wake_fd_, &v, sizeof v);
    }

    ssh_session s_ = nullptr;
    ssh_counter_struct packets_{};  // libssh counts the packets it decodes
    std::string user_;
    std::string key_fp_;
    const jump_server::user_keys* who_ = nullptr;
    std::vector<std::shared_ptr<jump_channel>> channels_;
    bool disconnected_ = false;
};

// ------------------------------------------------------------ channel events

void jump_channel::on_open(mg_handle)
{
    {
        std::lock_guard l{sess_->m_};
        if (state_ == state::opening) state_ = state::open;
    }
    sess_->cv_.notify_all();
    sess_->wake();
}

void jump_channel::on_data(mg_handle h, const std::uint8_t* d, std::size_t n)
{
    {
        std::lock_guard l{sess_->m_};
        in_.emplace_back(reinterpret_cast<const char*>(d), n);
        in_bytes_ += n;
        // Paused under the lock that decided it, like the session thread's
        // resume in pump(): the host applies a pipe's calls in call order,
        // so a pause issued after the lock was released could land after a
        // resume decided later, and the stream would stay paused. Pausing
        // only stops reading: no event comes back into this lock.
        if (in_bytes_ > channel_queue_high && !stream_paused_) {
            stream_paused_ = true;
            sess_->srv_.host_.set_reading(h, false);
        }
    }
    sess_->wake();
}

void jump_channel::on_fin(mg_handle)
{
    {
        std::lock_guard l{sess_->m_};
        stream_fin_ = true;
    }
    sess_->wake();
}

void jump_channel::on_writable(mg_handle)
{
    {
        std::lock_guard l{sess_->m_};
        writable_ = true;
    }
    sess_->wake();
}

void jump_channel::on_closed(mg_handle, const mg_close_info& info)
{
    {
        std::lock_guard l{sess_->m_};
        stream_closed_ = true;
        stream_clean_ = info.reason == MG_CLOSE_DONE;
        if (state_ == state::opening) {
            state_ = state::failed;
            fail_message_ = std::string{sdk::view(info.message)};
        }
    }
    sess_->cv_.notify_all();
    sess_->wake();
    auto keep = std::move(self_);  // may be the last reference: after everything else
}

// ------------------------------------------------------------ session thread

void jump_session::run(int fd)
{
    s_ = ssh_new();
    if (!s_) {
        ::close(fd);
        return;
    }
    const long grace = srv_.cfg_.login_grace_s;
    ssh_options_set(s_, SSH_OPTIONS_TIMEOUT, &grace);
    int rc;
    {
        std::lock_guard l{srv_.bind_mutex_};
        rc = ssh_bind_accept_fd(srv_.bind_, s_, fd);
    }
    if (rc != SSH_OK) {
        srv_.host_.warn("ssh jump: client " + peer_ + ": cannot start a session: " +
                        ssh_get_error(srv_.bind_));
        ::close(fd);
        ssh_free(s_);
        return;
    }
    // From here the session owns fd; a duplicate keeps the socket open for a
    // lingering close after libssh closed its descriptor.
    const int linger_fd = ::dup(fd);
    if (ssh_handle_key_exchange(s_) != SSH_OK) {
        srv_.host_.info("ssh jump: client " + peer_ + ": key exchange failed: " +
                        ssh_get_error(s_));
    } else if (authenticate()) {
        serve();
    }
    for (auto& c : channels_) {
        if (!c->stream_ended_) {
            bool closed;
            {
                std::lock_guard l{m_};
                closed = c->stream_closed_;
            }
            if (!closed) srv_.host_.reset(c->stream_, "SSH client disconnected");
            c->stream_ended_ = true;
        }
        audit(*c, disconnected_ ? "session ended" : "client gone");
        c->ch_ = nullptr;  // freed with the session
    }
    channels_.clear();
    disconnect_flushed(s_);
    ssh_free(s_);
    s_ = nullptr;
    if (linger_fd >= 0) linger_close(linger_fd);
}

bool jump_session::authenticate()
{
    std::uint32_t attempts = 0;
    const auto deadline = clock::now() + std::chrono::seconds{srv_.cfg_.login_grace_s};
    while (!srv_.stopping_ && clock::now() < deadline) {
        ssh_message msg = ssh_message_get(s_);
        if (!msg) {
            srv_.host_.info("ssh jump: client " + peer_ + ": left before authenticating (" +
                            ssh_get_error(s_) + ")");
            return false;
        }
        bool ok = false;
        if (ssh_message_type(msg) == SSH_REQUEST_AUTH) {
            if (ssh_message_subtype(msg) == SSH_AUTH_METHOD_PUBLICKEY) {
                const std::string user = ssh_message_auth_user(msg) ? ssh_message_auth_user(msg) : "";
                ssh_key key = ssh_message_auth_pubkey(msg);
                const auto state = ssh_message_auth_publickey_state(msg);
                const jump_server::user_keys* match = nullptr;
                for (const auto& u : srv_.users_) {
                    if (u.user->name != user) continue;
                    for (auto k : u.keys)
                        if (key && ssh_key_cmp(key, k, SSH_KEY_CMP_PUBLIC) == 0) match = &u;
                }
                const std::string fp = key ? fingerprint(key) : "?";
                if (match && state == SSH_PUBLICKEY_STATE_NONE) {
                    ssh_message_auth_reply_pk_ok_simple(msg);
                    ssh_message_free(msg);
                    continue;
                }
                if (match && state == SSH_PUBLICKEY_STATE_VALID) {
                    ssh_message_auth_reply_success(msg, 0);
                    ssh_message_free(msg);
                    user_ = user;
                    key_fp_ = fp;
                    who_ = match;
                    srv_.host_.info("ssh jump: client " + peer_ + ": user " + user_ +
                                    " authenticated with key " + key_fp_);
                    return true;
                }
                if (state == SSH_PUBLICKEY_STATE_NONE) {
                    srv_.host_.info("ssh jump: client " + peer_ + ": user \"" + printable(user, 64) +
                                    "\" offered key " + fp + ", which is not authorized for it");
                } else if (!match) {
                    srv_.host_.warn("ssh jump: client " + peer_ + ": user \"" + printable(user, 64) +
                                    "\" signed with key " + fp + ", which is not authorized for it");
                }
                ++attempts;
            }
            ssh_message_auth_set_methods(msg, SSH_AUTH_METHOD_PUBLICKEY);
            ok = true;
        }
        (void)ok;
        ssh_message_reply_default(msg);
        ssh_message_free(msg);
        if (attempts >= srv_.cfg_.max_auth_attempts) {
            srv_.host_.warn("ssh jump: client " + peer_ + ": too many authentication attempts (" +
                            std::to_string(attempts) + "); disconnected");
            ssh_session_set_disconnect_message(s_, "too many authentication attempts");
            return false;
        }
    }
    srv_.host_.info("ssh jump: client " + peer_ + ": no authentication within " +
                    std::to_string(srv_.cfg_.login_grace_s) + " s; disconnected");
    return false;
}

void jump_session::serve()
{
    ssh_set_message_callback(s_, &jump_session::message_cb, this);
    ssh_set_blocking(s_, 0);
    ssh_event ev = ssh_event_new();
    if (!ev) return;
    ssh_event_add_session(ev, s_);
    if (wake_fd_ >= 0) ssh_event_add_fd(ev, wake_fd_, POLLIN, &jump_session::wake_cb, this);
    ssh_set_counters(s_, nullptr, &packets_);
    int timeout = poll_ms;
    while (!srv_.stopping_ && !disconnected_) {
        const int rc = ssh_event_dopoll(ev, timeout);
        if (disconnected_) break;
        drain_wake();
        const auto decoded = packets_.in_packets;
        for (std::size_t i = 0; i < channels_.size();) {
            pump(*channels_[i]);
            if (finished(*channels_[i])) {
                channels_.erase(channels_.begin() + static_cast<std::ptrdiff_t>(i));
            } else {
                ++i;
            }
        }
        if (rc == SSH_ERROR || !ssh_is_connected(s_) ||
            (ssh_get_status(s_) & (SSH_CLOSED | SSH_CLOSED_ERROR)))
            break;
        if (client_closed_) break;
        // Reading or writing a channel runs libssh's own poll, which can
        // decode packets for a channel already pumped in this round; their
        // bytes wait in libssh, not in the socket, so look again at once.
        timeout = packets_.in_packets != decoded ? 0 : poll_ms;
    }
    ssh_set_counters(s_, nullptr, nullptr);
    ssh_event_remove_session(ev, s_);
    if (wake_fd_ >= 0) ssh_event_remove_fd(ev, wake_fd_);
    ssh_event_free(ev);
}

void jump_session::pump(jump_channel& c)
{
    auto& host = srv_.host_;
    if (!c.ch_) return;
    // Stream -> channel, within the client's window.
    bool stream_fin = false, stream_closed = false, clean = false;
    // Under m_: resume the stream once its queue is down to half (issued
    // under the lock, see jump_channel::on_data; from this thread, which is
    // on no strand, the host posts it, so no event re-enters the lock), and
    // take the stream's end state.
    const auto settle = [&] {
        if (c.stream_paused_ && c.in_bytes_ <= channel_queue_high / 2) {
            c.stream_paused_ = false;
            host.set_reading(c.stream_, true);
        }
        stream_fin = c.stream_fin_;
        stream_closed = c.stream_closed_;
        clean = c.stream_clean_;
    };
    for (;;) {
        std::string chunk;
        {
            std::lock_guard l{m_};
            if (c.writable_) {
                c.writable_ = false;
                c.ch_paused_ = false;
            }
            if (c.in_.empty() || c.close_sent_) {
                settle();
                break;
            }
            chunk = std::move(c.in_.front());
            c.in_.pop_front();
        }
        std::size_t off = 0;
        while (off < chunk.size() && !ssh_channel_is_closed(c.ch_)) {
            const std::uint32_t window = ssh_channel_window_size(c.ch_);
            if (window == 0) break;
            const std::size_t n = std::min<std::size_t>(window, chunk.size() - off);
            const int w = ssh_channel_write(c.ch_, chunk.data() + off, static_cast<uint32_t>(n));
            if (w <= 0) break;
            off += static_cast<std::size_t>(w);
        }
        {
            std::lock_guard l{m_};
            c.in_bytes_ -= off;
            c.down_ += off;
            if (off < chunk.size() && !ssh_channel_is_closed(c.ch_)) {
                c.in_.push_front(chunk.substr(off));
                settle();
                break;
            }
            if (off < chunk.size()) {  // the channel is closed: drop the rest
                c.in_bytes_ -= chunk.size() - off;
            }
        }
    }

    bool queue_empty;
    {
        std::lock_guard l{m_};
        queue_empty = c.in_.empty();
    }
    const bool ch_closed = ssh_channel_is_closed(c.ch_) != 0;
    if (!ch_closed) {
        if (stream_fin && queue_empty && !c.eof_sent_) {
            ssh_channel_send_eof(c.ch_);
            c.eof_sent_ = true;
        }
        if (stream_closed && !c.close_sent_ && (queue_empty || !clean)) {
            if (!c.eof_sent_ && clean) ssh_channel_send_eof(c.ch_);
            c.eof_sent_ = true;
            ssh_channel_close(c.ch_);
            c.close_sent_ = true;
        }
    }

    // Channel -> stream, unless the stream is above its high watermark.
    if (!c.ch_paused_ && !c.stream_ended_ && !stream_closed) {
        char buf[read_chunk];
        for (;;) {
            const int n = ssh_channel_read_nonblocking(c.ch_, buf, sizeof buf, 0);
            if (n <= 0) break;
            c.up_ += static_cast<std::uint64_t>(n);
            if (host.write(c.stream_, buf, static_cast<std::size_t>(n)) == MG_AGAIN) {
                c.ch_paused_ = true;
                break;
            }
        }
        if (!c.ch_paused_ && !c.fin_sent_ && ssh_channel_is_eof(c.ch_)) {
            host.shutdown_write(c.stream_);
            c.fin_sent_ = true;
        }
    }
    if (ssh_channel_is_closed(c.ch_) && !c.stream_ended_ && !stream_closed) {
        // The client closed the channel: it reads nothing more.
        if (c.fin_sent_)
            host.close(c.stream_);
        else
            host.reset(c.stream_, "SSH channel closed by the client");
        c.stream_ended_ = true;
    }
}

bool jump_session::finished(jump_channel& c)
{
    bool closed;
    {
        std::lock_guard l{m_};
        closed = c.stream_closed_;
    }
    if (!closed || !c.ch_ || !ssh_channel_is_closed(c.ch_)) return false;
    audit(c, "closed");
    ssh_channel_free(c.ch_);
    c.ch_ = nullptr;
    return true;
}

void jump_session::audit(jump_channel& c, std::string_view end)
{
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - c.start_)
                        .count();
    srv_.host_.info("ssh jump: user=" + user_ + " key=" + key_fp_ + " client=" + peer_ +
                    " target=" + c.target_ + ":" + std::to_string(c.port_) + " agent=" + c.agent_ +
                    " tunnel=" + c.tunnel_ + " up=" + std::to_string(c.up_) +
                    " down=" + std::to_string(c.down_) +
                    " duration=" + seconds_text(static_cast<std::uint64_t>(us)) + " end=" +
                    std::string{end});
}

int jump_session::on_message(ssh_message msg)
{
    if (disconnected_) return 1;  // ending: refuse what came in the same poll
    if (ssh_message_type(msg) == SSH_REQUEST_CHANNEL_OPEN &&
        ssh_message_subtype(msg) == SSH_CHANNEL_DIRECT_TCPIP) {
        open_channel(msg);
        return 0;
    }
    if (ssh_message_type(msg) == SSH_REQUEST_CHANNEL_OPEN) {
        srv_.host_.info("ssh jump: user " + user_ + " from " + peer_ +
                        " asked for a channel other than direct-tcpip (a shell?); refused: "
                        "this host only forwards (ssh -J)");
    }
    return 1;  // libssh's default reply: refuse / failure
}

void jump_session::refuse(ssh_message msg, const std::string& why)
{
    srv_.host_.warn("ssh jump: user=" + user_ + " key=" + key_fp_ + " client=" + peer_ +
                    " refused: " + why);
    // libssh can only refuse a channel without a text; OpenSSH shows the text
    // of a disconnect, so a session with nothing else open ends with it, sent
    // by run() once the event loop has returned.
    if (channels_.empty()) {
        ssh_session_set_disconnect_message(s_, ("muxgate: " + why).c_str());
        disconnected_ = true;
        return;
    }
    ssh_message_reply_default(msg);
}

void jump_session::open_channel(ssh_message msg)
{
    const char* dest = ssh_message_channel_request_open_destination(msg);
    const int port = ssh_message_channel_request_open_destination_port(msg);
    const std::string name = dest ? dest : "";
    if (channels_.size() >= srv_.cfg_.max_channels) {
        refuse(msg, "too many channels in this session (max_channels " +
                        std::to_string(srv_.cfg_.max_channels) + ")");
        return;
    }
    const auto r = srv_.resolve_(name);
    switch (r.what) {
    case resolution::kind::found: break;
    case resolution::kind::invalid:
        refuse(msg, "\"" + printable(name, 80) + "\" is " + r.detail);
        return;
    case resolution::kind::ambiguous:
        refuse(msg, "\"" + name + "\" is ambiguous (agents " + r.detail +
                        "); use agent." + name);
        return;
    case resolution::kind::not_found:
        refuse(msg, "no SSH tunnel named \"" + name + "\" is registered");
        return;
    }
    const std::string full = r.ref.agent + "." + r.ref.tunnel;
    bool allowed = false;
    for (const auto& g : who_->user->allow)
        allowed = allowed || glob_match(g, name) || glob_match(g, r.ref.tunnel) || glob_match(g, full);
    if (!allowed) {
        refuse(msg, "user " + user_ + " may not reach \"" + name + "\" (not in its allow list)");
        return;
    }

    auto c = std::make_shared<jump_channel>(shared_from_this());
    c->keep_alive(c);
    c->target_ = name;
    c->port_ = port;
    c->agent_ = r.ref.agent;
    c->tunnel_ = r.ref.tunnel;
    const std::string meta = "{\"jump_user\":\"" + json_escape(user_) + "\",\"key\":\"" +
                             json_escape(key_fp_) + "\",\"client\":\"" + json_escape(peer_) + "\"}";
    auto o = srv_.host_.open_stream(r.ref.agent, r.ref.tunnel, meta, MG_HANDLE_NONE,
                                    static_cast<pipe_ctx*>(c.get()));
    if (!o) {
        c->drop();
        switch (o.status) {
        case MG_ERR_OFFLINE: refuse(msg, "agent " + r.ref.agent + " of \"" + name + "\" is offline"); break;
        case MG_ERR_NOT_FOUND: refuse(msg, "no SSH tunnel named \"" + name + "\" is registered"); break;
        case MG_ERR_LIMIT: refuse(msg, "agent " + r.ref.agent + " has too many streams open"); break;
        default: refuse(msg, "cannot open a stream to \"" + name + "\": " + sdk::status_text(o.status));
        }
        return;
    }
    c->stream_ = o.pipe;
    jump_channel::state st;
    std::string why;
    {
        std::unique_lock l{m_};
        cv_.wait_for(l, std::chrono::milliseconds{srv_.cfg_.open_timeout_ms},
                     [&] { return c->state_ != jump_channel::state::opening; });
        st = c->state_;
        why = c->fail_message_;
    }
    if (st == jump_channel::state::opening) {
        srv_.host_.reset(o.pipe, "no answer from the agent");
        c->stream_ended_ = true;
        refuse(msg, "agent " + r.ref.agent + " did not answer for \"" + name + "\" within " +
                        std::to_string(srv_.cfg_.open_timeout_ms) + " ms");
        return;
    }
    if (st == jump_channel::state::failed) {
        c->stream_ended_ = true;
        refuse(msg, "agent " + r.ref.agent + " cannot reach the SSH server of \"" + name + "\"" +
                        (why.empty() ? std::string{} : ": " + why));
        return;
    }
    c->ch_ = ssh_message_channel_request_open_reply_accept(msg);
    if (!c->ch_) {
        srv_.host_.reset(o.pipe, "SSH channel could not be opened");
        c->stream_ended_ = true;
        return;
    }
    channels_.push_back(c);
    srv_.host_.info("ssh jump: user=" + user_ + " client=" + peer_ + " opened " + name + ":" +
                    std::to_string(port) + " (agent " + r.ref.agent + ", tunnel " + r.ref.tunnel + ")");
}

}  // namespace

jump_server::jump_server(sdk::host h, gateway_config cfg, resolver resolve)
    : host_(h), cfg_(std::move(cfg)), resolve_(std::move(resolve))
{
}

jump_server::~jump_server()
{
    stopping_ = true;
    std::unique_lock l{count_mutex_};
    count_cv_.wait(l, [this] { return sessions_ == 0; });
    l.unlock();
    if (bind_) ssh_bind_free(bind_);
    for (auto& u : users_)
        for (auto k : u.keys) ssh_key_free(k);
}

bool jump_server::start(void* listener_tag)
{
    try {
        for (const auto& u : cfg_.users) {
            user_keys uk{&u, {}};
            for (const auto& line : u.keys) {
                const auto k = parse_key_line(line);
                ssh_key key = nullptr;
                if (ssh_pki_import_pubkey_base64(k.base64.c_str(), ssh_key_type_from_name(k.type.c_str()),
                                                 &key) != SSH_OK)
                    throw std::runtime_error("user " + u.name + ": cannot load the " + k.type +
                                             " key \"" + printable(k.comment, 60) + "\"");
                uk.keys.push_back(key);
            }
            users_.push_back(std::move(uk));
        }
        bool created = false;
        ssh_key key = load_or_create_host_key(cfg_.host_key, created);
        const auto fp = fingerprint(key);
        bind_ = ssh_bind_new();
        if (!bind_) {
            ssh_key_free(key);
            throw std::runtime_error("ssh_bind_new failed");
        }
        if (ssh_bind_options_set(bind_, SSH_BIND_OPTIONS_IMPORT_KEY, key) != SSH_OK) {
            ssh_key_free(key);
            throw std::runtime_error(std::string{"cannot use the host key: "} + ssh_get_error(bind_));
        }
        host_.info("ssh jump: host key " + cfg_.host_key + (created ? " (created)" : "") +
                   " fingerprint " + fp);
    } catch (const std::exception& e) {
        host_.error(std::string{"ssh jump: "} + e.what() + "; the jump host is off");
        return false;
    }
    if (host_.listen(cfg_.jump_listen, {}, listener_tag) != MG_OK) {
        host_.error("ssh jump: cannot listen on " + cfg_.jump_listen + "; the jump host is off");
        return false;
    }
    host_.info("ssh jump: listening on " + cfg_.jump_listen + " for " +
               std::to_string(cfg_.users.size()) + " user(s)");
    return true;
}

void jump_server::accept(mg_handle client, const mg_accept_info& info)
{
    const std::string peer{sdk::view(info.peer)};
    {
        std::lock_guard l{count_mutex_};
        if (stopping_ || sessions_ >= cfg_.max_sessions) {
            host_.warn("ssh jump: client " + peer + " refused: " +
                       std::to_string(cfg_.max_sessions) + " sessions open (max_sessions)");
            host_.reset(client, "too many SSH sessions");
            return;
        }
        ++sessions_;
    }
    auto s = std::make_shared<jump_session>(*this, client, peer);
    s->keep_alive(s);
    host_.set_user(client, static_cast<pipe_ctx*>(s.get()));
    const std::int64_t fd = host_.bridge_fd(client);
    if (fd < 0) {
        host_.warn("ssh jump: client " + peer + ": cannot bridge the connection: " +
                   sdk::status_text(static_cast<mg_status>(fd)));
        host_.reset(client, "bridge failed");
        std::lock_guard l{count_mutex_};
        --sessions_;
        count_cv_.notify_all();
        return;
    }
    std::thread([this, s, fd] {
        s->run(static_cast<int>(fd));
        std::lock_guard l{count_mutex_};
        --sessions_;
        count_cv_.notify_all();
    }).detach();
}

}  // namespace muxgate::ssh
