// The gateway's SSH jump host: one libssh server session per client, each
// in a thread of its own, on a socketpair the host bridges to the client's
// connection (bridge_fd). A client authenticates with a listed public key and
// asks for direct-tcpip channels to tunnel names; each channel becomes a
// stream to the agent that registered the tunnel, relayed both ways with
// flow control. The inner SSH session is never decrypted here.
#pragma once

#include "common.hpp"
#include "config.hpp"
#include "ssh_text.hpp"

#include <libssh/server.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <vector>

namespace muxgate::ssh {

class jump_server {
public:
    // Resolves a target name to a registered tunnel (the plugin's table).
    using resolver = std::function<resolution(std::string_view)>;

    jump_server(sdk::host h, gateway_config cfg, resolver resolve);
    ~jump_server();  // waits for every session thread to end
    jump_server(const jump_server&) = delete;
    jump_server& operator=(const jump_server&) = delete;

    // Loads or creates the host key, logs its fingerprint and listens.
    // Returns false (logged) when that fails.
    bool start(void* listener_tag);

    // A client connected to the jump port.
    void accept(mg_handle client, const mg_accept_info& info);

    struct user_keys {
        const jump_user* user;
        std::vector<ssh_key> keys;
    };

    // Used by the sessions.
    sdk::host host_;
    gateway_config cfg_;
    resolver resolve_;
    std::vector<user_keys> users_;
    std::mutex bind_mutex_;
    ssh_bind bind_ = nullptr;

    // Sessions running; the destructor waits for zero.
    std::mutex count_mutex_;
    std::condition_variable count_cv_;
    std::uint32_t sessions_ = 0;
    std::atomic<bool> stopping_{false};
};

}  // namespace muxgate::ssh
