// fuzz_http_head: the HTTP plugin's sans-I/O part over arbitrary bytes.
//
// Input: [mode u8][split u8][bytes...]
//   mode & 3 == 0: request head, then its body through the framer
//   mode & 3 == 1: response head (method from mode bit 2: GET / HEAD), body
//   mode & 3 == 2: a chunked body alone
//   mode & 3 == 3: host normalization and the router
// `split` cuts the input in two feeds, so framing across reads is covered.
//
// Checked: a parsed head never claims more bytes than it got; framing is
// never both length and chunked; the framer never consumes beyond its input,
// gives the same answer fed whole or in two pieces, and stops at done;
// a request that parses forwards to a head that parses again with the same
// method, target and framing; normalized host names are lower case, have no
// port and normalize to themselves; the router finds what it added.
#include "fuzz_util.hpp"
#include "http1.hpp"

#include <string>

using namespace muxgate;

namespace {

void check_framer(http::body_kind kind, std::uint64_t len, std::string_view body, std::size_t split)
{
    http::body_framer whole, parts;
    whole.start(kind, len);
    parts.start(kind, len);
    const auto a = whole.feed(body);
    FUZZ_REQUIRE(a <= body.size());
    split = body.empty() ? 0 : split % (body.size() + 1);
    auto b = parts.feed(body.substr(0, split));
    FUZZ_REQUIRE(b <= split);
    if (b == split && !parts.done() && !parts.failed()) b += parts.feed(body.substr(split));
    FUZZ_REQUIRE(whole.failed() == parts.failed());
    FUZZ_REQUIRE(whole.done() == parts.done());
    if (whole.done()) {
        FUZZ_REQUIRE(a == b);
        FUZZ_REQUIRE(whole.feed("more") == 0);
    }
    if (!whole.done() && !whole.failed()) FUZZ_REQUIRE(a == body.size());
    whole.finish_at_eof();
    FUZZ_REQUIRE(whole.done() || whole.failed());
}

void check_request(std::string_view bytes, std::size_t split)
{
    http::head_limits lim;
    lim.max_head = 4096;
    lim.max_headers = 32;
    http::message_head h;
    const auto r = http::parse_request(bytes, lim, h);
    if (r.state == http::parse_state::error) {
        FUZZ_REQUIRE(r.status >= 400 && r.status <= 505);
        FUZZ_REQUIRE(!r.error.empty());
        return;
    }
    if (r.state != http::parse_state::done) return;
    FUZZ_REQUIRE(h.head_size <= bytes.size() && h.head_size <= lim.max_head);
    FUZZ_REQUIRE(h.body != http::body_kind::close);
    http::forward_info fi;
    fi.client_ip = "192.0.2.1";
    const auto fwd = http::forward_request_head(h, fi, "example.com");
    http::head_limits big;
    big.max_head = 64 * 1024;
    big.max_headers = 64;
    http::message_head again;
    const auto r2 = http::parse_request(fwd, big, again);
    FUZZ_REQUIRE(r2.state == http::parse_state::done);
    FUZZ_REQUIRE(again.method == h.method && again.target == h.target);
    FUZZ_REQUIRE(again.body == h.body && again.content_length == h.content_length);
    FUZZ_REQUIRE(again.head_size == fwd.size());
    check_framer(h.body, h.content_length, bytes.substr(h.head_size), split);
}

void check_response(std::string_view bytes, bool head_request, std::size_t split)
{
    http::head_limits lim;
    lim.max_head = 4096;
    lim.max_headers = 32;
    http::message_head h;
    const auto r = http::parse_response(bytes, lim, head_request ? "HEAD" : "GET", h);
    if (r.state == http::parse_state::error) {
        FUZZ_REQUIRE(r.status == 502);
        return;
    }
    if (r.state != http::parse_state::done) return;
    FUZZ_REQUIRE(h.head_size <= bytes.size());
    FUZZ_REQUIRE(h.status >= 100 && h.status <= 999);
    if (head_request || h.status < 200 || h.status == 204 || h.status == 304)
        FUZZ_REQUIRE(h.body == http::body_kind::none);
    check_framer(h.body, h.content_length, bytes.substr(h.head_size), split);
}

void check_hosts(std::string_view bytes)
{
    http::router r;
    std::string_view rest = bytes;
    int n = 0;
    while (!rest.empty() && n < 16) {
        const auto nl = rest.find('\n');
        const auto line = rest.substr(0, nl);
        rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
        const auto h = http::normalize_host(line);
        if (h.empty()) continue;
        for (char c : h) FUZZ_REQUIRE(!(c >= 'A' && c <= 'Z'));
        FUZZ_REQUIRE(http::normalize_host(h) == h);
        if (h.front() != '[') FUZZ_REQUIRE(h.find(':') == std::string::npos);
        const std::string tunnel = "t" + std::to_string(n % 3);
        const bool added = r.add(h, "agent", tunnel);
        const auto t = r.find(h);
        FUZZ_REQUIRE(t.has_value());
        if (added) FUZZ_REQUIRE(t->tunnel == tunnel);
        (void)http::host_matches(std::string{"*."} + h, h);
        if (n % 4 == 3) r.set_offline("agent", tunnel);
        ++n;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    fuzz::reader in{data, size};
    const auto mode = in.u8();
    const auto split = in.u8();
    const std::string_view bytes{reinterpret_cast<const char*>(data) + (size - in.left()), in.left()};
    switch (mode & 3) {
    case 0: check_request(bytes, split); break;
    case 1: check_response(bytes, (mode & 4) != 0, split); break;
    case 2: check_framer(http::body_kind::chunked, 0, bytes, split); break;
    case 3: check_hosts(bytes); break;
    }
    return 0;
}
