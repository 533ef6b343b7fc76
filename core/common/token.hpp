// Agent tokens: 256 random bits, shown once; the gateway keeps only a hash.
//
// A token has 256 bits of entropy, so a single SHA-256 is enough: there is
// nothing to brute-force that a slow password hash would protect. Hashes are
// compared in constant time.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace muxgate::token {

using digest = std::array<unsigned char, 32>;

// "mgt_" + 43 characters of base64url (32 random bytes).
std::string generate();

digest hash(std::string_view token);

// The config form: "sha256:" + 64 lower-case hex digits.
std::string format_hash(const digest& d);
std::optional<digest> parse_hash(std::string_view text);

// Constant-time equality of two digests.
bool equal(const digest& a, const digest& b);

// Reads a token from a file (first line, surrounding whitespace trimmed).
// Returns nullopt with `error` set when unreadable or empty.
std::optional<std::string> read_file(const std::string& path, std::string& error);

}  // namespace muxgate::token
