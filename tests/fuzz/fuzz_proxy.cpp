// fuzz_proxy: net::parse_connect_response over arbitrary proxy answers, and
// net::connect_request over arbitrary host / credentials.
//
// Input: [max_head sel u8][response bytes...]
//   sel bit 0 set: the default max_head (8192); else max_head = sel (0..254)
// The same bytes, split at the first two NULs into host, user and password
// (port: the selector), also drive connect_request.
//
// Checked: incomplete means no blank line yet and not over max_head; ok and
// refused report a head_size that ends exactly after the first blank line and
// fits max_head, a 3-digit status whose class decides ok / refused, and a
// reason of at most 80 bytes; the CONNECT request names the target, ends with
// a blank line, and its Basic credentials decode back to user:password.
#include "fuzz_util.hpp"
#include "net/address.hpp"
#include "net/proxy.hpp"

#include <openssl/evp.h>

#include <string>

using namespace muxgate;
using state = net::connect_response::state;

namespace {

void check_response(std::string_view bytes, std::size_t max_head)
{
    const auto r = net::parse_connect_response(bytes, max_head);
    const auto blank = bytes.find("\r\n\r\n");
    FUZZ_REQUIRE(r.reason.size() <= 80);
    switch (r.result) {
    case state::incomplete:
        FUZZ_REQUIRE(blank == std::string_view::npos);
        FUZZ_REQUIRE(bytes.size() <= max_head);
        FUZZ_REQUIRE(r.status == 0 && r.head_size == 0);
        break;
    case state::ok:
    case state::refused:
        FUZZ_REQUIRE(blank != std::string_view::npos);
        FUZZ_REQUIRE(r.head_size == blank + 4);
        FUZZ_REQUIRE(r.head_size <= max_head && r.head_size <= bytes.size());
        FUZZ_REQUIRE(bytes.substr(0, 7) == "HTTP/1.");
        FUZZ_REQUIRE(r.status <= 999);
        FUZZ_REQUIRE((r.result == state::ok) == (r.status / 100 == 2));
        break;
    case state::malformed:
        FUZZ_REQUIRE(r.status == 0);
        FUZZ_REQUIRE(blank == std::string_view::npos ? bytes.size() > max_head : true);
        break;
    }
}

std::string_view next_field(std::string_view& rest)
{
    const auto nul = rest.find('\0');
    const auto field = rest.substr(0, nul);
    rest = nul == std::string_view::npos ? std::string_view{} : rest.substr(nul + 1);
    return field;
}

void check_request(std::string_view text, std::uint16_t port)
{
    std::string_view rest = text;
    const auto host = next_field(rest);
    const auto user = next_field(rest);
    const auto password = rest;
    const std::string req = net::connect_request(host, port, user, password);
    const std::string target = net::format_host_port(host, port);
    const std::string head = "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n";
    FUZZ_REQUIRE(req.compare(0, head.size(), head) == 0);
    FUZZ_REQUIRE(req.size() >= head.size() + 2 && req.compare(req.size() - 2, 2, "\r\n") == 0);
    if (user.empty()) {
        FUZZ_REQUIRE(req.size() == head.size() + 2);
        return;
    }
    const std::string auth = "Proxy-Authorization: Basic ";
    FUZZ_REQUIRE(req.compare(head.size(), auth.size(), auth) == 0);
    const std::string b64 = req.substr(head.size() + auth.size(), req.size() - head.size() - auth.size() - 4);
    FUZZ_REQUIRE(b64.size() % 4 == 0);
    std::string decoded(b64.size() / 4 * 3 + 1, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(decoded.data()),
                                  reinterpret_cast<const unsigned char*>(b64.data()),
                                  static_cast<int>(b64.size()));
    FUZZ_REQUIRE(n >= 0);
    // EVP_DecodeBlock keeps the bytes the padding stands for: drop them.
    std::size_t len = static_cast<std::size_t>(n);
    if (!b64.empty() && b64.back() == '=') --len;
    if (b64.size() >= 2 && b64[b64.size() - 2] == '=') --len;
    decoded.resize(len);
    FUZZ_REQUIRE(decoded == std::string{user} + ":" + std::string{password});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    fuzz::reader in{data, size};
    const auto sel = in.u8();
    const std::size_t max_head = sel & 1 ? 8192 : sel;
    const auto text = in.rest_text();
    check_response(text, max_head);
    check_request(text, static_cast<std::uint16_t>(sel * 257));
    return 0;
}
