#include "embedded.hpp"

#include "ssh_text.hpp"

#include <libssh/callbacks.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <memory>
#include <poll.h>
#include <pty.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

extern char** environ;

namespace muxgate::ssh {

namespace {

// Concurrent embedded sessions per tunnel configuration (one thread each).
constexpr std::uint32_t max_embedded_sessions = 32;
// Channels (shells, commands, sftp) per session.
constexpr std::size_t max_embedded_channels = 16;
// Key exchange and authentication must be done by then.
constexpr long login_grace_s = 30;
// Bytes read from a child per event.
constexpr std::size_t child_chunk = 32 * 1024;
// The session loop's poll period: children that exit are reaped this often.
constexpr int poll_ms = 100;
constexpr const char* default_sftp_server = "/usr/lib/openssh/sftp-server";

std::vector<ssh_key> load_authorized_keys(const std::string& path, std::string& why)
{
    std::vector<ssh_key> keys;
    std::ifstream f{path};
    if (!f) {
        why = "cannot read authorized_keys \"" + path + "\"";
        return keys;
    }
    std::string line;
    std::size_t n = 0;
    while (std::getline(f, line)) {
        ++n;
        const auto k = parse_key_line(line);
        if (k.what == key_line::kind::invalid) {
            why = path + ":" + std::to_string(n) + ": " + k.error;
            continue;  // sshd skips bad lines too; the last error is reported
        }
        if (k.what != key_line::kind::key) continue;
        ssh_key key = nullptr;
        if (ssh_pki_import_pubkey_base64(k.base64.c_str(), ssh_key_type_from_name(k.type.c_str()),
                                         &key) == SSH_OK)
            keys.push_back(key);
        else
            why = path + ":" + std::to_string(n) + ": cannot load the " + k.type + " key";
    }
    return keys;
}

class emb_session;

// One session channel and the child process behind it.
struct emb_channel {
    emb_session* sess = nullptr;
    ssh_channel ch = nullptr;
    ssh_channel_callbacks_struct cb{};
    bool pty = false;
    std::string term = "xterm";
    winsize ws{};
    pid_t pid = -1;
    int in = -1;    // child's stdin (the PTY master for a PTY)
    int out = -1;   // child's stdout (the PTY master for a PTY)
    int err = -1;   // child's stderr (none for a PTY)
    bool out_added = false, err_added = false;
    bool out_eof = false, err_eof = false;
    bool blocked = false;   // the client's window is full: child fds out of the poll
    bool exited = false;
    int status = 0;
    bool finished = false;
};

class emb_session {
public:
    emb_session(embedded_server& srv, std::string peer, std::string what)
        : srv_(srv), peer_(std::move(peer)), what_(std::move(what))
    {
    }
    void run(int fd);

private:
    // libssh callbacks (static trampolines to members).
    static int auth_pubkey(ssh_session, const char* user, ssh_key key, char state, void* u);
    static ssh_channel open_session(ssh_session, void* u);
    static int pty_request(ssh_session, ssh_channel, const char* term, int w, int h, int pw,
                           int ph, void* u);
    static int pty_resize(ssh_session, ssh_channel, int w, int h, int pw, int ph, void* u);
    static int shell_request(ssh_session, ssh_channel, void* u);
    static int exec_request(ssh_session, ssh_channel, const char* cmd, void* u);
    static int subsystem_request(ssh_session, ssh_channel, const char* name, void* u);
    static int data(ssh_session, ssh_channel, void* d, uint32_t n, int is_stderr, void* u);
    static void eof(ssh_session, ssh_channel, void* u);
    static int child_out(socket_t fd, int revents, void* u);
    static int child_err(socket_t fd, int revents, void* u);

    bool start_child(emb_channel& c, const std::string& command, bool subsystem);
    void step(emb_channel& c);
    void end_child(emb_channel& c, bool kill_it);

    embedded_server& srv_;
    std::string peer_, what_;
    ssh_session s_ = nullptr;
    ssh_event ev_ = nullptr;
    std::vector<ssh_key> keys_;
    std::vector<std::unique_ptr<emb_channel>> channels_;
    std::string user_, key_fp_;
    bool authed_ = false;
};

int emb_session::auth_pubkey(ssh_session, const char* user, ssh_key key, char state, void* u)
{
    auto& self = *static_cast<emb_session*>(u);
    for (auto k : self.keys_) {
        if (ssh_key_cmp(key, k, SSH_KEY_CMP_PUBLIC) != 0) continue;
        if (state == SSH_PUBLICKEY_STATE_VALID) {
            self.authed_ = true;
            self.user_ = user ? user : "";
            self.key_fp_ = fingerprint(key);
            self.srv_.host_.info("ssh embedded: " + self.what_ + " user " + printable(self.user_, 64) +
                                 " authenticated with key " + self.key_fp_);
        }
        return SSH_AUTH_SUCCESS;
    }
    if (state == SSH_PUBLICKEY_STATE_VALID || state == SSH_PUBLICKEY_STATE_NONE)
        self.srv_.host_.info("ssh embedded: " + self.what_ + " key " + fingerprint(key) +
                             " is not in " + self.srv_.opt_.authorized_keys);
    return SSH_AUTH_DENIED;
}

ssh_channel emb_session::open_session(ssh_session s, void* u)
{
    auto& self = *static_cast<emb_session*>(u);
    if (!self.authed_ || self.channels_.size() >= max_embedded_channels) return nullptr;
    auto c = std::make_unique<emb_channel>();
    c->sess = &self;
    c->ch = ssh_channel_new(s);
    if (!c->ch) return nullptr;
    ssh_callbacks_init(&c->cb);
    c->cb.userdata = c.get();
    c->cb.channel_data_function = &emb_session::data;
    c->cb.channel_eof_function = &emb_session::eof;
    c->cb.channel_pty_request_function = &emb_session::pty_request;
    c->cb.channel_pty_window_change_function = &emb_session::pty_resize;
    c->cb.channel_shell_request_function = &emb_session::shell_request;
    c->cb.channel_exec_request_function = &emb_session::exec_request;
    c->cb.channel_subsystem_request_function = &emb_session::subsystem_request;
    ssh_set_channel_callbacks(c->ch, &c->cb);
    ssh_channel ch = c->ch;
    self.channels_.push_back(std::move(c));
    return ch;
}

int emb_session::pty_request(ssh_session, ssh_channel, const char* term, int w, int h, int pw,
                             int ph, void* u)
{
    auto& c = *static_cast<emb_channel*>(u);
    if (c.pid > 0) return -1;
    c.pty = true;
    if (term && *term) c.term = term;
    c.ws.ws_col = static_cast<unsigned short>(w);
    c.ws.ws_row = static_cast<unsigned short>(h);
    c.ws.ws_xpixel = static_cast<unsigned short>(pw);
    c.ws.ws_ypixel = static_cast<unsigned short>(ph);
    return 0;
}

int emb_session::pty_resize(ssh_session, ssh_channel, int w, int h, int pw, int ph, void* u)
{
    auto& c = *static_cast<emb_channel*>(u);
    c.ws.ws_col = static_cast<unsigned short>(w);
    c.ws.ws_row = static_cast<unsigned short>(h);
    c.ws.ws_xpixel = static_cast<unsigned short>(pw);
    c.ws.ws_ypixel = static_cast<unsigned short>(ph);
    if (c.pty && c.in >= 0) ::ioctl(c.in, TIOCSWINSZ, &c.ws);
    return 0;
}

int emb_session::shell_request(ssh_session, ssh_channel, void* u)
{
    auto& c = *static_cast<emb_channel*>(u);
    return c.pid < 0 && c.sess->start_child(c, {}, false) ? 0 : -1;
}

int emb_session::exec_request(ssh_session, ssh_channel, const char* cmd, void* u)
{
    auto& c = *static_cast<emb_channel*>(u);
    return c.pid < 0 && c.sess->start_child(c, cmd ? cmd : "", false) ? 0 : -1;
}

int emb_session::subsystem_request(ssh_session, ssh_channel, const char* name, void* u)
{
    auto& c = *static_cast<emb_channel*>(u);
    if (!name || std::strcmp(name, "sftp") != 0 || c.pid >= 0) return -1;
    return c.sess->start_child(c, {}, true) ? 0 : -1;
}

int emb_session::data(ssh_session, ssh_channel, void* d, uint32_t n, int, void* u)
{
    auto& c = *static_cast<emb_channel*>(u);
    if (c.in < 0) return static_cast<int>(n);  // nobody to read it: dropped, like sshd
    const char* p = static_cast<const char*>(d);
    std::size_t off = 0;
    // The child's stdin is blocking: a child that does not read stalls this
    // session only (its window stops growing), as with sshd.
    while (off < n) {
        const ssize_t w = ::write(c.in, p + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += static_cast<std::size_t>(w);
    }
    return static_cast<int>(n);
}

void emb_session::eof(ssh_session, ssh_channel, void* u)
{
    auto& c = *static_cast<emb_channel*>(u);
    if (!c.pty && c.in >= 0) {  // a command's stdin ends; a PTY keeps its master
        ::close(c.in);
        c.in = -1;
    }
}

int emb_session::child_out(socket_t fd, int revents, void* u)
{
    auto& c = *static_cast<emb_channel*>(u);
    if (!(revents & (POLLIN | POLLHUP | POLLERR))) return 0;
    // Read no more than the client's window takes, so the write below never
    // waits (a waiting libssh write polls this very event: re-entry would
    // interleave output). A full window takes the fds out of the poll until
    // the client adjusts it (step()).
    const std::uint32_t window = ssh_channel_is_closed(c.ch) ? 0 : ssh_channel_window_size(c.ch);
    if (window == 0 && !ssh_channel_is_closed(c.ch)) {
        c.blocked = true;
        return 0;
    }
    char buf[child_chunk];
    const std::size_t want = ssh_channel_is_closed(c.ch) ? sizeof buf : std::min<std::size_t>(sizeof buf, window);
    const ssize_t n = ::read(fd, buf, want);
    if (n > 0) {
        if (!ssh_channel_is_closed(c.ch)) ssh_channel_write(c.ch, buf, static_cast<uint32_t>(n));
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        c.out_eof = true;  // EOF, or EIO from a PTY whose last holder exited
    }
    return 0;
}

int emb_session::child_err(socket_t fd, int revents, void* u)
{
    auto& c = *static_cast<emb_channel*>(u);
    if (!(revents & (POLLIN | POLLHUP | POLLERR))) return 0;
    // Read no more than the client's window takes, so the write below never
    // waits (a waiting libssh write polls this very event: re-entry would
    // interleave output). A full window takes the fds out of the poll until
    // the client adjusts it (step()).
    const std::uint32_t window = ssh_channel_is_closed(c.ch) ? 0 : ssh_channel_window_size(c.ch);
    if (window == 0 && !ssh_channel_is_closed(c.ch)) {
        c.blocked = true;
        return 0;
    }
    char buf[child_chunk];
    const std::size_t want = ssh_channel_is_closed(c.ch) ? sizeof buf : std::min<std::size_t>(sizeof buf, window);
    const ssize_t n = ::read(fd, buf, want);
    if (n > 0) {
        if (!ssh_channel_is_closed(c.ch)) ssh_channel_write_stderr(c.ch, buf, static_cast<uint32_t>(n));
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        c.err_eof = true;  // EOF, or EIO from a PTY whose last holder exited
    }
    return 0;
}

bool emb_session::start_child(emb_channel& c, const std::string& command, bool subsystem)
{
    // Everything the child needs is built before fork: after it, only
    // async-signal-safe calls until exec (this process has many threads).
    std::vector<std::string> args;
    const std::string& shell = srv_.shell_;
    if (subsystem) {
        args = {srv_.sftp_server_};
    } else if (command.empty()) {
        args = {shell, "-l"};
    } else {
        args = {shell, "-c", command};
    }
    std::vector<std::string> env;
    for (char** e = environ; e && *e; ++e) {
        const std::string_view v{*e};
        // Never hand the agent's own secrets to a user command.
        if (v.rfind("MUXGATE_", 0) == 0 || v.rfind("TERM=", 0) == 0) continue;
        env.emplace_back(v);
    }
    if (c.pty) env.push_back("TERM=" + c.term);
    // "client_ip client_port server_ip server_port" (sftp-server refuses
    // anything else); the server end is the agent's stream, not a socket.
    if (const auto colon = peer_.rfind(':'); colon != std::string::npos && colon > 0) {
        std::string ip = peer_.substr(0, colon);
        if (ip.size() > 2 && ip.front() == '[') ip = ip.substr(1, ip.size() - 2);
        env.push_back("SSH_CONNECTION=" + ip + " " + peer_.substr(colon + 1) + " 0.0.0.0 0");
    }
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);

    srv_.host_.info("ssh embedded: " + what_ + " user " + printable(user_, 64) + " " +
                    (subsystem ? "sftp" : command.empty() ? "shell" : "exec \"" + printable(command, 120) + "\"") +
                    (c.pty ? " with a PTY" : ""));
    if (c.pty) {
        int master = -1;
        const pid_t pid = ::forkpty(&master, nullptr, nullptr, &c.ws);
        if (pid < 0) return false;
        if (pid == 0) {
            ::execve(argv[0], argv.data(), envp.data());
            ::_exit(127);
        }
        ::fcntl(master, F_SETFD, FD_CLOEXEC);
        c.pid = pid;
        c.in = master;
        c.out = ::dup(master);
        ::fcntl(c.out, F_SETFD, FD_CLOEXEC);
        ::fcntl(c.out, F_SETFL, ::fcntl(c.out, F_GETFL) | O_NONBLOCK);
        c.err_eof = true;
        return true;
    }
    int pin[2], pout[2], perr[2];
    if (::pipe2(pin, O_CLOEXEC) != 0) return false;
    if (::pipe2(pout, O_CLOEXEC) != 0) {
        ::close(pin[0]);
        ::close(pin[1]);
        return false;
    }
    if (::pipe2(perr, O_CLOEXEC) != 0) {
        for (int fd : {pin[0], pin[1], pout[0], pout[1]}) ::close(fd);
        return false;
    }
    const pid_t pid = ::fork();
    if (pid < 0) {
        for (int fd : {pin[0], pin[1], pout[0], pout[1], perr[0], perr[1]}) ::close(fd);
        return false;
    }
    if (pid == 0) {
        ::setsid();
        ::dup2(pin[0], 0);
        ::dup2(pout[1], 1);
        ::dup2(perr[1], 2);
        ::execve(argv[0], argv.data(), envp.data());
        ::_exit(127);
    }
    ::close(pin[0]);
    ::close(pout[1]);
    ::close(perr[1]);
    c.pid = pid;
    c.in = pin[1];
    c.out = pout[0];
    c.err = perr[0];
    ::fcntl(c.out, F_SETFL, ::fcntl(c.out, F_GETFL) | O_NONBLOCK);
    ::fcntl(c.err, F_SETFL, ::fcntl(c.err, F_GETFL) | O_NONBLOCK);
    return true;
}

void emb_session::end_child(emb_channel& c, bool kill_it)
{
    if (c.out_added) ssh_event_remove_fd(ev_, c.out);
    if (c.err_added) ssh_event_remove_fd(ev_, c.err);
    c.out_added = c.err_added = false;
    for (int* fd : {&c.in, &c.out, &c.err}) {
        if (*fd >= 0) ::close(*fd);
        *fd = -1;
    }
    if (c.pid > 0 && !c.exited) {
        if (kill_it) {
            ::kill(-c.pid, SIGHUP);
            ::kill(c.pid, SIGHUP);
        }
        // Reaped here at the latest; a child that ignores SIGHUP gets SIGKILL.
        for (int i = 0; i < 20; ++i) {
            if (::waitpid(c.pid, &c.status, WNOHANG) == c.pid) {
                c.exited = true;
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds{10});
        }
        if (!c.exited) {
            ::kill(c.pid, SIGKILL);
            ::waitpid(c.pid, &c.status, 0);
            c.exited = true;
        }
    }
}

void emb_session::step(emb_channel& c)
{
    if (c.finished) return;
    if (c.pid > 0) {
        if (c.blocked && ssh_channel_window_size(c.ch) > 0) c.blocked = false;
        if (c.blocked) {
            if (c.out_added) ssh_event_remove_fd(ev_, c.out);
            if (c.err_added) ssh_event_remove_fd(ev_, c.err);
            c.out_added = c.err_added = false;
        }
        if (c.out >= 0 && !c.out_added && !c.out_eof && !c.blocked) {
            ssh_event_add_fd(ev_, c.out, POLLIN, &emb_session::child_out, &c);
            c.out_added = true;
        }
        if (c.err >= 0 && !c.err_added && !c.err_eof && !c.blocked) {
            ssh_event_add_fd(ev_, c.err, POLLIN, &emb_session::child_err, &c);
            c.err_added = true;
        }
        if (c.out_eof && c.out_added) {
            ssh_event_remove_fd(ev_, c.out);
            c.out_added = false;
        }
        if (c.err_eof && c.err_added) {
            ssh_event_remove_fd(ev_, c.err);
            c.err_added = false;
        }
        if (!c.exited && ::waitpid(c.pid, &c.status, WNOHANG) == c.pid) c.exited = true;
    }
    if (ssh_channel_is_closed(c.ch)) {
        end_child(c, true);
        c.finished = true;
        return;
    }
    // All output sent, the child reaped: exit status, EOF, close (RFC 4254 6.10).
    if (c.pid > 0 && c.exited && c.out_eof && c.err_eof) {
        if (WIFEXITED(c.status)) {
            ssh_channel_request_send_exit_status(c.ch, WEXITSTATUS(c.status));
        } else if (WIFSIGNALED(c.status)) {
            const char* name = "KILL";
            switch (WTERMSIG(c.status)) {
            case SIGHUP: name = "HUP"; break;
            case SIGINT: name = "INT"; break;
            case SIGTERM: name = "TERM"; break;
            case SIGSEGV: name = "SEGV"; break;
            case SIGPIPE: name = "PIPE"; break;
            case SIGQUIT: name = "QUIT"; break;
            case SIGABRT: name = "ABRT"; break;
            default: break;
            }
            ssh_channel_request_send_exit_signal(c.ch, name, 0, "", "");
        }
        ssh_channel_send_eof(c.ch);
        ssh_channel_close(c.ch);
        end_child(c, false);
        c.finished = true;
    }
}

void emb_session::run(int fd)
{
    std::string why;
    keys_ = load_authorized_keys(srv_.opt_.authorized_keys, why);
    if (!why.empty()) srv_.host_.warn("ssh embedded: " + why);
    s_ = ssh_new();
    if (!s_) {
        ::close(fd);
        return;
    }
    const long grace = login_grace_s;
    ssh_options_set(s_, SSH_OPTIONS_TIMEOUT, &grace);
    int rc;
    {
        std::lock_guard l{srv_.bind_mutex_};
        rc = ssh_bind_accept_fd(srv_.bind_, s_, fd);
    }
    if (rc != SSH_OK) {
        srv_.host_.warn("ssh embedded: " + what_ + ": cannot start a session");
        ::close(fd);
        ssh_free(s_);
        for (auto k : keys_) ssh_key_free(k);
        return;
    }
    ssh_server_callbacks_struct scb{};
    ssh_callbacks_init(&scb);
    scb.userdata = this;
    scb.auth_pubkey_function = &emb_session::auth_pubkey;
    scb.channel_open_request_session_function = &emb_session::open_session;
    ssh_set_server_callbacks(s_, &scb);
    ssh_set_auth_methods(s_, SSH_AUTH_METHOD_PUBLICKEY);

    if (ssh_handle_key_exchange(s_) != SSH_OK) {
        srv_.host_.info("ssh embedded: " + what_ + ": key exchange failed: " + ssh_get_error(s_));
    } else {
        ev_ = ssh_event_new();
        ssh_event_add_session(ev_, s_);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{login_grace_s};
        bool had_channel = false;
        while (!srv_.stopping_) {
            if (ssh_event_dopoll(ev_, poll_ms) == SSH_ERROR) break;
            if (!authed_ && std::chrono::steady_clock::now() > deadline) {
                srv_.host_.info("ssh embedded: " + what_ + ": no authentication within " +
                                std::to_string(login_grace_s) + " s");
                break;
            }
            for (auto& c : channels_) step(*c);
            for (auto it = channels_.begin(); it != channels_.end();) {
                if ((*it)->finished) {
                    ssh_channel_free((*it)->ch);
                    it = channels_.erase(it);
                    had_channel = true;
                } else {
                    ++it;
                }
            }
            if (!ssh_is_connected(s_)) break;
            // Like sshd without a ControlMaster: the session ends when the
            // client closes it; OpenSSH does once its last channel is done.
            (void)had_channel;
        }
        for (auto& c : channels_) end_child(*c, true);
        channels_.clear();
        ssh_event_remove_session(ev_, s_);
        ssh_event_free(ev_);
        ev_ = nullptr;
    }
    if (ssh_is_connected(s_)) ssh_disconnect(s_);
    ssh_free(s_);
    for (auto k : keys_) ssh_key_free(k);
    keys_.clear();
}

}  // namespace

embedded_server::embedded_server(sdk::host h, tunnel_options o) : host_(h), opt_(std::move(o))
{
    shell_ = opt_.shell;
    if (shell_.empty()) {
        const char* s = std::getenv("SHELL");
        shell_ = s && *s ? s : "/bin/sh";
    }
    sftp_server_ = opt_.sftp_server.empty() ? default_sftp_server : opt_.sftp_server;
}

embedded_server::~embedded_server()
{
    stopping_ = true;
    std::unique_lock l{count_mutex_};
    count_cv_.wait(l, [this] { return sessions_ == 0; });
    l.unlock();
    if (bind_) ssh_bind_free(bind_);
}

bool embedded_server::check(const tunnel_options& o, std::string& why)
{
    if (o.authorized_keys.empty()) {
        why = "options.authorized_keys is required with server = \"embedded\"";
        return false;
    }
    if (o.host_key.empty()) {
        why = "options.host_key is required with server = \"embedded\" (created on first use)";
        return false;
    }
    std::string err;
    auto keys = load_authorized_keys(o.authorized_keys, err);
    const bool none = keys.empty();
    for (auto k : keys) ssh_key_free(k);
    if (!err.empty()) {
        why = err;
        return false;
    }
    if (none) {
        why = "no keys in " + o.authorized_keys;
        return false;
    }
    if (!o.shell.empty() && ::access(o.shell.c_str(), X_OK) != 0) {
        why = "options.shell \"" + o.shell + "\" is not executable";
        return false;
    }
    return true;
}

bool embedded_server::ensure_bind(std::string& why)
{
    std::lock_guard l{bind_mutex_};
    if (bind_) return true;
    try {
        bool created = false;
        ssh_key key = load_or_create_host_key(opt_.host_key, created);
        const auto fp = fingerprint(key);
        bind_ = ssh_bind_new();
        if (!bind_ || ssh_bind_options_set(bind_, SSH_BIND_OPTIONS_IMPORT_KEY, key) != SSH_OK) {
            ssh_key_free(key);
            if (bind_) ssh_bind_free(bind_);
            bind_ = nullptr;
            why = "cannot use the host key";
            return false;
        }
        host_.info("ssh embedded: host key " + opt_.host_key + (created ? " (created)" : "") +
                   " fingerprint " + fp);
        return true;
    } catch (const std::exception& e) {
        why = e.what();
        return false;
    }
}

void embedded_server::serve(mg_handle stream, const mg_stream_info& info)
{
    const std::string what = "tunnel " + std::string{sdk::view(info.tunnel)} + " client " +
                             std::string{sdk::view(info.peer)};
    std::string why;
    if (!ensure_bind(why)) {
        host_.warn("ssh embedded: " + what + ": " + why);
        host_.reset(stream, "embedded SSH server unavailable");
        return;
    }
    {
        std::lock_guard l{count_mutex_};
        if (stopping_ || sessions_ >= max_embedded_sessions) {
            host_.warn("ssh embedded: " + what + " refused: " +
                       std::to_string(max_embedded_sessions) + " sessions open");
            host_.reset(stream, "too many SSH sessions");
            return;
        }
        ++sessions_;
    }
    host_.accept_stream(stream);
    const std::int64_t fd = host_.bridge_fd(stream);
    if (fd < 0) {
        host_.reset(stream, "bridge failed");
        std::lock_guard l{count_mutex_};
        --sessions_;
        count_cv_.notify_all();
        return;
    }
    const std::string peer{sdk::view(info.peer)};
    std::thread([this, fd, peer, what] {
        emb_session s{*this, peer, what};
        s.run(static_cast<int>(fd));
        std::lock_guard l{count_mutex_};
        --sessions_;
        count_cv_.notify_all();
    }).detach();
}

}  // namespace muxgate::ssh
