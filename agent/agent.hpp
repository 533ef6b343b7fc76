// The agent process: dials out to the gateway (optionally through an HTTP
// CONNECT proxy), authenticates, registers its tunnels, serves the streams
// the gateway opens by handing them to protocol plugins, and reconnects with
// backoff when the connection ends.
#pragma once

#include "common/backoff.hpp"
#include "config/config.hpp"
#include "net/address.hpp"
#include "net/session.hpp"
#include "plugin/host.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <map>
#include <mutex>
#include <memory>
#include <string>

namespace muxgate::agent {

namespace asio = boost::asio;

class agent final : public plugin::host_services {
public:
    agent(config::agent_config cfg, std::string token, net::url gateway,
          std::shared_ptr<asio::ssl::context> tls);
    ~agent() override;

    plugin::load_outcome load_plugins(const std::string& modules_dir);
    // Check the tunnels against the loaded plugins; problems are returned.
    std::vector<std::string> check_tunnels() const;
    int run();

    // ---- host_services ----
    asio::io_context& io() override { return io_; }
    mg_role role() const override { return MG_ROLE_AGENT; }
    std::shared_ptr<net::pipe> open_stream(plugin::plugin_host&, std::string_view, std::string_view,
                                           std::string_view, const std::shared_ptr<net::pipe>&,
                                           mg_status& status) override
    {
        status = MG_ERR_UNSUPPORTED;
        return nullptr;
    }
    std::shared_ptr<net::pipe> connect(plugin::plugin_host& p, std::string_view host,
                                       std::uint16_t port, std::string_view options,
                                       const std::shared_ptr<net::pipe>& owner,
                                       mg_status& status) override;
    mg_status listen(plugin::plugin_host&, std::string_view, std::string_view, void*) override
    {
        return MG_ERR_UNSUPPORTED;
    }
    mg_status claim_https(plugin::plugin_host&, void*) override { return MG_ERR_UNSUPPORTED; }
    net::pipe_limits pipe_limits() const override;

    // ---- for the session delegate (on the connection strand) ----
    void on_auth_ok(net::session& s, const wire::msg::auth_ok& ok);
    void on_auth_error(const wire::msg::auth_error& e);
    void on_stream(net::session& s, const std::shared_ptr<net::stream_pipe>& p,
                   wire::msg::open&& o);
    void on_session_closed(mux::close_code code, const std::string& reason);
    void on_goodbye(const wire::msg::goodbye& g);
    void on_registered(const wire::msg::registered& r);
    void on_register_error(net::session& s, const wire::msg::register_error& r);

private:
    asio::awaitable<void> connect_loop();
    asio::awaitable<std::shared_ptr<net::ws_transport>> dial(std::string& error, bool& retryable);
    void on_signal(const boost::system::error_code& ec, int sig);
    net::session_options session_options() const;
    // TLS contexts for local targets, one per (verify, CA file).
    std::shared_ptr<asio::ssl::context> client_context(bool verify, const std::string& ca);
    std::mutex tls_mutex_;
    std::map<std::string, std::shared_ptr<asio::ssl::context>> tls_targets_;
    void send_register(net::session& s, const config::tunnel_config& t, std::uint32_t id,
                       std::uint16_t port);

    config::agent_config cfg_;
    std::string token_;
    net::url gateway_;
    std::shared_ptr<asio::ssl::context> tls_;
    asio::io_context io_;
    net::strand_type strand_;
    asio::signal_set signals_;
    plugin::plugin_set plugins_;
    backoff backoff_;

    // connection state, on strand_
    std::shared_ptr<net::session> session_;
    asio::steady_timer closed_;  // cancelled when the session ends
    asio::steady_timer sleep_;   // backoff wait, cancelled on shutdown
    // Ports the gateway chose for remote_port = 0 tunnels, asked for again
    // after a reconnect so a tunnel keeps its public address.
    std::map<std::string, std::uint16_t> assigned_ports_;
    bool stopping_ = false;
    bool authed_ = false;
    std::uint32_t retry_hint_ms_ = 0;
};

}  // namespace muxgate::agent
