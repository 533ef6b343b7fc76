// The gateway side's decisions, without I/O: the plugin's configuration, a
// tunnel's options and access list, and the table that maps a routing name
// from the first packet to one registered tunnel. rdp.cpp only wires these
// to the host's pipes.
#pragma once

#include "first_packet.hpp"

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace muxgate::rdp {

// [plugins.rdp] in the gateway configuration (and the agent's, which uses
// none of it).
struct plugin_config {
    std::string listen;                      // shared port, "" = none
    bool route_by_mstshash = false;          // route by `Cookie: mstshash=` as a last resort
    std::uint32_t first_packet_timeout_ms = 10000;  // a client must send its first packet by then
    std::size_t max_first_packet = 8192;     // preconnection PDU + TPKT, bytes
    std::size_t max_pending = 1024;          // clients on the shared port not routed yet
};

// Parses the plugin's JSON configuration; false and `why` on any unknown key,
// wrong type or value out of range.
bool parse_plugin_config(std::string_view json, plugin_config& out, std::string& why);

// An IPv4 or IPv6 network, "10.0.0.0/8", "2001:db8::/32", or one address.
struct cidr {
    bool v6 = false;
    std::array<std::uint8_t, 16> addr{};
    unsigned prefix = 0;
};

std::optional<cidr> parse_cidr(std::string_view text);
// `peer` is "ip:port", "[ip6]:port" or a bare address; an IPv4-mapped IPv6
// address also matches IPv4 networks.
bool cidr_match(const cidr& net, std::string_view peer);

// What a tunnel says about itself (its `options` table) and what the
// operator allows it (`[[agent]] acl.rdp`).
struct tunnel_options {
    bool public_port = true;                 // own public port besides the shared one
    std::vector<std::string> names;          // extra routing names (aliases)
    std::optional<std::uint32_t> preconnection_id;  // route by this Id (/pcid:)
    std::vector<std::string> users;          // mstshash values routed here
    std::vector<cidr> allow_from;            // sources allowed; empty = any
    // Forward the Connection Request without the preconnection PDU: for
    // targets that are plain RDP servers (a preconnection PDU is meant for
    // Hyper-V hosts and brokers; FreeRDP's server rejects it).
    bool strip_preconnection = false;
};

bool parse_tunnel_options(std::string_view json, tunnel_options& out, std::string& why);
// The operator's ACL: `allow_from` only.
bool parse_acl(std::string_view json, std::vector<cidr>& allow_from, std::string& why);

struct tunnel_entry {
    std::string agent;
    std::string tunnel;
    tunnel_options options;
    std::vector<cidr> acl_allow_from;        // from the operator
    // Both lists must admit a client (each, when not empty).
    bool admits(std::string_view peer) const;
};

enum class lookup_status { found, unknown, ambiguous };

struct lookup_result {
    lookup_status status = lookup_status::unknown;
    const tunnel_entry* entry = nullptr;     // valid while the table is unchanged
};

// Routing names of a tunnel: `<agent>.<tunnel>` (always unique), the tunnel
// name, its `names`; for the kinds that carry them, `preconnection_id` and
// `users`. A bare name that two tunnels claim is ambiguous and refused.
class route_table {
public:
    void add(tunnel_entry e);
    void remove(std::string_view agent, std::string_view tunnel);
    lookup_result find(route_kind kind, std::string_view key) const;
    const tunnel_entry* get(std::string_view agent, std::string_view tunnel) const;
    std::size_t size() const { return tunnels_.size(); }

private:
    std::map<std::pair<std::string, std::string>, tunnel_entry, std::less<>> tunnels_;
};

}  // namespace muxgate::rdp
