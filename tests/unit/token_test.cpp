// common/token: the token format, its hash, the config form of the hash,
// constant-time comparison and reading a token file.
#include "common/token.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

using namespace muxgate;

namespace {

constexpr std::string_view base64url =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// Decodes the 43 base64url characters after "mgt_" back into 32 bytes.
token::digest decode(std::string_view t)
{
    token::digest out{};
    unsigned acc = 0, bits = 0;
    std::size_t n = 0;
    for (char c : t.substr(4)) {
        acc = (acc << 6) | static_cast<unsigned>(base64url.find(c));
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n < out.size()) out[n++] = static_cast<unsigned char>(acc >> bits);
        }
    }
    return out;
}

// Unpadded RFC 4648 base64url of 32 bytes, with the token prefix.
std::string encode(const token::digest& d)
{
    std::string out = "mgt_";
    for (std::size_t i = 0; i < d.size(); i += 3) {
        const unsigned b0 = d[i], b1 = i + 1 < d.size() ? d[i + 1] : 0, b2 = i + 2 < d.size() ? d[i + 2] : 0;
        const unsigned v = (b0 << 16) | (b1 << 8) | b2;
        const std::size_t chars = i + 2 < d.size() ? 4 : i + 1 < d.size() ? 3 : 2;
        for (std::size_t k = 0; k < chars; ++k) out += base64url[(v >> (18 - 6 * k)) & 0x3f];
    }
    return out;
}

std::filesystem::path temp_file(const std::string& name, const std::string& content)
{
    const auto p = std::filesystem::path{MUXGATE_TEST_TMPDIR} / name;
    std::ofstream{p, std::ios::binary} << content;
    return p;
}

}  // namespace

TEST_SUITE("common.token")
{
TEST_CASE("generate: mgt_ and 43 base64url characters, 256 bits, never the same twice")
{
    std::set<std::string> seen;
    for (int i = 0; i < 200; ++i) {
        const auto t = token::generate();
        REQUIRE(t.size() == 47);
        CHECK(t.rfind("mgt_", 0) == 0);
        CHECK(std::all_of(t.begin() + 4, t.end(),
                          [](char c) { return base64url.find(c) != std::string_view::npos; }));
        // 43 characters hold 258 bits: the last character carries the last 4
        // data bits and 2 zero bits (as in unpadded RFC 4648 base64url).
        CHECK(base64url.find(t.back()) % 4 == 0);
        seen.insert(t);
    }
    CHECK(seen.size() == 200);

    // Decoding and re-encoding with an independent base64url gives the token back.
    const auto t = token::generate();
    CHECK(encode(decode(t)) == t);
}

TEST_CASE("hash is SHA-256 and format_hash is its config form")
{
    // FIPS 180-2 test vector.
    CHECK(token::format_hash(token::hash("abc")) ==
          "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(token::format_hash(token::hash("")) ==
          "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("parse_hash round-trips format_hash")
{
    for (const std::string t : {"", "abc", "mgt_xyz"}) {
        const auto d = token::hash(t);
        const auto p = token::parse_hash(token::format_hash(d));
        REQUIRE(p);
        CHECK(*p == d);
        CHECK(token::equal(*p, d));
    }
    const auto t = token::generate();
    CHECK(token::parse_hash(token::format_hash(token::hash(t))) == token::hash(t));
}

TEST_CASE("parse_hash: upper-case hex is read too")
{
    const auto upper = token::parse_hash("sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD");
    REQUIRE(upper);
    CHECK(*upper == token::hash("abc"));
}

TEST_CASE("parse_hash refuses everything else")
{
    const std::string hex(64, 'a');
    for (const std::string& bad : {std::string{}, std::string{"sha256:"}, hex,
                                  std::string{"sha256:"} + hex.substr(1),
                                  std::string{"sha256:"} + hex + "a",
                                  std::string{"SHA256:"} + hex,
                                  std::string{"sha256 "} + hex,
                                  std::string{"sha256:"} + hex.substr(1) + "g",
                                  std::string{"sha256:"} + hex.substr(1) + " ",
                                  std::string{"sha256:"} + hex.substr(2) + "-1",
                                  std::string{"sha512:"} + hex}) {
        CAPTURE(bad);
        CHECK_FALSE(token::parse_hash(bad));
    }
}

TEST_CASE("equal compares every byte")
{
    const auto a = token::hash("one");
    CHECK(token::equal(a, a));
    for (std::size_t i : {std::size_t{0}, std::size_t{15}, std::size_t{31}}) {
        auto b = a;
        b[i] ^= 0x01;
        CHECK_FALSE(token::equal(a, b));
    }
    CHECK_FALSE(token::equal(a, token::hash("two")));
}

TEST_CASE("read_file: the first line, trimmed")
{
    std::string err;
    CHECK(token::read_file(temp_file("t1", "mgt_abc\n").string(), err) == "mgt_abc");
    CHECK(token::read_file(temp_file("t2", "  \tmgt_abc \r\nsecond line\n").string(), err) == "mgt_abc");
    CHECK(token::read_file(temp_file("t3", "mgt_abc").string(), err) == "mgt_abc");
    CHECK(token::read_file(temp_file("t4", "mgt_a b\n").string(), err) == "mgt_a b");

    const auto empty = temp_file("t5", "").string();
    CHECK_FALSE(token::read_file(empty, err));
    CHECK(err == "token file \"" + empty + "\": empty");
    const auto blank = temp_file("t6", " \t\r\nmgt_on_line_2\n").string();
    err.clear();
    CHECK_FALSE(token::read_file(blank, err));
    CHECK(err == "token file \"" + blank + "\": empty");
    err.clear();
    CHECK_FALSE(token::read_file("/nonexistent/token", err));
    CHECK(err == "token file \"/nonexistent/token\": cannot open");
}
}
