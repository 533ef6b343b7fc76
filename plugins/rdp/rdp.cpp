// The RDP plugin. Gateway: a public port per tunnel (like tcp), and one
// shared port where the first packet the client sends (preconnection PDU,
// X.224 Connection Request) names the tunnel; that packet is forwarded
// unchanged and the rest is relayed by the host. Agent: connect to the
// target (pc:3389) and link. TLS and NLA stay end to end: the plugin never
// looks past the first packet.
//
// State: one `session` per public client, keyed by the client's handle. The
// client's events, its timer and its stream (opened with the client as
// owner) are serialized by the host, so a session is touched by one thread
// at a time; the maps themselves are shared by every client and guarded by
// mutex_.
#include "first_packet.hpp"
#include "routing.hpp"

#include <muxgate/plugin.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace {

using muxgate::sdk::view;
namespace rdp = muxgate::rdp;
using clock_type = std::chrono::steady_clock;

struct session {
    mg_handle client = MG_HANDLE_NONE;
    std::string peer;
    std::string buf;              // the first packet so far (shared port only)
    mg_timer timer = 0;
    bool routed = false;          // linked to a stream
    bool shared = false;          // arrived on the shared port
    bool pending = false;         // holds one of max_pending slots (shared port, not decided)
    bool refused = false;         // closed by the plugin; later events are ignored
    std::string agent, tunnel;
    std::string route;            // "token:desk1", "port" ...
};

// The listener's tag: on_accept tells the shared port from tunnel ports by it.
int shared_listener_tag;
// Timer user value that means "start the shared listener now".
int listen_timer_tag;

class rdp_plugin final : public muxgate::sdk::plugin {
public:
    rdp_plugin(muxgate::sdk::host h, std::string_view config_json) : plugin(h)
    {
        std::string why;
        if (!rdp::parse_plugin_config(config_json, cfg_, why))
            throw std::runtime_error("[plugins.rdp]: " + why);
        limits_.max_first_packet = cfg_.max_first_packet;
        // The shared port is bound once the gateway runs (the first timer
        // fires then), not here: `--check-config` creates plugins too and
        // must not take the port of a running gateway.
        if (host_.role() == MG_ROLE_GATEWAY && !cfg_.listen.empty())
            host_.timer_start(0, MG_HANDLE_NONE, &listen_timer_tag);
    }

    // ------------------------------------------------------------ gateway

    mg_status tunnel_register(const muxgate::sdk::tunnel_request& r,
                              muxgate::sdk::tunnel_decision& d) override
    {
        rdp::tunnel_entry e;
        e.agent = r.agent;
        e.tunnel = r.tunnel;
        std::string why;
        if (!rdp::parse_tunnel_options(r.options_json, e.options, why)) {
            d.message = "rdp tunnel options: " + why;
            return MG_ERR_INVALID;
        }
        if (!rdp::parse_acl(r.acl_json, e.acl_allow_from, why)) {
            d.message = "acl.rdp of this agent: " + why;
            return MG_ERR_INVALID;
        }
        d.ingress = e.options.public_port ? MG_INGRESS_PORT : MG_INGRESS_ROUTED;
        if (!e.options.public_port)
            d.message = cfg_.listen.empty() ? "rdp: routed only, but no shared port is configured"
                                            : cfg_.listen + " (the shared rdp port, routed by name)";
        std::lock_guard lock{mutex_};
        routes_.add(std::move(e));
        return MG_OK;
    }

    void tunnel_unregister(std::string_view agent, std::string_view tunnel) override
    {
        std::lock_guard lock{mutex_};
        routes_.remove(agent, tunnel);
    }

    void on_accept(mg_handle client, const mg_accept_info& info) override
    {
        auto s = std::make_unique<session>();
        s->client = client;
        s->peer = std::string{view(info.peer)};
        session* sp = s.get();
        const bool shared = info.listener_user == &shared_listener_tag;
        {
            std::lock_guard lock{mutex_};
            if (shared && pending_ >= cfg_.max_pending) {
                host_.warn("rdp: " + s->peer + " refused: max_pending " +
                           std::to_string(cfg_.max_pending) +
                           " clients are still sending their first packet");
                host_.reset(client, "max_pending");
                return;
            }
            if (shared) {
                ++pending_;
                host_.debug("rdp: " + s->peer + " on the shared port (" +
                            std::to_string(pending_) + " pending)");
            }
            s->pending = shared;
            sessions_.emplace(client, std::move(s));
        }
        sp->shared = shared;
        host_.set_user(client, sp);
        if (!shared) {
            // A tunnel's own port: the tunnel is known, no need to read.
            sp->route = "port";
            connect_client(*sp, std::string{view(info.agent)}, std::string{view(info.tunnel)},
                           {});
            return;
        }
        sp->timer = host_.timer_start(cfg_.first_packet_timeout_ms, client,
                                      reinterpret_cast<void*>(static_cast<std::uintptr_t>(client)));
        if (sp->timer == 0) {
            // Without its timer a client could stall for ever: not accepted.
            host_.error("rdp: " + sp->peer + " refused: cannot start its first-packet timer");
            host_.reset(client, "no timer");
        }
    }

    void on_data(mg_handle pipe, void* user, const std::uint8_t* data, std::size_t size) override
    {
        auto* s = static_cast<session*>(user);
        if (!s || s->routed || s->refused || pipe != s->client) return;
        s->buf.append(reinterpret_cast<const char*>(data), size);
        const auto p = rdp::parse(
            {reinterpret_cast<const std::uint8_t*>(s->buf.data()), s->buf.size()}, limits_);
        switch (p.status) {
        case rdp::parse_status::need_more:
            return;  // bounded: need_more means buf.size() < needed <= max_first_packet
        case rdp::parse_status::malformed:
            release_pending(*s);  // before the line that says so
            host_.warn("rdp: " + s->peer + " refused: first packet: " + p.reason);
            refuse(*s);
            return;
        case rdp::parse_status::complete:
            break;
        }
        route(*s, p);
    }

    void on_fin(mg_handle pipe, void* user) override
    {
        auto* s = static_cast<session*>(user);
        if (!s || s->routed || s->refused || pipe != s->client) return;
        host_.info("rdp: " + s->peer + " closed after " + std::to_string(s->buf.size()) +
                   " bytes, before a complete first packet");
        refuse(*s);
    }

    void on_timer(mg_timer, void* user) override
    {
        if (user == &listen_timer_tag) {
            start_listener();
            return;
        }
        const auto client = static_cast<mg_handle>(reinterpret_cast<std::uintptr_t>(user));
        session* s = nullptr;
        {
            std::lock_guard lock{mutex_};
            auto it = sessions_.find(client);
            if (it != sessions_.end()) s = it->second.get();
        }
        // Runs on the client's strand, so the session cannot go meanwhile.
        if (!s || s->routed || s->timer == 0) return;
        s->timer = 0;
        host_.warn("rdp: " + s->peer + " timed out: " + std::to_string(s->buf.size()) +
                   " bytes of the first packet within first_packet_timeout_ms " +
                   std::to_string(cfg_.first_packet_timeout_ms) + "; connection reset");
        host_.reset(s->client, "first packet timeout");
    }

    void on_closed(mg_handle pipe, void* user, const mg_close_info& info) override
    {
        auto* s = static_cast<session*>(user);
        if (!s || pipe != s->client) return;  // streams carry no session
        if (s->timer) host_.timer_cancel(s->timer);
        if (s->routed) {
            const auto ms = info.duration_us / 1000;
            host_.info("rdp: session client=" + s->peer + " target=" + s->agent + "/" +
                       s->tunnel + " via=" + s->route +
                       " bytes_from_client=" + std::to_string(info.bytes_in) +
                       " bytes_to_client=" + std::to_string(info.bytes_out) +
                       " duration_ms=" + std::to_string(ms) + " end=" + close_reason(info));
        }
        release_pending(*s);
        std::lock_guard lock{mutex_};
        sessions_.erase(pipe);  // frees s
    }

    // -------------------------------------------------------------- agent

    mg_status check_tunnel(const mg_stream_info& info, std::string& why) override
    {
        if (info.target_host.size == 0 || info.target_port == 0) {
            why = "an rdp tunnel needs local = \"host:port\" (the desktop, e.g. pc:3389)";
            return MG_ERR_INVALID;
        }
        rdp::tunnel_options o;
        if (!rdp::parse_tunnel_options(view(info.options_json), o, why)) {
            why = "rdp tunnel options: " + why;
            return MG_ERR_INVALID;
        }
        return MG_OK;
    }

    void on_stream(mg_handle stream, const mg_stream_info& info) override
    {
        if (info.target_host.size == 0 || info.target_port == 0) {
            host_.reset(stream, "tunnel has no local target");
            return;
        }
        auto c = host_.connect(view(info.target_host), info.target_port, {}, stream);
        if (!c) {
            host_.reset(stream, muxgate::sdk::status_text(c.status));
            return;
        }
        host_.link(stream, c.pipe);
    }

private:
    void start_listener()
    {
        if (host_.listen(cfg_.listen, {}, &shared_listener_tag) != MG_OK)
            host_.error("rdp: cannot listen on " + cfg_.listen +
                        " (see above); the shared RDP port is off, tunnel ports still work");
        else
            host_.info("rdp: shared port " + cfg_.listen + " routes by the first packet");
    }

    // The client has sent its whole first packet: pick the tunnel.
    void route(session& s, const rdp::first_packet& p)
    {
        const auto choice = rdp::choose_route(p, cfg_.route_by_mstshash);
        if (choice.kind == rdp::route_kind::none) {
            host_.warn("rdp: " + s.peer + " refused: the first packet names no tunnel" +
                       (p.mstshash.empty() ? std::string{}
                                           : " (mstshash=\"" + rdp::printable(p.mstshash) +
                                                 "\" ignored: route_by_mstshash is off)"));
            refuse(s);
            return;
        }
        const std::string via = std::string{rdp::route_kind_name(choice.kind)} + ":\"" +
                                rdp::printable(choice.key) + "\"";
        std::string agent, tunnel;
        bool admitted = false;
        bool strip = false;
        rdp::lookup_status st;
        {
            std::lock_guard lock{mutex_};
            const auto r = routes_.find(choice.kind, choice.key);
            st = r.status;
            if (r.entry) {
                agent = r.entry->agent;
                tunnel = r.entry->tunnel;
                admitted = r.entry->admits(s.peer);
                strip = r.entry->options.strip_preconnection;
            }
        }
        if (st == rdp::lookup_status::unknown) {
            host_.warn("rdp: " + s.peer + " refused: no rdp tunnel named by " + via);
            refuse(s);
            return;
        }
        if (st == rdp::lookup_status::ambiguous) {
            host_.warn("rdp: " + s.peer + " refused: " + via +
                       " names tunnels of several agents; use <agent>.<tunnel>");
            refuse(s);
            return;
        }
        if (!admitted) {
            host_.warn("rdp: " + s.peer + " refused: not in allow_from of " + agent + "/" +
                       tunnel);
            refuse(s);
            return;
        }
        s.route = via;
        if (strip && p.has_preconnection) {
            s.route += " (preconnection PDU dropped)";
            s.buf.erase(0, p.preconnection_size);
        }
        connect_client(s, agent, tunnel, s.buf);
    }

    // Opens the stream, writes the first packet ahead and hands both pipes
    // to the host's relay.
    void connect_client(session& s, const std::string& agent, const std::string& tunnel,
                        const std::string& first)
    {
        if (!s.shared) {
            bool admitted = true;
            {
                std::lock_guard lock{mutex_};
                if (const auto* e = routes_.get(agent, tunnel)) admitted = e->admits(s.peer);
            }
            if (!admitted) {
                host_.warn("rdp: " + s.peer + " refused: not in allow_from of " + agent + "/" +
                           tunnel);
                refuse(s);
                return;
            }
        }
        auto st = host_.open_stream(agent, tunnel, {}, s.client);
        if (!st) {
            host_.warn("rdp: " + s.peer + " to " + agent + "/" + tunnel + ": cannot open a stream: " +
                       muxgate::sdk::status_text(st.status));
            refuse(s);
            return;
        }
        if (s.timer) {
            host_.timer_cancel(s.timer);
            s.timer = 0;
        }
        s.agent = agent;
        s.tunnel = tunnel;
        s.routed = true;
        release_pending(s);
        if (!first.empty()) host_.write(st.pipe, first);
        std::string{}.swap(s.buf);
        host_.link(s.client, st.pipe);
        host_.info("rdp: " + s.peer + " -> " + agent + "/" + tunnel + " via " + s.route);
    }

    // Closes cleanly (FIN; the host aborts after a short linger if the
    // client does not close too); the session goes with on_closed, but its
    // max_pending slot and buffer are given back now.
    void refuse(session& s)
    {
        if (s.timer) {
            host_.timer_cancel(s.timer);
            s.timer = 0;
        }
        s.refused = true;
        release_pending(s);
        std::string{}.swap(s.buf);
        host_.close(s.client);
    }

    void release_pending(session& s)
    {
        if (!s.pending) return;
        s.pending = false;
        std::lock_guard lock{mutex_};
        --pending_;
    }

    static std::string close_reason(const mg_close_info& i)
    {
        std::string r;
        switch (i.reason) {
        case MG_CLOSE_DONE: r = "done"; break;
        case MG_CLOSE_RESET: r = "reset"; break;
        case MG_CLOSE_ABORTED: r = "aborted"; break;
        case MG_CLOSE_REFUSED: r = "refused"; break;
        case MG_CLOSE_TIMEOUT: r = "timeout"; break;
        default: r = "error"; break;
        }
        if (i.message.size) r += " (" + std::string{view(i.message)} + ")";
        return r;
    }

    rdp::plugin_config cfg_;
    rdp::parse_limits limits_;
    std::mutex mutex_;
    rdp::route_table routes_;
    std::unordered_map<mg_handle, std::unique_ptr<session>> sessions_;
    std::size_t pending_ = 0;
};

}  // namespace

MUXGATE_PLUGIN(rdp_plugin, "rdp", 2, "1.0.0");
