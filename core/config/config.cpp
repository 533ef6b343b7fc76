#include "config/config.hpp"

#include "net/address.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <set>
#include <sstream>

namespace muxgate::config {

namespace json = boost::json;

std::string problem::text() const
{
    if (line == 0) return fmt::format("{}: {}", file, message);
    return fmt::format("{}:{}:{}: {}", file, line, column, message);
}

namespace {

// Names of agents, tunnels: safe in logs, URLs and host names.
bool valid_name(std::string_view s)
{
    if (s.empty() || s.size() > 64) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_' || c == '.';
    });
}

std::size_t edit_distance(std::string_view a, std::string_view b)
{
    std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j)
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

struct context {
    std::string file;
    std::vector<problem> problems;

    void add(const toml::source_region& where, std::string message)
    {
        problems.push_back({file, where.begin.line, where.begin.column, std::move(message)});
    }
    void add_global(std::string message) { problems.push_back({file, 0, 0, std::move(message)}); }
};

// Reads the keys of one table, tracking which were used so that the rest can
// be reported as unknown.
class reader {
public:
    reader(const toml::table& t, std::string section, context& c)
        : t_(t), section_(std::move(section)), c_(c)
    {
    }

    const toml::node* node(std::string_view key)
    {
        known_.insert(std::string{key});
        return t_.get(key);
    }

    std::string where(std::string_view key) const
    {
        return section_.empty() ? fmt::format("\"{}\"", key) : fmt::format("[{}] \"{}\"", section_, key);
    }

    bool str(std::string_view key, std::string& out, bool required = false)
    {
        const auto* n = node(key);
        if (!n) {
            if (required) c_.add(t_.source(), fmt::format("{} is required", where(key)));
            return false;
        }
        if (const auto* s = n->as_string()) {
            out = s->get();
            return true;
        }
        c_.add(n->source(), fmt::format("{} must be a string", where(key)));
        return false;
    }

    bool boolean(std::string_view key, bool& out)
    {
        const auto* n = node(key);
        if (!n) return false;
        if (const auto* b = n->as_boolean()) {
            out = b->get();
            return true;
        }
        c_.add(n->source(), fmt::format("{} must be true or false", where(key)));
        return false;
    }

    template <class T>
    bool integer(std::string_view key, T& out, std::int64_t min, std::int64_t max)
    {
        const auto* n = node(key);
        if (!n) return false;
        const auto* i = n->as_integer();
        if (!i) {
            c_.add(n->source(), fmt::format("{} must be an integer", where(key)));
            return false;
        }
        const std::int64_t v = i->get();
        if (v < min || v > max) {
            c_.add(n->source(), fmt::format("{} must be in {}..{} (got {})", where(key), min, max, v));
            return false;
        }
        out = static_cast<T>(v);
        return true;
    }

    // A byte size: an integer, or a string like "256 KiB" / "4MiB" / "64k".
    bool size(std::string_view key, std::uint32_t& out, std::uint64_t min, std::uint64_t max)
    {
        const auto* n = node(key);
        if (!n) return false;
        std::uint64_t v = 0;
        if (const auto* i = n->as_integer()) {
            if (i->get() < 0) {
                c_.add(n->source(), fmt::format("{} must not be negative", where(key)));
                return false;
            }
            v = static_cast<std::uint64_t>(i->get());
        } else if (const auto* s = n->as_string()) {
            std::string_view text = s->get();
            std::uint64_t num = 0;
            auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), num);
            std::string_view unit{p, static_cast<std::size_t>(text.data() + text.size() - p)};
            while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
            std::uint64_t mul = 0;
            if (unit.empty() || unit == "B") mul = 1;
            else if (unit == "KiB" || unit == "k" || unit == "K" || unit == "KB") mul = 1024;
            else if (unit == "MiB" || unit == "m" || unit == "M" || unit == "MB") mul = 1024 * 1024;
            else if (unit == "GiB" || unit == "G" || unit == "GB") mul = 1024ull * 1024 * 1024;
            if (ec != std::errc{} || p == text.data() || mul == 0) {
                c_.add(n->source(), fmt::format("{}: \"{}\" is not a size (say 262144, \"256 KiB\" "
                                                "or \"4 MiB\")",
                                                where(key), text));
                return false;
            }
            if (num > UINT64_MAX / mul) {
                c_.add(n->source(), fmt::format("{}: \"{}\" is too large", where(key), text));
                return false;
            }
            v = num * mul;
        } else {
            c_.add(n->source(), fmt::format("{} must be a size in bytes", where(key)));
            return false;
        }
        if (v < min || v > max) {
            c_.add(n->source(), fmt::format("{} must be in {}..{} bytes (got {})", where(key), min,
                                            max, v));
            return false;
        }
        out = static_cast<std::uint32_t>(v);
        return true;
    }

    bool strings(std::string_view key, std::vector<std::string>& out)
    {
        const auto* n = node(key);
        if (!n) return false;
        const auto* a = n->as_array();
        if (!a) {
            c_.add(n->source(), fmt::format("{} must be an array of strings", where(key)));
            return false;
        }
        out.clear();
        for (const auto& e : *a) {
            if (const auto* s = e.as_string())
                out.push_back(s->get());
            else {
                c_.add(e.source(), fmt::format("{} must contain only strings", where(key)));
                return false;
            }
        }
        return true;
    }

    const toml::table* table(std::string_view key)
    {
        const auto* n = node(key);
        if (!n) return nullptr;
        if (const auto* t = n->as_table()) return t;
        c_.add(n->source(), fmt::format("{} must be a table", where(key)));
        return nullptr;
    }

    // Report every key that nobody asked for.
    void finish(bool allow_unknown = false)
    {
        if (allow_unknown) return;
        for (auto&& [k, v] : t_) {
            const std::string name{k.str()};
            if (known_.count(name)) continue;
            std::string hint;
            std::size_t best = 3;
            for (const auto& cand : known_) {
                const auto d = edit_distance(name, cand);
                if (d < best) {
                    best = d;
                    hint = cand;
                }
            }
            c_.add(k.source(),
                   fmt::format("unknown key {}{}", where(name),
                               hint.empty() ? std::string{} : fmt::format(" (did you mean \"{}\"?)", hint)));
        }
    }

    const toml::table& raw() const { return t_; }

private:
    const toml::table& t_;
    std::string section_;
    context& c_;
    std::set<std::string> known_;
};

json::value to_json(const toml::node& n)
{
    if (const auto* t = n.as_table()) {
        json::object o;
        for (auto&& [k, v] : *t) o[std::string{k.str()}] = to_json(v);
        return o;
    }
    if (const auto* a = n.as_array()) {
        json::array arr;
        for (const auto& e : *a) arr.push_back(to_json(e));
        return arr;
    }
    if (const auto* s = n.as_string()) return json::string{s->get()};
    if (const auto* i = n.as_integer()) return i->get();
    if (const auto* f = n.as_floating_point()) return f->get();
    if (const auto* b = n.as_boolean()) return b->get();
    std::ostringstream os;
    n.visit([&](auto&& v) { os << v; });
    return json::string{os.str()};
}

std::string table_json(const toml::table& t) { return json::serialize(to_json(t)); }

void parse_limits(reader& r, limits& l, bool gateway, context& c)
{
    constexpr std::uint64_t KiB = 1024, MiB = 1024 * 1024;
    r.size("max_frame_payload", l.max_frame_payload, 16 * KiB, 64 * MiB);
    r.size("max_control_message", l.max_control_message, 4 * KiB, 16 * MiB);
    r.size("max_message", l.max_message, 64 * KiB, 256 * MiB);
    r.size("write_message", l.write_message, 16 * KiB, 64 * MiB);
    r.size("write_quantum", l.write_quantum, 1 * KiB, 16 * MiB);
    r.size("socket_unsent", l.socket_unsent, 0, 1024 * MiB);
    r.size("stream_window", l.stream_window, 16 * KiB, 1024 * MiB);
    r.size("stream_window_max", l.stream_window_max, 16 * KiB, 1024 * MiB);
    r.size("window_growth_budget", l.window_growth_budget, 0, 2048 * MiB);
    r.size("high_watermark", l.high_watermark, 16 * KiB, 1024 * MiB);
    r.integer("max_streams", l.max_streams_per_agent, 1, 1'000'000);
    r.size("max_control_backlog", l.max_control_backlog, 64 * KiB, 1024 * MiB);
    r.integer("handshake_timeout_ms", l.handshake_timeout_ms, 100, 600'000);
    r.integer("heartbeat_timeout_ms", l.heartbeat_timeout_ms, 100, 3'600'000);
    r.integer("stream_idle_timeout_s", l.stream_idle_timeout_s, 0, 30 * 86'400);
    if (gateway) {
        r.integer("max_pending_opens", l.max_pending_opens, 1, 1'000'000);
        r.integer("max_tunnels_per_agent", l.max_tunnels_per_agent, 0, 65'535);
        r.integer("auth_timeout_ms", l.auth_timeout_ms, 100, 600'000);
        r.integer("heartbeat_interval_ms", l.heartbeat_interval_ms, 50, 3'600'000);
        r.integer("open_timeout_ms", l.open_timeout_ms, 100, 600'000);
        r.integer("drain_timeout_ms", l.drain_timeout_ms, 0, 3'600'000);
        r.integer("max_agents", l.max_agents, 1, 10'000'000);
        r.integer("max_handshakes", l.max_handshakes, 1, 1'000'000);
        if (l.heartbeat_timeout_ms <= l.heartbeat_interval_ms)
            c.add(r.raw().source(), fmt::format("[limits] heartbeat_timeout_ms ({}) must be larger "
                                                "than heartbeat_interval_ms ({})",
                                                l.heartbeat_timeout_ms, l.heartbeat_interval_ms));
    }
    if (l.max_control_message + 5 > l.max_message)
        c.add(r.raw().source(), "[limits] max_message must hold a whole max_control_message");
    r.finish();
}

void parse_plugins(reader& r, std::map<std::string, std::string>& out, context& c)
{
    const auto* plugins = r.table("plugins");
    if (!plugins) return;
    for (auto&& [k, v] : *plugins) {
        if (const auto* t = v.as_table())
            out[std::string{k.str()}] = table_json(*t);
        else
            c.add(v.source(), fmt::format("[plugins] \"{}\" must be a table ([plugins.{}])",
                                          k.str(), k.str()));
    }
}

void check_level(reader& r, const std::string& level, context& c, const char* key)
{
    static const std::set<std::string> levels{"trace", "debug", "info", "warn", "error", "off"};
    if (!levels.count(level))
        if (const auto* n = r.raw().get(key))
            c.add(n->source(), fmt::format("\"{}\" must be one of trace, debug, info, warn, error, "
                                           "off (got \"{}\")",
                                           key, level));
}

template <class F>
void with_document(std::string_view text, std::string_view file, context& c, F&& f)
{
    try {
        toml::table doc = toml::parse(text, file);
        f(doc);
    } catch (const toml::parse_error& e) {
        c.problems.push_back({std::string{file}, e.source().begin.line, e.source().begin.column,
                              std::string{e.description()}});
    }
}

std::optional<std::string> read_text(const std::string& path, std::string& error)
{
    std::ifstream in{path, std::ios::binary};
    if (!in) {
        error = "cannot open the file";
        return std::nullopt;
    }
    std::ostringstream os;
    os << in.rdbuf();
    return os.str();
}

}  // namespace

std::string default_tunnel_name(const tunnel_config& t)
{
    if (t.remote_port != 0) return fmt::format("{}-{}", t.protocol, t.remote_port);
    // Gateway-chosen port: name it after the target instead.
    std::string n = fmt::format("{}-{}-{}", t.protocol, t.local_host, t.local_port);
    for (char& c : n)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            c = '-';
    return n.substr(0, 64);
}

std::optional<port_range> parse_port_range(std::string_view text, std::string& error)
{
    auto num = [&](std::string_view s, std::uint16_t& out) {
        unsigned v = 0;
        auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (s.empty() || ec != std::errc{} || p != s.data() + s.size() || v < 1 || v > 65535)
            return false;
        out = static_cast<std::uint16_t>(v);
        return true;
    };
    port_range r;
    const auto dash = text.find('-');
    const bool ok = dash == std::string_view::npos
                        ? (num(text, r.first) && (r.last = r.first, true))
                        : (num(text.substr(0, dash), r.first) && num(text.substr(dash + 1), r.last));
    if (!ok || r.first > r.last) {
        error = fmt::format("\"{}\" is not a port or a range like \"20000-20099\"", text);
        return std::nullopt;
    }
    return r;
}

std::optional<tunnel_config> parse_tunnel_flag(std::string_view text, std::string& error)
{
    // PROTO:REMOTE_PORT:LOCAL_HOST:LOCAL_PORT
    const auto c1 = text.find(':');
    if (c1 == std::string_view::npos) {
        error = fmt::format("\"{}\": expected PROTO:REMOTE_PORT:LOCAL_HOST:LOCAL_PORT", text);
        return std::nullopt;
    }
    const auto c2 = text.find(':', c1 + 1);
    if (c2 == std::string_view::npos) {
        error = fmt::format("\"{}\": expected PROTO:REMOTE_PORT:LOCAL_HOST:LOCAL_PORT", text);
        return std::nullopt;
    }
    tunnel_config t;
    t.protocol = std::string{text.substr(0, c1)};
    const auto remote = text.substr(c1 + 1, c2 - c1 - 1);
    unsigned rp = 0;
    auto [p, ec] = std::from_chars(remote.data(), remote.data() + remote.size(), rp);
    if (remote.empty() || ec != std::errc{} || p != remote.data() + remote.size() || rp > 65535) {
        error = fmt::format("\"{}\": \"{}\" is not a remote port", text, remote);
        return std::nullopt;
    }
    t.remote_port = static_cast<std::uint16_t>(rp);
    std::string err;
    auto local = net::parse_host_port(text.substr(c2 + 1), err);
    if (!local || local->host.empty()) {
        error = fmt::format("\"{}\": local target: {}", text, local ? "empty host" : err);
        return std::nullopt;
    }
    if (!valid_name(t.protocol)) {
        error = fmt::format("\"{}\": \"{}\" is not a protocol name", text, t.protocol);
        return std::nullopt;
    }
    t.local_host = local->host;
    t.local_port = local->port;
    t.name = default_tunnel_name(t);
    return t;
}

gateway_result parse_gateway(std::string_view text, std::string_view file)
{
    gateway_result out;
    context c{std::string{file}, {}};
    auto& g = out.cfg;
    g.file = std::string{file};
    with_document(text, file, c, [&](const toml::table& doc) {
        reader top{doc, "", c};
        if (const auto* t = top.table("gateway")) {
            reader r{*t, "gateway", c};
            if (r.str("listen", g.listen)) {
                std::string err;
                if (!net::parse_host_port(g.listen, err, true))
                    c.add(r.node("listen")->source(), "[gateway] \"listen\": " + err);
            }
            if (r.str("path", g.path) && (g.path.empty() || g.path.front() != '/'))
                c.add(r.node("path")->source(), "[gateway] \"path\" must start with /");
            r.str("public_bind", g.public_bind);
            r.integer("threads", g.threads, 0, 1024);
            r.str("modules_dir", g.modules_dir);
            r.strings("plugins", g.plugins);
            if (r.str("log_level", g.log_level)) check_level(r, g.log_level, c, "log_level");
            r.integer("port_reservation_s", g.port_reservation_s, 0, 7 * 86'400);
            r.finish();
        }
        if (const auto* t = top.table("tls")) {
            reader r{*t, "tls", c};
            r.str("cert", g.cert);
            r.str("key", g.key);
            r.boolean("self_signed", g.self_signed);
            r.strings("self_signed_names", g.self_signed_names);
            r.boolean("insecure_plaintext", g.plaintext);
            if (const auto* n = r.node("certificates")) {
                const auto* arr = n->as_array();
                if (!arr || !arr->is_array_of_tables()) {
                    c.add(n->source(), "[tls] \"certificates\" must be an array of tables "
                                       "([[tls.certificates]] cert = ..., key = ...)");
                } else {
                    for (const auto& e : *arr) {
                        reader cr{*e.as_table(), "[tls.certificates]", c};
                        std::string cert, key;
                        cr.str("cert", cert, true);
                        cr.str("key", key, true);
                        cr.finish();
                        g.extra_certs.emplace_back(cert, key);
                    }
                }
            }
            r.finish();
            if (!g.plaintext && !g.self_signed && (g.cert.empty() || g.key.empty()))
                c.add(t->source(), "[tls] needs cert and key (or self_signed = true)");
        } else {
            c.add_global("[tls] is missing: give cert and key, or self_signed = true");
        }
        if (const auto* t = top.table("auth")) {
            reader r{*t, "auth", c};
            r.integer("failure_burst", g.auth_failure_burst, 1, 1'000'000);
            r.integer("failures_per_minute", g.auth_failures_per_minute, 1, 1'000'000);
            std::string shared;
            if (r.str("shared_token_hash", shared)) {
                if (auto d = token::parse_hash(shared))
                    g.shared_token = *d;
                else
                    c.add(r.node("shared_token_hash")->source(),
                          "[auth] \"shared_token_hash\" must be sha256: and 64 hex digits");
            }
            r.finish();
        }
        if (const auto* t = top.table("limits")) {
            reader r{*t, "limits", c};
            parse_limits(r, g.lim, true, c);
        }
        if (const auto* n = top.node("agent")) {
            const auto* arr = n->as_array();
            if (!arr || !arr->is_array_of_tables()) {
                c.add(n->source(), "\"agent\" must be an array of tables ([[agent]])");
            } else {
                std::set<std::string> names;
                for (const auto& e : *arr) {
                    const auto& t = *e.as_table();
                    reader r{t, "[agent]", c};
                    agent_entry a;
                    a.line = t.source().begin.line;
                    if (r.str("name", a.name, true) && !valid_name(a.name))
                        c.add(r.node("name")->source(),
                              fmt::format("[[agent]] name \"{}\": use 1-64 of A-Z a-z 0-9 . _ -", a.name));
                    if (!a.name.empty() && !names.insert(a.name).second)
                        c.add(t.source(), fmt::format("[[agent]] \"{}\" is defined twice", a.name));
                    std::string hash;
                    if (r.str("token_hash", hash, true)) {
                        if (auto d = token::parse_hash(hash))
                            a.token_hash = *d;
                        else
                            c.add(r.node("token_hash")->source(),
                                  "[[agent]] token_hash must be \"sha256:\" and 64 hex digits "
                                  "(run `muxgate token new`)");
                    }
                    r.strings("protocols", a.protocols);
                    std::vector<std::string> ports;
                    if (r.strings("ports", ports))
                        for (const auto& p : ports) {
                            std::string err;
                            if (auto pr = parse_port_range(p, err))
                                a.ports.push_back(*pr);
                            else
                                c.add(r.node("ports")->source(), "[[agent]] ports: " + err);
                        }
                    if (const auto* acl = r.table("acl"))
                        for (auto&& [k, v] : *acl) {
                            if (const auto* pt = v.as_table())
                                a.plugin_acl[std::string{k.str()}] = table_json(*pt);
                            else
                                c.add(v.source(), "[[agent]] acl entries must be tables");
                        }
                    r.finish();
                    g.agents.push_back(std::move(a));
                }
            }
        }
        parse_plugins(top, g.plugin_config, c);
        top.finish();
    });
    out.problems = std::move(c.problems);
    return out;
}

agent_result parse_agent(std::string_view text, std::string_view file)
{
    agent_result out;
    context c{std::string{file}, {}};
    auto& a = out.cfg;
    a.file = std::string{file};
    with_document(text, file, c, [&](const toml::table& doc) {
        reader top{doc, "", c};
        if (const auto* t = top.table("agent")) {
            reader r{*t, "agent", c};
            if (r.str("name", a.name) && !valid_name(a.name))
                c.add(r.node("name")->source(),
                      fmt::format("[agent] name \"{}\": use 1-64 of A-Z a-z 0-9 . _ -", a.name));
            if (r.str("gateway", a.gateway, true)) {
                std::string err;
                auto u = net::parse_url(a.gateway, err);
                if (!u)
                    c.add(r.node("gateway")->source(), "[agent] \"gateway\": " + err);
                else if (u->scheme != "wss" && u->scheme != "ws")
                    c.add(r.node("gateway")->source(), "[agent] \"gateway\" must be wss:// (or ws:// "
                                                       "with insecure = true)");
            }
            r.str("token_file", a.token_file);
            r.str("ca", a.ca);
            r.boolean("insecure", a.insecure);
            r.str("pin", a.pin);
            if (r.str("proxy", a.proxy)) {
                std::string err;
                auto u = net::parse_url(a.proxy, err);
                if (!u || u->scheme != "http")
                    c.add(r.node("proxy")->source(),
                          "[agent] \"proxy\" must be http://[user:password@]host:port" +
                              (u ? std::string{} : ": " + err));
            }
            r.str("modules_dir", a.modules_dir);
            r.strings("plugins", a.plugins);
            if (r.str("log_level", a.log_level)) check_level(r, a.log_level, c, "log_level");
            r.finish();
        } else {
            c.add_global("[agent] is missing: it needs at least gateway = \"wss://...\"");
        }
        if (const auto* t = top.table("reconnect")) {
            reader r{*t, "reconnect", c};
            r.integer("initial_ms", a.backoff_initial_ms, 10, 3'600'000);
            r.integer("max_ms", a.backoff_max_ms, 10, 86'400'000);
            r.integer("stable_after_s", a.stable_after_s, 1, 86'400);
            r.integer("connect_timeout_ms", a.connect_timeout_ms, 100, 600'000);
            r.finish();
            if (a.backoff_max_ms < a.backoff_initial_ms)
                c.add(t->source(), "[reconnect] max_ms must be at least initial_ms");
        }
        if (const auto* t = top.table("limits")) {
            reader r{*t, "limits", c};
            parse_limits(r, a.lim, false, c);
        }
        if (const auto* n = top.node("tunnel")) {
            const auto* arr = n->as_array();
            if (!arr || !arr->is_array_of_tables()) {
                c.add(n->source(), "\"tunnel\" must be an array of tables ([[tunnel]])");
            } else {
                std::set<std::string> names;
                for (const auto& e : *arr) {
                    const auto& t = *e.as_table();
                    reader r{t, "[tunnel]", c};
                    tunnel_config tc;
                    tc.line = t.source().begin.line;
                    tc.column = t.source().begin.column;
                    r.str("protocol", tc.protocol, true);
                    r.integer("remote_port", tc.remote_port, 0, 65535);
                    std::string local;
                    if (r.str("local", local)) {
                        std::string err;
                        if (auto hp = net::parse_host_port(local, err); hp && !hp->host.empty()) {
                            tc.local_host = hp->host;
                            tc.local_port = hp->port;
                        } else {
                            c.add(r.node("local")->source(),
                                  "[[tunnel]] \"local\": " + (hp ? std::string{"empty host"} : err));
                        }
                    }
                    if (!r.str("name", tc.name)) tc.name = default_tunnel_name(tc);
                    if (!valid_name(tc.name))
                        c.add(t.source(), fmt::format("[[tunnel]] name \"{}\": use 1-64 of A-Z a-z "
                                                      "0-9 . _ -",
                                                      tc.name));
                    else if (!names.insert(tc.name).second)
                        c.add(t.source(), fmt::format("[[tunnel]] \"{}\" is defined twice", tc.name));
                    if (const auto* o = r.table("options")) tc.options = table_json(*o);
                    r.finish();
                    a.tunnels.push_back(std::move(tc));
                }
            }
        }
        parse_plugins(top, a.plugin_config, c);
        top.finish();
    });
    out.problems = std::move(c.problems);
    return out;
}

gateway_result load_gateway(const std::string& path)
{
    std::string err;
    auto text = read_text(path, err);
    if (!text) {
        gateway_result r;
        r.problems.push_back({path, 0, 0, err});
        return r;
    }
    return parse_gateway(*text, path);
}

agent_result load_agent(const std::string& path)
{
    std::string err;
    auto text = read_text(path, err);
    if (!text) {
        agent_result r;
        r.problems.push_back({path, 0, 0, err});
        return r;
    }
    return parse_agent(*text, path);
}

}  // namespace muxgate::config
