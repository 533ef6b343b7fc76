// net/address: host:port and URLs as operators write them.
#include "net/address.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace muxgate;

TEST_SUITE("net.address")
{
TEST_CASE("parse_host_port: good inputs")
{
    struct good_case {
        const char* text;
        const char* host;
        std::uint16_t port;
    };
    for (const auto& c : std::vector<good_case>{
             {"127.0.0.1:8443", "127.0.0.1", 8443},
             {"gw.example.com:443", "gw.example.com", 443},
             {"[::1]:443", "::1", 443},
             {"[fe80::1%eth0]:22", "fe80::1%eth0", 22},
             {":8080", "", 8080},       // all addresses
             {"[]:1", "", 1},
             {"h:65535", "h", 65535},
             {"h:00080", "h", 80},
         }) {
        CAPTURE(c.text);
        std::string err;
        const auto hp = net::parse_host_port(c.text, err);
        REQUIRE_MESSAGE(hp, err);
        CHECK(hp->host == c.host);
        CHECK(hp->port == c.port);
    }
}

TEST_CASE("parse_host_port: bad inputs, each with its reason")
{
    struct bad_case {
        const char* text;
        const char* error;
    };
    for (const auto& c : std::vector<bad_case>{
             {"", R"("" has no port (expected host:port))"},
             {"host", R"("host" has no port (expected host:port))"},
             {"host:", R"("" is not a port number (1..65535))"},
             {"host:0", R"("0" is not a port number (1..65535))"},
             {"host:65536", R"("65536" is not a port number (1..65535))"},
             {"host:99999999999", R"("99999999999" is not a port number (1..65535))"},
             {"host:-1", R"("-1" is not a port number (1..65535))"},
             {"host:+1", R"("+1" is not a port number (1..65535))"},
             {"host:80x", R"("80x" is not a port number (1..65535))"},
             {"host: 80", R"(" 80" is not a port number (1..65535))"},
             {"::1:443", R"("::1:443": write IPv6 addresses as [addr]:port)"},
             {"[::1]", R"("[::1]" has no port (expected host:port))"},
             {"[::1]:", R"("" is not a port number (1..65535))"},
             {"[::1]443", R"("[::1]443": expected :port after ])"},
             {"[::1:443", R"("[::1:443": unterminated [ipv6] host)"},
         }) {
        CAPTURE(c.text);
        std::string err;
        CHECK_FALSE(net::parse_host_port(c.text, err));
        CHECK(err == c.error);
    }
}

TEST_CASE("parse_host_port: port 0 only when allowed")
{
    std::string err;
    const auto hp = net::parse_host_port("0.0.0.0:0", err, true);
    REQUIRE(hp);
    CHECK(hp->port == 0);
    CHECK_FALSE(net::parse_host_port("0.0.0.0:65536", err, true));
    CHECK(err == R"("65536" is not a port number (0..65535))");
}

TEST_CASE("format_host_port brackets IPv6 and round-trips")
{
    CHECK(net::format_host_port("::1", 443) == "[::1]:443");
    CHECK(net::format_host_port("10.0.0.1", 22) == "10.0.0.1:22");
    CHECK(net::format_host_port("gw", 0) == "gw:0");
    for (const char* h : {"::1", "10.0.0.1", "gw.example.com", "fe80::1%eth0", ""}) {
        std::string err;
        const auto back = net::parse_host_port(net::format_host_port(h, 8080), err);
        REQUIRE(back);
        CHECK(back->host == h);
        CHECK(back->port == 8080);
    }
}

TEST_CASE("format_endpoint")
{
    namespace ip = boost::asio::ip;
    CHECK(net::format_endpoint(ip::tcp::endpoint{ip::make_address("127.0.0.1"), 80}) == "127.0.0.1:80");
    CHECK(net::format_endpoint(ip::tcp::endpoint{ip::make_address("::1"), 443}) == "[::1]:443");
    const ip::tcp::endpoint v6{ip::make_address("2001:db8::7"), 65535};
    const boost::asio::generic::stream_protocol::endpoint generic{v6.data(), v6.size()};
    CHECK(net::format_endpoint(generic) == "[2001:db8::7]:65535");
    const ip::tcp::endpoint v4{ip::make_address("192.0.2.1"), 1};
    CHECK(net::format_endpoint(boost::asio::generic::stream_protocol::endpoint{v4.data(), v4.size()}) ==
          "192.0.2.1:1");
}

TEST_CASE("parse_url: good inputs")
{
    struct good_case {
        const char* text;
        const char* scheme;
        const char* user;
        const char* password;
        const char* host;
        std::uint16_t port;
        const char* path;
    };
    for (const auto& c : std::vector<good_case>{
             {"wss://gw.example.com", "wss", "", "", "gw.example.com", 443, ""},
             {"ws://gw.example.com", "ws", "", "", "gw.example.com", 80, ""},
             {"http://proxy:3128", "http", "", "", "proxy", 3128, ""},
             {"https://h", "https", "", "", "h", 443, ""},
             {"WSS://GW:8443/Path", "wss", "", "", "GW", 8443, "/Path"},
             {"wss://gw/muxgate", "wss", "", "", "gw", 443, "/muxgate"},
             {"wss://gw:1/a/b?c=d", "wss", "", "", "gw", 1, "/a/b?c=d"},
             {"wss://gw/", "wss", "", "", "gw", 443, "/"},
             {"wss://[::1]:8443/mg", "wss", "", "", "::1", 8443, "/mg"},
             {"wss://[::1]", "wss", "", "", "::1", 443, ""},
             {"http://user:pa:ss@proxy:3128", "http", "user", "pa:ss", "proxy", 3128, ""},
             {"http://user@proxy:3128", "http", "user", "", "proxy", 3128, ""},
             {"http://a@b@proxy:3128", "http", "a@b", "", "proxy", 3128, ""},
             {"http://u:p@[::1]:3128", "http", "u", "p", "::1", 3128, ""},
             {"wss://gw/p@th", "wss", "", "", "gw", 443, "/p@th"},  // '@' in the path is not userinfo
         }) {
        CAPTURE(c.text);
        std::string err;
        const auto u = net::parse_url(c.text, err);
        REQUIRE_MESSAGE(u, err);
        CHECK(u->scheme == c.scheme);
        CHECK(u->user == c.user);
        CHECK(u->password == c.password);
        CHECK(u->host == c.host);
        CHECK(u->port == c.port);
        CHECK(u->path == c.path);
    }
}

TEST_CASE("parse_url: bad inputs, each with its reason")
{
    struct bad_case {
        const char* text;
        const char* error;
    };
    for (const auto& c : std::vector<bad_case>{
             {"", R"("" is not a URL (expected scheme://host[:port][/path]))"},
             {"gw.example.com", R"("gw.example.com" is not a URL (expected scheme://host[:port][/path]))"},
             {"://gw", R"("://gw" is not a URL (expected scheme://host[:port][/path]))"},
             {"ftp://gw", R"("ftp://gw": unsupported scheme "ftp")"},
             {"wss://", R"("wss://" has no host)"},
             {"wss:///path", R"("wss:///path" has no host)"},
             {"wss://user@", R"("wss://user@" has no host)"},
             {"wss://:443", R"("wss://:443" has no host)"},
             {"wss://[]:443", R"("wss://[]:443" has no host)"},
             {"wss://gw:", R"("" is not a port number (1..65535))"},
             {"wss://gw:0", R"("0" is not a port number (1..65535))"},
             {"wss://gw:70000/x", R"("70000" is not a port number (1..65535))"},
             {"wss://[::1:443", R"("wss://[::1:443": unterminated [ipv6] host)"},
         }) {
        CAPTURE(c.text);
        std::string err;
        CHECK_FALSE(net::parse_url(c.text, err));
        CHECK(err == c.error);
    }
}

// Regression (fixed): core/net/address.cpp parse_url() takes the last ':' of an unbracketed
// authority as the port separator without checking the host, so an IPv6
// literal written without brackets is misread: "wss://fe80::1" becomes host
// "fe80:" port 1. parse_host_port() refuses the same mistake with "write IPv6
// addresses as [addr]:port"; parse_url should too.
TEST_CASE("parse_url: an unbracketed IPv6 host is refused")
{
    std::string err;
    const auto u = net::parse_url("wss://fe80::1", err);
    CHECK_FALSE(u);
    if (u) CHECK(u->host == "fe80::1");  // what it got instead: "fe80:" port 1
}

// Regression (fixed): core/net/address.cpp parse_url() ignores what follows the ']' of a
// bracketed host up to the next ':' (or the end): "wss://[::1]junk:8443"
// parses as host "::1" port 8443. Only ":port" or nothing may follow ']'.
TEST_CASE("parse_url: text between ']' and the port is refused")
{
    std::string err;
    CHECK_FALSE(net::parse_url("wss://[::1]junk:8443", err));
    CHECK_FALSE(net::parse_url("wss://[::1]junk", err));
}
}
