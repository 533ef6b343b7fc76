// fuzz_rdp_first_packet: the RDP plugin's sans-I/O decoders over arbitrary
// bytes (plugins/rdp/first_packet.cpp, routing.cpp).
//
// Input: [mode u8][max u16][bytes...]
//   mode 0..1: the first-packet parser. max (clamped to 64..131072, as the
//              configuration allows) is max_first_packet.
//   mode 2:    parse_tunnel_options, parse_plugin_config, parse_acl over the text.
//   mode 3:    parse_cidr over the first line, cidr_match against the rest.
//
// Checked for the parser: `needed` and `size` never exceed max_first_packet;
// need_more always asks for more than it has; a complete result's size is
// within the input, and feeding exactly that prefix gives the same result;
// every prefix of a complete packet is need_more (the gateway never routes
// early); feeding the input in two pieces is the same as at once (the parser
// is a function of the bytes, not of the chunking); malformed always says why.
#include "fuzz_util.hpp"
#include "first_packet.hpp"
#include "routing.hpp"

#include <string>
#include <vector>

using namespace muxgate;

namespace {

void check_parser(std::span<const std::uint8_t> in, std::size_t max, std::size_t split)
{
    rdp::parse_limits l;
    l.max_first_packet = max;
    const auto r = rdp::parse(in, l);
    switch (r.status) {
    case rdp::parse_status::need_more:
        FUZZ_REQUIRE(r.needed > in.size());
        FUZZ_REQUIRE(r.needed <= max);
        break;
    case rdp::parse_status::malformed:
        FUZZ_REQUIRE(!r.reason.empty());
        break;
    case rdp::parse_status::complete: {
        FUZZ_REQUIRE(r.size <= in.size());
        FUZZ_REQUIRE(r.size <= max);
        FUZZ_REQUIRE(r.size >= rdp::tpkt_header_size + rdp::x224_cr_fixed_size);
        const auto exact = rdp::parse(in.first(r.size), l);
        FUZZ_REQUIRE(exact.status == rdp::parse_status::complete);
        FUZZ_REQUIRE(exact.size == r.size);
        FUZZ_REQUIRE(exact.routing_token == r.routing_token);
        FUZZ_REQUIRE(exact.mstshash == r.mstshash);
        FUZZ_REQUIRE(exact.preconnection_blob == r.preconnection_blob);
        // One byte short is never complete.
        const auto shorter = rdp::parse(in.first(r.size - 1), l);
        FUZZ_REQUIRE(shorter.status == rdp::parse_status::need_more);
        const auto c = rdp::choose_route(r, true);
        if (c.kind == rdp::route_kind::none) FUZZ_REQUIRE(c.key.empty());
        const auto shown = rdp::printable(c.key);
        for (unsigned char ch : shown) FUZZ_REQUIRE(ch >= 0x20 && ch < 0x7F);
        break;
    }
    }
    // A prefix: either need_more or the same verdict as the whole input.
    if (split < in.size()) {
        const auto p = rdp::parse(in.first(split), l);
        if (p.status == rdp::parse_status::complete) {
            FUZZ_REQUIRE(r.status == rdp::parse_status::complete && r.size == p.size);
        } else if (p.status == rdp::parse_status::malformed) {
            FUZZ_REQUIRE(r.status == rdp::parse_status::malformed);
        }
    }
}

void check_json(std::string_view text)
{
    std::string why;
    rdp::tunnel_options o;
    if (!rdp::parse_tunnel_options(text, o, why)) FUZZ_REQUIRE(!why.empty());
    rdp::plugin_config c;
    why.clear();
    if (!rdp::parse_plugin_config(text, c, why)) FUZZ_REQUIRE(!why.empty());
    else {
        FUZZ_REQUIRE(c.max_first_packet >= 64 && c.max_first_packet <= 131072);
        FUZZ_REQUIRE(c.first_packet_timeout_ms >= 100);
    }
    std::vector<rdp::cidr> acl;
    why.clear();
    if (!rdp::parse_acl(text, acl, why)) FUZZ_REQUIRE(!why.empty());
}

void check_cidr(std::string_view text)
{
    const auto nl = text.find('\n');
    const auto net = rdp::parse_cidr(text.substr(0, nl));
    if (!net) return;
    FUZZ_REQUIRE(net->prefix <= (net->v6 ? 128u : 32u));
    if (nl != std::string_view::npos) (void)rdp::cidr_match(*net, text.substr(nl + 1));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    fuzz::reader in{data, size};
    const auto mode = in.u8() % 4;
    std::size_t max = in.u16();
    max = max < 64 ? 64 : max;
    const auto bytes = in.take(in.left());
    switch (mode) {
    case 0:
    case 1:
        check_parser(bytes, max, bytes.empty() ? 0 : data[size - 1] % bytes.size());
        break;
    case 2:
        check_json({reinterpret_cast<const char*>(bytes.data()), bytes.size()});
        break;
    case 3:
        check_cidr({reinterpret_cast<const char*>(bytes.data()), bytes.size()});
        break;
    }
    return 0;
}
