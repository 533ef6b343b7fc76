// The RDP first-packet parser: bytes captured from FreeRDP 2 (xfreerdp with
// /load-balance-info:, /u:, /pcb:, /pcid:), every split point of them, and
// one broken field at a time.
#include "first_packet.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

using namespace muxgate::rdp;

namespace {

using bytes = std::vector<std::uint8_t>;

bytes b(std::string_view s) { return bytes(s.begin(), s.end()); }

bytes cat(bytes a, const bytes& c)
{
    a.insert(a.end(), c.begin(), c.end());
    return a;
}

// TPKT + X.224 CR around `user_data`, as FreeRDP writes it (LI = length - 5).
bytes cr(const bytes& user_data)
{
    const std::size_t len = 4 + 7 + user_data.size();
    bytes out{3, 0, static_cast<std::uint8_t>(len >> 8), static_cast<std::uint8_t>(len & 0xFF),
              static_cast<std::uint8_t>(len - 5), 0xE0, 0, 0, 0, 0, 0};
    return cat(out, user_data);
}

const bytes neg_req{1, 0, 8, 0, 3, 0, 0, 0};  // requestedProtocols = TLS | CredSSP

// Preconnection PDU v2 with `blob` and `nuls` terminating NULs (FreeRDP: 2).
bytes pcb_v2(std::uint32_t id, std::string_view blob, int nuls)
{
    const std::size_t cch = blob.size() + static_cast<std::size_t>(nuls);
    const std::size_t cb = 18 + 2 * cch;
    bytes out{static_cast<std::uint8_t>(cb), static_cast<std::uint8_t>(cb >> 8), 0, 0, 0, 0, 0, 0,
              2, 0, 0, 0, static_cast<std::uint8_t>(id), static_cast<std::uint8_t>(id >> 8),
              static_cast<std::uint8_t>(id >> 16), static_cast<std::uint8_t>(id >> 24),
              static_cast<std::uint8_t>(cch), static_cast<std::uint8_t>(cch >> 8)};
    for (char c : blob) {
        out.push_back(static_cast<std::uint8_t>(c));
        out.push_back(0);
    }
    for (int i = 0; i < nuls; ++i) {
        out.push_back(0);
        out.push_back(0);
    }
    return out;
}

first_packet run(const bytes& v, std::size_t max = 8192)
{
    parse_limits l;
    l.max_first_packet = max;
    return parse(std::span<const std::uint8_t>(v.data(), v.size()), l);
}

// Every proper prefix asks for more, with `needed` beyond what it has and
// never beyond the whole; the whole parses like `want`.
void check_prefixes(const bytes& whole)
{
    for (std::size_t n = 0; n < whole.size(); ++n) {
        const auto r = run(bytes(whole.begin(), whole.begin() + static_cast<long>(n)));
        INFO("prefix of " << n << " bytes");
        REQUIRE(r.status == parse_status::need_more);
        CHECK(r.needed > n);
        CHECK(r.needed <= whole.size());
    }
}

}  // namespace

TEST_CASE("routing token as FreeRDP /load-balance-info: sends it")
{
    const auto pkt = cr(cat(b("desk1\r\n"), neg_req));
    // The exact bytes xfreerdp 2.10 sent.
    const bytes captured{0x03, 0x00, 0x00, 0x1a, 0x15, 0xe0, 0, 0, 0, 0, 0, 'd', 'e', 's', 'k', '1',
                         '\r', '\n', 1, 0, 8, 0, 3, 0, 0, 0};
    CHECK(pkt == captured);
    const auto r = run(pkt);
    REQUIRE(r.status == parse_status::complete);
    CHECK(r.size == pkt.size());
    CHECK(r.routing_token == "desk1");
    CHECK(r.mstshash.empty());
    CHECK(r.has_neg_req);
    CHECK(r.requested_protocols == 3);
    CHECK_FALSE(r.has_preconnection);
    const auto c = choose_route(r, false);
    CHECK(c.kind == route_kind::token);
    CHECK(c.key == "desk1");
    check_prefixes(pkt);
}

TEST_CASE("mstshash cookie routes only when asked to")
{
    const auto pkt = cr(cat(b("Cookie: mstshash=alice\r\n"), neg_req));
    const auto r = run(pkt);
    REQUIRE(r.status == parse_status::complete);
    CHECK(r.mstshash == "alice");
    CHECK(r.routing_token.empty());
    CHECK(choose_route(r, false).kind == route_kind::none);
    const auto c = choose_route(r, true);
    CHECK(c.kind == route_kind::mstshash);
    CHECK(c.key == "alice");
    check_prefixes(pkt);
}

TEST_CASE("preconnection PDU v2 with FreeRDP's double NUL, then the CR")
{
    const auto pkt = cat(pcb_v2(0, "deskpcb", 2), cr(cat(b("Cookie: mstshash=root\r\n"), neg_req)));
    CHECK(pkt[0] == 36);  // cbSize as captured from xfreerdp /pcb:deskpcb
    const auto r = run(pkt);
    REQUIRE(r.status == parse_status::complete);
    CHECK(r.size == pkt.size());
    CHECK(r.has_preconnection);
    CHECK(r.preconnection_size == 36);
    CHECK(r.preconnection_version == 2);
    CHECK(r.preconnection_blob == "deskpcb");
    CHECK(r.mstshash == "root");
    const auto c = choose_route(r, true);  // the blob wins over the cookie
    CHECK(c.kind == route_kind::pcb_blob);
    CHECK(c.key == "deskpcb");
    check_prefixes(pkt);
}

TEST_CASE("preconnection Id without a blob (/pcid:42), and version 1")
{
    auto pkt = cat(pcb_v2(42, "", 0), cr(cat(b("Cookie: mstshash=root\r\n"), neg_req)));
    auto r = run(pkt);
    REQUIRE(r.status == parse_status::complete);
    CHECK(r.preconnection_id == 42);
    CHECK(r.preconnection_blob.empty());
    auto c = choose_route(r, true);
    CHECK(c.kind == route_kind::pcb_id);
    CHECK(c.key == "42");

    bytes v1{16, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0};
    pkt = cat(v1, cr(neg_req));
    r = run(pkt);
    REQUIRE(r.status == parse_status::complete);
    CHECK(r.preconnection_version == 1);
    CHECK(choose_route(r, false).key == "7");
    check_prefixes(pkt);
}

TEST_CASE("names: Cookie: msts= and the session broker prefix are cut")
{
    CHECK(normalize_route_name("Cookie: msts=desk2") == "desk2");
    CHECK(normalize_route_name("tsv://MS Terminal Services Plugin.1.desk2") == "desk2");
    CHECK(normalize_route_name("Cookie: msts=tsv://MS Terminal Services Plugin.1.a.b") == "a.b");
    CHECK(normalize_route_name("plain") == "plain");
    const auto r = run(cr(b("tsv://MS Terminal Services Plugin.1.office.pc7\r\n")));
    REQUIRE(r.status == parse_status::complete);
    CHECK(choose_route(r, false).key == "office.pc7");
    CHECK_FALSE(r.has_neg_req);
}

TEST_CASE("a CR with nothing in it is complete and names nothing")
{
    const auto r = run(cr({}));
    REQUIRE(r.status == parse_status::complete);
    CHECK(choose_route(r, true).kind == route_kind::none);
    const auto r2 = run(cr(neg_req));
    REQUIRE(r2.status == parse_status::complete);
    CHECK(r2.has_neg_req);
    CHECK(choose_route(r2, true).kind == route_kind::none);
}

TEST_CASE("bytes after the first packet are not part of it")
{
    auto pkt = cr(cat(b("desk1\r\n"), neg_req));
    const auto size = pkt.size();
    pkt.push_back(0x16);
    const auto r = run(pkt);
    REQUIRE(r.status == parse_status::complete);
    CHECK(r.size == size);
}

TEST_CASE("malformed first packets say what and where")
{
    auto bad = [](const bytes& v, std::string_view part, std::size_t max = 8192) {
        const auto r = run(v, max);
        INFO("reason: " << r.reason);
        CHECK(r.status == parse_status::malformed);
        CHECK(r.reason.find(part) != std::string::npos);
    };
    // TLS ClientHello and HTTP are not RDP: as a cbSize they are far too big.
    bad({0x16, 0x03, 0x01, 0x02, 0x00}, "max_first_packet");
    bad(b("GET / HTTP/1.1\r\n"), "max_first_packet");
    bad({4, 0, 0, 0}, "below 16");
    bad(cat(pcb_v2(1, "x", 1), bytes{3, 1, 0, 20}), "reserved");  // 03 01 alone reads as a cbSize
    bad({3, 0, 0, 10}, "shorter than an X.224");
    bad({3, 0, 0xFF, 0xFF}, "max_first_packet");
    bad({3, 0, 0, 40}, "max_first_packet", 39);
    auto p = cr(neg_req);
    p[5] = 0xD0;  // Connection Confirm, not a request
    bad(p, "0xD0 is not a Connection Request");
    p = cr(neg_req);
    p[4] = 200;
    bad(p, "length indicator");
    p = cr(neg_req);
    p[4] = 2;
    bad(p, "length indicator");
    bad(cr(b("desk1 without end")), "without CRLF");
    bad(cr(cat(b("desk1\r\n"), bytes{1, 0, 8})), "truncated");
    bad(cr(cat(b("desk1\r\n"), bytes{1, 0, 9, 0, 3, 0, 0, 0})), "length 9");
    // Preconnection PDUs
    auto pc = pcb_v2(1, "x", 1);
    pc[8] = 3;
    bad(cat(pc, cr(neg_req)), "version 3");
    pc = pcb_v2(1, "x", 1);
    pc[16] = 50;
    bad(cat(pc, cr(neg_req)), "cchPCB");
    bytes v2short{16, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0};
    bad(cat(v2short, cr(neg_req)), "no room for cchPCB");
    bad(cat(pcb_v2(1, "x", 1), bytes{9, 0, 0, 20}), "TPKT version 9");
}

TEST_CASE("limits: needed never exceeds max_first_packet")
{
    const auto pkt = cat(pcb_v2(0, std::string(100, 'a'), 2), cr(b("desk1\r\n")));
    CHECK(run(pkt, pkt.size()).status == parse_status::complete);
    CHECK(run(pkt, pkt.size() - 1).status == parse_status::malformed);
    // A cbSize beyond the limit is refused from its 4 bytes alone.
    CHECK(run({0xFF, 0xFF, 0, 0}, 1000).status == parse_status::malformed);
}

TEST_CASE("UTF-16 blob becomes UTF-8; a lone surrogate becomes U+FFFD")
{
    bytes pc{0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 4, 0,
             0xE9, 0x00,              // é
             0x3D, 0xD8, 0x00, 0xDE,  // U+1F600
             0x00, 0xD8};             // lone high surrogate
    pc[0] = static_cast<std::uint8_t>(pc.size());
    const auto r = run(cat(pc, cr({})));
    REQUIRE(r.status == parse_status::complete);
    CHECK(r.preconnection_blob == "\xC3\xA9\xF0\x9F\x98\x80\xEF\xBF\xBD");
}

TEST_CASE("printable escapes what a log line must not carry")
{
    CHECK(printable("desk1") == "desk1");
    CHECK(printable(std::string_view{"a\r\n\"\\\x01", 6}) == "a\\x0D\\x0A\\x22\\x5C\\x01");
    CHECK(printable(std::string(10, 'x'), 4) == "xxxx...");
}
