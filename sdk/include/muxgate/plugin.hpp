// Header-only C++ wrapper over the muxgate plugin ABI (<muxgate/plugin.h>).
//
// A plugin author derives from muxgate::sdk::plugin, overrides the events it
// cares about and names the class in MUXGATE_PLUGIN(...). The macro emits the
// one exported descriptor and C trampolines that catch every exception: an
// exception from an event handler is logged and resets the pipe involved,
// never unwinds into the host. Nothing in this header crosses the binary
// boundary, so plugins may be built with any C++17 compiler.
#pragma once

#include <muxgate/plugin.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <string_view>
#include <utility>

namespace muxgate::sdk {

inline std::string_view view(mg_str s) noexcept
{
    return s.data ? std::string_view{s.data, s.size} : std::string_view{};
}

inline mg_str str(std::string_view s) noexcept { return mg_str{s.data(), s.size()}; }

inline const char* status_text(mg_status s) noexcept
{
    switch (s) {
    case MG_OK: return "ok";
    case MG_AGAIN: return "above high watermark";
    case MG_ERR_INVALID: return "invalid argument or state";
    case MG_ERR_GONE: return "pipe is gone";
    case MG_ERR_NOT_FOUND: return "not found";
    case MG_ERR_OFFLINE: return "agent offline";
    case MG_ERR_DENIED: return "denied";
    case MG_ERR_LIMIT: return "limit reached";
    case MG_ERR_UNSUPPORTED: return "unsupported";
    case MG_ERR_INTERNAL: return "internal error";
    case MG_ERR_IO: return "I/O error";
    }
    return "unknown status";
}

// The host's services, as member functions.
class host {
public:
    host() = default;
    explicit host(const mg_host_api* api) noexcept : api_(api) {}

    const mg_host_api* api() const noexcept { return api_; }
    mg_role role() const noexcept { return static_cast<mg_role>(api_->role); }

    void log(mg_log_level level, std::string_view message) const noexcept
    {
        api_->log(api_->ctx, level, str(message));
    }
    void debug(std::string_view m) const noexcept { log(MG_LOG_DEBUG, m); }
    void info(std::string_view m) const noexcept { log(MG_LOG_INFO, m); }
    void warn(std::string_view m) const noexcept { log(MG_LOG_WARN, m); }
    void error(std::string_view m) const noexcept { log(MG_LOG_ERROR, m); }

    mg_status write(mg_handle pipe, const void* data, std::size_t size) const noexcept
    {
        return api_->write(api_->ctx, pipe, data, size);
    }
    mg_status write(mg_handle pipe, std::string_view bytes) const noexcept
    {
        return write(pipe, bytes.data(), bytes.size());
    }
    mg_status shutdown_write(mg_handle pipe) const noexcept
    {
        return api_->shutdown_write(api_->ctx, pipe);
    }
    mg_status reset(mg_handle pipe, std::string_view reason = {}) const noexcept
    {
        return api_->reset(api_->ctx, pipe, str(reason));
    }
    mg_status close(mg_handle pipe) const noexcept { return api_->close(api_->ctx, pipe); }
    mg_status set_reading(mg_handle pipe, bool enabled) const noexcept
    {
        return api_->set_reading(api_->ctx, pipe, enabled ? 1 : 0);
    }
    mg_status set_user(mg_handle pipe, void* user) const noexcept
    {
        return api_->set_user(api_->ctx, pipe, user);
    }
    mg_status link(mg_handle a, mg_handle b) const noexcept { return api_->link(api_->ctx, a, b); }
    std::int64_t bridge_fd(mg_handle pipe) const noexcept
    {
        return api_->bridge_fd(api_->ctx, pipe);
    }
    mg_status pipe_info(mg_handle pipe, mg_pipe_info& out) const noexcept
    {
        std::memset(&out, 0, sizeof out);
        out.struct_size = sizeof out;
        return api_->pipe_info(api_->ctx, pipe, &out);
    }

    struct opened {
        mg_handle pipe = MG_HANDLE_NONE;
        mg_status status = MG_ERR_INTERNAL;
        explicit operator bool() const noexcept { return pipe != MG_HANDLE_NONE; }
    };

    opened open_stream(std::string_view agent, std::string_view tunnel,
                       std::string_view meta_json = {}, mg_handle owner = MG_HANDLE_NONE,
                       void* user = nullptr) const noexcept
    {
        opened r;
        r.pipe = api_->open_stream(api_->ctx, str(agent), str(tunnel), str(meta_json), owner, user,
                                   &r.status);
        return r;
    }
    opened connect(std::string_view host_name, std::uint32_t port,
                   std::string_view options_json = {}, mg_handle owner = MG_HANDLE_NONE,
                   void* user = nullptr) const noexcept
    {
        opened r;
        r.pipe = api_->connect(api_->ctx, str(host_name), port, str(options_json), owner, user,
                               &r.status);
        return r;
    }
    mg_status accept_stream(mg_handle stream) const noexcept
    {
        return api_->accept_stream(api_->ctx, stream);
    }
    mg_status listen(std::string_view address, std::string_view options_json = {},
                     void* listener_user = nullptr) const noexcept
    {
        return api_->listen(api_->ctx, str(address), str(options_json), listener_user);
    }
    mg_status claim_https(void* listener_user = nullptr) const noexcept
    {
        return api_->claim_https(api_->ctx, listener_user);
    }
    mg_timer timer_start(std::uint32_t ms, mg_handle owner = MG_HANDLE_NONE,
                         void* user = nullptr) const noexcept
    {
        return api_->timer_start(api_->ctx, ms, owner, user);
    }
    void timer_cancel(mg_timer t) const noexcept { api_->timer_cancel(api_->ctx, t); }

private:
    const mg_host_api* api_ = nullptr;
};

struct tunnel_request {
    std::string_view agent;
    std::string_view tunnel;
    std::uint32_t remote_port = 0;
    std::string_view options_json;
    std::string_view acl_json;
};

struct tunnel_decision {
    mg_ingress ingress = MG_INGRESS_PORT;
    std::string message;  // public address on success, reason on refusal
};

// Base class of a plugin instance. One instance per process; events may run
// on several threads at once for unrelated pipes (see mg_plugin_vtable).
class plugin {
public:
    explicit plugin(host h) noexcept : host_(h) {}
    virtual ~plugin() = default;
    plugin(const plugin&) = delete;
    plugin& operator=(const plugin&) = delete;

    // Gateway role.
    virtual mg_status tunnel_register(const tunnel_request&, tunnel_decision& d)
    {
        d.message = "this plugin serves no tunnels on the gateway";
        return MG_ERR_UNSUPPORTED;
    }
    virtual void tunnel_unregister(std::string_view /*agent*/, std::string_view /*tunnel*/) {}
    virtual void on_accept(mg_handle pipe, const mg_accept_info&) { host_.reset(pipe, "no handler"); }

    // Agent role.
    virtual void on_stream(mg_handle stream, const mg_stream_info&)
    {
        host_.reset(stream, "no handler");
    }
    // Agent, at start: is this tunnel's configuration usable? (ABI 1.1)
    virtual mg_status check_tunnel(const mg_stream_info&, std::string& /*why*/) { return MG_OK; }

    // Pipe events.
    virtual void on_data(mg_handle, void* /*user*/, const std::uint8_t*, std::size_t) {}
    virtual void on_fin(mg_handle, void* /*user*/) {}
    virtual void on_writable(mg_handle, void* /*user*/) {}
    virtual void on_open(mg_handle, void* /*user*/) {}
    virtual void on_closed(mg_handle, void* /*user*/, const mg_close_info&) {}
    virtual void on_timer(mg_timer, void* /*user*/) {}

    const sdk::host& get_host() const noexcept { return host_; }

protected:
    sdk::host host_;
};

namespace detail {

inline void report(const mg_host_api* api, const char* where, const char* what) noexcept
{
    if (!api) return;
    std::string m = std::string{"plugin exception in "} + where + ": " + what;
    api->log(api->ctx, MG_LOG_ERROR, mg_str{m.data(), m.size()});
}

// Runs `f`; on an exception logs it and, if `pipe` is set, resets that pipe.
template <class F>
void guarded(void* instance, const char* where, mg_handle pipe, F&& f) noexcept
{
    auto* self = static_cast<plugin*>(instance);
    try {
        f(*self);
    } catch (const std::exception& e) {
        report(self->get_host().api(), where, e.what());
        if (pipe) self->get_host().reset(pipe, "plugin error");
    } catch (...) {
        report(self->get_host().api(), where, "unknown exception");
        if (pipe) self->get_host().reset(pipe, "plugin error");
    }
}

inline void copy_message(char* out, std::size_t cap, std::string_view text) noexcept
{
    if (!out || cap == 0) return;
    const std::size_t n = text.size() < cap - 1 ? text.size() : cap - 1;
    std::memcpy(out, text.data(), n);
    out[n] = '\0';
}

template <class Plugin>
struct trampolines {
    static mg_status create(const mg_host_api* api, mg_str config, void** instance, char* err,
                            std::size_t err_size) noexcept
    {
        try {
            *instance = static_cast<plugin*>(new Plugin(host{api}, view(config)));
            return MG_OK;
        } catch (const std::exception& e) {
            copy_message(err, err_size, e.what());
        } catch (...) {
            copy_message(err, err_size, "unknown exception");
        }
        return MG_ERR_INVALID;
    }
    static void destroy(void* instance) noexcept
    {
        try {
            delete static_cast<plugin*>(instance);
        } catch (...) {
        }
    }
    static mg_status tunnel_register(void* instance, const mg_tunnel_request* r,
                                     mg_tunnel_decision* d) noexcept
    {
        mg_status st = MG_ERR_INTERNAL;
        tunnel_request req;
        req.agent = view(r->agent);
        req.tunnel = view(r->tunnel);
        req.remote_port = r->remote_port;
        req.options_json = view(r->options_json);
        req.acl_json = view(r->acl_json);
        tunnel_decision dec;
        guarded(instance, "tunnel_register", MG_HANDLE_NONE,
                [&](plugin& p) { st = p.tunnel_register(req, dec); });
        if (st == MG_ERR_INTERNAL && dec.message.empty()) dec.message = "plugin error";
        d->ingress = dec.ingress;
        copy_message(d->message, sizeof d->message, dec.message);
        return st;
    }
    static void tunnel_unregister(void* instance, mg_str agent, mg_str tunnel) noexcept
    {
        guarded(instance, "tunnel_unregister", MG_HANDLE_NONE,
                [&](plugin& p) { p.tunnel_unregister(view(agent), view(tunnel)); });
    }
    static void on_accept(void* instance, mg_handle pipe, const mg_accept_info* info) noexcept
    {
        guarded(instance, "on_accept", pipe, [&](plugin& p) { p.on_accept(pipe, *info); });
    }
    static void on_stream(void* instance, mg_handle stream, const mg_stream_info* info) noexcept
    {
        guarded(instance, "on_stream", stream, [&](plugin& p) { p.on_stream(stream, *info); });
    }
    static void on_data(void* instance, mg_handle pipe, void* user, const void* data,
                        std::size_t size) noexcept
    {
        guarded(instance, "on_data", pipe, [&](plugin& p) {
            p.on_data(pipe, user, static_cast<const std::uint8_t*>(data), size);
        });
    }
    static void on_fin(void* instance, mg_handle pipe, void* user) noexcept
    {
        guarded(instance, "on_fin", pipe, [&](plugin& p) { p.on_fin(pipe, user); });
    }
    static void on_writable(void* instance, mg_handle pipe, void* user) noexcept
    {
        guarded(instance, "on_writable", pipe, [&](plugin& p) { p.on_writable(pipe, user); });
    }
    static void on_open(void* instance, mg_handle pipe, void* user) noexcept
    {
        guarded(instance, "on_open", pipe, [&](plugin& p) { p.on_open(pipe, user); });
    }
    static void on_closed(void* instance, mg_handle pipe, void* user,
                          const mg_close_info* info) noexcept
    {
        guarded(instance, "on_closed", MG_HANDLE_NONE,
                [&](plugin& p) { p.on_closed(pipe, user, *info); });
    }
    static void on_timer(void* instance, mg_timer t, void* user) noexcept
    {
        guarded(instance, "on_timer", MG_HANDLE_NONE, [&](plugin& p) { p.on_timer(t, user); });
    }

    static mg_status check_tunnel(void* instance, const mg_stream_info* info, char* err,
                                  std::size_t err_size) noexcept
    {
        mg_status st = MG_ERR_INTERNAL;
        std::string why;
        guarded(instance, "check_tunnel", MG_HANDLE_NONE,
                [&](plugin& p) { st = p.check_tunnel(*info, why); });
        if (st != MG_OK) copy_message(err, err_size, why.empty() ? "refused by the plugin" : why);
        return st;
    }

    static constexpr mg_plugin_vtable vtable = {
        sizeof(mg_plugin_vtable), &create,    &destroy, &tunnel_register, &tunnel_unregister,
        &on_accept,               &on_stream, &on_data, &on_fin,          &on_writable,
        &on_open,                 &on_closed, &on_timer, &check_tunnel,
    };
};

}  // namespace detail
}  // namespace muxgate::sdk

// Exports the plugin descriptor for `Class`. Use once per shared object, at
// namespace scope, in one .cpp file:
//     MUXGATE_PLUGIN(my_plugin, "echo", 42, "1.0.0")
#define MUXGATE_PLUGIN(Class, name_literal, protocol_id_value, version_literal)             \
    extern "C" {                                                                            \
    MG_EXPORT extern const mg_plugin_descriptor muxgate_plugin_v1;                         \
    const mg_plugin_descriptor muxgate_plugin_v1 = {                                       \
        MG_PLUGIN_MAGIC,                                                                    \
        MG_ABI_MAJOR,                                                                       \
        MG_ABI_MINOR,                                                                       \
        sizeof(mg_plugin_descriptor),                                                       \
        (protocol_id_value),                                                                \
        name_literal,                                                                       \
        version_literal,                                                                    \
        MG_BUILD_KEY,                                                                       \
        &::muxgate::sdk::detail::trampolines<Class>::vtable,                                \
        {nullptr, nullptr, nullptr, nullptr},                                               \
    };                                                                                      \
    }                                                                                       \
    static_assert(true, "MUXGATE_PLUGIN needs a semicolon")
