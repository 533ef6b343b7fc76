#include "common/token.hpp"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <fstream>
#include <stdexcept>

namespace muxgate::token {

std::string generate()
{
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1) throw std::runtime_error("RAND_bytes failed");
    static constexpr char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out = "mgt_";
    unsigned bits = 0, acc = 0;
    for (unsigned char b : raw) {
        acc = (acc << 8) | b;
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out += alphabet[(acc >> bits) & 0x3f];
        }
    }
    if (bits) out += alphabet[(acc << (6 - bits)) & 0x3f];
    return out;
}

digest hash(std::string_view token)
{
    digest d;
    SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), d.data());
    return d;
}

std::string format_hash(const digest& d)
{
    std::string out = "sha256:";
    for (unsigned char c : d) out += fmt::format("{:02x}", c);
    return out;
}

std::optional<digest> parse_hash(std::string_view text)
{
    constexpr std::string_view prefix = "sha256:";
    if (text.substr(0, prefix.size()) != prefix) return std::nullopt;
    text.remove_prefix(prefix.size());
    if (text.size() != 64) return std::nullopt;
    digest d;
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    for (std::size_t i = 0; i < 32; ++i) {
        const int hi = nibble(text[2 * i]), lo = nibble(text[2 * i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        d[i] = static_cast<unsigned char>(hi << 4 | lo);
    }
    return d;
}

bool equal(const digest& a, const digest& b)
{
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::optional<std::string> read_file(const std::string& path, std::string& error)
{
    std::ifstream in{path};
    if (!in) {
        error = fmt::format("token file \"{}\": cannot open", path);
        return std::nullopt;
    }
    std::string line;
    std::getline(in, line);
    const auto b = line.find_first_not_of(" \t\r\n");
    const auto e = line.find_last_not_of(" \t\r\n");
    if (b == std::string::npos) {
        error = fmt::format("token file \"{}\": empty", path);
        return std::nullopt;
    }
    return line.substr(b, e - b + 1);
}

}  // namespace muxgate::token
