// The gateway's side of one agent connection: authentication, tunnel
// registration, and public connections into the agent's streams. Runs on
// the session's strand.
#pragma once

#include "gateway/gateway.hpp"
#include "net/socket_pipe.hpp"

namespace muxgate::gateway {

class agent_link final : public net::session_delegate,
                         public std::enable_shared_from_this<agent_link> {
public:
    agent_link(gateway& g, std::shared_ptr<net::session> s, std::string remote,
               std::string remote_ip);

    const std::string& name() const noexcept { return name_; }
    const std::string& remote() const noexcept { return remote_; }
    const std::shared_ptr<net::session>& session() const noexcept { return session_; }
    const net::strand_type& strand() const noexcept { return session_->get_executor(); }

    // From any thread: end this session because a newer one of the same
    // agent took over, because its credentials were revoked, or to drain.
    void replace();
    void revoke(std::string why);
    void drain(std::chrono::milliseconds grace);

    // On the strand: a client connected to one of our tunnel ports.
    void on_public_connection(net::socket_pipe::socket_type sock, std::string peer,
                              const std::string& tunnel);

    // session_delegate
    void on_session_message(net::session&, wire::control_message&& m) override;
    void on_stream(net::session&, const std::shared_ptr<net::stream_pipe>& s,
                   wire::msg::open&&) override;
    void on_closed(net::session&, mux::close_code code, const std::string& reason) override;

private:
    struct tunnel_state {
        std::shared_ptr<plugin::plugin_host> plugin;
        std::uint16_t port = 0;
        mg_ingress ingress = MG_INGRESS_PORT;
    };

    void on_auth(wire::msg::auth&& a);
    void on_register(wire::msg::register_tunnel&& r);
    void unregister(const std::string& tunnel, bool offline);
    void refuse(const wire::msg::register_tunnel& r, std::string code, std::string message);

    gateway& gw_;
    std::shared_ptr<net::session> session_;
    std::string remote_;
    std::string remote_ip_;
    std::string name_;
    bool authed_ = false;
    bool gone_ = false;
    permissions perms_;
    std::map<std::string, tunnel_state> tunnels_;
};

}  // namespace muxgate::gateway
