// Gateway and agent configuration: TOML files (etc/gateway.toml,
// etc/agent.toml) parsed with toml++. Parsing is sans-I/O (it takes the text
// and a name for messages); every problem is reported as
// "file:line:column: what is wrong" and all problems are reported at once.
// Unknown keys are errors, with a suggestion when a known key is close.
#pragma once

#include "common/token.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace muxgate::config {

struct problem {
    std::string file;
    std::uint32_t line = 0;
    std::uint32_t column = 0;
    std::string message;
    std::string text() const;  // "file:line:column: message"
};

// Limits shared by both sides; every one is named in docs/configuration.md.
struct limits {
    std::uint32_t max_frame_payload = 1024 * 1024;   // largest frame payload accepted
    std::uint32_t max_control_message = 64 * 1024;   // largest control JSON accepted
    std::uint32_t max_message = 4 * 1024 * 1024;     // largest WebSocket message accepted
    std::uint32_t write_message = 256 * 1024;        // largest WebSocket message written
    std::uint32_t write_quantum = 64 * 1024;         // bytes per stream per writer turn
    std::uint32_t socket_unsent = 64 * 1024;         // TCP_NOTSENT_LOWAT of the agent connection (0: kernel's)
    std::uint32_t stream_window = 256 * 1024;        // initial receive credit per stream
    std::uint32_t stream_window_max = 4 * 1024 * 1024;  // autotuned window's ceiling
    std::uint32_t window_growth_budget = 64 * 1024 * 1024;  // growth over all streams
    std::uint32_t high_watermark = 256 * 1024;       // unconsumed bytes before a socket pauses
    std::uint32_t max_streams_per_agent = 4096;
    std::uint32_t max_pending_opens = 1024;          // gateway: Opens not yet answered
    std::uint32_t max_tunnels_per_agent = 64;        // gateway
    std::uint32_t max_control_backlog = 1024 * 1024; // unsent control bytes before the peer is dropped
    std::uint32_t auth_timeout_ms = 10'000;
    std::uint32_t handshake_timeout_ms = 10'000;
    std::uint32_t heartbeat_interval_ms = 10'000;    // gateway
    std::uint32_t heartbeat_timeout_ms = 30'000;
    std::uint32_t open_timeout_ms = 10'000;          // gateway
    std::uint32_t stream_idle_timeout_s = 7'200;     // 0 = never
    std::uint32_t drain_timeout_ms = 15'000;         // gateway SIGTERM grace
    std::uint32_t max_agents = 10'000;               // gateway: concurrent agent sessions
    std::uint32_t max_handshakes = 256;              // gateway: connections before Auth
};

struct port_range {
    std::uint16_t first = 0;
    std::uint16_t last = 0;
    bool contains(std::uint32_t p) const noexcept { return p >= first && p <= last; }
};

struct agent_entry {
    std::string name;
    token::digest token_hash{};
    std::vector<std::string> protocols;  // plugin names; empty = none
    std::vector<port_range> ports;       // public ports it may bind; empty = none
    std::map<std::string, std::string> plugin_acl;  // plugin name -> JSON object
    std::uint32_t line = 0;
};

struct gateway_config {
    std::string file;
    std::string listen = "0.0.0.0:443";
    std::string path = "/muxgate";
    std::string public_bind = "0.0.0.0";  // address tunnel ports bind to
    std::uint32_t threads = 0;            // 0: one per core
    std::string modules_dir;              // empty: bundled directory
    std::vector<std::string> plugins;     // empty: every plugin found
    std::string log_level = "info";
    // TLS
    bool plaintext = false;               // ws:// only with insecure_plaintext = true
    std::string cert;
    std::string key;
    bool self_signed = false;
    std::vector<std::string> self_signed_names;
    // More certificates on the same port, chosen by SNI ([[tls.certificates]]).
    std::vector<std::pair<std::string, std::string>> extra_certs;  // cert, key
    // authentication
    std::vector<agent_entry> agents;
    std::optional<token::digest> shared_token;  // quick mode: any agent name, any port
    std::uint32_t auth_failure_burst = 10;      // failures allowed at once per source address
    std::uint32_t auth_failures_per_minute = 6; // refill rate
    std::uint32_t port_reservation_s = 300;     // a gone agent's ports stay its own this long
    limits lim;
    std::map<std::string, std::string> plugin_config;  // plugin name -> JSON object
};

struct tunnel_config {
    std::string name;
    std::string protocol;     // plugin name
    std::uint16_t remote_port = 0;
    std::string local_host;
    std::uint16_t local_port = 0;
    std::string options = "{}";  // JSON object
    std::uint32_t line = 0;      // where the [[tunnel]] is, for messages (0: command line)
    std::uint32_t column = 0;
};

struct agent_config {
    std::string file;
    std::string name;
    std::string gateway;        // wss://host[:port][/path]
    std::string token_file;
    std::string ca;
    bool insecure = false;
    std::string pin;
    std::string proxy;          // http://[user:pass@]host:port
    std::string modules_dir;
    std::vector<std::string> plugins;
    std::string log_level = "info";
    std::uint32_t backoff_initial_ms = 1'000;
    std::uint32_t backoff_max_ms = 30'000;
    std::uint32_t stable_after_s = 60;   // a session this old resets the backoff
    std::uint32_t connect_timeout_ms = 10'000;
    limits lim;
    std::vector<tunnel_config> tunnels;
    std::map<std::string, std::string> plugin_config;
};

struct gateway_result {
    gateway_config cfg;
    std::vector<problem> problems;
};
struct agent_result {
    agent_config cfg;
    std::vector<problem> problems;
};

gateway_result parse_gateway(std::string_view toml_text, std::string_view file_name);
agent_result parse_agent(std::string_view toml_text, std::string_view file_name);

// Reads and parses a file; an unreadable file is one problem.
gateway_result load_gateway(const std::string& path);
agent_result load_agent(const std::string& path);

// "PROTO:REMOTE_PORT:LOCAL_HOST:LOCAL_PORT" (LOCAL_HOST may be [v6]).
std::optional<tunnel_config> parse_tunnel_flag(std::string_view text, std::string& error);

// "tcp-20001", or "tcp-127.0.0.1-8080" when the gateway picks the port.
std::string default_tunnel_name(const tunnel_config& t);

// "20000-20099" or "2222".
std::optional<port_range> parse_port_range(std::string_view text, std::string& error);

}  // namespace muxgate::config
