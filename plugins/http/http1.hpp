// HTTP/1.x without I/O: request and response heads, body framing, routing by
// Host, and the head the gateway forwards. Everything here works on bytes the
// network sent and never throws on them; the plugin (http.cpp) does the I/O.
//
// What is refused, and why (RFC 9112 §6.3, §11.2 "request smuggling"): a
// message whose framing two parsers could read differently never goes on:
// Content-Length together with Transfer-Encoding, differing Content-Length
// values, a Transfer-Encoding other than a final "chunked", obs-fold,
// whitespace before the colon, invalid tokens, bare CR, bad chunk sizes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace muxgate::http {

// Limits on what one head may hold (configurable in [plugins.http]).
struct head_limits {
    std::size_t max_head = 32 * 1024;  // bytes of request line + headers (431 beyond)
    std::size_t max_headers = 100;     // header fields per head (431 beyond)
};

// Longest chunk-size line (size, extensions) and trailer section we accept.
inline constexpr std::size_t max_chunk_line = 4096;
inline constexpr std::size_t max_trailers = 16 * 1024;

struct header {
    std::string name;   // as sent
    std::string value;  // trimmed of surrounding whitespace
};

enum class body_kind {
    none,     // no body (GET without framing, 204, 304, HEAD responses)
    length,   // Content-Length bytes
    chunked,  // Transfer-Encoding: chunked
    close     // responses only: until the connection closes
};

struct message_head {
    // request
    std::string method;
    std::string target;
    // response
    int status = 0;
    std::string reason;
    // both
    int minor = 1;  // HTTP/1.<minor>
    std::vector<header> headers;
    body_kind body = body_kind::none;
    std::uint64_t content_length = 0;
    bool keep_alive = true;        // the connection may carry another message
    bool upgrade = false;          // Connection: upgrade with an Upgrade header
    bool expect_continue = false;  // Expect: 100-continue
    std::size_t head_size = 0;     // bytes of the head, blank line included

    // The first value of a header (case-insensitive name), if any.
    std::optional<std::string_view> get(std::string_view name) const;
    std::size_t count(std::string_view name) const;
};

enum class parse_state { incomplete, done, error };

struct parse_result {
    parse_state state = parse_state::incomplete;
    int status = 0;     // the answer for errors: 400, 431, 501, 505 (responses: 502)
    std::string error;  // what was wrong, for the log
};

// Parses a request head at the start of `bytes`. On done, out.head_size is
// how many bytes it took. Leading empty lines are skipped (RFC 9112 §2.2).
parse_result parse_request(std::string_view bytes, const head_limits& lim, message_head& out);

// Parses a response head; `request_method` decides HEAD/CONNECT framing.
parse_result parse_response(std::string_view bytes, const head_limits& lim,
                            std::string_view request_method, message_head& out);

// Counts body bytes as they pass, without copying them, and says where the
// message ends. Chunked bodies pass through unchanged (sizes, extensions and
// trailers included); only their syntax is checked.
class body_framer {
public:
    void start(body_kind kind, std::uint64_t length = 0);
    // Consumes bytes of the body from the front of `bytes`; returns how many
    // belong to this message (the rest is the next message). Check failed()
    // after each call.
    std::size_t feed(std::string_view bytes);
    // The remote closed: ends a `close` body; any other unfinished body fails.
    void finish_at_eof();
    bool done() const noexcept { return state_ == st::done; }
    bool failed() const noexcept { return state_ == st::failed; }
    const std::string& error() const noexcept { return error_; }
    std::uint64_t body_bytes() const noexcept { return seen_; }  // whole framed body so far

private:
    enum class st { size, size_ws, size_ext, size_lf, data, data_cr, data_lf, trailer, trailer_lf, length,
                    close, done, failed };
    void fail(std::string why);
    st state_ = st::done;
    std::uint64_t left_ = 0;
    std::uint64_t seen_ = 0;
    std::size_t line_ = 0;       // bytes of the current size line / trailer section
    std::size_t trailer_line_ = 0;
    int digits_ = 0;
    std::string error_;
};

// Host names: lower case, without port or trailing dot. Empty if invalid.
std::string normalize_host(std::string_view host_header);

// Does `name` match `pattern` ("*.example.com" matches exactly one more label;
// "*" alone matches everything; otherwise equality)? Both normalized.
bool host_matches(std::string_view pattern, std::string_view name);

// Which tunnel serves which host name.
class router {
public:
    struct target {
        std::string agent;
        std::string tunnel;
        bool online = true;
    };
    // Claims `host` for agent/tunnel. Fails (false) when another online
    // tunnel holds it; an offline holder is replaced.
    bool add(const std::string& host, const std::string& agent, const std::string& tunnel);
    // The tunnel is gone: its names stay, marked offline (so clients get
    // "agent offline" rather than "unknown host"), until claimed again or
    // evicted (at most `max_offline` offline names, oldest first).
    void set_offline(const std::string& agent, const std::string& tunnel);
    // Drops every name of the tunnel.
    void remove(const std::string& agent, const std::string& tunnel);
    std::optional<target> find(std::string_view host) const;
    std::vector<std::string> names_of(const std::string& agent, const std::string& tunnel) const;
    std::size_t size() const noexcept { return entries_.size(); }
    std::size_t max_offline = 10000;

private:
    struct entry {
        std::string host;
        target t;
        std::uint64_t offline_since = 0;
    };
    std::vector<entry> entries_;  // few hundred at most: linear is fine and predictable
    std::uint64_t clock_ = 0;
};

// What the gateway adds to a request it forwards.
struct forward_info {
    std::string client_ip;  // "203.0.113.7" or "2001:db8::1"
    bool tls = false;
    bool trust_incoming = false;  // keep the client's X-Forwarded-* / Forwarded and append
};

// The head to send to the agent: the request line and headers as received,
// with X-Forwarded-For/-Proto/-Host and Forwarded set (incoming ones removed
// unless trusted, appended to if trusted), and Proxy-Connection dropped.
std::string forward_request_head(const message_head& h, const forward_info& fi,
                                 std::string_view host);

// The same head with Host replaced (agent-side Host rewrite).
std::string rewrite_host(const message_head& h, std::string_view new_host);

// A short complete response: status line, text/html body, Connection: close.
std::string error_response(int status, std::string_view title, std::string_view detail,
                           std::string_view extra_headers = {});
std::string_view reason_phrase(int status);

// Basic auth: is `authorization` ("Basic base64(user:password)") one of
// `credentials` (each "user:sha256hex-of-password")? Constant time per entry.
bool basic_auth_ok(std::string_view authorization, const std::vector<std::string>& credentials);
std::string sha256_hex(std::string_view data);

// Source-IP allow lists: "10.0.0.0/8", "192.0.2.7", "2001:db8::/32".
struct cidr {
    bool v6 = false;
    std::uint8_t addr[16] = {};
    int bits = 0;
};
std::optional<cidr> parse_cidr(std::string_view text);
bool ip_allowed(std::string_view ip, const std::vector<cidr>& allow);

// "ip:port" / "[v6]:port" -> "ip".
std::string ip_of(std::string_view peer);

}  // namespace muxgate::http
