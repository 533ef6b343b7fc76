// The SSH plugin (protocol_id 1). Three ways to reach a machine's SSH:
//  * plain forwarding: a public port per tunnel, relayed to the agent's
//    local sshd like tcp, logging the client's and the server's version
//    banners (peeked at before the pipes are linked);
//  * the jump host (jump.cpp): one public port on the gateway speaking SSH,
//    `ssh -J jump@gateway target` by tunnel name;
//  * the agent-embedded server (embedded.cpp): the agent itself speaks SSH
//    for a host with no sshd.
#include "common.hpp"
#include "config.hpp"
#include "embedded.hpp"
#include "jump.hpp"
#include "ssh_text.hpp"

#include <muxgate/plugin.hpp>

#include <algorithm>
#include <memory>
#include <mutex>
#include <vector>

namespace muxgate::ssh {

namespace {

using sdk::view;

// Bytes relayed by hand before the pipes are linked even if no banner was
// seen: enough for any identification preamble (banner_preamble_max).
constexpr std::size_t peek_max = 64 * 1024;

// A public connection (gateway) or a stream (agent) and its partner, relayed
// by the plugin until the peeked side's banner is seen, then linked. Events
// of both pipes are serialized (owner), so no lock.
class forward final : public pipe_ctx {
public:
    // peek: the pipe whose banner is logged; other: its partner.
    forward(sdk::host h, bool server_side, std::string what)
        : host_(h), parser_(server_side), server_side_(server_side), what_(std::move(what))
    {
    }
    void start(std::shared_ptr<forward> me, mg_handle peek, mg_handle other, mg_handle stream)
    {
        self_ = std::move(me);
        peek_ = peek;
        other_ = other;
        stream_ = stream;
    }

    void on_data(mg_handle p, const std::uint8_t* d, std::size_t n) override
    {
        const mg_handle dst = p == peek_ ? other_ : peek_;
        if (p == peek_ && parser_.status() == banner_parser::state::need_more) {
            parser_.feed({reinterpret_cast<const char*>(d), n});
            report();
        }
        relayed_ += n;
        if (host_.write(dst, d, n) == MG_AGAIN) {
            host_.set_reading(p, false);
            paused_ = p;
        }
        maybe_link();
    }
    void on_writable(mg_handle p) override
    {
        const mg_handle src = p == peek_ ? other_ : peek_;
        if (paused_ == src) {
            host_.set_reading(src, true);
            paused_ = MG_HANDLE_NONE;
        }
        maybe_link();
    }
    void on_fin(mg_handle p) override
    {
        fin_seen_ = true;
        host_.shutdown_write(p == peek_ ? other_ : peek_);
    }
    void on_open(mg_handle p) override
    {
        // Agent: the local sshd answered; confirm the stream.
        if (p != stream_ && stream_ != MG_HANDLE_NONE) host_.accept_stream(stream_);
    }
    void on_closed(mg_handle p, const mg_close_info& info) override
    {
        const mg_handle other = p == peek_ ? other_ : peek_;
        if (!linked_ && open_ == 2) {
            if (info.reason == MG_CLOSE_DONE)
                host_.close(other);
            else
                host_.reset(other, view(info.message).empty() ? std::string_view{"peer closed"}
                                                               : view(info.message));
        }
        if (--open_ == 0) auto keep = std::move(self_);
    }

private:
    void report()
    {
        if (parser_.status() == banner_parser::state::done)
            host_.info("ssh: " + what_ + (server_side_ ? " server " : " client ") +
                       printable(parser_.line()));
        else if (parser_.status() == banner_parser::state::invalid)
            host_.warn("ssh: " + what_ + (server_side_ ? " server" : " client") +
                       " sent no valid SSH banner (" + parser_.error() + "); relaying anyway");
    }
    void maybe_link()
    {
        if (linked_ || fin_seen_ || paused_ != MG_HANDLE_NONE || open_ < 2) return;
        if (parser_.status() == banner_parser::state::need_more && relayed_ < peek_max) return;
        if (host_.link(peek_, other_) == MG_OK) linked_ = true;
    }

    sdk::host host_;
    banner_parser parser_;
    bool server_side_;
    std::string what_;
    mg_handle peek_ = MG_HANDLE_NONE, other_ = MG_HANDLE_NONE, stream_ = MG_HANDLE_NONE;
    mg_handle paused_ = MG_HANDLE_NONE;
    std::size_t relayed_ = 0;
    int open_ = 2;
    bool linked_ = false;
    bool fin_seen_ = false;
};

// The listener_user of the jump port.
char jump_listener_tag;

class ssh_plugin final : public sdk::plugin {
public:
    ssh_plugin(sdk::host h, std::string_view config_json) : plugin(h)
    {
        if (h.role() == MG_ROLE_GATEWAY) {
            cfg_ = parse_gateway_config(config_json);  // throws: the gateway refuses to start
            if (cfg_.jump_enabled) {
                jump_ = std::make_unique<jump_server>(
                    h, cfg_, [this](std::string_view name) { return resolve(name); });
                // Key and port at the first turn of the event loop, not in
                // create: `--check-config` must neither bind nor write keys.
                start_timer_ = host_.timer_start(0);
            }
        }
    }

    ~ssh_plugin() override { jump_.reset(); }

    // ------------------------------------------------------------ gateway

    mg_status tunnel_register(const sdk::tunnel_request& r, sdk::tunnel_decision& d) override
    {
        {
            std::lock_guard l{mutex_};
            tunnels_.push_back({std::string{r.agent}, std::string{r.tunnel}});
        }
        if (r.remote_port == 0 && jump_) {
            // Reachable by name through the jump host only.
            d.ingress = MG_INGRESS_ROUTED;
            d.message = "ssh -J <user>@<gateway>:" + port_of(cfg_.jump_listen) + " <user>@" +
                        std::string{r.tunnel};
            return MG_OK;
        }
        d.ingress = MG_INGRESS_PORT;
        return MG_OK;
    }

    void tunnel_unregister(std::string_view agent, std::string_view tunnel) override
    {
        std::lock_guard l{mutex_};
        auto it = std::find_if(tunnels_.begin(), tunnels_.end(), [&](const tunnel_ref& t) {
            return t.agent == agent && t.tunnel == tunnel;
        });
        if (it != tunnels_.end()) tunnels_.erase(it);
    }

    void on_accept(mg_handle client, const mg_accept_info& info) override
    {
        if (info.listener_user == &jump_listener_tag) {
            if (jump_) jump_->accept(client, info);
            else host_.reset(client, "jump host is off");
            return;
        }
        const std::string what = "tunnel " + std::string{view(info.agent)} + "/" +
                                 std::string{view(info.tunnel)} + " " + std::string{view(info.peer)};
        if (!cfg_.log_banners) {
            auto s = host_.open_stream(view(info.agent), view(info.tunnel), {}, client);
            if (!s) {
                host_.reset(client, sdk::status_text(s.status));
                return;
            }
            host_.link(client, s.pipe);
            return;
        }
        auto f = std::make_shared<forward>(host_, false, what);
        auto s = host_.open_stream(view(info.agent), view(info.tunnel), {}, client,
                                   static_cast<pipe_ctx*>(f.get()));
        if (!s) {
            host_.reset(client, sdk::status_text(s.status));
            return;
        }
        f->start(f, client, s.pipe, s.pipe);
        host_.set_user(client, static_cast<pipe_ctx*>(f.get()));
    }

    void on_timer(mg_timer t, void*) override
    {
        if (t == start_timer_ && jump_) jump_->start(&jump_listener_tag);
    }

    // -------------------------------------------------------------- agent

    mg_status check_tunnel(const mg_stream_info& info, std::string& why) override
    {
        try {
            const auto o = parse_tunnel_options(view(info.options_json));
            if (o.embedded) return embedded_server::check(o, why) ? MG_OK : MG_ERR_INVALID;
        } catch (const std::exception& e) {
            why = e.what();
            return MG_ERR_INVALID;
        }
        if (info.target_host.size == 0 || info.target_port == 0) {
            why = "an ssh tunnel needs local = \"host:port\" (the machine's sshd), or "
                  "options.server = \"embedded\"";
            return MG_ERR_INVALID;
        }
        return MG_OK;
    }

    void on_stream(mg_handle stream, const mg_stream_info& info) override
    {
        tunnel_options o;
        try {
            o = parse_tunnel_options(view(info.options_json));
        } catch (const std::exception& e) {
            host_.warn(std::string{"ssh: tunnel "} + std::string{view(info.tunnel)} + ": " + e.what());
            host_.reset(stream, "bad tunnel options");
            return;
        }
        if (o.embedded) {
            embedded(o).serve(stream, info);
            return;
        }
        if (info.target_host.size == 0 || info.target_port == 0) {
            host_.reset(stream, "tunnel has no local target");
            return;
        }
        std::string what = "tunnel " + std::string{view(info.tunnel)} + " " +
                           std::string{view(info.peer)};
        if (info.meta_json.size && view(info.meta_json) != "{}")
            what += " " + std::string{view(info.meta_json)};
        auto f = std::make_shared<forward>(host_, true, what);
        host_.set_user(stream, static_cast<pipe_ctx*>(f.get()));
        auto c = host_.connect(view(info.target_host), info.target_port, {}, stream,
                               static_cast<pipe_ctx*>(f.get()));
        if (!c) {
            host_.set_user(stream, nullptr);
            host_.reset(stream, sdk::status_text(c.status));
            return;
        }
        f->start(f, c.pipe, stream, stream);
    }

    // --------------------------------------------------------- pipe events

    void on_data(mg_handle p, void* u, const std::uint8_t* d, std::size_t n) override
    {
        if (u) static_cast<pipe_ctx*>(u)->on_data(p, d, n);
    }
    void on_fin(mg_handle p, void* u) override
    {
        if (u) static_cast<pipe_ctx*>(u)->on_fin(p);
    }
    void on_writable(mg_handle p, void* u) override
    {
        if (u) static_cast<pipe_ctx*>(u)->on_writable(p);
    }
    void on_open(mg_handle p, void* u) override
    {
        if (u) static_cast<pipe_ctx*>(u)->on_open(p);
    }
    void on_closed(mg_handle p, void* u, const mg_close_info& info) override
    {
        if (u) static_cast<pipe_ctx*>(u)->on_closed(p, info);
    }

private:
    static std::string port_of(const std::string& address)
    {
        const auto colon = address.rfind(':');
        return colon == std::string::npos ? address : address.substr(colon + 1);
    }

    resolution resolve(std::string_view name)
    {
        std::lock_guard l{mutex_};
        return resolve_target(name, tunnels_);
    }

    embedded_server& embedded(const tunnel_options& o)
    {
        std::lock_guard l{mutex_};
        for (auto& e : embedded_)
            if (e->matches(o)) return *e;
        embedded_.push_back(std::make_unique<embedded_server>(host_, o));
        return *embedded_.back();
    }

    gateway_config cfg_;
    std::unique_ptr<jump_server> jump_;
    mg_timer start_timer_ = 0;
    std::mutex mutex_;
    std::vector<tunnel_ref> tunnels_;
    std::vector<std::unique_ptr<embedded_server>> embedded_;
};

}  // namespace
}  // namespace muxgate::ssh

MUXGATE_PLUGIN(muxgate::ssh::ssh_plugin, "ssh", 1, "1.0.0");
