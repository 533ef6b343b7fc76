// The SSH plugin's own parsers, sans-I/O: everything it reads from the
// network or from files without libssh's help. No sockets, no libssh, no
// exceptions; each function takes bytes and returns a value that says what
// was found or why not. Unit-tested in tests/ssh/ssh_text_test.cpp and fuzzed
// by tests/fuzz/fuzz_ssh_text.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace muxgate::ssh {

// RFC 4253 4.2: the identification line is at most 255 bytes with its CR LF.
inline constexpr std::size_t banner_line_max = 255;
// Lines a server may send before its identification line (RFC 4253 4.2
// allows them; OpenSSH accepts up to 1024 lines, we look at a few KiB only,
// since all we do is log the version).
inline constexpr std::size_t banner_preamble_max = 8192;

// Peeks at the first bytes of one direction of an SSH connection and finds
// the version banner "SSH-protoversion-softwareversion[ SP comments]".
// Feed bytes as they come; the parser keeps nothing but the current line.
class banner_parser {
public:
    enum class state { need_more, done, invalid };

    // allow_preamble: a server may send other lines before its banner; a
    // client may not (RFC 4253 4.2).
    explicit banner_parser(bool allow_preamble) noexcept : allow_preamble_(allow_preamble) {}

    // Consumes bytes until the banner is complete or found invalid; returns
    // how many bytes of `data` it looked at (the rest belongs to the binary
    // packet protocol and is none of its business).
    std::size_t feed(std::string_view data);

    state status() const noexcept { return state_; }
    // done: the identification line without CR LF, and its parts.
    const std::string& line() const noexcept { return line_; }
    std::string_view proto_version() const noexcept { return proto_; }
    std::string_view software_version() const noexcept { return software_; }
    std::string_view comments() const noexcept { return comments_; }
    // invalid: why, for the log.
    const std::string& error() const noexcept { return error_; }

private:
    void finish_line();
    void fail(std::string why);

    bool allow_preamble_;
    state state_ = state::need_more;
    std::string line_;
    std::size_t total_ = 0;
    std::string proto_, software_, comments_;
    std::string error_;
};

// Printable text for a log line: control bytes and non-ASCII become \xNN.
std::string printable(std::string_view s, std::size_t max = 300);

// Shell-style glob with `*` (any run, also empty) and `?` (one byte); no
// classes, no escapes. Iterative: linear in |text| x |pattern| at worst.
bool glob_match(std::string_view pattern, std::string_view text) noexcept;

// A name as the gateway's directory knows it: tunnels and agents follow the
// gateway's naming rule 1-64 of [A-Za-z0-9._-].
bool valid_name(std::string_view s) noexcept;

// One registered SSH tunnel.
struct tunnel_ref {
    std::string agent;
    std::string tunnel;
};

// How a jump target name ("office-pc", or "agent.tunnel") resolved.
struct resolution {
    enum class kind { found, not_found, ambiguous, invalid } what = kind::not_found;
    tunnel_ref ref;        // found
    std::string detail;    // ambiguous: the agents that have it; invalid: why
};

// Resolves `name` (the host of a direct-tcpip request) against the
// registered tunnels. A plain tunnel name matches when exactly one agent has
// a tunnel of that name; "agent.tunnel" always names one. Never DNS.
resolution resolve_target(std::string_view name, const std::vector<tunnel_ref>& tunnels);

// One line of an authorized_keys file (OpenSSH format, sshd(8)
// "AUTHORIZED_KEYS FILE FORMAT"): [options] keytype base64 [comment].
struct key_line {
    enum class kind { key, blank, invalid } what = kind::blank;
    std::string options;   // raw option text, "" if none
    std::string type;      // e.g. "ssh-ed25519"
    std::string base64;
    std::string comment;
    std::string error;     // invalid: why
};

// Longest line read from a key file; OpenSSH's own limit is 8 KiB (a 16384-bit
// RSA key fits).
inline constexpr std::size_t key_line_max = 16384;

key_line parse_key_line(std::string_view line);

// True for the key type names OpenSSH writes in authorized_keys.
bool known_key_type(std::string_view type) noexcept;

}  // namespace muxgate::ssh
