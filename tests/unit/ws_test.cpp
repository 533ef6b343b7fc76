// WebSocket framing (ws/codec) and the opening handshake (ws/handshake).
// Frames are written by hand here, not with encode_header, so an encoder bug
// cannot hide a decoder bug.
#include "ws/codec.hpp"
#include "ws/handshake.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

using namespace muxgate;
using bytes = std::vector<std::uint8_t>;

namespace {

constexpr std::uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};

// A frame as a client sends it (masked) or a server sends it (not masked).
bytes frame(std::uint8_t first_byte, std::string_view payload, bool masked)
{
    bytes out{first_byte};
    const std::uint8_t m = masked ? 0x80 : 0x00;
    if (payload.size() < 126) {
        out.push_back(static_cast<std::uint8_t>(m | payload.size()));
    } else if (payload.size() <= 0xffff) {
        out.push_back(m | 126);
        out.push_back(static_cast<std::uint8_t>(payload.size() >> 8));
        out.push_back(static_cast<std::uint8_t>(payload.size()));
    } else {
        out.push_back(m | 127);
        for (int i = 7; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(payload.size() >> (8 * i)));
    }
    if (masked) out.insert(out.end(), key, key + 4);
    for (std::size_t i = 0; i < payload.size(); ++i)
        out.push_back(static_cast<std::uint8_t>(payload[i]) ^ (masked ? key[i & 3] : 0));
    return out;
}

std::string text(std::span<std::uint8_t> d) { return {reinterpret_cast<char*>(d.data()), d.size()}; }

}  // namespace

TEST_CASE("encode_header: 7-bit, 16-bit and 64-bit lengths, with and without a mask")
{
    std::uint8_t h[ws::max_header_size];
    CHECK(ws::encode_header(h, ws::opcode::binary, true, 125) == 2);
    CHECK(h[0] == 0x82);
    CHECK(h[1] == 125);
    CHECK(ws::encode_header(h, ws::opcode::binary, true, 126) == 4);
    CHECK(h[1] == 126);
    CHECK(h[2] == 0);
    CHECK(h[3] == 126);
    CHECK(ws::encode_header(h, ws::opcode::binary, false, 65536, key) == 14);
    CHECK(h[0] == 0x02);
    CHECK(h[1] == (0x80 | 127));
    CHECK(h[7] == 1);  // 0x10000, big-endian in bytes 2..9
    CHECK(std::memcmp(h + 10, key, 4) == 0);
}

TEST_CASE("copy_masked matches byte-wise XOR at every offset and length")
{
    std::vector<std::uint8_t> src(100);
    for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<std::uint8_t>(i * 7 + 1);
    for (std::size_t off = 0; off < 4; ++off)
        for (std::size_t n : {0u, 1u, 7u, 8u, 9u, 63u, 100u}) {
            std::vector<std::uint8_t> dst(n);
            ws::copy_masked(dst.data(), src.data(), n, key, off);
            for (std::size_t i = 0; i < n; ++i) REQUIRE(dst[i] == (src[i] ^ key[(off + i) & 3]));
        }
}

TEST_CASE("a server reads a masked single-frame message in place")
{
    auto b = frame(0x82, "hello", true);
    ws::decoder d{ws::role::server, 1 << 20};
    auto e = d.next(b.data(), b.size());
    REQUIRE(e.what == ws::decoded::kind::message);
    CHECK(e.binary);
    CHECK(text(e.data) == "hello");
    CHECK(d.consumed() == b.size());
}

TEST_CASE("need_more says how many bytes the frame needs")
{
    auto b = frame(0x82, std::string(300, 'x'), false);
    ws::decoder d{ws::role::client, 1 << 20};
    auto e = d.next(b.data(), 1);
    CHECK(e.what == ws::decoded::kind::need_more);
    CHECK(e.need == 2);
    e = d.next(b.data(), 3);
    CHECK(e.need == 4);  // 16-bit length
    e = d.next(b.data(), 10);
    CHECK(e.need == 4 + 300);
    e = d.next(b.data(), b.size());
    REQUIRE(e.what == ws::decoded::kind::message);
    CHECK(e.data.size() == 300);
}

TEST_CASE("fragments are assembled in place, with a ping in the middle")
{
    bytes b;
    for (auto& part : {frame(0x02, "ab", true), frame(0x89, "pi", true), frame(0x00, "cd", true),
                       frame(0x80, "ef", true)})
        b.insert(b.end(), part.begin(), part.end());
    ws::decoder d{ws::role::server, 1 << 20};
    auto e = d.next(b.data(), b.size());
    REQUIRE(e.what == ws::decoded::kind::ping);
    CHECK(text(e.data) == "pi");
    CHECK(d.consumed() == 0);  // the assembled "ab" still sits at the front
    e = d.next(b.data(), b.size());
    REQUIRE(e.what == ws::decoded::kind::message);
    CHECK(e.binary);
    CHECK(text(e.data) == "abcdef");
    CHECK(d.consumed() == b.size());
}

TEST_CASE("close frames: code and reason, or 1005 when empty")
{
    ws::decoder d{ws::role::client, 1 << 20};
    auto b = frame(0x88, std::string{"\x03\xe9" "bye", 5}, false);
    auto e = d.next(b.data(), b.size());
    REQUIRE(e.what == ws::decoded::kind::close);
    CHECK(e.close_code == 1001);
    CHECK(e.reason == "bye");
    auto empty = frame(0x88, "", false);
    e = d.next(empty.data(), empty.size());
    REQUIRE(e.what == ws::decoded::kind::close);
    CHECK(e.close_code == 1005);
}

TEST_CASE("every framing violation is an error with its close code")
{
    struct c {
        const char* what;
        ws::role r;
        bytes b;
        std::uint16_t code;
        const char* reason;
    };
    const std::vector<c> cases{
        {"reserved bits", ws::role::server, frame(0xC2, "x", true), 1002,
         "reserved bits set (no extension was negotiated)"},
        {"unmasked client frame", ws::role::server, frame(0x82, "x", false), 1002,
         "client frame is not masked"},
        {"masked server frame", ws::role::client, frame(0x82, "x", true), 1002,
         "server frame is masked"},
        {"unknown data opcode", ws::role::client, frame(0x83, "x", false), 1002, "unknown data opcode 3"},
        {"unknown control opcode", ws::role::client, frame(0x8B, "x", false), 1002,
         "unknown control opcode 11"},
        {"fragmented ping", ws::role::client, frame(0x09, "x", false), 1002, "fragmented control frame"},
        {"long ping", ws::role::client, frame(0x89, std::string(126, 'x'), false), 1002,
         "control frame payload over 125 bytes"},
        {"stray continuation", ws::role::client, frame(0x80, "x", false), 1002,
         "continuation frame without a message"},
        {"close with 1 byte", ws::role::client, frame(0x88, "x", false), 1002,
         "close frame with a 1-byte payload"},
        {"close code 1005 on the wire", ws::role::client,
         frame(0x88, std::string{"\x03\xed", 2}, false), 1002, "invalid close code 1005"},
        {"message over the limit", ws::role::client, frame(0x82, std::string(101, 'x'), false), 1009,
         "message larger than 100 bytes"},
    };
    for (const auto& x : cases) {
        CAPTURE(x.what);
        ws::decoder d{x.r, 100};
        auto b = x.b;
        auto e = d.next(b.data(), b.size());
        REQUIRE(e.what == ws::decoded::kind::error);
        CHECK(e.close_code == x.code);
        CHECK(e.reason == x.reason);
    }
}

TEST_CASE("a too-big frame is refused from its header alone")
{
    // 64-bit length of 2^40 with no payload present: no waiting for it.
    bytes b{0x82, 127, 0, 0, 1, 0, 0, 0, 0, 0};
    ws::decoder d{ws::role::client, 1 << 20};
    auto e = d.next(b.data(), b.size());
    REQUIRE(e.what == ws::decoded::kind::error);
    CHECK(e.close_code == 1009);
    bytes top{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1};
    e = d.next(top.data(), top.size());
    REQUIRE(e.what == ws::decoded::kind::error);
    CHECK(e.reason == "64-bit payload length has its top bit set");
}

TEST_CASE("fragments adding up past the limit are refused")
{
    bytes b;
    for (auto& part : {frame(0x02, std::string(60, 'a'), false), frame(0x80, std::string(60, 'b'), false)})
        b.insert(b.end(), part.begin(), part.end());
    ws::decoder d{ws::role::client, 100};
    auto e = d.next(b.data(), b.size());
    REQUIRE(e.what == ws::decoded::kind::error);
    CHECK(e.close_code == 1009);
}

TEST_CASE("close_payload keeps a close frame within 125 bytes")
{
    const auto p = ws::close_payload(1002, std::string(300, 'r'));
    CHECK(p.size() == 125);
    CHECK(static_cast<unsigned char>(p[0]) == 0x03);
    CHECK(static_cast<unsigned char>(p[1]) == 0xea);
}

TEST_CASE("handshake: the RFC 6455 accept key")
{
    CHECK(ws::accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    CHECK(ws::new_key().size() == 24);
}

TEST_CASE("handshake: head_size finds the blank line")
{
    CHECK(ws::head_size("GET / HTTP/1.1\r\nHost: x\r\n") == 0);
    CHECK(ws::head_size("GET / HTTP/1.1\r\nHost: x\r\n\r\nrest") == 27);
}

TEST_CASE("handshake: an upgrade request is parsed; a plain GET is not an upgrade")
{
    std::string err;
    auto r = ws::parse_request(ws::client_request("gw:8443", "/muxgate?x=1", "a2V5", "muxgate.v1",
                                                  "test"),
                               err);
    REQUIRE(r);
    CHECK(r->method == "GET");
    CHECK(r->path == "/muxgate");
    CHECK(r->target == "/muxgate?x=1");
    CHECK(r->host == "gw:8443");
    CHECK(r->key == "a2V5");
    CHECK(r->ws_version == "13");
    CHECK(r->upgrade);
    CHECK(ws::offers(r->protocols, "muxgate.v1"));
    auto plain = ws::parse_request("GET /muxgate HTTP/1.1\r\nHost: x\r\n\r\n", err);
    REQUIRE(plain);
    CHECK_FALSE(plain->upgrade);
    CHECK_FALSE(ws::parse_request("not http at all\r\n\r\n", err));
    CHECK(err.rfind("bad HTTP request", 0) == 0);
}

TEST_CASE("handshake: offers() matches whole tokens only")
{
    CHECK(ws::offers("a, muxgate.v1 ,b", "muxgate.v1"));
    CHECK_FALSE(ws::offers("muxgate.v10", "muxgate.v1"));
    CHECK_FALSE(ws::offers("", "muxgate.v1"));
}

TEST_CASE("handshake: responses")
{
    std::string err;
    auto ok = ws::parse_response(ws::response_101("abc=", "muxgate.v1"), err);
    REQUIRE(ok);
    CHECK(ok->status == 101);
    CHECK(ok->accept == "abc=");
    CHECK(ok->protocol == "muxgate.v1");
    CHECK(ok->upgrade);
    auto no = ws::parse_response(ws::response_error(400, "nope\n"), err);
    REQUIRE(no);
    CHECK(no->status == 400);
    CHECK(no->content_length == 5);
    CHECK_FALSE(no->upgrade);
}
