#include "config.hpp"

#include "ssh_text.hpp"

#include <boost/json.hpp>

#include <fstream>
#include <initializer_list>
#include <stdexcept>

namespace json = boost::json;

namespace muxgate::ssh {

namespace {

[[noreturn]] void bad(const std::string& where, const std::string& what)
{
    throw std::runtime_error("[plugins.ssh] " + where + ": " + what);
}

void only_keys(const json::object& o, const std::string& where,
               std::initializer_list<std::string_view> known)
{
    for (const auto& kv : o) {
        bool ok = false;
        for (auto k : known) ok = ok || kv.key() == k;
        if (!ok) bad(where, "unknown key \"" + std::string{kv.key()} + "\"");
    }
}

std::string get_string(const json::object& o, std::string_view key, const std::string& where,
                       std::string def = {})
{
    const auto* v = o.if_contains(key);
    if (!v) return def;
    if (!v->is_string()) bad(where + "." + std::string{key}, "must be a string");
    return std::string{v->as_string()};
}

std::uint32_t get_uint(const json::object& o, std::string_view key, const std::string& where,
                       std::uint32_t def, std::uint32_t lo, std::uint32_t hi)
{
    const auto* v = o.if_contains(key);
    if (!v) return def;
    std::int64_t n = 0;
    if (v->is_int64()) n = v->as_int64();
    else if (v->is_uint64() && v->as_uint64() <= UINT32_MAX) n = static_cast<std::int64_t>(v->as_uint64());
    else bad(where + "." + std::string{key}, "must be an integer");
    if (n < lo || n > hi)
        bad(where + "." + std::string{key},
            "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
    return static_cast<std::uint32_t>(n);
}

bool get_bool(const json::object& o, std::string_view key, const std::string& where, bool def)
{
    const auto* v = o.if_contains(key);
    if (!v) return def;
    if (!v->is_bool()) bad(where + "." + std::string{key}, "must be true or false");
    return v->as_bool();
}

std::vector<std::string> get_strings(const json::object& o, std::string_view key,
                                     const std::string& where)
{
    std::vector<std::string> out;
    const auto* v = o.if_contains(key);
    if (!v) return out;
    if (v->is_string()) {
        out.emplace_back(v->as_string());
        return out;
    }
    if (!v->is_array()) bad(where + "." + std::string{key}, "must be a string or a list of strings");
    for (const auto& e : v->as_array()) {
        if (!e.is_string()) bad(where + "." + std::string{key}, "must hold strings only");
        out.emplace_back(e.as_string());
    }
    return out;
}

// Key lines from inline text or a file; every line must be a key, a comment
// or blank, so a typo cannot silently lock someone out (or in).
void add_key_lines(std::vector<std::string>& out, std::string_view text, const std::string& where)
{
    std::size_t lineno = 0;
    while (!text.empty()) {
        const auto nl = text.find('\n');
        const auto line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        ++lineno;
        const auto k = parse_key_line(line);
        if (k.what == key_line::kind::invalid)
            bad(where, "line " + std::to_string(lineno) + ": " + k.error);
        if (k.what == key_line::kind::key) out.emplace_back(line);
    }
}

std::string read_file(const std::string& path, const std::string& where)
{
    std::ifstream f{path, std::ios::binary};
    if (!f) bad(where, "cannot read \"" + path + "\"");
    std::string s{std::istreambuf_iterator<char>{f}, {}};
    if (s.size() > 1024 * 1024) bad(where, "\"" + path + "\" is larger than 1 MiB");
    return s;
}

json::object parse_object(std::string_view text, const std::string& what)
{
    if (text.empty()) return {};
    boost::system::error_code ec;
    auto v = json::parse(text, ec);
    if (ec || !v.is_object()) throw std::runtime_error(what + ": not a JSON object");
    return std::move(v.as_object());
}

}  // namespace

gateway_config parse_gateway_config(std::string_view text)
{
    gateway_config c;
    const auto top = parse_object(text, "[plugins.ssh]");
    only_keys(top, "table", {"log_banners", "jump"});
    c.log_banners = get_bool(top, "log_banners", "log_banners", true);
    const auto* jv = top.if_contains("jump");
    if (!jv) return c;
    if (!jv->is_object()) bad("jump", "must be a table ([plugins.ssh.jump])");
    const auto& j = jv->as_object();
    only_keys(j, "jump",
              {"listen", "host_key", "max_sessions", "max_channels", "login_grace_s",
               "max_auth_attempts", "open_timeout_ms", "users"});
    c.jump_enabled = true;
    c.jump_listen = get_string(j, "listen", "jump");
    if (c.jump_listen.empty()) bad("jump.listen", "required (\"0.0.0.0:2222\")");
    c.host_key = get_string(j, "host_key", "jump");
    if (c.host_key.empty()) bad("jump.host_key", "required (a file; created on first start)");
    c.max_sessions = get_uint(j, "max_sessions", "jump", c.max_sessions, 1, 100000);
    c.max_channels = get_uint(j, "max_channels", "jump", c.max_channels, 1, 1024);
    c.login_grace_s = get_uint(j, "login_grace_s", "jump", c.login_grace_s, 1, 3600);
    c.max_auth_attempts = get_uint(j, "max_auth_attempts", "jump", c.max_auth_attempts, 1, 100);
    c.open_timeout_ms = get_uint(j, "open_timeout_ms", "jump", c.open_timeout_ms, 100, 600000);
    const auto* uv = j.if_contains("users");
    if (uv && !uv->is_array()) bad("jump.users", "must be a list of tables ([[plugins.ssh.jump.users]])");
    if (uv) {
        std::size_t i = 0;
        for (const auto& e : uv->as_array()) {
            const std::string where = "jump.users[" + std::to_string(i++) + "]";
            if (!e.is_object()) bad(where, "must be a table");
            const auto& u = e.as_object();
            only_keys(u, where, {"name", "keys", "keys_file", "allow"});
            jump_user ju;
            ju.name = get_string(u, "name", where);
            if (ju.name.empty()) bad(where + ".name", "required");
            for (const auto& k : get_strings(u, "keys", where)) add_key_lines(ju.keys, k, where + ".keys");
            for (const auto& f : get_strings(u, "keys_file", where))
                add_key_lines(ju.keys, read_file(f, where + ".keys_file"), where + ".keys_file " + f);
            if (ju.keys.empty()) bad(where, "no keys (keys = [...] or keys_file = \"...\")");
            ju.allow = get_strings(u, "allow", where);
            if (ju.allow.empty()) bad(where + ".allow", "required: the targets this user may reach ([\"*\"] for all)");
            for (const auto& other : c.users)
                if (other.name == ju.name) bad(where + ".name", "\"" + ju.name + "\" is listed twice");
            c.users.push_back(std::move(ju));
        }
    }
    if (c.users.empty()) bad("jump.users", "at least one user is needed for the jump host");
    return c;
}

tunnel_options parse_tunnel_options(std::string_view text)
{
    tunnel_options t;
    const auto o = parse_object(text, "options");
    for (const auto& kv : o) {
        const std::string_view k = kv.key();
        if (k != "server" && k != "authorized_keys" && k != "host_key" && k != "shell" &&
            k != "sftp_server")
            throw std::runtime_error("options: unknown key \"" + std::string{k} +
                                     "\" (server, authorized_keys, host_key, shell, sftp_server)");
        if (!kv.value().is_string())
            throw std::runtime_error("options." + std::string{k} + ": must be a string");
    }
    auto str = [&](std::string_view k) {
        const auto* v = o.if_contains(k);
        return v ? std::string{v->as_string()} : std::string{};
    };
    const auto server = str("server");
    if (!server.empty() && server != "embedded" && server != "forward")
        throw std::runtime_error("options.server: \"embedded\" or \"forward\", not \"" + server + "\"");
    t.embedded = server == "embedded";
    t.authorized_keys = str("authorized_keys");
    t.host_key = str("host_key");
    t.shell = str("shell");
    t.sftp_server = str("sftp_server");
    return t;
}

}  // namespace muxgate::ssh
