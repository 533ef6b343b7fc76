// See routing.hpp. JSON comes from the host (the plugin's configuration) and
// from agents (tunnel options), so nothing here throws on bad input: every
// problem is a `why` the caller logs or reports.
#include "routing.hpp"

#include <boost/json.hpp>

#include <arpa/inet.h>

#include <cstring>

namespace muxgate::rdp {

namespace json = boost::json;

namespace {

bool parse_object(std::string_view text, json::object& out, std::string& why)
{
    if (text.empty()) {
        out = {};
        return true;
    }
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec) {
        why = "not valid JSON: " + ec.message();
        return false;
    }
    if (!v.is_object()) {
        why = "not a JSON object";
        return false;
    }
    out = std::move(v.as_object());
    return true;
}

bool get_uint(const json::value& v, std::string_view key, std::uint64_t lo, std::uint64_t hi,
              std::uint64_t& out, std::string& why)
{
    std::uint64_t n = 0;
    if (v.is_uint64()) {
        n = v.as_uint64();
    } else if (v.is_int64() && v.as_int64() >= 0) {
        n = static_cast<std::uint64_t>(v.as_int64());
    } else {
        why = std::string{key} + ": want a non-negative integer";
        return false;
    }
    if (n < lo || n > hi) {
        why = std::string{key} + ": " + std::to_string(n) + " is outside " + std::to_string(lo) +
              "-" + std::to_string(hi);
        return false;
    }
    out = n;
    return true;
}

bool get_bool(const json::value& v, std::string_view key, bool& out, std::string& why)
{
    if (!v.is_bool()) {
        why = std::string{key} + ": want true or false";
        return false;
    }
    out = v.as_bool();
    return true;
}

bool get_strings(const json::value& v, std::string_view key, std::vector<std::string>& out,
                 std::string& why)
{
    if (!v.is_array()) {
        why = std::string{key} + ": want an array of strings";
        return false;
    }
    out.clear();
    for (const auto& e : v.as_array()) {
        if (!e.is_string() || e.as_string().empty()) {
            why = std::string{key} + ": want an array of non-empty strings";
            return false;
        }
        out.emplace_back(e.as_string().data(), e.as_string().size());
    }
    return true;
}

bool get_cidrs(const json::value& v, std::string_view key, std::vector<cidr>& out,
               std::string& why)
{
    std::vector<std::string> texts;
    if (!get_strings(v, key, texts, why)) return false;
    out.clear();
    for (const auto& t : texts) {
        auto c = parse_cidr(t);
        if (!c) {
            why = std::string{key} + ": \"" + printable(t) + "\" is not an address or address/prefix";
            return false;
        }
        out.push_back(*c);
    }
    return true;
}

std::string unknown_key(std::string_view key, std::string_view known)
{
    return "unknown key \"" + printable(key) + "\" (known: " + std::string{known} + ")";
}

// The address part of "ip:port", "[ip6]:port" or a bare address.
std::string_view host_of(std::string_view peer)
{
    if (!peer.empty() && peer.front() == '[') {
        const auto close = peer.find(']');
        return close == std::string_view::npos ? std::string_view{} : peer.substr(1, close - 1);
    }
    const auto colon = peer.find(':');
    if (colon != std::string_view::npos && peer.find(':', colon + 1) == std::string_view::npos)
        return peer.substr(0, colon);  // exactly one colon: IPv4 with a port
    return peer;
}

bool prefix_equal(const std::uint8_t* a, const std::uint8_t* b, unsigned bits)
{
    const unsigned bytes = bits / 8;
    if (std::memcmp(a, b, bytes) != 0) return false;
    const unsigned rest = bits % 8;
    if (rest == 0) return true;
    const std::uint8_t mask = static_cast<std::uint8_t>(0xFF << (8 - rest));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

}  // namespace

bool parse_plugin_config(std::string_view text, plugin_config& out, std::string& why)
{
    json::object o;
    if (!parse_object(text, o, why)) return false;
    constexpr std::string_view known =
        "listen, route_by_mstshash, first_packet_timeout_ms, max_first_packet, max_pending";
    for (const auto& [k, v] : o) {
        std::uint64_t n = 0;
        if (k == "listen") {
            if (!v.is_string()) {
                why = "listen: want \"host:port\"";
                return false;
            }
            out.listen.assign(v.as_string().data(), v.as_string().size());
            const auto colon = out.listen.rfind(':');
            if (colon == std::string::npos || colon + 1 == out.listen.size() ||
                out.listen.find_first_not_of("0123456789", colon + 1) != std::string::npos) {
                why = "listen: \"" + printable(out.listen) + "\" is not host:port";
                return false;
            }
        } else if (k == "route_by_mstshash") {
            if (!get_bool(v, k, out.route_by_mstshash, why)) return false;
        } else if (k == "first_packet_timeout_ms") {
            if (!get_uint(v, k, 100, 600000, n, why)) return false;
            out.first_packet_timeout_ms = static_cast<std::uint32_t>(n);
        } else if (k == "max_first_packet") {
            // At least a TPKT with a short cookie; at most a preconnection
            // PDU and the largest TPKT.
            if (!get_uint(v, k, 64, 131072, n, why)) return false;
            out.max_first_packet = n;
        } else if (k == "max_pending") {
            if (!get_uint(v, k, 1, 1000000, n, why)) return false;
            out.max_pending = n;
        } else {
            why = unknown_key(k, known);
            return false;
        }
    }
    return true;
}

std::optional<cidr> parse_cidr(std::string_view text)
{
    cidr c;
    std::string addr{text};
    unsigned max_prefix = 0;
    std::optional<unsigned> prefix;
    if (const auto slash = addr.find('/'); slash != std::string::npos) {
        const auto p = addr.substr(slash + 1);
        if (p.empty() || p.size() > 3 || p.find_first_not_of("0123456789") != std::string::npos)
            return std::nullopt;
        prefix = static_cast<unsigned>(std::stoul(p));
        addr.resize(slash);
    }
    if (addr.find(':') != std::string::npos) {
        if (inet_pton(AF_INET6, addr.c_str(), c.addr.data()) != 1) return std::nullopt;
        c.v6 = true;
        max_prefix = 128;
    } else {
        if (inet_pton(AF_INET, addr.c_str(), c.addr.data()) != 1) return std::nullopt;
        max_prefix = 32;
    }
    c.prefix = prefix.value_or(max_prefix);
    if (c.prefix > max_prefix) return std::nullopt;
    return c;
}

bool cidr_match(const cidr& net, std::string_view peer)
{
    const std::string host{host_of(peer)};
    std::array<std::uint8_t, 16> a{};
    if (host.find(':') != std::string::npos) {
        if (inet_pton(AF_INET6, host.c_str(), a.data()) != 1) return false;
        if (net.v6) return prefix_equal(a.data(), net.addr.data(), net.prefix);
        // ::ffff:a.b.c.d against an IPv4 network
        static constexpr std::uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
        if (std::memcmp(a.data(), mapped, 12) != 0) return false;
        return prefix_equal(a.data() + 12, net.addr.data(), net.prefix);
    }
    if (inet_pton(AF_INET, host.c_str(), a.data()) != 1) return false;
    if (net.v6) return false;
    return prefix_equal(a.data(), net.addr.data(), net.prefix);
}

bool parse_tunnel_options(std::string_view text, tunnel_options& out, std::string& why)
{
    json::object o;
    if (!parse_object(text, o, why)) return false;
    constexpr std::string_view known =
        "public_port, names, preconnection_id, users, allow_from, strip_preconnection";
    for (const auto& [k, v] : o) {
        if (k == "public_port") {
            if (!get_bool(v, k, out.public_port, why)) return false;
        } else if (k == "names") {
            if (!get_strings(v, k, out.names, why)) return false;
        } else if (k == "preconnection_id") {
            std::uint64_t n = 0;
            if (!get_uint(v, k, 0, 0xFFFFFFFFu, n, why)) return false;
            out.preconnection_id = static_cast<std::uint32_t>(n);
        } else if (k == "users") {
            if (!get_strings(v, k, out.users, why)) return false;
        } else if (k == "allow_from") {
            if (!get_cidrs(v, k, out.allow_from, why)) return false;
        } else if (k == "strip_preconnection") {
            if (!get_bool(v, k, out.strip_preconnection, why)) return false;
        } else {
            why = unknown_key(k, known);
            return false;
        }
    }
    return true;
}

bool parse_acl(std::string_view text, std::vector<cidr>& allow_from, std::string& why)
{
    json::object o;
    if (!parse_object(text, o, why)) return false;
    for (const auto& [k, v] : o) {
        if (k == "allow_from") {
            if (!get_cidrs(v, k, allow_from, why)) return false;
        } else {
            why = unknown_key(k, "allow_from");
            return false;
        }
    }
    return true;
}

bool tunnel_entry::admits(std::string_view peer) const
{
    auto any = [&](const std::vector<cidr>& list) {
        if (list.empty()) return true;
        for (const auto& c : list)
            if (cidr_match(c, peer)) return true;
        return false;
    };
    return any(acl_allow_from) && any(options.allow_from);
}

void route_table::add(tunnel_entry e)
{
    auto key = std::make_pair(e.agent, e.tunnel);
    tunnels_.insert_or_assign(std::move(key), std::move(e));
}

void route_table::remove(std::string_view agent, std::string_view tunnel)
{
    tunnels_.erase(std::make_pair(std::string{agent}, std::string{tunnel}));
}

const tunnel_entry* route_table::get(std::string_view agent, std::string_view tunnel) const
{
    auto it = tunnels_.find(std::make_pair(std::string{agent}, std::string{tunnel}));
    return it == tunnels_.end() ? nullptr : &it->second;
}

lookup_result route_table::find(route_kind kind, std::string_view key) const
{
    lookup_result r;
    if (key.empty() || kind == route_kind::none) return r;
    const tunnel_entry* hit = nullptr;
    std::size_t hits = 0;
    for (const auto& [k, e] : tunnels_) {
        // The qualified name is unique: it wins at once.
        if (key.size() == e.agent.size() + 1 + e.tunnel.size() &&
            key.substr(0, e.agent.size()) == e.agent && key[e.agent.size()] == '.' &&
            key.substr(e.agent.size() + 1) == e.tunnel) {
            r.status = lookup_status::found;
            r.entry = &e;
            return r;
        }
        bool match = key == e.tunnel;
        for (const auto& n : e.options.names) match = match || key == n;
        if (kind == route_kind::pcb_id && e.options.preconnection_id)
            match = match || key == std::to_string(*e.options.preconnection_id);
        if (kind == route_kind::mstshash)
            for (const auto& u : e.options.users) match = match || key == u;
        if (match) {
            hit = &e;
            ++hits;
        }
    }
    if (hits == 1) {
        r.status = lookup_status::found;
        r.entry = hit;
    } else if (hits > 1) {
        r.status = lookup_status::ambiguous;
    }
    return r;
}

}  // namespace muxgate::rdp
