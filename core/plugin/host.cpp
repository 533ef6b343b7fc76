#include "plugin/host.hpp"

#include "common/log.hpp"
#include "net/session.hpp"
#include "net/socket_pipe.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <fmt/format.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace muxgate::plugin {

namespace asio = boost::asio;

namespace {

std::string_view sv(mg_str s) { return s.data ? std::string_view{s.data, s.size} : std::string_view{}; }
mg_str ms(const std::string& s) { return mg_str{s.data(), s.size()}; }

// Runs `f(pipe)` on the pipe's strand, after the plugin's earlier calls on
// the same pipe (pipe::in_order).
template <class F>
mg_status on_pipe(mg_handle h, F&& f)
{
    auto p = net::pipe_registry::instance().find(h);
    if (!p) return MG_ERR_GONE;
    p->in_order(std::forward<F>(f));
    return MG_OK;
}

}  // namespace

// The C entry points of mg_host_api; ctx is the plugin_host.
struct host_api_impl {
    static plugin_host& self(void* ctx) { return *static_cast<plugin_host*>(ctx); }

    static void log(void* ctx, int32_t level, mg_str message) { self(ctx).log(level, sv(message)); }

    static mg_status write(void* ctx, mg_handle h, const void* data, size_t size)
    {
        (void)ctx;
        if (size && !data) return MG_ERR_INVALID;
        auto p = net::pipe_registry::instance().find(h);
        if (!p || p->finished()) return MG_ERR_GONE;
        if (size == 0) return MG_OK;
        const bool over = p->outbound_bytes() + size > p->limits().high_watermark;
        const std::span<const std::uint8_t> bytes{static_cast<const std::uint8_t*>(data), size};
        if (p->runs_in_order_now()) {
            p->write_copy(bytes);
            if (over) p->request_writable();
        } else {
            // Counted now, so that MG_AGAIN answers for what is on its way.
            p->reserve_outbound(size);
            p->in_order([c = net::chunk::copy_of(bytes), over](net::pipe& q) mutable {
                q.write_reserved(std::move(c));
                if (over) q.request_writable();
            });
        }
        return over ? MG_AGAIN : MG_OK;
    }

    static mg_status shutdown_write(void*, mg_handle h)
    {
        return on_pipe(h, [](net::pipe& p) { p.write_fin(); });
    }

    static mg_status reset(void*, mg_handle h, mg_str reason)
    {
        std::string r{sv(reason)};
        if (r.empty()) r = "reset by plugin";
        return on_pipe(h, [r = std::move(r)](net::pipe& p) mutable {
            p.abort(MG_CLOSE_ABORTED, std::move(r));
        });
    }

    static mg_status close(void*, mg_handle h)
    {
        return on_pipe(h, [](net::pipe& p) { p.close(); });
    }

    static mg_status set_reading(void*, mg_handle h, int32_t enabled)
    {
        return on_pipe(h, [enabled](net::pipe& p) { p.set_reading(enabled != 0); });
    }

    static mg_status set_user(void*, mg_handle h, void* user)
    {
        return on_pipe(h, [user](net::pipe& p) { p.set_user(user); });
    }

    static mg_status link(void*, mg_handle a, mg_handle b)
    {
        auto& reg = net::pipe_registry::instance();
        auto pa = reg.find(a);
        auto pb = reg.find(b);
        if (!pa || !pb) return MG_ERR_GONE;
        if (pa == pb) return MG_ERR_INVALID;
        return net::pipe::link(pa, pb) ? MG_OK : MG_ERR_INVALID;
    }

    static int64_t bridge_fd(void* ctx, mg_handle h)
    {
        auto p = net::pipe_registry::instance().find(h);
        if (!p || p->finished()) return MG_ERR_GONE;
        int fds[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return MG_ERR_IO;
        boost::system::error_code ec;
        net::socket_pipe::socket_type ours{p->get_executor()};
        ours.assign(asio::generic::stream_protocol{AF_UNIX, 0}, fds[0], ec);
        if (ec) {
            ::close(fds[0]);
            ::close(fds[1]);
            return MG_ERR_IO;
        }
        auto bridge = std::make_shared<net::socket_pipe>(MG_PIPE_LOCAL, p->get_executor(),
                                                         self(ctx).services().pipe_limits(),
                                                         std::move(ours), "socketpair", false);
        net::pipe::link(p, bridge);
        return fds[1];
    }

    static mg_status pipe_info(void*, mg_handle h, mg_pipe_info* out)
    {
        if (!out || out->struct_size < offsetof(mg_pipe_info, sni) + sizeof(mg_str))
            return MG_ERR_INVALID;
        auto p = net::pipe_registry::instance().find(h);
        if (!p) return MG_ERR_GONE;
        out->kind = p->kind();
        out->peer = ms(p->peer_address);
        out->local = ms(p->local_address());
        out->agent = ms(p->agent);
        out->tunnel = ms(p->tunnel);
        out->stream_id = p->stream_id;
        out->tls = p->tls ? 1 : 0;
        out->sni = ms(p->sni);
        return MG_OK;
    }

    static mg_handle open_stream(void* ctx, mg_str agent, mg_str tunnel, mg_str meta,
                                 mg_handle owner, void* user, mg_status* status)
    {
        mg_status st = MG_ERR_INTERNAL;
        auto& host = self(ctx);
        std::shared_ptr<net::pipe> owner_pipe;
        if (owner) {
            owner_pipe = net::pipe_registry::instance().find(owner);
            if (!owner_pipe) {
                if (status) *status = MG_ERR_GONE;
                return MG_HANDLE_NONE;
            }
        }
        auto p = host.services().open_stream(host, sv(agent), sv(tunnel), sv(meta), owner_pipe, st);
        if (!p) {
            if (status) *status = st;
            return MG_HANDLE_NONE;
        }
        const auto h = host.adopt_live(p, user, owner_pipe ? owner_pipe->event_group() : nullptr);
        if (status) *status = MG_OK;
        return h;
    }

    static mg_handle connect(void* ctx, mg_str host_name, uint32_t port, mg_str options,
                             mg_handle owner, void* user, mg_status* status)
    {
        auto& host = self(ctx);
        if (port == 0 || port > 65535 || host_name.size == 0) {
            if (status) *status = MG_ERR_INVALID;
            return MG_HANDLE_NONE;
        }
        std::shared_ptr<net::pipe> owner_pipe;
        if (owner) {
            owner_pipe = net::pipe_registry::instance().find(owner);
            if (!owner_pipe) {
                if (status) *status = MG_ERR_GONE;
                return MG_HANDLE_NONE;
            }
        }
        mg_status st = MG_ERR_INTERNAL;
        auto p = host.services().connect(host, sv(host_name), static_cast<std::uint16_t>(port),
                                         sv(options), owner_pipe, st);
        if (!p) {
            if (status) *status = st;
            return MG_HANDLE_NONE;
        }
        const auto h = host.adopt_live(p, user, owner_pipe ? owner_pipe->event_group() : nullptr);
        if (status) *status = MG_OK;
        return h;
    }

    static mg_status accept_stream(void*, mg_handle h)
    {
        auto p = net::pipe_registry::instance().find(h);
        if (!p) return MG_ERR_GONE;
        auto s = std::dynamic_pointer_cast<net::stream_pipe>(p);
        if (!s) return MG_ERR_INVALID;
        return on_pipe(h, [](net::pipe& q) { static_cast<net::stream_pipe&>(q).confirm(); });
    }

    static mg_status listen(void* ctx, mg_str address, mg_str options, void* listener_user)
    {
        auto& host = self(ctx);
        return host.services().listen(host, sv(address), sv(options), listener_user);
    }

    static mg_status claim_https(void* ctx, void* listener_user)
    {
        auto& host = self(ctx);
        return host.services().claim_https(host, listener_user);
    }

    static mg_timer timer_start(void* ctx, uint32_t ms, mg_handle owner, void* user)
    {
        auto& host = self(ctx);
        std::shared_ptr<net::pipe> owner_pipe;
        if (owner) owner_pipe = net::pipe_registry::instance().find(owner);
        auto ex = owner_pipe ? owner_pipe->get_executor()
                             : asio::make_strand(host.services().io());
        auto timer = std::make_shared<asio::steady_timer>(ex, std::chrono::milliseconds{ms});
        mg_timer id;
        {
            std::lock_guard lock{host.timers_mutex_};
            id = host.next_timer_++;
            host.timers_.emplace(id, timer);
        }
        auto group = owner_pipe ? owner_pipe->event_group() : nullptr;
        timer->async_wait([hp = host.shared_from_this(), id, user,
                           group](boost::system::error_code ec) {
            {
                std::lock_guard lock{hp->timers_mutex_};
                hp->timers_.erase(id);
            }
            if (ec || !hp->vt_->on_timer || !hp->instance_) return;
            if (group) {
                std::lock_guard g{*group};
                hp->vt_->on_timer(hp->instance_, id, user);
            } else {
                hp->vt_->on_timer(hp->instance_, id, user);
            }
        });
        return id;
    }

    static void timer_cancel(void* ctx, mg_timer t)
    {
        auto& host = self(ctx);
        std::shared_ptr<asio::steady_timer> timer;
        {
            std::lock_guard lock{host.timers_mutex_};
            auto it = host.timers_.find(t);
            if (it == host.timers_.end()) return;
            timer = it->second;
        }
        asio::post(timer->get_executor(), [timer] { timer->cancel(); });
    }
};

plugin_host::plugin_host(library lib, host_services& services)
    : lib_(std::move(lib)), services_(services)
{
    const auto& d = *lib_.descriptor;
    vt_ = d.vtable;
    name_ = d.name;
    version_ = d.version ? d.version : "";
    protocol_id_ = static_cast<std::uint8_t>(d.protocol_id);

    api_.struct_size = sizeof(mg_host_api);
    api_.abi_major = MG_ABI_MAJOR;
    api_.abi_minor = MG_ABI_MINOR;
    api_.ctx = this;
    api_.role = services.role();
    api_.log = &host_api_impl::log;
    api_.write = &host_api_impl::write;
    api_.shutdown_write = &host_api_impl::shutdown_write;
    api_.reset = &host_api_impl::reset;
    api_.close = &host_api_impl::close;
    api_.set_reading = &host_api_impl::set_reading;
    api_.set_user = &host_api_impl::set_user;
    api_.link = &host_api_impl::link;
    api_.bridge_fd = &host_api_impl::bridge_fd;
    api_.pipe_info = &host_api_impl::pipe_info;
    api_.open_stream = &host_api_impl::open_stream;
    api_.connect = &host_api_impl::connect;
    api_.accept_stream = &host_api_impl::accept_stream;
    api_.listen = &host_api_impl::listen;
    api_.claim_https = &host_api_impl::claim_https;
    api_.timer_start = &host_api_impl::timer_start;
    api_.timer_cancel = &host_api_impl::timer_cancel;
}

plugin_host::~plugin_host() { destroy(); }

bool plugin_host::create(const std::string& config_json, std::string& error)
{
    char err[512] = {};
    void* inst = nullptr;
    const mg_status st = vt_->create(&api_, mg_str{config_json.data(), config_json.size()}, &inst,
                                     err, sizeof err);
    if (st != MG_OK || !inst) {
        err[sizeof err - 1] = '\0';
        error = err[0] ? err : fmt::format("create() returned status {}", static_cast<int>(st));
        return false;
    }
    instance_ = inst;
    return true;
}

void plugin_host::destroy()
{
    if (!instance_) return;
    void* inst = instance_;
    instance_ = nullptr;
    // Timers still armed would fire into a destroyed instance (or outlive
    // the io_context at shutdown): cancel them first.
    std::unordered_map<mg_timer, std::shared_ptr<asio::steady_timer>> timers;
    {
        std::lock_guard lock{timers_mutex_};
        timers.swap(timers_);
    }
    for (auto& [id, t] : timers) t->cancel();  // no event runs any more (see destroy)
    vt_->destroy(inst);
}

void plugin_host::log(int level, std::string_view text) const
{
    const auto lvl = level <= MG_LOG_TRACE   ? spdlog::level::trace
                     : level == MG_LOG_DEBUG ? spdlog::level::debug
                     : level == MG_LOG_INFO  ? spdlog::level::info
                     : level == MG_LOG_WARN  ? spdlog::level::warn
                                             : spdlog::level::err;
    spdlog::log(lvl, "plugin={} {}", name_, text);
}

mg_handle plugin_host::adopt(const std::shared_ptr<net::pipe>& p, void* user,
                             std::shared_ptr<std::recursive_mutex> group)
{
    p->set_group(std::move(group));
    p->bind(shared_from_this(), user);
    return net::pipe_registry::instance().add(p);
}

mg_handle plugin_host::adopt_live(const std::shared_ptr<net::pipe>& p, void* user,
                                  std::shared_ptr<std::recursive_mutex> group)
{
    const auto& ex = p->get_executor();
    if (ex.running_in_this_thread()) {
        const auto h = adopt(p, user, std::move(group));
        // Even from the strand, the plugin hears on_open after its call
        // returned, never from inside it.
        asio::post(ex, [p] { p->replay_open(); });
        return h;
    }
    // The strand reads the group only once events are bound, and the post
    // below orders this write before that.
    p->set_group(std::move(group));
    const auto h = net::pipe_registry::instance().add(p);
    // The plugin's calls on `h` run in order after this (pipe::in_order),
    // so they find the pipe bound.
    p->in_order([self = shared_from_this(), user](net::pipe& q) {
        q.bind(self, user);
        q.replay_open();
    });
    return h;
}

mg_status plugin_host::tunnel_register(const mg_tunnel_request& req, mg_tunnel_decision& out)
{
    if (!vt_->tunnel_register || !instance_) {
        std::snprintf(out.message, sizeof out.message, "plugin \"%s\" serves no tunnels on the gateway",
                      name_.c_str());
        return MG_ERR_UNSUPPORTED;
    }
    out.message[0] = '\0';
    const mg_status st = vt_->tunnel_register(instance_, &req, &out);
    out.message[sizeof out.message - 1] = '\0';
    return st;
}

void plugin_host::tunnel_unregister(std::string_view agent, std::string_view tunnel)
{
    if (vt_->tunnel_unregister && instance_)
        vt_->tunnel_unregister(instance_, mg_str{agent.data(), agent.size()},
                               mg_str{tunnel.data(), tunnel.size()});
}

void plugin_host::accept(const std::shared_ptr<net::pipe>& p, const mg_accept_info& info)
{
    if (!vt_->on_accept || !instance_) {
        p->abort(MG_CLOSE_ABORTED, "plugin has no on_accept");
        return;
    }
    const auto h = adopt(p, nullptr, nullptr);
    {
        std::lock_guard g{*p->event_group()};
        vt_->on_accept(instance_, h, &info);
    }
    p->start();
}

std::string plugin_host::check_tunnel(const mg_stream_info& info)
{
    if (!instance_ || !MG_HAS_FIELD(vt_, mg_plugin_vtable, check_tunnel) || !vt_->check_tunnel)
        return {};
    char err[512] = {};
    if (vt_->check_tunnel(instance_, &info, err, sizeof err) == MG_OK) return {};
    err[sizeof err - 1] = '\0';
    return err[0] ? err : "refused by the plugin";
}

void plugin_host::stream(const std::shared_ptr<net::pipe>& s, const mg_stream_info& info)
{
    if (!vt_->on_stream || !instance_) {
        s->abort(MG_CLOSE_REFUSED, fmt::format("plugin \"{}\" has no agent side", name_));
        return;
    }
    const auto h = adopt(s, nullptr, nullptr);
    {
        std::lock_guard g{*s->event_group()};
        vt_->on_stream(instance_, h, &info);
    }
    s->start();
}

void plugin_host::on_data(mg_handle h, void* user, std::span<const std::uint8_t> data)
{
    if (vt_->on_data && instance_) vt_->on_data(instance_, h, user, data.data(), data.size());
}

void plugin_host::on_fin(mg_handle h, void* user)
{
    if (vt_->on_fin && instance_) vt_->on_fin(instance_, h, user);
}

void plugin_host::on_writable(mg_handle h, void* user)
{
    if (vt_->on_writable && instance_) vt_->on_writable(instance_, h, user);
}

void plugin_host::on_open(mg_handle h, void* user)
{
    if (vt_->on_open && instance_) vt_->on_open(instance_, h, user);
}

void plugin_host::on_closed(mg_handle h, void* user, const net::close_record& r)
{
    if (!vt_->on_closed || !instance_) return;
    mg_close_info info{};
    info.struct_size = sizeof info;
    info.reason = r.reason;
    info.message = mg_str{r.message.data(), r.message.size()};
    info.bytes_in = r.bytes_in;
    info.bytes_out = r.bytes_out;
    info.duration_us = r.duration_us;
    vt_->on_closed(instance_, h, user, &info);
}

// ---------------------------------------------------------------- plugin_set

void plugin_set::add(std::shared_ptr<plugin_host> p)
{
    by_id_[p->protocol_id()] = p;
    all_.push_back(std::move(p));
}

std::shared_ptr<plugin_host> plugin_set::by_id(std::uint32_t id) const
{
    return id < by_id_.size() ? by_id_[id] : nullptr;
}

std::shared_ptr<plugin_host> plugin_set::by_name(std::string_view name) const
{
    for (const auto& p : all_)
        if (p->name() == name) return p;
    return nullptr;
}

void plugin_set::destroy_all()
{
    // Shutdown, with the I/O threads stopped: end every pipe still open, so
    // each plugin gets on_closed before destroy (as the ABI promises) and
    // pipes bound to a plugin, which hold themselves until then, are freed.
    for (auto& p : net::pipe_registry::instance().snapshot())
        if (!p->finished()) p->abort(MG_CLOSE_ABORTED, "shutting down");
    for (auto& p : all_) p->destroy();
}

load_outcome load_all(plugin_set& set, host_services& services, const std::string& dir,
                      const std::vector<std::string>& only,
                      const std::map<std::string, std::string>& configs)
{
    load_outcome out;
    auto report = load_directory(dir, only);
    for (const auto& r : report.refused) {
        spdlog::error("plugin refused: {}", r);
        ++out.refused;
    }
    for (auto& lib : report.loaded) {
        auto host = std::make_shared<plugin_host>(std::move(lib), services);
        auto it = configs.find(host->name());
        const std::string conf = it == configs.end() ? "{}" : it->second;
        std::string error;
        if (!host->create(conf, error)) {
            spdlog::error("plugin refused: {}: create failed: {}", host->file().string(), error);
            ++out.refused;
            continue;
        }
        spdlog::info("plugin {} {} (protocol_id {}) loaded from {}", host->name(), host->version(),
                     host->protocol_id(), host->file().string());
        set.add(std::move(host));
        ++out.loaded;
    }
    for (const auto& want : only)
        if (!set.by_name(want)) out.fatal = true;
    for (const auto& [name, conf] : configs)
        if (!set.by_name(name))
            spdlog::warn("[plugins.{}] is configured but no such plugin is loaded", name);
    return out;
}

}  // namespace muxgate::plugin
