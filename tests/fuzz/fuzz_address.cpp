// fuzz_address: net::parse_host_port and net::parse_url over arbitrary text.
//
// Input: [flags u8][text...]; flags bit 0: allow port 0 in parse_host_port.
//
// Checked: what parses is in range (ports, schemes, default ports, paths);
// what fails says why; format_host_port output parses back to the same host
// and port; a URL rebuilt from its parts parses back to the same parts.
// Hosts containing '[' or ']' are left out of the round trips: neither
// parser validates host characters, so "[[x]:1" gives host "[x", which no
// formatter can write back (see the report on host validation).
#include "fuzz_util.hpp"
#include "net/address.hpp"

#include <string>

using namespace muxgate;

namespace {

bool has_bracket(std::string_view s) { return s.find_first_of("[]") != std::string_view::npos; }

void check_host_port(std::string_view text, bool allow_zero)
{
    std::string err;
    const auto hp = net::parse_host_port(text, err, allow_zero);
    if (!hp) {
        FUZZ_REQUIRE(!err.empty());
        return;
    }
    FUZZ_REQUIRE(allow_zero || hp->port != 0);
    if (has_bracket(hp->host)) return;
    const auto formatted = net::format_host_port(hp->host, hp->port);
    std::string err2;
    const auto back = net::parse_host_port(formatted, err2, allow_zero);
    FUZZ_REQUIRE(back);
    FUZZ_REQUIRE(back->host == hp->host && back->port == hp->port);
}

void check_url(std::string_view text)
{
    std::string err;
    const auto u = net::parse_url(text, err);
    if (!u) {
        FUZZ_REQUIRE(!err.empty());
        return;
    }
    FUZZ_REQUIRE(u->scheme == "ws" || u->scheme == "wss" || u->scheme == "http" || u->scheme == "https");
    FUZZ_REQUIRE(!u->host.empty());
    FUZZ_REQUIRE(u->port != 0);
    FUZZ_REQUIRE(u->path.empty() || u->path.front() == '/');
    FUZZ_REQUIRE(u->host.find_first_of("/@") == std::string::npos);
    FUZZ_REQUIRE(u->user.find_first_of("/:") == std::string::npos);
    if (has_bracket(u->host)) return;

    std::string rebuilt = u->scheme + "://";
    if (!u->user.empty() || !u->password.empty())
        rebuilt += u->user + (u->password.empty() ? "" : ":" + u->password) + "@";
    rebuilt += net::format_host_port(u->host, u->port) + u->path;
    std::string err2;
    const auto back = net::parse_url(rebuilt, err2);
    FUZZ_REQUIRE(back);
    FUZZ_REQUIRE(back->scheme == u->scheme && back->user == u->user && back->password == u->password &&
                 back->host == u->host && back->port == u->port && back->path == u->path);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    fuzz::reader in{data, size};
    const bool allow_zero = in.u8() & 1;
    const auto text = in.rest_text();
    check_host_port(text, allow_zero);
    check_url(text);
    return 0;
}
