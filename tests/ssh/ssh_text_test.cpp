// The ssh plugin's sans-I/O parsers (plugins/ssh/ssh_text.hpp).
#include "ssh_text.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace muxgate::ssh;

TEST_CASE("banner: an OpenSSH client line, fed byte by byte")
{
    banner_parser p{false};
    const std::string in = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n\x00\x00\x01";
    std::size_t used = 0;
    for (char c : in) {
        if (p.status() != banner_parser::state::need_more) break;
        used += p.feed(std::string_view{&c, 1});
    }
    REQUIRE(p.status() == banner_parser::state::done);
    CHECK(used == 40);  // nothing of the binary packet after the LF
    CHECK(p.line() == "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3");
    CHECK(p.proto_version() == "2.0");
    CHECK(p.software_version() == "OpenSSH_9.2p1");
    CHECK(p.comments() == "Debian-2+deb12u3");
}

TEST_CASE("banner: a server may send lines before its banner, a client may not")
{
    banner_parser server{true};
    server.feed("hello there\r\nSSH-2.0-srv\r\n");
    CHECK(server.status() == banner_parser::state::done);
    CHECK(server.software_version() == "srv");
    CHECK(server.comments().empty());

    banner_parser client{false};
    client.feed("GET / HTTP/1.1\r\n");
    CHECK(client.status() == banner_parser::state::invalid);
    CHECK(client.error().find("not an SSH identification line") != std::string::npos);
}

TEST_CASE("banner: limits and malformed lines")
{
    banner_parser p{false};
    p.feed("SSH-2.0-" + std::string(300, 'a'));
    CHECK(p.status() == banner_parser::state::invalid);
    CHECK(p.error().find("255") != std::string::npos);

    banner_parser q{false};
    q.feed(std::string_view{"SSH-2.0-x\0y\n", 12});
    CHECK(q.status() == banner_parser::state::invalid);

    banner_parser r{false};
    r.feed("SSH-2.0-\n");
    CHECK(r.status() == banner_parser::state::invalid);

    banner_parser s{false};
    s.feed("SSH-\xff-x\n");
    CHECK(s.status() == banner_parser::state::invalid);

    banner_parser t{true};
    t.feed(std::string(banner_preamble_max + 10, '\n'));
    CHECK(t.status() == banner_parser::state::invalid);
}

TEST_CASE("glob")
{
    CHECK(glob_match("*", ""));
    CHECK(glob_match("lab-*", "lab-1"));
    CHECK(glob_match("lab-*", "lab-"));
    CHECK_FALSE(glob_match("lab-*", "lab"));
    CHECK(glob_match("a?c", "abc"));
    CHECK_FALSE(glob_match("a?c", "ac"));
    CHECK(glob_match("*.office", "a1.office"));
    CHECK(glob_match("*a*b*", "xxaxxbxx"));
    CHECK_FALSE(glob_match("office-pc", "office-pc2"));
}

TEST_CASE("target names resolve to registered tunnels, never further")
{
    const std::vector<tunnel_ref> t = {
        {"a1", "office-pc"}, {"a1", "shared"}, {"a2", "shared"}, {"a.b", "c"}, {"a", "b.c"}};
    auto r = resolve_target("office-pc", t);
    REQUIRE(r.what == resolution::kind::found);
    CHECK(r.ref.agent == "a1");
    r = resolve_target("shared", t);
    CHECK(r.what == resolution::kind::ambiguous);
    CHECK(r.detail == "a1, a2");
    r = resolve_target("a2.shared", t);
    REQUIRE(r.what == resolution::kind::found);
    CHECK(r.ref.agent == "a2");
    CHECK(resolve_target("example.com", t).what == resolution::kind::not_found);
    CHECK(resolve_target("", t).what == resolution::kind::invalid);
    CHECK(resolve_target("a b", t).what == resolution::kind::invalid);
    CHECK(resolve_target("[::1]", t).what == resolution::kind::invalid);
    // Dots in both parts: the split that matches wins.
    r = resolve_target("a.b.c", t);
    CHECK(r.what == resolution::kind::found);
}

TEST_CASE("authorized_keys lines")
{
    auto k = parse_key_line("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA+x alice@laptop\n");
    REQUIRE(k.what == key_line::kind::key);
    CHECK(k.type == "ssh-ed25519");
    CHECK(k.base64 == "AAAAC3NzaC1lZDI1NTE5AAAAIA+x");
    CHECK(k.comment == "alice@laptop");

    k = parse_key_line("from=\"10.0.0.1,10.0.0.2\",no-pty ssh-rsa AAAAB3== bob");
    REQUIRE(k.what == key_line::kind::key);
    CHECK(k.options == "from=\"10.0.0.1,10.0.0.2\",no-pty");
    CHECK(k.type == "ssh-rsa");

    CHECK(parse_key_line("   ").what == key_line::kind::blank);
    CHECK(parse_key_line("# comment").what == key_line::kind::blank);
    CHECK(parse_key_line("ssh-ed25519").what == key_line::kind::invalid);
    CHECK(parse_key_line("ssh-foo AAAA").what == key_line::kind::invalid);
    CHECK(parse_key_line("ssh-ed25519 AA$A").what == key_line::kind::invalid);
    CHECK(parse_key_line("from=\"x ssh-ed25519 AAAA").what == key_line::kind::invalid);
    CHECK(parse_key_line(std::string(key_line_max + 1, 'a')).what == key_line::kind::invalid);
}

TEST_CASE("printable")
{
    CHECK(printable("a\x01\\b") == "a\\x01\\x5cb");
    CHECK(printable("abcdef", 3) == "abc...");
}
