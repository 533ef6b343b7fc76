// Pieces shared by the ssh plugin's parts: per-pipe contexts, host keys.
#pragma once

#include <muxgate/plugin.hpp>

#include <libssh/libssh.h>

#include <cstdint>
#include <memory>
#include <string>

namespace muxgate::ssh {

// What a pipe's `user` pointer points to. The plugin forwards every pipe
// event to it. A context keeps itself alive (self_) until the last pipe it
// serves is closed, so a raw `user` pointer is valid for every event.
class pipe_ctx {
public:
    virtual ~pipe_ctx() = default;
    virtual void on_data(mg_handle, const std::uint8_t*, std::size_t) {}
    virtual void on_fin(mg_handle) {}
    virtual void on_writable(mg_handle) {}
    virtual void on_open(mg_handle) {}
    virtual void on_closed(mg_handle, const mg_close_info&) = 0;

protected:
    std::shared_ptr<pipe_ctx> self_;
};

// Loads an OpenSSH private key, or creates an ed25519 one (mode 0600) when
// the file does not exist. Throws std::runtime_error with the path and why.
// OWNERSHIP: the caller frees the key (ssh_key_free).
ssh_key load_or_create_host_key(const std::string& path, bool& created);

// "SHA256:<base64>" of a public key, as ssh-keygen -l prints it.
std::string fingerprint(ssh_key key);

// Microseconds as "1.234s" for log lines.
std::string seconds_text(std::uint64_t us);

}  // namespace muxgate::ssh
