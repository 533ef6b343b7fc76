// The host side of the plugin ABI: one plugin_host per loaded plugin. It
// fills the mg_host_api table the plugin calls, receives the events of the
// pipes bound to the plugin and forwards them to the plugin's vtable.
//
// Ownership: pipes bound to a plugin hold a shared_ptr to its plugin_host,
// and the plugin_host holds the shared library, so a library stays mapped
// while anything from it can still be called.
#pragma once

#include "net/pipe.hpp"
#include "plugin/loader.hpp"

#include <muxgate/plugin.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace muxgate::plugin {

class plugin_host;

// What the gateway or the agent provides behind the host API.
class host_services {
public:
    virtual ~host_services() = default;
    virtual boost::asio::io_context& io() = 0;
    virtual mg_role role() const = 0;
    // Gateway: a stream to agent/tunnel of this plugin's protocol.
    virtual std::shared_ptr<net::pipe> open_stream(plugin_host& p, std::string_view agent,
                                                   std::string_view tunnel, std::string_view meta,
                                                   const std::shared_ptr<net::pipe>& owner,
                                                   mg_status& status) = 0;
    // Agent: a connection to a local target (not yet connected).
    virtual std::shared_ptr<net::pipe> connect(plugin_host& p, std::string_view host,
                                               std::uint16_t port, std::string_view options,
                                               const std::shared_ptr<net::pipe>& owner,
                                               mg_status& status) = 0;
    virtual mg_status listen(plugin_host& p, std::string_view address, std::string_view options,
                             void* listener_user) = 0;
    virtual mg_status claim_https(plugin_host& p, void* listener_user) = 0;
    // Limits applied to pipes the host creates for plugins.
    virtual net::pipe_limits pipe_limits() const = 0;
};

class plugin_host final : public net::pipe_events,
                          public std::enable_shared_from_this<plugin_host> {
public:
    plugin_host(library lib, host_services& services);
    ~plugin_host() override;

    // Calls the plugin's create(); false with `error` set on refusal.
    bool create(const std::string& config_json, std::string& error);
    bool created() const noexcept { return instance_ != nullptr; }
    // Calls destroy() (once); the library stays mapped until this object goes.
    void destroy();

    const std::string& name() const noexcept { return name_; }
    std::uint8_t protocol_id() const noexcept { return protocol_id_; }
    const std::string& version() const noexcept { return version_; }
    const std::filesystem::path& file() const noexcept { return lib_.file; }
    const mg_plugin_vtable& vtable() const noexcept { return *vt_; }
    void* instance() const noexcept { return instance_; }
    host_services& services() noexcept { return services_; }

    // Hand a new pipe to the plugin: register its handle and bind its events
    // (events of pipes sharing `group` are serialized).
    // For a pipe with no I/O yet (accept, stream), or when running on its strand.
    mg_handle adopt(const std::shared_ptr<net::pipe>& p, void* user,
                    std::shared_ptr<std::recursive_mutex> group);
    // For a pipe already live on its strand, adopted from any thread
    // (open_stream and connect from a plugin's own thread: the Open is on
    // its way and the answer may come first). The handle is returned at
    // once; binding happens on the strand, followed by the on_open or
    // on_closed that came before it.
    mg_handle adopt_live(const std::shared_ptr<net::pipe>& p, void* user,
                         std::shared_ptr<std::recursive_mutex> group);

    // Gateway: ask the plugin about a tunnel registration.
    mg_status tunnel_register(const mg_tunnel_request& req, mg_tunnel_decision& out);
    void tunnel_unregister(std::string_view agent, std::string_view tunnel);
    void accept(const std::shared_ptr<net::pipe>& p, const mg_accept_info& info);
    // Agent: ask the plugin whether a tunnel's configuration is usable (ABI
    // 1.1; always yes for older plugins). Empty string = fine.
    std::string check_tunnel(const mg_stream_info& info);
    // Agent: a stream for one of this plugin's tunnels.
    void stream(const std::shared_ptr<net::pipe>& s, const mg_stream_info& info);

    // net::pipe_events
    void on_data(mg_handle, void* user, std::span<const std::uint8_t> data) override;
    void on_fin(mg_handle, void* user) override;
    void on_writable(mg_handle, void* user) override;
    void on_open(mg_handle, void* user) override;
    void on_closed(mg_handle, void* user, const net::close_record&) override;

    // Log a line on behalf of the plugin.
    void log(int level, std::string_view text) const;

    const mg_host_api* api() const noexcept { return &api_; }

private:
    friend struct host_api_impl;

    library lib_;
    host_services& services_;
    const mg_plugin_vtable* vt_ = nullptr;
    std::string name_;
    std::string version_;
    std::uint8_t protocol_id_ = 0;
    void* instance_ = nullptr;
    mg_host_api api_{};

    // timers
    std::mutex timers_mutex_;
    std::uint64_t next_timer_ = 1;
    std::unordered_map<mg_timer, std::shared_ptr<boost::asio::steady_timer>> timers_;
};

// The plugins of one process, by protocol_id and by name.
class plugin_set {
public:
    void add(std::shared_ptr<plugin_host> p);
    std::shared_ptr<plugin_host> by_id(std::uint32_t id) const;
    std::shared_ptr<plugin_host> by_name(std::string_view name) const;
    const std::vector<std::shared_ptr<plugin_host>>& all() const noexcept { return all_; }
    void destroy_all();

private:
    std::vector<std::shared_ptr<plugin_host>> all_;
    std::array<std::shared_ptr<plugin_host>, 256> by_id_{};
};

struct load_outcome {
    std::size_t loaded = 0;
    std::size_t refused = 0;  // files refused, or plugins whose create() failed
    bool fatal = false;       // a plugin named in `only` is missing or failed
};

// Loads every plugin of `dir` into `set` (only those named in `only`, if
// any), creating each with its configuration from `configs`. Every refusal
// is logged as "plugin refused: <file>: <reason>".
load_outcome load_all(plugin_set& set, host_services& services, const std::string& dir,
                      const std::vector<std::string>& only,
                      const std::map<std::string, std::string>& configs);

}  // namespace muxgate::plugin
