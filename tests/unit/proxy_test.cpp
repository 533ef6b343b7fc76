// net/proxy: the HTTP CONNECT request and the proxy's answer.
#include "net/proxy.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace muxgate;
using state = net::connect_response::state;

TEST_SUITE("net.proxy")
{
TEST_CASE("connect_request without and with credentials")
{
    CHECK(net::connect_request("gw.example.com", 443, "", "") ==
          "CONNECT gw.example.com:443 HTTP/1.1\r\nHost: gw.example.com:443\r\n\r\n");
    CHECK(net::connect_request("::1", 8443, "", "ignored") ==
          "CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n");
    // RFC 7617's example: Aladdin / open sesame.
    CHECK(net::connect_request("gw", 443, "Aladdin", "open sesame") ==
          "CONNECT gw:443 HTTP/1.1\r\nHost: gw:443\r\n"
          "Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n");
    // Every padding length, and an empty password.
    CHECK(net::connect_request("gw", 1, "u", "").find("Basic dTo=\r\n") != std::string::npos);
    CHECK(net::connect_request("gw", 1, "us", "").find("Basic dXM6\r\n") != std::string::npos);
    CHECK(net::connect_request("gw", 1, "use", "").find("Basic dXNlOg==\r\n") != std::string::npos);
}

TEST_CASE("parse_connect_response: incomplete until the blank line")
{
    for (const char* partial : {"", "HTTP/1.1 200", "HTTP/1.1 200 OK\r\n", "HTTP/1.1 200 OK\r\n\r",
                                "HTTP/1.1 200 OK\r\nVia: x\r\n"}) {
        CAPTURE(partial);
        const auto r = net::parse_connect_response(partial);
        CHECK(r.result == state::incomplete);
        CHECK(r.status == 0);
        CHECK(r.head_size == 0);
    }
}

TEST_CASE("parse_connect_response: 2xx is ok, with the head size and the reason")
{
    const std::string head = "HTTP/1.1 200 Connection established\r\nVia: proxy\r\n\r\n";
    const auto r = net::parse_connect_response(head + "\x16\x03\x01 first TLS bytes");
    CHECK(r.result == state::ok);
    CHECK(r.status == 200);
    CHECK(r.reason == "Connection established");
    CHECK(r.head_size == head.size());

    const auto r10 = net::parse_connect_response("HTTP/1.0 204 \r\n\r\n");
    CHECK(r10.result == state::ok);
    CHECK(r10.status == 204);
    CHECK(r10.reason == "");
    CHECK(r10.head_size == 17);

    // No reason phrase at all.
    const auto bare = net::parse_connect_response("HTTP/1.1 299\r\n\r\n");
    CHECK(bare.result == state::ok);
    CHECK(bare.status == 299);
    CHECK(bare.reason == "");
}

TEST_CASE("parse_connect_response: anything else is refused, with the status")
{
    const auto r = net::parse_connect_response(
        "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n");
    CHECK(r.result == state::refused);
    CHECK(r.status == 407);
    CHECK(r.reason == "Proxy Authentication Required");
    for (const char* s : {"HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 301 Moved\r\n\r\n",
                          "HTTP/1.1 403 Forbidden\r\n\r\n", "HTTP/1.1 502 Bad Gateway\r\n\r\n",
                          "HTTP/1.1 199 x\r\n\r\n", "HTTP/1.1 300 x\r\n\r\n"}) {
        CAPTURE(s);
        CHECK(net::parse_connect_response(s).result == state::refused);
    }
    // The reason is cut for the log.
    const auto long_reason = net::parse_connect_response(std::string{"HTTP/1.1 403 "} + std::string(200, 'r') + "\r\n\r\n");
    CHECK(long_reason.reason == std::string(80, 'r'));
}

TEST_CASE("parse_connect_response: malformed status lines")
{
    for (const char* s : {"\r\n\r\n", "HTTP/1.1\r\n\r\n", "HTTP/1.1 20\r\n\r\n", "HTTP/2 200 OK\r\n\r\n",
                          "http/1.1 200 OK\r\n\r\n", "HTTP/1.1  200 OK\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n",
                          "HTTP/1.1 -20 OK\r\n\r\n", "SSH-2.0-OpenSSH_9.0\r\n\r\n",
                          "HTTP/1.1\t200 OK\r\n\r\n"}) {
        CAPTURE(s);
        const auto r = net::parse_connect_response(s);
        CHECK(r.result == state::malformed);
        CHECK(r.status == 0);
    }
    const auto r = net::parse_connect_response("FTP/1.1 200 OK\r\n\r\n");
    CHECK(r.reason == "FTP/1.1 200 OK");  // the line, for the log
}

TEST_CASE("parse_connect_response: a head longer than max_head is malformed")
{
    const std::string line = "HTTP/1.1 200 OK\r\n";
    SUBCASE("no blank line yet: incomplete up to max_head bytes, malformed beyond")
    {
        const std::string at_max = line + std::string(100 - line.size(), 'x');
        REQUIRE(at_max.size() == 100);
        CHECK(net::parse_connect_response(at_max, 100).result == state::incomplete);
        CHECK(net::parse_connect_response(at_max + "x", 100).result == state::malformed);
        CHECK(net::parse_connect_response(std::string(8193, 'x')).result == state::malformed);
        CHECK(net::parse_connect_response(std::string(8192, 'x')).result == state::incomplete);
    }
    SUBCASE("a whole head of exactly max_head bytes is fine, one more is not")
    {
        const std::string filler = "X-Pad: ";
        std::string head = line + filler;
        head += std::string(100 - head.size() - 4, 'p') + "\r\n\r\n";
        REQUIRE(head.size() == 100);
        const auto ok = net::parse_connect_response(head, 100);
        CHECK(ok.result == state::ok);
        CHECK(ok.head_size == 100);
        CHECK(net::parse_connect_response(head, 99).result == state::malformed);
    }
}

// Regression (fixed): core/net/proxy.cpp parse_connect_response() checks "HTTP/1." and the
// space at index 8 but neither the minor version digit (index 7) nor the space
// after the 3-digit status (index 12): "HTTP/1.1 2000 OK" and "HTTP/1.x 200
// OK" are accepted as 200. Suggested fix: require line[7] to be a digit and
// line.size() == 12 || line[12] == ' '.
TEST_CASE("parse_connect_response: a 4-digit status or a bad version is malformed")
{
    CHECK(net::parse_connect_response("HTTP/1.1 2000 OK\r\n\r\n").result == state::malformed);
    CHECK(net::parse_connect_response("HTTP/1.x 200 OK\r\n\r\n").result == state::malformed);
}
}
