// The first bytes an RDP client sends, parsed without I/O: an optional
// preconnection PDU ([MS-RDPEPS] 2.2.1.1/2.2.1.2) and then one TPKT
// ([T.123] 8) around an X.224 Connection Request ([MS-RDPBCGR] 2.2.1.1)
// whose user data may carry a routing token or a `Cookie: mstshash=` line
// and an RDP_NEG_REQ. The gateway reads exactly this much before it picks a
// tunnel, then forwards every byte unchanged.
//
// parse() is a pure function of the bytes received so far. It looks at the
// length fields first, so while the packet is incomplete each call costs
// O(1) and says how many bytes are needed in total (`needed`); a length
// beyond the configured limit is refused at once, so a caller that buffers
// only until `needed` never holds more than `max_first_packet` bytes.
// Nothing here throws on input, allocates beyond the result's strings, or
// reads past the span.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace muxgate::rdp {

struct parse_limits {
    // Preconnection PDU plus TPKT, in bytes. A real Connection Request is
    // well under 300 bytes; a routing token may be up to 64 KiB by the
    // spec, which no client routed here needs.
    std::size_t max_first_packet = 8192;
};

// Fixed sizes from the specifications.
inline constexpr std::size_t tpkt_header_size = 4;        // version, reserved, length (BE)
inline constexpr std::size_t x224_cr_fixed_size = 7;      // LI, CR-CDT, DST-REF, SRC-REF, class
inline constexpr std::size_t preconnection_v1_size = 16;  // cbSize, Flags, Version, Id
inline constexpr std::size_t preconnection_v2_min = 18;   // + cchPCB
inline constexpr std::size_t neg_req_size = 8;            // type, flags, length, protocols
inline constexpr std::uint8_t tpkt_version = 3;
inline constexpr std::uint8_t x224_cr_code = 0xE0;
inline constexpr std::uint8_t neg_req_type = 0x01;

enum class parse_status {
    need_more,   // incomplete; `needed` says how many bytes in total (0: unknown yet)
    complete,    // the first packet is whole; see the fields
    malformed    // not RDP, or beyond a limit; `reason` says what and where
};

struct first_packet {
    parse_status status = parse_status::need_more;
    std::size_t needed = 0;        // need_more: total bytes wanted so far
    std::size_t size = 0;          // complete: bytes of preconnection PDU + TPKT
    std::string reason;            // malformed: what is wrong, with the offset

    // Preconnection PDU, if the client sent one.
    bool has_preconnection = false;
    std::size_t preconnection_size = 0;       // its cbSize: where the TPKT starts
    std::uint32_t preconnection_version = 0;  // 1 or 2
    std::uint32_t preconnection_id = 0;
    std::string preconnection_blob;           // v2 wszPCB as UTF-8, trailing NULs cut

    // X.224 user data.
    std::string routing_token;                // the token line without CRLF
    std::string mstshash;                     // the value of `Cookie: mstshash=`
    bool has_neg_req = false;
    std::uint32_t requested_protocols = 0;    // RDP_NEG_REQ.requestedProtocols
};

first_packet parse(std::span<const std::uint8_t> bytes, const parse_limits& limits = {});

// What a complete packet asks to be routed by, in order of precedence: the
// preconnection blob, the routing token, the preconnection Id (when no blob),
// the mstshash cookie. `key` is the routing name after normalize_route_name.
enum class route_kind { none, pcb_blob, token, pcb_id, mstshash };

struct route_choice {
    route_kind kind = route_kind::none;
    std::string key;
};

route_choice choose_route(const first_packet& p, bool use_mstshash);

// A routing token or blob as a name: an optional `Cookie: msts=` prefix and
// then an optional `tsv://MS Terminal Services Plugin.1.` prefix (the form
// Windows' session brokers use in loadbalanceinfo) are cut.
std::string normalize_route_name(std::string_view text);

const char* route_kind_name(route_kind k) noexcept;

// Untrusted text for a log line: printable ASCII kept, the rest as \xNN,
// cut at `max` bytes of input.
std::string printable(std::string_view text, std::size_t max = 128);

}  // namespace muxgate::rdp
