#include "agent.hpp"

#include "common/log.hpp"
#include "net/proxy.hpp"
#include "net/socket_pipe.hpp"
#include "net/sockopt.hpp"
#include "net/tls_pipe.hpp"
#include "net/tls.hpp"
#include "net/ws.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>

#include <csignal>
#include <thread>

namespace muxgate::agent {

using tcp = asio::ip::tcp;
using boost::system::error_code;
using namespace std::chrono_literals;
namespace msg = wire::msg;

namespace {

// The largest answer we accept from an HTTP proxy to CONNECT.
constexpr std::size_t max_proxy_head = 8192;

class delegate final : public net::session_delegate {
public:
    explicit delegate(agent& a) : a_(a) {}

    void on_session_message(net::session& s, wire::control_message&& m) override
    {
        if (auto* ok = std::get_if<msg::auth_ok>(&m)) return a_.on_auth_ok(s, *ok);
        if (auto* e = std::get_if<msg::auth_error>(&m)) return a_.on_auth_error(*e);
        if (auto* r = std::get_if<msg::registered>(&m)) return a_.on_registered(*r);
        if (auto* r = std::get_if<msg::register_error>(&m)) return a_.on_register_error(s, *r);
        if (auto* g = std::get_if<msg::goodbye>(&m)) return a_.on_goodbye(*g);
        if (auto* e = std::get_if<msg::error>(&m)) {
            spdlog::warn("gateway reports {}: {}", e->code, e->message);
            return;
        }
    }
    void on_stream(net::session& s, const std::shared_ptr<net::stream_pipe>& p,
                   msg::open&& o) override
    {
        a_.on_stream(s, p, std::move(o));
    }
    void on_closed(net::session&, mux::close_code code, const std::string& reason) override
    {
        a_.on_session_closed(code, reason);
    }

private:
    agent& a_;
};

}  // namespace

agent::agent(config::agent_config cfg, std::string token, net::url gateway,
             std::shared_ptr<asio::ssl::context> tls)
    : cfg_(std::move(cfg)),
      token_(std::move(token)),
      gateway_(std::move(gateway)),
      tls_(std::move(tls)),
      io_(1),
      strand_(asio::make_strand(io_)),
      signals_(io_),
      backoff_(std::chrono::milliseconds{cfg_.backoff_initial_ms},
               std::chrono::milliseconds{cfg_.backoff_max_ms}),
      closed_(strand_),
      sleep_(strand_)
{
}

agent::~agent() = default;

net::pipe_limits agent::pipe_limits() const
{
    net::pipe_limits p;
    p.high_watermark = cfg_.lim.high_watermark;
    p.low_watermark = cfg_.lim.high_watermark / 2;
    return p;
}

net::session_options agent::session_options() const
{
    const auto& l = cfg_.lim;
    net::session_options o;
    o.limits.max_frame_payload = l.max_frame_payload;
    o.limits.max_control = l.max_control_message;
    o.limits.max_streams = l.max_streams_per_agent;
    o.limits.recv_window = l.stream_window;
    o.limits.max_recv_window = l.stream_window_max;
    o.limits.window_growth_budget = l.window_growth_budget;
    o.pipes = pipe_limits();
    o.max_message_out = l.write_message;
    o.max_message_in = l.max_message;
    o.write_quantum = l.write_quantum;
    o.max_control_backlog = l.max_control_backlog;
    o.auth_timeout = std::chrono::milliseconds{l.handshake_timeout_ms};
    o.heartbeat_interval = std::chrono::milliseconds{l.heartbeat_timeout_ms};
    o.heartbeat_timeout = std::chrono::milliseconds{l.heartbeat_timeout_ms};
    o.stream_idle_timeout = std::chrono::seconds{l.stream_idle_timeout_s};
    o.close_timeout = std::chrono::milliseconds{l.handshake_timeout_ms};
    return o;
}

plugin::load_outcome agent::load_plugins(const std::string& modules_dir)
{
    return plugin::load_all(plugins_, *this, modules_dir, cfg_.plugins, cfg_.plugin_config);
}

std::vector<std::string> agent::check_tunnels() const
{
    std::vector<std::string> problems;
    for (const auto& t : cfg_.tunnels) {
        const std::string where = t.line ? fmt::format("{}:{}:{}: ", cfg_.file, t.line, t.column)
                                         : std::string{"--tunnel: "};
        auto p = plugins_.by_name(t.protocol);
        if (!p) {
            problems.push_back(fmt::format("{}tunnel \"{}\": no plugin \"{}\" is loaded", where,
                                           t.name, t.protocol));
            continue;
        }
        mg_stream_info info{};
        info.struct_size = sizeof info;
        info.tunnel = mg_str{t.name.data(), t.name.size()};
        info.target_host = mg_str{t.local_host.data(), t.local_host.size()};
        info.target_port = t.local_port;
        info.options_json = mg_str{t.options.data(), t.options.size()};
        if (auto why = p->check_tunnel(info); !why.empty())
            problems.push_back(fmt::format("{}tunnel \"{}\": {}", where, t.name, why));
    }
    return problems;
}

// ------------------------------------------------------------------- running

int agent::run()
{
    signals_.add(SIGINT);
    signals_.add(SIGTERM);
    signals_.async_wait([this](const error_code& ec, int sig) { on_signal(ec, sig); });
    asio::co_spawn(strand_, connect_loop(), [this](std::exception_ptr e) {
        if (!e) return;
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            spdlog::critical("agent stopped: {}", ex.what());
        }
        io_.stop();
    });
    io_.run();
    plugins_.destroy_all();
    return 0;
}

void agent::on_signal(const error_code& ec, int)
{
    if (ec) return;
    asio::post(strand_, [this] {
        if (stopping_) {
            io_.stop();
            return;
        }
        stopping_ = true;
        spdlog::info("shutting down");
        sleep_.cancel();
        if (session_ && !session_->closing()) {
            session_->send(msg::goodbye{"agent shutting down", 0});
            session_->close(mux::close_code::normal, "agent shutting down");
        } else {
            io_.stop();
        }
    });
    signals_.async_wait([this](const error_code& e, int s) { on_signal(e, s); });
}

asio::awaitable<std::shared_ptr<net::ws_transport>> agent::dial(std::string& error, bool& retryable)
{
    retryable = true;
    net::url proxy;
    const bool via_proxy = !cfg_.proxy.empty();
    if (via_proxy) {
        std::string err;
        proxy = *net::parse_url(cfg_.proxy, err);
    }
    const std::string& host = via_proxy ? proxy.host : gateway_.host;
    const std::uint16_t port = via_proxy ? proxy.port : gateway_.port;

    tcp::resolver resolver{strand_};
    auto [rec, results] = co_await resolver.async_resolve(host, std::to_string(port),
                                                          asio::as_tuple(asio::use_awaitable));
    if (rec) {
        error = fmt::format("cannot resolve {}: {}", host, rec.message());
        co_return nullptr;
    }
    tcp::socket sock{strand_};
    asio::steady_timer deadline{strand_, std::chrono::milliseconds{cfg_.connect_timeout_ms}};
    deadline.async_wait([&sock](error_code ec) {
        if (!ec) {
            error_code ignored;
            sock.close(ignored);
        }
    });
    auto [cec, ep] = co_await asio::async_connect(sock, results, asio::as_tuple(asio::use_awaitable));
    if (cec) {
        deadline.cancel();
        error = fmt::format("cannot connect to {}{}: {}", net::format_host_port(host, port),
                            via_proxy ? " (proxy)" : "", cec.message());
        co_return nullptr;
    }
    net::tune_agent_socket(sock.native_handle(), cfg_.lim.socket_unsent, "gateway connection");

    if (via_proxy) {
        const auto req = net::connect_request(gateway_.host, gateway_.port, proxy.user, proxy.password);
        auto [wec, wn] = co_await asio::async_write(sock, asio::buffer(req),
                                                    asio::as_tuple(asio::use_awaitable));
        std::string head;
        error_code hec = wec;
        if (!hec) {
            auto [e, n] = co_await asio::async_read_until(
                sock, asio::dynamic_buffer(head, max_proxy_head), "\r\n\r\n",
                asio::as_tuple(asio::use_awaitable));
            hec = e;
        }
        if (hec) {
            deadline.cancel();
            error = fmt::format("proxy {}: {}", net::format_host_port(host, port), hec.message());
            co_return nullptr;
        }
        auto r = net::parse_connect_response(head, max_proxy_head);
        if (r.result != net::connect_response::state::ok) {
            deadline.cancel();
            error = r.result == net::connect_response::state::refused
                        ? fmt::format("proxy refused CONNECT: {} {}", r.status, r.reason)
                        : fmt::format("proxy sent a malformed answer: {}", r.reason);
            co_return nullptr;
        }
    }
    deadline.cancel();

    net::ws_client_options o;
    o.host = gateway_.host;
    o.port = gateway_.port;
    o.path = gateway_.path.empty() ? "/muxgate" : gateway_.path;
    o.handshake_timeout = std::chrono::milliseconds{cfg_.lim.handshake_timeout_ms};
    o.user_agent = fmt::format("muxgate-agent/{}", MUXGATE_VERSION);
    o.verify_host = !cfg_.insecure;
    o.pin = cfg_.pin;
    o.max_message = cfg_.lim.max_message;
    const auto proto = asio::generic::stream_protocol{sock.local_endpoint().protocol()};
    net::tls_stream::socket_type gsock{strand_, proto, sock.release()};
    auto res = co_await net::connect_gateway(std::move(gsock), tls_, o);
    if (!res.ws) {
        error = res.error;
        retryable = res.retryable;
    }
    co_return res.ws;
}

asio::awaitable<void> agent::connect_loop()
{
    const std::string where = fmt::format("{}://{}{}", gateway_.scheme,
                                          net::format_host_port(gateway_.host, gateway_.port),
                                          gateway_.path.empty() ? "/muxgate" : gateway_.path);
    while (!stopping_) {
        std::string error;
        bool retryable = true;
        auto ws = co_await dial(error, retryable);
        if (stopping_) break;
        if (ws) {
            authed_ = false;
            retry_hint_ms_ = 0;
            const auto started = net::clock::now();
            session_ = std::make_shared<net::session>(strand_, ws, mux::role::agent,
                                                      session_options(), "gateway");
            session_->start(std::make_shared<delegate>(*this));
            msg::auth a;
            a.token = token_;
            a.agent = cfg_.name;
            a.version = MUXGATE_VERSION;
            a.protocol = wire::protocol_version;
            a.window = cfg_.lim.stream_window;
            a.max_frame = cfg_.lim.max_frame_payload;
            a.max_message = cfg_.lim.max_message;
            session_->send(a);
            closed_.expires_at(net::clock::time_point::max());
            co_await closed_.async_wait(asio::as_tuple(asio::use_awaitable));
            session_.reset();
            if (net::clock::now() - started >= std::chrono::seconds{cfg_.stable_after_s})
                backoff_.reset();
            if (stopping_) break;
        } else {
            spdlog::warn("cannot reach gateway {}: {}", where, error);
            if (!retryable)
                spdlog::error("this will not fix itself: check --ca / --pin / the gateway's "
                              "certificate");
        }
        auto delay = backoff_.next();
        if (retry_hint_ms_) delay = std::max(delay, std::chrono::milliseconds{retry_hint_ms_});
        spdlog::info("reconnecting in {} ms", delay.count());
        sleep_.expires_after(delay);
        co_await sleep_.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    io_.stop();
}

// ------------------------------------------------------------------ session

void agent::on_auth_ok(net::session& s, const msg::auth_ok& ok)
{
    s.establish(ok.window, ok.max_frame, ok.max_message);
    authed_ = true;
    spdlog::info("connected to gateway as \"{}\" (session {}, gateway {})", cfg_.name, ok.session,
                 ok.version);
    std::uint32_t id = 0;
    for (const auto& t : cfg_.tunnels) {
        ++id;
        std::uint16_t port = t.remote_port;
        if (port == 0)
            if (auto it = assigned_ports_.find(t.name); it != assigned_ports_.end()) port = it->second;
        send_register(s, t, id, port);
    }
}

void agent::send_register(net::session& s, const config::tunnel_config& t, std::uint32_t id,
                          std::uint16_t port)
{
    auto p = plugins_.by_name(t.protocol);
    if (!p) {
        spdlog::error("tunnel {}: no plugin \"{}\"; not registered", t.name, t.protocol);
        return;
    }
    msg::register_tunnel r;
    r.id = id;
    r.tunnel = t.name;
    r.protocol_id = p->protocol_id();
    r.remote_port = port;
    r.options = t.options;
    s.send(r);
}

void agent::on_registered(const msg::registered& r)
{
    spdlog::info("tunnel {} is open at {}", r.tunnel, r.address);
    for (const auto& t : cfg_.tunnels) {
        if (t.name != r.tunnel || t.remote_port != 0) continue;
        std::string err;
        if (auto hp = net::parse_host_port(r.address, err)) assigned_ports_[t.name] = hp->port;
    }
}

void agent::on_register_error(net::session& s, const msg::register_error& r)
{
    for (std::size_t i = 0; i < cfg_.tunnels.size(); ++i) {
        const auto& t = cfg_.tunnels[i];
        if (t.name != r.tunnel || t.remote_port != 0 || !assigned_ports_.count(t.name)) continue;
        // The port it had is taken now: take any.
        spdlog::warn("tunnel {}: its previous port {} is not available ({}); asking for any port",
                     t.name, assigned_ports_[t.name], r.message);
        assigned_ports_.erase(t.name);
        send_register(s, t, static_cast<std::uint32_t>(i + 1), 0);
        return;
    }
    spdlog::error("tunnel {} refused by the gateway: {} ({})", r.tunnel, r.message, r.code);
}

void agent::on_auth_error(const msg::auth_error& e)
{
    spdlog::error("gateway refused authentication: {} ({})", e.message, e.code);
    retry_hint_ms_ = e.retry_ms;
}

void agent::on_goodbye(const msg::goodbye& g)
{
    spdlog::info("gateway says goodbye: {}; reconnecting when it closes", g.reason);
}

void agent::on_stream(net::session&, const std::shared_ptr<net::stream_pipe>& p, msg::open&& o)
{
    const config::tunnel_config* t = nullptr;
    for (const auto& c : cfg_.tunnels)
        if (c.name == o.tunnel) t = &c;
    if (!t) {
        p->abort(MG_CLOSE_REFUSED, fmt::format("no tunnel \"{}\" on this agent", o.tunnel));
        return;
    }
    auto plugin = plugins_.by_name(t->protocol);
    if (!plugin || plugin->protocol_id() != o.protocol_id) {
        p->abort(MG_CLOSE_REFUSED,
                 fmt::format("tunnel \"{}\" is not protocol_id {}", o.tunnel, o.protocol_id));
        return;
    }
    p->agent = cfg_.name;
    mg_stream_info info{};
    info.struct_size = sizeof info;
    info.tunnel = mg_str{t->name.data(), t->name.size()};
    info.target_host = mg_str{t->local_host.data(), t->local_host.size()};
    info.target_port = t->local_port;
    info.options_json = mg_str{t->options.data(), t->options.size()};
    info.meta_json = mg_str{o.meta.data(), o.meta.size()};
    info.peer = mg_str{o.peer.data(), o.peer.size()};
    spdlog::debug("stream {} for tunnel {} from {}", p->stream_id, t->name, o.peer);
    plugin->stream(p, info);
}

void agent::on_session_closed(mux::close_code code, const std::string& reason)
{
    if (code == mux::close_code::replaced) {
        // Two agents run with one name: each connection throws the other
        // out. Say so plainly and back off fully, instead of flapping.
        spdlog::error("another agent connected with the name \"{}\" and replaced this one; "
                      "give each agent its own name (waiting {} ms)",
                      cfg_.name, cfg_.backoff_max_ms);
        retry_hint_ms_ = cfg_.backoff_max_ms;
    }
    if (authed_ || code != mux::close_code::normal)
        spdlog::warn("gateway connection closed: {} ({})", reason, static_cast<int>(code));
    closed_.cancel();
}

// ------------------------------------------------------------- host service

std::shared_ptr<asio::ssl::context> agent::client_context(bool verify, const std::string& ca)
{
    const std::string key = (verify ? "v:" : "n:") + ca;
    std::lock_guard lock{tls_mutex_};
    auto& ctx = tls_targets_[key];
    if (!ctx) ctx = net::make_client_context({ca, !verify, {}});
    return ctx;
}

std::shared_ptr<net::pipe> agent::connect(plugin::plugin_host&, std::string_view host,
                                          std::uint16_t port, std::string_view options,
                                          const std::shared_ptr<net::pipe>& owner,
                                          mg_status& status)
{
    auto ex = owner ? owner->get_executor() : asio::make_strand(io_);
    // {"tls": true, "verify": true, "ca": "file", "name": "cert name"}
    boost::system::error_code jec;
    const auto opts = boost::json::parse(options.empty() ? std::string_view{"{}"} : options, jec);
    const auto* o = (!jec && opts.is_object()) ? &opts.as_object() : nullptr;
    auto flag = [&](const char* k, bool d) {
        const auto* v = o ? o->if_contains(k) : nullptr;
        return v && v->is_bool() ? v->as_bool() : d;
    };
    auto text = [&](const char* k) {
        const auto* v = o ? o->if_contains(k) : nullptr;
        return v && v->is_string() ? std::string{v->as_string()} : std::string{};
    };
    if (flag("tls", false)) {
        const bool verify = flag("verify", true);
        const std::string ca = text("ca");
        std::shared_ptr<asio::ssl::context> ctx;
        try {
            ctx = client_context(verify, ca);
        } catch (const std::exception& e) {
            spdlog::error("connect to {}:{}: {}", host, port, e.what());
            status = MG_ERR_INVALID;
            return nullptr;
        }
        std::string name = verify ? text("name") : std::string{};
        if (verify && name.empty()) name = std::string{host};
        auto p = std::make_shared<net::tls_pipe>(MG_PIPE_LOCAL, ex, pipe_limits(), ctx, name);
        p->agent = cfg_.name;
        if (owner) p->tunnel = owner->tunnel;
        asio::post(ex, [p, h = std::string{host}, port] { p->connect(h, port); });
        status = MG_OK;
        return p;
    }
    auto p = std::make_shared<net::socket_pipe>(MG_PIPE_LOCAL, ex, pipe_limits());
    p->agent = cfg_.name;
    if (owner) p->tunnel = owner->tunnel;
    // Posted: the caller binds the pipe to its plugin before anything happens.
    asio::post(ex, [p, h = std::string{host}, port] { p->connect(h, port); });
    status = MG_OK;
    return p;
}

}  // namespace muxgate::agent
