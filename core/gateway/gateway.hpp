// The gateway process: the front door for agents (TLS WebSocket), the
// registry of agents, tunnels and public ports, and the host services that
// plugins call.
//
// Threads: one io_context run by N threads. Each agent session, with its
// tunnels' public connections and streams, lives on its own strand; the
// registry is shared and guarded by one mutex that is never held while a
// plugin or a session is called.
#pragma once

#include "common/rate_limit.hpp"
#include "config/config.hpp"
#include "net/session.hpp"
#include "net/tls_stream.hpp"
#include "net/tls.hpp"
#include "plugin/host.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace muxgate::gateway {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
// Listeners whose connections become socket pipes accept straight into the
// pipe's socket type, with the peer address from accept() itself.
using pipe_acceptor = asio::basic_socket_acceptor<asio::generic::stream_protocol>;

class agent_link;

// What an authenticated agent may do.
struct permissions {
    bool any = false;                         // quick mode: every protocol and port
    std::vector<std::string> protocols;       // empty: every protocol
    bool all_protocols = true;
    std::vector<config::port_range> ports;
    std::map<std::string, std::string> plugin_acl;
    bool may_use(std::string_view plugin) const;
    bool may_bind(std::uint32_t port) const;
    std::string acl_for(std::string_view plugin) const;
};

struct auth_decision {
    bool ok = false;
    std::string code;     // AuthError code when !ok
    std::string message;  // for the agent (never says which part was wrong)
    std::string log;      // for our log (says which)
    permissions perms;
};

// A public port bound for one tunnel. It belongs to the registry, not to a
// session, so an agent that reconnects (or whose new session replaces a
// half-dead one) takes the listening socket over without a gap.
class port_listener : public std::enable_shared_from_this<port_listener> {
public:
    port_listener(asio::io_context& io, tcp::endpoint ep);
    // Binds; false with `error` (e.g. "Address already in use").
    bool open(std::string& error);
    void start();
    void close();
    void set_owner(std::weak_ptr<agent_link> owner, std::string tunnel);
    bool owned_by(const agent_link* l);
    std::uint16_t port() const noexcept { return port_; }
    std::string address() const;

private:
    asio::awaitable<void> loop();

    asio::strand<asio::io_context::executor_type> strand_;
    pipe_acceptor acceptor_;
    tcp::endpoint endpoint_;
    std::uint16_t port_;
    std::mutex m_;
    std::weak_ptr<agent_link> owner_;
    std::string tunnel_;
};

class gateway final : public plugin::host_services {
public:
    gateway(config::gateway_config cfg, std::string config_path,
            std::shared_ptr<asio::ssl::context> tls);
    ~gateway() override;

    // Load and create plugins; every refusal is logged.
    plugin::load_outcome load_plugins(const std::string& modules_dir);
    // Bind, serve until drained or stopped. Returns the process exit code.
    int run();

    // ---- host_services ----
    asio::io_context& io() override { return io_; }
    mg_role role() const override { return MG_ROLE_GATEWAY; }
    std::shared_ptr<net::pipe> open_stream(plugin::plugin_host& p, std::string_view agent,
                                           std::string_view tunnel, std::string_view meta,
                                           const std::shared_ptr<net::pipe>& owner,
                                           mg_status& status) override;
    std::shared_ptr<net::pipe> connect(plugin::plugin_host&, std::string_view, std::uint16_t,
                                       std::string_view, const std::shared_ptr<net::pipe>&,
                                       mg_status& status) override
    {
        status = MG_ERR_UNSUPPORTED;
        return nullptr;
    }
    mg_status listen(plugin::plugin_host& p, std::string_view address, std::string_view options,
                     void* listener_user) override;
    mg_status claim_https(plugin::plugin_host& p, void* listener_user) override;
    net::pipe_limits pipe_limits() const override;

    // ---- for agent_link (any thread) ----
    auth_decision authenticate(const std::string& name, const std::string& token,
                               const std::string& source_ip);
    // The link is now the agent's session; an older one is told to go.
    bool agent_online(const std::shared_ptr<agent_link>& link, std::string& why);
    void agent_offline(agent_link& link);
    // Bind (or take over) a public port for a tunnel; false with `error`.
    // `port` 0 lets the gateway choose: any free port for an agent allowed
    // every port, else the first free port of its ranges. `port` is set to
    // the port bound.
    bool claim_port(agent_link& link, const permissions& perms, const std::string& tunnel,
                    std::uint16_t& port, std::string& address, std::string& error);
    void release_port(agent_link& link, std::uint16_t port);
    void add_route(const std::string& agent, const std::string& tunnel, std::uint8_t protocol,
                   const std::shared_ptr<agent_link>& link);
    // Only removes the route if `link` still owns it (a newer session of the
    // same agent may have registered it again).
    void remove_route(const agent_link* link, const std::string& agent, const std::string& tunnel,
                      bool offline);

    const config::gateway_config& cfg() const noexcept { return cfg_; }
    const config::limits& limits() const noexcept { return cfg_.lim; }
    net::session_options session_options() const;
    plugin::plugin_set& plugins() noexcept { return plugins_; }
    failure_limiter& limiter() noexcept { return limiter_; }

private:
    struct auth_table {
        std::unordered_map<std::string, config::agent_entry> agents;
        std::optional<token::digest> shared;
    };
    struct port_slot {
        std::string agent;
        std::string tunnel;
        std::shared_ptr<port_listener> listener;  // null while only reserved
        net::clock::time_point reserved_until{};
    };
    struct route {
        std::uint8_t protocol = 0;
        std::weak_ptr<agent_link> link;
        bool offline = false;
        net::clock::time_point offline_until{};
    };

    bool bind_port(agent_link& link, const std::string& tunnel, std::uint16_t port,
                   std::string& address, std::string& error);
    // The context for a new connection (round robin).
    asio::io_context& pick_io();
    void stop_all();
    asio::awaitable<void> accept_loop();
    asio::awaitable<void> handle_connection(net::strand_type strand,
                                            net::tls_stream::socket_type sock, std::string remote);
    asio::awaitable<void> tls_accept(net::strand_type strand, net::tls_stream::socket_type sock,
                                     std::string peer, std::shared_ptr<plugin::plugin_host> p,
                                     void* user);
    asio::awaitable<void> plugin_accept_loop(std::shared_ptr<pipe_acceptor> a,
                                             std::shared_ptr<plugin::plugin_host> p, void* user,
                                             bool with_tls);
    void on_signal(const boost::system::error_code& ec, int sig);
    void drain();
    void reload();
    void stop_listeners();
    static std::shared_ptr<const auth_table> make_auth(const config::gateway_config& c);

    config::gateway_config cfg_;
    std::string config_path_;
    std::shared_ptr<asio::ssl::context> tls_;
    // One io_context per thread, each run by one thread: an agent session,
    // its streams and its tunnels' public sockets all live on one of them,
    // so the data path never wakes another thread. ios_[0] also runs the
    // listeners, signals and plugin timers.
    std::vector<std::unique_ptr<asio::io_context>> ios_;
    asio::io_context& io_;
    std::atomic<std::size_t> next_io_{0};
    asio::signal_set signals_;
    pipe_acceptor acceptor_;
    plugin::plugin_set plugins_;
    failure_limiter limiter_;
    std::atomic<std::uint32_t> handshakes_{0};
    std::atomic<bool> draining_{false};

    std::mutex mutex_;  // guards everything below
    std::shared_ptr<const auth_table> auth_;
    std::unordered_map<std::string, std::weak_ptr<agent_link>> online_;
    std::map<std::uint16_t, port_slot> ports_;
    std::map<std::pair<std::string, std::string>, route> routes_;
    std::vector<std::shared_ptr<pipe_acceptor>> plugin_listeners_;
    std::shared_ptr<plugin::plugin_host> https_claim_;
    void* https_user_ = nullptr;
};

}  // namespace muxgate::gateway
