// The ssh plugin's configuration: the gateway's [plugins.ssh] table and the
// options of an agent's ssh tunnel, parsed from the JSON the host hands over.
// Errors throw std::runtime_error at start (create / check_tunnel) with the
// key that is wrong; nothing here runs on the data path.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace muxgate::ssh {

struct jump_user {
    std::string name;                      // the login name the client uses on the jump host
    std::vector<std::string> keys;         // authorized_keys lines (inline and from files)
    std::vector<std::string> allow;        // target globs ("office-pc", "lab-*", "agent.*")
};

struct gateway_config {
    bool log_banners = true;               // log the client's version banner on tunnel ports
    bool jump_enabled = false;
    std::string jump_listen;               // "ip:port"
    std::string host_key;                  // OpenSSH private key file, created if missing
    // Limits, each with its reason:
    std::uint32_t max_sessions = 64;       // concurrent jump sessions (one thread each)
    std::uint32_t max_channels = 16;       // direct-tcpip channels per session (ControlMaster)
    std::uint32_t login_grace_s = 30;      // key exchange + authentication must finish by then
    std::uint32_t max_auth_attempts = 6;   // auth requests per session before it is dropped
    std::uint32_t open_timeout_ms = 15000; // the agent answers a stream open by then
    std::vector<jump_user> users;
};

// Parses [plugins.ssh]; throws std::runtime_error naming the key.
gateway_config parse_gateway_config(std::string_view json);

struct tunnel_options {
    bool embedded = false;                 // options.server = "embedded"
    std::string authorized_keys;           // embedded: public keys allowed in
    std::string host_key;                  // embedded: private host key, created if missing
    std::string shell;                     // embedded: login shell, default $SHELL or /bin/sh
    std::string sftp_server;               // embedded: sftp-server binary for the sftp subsystem
};

// Parses an ssh tunnel's options; throws std::runtime_error naming the key.
tunnel_options parse_tunnel_options(std::string_view json);

}  // namespace muxgate::ssh
