// The agent-embedded SSH server (tunnel option server = "embedded"): for a
// host with no sshd, the agent accepts the stream itself, bridges it to a
// socketpair and runs a libssh server on it in a thread: public-key
// authentication against an authorized_keys file, shell and exec with or
// without a PTY, window changes, exit status, and the sftp subsystem through
// OpenSSH's sftp-server. Commands run as the agent's own user.
#pragma once

#include "common.hpp"
#include "config.hpp"

#include <libssh/server.h>

#include <atomic>
#include <condition_variable>
#include <mutex>

namespace muxgate::ssh {

class embedded_server {
public:
    embedded_server(sdk::host h, tunnel_options o);
    ~embedded_server();  // waits for every session thread to end
    embedded_server(const embedded_server&) = delete;
    embedded_server& operator=(const embedded_server&) = delete;

    // Agent start: are the options usable (files readable, keys valid)?
    static bool check(const tunnel_options& o, std::string& why);

    bool matches(const tunnel_options& o) const
    {
        return o.authorized_keys == opt_.authorized_keys && o.host_key == opt_.host_key &&
               o.shell == opt_.shell && o.sftp_server == opt_.sftp_server;
    }

    // Serves one stream (confirms it, bridges it, starts a session thread).
    void serve(mg_handle stream, const mg_stream_info& info);

    sdk::host host_;
    tunnel_options opt_;
    std::string shell_;
    std::string sftp_server_;
    std::mutex bind_mutex_;
    ssh_bind bind_ = nullptr;

    std::mutex count_mutex_;
    std::condition_variable count_cv_;
    std::uint32_t sessions_ = 0;
    std::atomic<bool> stopping_{false};

private:
    bool ensure_bind(std::string& why);
};

}  // namespace muxgate::ssh
