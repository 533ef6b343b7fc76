#include "gateway/agent_link.hpp"

#include "common/log.hpp"
#include "net/socket_pipe.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <openssl/rand.h>

namespace muxgate::gateway {

namespace msg = wire::msg;

namespace {

// Smallest limits an agent may announce: below these the writer would cut
// every message into uselessly small frames.
constexpr std::uint32_t min_peer_frame = 4096;
constexpr std::uint32_t min_peer_message = 16 * 1024;
constexpr std::uint32_t min_peer_window = 1024;

bool valid_name(std::string_view s)
{
    if (s.empty() || s.size() > 64) return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    return true;
}

std::string session_id()
{
    unsigned char raw[12];
    RAND_bytes(raw, sizeof raw);
    std::string out;
    for (unsigned char c : raw) out += fmt::format("{:02x}", c);
    return out;
}

}  // namespace

agent_link::agent_link(gateway& g, std::shared_ptr<net::session> s, std::string remote,
                       std::string remote_ip)
    : gw_(g), session_(std::move(s)), remote_(std::move(remote)), remote_ip_(std::move(remote_ip))
{
}

void agent_link::replace()
{
    asio::dispatch(strand(), [self = shared_from_this()] {
        spdlog::info("agent={} session from {} replaced by a newer connection", self->name_,
                     self->remote_);
        // Give the tunnels up now: the new session takes the ports over.
        self->gone_ = true;
        self->session_->close(mux::close_code::replaced, "replaced by a newer session of this agent");
    });
}

void agent_link::revoke(std::string why)
{
    asio::dispatch(strand(), [self = shared_from_this(), why = std::move(why)]() mutable {
        spdlog::warn("agent={} disconnected: {}", self->name_, why);
        self->session_->close(mux::close_code::auth_failed, std::move(why));
    });
}

void agent_link::drain(std::chrono::milliseconds grace)
{
    asio::dispatch(strand(), [self = shared_from_this(), grace] {
        for (auto& [name, t] : self->tunnels_)
            if (t.port) self->gw_.release_port(*self, t.port);
        self->session_->drain(grace, "gateway is shutting down");
    });
}

// ------------------------------------------------------------------ messages

void agent_link::on_session_message(net::session&, wire::control_message&& m)
{
    if (auto* a = std::get_if<msg::auth>(&m)) return on_auth(std::move(*a));
    if (auto* r = std::get_if<msg::register_tunnel>(&m)) return on_register(std::move(*r));
    if (auto* u = std::get_if<msg::unregister>(&m)) {
        if (tunnels_.count(u->tunnel)) {
            spdlog::info("agent={} tunnel={} unregistered", name_, u->tunnel);
            unregister(u->tunnel, false);
        }
        return;
    }
    if (auto* g = std::get_if<msg::goodbye>(&m)) {
        spdlog::info("agent={} says goodbye: {}", name_, g->reason);
        // No new connections for a leaving agent; running streams finish.
        std::vector<std::string> names;
        for (auto& [n, t] : tunnels_) names.push_back(n);
        for (auto& n : names) unregister(n, true);
        return;
    }
    if (auto* e = std::get_if<msg::error>(&m)) {
        spdlog::warn("agent={} reports error {}: {}", name_, e->code, e->message);
        return;
    }
}

void agent_link::on_auth(msg::auth&& a)
{
    auto fail = [&](std::string code, std::string message, mux::close_code cc, std::string log) {
        spdlog::warn("auth failed from {} (agent \"{}\"): {}", remote_,
                     a.agent.substr(0, 64), log);
        session_->send(msg::auth_error{std::move(code), message, 0});
        session_->close(cc, std::move(message), true);
    };
    if (a.protocol != wire::protocol_version)
        return fail("unsupported_version",
                    fmt::format("protocol version {} is not supported (this gateway speaks {})",
                                a.protocol, wire::protocol_version),
                    mux::close_code::version, fmt::format("protocol version {}", a.protocol));
    if (!valid_name(a.agent))
        return fail("bad_name", "agent name must be 1-64 of A-Z a-z 0-9 . _ -",
                    mux::close_code::policy, "invalid agent name");
    if (a.max_frame < min_peer_frame || a.max_message < min_peer_message ||
        a.window < min_peer_window || a.max_message < a.max_frame + wire::frame_header_size)
        return fail("bad_limits",
                    fmt::format("announced limits too small (window >= {}, max_frame >= {}, "
                                "max_message >= {} and >= max_frame + 5)",
                                min_peer_window, min_peer_frame, min_peer_message),
                    mux::close_code::policy, "limits too small");
    auto d = gw_.authenticate(a.agent, a.token, remote_ip_);
    if (!d.ok) return fail(d.code, d.message, mux::close_code::auth_failed, d.log);

    name_ = a.agent;
    perms_ = std::move(d.perms);
    authed_ = true;
    session_->set_label(fmt::format("agent={}", name_));
    std::string why;
    if (!gw_.agent_online(shared_from_this(), why)) {
        session_->send(msg::auth_error{"limit", why, 5000});
        session_->close(mux::close_code::limit, why, true);
        return;
    }
    session_->establish(a.window, a.max_frame, a.max_message);
    const auto& l = gw_.limits();
    msg::auth_ok ok;
    ok.session = session_id();
    ok.version = MUXGATE_VERSION;
    ok.heartbeat_ms = l.heartbeat_interval_ms;
    ok.window = l.stream_window;
    ok.max_frame = l.max_frame_payload;
    ok.max_message = l.max_message;
    ok.max_streams = l.max_streams_per_agent;
    ok.max_tunnels = l.max_tunnels_per_agent;
    session_->send(ok);
    spdlog::info("agent={} connected from {} (version {}, session {})", name_, remote_,
                 a.version.empty() ? "?" : a.version.substr(0, 32), ok.session);
}

void agent_link::refuse(const msg::register_tunnel& r, std::string code, std::string message)
{
    spdlog::warn("agent={} tunnel={} refused: {}", name_, r.tunnel.substr(0, 64), message);
    session_->send(msg::register_error{r.id, r.tunnel, std::move(code), std::move(message)});
}

void agent_link::on_register(msg::register_tunnel&& r)
{
    if (gone_ || session_->closing()) return;
    if (!valid_name(r.tunnel))
        return refuse(r, "bad_name", "tunnel name must be 1-64 of A-Z a-z 0-9 . _ -");
    if (tunnels_.count(r.tunnel))
        return refuse(r, "duplicate", fmt::format("tunnel \"{}\" is already registered", r.tunnel));
    if (tunnels_.size() >= gw_.limits().max_tunnels_per_agent)
        return refuse(r, "limit", fmt::format("max_tunnels_per_agent ({}) reached",
                                              gw_.limits().max_tunnels_per_agent));
    auto plugin = gw_.plugins().by_id(r.protocol_id);
    if (!plugin)
        return refuse(r, "unknown_protocol",
                      fmt::format("no plugin for protocol_id {} on this gateway", r.protocol_id));
    if (!perms_.may_use(plugin->name()))
        return refuse(r, "denied", fmt::format("agent may not use protocol \"{}\"", plugin->name()));

    const std::string acl = perms_.acl_for(plugin->name());
    mg_tunnel_request req{};
    req.struct_size = sizeof req;
    req.agent = mg_str{name_.data(), name_.size()};
    req.tunnel = mg_str{r.tunnel.data(), r.tunnel.size()};
    req.remote_port = r.remote_port;
    req.options_json = mg_str{r.options.data(), r.options.size()};
    req.acl_json = mg_str{acl.data(), acl.size()};
    mg_tunnel_decision dec{};
    dec.struct_size = sizeof dec;
    const mg_status st = plugin->tunnel_register(req, dec);
    if (st != MG_OK)
        return refuse(r, "plugin_refused",
                      dec.message[0] ? std::string{dec.message}
                                     : fmt::format("plugin \"{}\" refused the tunnel", plugin->name()));

    tunnel_state t;
    t.plugin = plugin;
    t.ingress = dec.ingress == MG_INGRESS_ROUTED ? MG_INGRESS_ROUTED : MG_INGRESS_PORT;
    std::string address = dec.message;
    if (t.ingress == MG_INGRESS_PORT) {
        if (r.remote_port != 0 && !perms_.may_bind(r.remote_port)) {
            plugin->tunnel_unregister(name_, r.tunnel);
            return refuse(r, "denied",
                          fmt::format("agent may not use public port {}", r.remote_port));
        }
        std::string bound, error;
        auto port = static_cast<std::uint16_t>(r.remote_port);
        if (!gw_.claim_port(*this, perms_, r.tunnel, port, bound, error)) {
            plugin->tunnel_unregister(name_, r.tunnel);
            return refuse(r, "port_unavailable", error);
        }
        t.port = port;
        if (address.empty()) address = bound;
    }
    tunnels_.emplace(r.tunnel, t);
    gw_.add_route(name_, r.tunnel, plugin->protocol_id(), shared_from_this());
    session_->send(msg::registered{r.id, r.tunnel, address});
    spdlog::info("agent={} tunnel={} protocol={} registered at {}", name_, r.tunnel,
                 plugin->name(), address);
}

void agent_link::unregister(const std::string& tunnel, bool offline)
{
    auto it = tunnels_.find(tunnel);
    if (it == tunnels_.end()) return;
    auto t = it->second;
    tunnels_.erase(it);
    if (t.port) gw_.release_port(*this, t.port);
    gw_.remove_route(this, name_, tunnel, offline);
    t.plugin->tunnel_unregister(name_, tunnel);
}

void agent_link::on_stream(net::session&, const std::shared_ptr<net::stream_pipe>& s,
                           msg::open&&)
{
    // The engine refuses Open from an agent before it gets here.
    s->abort(MG_CLOSE_REFUSED, "agents cannot open streams");
}

void agent_link::on_closed(net::session&, mux::close_code code, const std::string& reason)
{
    std::vector<std::string> names;
    for (auto& [n, t] : tunnels_) names.push_back(n);
    for (auto& n : names) unregister(n, true);
    if (authed_) {
        gw_.agent_offline(*this);
        spdlog::info("agent={} disconnected from {}: {} ({})", name_, remote_, reason,
                     static_cast<int>(code));
    } else {
        spdlog::debug("connection from {} closed before authentication: {}", remote_, reason);
    }
}

// ---------------------------------------------------------------- public side

void agent_link::on_public_connection(net::socket_pipe::socket_type sock, std::string peer,
                                      const std::string& tunnel)
{
    auto it = tunnels_.find(tunnel);
    if (it == tunnels_.end() || session_->closing() || session_->draining()) {
        boost::system::error_code ec;
        sock.set_option(asio::socket_base::linger{true, 0}, ec);
        sock.close(ec);
        return;
    }
    auto p = std::make_shared<net::socket_pipe>(MG_PIPE_PUBLIC, strand(), gw_.pipe_limits(),
                                                std::move(sock), std::move(peer), true);
    p->agent = name_;
    p->tunnel = tunnel;
    spdlog::debug("agent={} tunnel={} connection from {}", name_, tunnel, p->peer_address);
    mg_accept_info info{};
    info.struct_size = sizeof info;
    info.agent = mg_str{name_.data(), name_.size()};
    info.tunnel = mg_str{tunnel.data(), tunnel.size()};
    info.peer = mg_str{p->peer_address.data(), p->peer_address.size()};
    it->second.plugin->accept(p, info);
}

}  // namespace muxgate::gateway
