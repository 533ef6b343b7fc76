// The HTTP plugin's sans-I/O part: request/response heads, body framing,
// routing by Host, forwarded headers, basic auth and allow lists.
#include "http1.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace muxgate::http;

namespace {

parse_result req(std::string_view bytes, message_head& h, head_limits lim = {})
{
    return parse_request(bytes, lim, h);
}

int status_of(std::string_view bytes)
{
    message_head h;
    const auto r = req(bytes, h);
    return r.state == parse_state::error ? r.status : r.state == parse_state::done ? 200 : 0;
}

// Feeds `body` to a framer one byte at a time and all at once; both must agree.
std::size_t frame_all(body_kind kind, std::string_view body, bool& ok, std::uint64_t len = 0)
{
    body_framer a, b;
    a.start(kind, len);
    b.start(kind, len);
    std::size_t used_a = 0;
    for (std::size_t i = 0; i < body.size() && !a.done() && !a.failed(); ++i)
        used_a += a.feed(body.substr(i, 1));
    const auto used_b = b.feed(body);
    CHECK(a.done() == b.done());
    CHECK(a.failed() == b.failed());
    if (a.done()) CHECK(used_a == used_b);
    ok = b.done() && !b.failed();
    return used_b;
}

}  // namespace

TEST_CASE("request heads: the plain cases")
{
    message_head h;
    auto r = req("GET /a?b=1 HTTP/1.1\r\nHost: Example.COM:8443\r\nAccept: */*\r\n\r\nrest", h);
    REQUIRE(r.state == parse_state::done);
    CHECK(h.method == "GET");
    CHECK(h.target == "/a?b=1");
    CHECK(h.minor == 1);
    CHECK(h.keep_alive);
    CHECK(h.body == body_kind::none);
    CHECK(h.head_size == std::string_view{"GET /a?b=1 HTTP/1.1\r\nHost: Example.COM:8443\r\nAccept: */*\r\n\r\n"}.size());
    CHECK(normalize_host(*h.get("host")) == "example.com");

    r = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", h);
    REQUIRE(r.state == parse_state::done);
    CHECK(h.body == body_kind::length);
    CHECK(h.content_length == 5);

    r = req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n", h);
    REQUIRE(r.state == parse_state::done);
    CHECK(h.body == body_kind::chunked);
    CHECK(h.expect_continue);

    r = req("GET / HTTP/1.0\r\n\r\n", h);
    REQUIRE(r.state == parse_state::done);
    CHECK(!h.keep_alive);
    r = req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", h);
    CHECK(h.keep_alive);
    r = req("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", h);
    CHECK(!h.keep_alive);
    r = req("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n", h);
    CHECK(h.upgrade);
    // Leading empty lines are skipped (RFC 9112 §2.2).
    CHECK(status_of("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n") == 200);
}

TEST_CASE("request heads: incomplete until the blank line")
{
    const std::string full = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    for (std::size_t i = 0; i < full.size(); ++i) {
        message_head h;
        CHECK(req(full.substr(0, i), h).state == parse_state::incomplete);
    }
}

TEST_CASE("request heads: ambiguous framing is refused, never guessed")
{
    // Smuggling classics.
    CHECK(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n") == 400);
    CHECK(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n") == 400);
    CHECK(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n") == 400);
    CHECK(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n") == 400);
    CHECK(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n") == 400);
    CHECK(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n") == 400);
    CHECK(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n") == 501);
    CHECK(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n") == 400);
    CHECK(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n") == 400);
    CHECK(status_of("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n") == 400);
    // Equal repeated Content-Length is one value.
    CHECK(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n") == 200);
    // Line endings and characters.
    CHECK(status_of("GET / HTTP/1.1\nHost: a\n\n") == 400);
    CHECK(status_of("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n") == 400);
    CHECK(status_of(std::string{"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 35}) == 400);
    CHECK(status_of("GET  / HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
    CHECK(status_of("G(T / HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
    CHECK(status_of("GET / HTTP/2.0\r\nHost: a\r\n\r\n") == 505);
    CHECK(status_of("GET / HTTX/1.1\r\nHost: a\r\n\r\n") == 400);
    CHECK(status_of("GET / HTTP/1.1\r\n\r\n") == 400);  // no Host
    CHECK(status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == 400);
}

TEST_CASE("request heads: size and count limits answer 431")
{
    head_limits lim;
    lim.max_head = 1024;
    lim.max_headers = 10;
    message_head h;
    std::string big = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(2000, 'x');
    auto r = req(big, h, lim);  // no end yet, already too long
    CHECK(r.state == parse_state::error);
    CHECK(r.status == 431);
    std::string many = "GET / HTTP/1.1\r\nHost: a\r\n";
    for (int i = 0; i < 10; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
    many += "\r\n";
    r = req(many, h, lim);
    CHECK(r.state == parse_state::error);
    CHECK(r.status == 431);
}

TEST_CASE("response heads and their bodies")
{
    head_limits lim;
    message_head h;
    auto r = parse_response("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", lim, "GET", h);
    REQUIRE(r.state == parse_state::done);
    CHECK(h.status == 200);
    CHECK(h.body == body_kind::length);
    r = parse_response("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", lim, "HEAD", h);
    CHECK(h.body == body_kind::none);
    r = parse_response("HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n", lim, "GET", h);
    CHECK(h.body == body_kind::none);
    r = parse_response("HTTP/1.1 204 No Content\r\n\r\n", lim, "GET", h);
    CHECK(h.body == body_kind::none);
    r = parse_response("HTTP/1.1 100 Continue\r\n\r\n", lim, "POST", h);
    CHECK(h.status == 100);
    CHECK(h.body == body_kind::none);
    r = parse_response("HTTP/1.1 200 OK\r\n\r\n", lim, "GET", h);
    CHECK(h.body == body_kind::close);
    CHECK(!h.keep_alive);
    r = parse_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", lim, "GET", h);
    CHECK(h.body == body_kind::chunked);
    r = parse_response("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", lim, "GET", h);
    CHECK(h.status == 101);
    r = parse_response("HTTP/1.1 200\r\n\r\n", lim, "GET", h);
    CHECK(r.state == parse_state::done);
    CHECK(parse_response("HTTP/1.1 20 OK\r\n\r\n", lim, "GET", h).state == parse_state::error);
    CHECK(parse_response("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", lim, "GET", h).status == 502);
}

TEST_CASE("body framer: content-length, chunked with trailers, close")
{
    bool ok = false;
    CHECK(frame_all(body_kind::length, "helloNEXT", ok, 5) == 5);
    CHECK(ok);
    CHECK(frame_all(body_kind::chunked, "5\r\nhello\r\n0\r\n\r\nNEXT", ok) == 15);
    CHECK(ok);
    CHECK(frame_all(body_kind::chunked, "5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\nG", ok) ==
          std::string_view{"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n"}.size());
    CHECK(ok);
    body_framer f;
    f.start(body_kind::close);
    CHECK(f.feed("anything") == 8);
    CHECK(!f.done());
    f.finish_at_eof();
    CHECK(f.done());
    f.start(body_kind::length, 10);
    f.feed("abc");
    f.finish_at_eof();
    CHECK(f.failed());
}

TEST_CASE("body framer: bad chunks fail")
{
    for (const char* bad : {"x\r\n", "\r\n", "5\r\nhelloX\r\n", "5\nhello\r\n", "-1\r\n",
                            "ffffffffffffffffff\r\n", "5 x\r\nhello\r\n0\r\n\r\n",
                            "0\r\nX: 1\n\r\n"}) {
        body_framer f;
        f.start(body_kind::chunked);
        f.feed(bad);
        // Either failed at once, or (for extensions) at the next bad byte.
        if (!f.failed()) f.feed("zz\r\n\r\n");
        CHECK_MESSAGE(f.failed(), std::string{bad});
    }
    body_framer f;
    f.start(body_kind::chunked);
    f.feed(std::string(max_chunk_line + 10, '1'));
    CHECK(f.failed());
}

TEST_CASE("host names and routing")
{
    CHECK(normalize_host("App.Example.com:443") == "app.example.com");
    CHECK(normalize_host("app.example.com.") == "app.example.com");
    CHECK(normalize_host("[::1]:8080") == "[::1]");
    CHECK(normalize_host("a b") == "");
    CHECK(normalize_host("a.b..") == "");
    CHECK(normalize_host(".a") == "");
    CHECK(normalize_host("a..b") == "");
    CHECK(normalize_host("a:xx") == "");
    CHECK(normalize_host("") == "");
    CHECK(host_matches("*.example.com", "a.example.com"));
    CHECK(!host_matches("*.example.com", "a.b.example.com"));
    CHECK(!host_matches("*.example.com", "example.com"));
    CHECK(host_matches("*", "x.y"));
    CHECK(host_matches("x.y", "x.y"));

    router r;
    CHECK(r.add("a.example.com", "agent1", "web"));
    CHECK(!r.add("a.example.com", "agent2", "web"));  // held by another online tunnel
    CHECK(r.find("a.example.com")->agent == "agent1");
    CHECK(!r.find("b.example.com"));
    r.set_offline("agent1", "web");
    CHECK(!r.find("a.example.com")->online);
    CHECK(r.add("a.example.com", "agent2", "web"));  // an offline holder is replaced
    CHECK(r.find("a.example.com")->agent == "agent2");
    CHECK(r.find("a.example.com")->online);
    r.remove("agent2", "web");
    CHECK(!r.find("a.example.com"));
    r.max_offline = 2;
    for (int i = 0; i < 5; ++i) {
        r.add("h" + std::to_string(i), "a", "t" + std::to_string(i));
        r.set_offline("a", "t" + std::to_string(i));
    }
    CHECK(r.size() == 2);
    CHECK(r.find("h4"));
    CHECK(!r.find("h0"));
}

TEST_CASE("forwarded headers: untrusted ones replaced, trusted ones appended")
{
    message_head h;
    REQUIRE(req("GET /x HTTP/1.1\r\nHost: app.example.com\r\nX-Forwarded-For: 6.6.6.6\r\n"
                "Forwarded: for=6.6.6.6\r\nProxy-Connection: keep-alive\r\nA: b\r\n\r\n", h).state ==
            parse_state::done);
    forward_info fi;
    fi.client_ip = "203.0.113.7";
    fi.tls = true;
    auto out = forward_request_head(h, fi, "app.example.com");
    CHECK(out.find("6.6.6.6") == std::string::npos);
    CHECK(out.find("Proxy-Connection") == std::string::npos);
    CHECK(out.find("X-Forwarded-For: 203.0.113.7\r\n") != std::string::npos);
    CHECK(out.find("X-Forwarded-Proto: https\r\n") != std::string::npos);
    CHECK(out.find("X-Forwarded-Host: app.example.com\r\n") != std::string::npos);
    CHECK(out.find("Forwarded: for=203.0.113.7;proto=https;host=app.example.com\r\n") != std::string::npos);
    CHECK(out.find("A: b\r\n") != std::string::npos);
    CHECK(out.rfind("GET /x HTTP/1.1\r\n", 0) == 0);
    CHECK(out.substr(out.size() - 4) == "\r\n\r\n");
    fi.trust_incoming = true;
    fi.client_ip = "2001:db8::1";
    out = forward_request_head(h, fi, "app.example.com");
    CHECK(out.find("X-Forwarded-For: 6.6.6.6, 2001:db8::1\r\n") != std::string::npos);
    CHECK(out.find("Forwarded: for=6.6.6.6, for=\"[2001:db8::1]\";proto=https") != std::string::npos);
    // The result parses again as the same request.
    message_head again;
    CHECK(req(out, again).state == parse_state::done);
    CHECK(again.target == "/x");

    auto rw = rewrite_host(h, "localhost:8080");
    CHECK(rw.find("Host: localhost:8080\r\n") != std::string::npos);
    CHECK(rw.find("app.example.com") == std::string::npos);
}

TEST_CASE("basic auth and allow lists")
{
    const std::vector<std::string> creds = {"alice:" + sha256_hex("s3cret")};
    // "alice:s3cret"
    CHECK(basic_auth_ok("Basic YWxpY2U6czNjcmV0", creds));
    CHECK(basic_auth_ok("basic   YWxpY2U6czNjcmV0 ", creds));
    CHECK(!basic_auth_ok("Basic YWxpY2U6d3Jvbmc=", creds));  // alice:wrong
    CHECK(!basic_auth_ok("Basic Ym9iOnMzY3JldA==", creds));  // bob:s3cret
    CHECK(!basic_auth_ok("Bearer x", creds));
    CHECK(!basic_auth_ok("Basic !!!!", creds));

    std::vector<cidr> allow = {*parse_cidr("10.0.0.0/8"), *parse_cidr("192.0.2.7"), *parse_cidr("2001:db8::/32")};
    CHECK(ip_allowed("10.1.2.3", allow));
    CHECK(ip_allowed("192.0.2.7", allow));
    CHECK(!ip_allowed("192.0.2.8", allow));
    CHECK(ip_allowed("2001:db8::5", allow));
    CHECK(!ip_allowed("2001:db9::5", allow));
    CHECK(ip_allowed("::ffff:10.9.9.9", allow));
    CHECK(!parse_cidr("10.0.0.0/33"));
    CHECK(!parse_cidr("nonsense"));
    CHECK(ip_of("[::1]:443") == "::1");
    CHECK(ip_of("127.0.0.1:5000") == "127.0.0.1");
}
