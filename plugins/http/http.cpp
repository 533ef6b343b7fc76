// The HTTP plugin: web apps behind agents, reached by host name on the
// gateway's HTTPS port (shared with the agents' WebSocket endpoint) and on an
// optional plain-HTTP port. README.md walks the flow; http1.hpp holds every
// parsing and routing decision (no I/O), this file only moves bytes.
//
// Gateway, per client connection (`conn`): read a request head (bounded),
// pick the tunnel by Host, open a stream to its agent (or reuse the one of
// the previous request to the same tunnel), write the rewritten head, pass
// the body through under flow control, and parse the response heads coming
// back so that keep-alive, pipelining (answered in order) and 1xx work. A
// 101 (WebSocket) hands both pipes to the host's relay.
//
// Agent, per stream: connect to the local web server (http or https) and
// link, or, with a Host rewrite or request inspection configured, stay in
// the path (agent_conn) to rewrite heads and record exchanges.
#include "http1.hpp"
#include "inspect.hpp"

#include <muxgate/plugin.hpp>

#include <boost/json.hpp>

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

namespace json = boost::json;
namespace http = muxgate::http;
using muxgate::sdk::view;

// ------------------------------------------------------------------ config

const json::object* as_object(const json::value& v) { return v.is_object() ? &v.as_object() : nullptr; }

json::value parse_json(std::string_view text)
{
    boost::system::error_code ec;
    auto v = json::parse(text.empty() ? std::string_view{"{}"} : text, ec);
    if (ec || !v.is_object()) return json::object{};
    return v;
}

bool get_bool(const json::object* o, const char* key, bool dflt)
{
    const auto* v = o ? o->if_contains(key) : nullptr;
    if (!v) return dflt;
    if (!v->is_bool()) throw std::runtime_error(std::string{key} + " must be true or false");
    return v->as_bool();
}

std::string get_string(const json::object* o, const char* key, std::string dflt = {})
{
    const auto* v = o ? o->if_contains(key) : nullptr;
    if (!v) return dflt;
    if (!v->is_string()) throw std::runtime_error(std::string{key} + " must be a string");
    return std::string{v->as_string()};
}

std::uint64_t get_uint(const json::object* o, const char* key, std::uint64_t dflt, std::uint64_t lo,
                       std::uint64_t hi)
{
    const auto* v = o ? o->if_contains(key) : nullptr;
    if (!v) return dflt;
    std::int64_t n = 0;
    if (v->is_int64()) n = v->as_int64();
    else if (v->is_uint64()) n = static_cast<std::int64_t>(v->as_uint64());
    else throw std::runtime_error(std::string{key} + " must be a number");
    if (n < static_cast<std::int64_t>(lo) || static_cast<std::uint64_t>(n) > hi)
        throw std::runtime_error(std::string{key} + " must be in " + std::to_string(lo) + "-" +
                                 std::to_string(hi));
    return static_cast<std::uint64_t>(n);
}

std::vector<std::string> get_strings(const json::object* o, const char* key)
{
    std::vector<std::string> out;
    const auto* v = o ? o->if_contains(key) : nullptr;
    if (!v) return out;
    if (v->is_string()) {
        out.emplace_back(v->as_string());
        return out;
    }
    if (!v->is_array()) throw std::runtime_error(std::string{key} + " must be a list of strings");
    for (const auto& e : v->as_array()) {
        if (!e.is_string()) throw std::runtime_error(std::string{key} + " must be a list of strings");
        out.emplace_back(e.as_string());
    }
    return out;
}

struct gateway_config {
    bool https = true;           // serve the gateway's TLS port (claim_https)
    std::string listen;          // plain HTTP listener, "" for none
    bool redirect_https = false; // plain HTTP answers 308 to https://
    std::uint32_t https_port = 443;  // port in those redirects
    std::string base_domain;     // <tunnel>.<base_domain> for every tunnel
    bool trust_forwarded = false;
    http::head_limits limits;
    std::uint32_t head_timeout_ms = 30000;  // a request head must arrive within this
};

// What the gateway enforces per tunnel (from the tunnel's options).
struct tunnel_policy {
    std::vector<std::string> basic_auth;  // "user:sha256hex"
    std::vector<http::cidr> allow;        // empty: everyone
};

// Agent side, per tunnel (from the same options).
struct agent_options {
    std::string connect_options;  // {"tls":..,"verify":..,"ca":..,"name":..} for connect()
    std::string host_header;      // replaces Host, "" to keep
    bool inspect = false;
};

constexpr int protocol_id = 4;
// Requests forwarded on one client connection whose responses have not
// finished: a client pipelining more waits (its reading pauses) until half
// of them are answered. Bounds the per-connection bookkeeping.
constexpr std::size_t max_pipeline = 64;

// ------------------------------------------------------------ gateway side

class http_plugin;

// One public client connection. Its pipe and the streams opened for it share
// an owner, so their events never run at once: no lock.
struct conn {
    enum class state { head, body, upgrade_wait, tunnel, done };

    std::weak_ptr<conn> self;
    mg_handle client = MG_HANDLE_NONE;
    bool tls = false;
    std::string sni;
    std::string peer_ip;
    bool plain_redirect = false;

    state st = state::head;
    std::string in;  // client bytes not yet handled
    http::body_framer req_body;
    bool client_paused = false;  // by us, because the stream is above its watermark
    bool client_fin = false;
    bool client_gone = false;
    bool closing = false;  // a final answer was written; nothing more goes out

    // The stream of the current tunnel (reused while requests go there).
    mg_handle stream = MG_HANDLE_NONE;
    std::string agent, tunnel;
    bool stream_paused = false;
    bool stream_reusable = true;

    struct pending_request {
        std::string method;
        bool upgrade = false;
        bool close_after = false;  // the client asked for close / HTTP/1.0
    };
    std::deque<pending_request> pending;  // forwarded, response not complete
    std::string rin;                      // response head bytes being collected
    bool in_resp_body = false;
    bool resp_started = false;  // bytes of the front response went to the client
    http::body_framer resp_body;
    bool resp_keep_alive = true;

    // A request we answer ourselves once the responses before it are out.
    std::string held_answer;
    bool waiting_switch = false;  // the next request goes to another tunnel
    bool pipeline_full = false;   // reading paused: max_pipeline requests in flight
    mg_timer head_timer = 0;
};

// The user pointer of each pipe: which conn, and whether it is the client.
struct side {
    std::shared_ptr<conn> c;
    bool is_client = false;
    mg_handle pipe = MG_HANDLE_NONE;
};

// ------------------------------------------------------------- agent side

struct agent_conn {
    mg_handle stream = MG_HANDLE_NONE;
    mg_handle local = MG_HANDLE_NONE;
    agent_options opt;
    std::string tunnel;
    std::string peer;
    // stream -> local: requests
    std::string in;
    bool in_body = false;
    http::body_framer req_body;
    // local -> stream: responses (parsed only to record them)
    std::string rin;
    bool in_resp_body = false;
    http::body_framer resp_body;
    struct exchange {
        std::uint64_t id = 0;  // in the inspection ring
        std::string method;
    };
    std::deque<exchange> pending;
    std::uint64_t resp_id = 0;
    bool tunnel_mode = false;  // after 101: bytes only
    std::string target_host;
    std::uint32_t target_port = 0;
    std::string scratch, scratch2;  // rest of a chunk after a head
    bool stream_paused = false, local_paused = false;
    int open_pipes = 2;
};

struct agent_side {
    std::shared_ptr<agent_conn> c;
    bool is_stream = false;
};

// ----------------------------------------------------------------- plugin

class http_plugin final : public muxgate::sdk::plugin {
public:
    http_plugin(muxgate::sdk::host h, std::string_view config_json) : plugin(h)
    {
        const auto v = parse_json(config_json);
        const auto* o = as_object(v);
        if (h.role() == MG_ROLE_GATEWAY) {
            cfg_.https = get_bool(o, "https", true);
            cfg_.listen = get_string(o, "listen");
            cfg_.redirect_https = get_bool(o, "redirect_https", false);
            cfg_.https_port = static_cast<std::uint32_t>(get_uint(o, "https_port", 443, 1, 65535));
            cfg_.base_domain = http::normalize_host(get_string(o, "base_domain"));
            if (!get_string(o, "base_domain").empty() && cfg_.base_domain.empty())
                throw std::runtime_error("base_domain is not a valid host name");
            cfg_.trust_forwarded = get_bool(o, "trust_forwarded", false);
            cfg_.limits.max_head = get_uint(o, "max_head", 32 * 1024, 1024, 1024 * 1024);
            cfg_.limits.max_headers = get_uint(o, "max_headers", 100, 4, 10000);
            cfg_.head_timeout_ms =
                static_cast<std::uint32_t>(get_uint(o, "head_timeout_ms", 30000, 100, 3600000));
            if (cfg_.https && host_.claim_https(&https_tag_) != MG_OK)
                throw std::runtime_error("cannot serve the gateway's HTTPS port (see the log)");
            if (!cfg_.listen.empty() && host_.listen(cfg_.listen, {}, &plain_tag_) != MG_OK)
                throw std::runtime_error("cannot listen on " + cfg_.listen);
        } else {
            const auto* in = o ? o->if_contains("inspect") : nullptr;
            const auto* io = in ? as_object(*in) : nullptr;
            inspect_cfg_.entries = get_uint(io, "entries", 100, 1, 100000);
            inspect_cfg_.body_bytes = get_uint(io, "body_bytes", 4096, 0, 1024 * 1024);
            inspect_cfg_.listen = get_string(io, "listen");
            ring_ = std::make_shared<muxgate::http::inspect_ring>(inspect_cfg_.entries,
                                                                  inspect_cfg_.body_bytes);
            if (!inspect_cfg_.listen.empty()) {
                server_ = std::make_unique<http::inspect_server>(ring_, inspect_cfg_.listen);
                std::string err;
                if (!server_->start(err)) throw std::runtime_error(err);
                host_.info("request inspection on http://127.0.0.1:" + std::to_string(server_->port()) + "/");
            }
        }
    }

    ~http_plugin() override = default;

    // ------------------------------------------------- gateway: tunnels

    mg_status tunnel_register(const muxgate::sdk::tunnel_request& r,
                              muxgate::sdk::tunnel_decision& d) override
    {
        d.ingress = MG_INGRESS_ROUTED;
        std::vector<std::string> names;
        tunnel_policy pol;
        std::vector<std::string> allowed;
        try {
            const auto ov = parse_json(r.options_json);
            const auto* o = as_object(ov);
            for (const auto& n : get_strings(o, "hostnames")) {
                const auto h = http::normalize_host(n);
                if (h.empty() || h.find(':') != std::string::npos) {
                    d.message = "invalid hostname \"" + n.substr(0, 100) + "\"";
                    return MG_ERR_INVALID;
                }
                names.push_back(h);
            }
            pol.basic_auth = get_strings(o, "basic_auth");
            for (const auto& a : pol.basic_auth)
                if (a.find(':') == std::string::npos || a.size() != a.find(':') + 65) {
                    d.message = "basic_auth entries are \"user:<sha256 hex of the password>\"";
                    return MG_ERR_INVALID;
                }
            for (const auto& a : get_strings(o, "allow_ips")) {
                auto c = http::parse_cidr(a);
                if (!c) {
                    d.message = "allow_ips: invalid address or network \"" + a.substr(0, 60) + "\"";
                    return MG_ERR_INVALID;
                }
                pol.allow.push_back(*c);
            }
            const auto av = parse_json(r.acl_json);
            allowed = get_strings(as_object(av), "hostnames");
        } catch (const std::exception& e) {
            d.message = e.what();
            return MG_ERR_INVALID;
        }
        for (auto& a : allowed) a = a == "*" ? a : (a.substr(0, 2) == "*." ? "*." + http::normalize_host(a.substr(2)) : http::normalize_host(a));
        // An explicit name needs the ACL's blessing, or must be one label
        // under base_domain (first come, first served, like a subdomain).
        for (const auto& n : names) {
            bool ok = !cfg_.base_domain.empty() && http::host_matches("*." + cfg_.base_domain, n);
            for (const auto& a : allowed) ok |= http::host_matches(a, n);
            if (!ok) {
                d.message = "hostname " + n + " is not allowed for agent " + std::string{r.agent} +
                            " (acl.http.hostnames)";
                return MG_ERR_DENIED;
            }
        }
        if (!cfg_.base_domain.empty()) {
            const auto label = http::normalize_host(r.tunnel);
            if (!label.empty() && label.find('.') == std::string::npos)
                names.push_back(label + "." + cfg_.base_domain);
        }
        if (names.empty()) {
            d.message = "no hostname: set options.hostnames (or base_domain on the gateway)";
            return MG_ERR_INVALID;
        }
        const std::string agent{r.agent}, tunnel{r.tunnel};
        std::lock_guard lock{mutex_};
        for (const auto& n : names) {
            auto t = routes_.find(n);
            if (t && t->online && (t->agent != agent || t->tunnel != tunnel)) {
                d.message = "hostname " + n + " is already served by another tunnel";
                return MG_ERR_DENIED;
            }
        }
        for (const auto& n : names) routes_.add(n, agent, tunnel);
        policies_[agent + '\0' + tunnel] = std::make_shared<tunnel_policy>(std::move(pol));
        ++registrations_[agent + '\0' + tunnel];
        std::string msg;
        const std::string scheme = cfg_.https ? "https://" : "http://";
        for (const auto& n : names) msg += (msg.empty() ? "" : " ") + scheme + n;
        d.message = msg;
        return MG_OK;
    }

    void tunnel_unregister(std::string_view agent, std::string_view tunnel) override
    {
        const std::string key = std::string{agent} + '\0' + std::string{tunnel};
        std::lock_guard lock{mutex_};
        auto it = registrations_.find(key);
        if (it != registrations_.end() && --it->second > 0) return;  // a newer registration holds it
        registrations_.erase(key);
        routes_.set_offline(std::string{agent}, std::string{tunnel});
    }

    // ------------------------------------------------- gateway: clients

    void on_accept(mg_handle client, const mg_accept_info& info) override
    {
        auto c = std::make_shared<conn>();
        c->self = c;
        c->client = client;
        c->tls = info.tls != 0;
        c->sni = http::normalize_host(view(info.sni));
        c->peer_ip = http::ip_of(view(info.peer));
        c->plain_redirect = !c->tls && cfg_.redirect_https;
        auto* s = new side{c, true, client};
        host_.set_user(client, s);
        start_head_timer(*c);
    }

    void on_data(mg_handle pipe, void* user, const std::uint8_t* data, std::size_t size) override
    {
        if (!user) return;
        if (host_.role() == MG_ROLE_AGENT) return agent_data(pipe, static_cast<agent_side*>(user), data, size);
        auto* s = static_cast<side*>(user);
        const auto keep = s->c;  // `s` may be deleted by an on_closed our calls cause
        auto& c = *keep;
        const std::string_view bytes{reinterpret_cast<const char*>(data), size};
        if (s->is_client) {
            if (c.closing || c.st == conn::state::done) return;
            c.in.append(bytes);
            process(c);
        } else if (pipe == c.stream) {
            response_data(c, bytes);
        }
    }

    void on_fin(mg_handle pipe, void* user) override
    {
        if (!user) return;
        if (host_.role() == MG_ROLE_AGENT) return agent_fin(pipe, static_cast<agent_side*>(user));
        auto* s = static_cast<side*>(user);
        const auto keep = s->c;  // `s` may be deleted by an on_closed our calls cause
        auto& c = *keep;
        if (s->is_client) {
            c.client_fin = true;
            if (c.st == conn::state::body) {
                // Request body cut short: the request must not reach the
                // backend as if it were complete.
                host_.log(MG_LOG_DEBUG, "client " + c.peer_ip + " closed inside a request body");
                drop_stream(c, true);
                host_.close(c.client);
                c.closing = true;
                return;
            }
            maybe_finish(c);
        } else if (pipe == c.stream) {
            stream_ended(c, "the local service closed the connection", false);
        }
    }

    void on_writable(mg_handle pipe, void* user) override
    {
        if (!user) return;
        if (host_.role() == MG_ROLE_AGENT) return agent_writable(pipe, static_cast<agent_side*>(user));
        auto* s = static_cast<side*>(user);
        const auto keep = s->c;  // `s` may be deleted by an on_closed our calls cause
        auto& c = *keep;
        if (s->is_client) {
            if (c.stream_paused && c.stream) {
                c.stream_paused = false;
                host_.set_reading(c.stream, true);
            }
        } else if (pipe == c.stream && c.client_paused) {
            c.client_paused = false;
            host_.set_reading(c.client, true);
            process(c);
        }
    }

    void on_closed(mg_handle pipe, void* user, const mg_close_info& info) override
    {
        if (!user) return;
        if (host_.role() == MG_ROLE_AGENT) return agent_closed(pipe, static_cast<agent_side*>(user), info);
        auto* s = static_cast<side*>(user);
        auto keep = s->c;
        auto& c = *keep;
        if (s->is_client) {
            c.client_gone = true;
            cancel_head_timer(c);
            if (c.stream) {
                // Mid-response: the backend's work is moot; idle: let it go.
                if (c.pending.empty() && c.st != conn::state::body) host_.close(c.stream);
                else host_.reset(c.stream, "client went away");
                c.stream = MG_HANDLE_NONE;
            }
        } else if (pipe == c.stream) {
            const bool refused = info.reason == MG_CLOSE_REFUSED;
            std::string why = refused ? "the agent could not reach the local service"
                                      : "the tunnel stream ended before the response was complete";
            if (refused && info.message.size)
                host_.log(MG_LOG_DEBUG, "stream refused: " + std::string{view(info.message)});
            c.stream = MG_HANDLE_NONE;
            stream_ended(c, why, true);
        }
        delete s;
    }

    void on_timer(mg_timer t, void* /*user*/) override
    {
        if (host_.role() != MG_ROLE_GATEWAY) return;
        std::shared_ptr<conn> keep;
        {
            std::lock_guard lock{mutex_};
            auto it = timers_.find(t);
            if (it == timers_.end()) return;
            keep = it->second.lock();
            timers_.erase(it);
        }
        if (!keep) return;
        auto& c = *keep;
        if (t != c.head_timer || c.client_gone) return;
        c.head_timer = 0;
        // Only a connection waiting for a request head (not one waiting for
        // a response, sending a body or tunnelling).
        if (c.st != conn::state::head || !c.pending.empty() || c.closing) return;
        if (c.in.empty()) {
            // An idle keep-alive connection: close it quietly.
            finish_client(c);
            return;
        }
        host_.log(MG_LOG_DEBUG, "client " + c.peer_ip + ": no complete request head within head_timeout_ms");
        answer(c, 408, "Request Timeout", "No complete request arrived in time.");
    }

    // The head timer: a request head must arrive within head_timeout_ms of
    // the connection or of the previous response. Timers are looked up by
    // id (a conn may be gone when one fires), never through a user pointer.
    void start_head_timer(conn& c)
    {
        const auto t = host_.timer_start(cfg_.head_timeout_ms, c.client, nullptr);
        if (!t) return;
        std::lock_guard lock{mutex_};
        timers_[t] = c.self;
        c.head_timer = t;
    }

    void cancel_head_timer(conn& c)
    {
        if (!c.head_timer) return;
        host_.timer_cancel(c.head_timer);
        std::lock_guard lock{mutex_};
        timers_.erase(c.head_timer);
        c.head_timer = 0;
    }

    // ------------------------------------------------- agent: streams

    mg_status check_tunnel(const mg_stream_info& info, std::string& why) override
    {
        if (info.target_host.size == 0 || info.target_port == 0) {
            why = "an http tunnel needs local = \"host:port\" (the web server)";
            return MG_ERR_INVALID;
        }
        try {
            (void)agent_opts(view(info.options_json));
        } catch (const std::exception& e) {
            why = e.what();
            return MG_ERR_INVALID;
        }
        return MG_OK;
    }

    void on_stream(mg_handle stream, const mg_stream_info& info) override
    {
        agent_options opt;
        try {
            opt = agent_opts(view(info.options_json));
        } catch (const std::exception& e) {
            host_.reset(stream, e.what());
            return;
        }
        auto l = host_.connect(view(info.target_host), info.target_port, opt.connect_options, stream);
        if (!l) {
            host_.reset(stream, muxgate::sdk::status_text(l.status));
            return;
        }
        if (opt.host_header.empty() && !opt.inspect) {
            host_.link(stream, l.pipe);  // the fast path: bytes only
            return;
        }
        auto c = std::make_shared<agent_conn>();
        c->stream = stream;
        c->local = l.pipe;
        c->opt = opt;
        c->tunnel = std::string{view(info.tunnel)};
        c->peer = std::string{view(info.peer)};
        c->target_host = std::string{view(info.target_host)};
        c->target_port = info.target_port;
        host_.set_user(stream, new agent_side{c, true});
        host_.set_user(l.pipe, new agent_side{c, false});
        // The stream is confirmed by the first byte we write, or now.
        host_.accept_stream(stream);
    }

private:
    agent_options agent_opts(std::string_view options_json)
    {
        const auto v = parse_json(options_json);
        const auto* o = as_object(v);
        agent_options a;
        json::object co;
        if (get_bool(o, "tls", false)) {
            co["tls"] = true;
            co["verify"] = get_bool(o, "verify", true);
            if (auto ca = get_string(o, "ca"); !ca.empty()) co["ca"] = ca;
            if (auto n = get_string(o, "name"); !n.empty()) co["name"] = n;
            a.connect_options = json::serialize(co);
        }
        a.host_header = get_string(o, "host_header");
        if (!a.host_header.empty() && http::normalize_host(a.host_header).empty())
            throw std::runtime_error("host_header is not a valid host[:port]");
        a.inspect = get_bool(o, "inspect", false);
        (void)get_strings(o, "hostnames");
        return a;
    }

    // ---------------------------------------------- gateway: requests

    std::shared_ptr<tunnel_policy> policy(const std::string& agent, const std::string& tunnel)
    {
        std::lock_guard lock{mutex_};
        auto it = policies_.find(agent + '\0' + tunnel);
        return it == policies_.end() ? nullptr : it->second;
    }

    // Writes a final local answer and closes the client after it.
    void answer(conn& c, int status, std::string_view title, std::string_view detail,
                std::string_view extra = {})
    {
        host_.log(MG_LOG_DEBUG, "client " + c.peer_ip + ": answering " + std::to_string(status) + " " + std::string{detail});
        const auto text = http::error_response(status, title, detail, extra);
        if (!c.pending.empty()) {
            // Earlier responses are still coming: answer in order.
            c.held_answer = text;
            pause_client(c);
            return;
        }
        c.closing = true;
        c.st = conn::state::done;
        host_.write(c.client, text);
        host_.close(c.client);
        drop_stream(c, false);
    }

    void pause_client(conn& c)
    {
        if (!c.client_paused) host_.set_reading(c.client, false);
        c.client_paused = true;
    }

    void resume_client(conn& c)
    {
        if (c.client_paused) host_.set_reading(c.client, true);
        c.client_paused = false;
    }

    void drop_stream(conn& c, bool abort)
    {
        if (!c.stream) return;
        if (abort) host_.reset(c.stream, "request aborted");
        else host_.close(c.stream);
        c.stream = MG_HANDLE_NONE;
        c.stream_paused = false;
        c.in_resp_body = false;
        c.rin.clear();
    }

    // Handles as much of c.in as it can.
    void process(conn& c)
    {
        while (!c.closing && !c.client_gone && c.held_answer.empty() && !c.waiting_switch) {
            if (c.st == conn::state::body) {
                if (c.in.empty()) return;
                const auto n = c.req_body.feed(c.in);
                if (c.req_body.failed()) {
                    host_.log(MG_LOG_INFO, "client " + c.peer_ip + ": bad request body (" +
                                               c.req_body.error() + "); request aborted");
                    drop_stream(c, true);
                    c.pending.clear();
                    answer(c, 400, "Bad Request", "The request body is malformed.");
                    return;
                }
                const mg_status st = host_.write(c.stream, c.in.data(), n);
                c.in.erase(0, n);
                if (c.req_body.done()) c.st = conn::state::head;
                if (st == MG_AGAIN) {
                    pause_client(c);
                    return;
                }
                if (st < 0) return;  // the stream is gone; on_closed follows
                continue;
            }
            if (c.st != conn::state::head) return;
            if (c.pending.size() >= max_pipeline) {
                // Enough requests in flight: read more once responses drain.
                c.pipeline_full = true;
                pause_client(c);
                return;
            }
            if (c.in.empty()) {
                maybe_finish(c);
                return;
            }
            http::message_head h;
            const auto r = http::parse_request(c.in, cfg_.limits, h);
            if (r.state == http::parse_state::incomplete) return;
            if (r.state == http::parse_state::error) {
                host_.log(MG_LOG_INFO, "client " + c.peer_ip + ": " + std::to_string(r.status) + " " +
                                           r.error);
                c.in.clear();
                answer(c, r.status, http::reason_phrase(r.status),
                       r.status == 431 ? "The request header is too large."
                                       : "The request could not be understood.");
                return;
            }
            cancel_head_timer(c);
            if (!route_request(c, h)) return;
        }
    }

    // Routes one parsed request (head at the front of c.in). False when
    // processing must stop for now.
    bool route_request(conn& c, const http::message_head& h)
    {
        std::string host;
        if (auto hv = h.get("host")) host = http::normalize_host(*hv);
        if (host.empty()) {
            c.in.clear();
            answer(c, 400, "Bad Request", "The request has no valid Host header.");
            return false;
        }
        if (c.plain_redirect) {
            c.in.clear();
            std::string loc = "https://" + host;
            if (cfg_.https_port != 443) loc += ":" + std::to_string(cfg_.https_port);
            loc += h.target.front() == '/' ? h.target : "/";
            answer(c, 308, "Permanent Redirect", "This site is served over HTTPS.",
                   "Location: " + loc + "\r\n");
            return false;
        }
        // SNI names a host (never an IP literal, RFC 6066 §3), though some
        // clients send the address they connected to: ignore those.
        const bool sni_is_name =
            c.sni.find_first_not_of("0123456789.") != std::string::npos && c.sni.front() != '[';
        if (c.tls && sni_is_name && c.sni != host) {
            c.in.clear();
            answer(c, 421, "Misdirected Request",
                   "The host name of this request differs from the one the connection was made for.");
            return false;
        }
        std::optional<http::router::target> t;
        {
            std::lock_guard lock{mutex_};
            t = routes_.find(host);
        }
        if (!t) {
            c.in.clear();
            answer(c, 404, "Not Found", "No site is served under this host name here.");
            return false;
        }
        if (!t->online) {
            c.in.clear();
            answer(c, 503, "Service Unavailable",
                   "The tunnel for this site is registered, but its agent is not connected right now. "
                   "Try again later.",
                   "Retry-After: 10\r\n");
            return false;
        }
        if (auto pol = policy(t->agent, t->tunnel)) {
            if (!pol->allow.empty() && !http::ip_allowed(c.peer_ip, pol->allow)) {
                host_.log(MG_LOG_INFO, "client " + c.peer_ip + " not in allow_ips of tunnel " + t->tunnel);
                c.in.clear();
                answer(c, 403, "Forbidden", "Your address may not use this site.");
                return false;
            }
            if (!pol->basic_auth.empty()) {
                const auto a = h.get("authorization");
                if (!a || !http::basic_auth_ok(*a, pol->basic_auth)) {
                    c.in.clear();
                    answer(c, 401, "Unauthorized", "This site needs a user name and password.",
                           "WWW-Authenticate: Basic realm=\"" + host + "\", charset=\"UTF-8\"\r\n");
                    return false;
                }
            }
        }
        // Another tunnel than the open stream's: finish the responses on
        // that stream first (in order), then switch.
        if (c.stream && (c.agent != t->agent || c.tunnel != t->tunnel || !c.stream_reusable)) {
            if (!c.pending.empty()) {
                c.waiting_switch = true;
                pause_client(c);
                return false;
            }
            drop_stream(c, false);
        }
        if (!c.stream) {
            auto* s = new side{nullptr, false, MG_HANDLE_NONE};
            s->c = c.self.lock();
            const std::string meta = "{\"host\":" + json::serialize(json::value(host)) +
                                     ",\"tls\":" + (c.tls ? "true" : "false") + "}";
            auto o = host_.open_stream(t->agent, t->tunnel, meta, c.client, s);
            if (!o) {
                delete s;
                c.in.clear();
                if (o.status == MG_ERR_OFFLINE || o.status == MG_ERR_NOT_FOUND)
                    answer(c, 503, "Service Unavailable",
                           "The agent serving this site is not connected right now. Try again later.",
                           "Retry-After: 10\r\n");
                else {
                    host_.log(MG_LOG_INFO, "tunnel " + t->tunnel + ": cannot open a stream: " +
                                               muxgate::sdk::status_text(o.status));
                    answer(c, 502, "Bad Gateway", "The tunnel to this site cannot take more connections now.");
                }
                return false;
            }
            s->pipe = o.pipe;
            c.stream = o.pipe;
            c.agent = t->agent;
            c.tunnel = t->tunnel;
            c.stream_reusable = true;
            c.resp_started = false;
        }
        http::forward_info fi;
        fi.client_ip = c.peer_ip;
        fi.tls = c.tls;
        fi.trust_incoming = cfg_.trust_forwarded;
        const auto head = http::forward_request_head(h, fi, host);
        mg_status st = host_.write(c.stream, head);
        c.in.erase(0, h.head_size);
        c.pending.push_back({h.method, h.upgrade, !h.keep_alive});
        c.req_body.start(h.body, h.content_length);
        if (h.upgrade || h.method == "CONNECT") {
            // Nothing more from the client until the response says whether
            // the connection switches protocols.
            c.st = conn::state::upgrade_wait;
            pause_client(c);
            return false;
        }
        c.st = c.req_body.done() ? (h.keep_alive ? conn::state::head : conn::state::done)
                                 : conn::state::body;
        if (!h.keep_alive && c.st == conn::state::head) c.st = conn::state::done;
        if (st == MG_AGAIN) {
            pause_client(c);
            return false;
        }
        return c.st == conn::state::head || c.st == conn::state::body;
    }

    // ---------------------------------------------- gateway: responses

    void response_data(conn& c, std::string_view bytes)
    {
        while (!bytes.empty() && c.stream && !c.client_gone) {
            if (c.pending.empty()) {
                host_.log(MG_LOG_INFO, "tunnel " + c.tunnel + ": response bytes without a request; closing");
                drop_stream(c, true);
                host_.close(c.client);
                c.closing = true;
                return;
            }
            if (!c.in_resp_body) {
                const auto before = c.rin.size();
                c.rin.append(bytes);
                http::message_head h;
                const auto r = http::parse_response(c.rin, cfg_.limits, c.pending.front().method, h);
                if (r.state == http::parse_state::incomplete) return;
                if (r.state == http::parse_state::error) {
                    host_.log(MG_LOG_INFO, "tunnel " + c.tunnel + ": bad response: " + r.error);
                    drop_stream(c, true);
                    c.pending.clear();
                    if (!c.resp_started)
                        answer(c, 502, "Bad Gateway", "The local service sent an invalid response.");
                    else
                        host_.reset(c.client, "bad response");
                    return;
                }
                // The head goes out unchanged.
                const auto used = h.head_size - before;  // bytes of `bytes` in the head
                host_.write(c.client, c.rin.data(), h.head_size);
                c.rin.clear();
                c.resp_started = true;
                bytes.remove_prefix(used);
                if (h.status == 101 || (c.pending.front().method == "CONNECT" && h.status < 300)) {
                    to_tunnel(c, bytes);
                    return;
                }
                if (h.status < 200) continue;  // 100 Continue, 103 Early Hints: more heads follow
                if (c.pending.front().upgrade) {
                    // Upgrade refused: the request had no body we kept back.
                    c.st = conn::state::head;
                    resume_client(c);
                }
                c.resp_body.start(h.body, h.content_length);
                c.resp_keep_alive = h.keep_alive;
                c.in_resp_body = true;
                if (c.resp_body.done()) {
                    response_done(c);
                    continue;
                }
            }
            const auto n = c.resp_body.feed(bytes);
            if (c.resp_body.failed()) {
                host_.log(MG_LOG_INFO, "tunnel " + c.tunnel + ": bad response body: " + c.resp_body.error());
                drop_stream(c, true);
                host_.reset(c.client, "bad response body");
                c.closing = true;
                return;
            }
            const mg_status st = host_.write(c.client, bytes.data(), n);
            bytes.remove_prefix(n);
            if (st == MG_AGAIN && !c.stream_paused) {
                c.stream_paused = true;
                host_.set_reading(c.stream, false);
            }
            if (c.resp_body.done()) response_done(c);
        }
    }

    void response_done(conn& c)
    {
        c.in_resp_body = false;
        c.resp_started = false;
        const auto req = c.pending.front();
        c.pending.pop_front();
        if (!c.resp_keep_alive) c.stream_reusable = false;
        if (req.close_after) {
            // The client asked to close after this response.
            c.pending.clear();
            finish_client(c);
            return;
        }
        if (!c.resp_keep_alive) {
            // The backend closes its side: later requests need a new stream.
            if (!c.pending.empty()) {
                // Requests already sent after it are lost on that connection.
                host_.log(MG_LOG_DEBUG, "backend closed a connection with pipelined requests queued");
                c.pending.clear();
                drop_stream(c, true);
                host_.close(c.client);
                c.closing = true;
                return;
            }
            drop_stream(c, false);
        }
        if (c.pending.empty()) {
            if (c.pipeline_full) {
                c.pipeline_full = false;
                resume_client(c);
            }
            after_responses(c);
        } else if (c.pipeline_full && c.pending.size() < max_pipeline / 2) {
            c.pipeline_full = false;
            resume_client(c);
            process(c);
        }
    }

    void after_responses(conn& c)
    {
        if (!c.held_answer.empty()) {
            std::string text;
            text.swap(c.held_answer);
            c.closing = true;
            c.st = conn::state::done;
            host_.write(c.client, text);
            host_.close(c.client);
            drop_stream(c, false);
            return;
        }
        if (c.waiting_switch) {
            c.waiting_switch = false;
            drop_stream(c, false);
            resume_client(c);
        }
        if (c.st == conn::state::done) {
            finish_client(c);
            return;
        }
        process(c);
        maybe_finish(c);
        // Waiting for the next request: it must come within head_timeout_ms.
        if (!c.closing && !c.client_gone && c.st == conn::state::head && c.pending.empty() &&
            !c.head_timer) {
            start_head_timer(c);
        }
    }

    void finish_client(conn& c)
    {
        host_.log(MG_LOG_DEBUG, "client " + c.peer_ip + ": done, closing");
        c.closing = true;
        c.st = conn::state::done;
        host_.close(c.client);
        drop_stream(c, false);
    }

    // The client half-closed: once every response is out, close.
    void maybe_finish(conn& c)
    {
        if (c.client_fin && c.pending.empty() && !c.closing && c.in.empty()) finish_client(c);
    }

    // The stream ended (FIN or closed) while `c` may wait for a response.
    void stream_ended(conn& c, const std::string& why, bool closed)
    {
        if (c.in_resp_body) {
            c.resp_body.finish_at_eof();
            if (c.resp_body.done()) {
                // A response delimited by the close.
                c.in_resp_body = false;
                c.pending.clear();
                if (!closed) drop_stream(c, false);
                finish_client(c);
                return;
            }
        }
        if (c.pending.empty() && c.st != conn::state::body) {
            // Idle stream closed by the backend: the next request opens a new one.
            if (!closed) drop_stream(c, false);
            c.stream = MG_HANDLE_NONE;
            if (!c.held_answer.empty() || c.waiting_switch) after_responses(c);
            return;
        }
        if (!closed) drop_stream(c, true);
        c.stream = MG_HANDLE_NONE;
        c.pending.clear();
        if (c.resp_started || c.in_resp_body) {
            host_.reset(c.client, "response cut short");
            c.closing = true;
            return;
        }
        answer(c, 502, "Bad Gateway", why + ".");
    }

    // 101 Switching Protocols: from now on bytes only, relayed by the host.
    void to_tunnel(conn& c, std::string_view rest)
    {
        if (!rest.empty()) host_.write(c.client, rest.data(), rest.size());
        if (!c.in.empty()) host_.write(c.stream, c.in);
        c.in.clear();
        c.st = conn::state::tunnel;
        c.pending.clear();
        cancel_head_timer(c);
        const auto stream = c.stream;
        // From here the host relays; our events stop (on_closed still comes).
        host_.link(c.client, stream);
        c.client_paused = false;
        c.stream_paused = false;
    }

    // ------------------------------------------------- agent: filter

    void agent_data(mg_handle pipe, agent_side* s, const std::uint8_t* data, std::size_t size);
    void agent_fin(mg_handle pipe, agent_side* s);
    void agent_writable(mg_handle pipe, agent_side* s);
    void agent_closed(mg_handle pipe, agent_side* s, const mg_close_info& info);

    struct inspect_config {
        std::size_t entries = 100;
        std::size_t body_bytes = 4096;
        std::string listen;
    };

    gateway_config cfg_;
    int https_tag_ = 0, plain_tag_ = 0;
    std::mutex mutex_;  // routes_, policies_, registrations_
    http::router routes_;
    std::unordered_map<std::string, std::shared_ptr<tunnel_policy>> policies_;
    std::unordered_map<std::string, int> registrations_;
    std::unordered_map<mg_timer, std::weak_ptr<conn>> timers_;

    inspect_config inspect_cfg_;
    std::shared_ptr<http::inspect_ring> ring_;
    std::unique_ptr<http::inspect_server> server_;
};


// ------------------------------------------------------------- agent filter
//
// Requests (stream -> local) are parsed to rewrite Host and to record them;
// responses (local -> stream) only to record them. Bytes go on unchanged
// otherwise, under the same write / MG_AGAIN / set_reading flow control.

void http_plugin::agent_data(mg_handle pipe, agent_side* s, const std::uint8_t* data, std::size_t size)
{
    const auto keep = s->c;  // `s` may be deleted by an on_closed our calls cause
    auto& c = *keep;
    const bool is_stream = s->is_stream;
    std::string_view bytes{reinterpret_cast<const char*>(data), size};
    const mg_handle to = is_stream ? c.local : c.stream;
    auto send = [&](std::string_view b) {
        if (b.empty()) return;
        if (host_.write(to, b.data(), b.size()) == MG_AGAIN) {
            host_.set_reading(pipe, false);
            (is_stream ? c.stream_paused : c.local_paused) = true;
        }
    };
    if (c.tunnel_mode) return send(bytes);
    http::head_limits lim;
    lim.max_head = 1024 * 1024;  // the gateway enforced its own limits
    lim.max_headers = 10000;
    if (is_stream) {
        while (!bytes.empty()) {
            if (c.in_body) {
                const auto n = c.req_body.feed(bytes);
                if (c.req_body.failed()) {
                    host_.reset(c.stream, "bad request body");
                    host_.reset(c.local, "bad request body");
                    return;
                }
                if (ring_ && !c.pending.empty() && c.opt.inspect)
                    ring_->request_body(c.pending.back().id, bytes.substr(0, n));
                send(bytes.substr(0, n));
                bytes.remove_prefix(n);
                if (c.req_body.done()) c.in_body = false;
                continue;
            }
            const auto before = c.in.size();
            c.in.append(bytes);
            bytes = {};
            http::message_head h;
            const auto r = http::parse_request(c.in, lim, h);
            if (r.state == http::parse_state::incomplete) return;
            if (r.state == http::parse_state::error) {
                host_.log(MG_LOG_INFO, "tunnel " + c.tunnel + ": bad request from the gateway: " + r.error);
                host_.reset(c.stream, "bad request");
                host_.reset(c.local, "bad request");
                return;
            }
            const std::string head = c.opt.host_header.empty()
                                         ? c.in.substr(0, h.head_size)
                                         : http::rewrite_host(h, c.opt.host_header);
            agent_conn::exchange x;
            x.method = h.method;
            if (ring_ && c.opt.inspect) {
                http::exchange_record rec;
                rec.tunnel = c.tunnel;
                rec.peer = c.peer;
                rec.target_host = c.target_host;
                rec.target_port = c.target_port;
                rec.target_tls = !c.opt.connect_options.empty();
                rec.method = h.method;
                rec.path = h.target;
                rec.request_head = head;
                x.id = ring_->add(std::move(rec));
            }
            c.pending.push_back(x);
            send(head);
            const std::string rest = c.in.substr(h.head_size);
            (void)before;
            c.in.clear();
            c.req_body.start(h.body, h.content_length);
            c.in_body = !c.req_body.done();
            if (h.upgrade) {
                // Whatever follows goes on as is once upgraded; until then
                // the client sends nothing more (the gateway holds it).
                send(rest);
                return;
            }
            bytes = rest.empty() ? std::string_view{} : std::string_view{c.scratch = rest};
        }
        return;
    }
    // local -> stream
    while (!bytes.empty()) {
        if (c.in_resp_body) {
            const auto n = c.resp_body.feed(bytes);
            if (c.resp_body.failed()) {
                host_.reset(c.stream, "bad response body");
                host_.reset(c.local, "bad response body");
                return;
            }
            if (ring_ && c.opt.inspect && !c.pending.empty())
                ring_->response_body(c.pending.front().id, bytes.substr(0, n));
            send(bytes.substr(0, n));
            bytes.remove_prefix(n);
            if (c.resp_body.done()) {
                c.in_resp_body = false;
                if (ring_ && c.opt.inspect && !c.pending.empty()) ring_->response_done(c.pending.front().id);
                if (!c.pending.empty()) c.pending.pop_front();
            }
            continue;
        }
        if (c.pending.empty()) return send(bytes);  // nothing to match it with: pass on
        c.rin.append(bytes);
        bytes = {};
        http::message_head h;
        const auto r = http::parse_response(c.rin, lim, c.pending.front().method, h);
        if (r.state == http::parse_state::incomplete) return;
        if (r.state == http::parse_state::error) {
            // Not ours to judge: the gateway answers 502; pass it on.
            c.tunnel_mode = true;
            std::string all;
            all.swap(c.rin);
            return send(all);
        }
        if (ring_ && c.opt.inspect)
            ring_->response_head(c.pending.front().id, h.status, std::string_view{c.rin}.substr(0, h.head_size));
        send(std::string_view{c.rin}.substr(0, h.head_size));
        c.scratch = c.rin.substr(h.head_size);
        c.rin.clear();
        bytes = c.scratch;
        if (h.status == 101) {
            c.tunnel_mode = true;
            if (ring_ && c.opt.inspect) ring_->response_done(c.pending.front().id);
            return send(bytes);
        }
        if (h.status < 200) continue;
        c.resp_body.start(h.body, h.content_length);
        c.in_resp_body = !c.resp_body.done();
        if (!c.in_resp_body) {
            if (ring_ && c.opt.inspect) ring_->response_done(c.pending.front().id);
            c.pending.pop_front();
        }
        if (!bytes.empty()) {
            // `bytes` views c.scratch; move it aside before the loop reuses it.
            std::string rest{bytes};
            c.scratch2.swap(rest);
            bytes = c.scratch2;
        }
    }
}

void http_plugin::agent_fin(mg_handle pipe, agent_side* s)
{
    const auto keep = s->c;
    auto& c = *keep;
    const bool is_stream_side = s->is_stream;
    if (!is_stream_side && c.in_resp_body) {
        c.resp_body.finish_at_eof();
        if (c.resp_body.done() && ring_ && c.opt.inspect && !c.pending.empty())
            ring_->response_done(c.pending.front().id);
    }
    (void)pipe;
    host_.shutdown_write(is_stream_side ? c.local : c.stream);
}

void http_plugin::agent_writable(mg_handle pipe, agent_side* s)
{
    auto& c = *s->c;
    (void)pipe;
    // `pipe` drained: resume the one writing into it.
    if (s->is_stream && c.local_paused) {
        c.local_paused = false;
        host_.set_reading(c.local, true);
    } else if (!s->is_stream && c.stream_paused) {
        c.stream_paused = false;
        host_.set_reading(c.stream, true);
    }
}

void http_plugin::agent_closed(mg_handle pipe, agent_side* s, const mg_close_info& info)
{
    auto& c = *s->c;
    (void)pipe;
    const mg_handle other = s->is_stream ? c.local : c.stream;
    if (info.reason == MG_CLOSE_DONE) host_.close(other);
    else host_.reset(other, info.reason == MG_CLOSE_REFUSED ? "local service refused the connection"
                                                            : "peer aborted");
    delete s;
}

}  // namespace

MUXGATE_PLUGIN(http_plugin, "http", protocol_id, "1.0.0");
