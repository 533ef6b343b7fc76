#include "gateway/gateway.hpp"

#include "common/log.hpp"
#include "gateway/agent_link.hpp"
#include "net/address.hpp"
#include "net/socket_pipe.hpp"
#include "net/sockopt.hpp"
#include "net/tls_pipe.hpp"
#include "net/ws.hpp"

#include <boost/json.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <fmt/format.h>

#include <csignal>
#include <cstring>
#include <thread>

namespace muxgate::gateway {

using boost::system::error_code;
using namespace std::chrono_literals;

namespace {

// Pending connections the kernel queues per listening socket.
constexpr int listen_backlog = 1024;

// After accept() fails for lack of descriptors, wait this long before trying
// again instead of spinning.
constexpr auto accept_retry_delay = 100ms;

tcp::endpoint make_endpoint(const std::string& host, std::uint16_t port, std::string& error)
{
    error_code ec;
    auto addr = host.empty() ? asio::ip::address{asio::ip::address_v4::any()}
                             : asio::ip::make_address(host, ec);
    if (ec) {
        error = fmt::format("\"{}\" is not an IP address", host);
        return {};
    }
    return tcp::endpoint{addr, port};
}

template <class Acceptor>
bool bind_acceptor(Acceptor& a, const tcp::endpoint& ep, std::string& error)
{
    using endpoint = typename Acceptor::endpoint_type;
    error_code ec;
    a.open(endpoint{ep}.protocol(), ec);
    if (!ec) a.set_option(asio::socket_base::reuse_address{true}, ec);
    if (!ec && ep.address().is_v6()) a.set_option(asio::ip::v6_only{false}, ec);
    if (!ec) a.bind(endpoint{ep}, ec);
    if (!ec) a.listen(listen_backlog, ec);
    if (ec) {
        error = fmt::format("cannot listen on {}: {}", net::format_endpoint(ep), ec.message());
        error_code ignored;
        a.close(ignored);
        return false;
    }
    return true;
}

// {"tls": true} in a small options object (no JSON library for one flag:
// a plugin's options are written by the plugin itself).
bool json_flag(std::string_view json, std::string_view key)
{
    boost::system::error_code ec;
    auto v = boost::json::parse(json.empty() ? std::string_view{"{}"} : json, ec);
    if (ec || !v.is_object()) return false;
    const auto* f = v.as_object().if_contains(key);
    return f && f->is_bool() && f->as_bool();
}

std::string ip_of(const std::string& host_port)
{
    if (!host_port.empty() && host_port.front() == '[') return host_port.substr(1, host_port.find(']') - 1);
    return host_port.substr(0, host_port.rfind(':'));
}

std::vector<std::unique_ptr<asio::io_context>> make_contexts(unsigned n)
{
    std::vector<std::unique_ptr<asio::io_context>> v;
    // Concurrency hint 1: each context is run by exactly one thread, so the
    // scheduler can skip the locking a shared context needs.
    for (unsigned i = 0; i < n; ++i) v.push_back(std::make_unique<asio::io_context>(1));
    return v;
}

}  // namespace

// ================================================================ permissions

bool permissions::may_use(std::string_view plugin) const
{
    if (any || all_protocols) return true;
    return std::find(protocols.begin(), protocols.end(), plugin) != protocols.end();
}

bool permissions::may_bind(std::uint32_t port) const
{
    if (any) return true;
    return std::any_of(ports.begin(), ports.end(), [&](const auto& r) { return r.contains(port); });
}

std::string permissions::acl_for(std::string_view plugin) const
{
    auto it = plugin_acl.find(std::string{plugin});
    return it == plugin_acl.end() ? "{}" : it->second;
}

// ============================================================== port_listener

port_listener::port_listener(asio::io_context& io, tcp::endpoint ep)
    : strand_(asio::make_strand(io)), acceptor_(strand_), endpoint_(ep), port_(ep.port())
{
}

bool port_listener::open(std::string& error)
{
    if (!bind_acceptor(acceptor_, endpoint_, error)) return false;
    error_code ec;
    // The real port when 0 was asked.
    const auto local = acceptor_.local_endpoint(ec);
    if (!ec && local.size() <= endpoint_.capacity()) {
        std::memcpy(endpoint_.data(), local.data(), local.size());
        endpoint_.resize(local.size());
    }
    port_ = endpoint_.port();
    return true;
}

std::string port_listener::address() const { return net::format_endpoint(endpoint_); }

void port_listener::set_owner(std::weak_ptr<agent_link> owner, std::string tunnel)
{
    std::lock_guard lock{m_};
    owner_ = std::move(owner);
    tunnel_ = std::move(tunnel);
}

bool port_listener::owned_by(const agent_link* l)
{
    std::lock_guard lock{m_};
    return owner_.lock().get() == l;
}

void port_listener::start()
{
    asio::co_spawn(strand_, [self = shared_from_this()] { return self->loop(); },
                   [](std::exception_ptr e) {
                       if (e) spdlog::error("port listener stopped unexpectedly");
                   });
}

void port_listener::close()
{
    asio::dispatch(strand_, [self = shared_from_this()] {
        error_code ec;
        self->acceptor_.close(ec);
    });
}

asio::awaitable<void> port_listener::loop()
{
    auto self = shared_from_this();
    asio::steady_timer pause{strand_};
    for (;;) {
        std::shared_ptr<agent_link> owner;
        std::string tunnel;
        {
            std::lock_guard lock{m_};
            owner = owner_.lock();
            tunnel = tunnel_;
        }
        if (!owner || !acceptor_.is_open()) co_return;
        // Accept straight onto the agent's strand (the public socket and the
        // streams it feeds then share one strand and relay without posting),
        // into the socket type the pipe uses, with the peer from accept().
        net::socket_pipe::socket_type sock{owner->strand()};
        pipe_acceptor::endpoint_type peer;
        auto [ec] = co_await acceptor_.async_accept(sock, peer, asio::as_tuple(asio::use_awaitable));
        if (ec) {
            if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
            spdlog::warn("accept on port {} failed: {}", port_, ec.message());
            pause.expires_after(accept_retry_delay);
            co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
            continue;
        }
        {
            std::lock_guard lock{m_};
            auto now_owner = owner_.lock();
            tunnel = tunnel_;
            if (now_owner != owner) {
                owner = std::move(now_owner);
                if (owner) {
                    // Ownership moved during the accept: rebind the socket to
                    // the new session's strand.
                    sock = net::socket_pipe::socket_type{owner->strand(), peer.protocol(),
                                                         sock.release()};
                }
            }
        }
        if (!owner) {
            error_code ignored;
            sock.close(ignored);
            continue;
        }
        asio::dispatch(owner->strand(), [owner, s = std::move(sock), peer, tunnel]() mutable {
            owner->on_public_connection(std::move(s), net::format_endpoint(peer), tunnel);
        });
    }
}

// ==================================================================== gateway

gateway::gateway(config::gateway_config cfg, std::string config_path,
                 std::shared_ptr<asio::ssl::context> tls)
    : cfg_(std::move(cfg)),
      config_path_(std::move(config_path)),
      tls_(std::move(tls)),
      ios_(make_contexts(cfg_.threads ? cfg_.threads : std::max(1u, std::thread::hardware_concurrency()))),
      io_(*ios_.front()),
      signals_(io_),
      acceptor_(io_),
      limiter_(cfg_.auth_failure_burst, cfg_.auth_failures_per_minute),
      auth_(make_auth(cfg_))
{
}

gateway::~gateway() = default;

std::shared_ptr<const gateway::auth_table> gateway::make_auth(const config::gateway_config& c)
{
    auto t = std::make_shared<auth_table>();
    for (const auto& a : c.agents) t->agents.emplace(a.name, a);
    t->shared = c.shared_token;
    return t;
}

net::pipe_limits gateway::pipe_limits() const
{
    net::pipe_limits p;
    p.high_watermark = cfg_.lim.high_watermark;
    p.low_watermark = cfg_.lim.high_watermark / 2;
    return p;
}

net::session_options gateway::session_options() const
{
    const auto& l = cfg_.lim;
    net::session_options o;
    o.limits.max_frame_payload = l.max_frame_payload;
    o.limits.max_control = l.max_control_message;
    o.limits.max_streams = l.max_streams_per_agent;
    o.limits.max_pending_opens = l.max_pending_opens;
    o.limits.recv_window = l.stream_window;
    o.limits.max_recv_window = l.stream_window_max;
    o.limits.window_growth_budget = l.window_growth_budget;
    o.pipes = pipe_limits();
    o.max_message_out = l.write_message;
    o.max_message_in = l.max_message;
    o.write_quantum = l.write_quantum;
    o.max_control_backlog = l.max_control_backlog;
    o.auth_timeout = std::chrono::milliseconds{l.auth_timeout_ms};
    o.heartbeat_interval = std::chrono::milliseconds{l.heartbeat_interval_ms};
    o.heartbeat_timeout = std::chrono::milliseconds{l.heartbeat_timeout_ms};
    o.open_timeout = std::chrono::milliseconds{l.open_timeout_ms};
    o.stream_idle_timeout = std::chrono::seconds{l.stream_idle_timeout_s};
    o.close_timeout = std::chrono::milliseconds{l.handshake_timeout_ms};
    return o;
}

plugin::load_outcome gateway::load_plugins(const std::string& modules_dir)
{
    return plugin::load_all(plugins_, *this, modules_dir, cfg_.plugins, cfg_.plugin_config);
}

// ------------------------------------------------------------------- serving

int gateway::run()
{
    std::string err;
    auto hp = net::parse_host_port(cfg_.listen, err, true);
    if (!hp) {
        spdlog::error("listen: {}", err);
        return 1;
    }
    auto ep = make_endpoint(hp->host, hp->port, err);
    if (!err.empty() || !bind_acceptor(acceptor_, ep, err)) {
        spdlog::error("{}", err);
        return 1;
    }
    spdlog::info("muxgate {} listening on {} ({}) for agents at path {}", MUXGATE_VERSION,
                 net::format_endpoint(acceptor_.local_endpoint()), tls_ ? "wss" : "ws, NO TLS",
                 cfg_.path);
    if (!tls_) spdlog::warn("TLS is off (insecure_plaintext): tokens and traffic travel in clear");

    signals_.add(SIGINT);
    signals_.add(SIGTERM);
    signals_.add(SIGHUP);
    signals_.async_wait([this](const error_code& ec, int sig) { on_signal(ec, sig); });

    asio::co_spawn(io_, accept_loop(), [](std::exception_ptr e) {
        if (e) spdlog::error("agent listener stopped unexpectedly");
    });

    std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
    for (auto& c : ios_) guards.push_back(asio::make_work_guard(*c));
    std::vector<std::thread> threads;
    for (std::size_t i = 1; i < ios_.size(); ++i)
        threads.emplace_back([c = ios_[i].get()] { c->run(); });
    io_.run();
    guards.clear();
    stop_all();
    for (auto& t : threads) t.join();
    plugins_.destroy_all();
    spdlog::info("gateway stopped");
    return 0;
}

asio::io_context& gateway::pick_io()
{
    return *ios_[next_io_.fetch_add(1, std::memory_order_relaxed) % ios_.size()];
}

void gateway::stop_all()
{
    for (auto& c : ios_) c->stop();
}

asio::awaitable<void> gateway::accept_loop()
{
    asio::steady_timer pause{io_};
    for (;;) {
        auto strand = asio::make_strand(pick_io());
        net::tls_stream::socket_type sock{strand};
        pipe_acceptor::endpoint_type remote_ep;
        auto [ec] = co_await acceptor_.async_accept(sock, remote_ep, asio::as_tuple(asio::use_awaitable));
        if (ec) {
            if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
            spdlog::warn("accept failed: {}", ec.message());
            pause.expires_after(accept_retry_delay);
            co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
            continue;
        }
        error_code rec;
        std::string remote = net::format_endpoint(remote_ep);
        const std::string ip = ip_of(remote);
        if (!limiter_.allowed(ip, net::clock::now())) {
            spdlog::debug("refusing {}: too many failed authentications", remote);
            sock.set_option(asio::socket_base::linger{true, 0}, rec);
            sock.close(rec);
            continue;
        }
        if (handshakes_.load() >= cfg_.lim.max_handshakes) {
            spdlog::warn("refusing {}: max_handshakes ({}) connections are still authenticating",
                         remote, cfg_.lim.max_handshakes);
            sock.close(rec);
            continue;
        }
        asio::co_spawn(strand, handle_connection(strand, std::move(sock), std::move(remote)),
                       [](std::exception_ptr e) {
                           if (!e) return;
                           try {
                               std::rethrow_exception(e);
                           } catch (const std::exception& ex) {
                               spdlog::error("connection handler failed: {}", ex.what());
                           }
                       });
    }
}

asio::awaitable<void> gateway::handle_connection(net::strand_type strand,
                                                 net::tls_stream::socket_type sock,
                                                 std::string remote)
{
    ++handshakes_;
    struct guard {
        std::atomic<std::uint32_t>& n;
        ~guard() { --n; }
    } g{handshakes_};
    net::tune_agent_socket(sock.native_handle(), cfg_.lim.socket_unsent, "agent connection from " + remote);

    net::ws_server_options wo;
    wo.path = cfg_.path;
    wo.handshake_timeout = std::chrono::milliseconds{cfg_.lim.handshake_timeout_ms};
    wo.max_message = cfg_.lim.max_message;
    std::shared_ptr<plugin::plugin_host> https;
    void* https_user = nullptr;
    {
        std::lock_guard lock{mutex_};
        https = https_claim_;
        https_user = https_user_;
    }
    wo.handoff = https != nullptr;
    auto res = co_await net::accept_agent(std::move(sock), tls_, wo);
    if (res.other) {
        // Not for us: the HTTP plugin that claimed the port takes it.
        auto p = std::make_shared<net::tls_pipe>(MG_PIPE_PUBLIC, strand, pipe_limits(), res.other,
                                                 remote, std::move(res.head));
        mg_accept_info info{};
        info.struct_size = sizeof info;
        info.listener_user = https_user;
        info.peer = mg_str{p->peer_address.data(), p->peer_address.size()};
        info.tls = p->tls ? 1 : 0;
        info.sni = mg_str{p->sni.data(), p->sni.size()};
        https->accept(p, info);
        co_return;
    }
    if (!res.ws) {
        spdlog::debug("front door {}: {}", remote, res.error);
        co_return;
    }
    if (draining_) {
        co_await res.ws->close(static_cast<std::uint16_t>(mux::close_code::going_away),
                               "gateway is shutting down");
        co_return;
    }
    auto s = std::make_shared<net::session>(
        strand, res.ws, mux::role::gateway,
        session_options(), fmt::format("agent@{}", remote));
    auto link = std::make_shared<agent_link>(*this, s, remote, ip_of(remote));
    s->start(link);
}

// ------------------------------------------------------------ authentication

auth_decision gateway::authenticate(const std::string& name, const std::string& token,
                                    const std::string& source_ip)
{
    std::shared_ptr<const auth_table> table;
    {
        std::lock_guard lock{mutex_};
        table = auth_;
    }
    const auto presented = token::hash(token);
    auth_decision d;
    auto it = table->agents.find(name);
    // Compare against something even for an unknown name, so the time taken
    // does not tell which names exist.
    static const token::digest nothing{};
    const bool named_ok =
        token::equal(presented, it != table->agents.end() ? it->second.token_hash : nothing) &&
        it != table->agents.end();
    const bool shared_ok = table->shared && token::equal(presented, *table->shared);
    if (named_ok) {
        d.ok = true;
        d.perms.any = false;
        d.perms.all_protocols = it->second.protocols.empty();
        d.perms.protocols = it->second.protocols;
        d.perms.ports = it->second.ports;
        d.perms.plugin_acl = it->second.plugin_acl;
        return d;
    }
    if (shared_ok && it == table->agents.end()) {
        d.ok = true;
        d.perms.any = true;
        return d;
    }
    limiter_.failed(source_ip, net::clock::now());
    d.code = "bad_token";
    d.message = "authentication failed";
    d.log = it == table->agents.end() && !table->shared ? "unknown agent name" : "wrong token";
    return d;
}

bool gateway::agent_online(const std::shared_ptr<agent_link>& link, std::string& why)
{
    std::shared_ptr<agent_link> old;
    {
        std::lock_guard lock{mutex_};
        auto it = online_.find(link->name());
        if (it != online_.end()) old = it->second.lock();
        if (!old && online_.size() >= cfg_.lim.max_agents) {
            why = fmt::format("gateway at max_agents ({})", cfg_.lim.max_agents);
            return false;
        }
        online_[link->name()] = link;
    }
    if (old && old != link) old->replace();
    return true;
}

void gateway::agent_offline(agent_link& link)
{
    std::lock_guard lock{mutex_};
    auto it = online_.find(link.name());
    if (it != online_.end()) {
        auto cur = it->second.lock();
        if (!cur || cur.get() == &link) online_.erase(it);
    }
}

// --------------------------------------------------------------------- ports

bool gateway::claim_port(agent_link& link, const permissions& perms, const std::string& tunnel,
                         std::uint16_t& port, std::string& address, std::string& error)
{
    if (draining_) {
        error = "gateway is shutting down";
        return false;
    }
    if (port != 0) return bind_port(link, tunnel, port, address, error);
    if (perms.any) {
        if (!bind_port(link, tunnel, 0, address, error)) return false;
        std::string err;
        port = net::parse_host_port(address, err)->port;
        return true;
    }
    // Pick from the agent's ranges; bounded so a huge range cannot stall us.
    constexpr int max_tries = 256;
    int tries = 0;
    for (const auto& r : perms.ports)
        for (std::uint32_t p = r.first; p <= r.last && tries < max_tries; ++p) {
            {
                std::lock_guard lock{mutex_};
                if (ports_.count(static_cast<std::uint16_t>(p))) continue;
            }
            ++tries;
            if (bind_port(link, tunnel, static_cast<std::uint16_t>(p), address, error)) {
                port = static_cast<std::uint16_t>(p);
                return true;
            }
        }
    error = "no free public port in the ports this agent may use";
    return false;
}

bool gateway::bind_port(agent_link& link, const std::string& tunnel, std::uint16_t port,
                        std::string& address, std::string& error)
{
    const auto now = net::clock::now();
    std::lock_guard lock{mutex_};
    if (port != 0)
        if (auto it = ports_.find(port); it != ports_.end()) {
            auto& slot = it->second;
            const bool held = slot.listener || now < slot.reserved_until;
            if (held && slot.agent != link.name()) {
                error = slot.listener ? fmt::format("public port {} is in use by another agent", port)
                                      : fmt::format("public port {} is reserved for another agent "
                                                    "for port_reservation_s",
                                                    port);
                return false;
            }
            if (slot.listener) {
                // Same agent, a newer session: take the listening socket over.
                slot.tunnel = tunnel;
                slot.listener->set_owner(link.weak_from_this(), tunnel);
                address = slot.listener->address();
                return true;
            }
        }
    std::string err;
    auto ep = make_endpoint(cfg_.public_bind, port, err);
    if (!err.empty()) {
        error = "public_bind: " + err;
        return false;
    }
    auto l = std::make_shared<port_listener>(io_, ep);
    if (!l->open(error)) return false;
    l->set_owner(link.weak_from_this(), tunnel);
    ports_[l->port()] = port_slot{link.name(), tunnel, l, {}};
    address = l->address();
    l->start();
    return true;
}

void gateway::release_port(agent_link& link, std::uint16_t port)
{
    std::lock_guard lock{mutex_};
    auto it = ports_.find(port);
    if (it == ports_.end() || !it->second.listener || !it->second.listener->owned_by(&link)) return;
    it->second.listener->close();
    it->second.listener.reset();
    it->second.reserved_until = net::clock::now() + std::chrono::seconds{cfg_.port_reservation_s};
    // Forget reservations that have run out (keeps the map to live ports).
    for (auto p = ports_.begin(); p != ports_.end();)
        p = (!p->second.listener && p->second.reserved_until < net::clock::now()) ? ports_.erase(p)
                                                                               : std::next(p);
}

// -------------------------------------------------------------------- routes

void gateway::add_route(const std::string& agent, const std::string& tunnel, std::uint8_t protocol,
                        const std::shared_ptr<agent_link>& link)
{
    std::lock_guard lock{mutex_};
    routes_[{agent, tunnel}] = route{protocol, link, false, {}};
}

void gateway::remove_route(const agent_link* link, const std::string& agent,
                           const std::string& tunnel, bool offline)
{
    std::lock_guard lock{mutex_};
    auto it = routes_.find({agent, tunnel});
    if (it == routes_.end()) return;
    auto cur = it->second.link.lock();
    if (cur && cur.get() != link) return;
    if (offline) {
        it->second.link.reset();
        it->second.offline = true;
        it->second.offline_until =
            net::clock::now() + std::chrono::seconds{cfg_.port_reservation_s};
    } else {
        routes_.erase(it);
    }
}

std::shared_ptr<net::pipe> gateway::open_stream(plugin::plugin_host& p, std::string_view agent,
                                                std::string_view tunnel, std::string_view meta,
                                                const std::shared_ptr<net::pipe>& owner,
                                                mg_status& status)
{
    std::shared_ptr<agent_link> link;
    {
        std::lock_guard lock{mutex_};
        auto it = routes_.find({std::string{agent}, std::string{tunnel}});
        if (it == routes_.end()) {
            status = MG_ERR_NOT_FOUND;
            return nullptr;
        }
        if (it->second.protocol != p.protocol_id()) {
            status = MG_ERR_DENIED;  // a plugin opens streams only to its own tunnels
            return nullptr;
        }
        link = it->second.link.lock();
        if (!link) {
            const bool fresh = it->second.offline && net::clock::now() < it->second.offline_until;
            if (!fresh) routes_.erase(it);
            status = fresh ? MG_ERR_OFFLINE : MG_ERR_NOT_FOUND;
            return nullptr;
        }
    }
    std::string why;
    auto s = link->session()->new_stream(p.protocol_id(), std::string{tunnel}, std::string{meta},
                                         owner ? owner->peer_address : std::string{},
                                         std::string{agent}, why);
    if (!s) {
        spdlog::warn("agent={} tunnel={} refusing connection: {}", agent, tunnel, why);
        status = MG_ERR_LIMIT;
        return nullptr;
    }
    status = MG_OK;
    return s;
}

// ----------------------------------------------------------- plugin listeners

mg_status gateway::listen(plugin::plugin_host& p, std::string_view address,
                          std::string_view options, void* listener_user)
{
    std::string err;
    auto hp = net::parse_host_port(address, err);
    if (!hp) {
        spdlog::error("plugin={} listen \"{}\": {}", p.name(), address, err);
        return MG_ERR_INVALID;
    }
    const bool with_tls = json_flag(options, "tls");
    if (with_tls && !tls_) {
        spdlog::error("plugin={} listen {}: TLS asked, but the gateway has no certificate "
                      "(insecure_plaintext)",
                      p.name(), address);
        return MG_ERR_UNSUPPORTED;
    }
    auto ep = make_endpoint(hp->host, hp->port, err);
    if (!err.empty()) {
        spdlog::error("plugin={} listen: {}", p.name(), err);
        return MG_ERR_INVALID;
    }
    auto a = std::make_shared<pipe_acceptor>(io_);
    if (!bind_acceptor(*a, ep, err)) {
        spdlog::error("plugin={} {}", p.name(), err);
        return MG_ERR_IO;
    }
    spdlog::info("plugin={} listening on {}{}", p.name(), net::format_endpoint(a->local_endpoint()),
                 with_tls ? " (TLS)" : "");
    {
        std::lock_guard lock{mutex_};
        plugin_listeners_.push_back(a);
    }
    asio::co_spawn(io_, plugin_accept_loop(a, p.shared_from_this(), listener_user, with_tls),
                   asio::detached);
    return MG_OK;
}

asio::awaitable<void> gateway::plugin_accept_loop(std::shared_ptr<pipe_acceptor> a,
                                                  std::shared_ptr<plugin::plugin_host> p,
                                                  void* user, bool with_tls)
{
    asio::steady_timer pause{io_};
    for (;;) {
        auto strand = asio::make_strand(pick_io());
        net::socket_pipe::socket_type sock{strand};
        pipe_acceptor::endpoint_type peer;
        auto [ec] = co_await a->async_accept(sock, peer, asio::as_tuple(asio::use_awaitable));
        if (ec) {
            if (ec == asio::error::operation_aborted || !a->is_open()) co_return;
            pause.expires_after(accept_retry_delay);
            co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
            continue;
        }
        if (with_tls) {
            asio::co_spawn(strand, tls_accept(strand, std::move(sock), net::format_endpoint(peer), p, user),
                           asio::detached);
            continue;
        }
        asio::dispatch(strand, [this, p, user, strand, peer, s = std::move(sock)]() mutable {
            auto pipe = std::make_shared<net::socket_pipe>(MG_PIPE_PUBLIC, strand, pipe_limits(),
                                                           std::move(s), net::format_endpoint(peer),
                                                           true);
            mg_accept_info info{};
            info.struct_size = sizeof info;
            info.listener_user = user;
            info.peer = mg_str{pipe->peer_address.data(), pipe->peer_address.size()};
            p->accept(pipe, info);
        });
    }
}

asio::awaitable<void> gateway::tls_accept(net::strand_type strand, net::tls_stream::socket_type sock,
                                          std::string peer, std::shared_ptr<plugin::plugin_host> p,
                                          void* user)
{
    net::set_nodelay(sock.native_handle());
    auto io = std::make_shared<net::tls_stream>(std::move(sock), tls_->native_handle());
    // The handshake is bounded like the agent port's.
    auto timer = std::make_shared<asio::steady_timer>(
        strand, std::chrono::milliseconds{cfg_.lim.handshake_timeout_ms});
    timer->async_wait([w = std::weak_ptr<net::tls_stream>(io)](error_code ec) {
        if (!ec)
            if (auto s = w.lock()) s->abort();
    });
    const auto err = co_await io->handshake(true);
    timer->cancel();
    if (!err.empty()) {
        spdlog::debug("plugin={} TLS from {}: {}", p->name(), peer, err);
        co_return;
    }
    auto pipe = std::make_shared<net::tls_pipe>(MG_PIPE_PUBLIC, strand, pipe_limits(), io,
                                                std::move(peer), std::string{});
    mg_accept_info info{};
    info.struct_size = sizeof info;
    info.listener_user = user;
    info.peer = mg_str{pipe->peer_address.data(), pipe->peer_address.size()};
    info.tls = 1;
    info.sni = mg_str{pipe->sni.data(), pipe->sni.size()};
    p->accept(pipe, info);
}

mg_status gateway::claim_https(plugin::plugin_host& p, void* listener_user)
{
    std::lock_guard lock{mutex_};
    if (https_claim_ && https_claim_.get() != &p) {
        spdlog::error("plugin={} claim_https: plugin {} already serves the gateway's HTTPS port",
                      p.name(), https_claim_->name());
        return MG_ERR_DENIED;
    }
    https_claim_ = p.shared_from_this();
    https_user_ = listener_user;
    spdlog::info("plugin={} serves requests for other paths on the agent port", p.name());
    return MG_OK;
}

// ------------------------------------------------------- signals and drain

void gateway::on_signal(const error_code& ec, int sig)
{
    if (ec) return;
    if (sig == SIGHUP) {
        reload();
    } else if (draining_) {
        spdlog::warn("second signal: stopping now");
        stop_all();
        return;
    } else {
        drain();
    }
    signals_.async_wait([this](const error_code& e, int s) { on_signal(e, s); });
}

void gateway::stop_listeners()
{
    error_code ec;
    acceptor_.close(ec);
    std::lock_guard lock{mutex_};
    for (auto& [port, slot] : ports_)
        if (slot.listener) slot.listener->close();
    for (auto& a : plugin_listeners_)
        asio::post(io_, [a] {
            error_code e;
            a->close(e);
        });
}

void gateway::drain()
{
    draining_ = true;
    const auto grace = std::chrono::milliseconds{cfg_.lim.drain_timeout_ms};
    std::vector<std::shared_ptr<agent_link>> links;
    {
        std::lock_guard lock{mutex_};
        for (auto& [name, w] : online_)
            if (auto l = w.lock()) links.push_back(std::move(l));
    }
    spdlog::info("draining: no new connections; {} agent(s) told to leave within {} ms",
                 links.size(), grace.count());
    stop_listeners();
    for (auto& l : links) l->drain(grace);

    auto timer = std::make_shared<asio::steady_timer>(io_);
    const auto deadline = net::clock::now() + grace + std::chrono::milliseconds{cfg_.lim.handshake_timeout_ms};
    auto poll = std::make_shared<std::function<void(error_code)>>();
    *poll = [this, timer, deadline, poll](error_code ec) {
        if (ec) return;
        bool empty;
        {
            std::lock_guard lock{mutex_};
            empty = std::none_of(online_.begin(), online_.end(),
                                 [](auto& kv) { return !kv.second.expired(); });
        }
        if (empty || net::clock::now() >= deadline) {
            if (!empty) spdlog::warn("drain timeout: closing remaining agents");
            stop_all();
            *poll = nullptr;
            return;
        }
        timer->expires_after(50ms);
        timer->async_wait(*poll);
    };
    timer->expires_after(10ms);
    timer->async_wait(*poll);
}

void gateway::reload()
{
    if (config_path_.empty()) {
        spdlog::warn("SIGHUP: no configuration file to reload (quick mode)");
        return;
    }
    auto res = config::load_gateway(config_path_);
    if (!res.problems.empty()) {
        for (const auto& p : res.problems) spdlog::error("reload: {}", p.text());
        spdlog::error("reload: keeping the previous agent entries");
        return;
    }
    auto table = make_auth(res.cfg);
    std::vector<std::shared_ptr<agent_link>> revoke;
    {
        std::lock_guard lock{mutex_};
        for (auto& [name, w] : online_) {
            auto l = w.lock();
            if (!l) continue;
            auto old_it = auth_->agents.find(name);
            auto new_it = table->agents.find(name);
            const bool was_named = old_it != auth_->agents.end();
            const bool still = was_named ? (new_it != table->agents.end() &&
                                            token::equal(new_it->second.token_hash,
                                                         old_it->second.token_hash))
                                         : table->shared.has_value() && auth_->shared &&
                                               token::equal(*table->shared, *auth_->shared);
            if (!still) revoke.push_back(l);
        }
        auth_ = table;
    }
    limiter_.configure(res.cfg.auth_failure_burst, res.cfg.auth_failures_per_minute);
    spdlog::info("reloaded {} agent entr{} from {}", table->agents.size(),
                 table->agents.size() == 1 ? "y" : "ies", config_path_);
    for (auto& l : revoke) l->revoke("credentials removed or changed by reload");
}

}  // namespace muxgate::gateway
