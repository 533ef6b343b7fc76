#include "http1.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cstring>

namespace muxgate::http {

namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b)
{
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (lower(a[i]) != lower(b[i])) return false;
    return true;
}

// tchar of RFC 9110 §5.6.2.
bool is_tchar(unsigned char c)
{
    if (c >= '0' && c <= '9') return true;
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
    return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != 0;
}

bool is_token(std::string_view s)
{
    if (s.empty()) return false;
    for (unsigned char c : s)
        if (!is_tchar(c)) return false;
    return true;
}

// field-value: VCHAR, obs-text, SP, HTAB; no CR, LF or NUL.
bool is_field_value(std::string_view s)
{
    for (unsigned char c : s)
        if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
    return true;
}

std::string_view trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// Does a comma-separated list header contain `token` (case-insensitive)?
bool list_has(std::string_view list, std::string_view token)
{
    while (!list.empty()) {
        const auto comma = list.find(',');
        const auto item = trim(list.substr(0, comma));
        if (iequals(item, token)) return true;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return false;
}

parse_result fail(int status, std::string why)
{
    parse_result r;
    r.state = parse_state::error;
    r.status = status;
    r.error = std::move(why);
    return r;
}

// Splits the head into lines; shared by requests and responses. On done,
// `first` is the start line and out.headers the fields.
parse_result split_head(std::string_view bytes, const head_limits& lim, bool request,
                        std::string_view& first, message_head& out)
{
    // Skip leading empty lines (requests only; at most a few).
    std::size_t pos = 0;
    if (request) {
        for (int i = 0; i < 4; ++i) {
            if (bytes.substr(pos, 2) == "\r\n") pos += 2;
            else break;
        }
    }
    const auto end = bytes.find("\r\n\r\n", pos);
    if (end == std::string_view::npos) {
        // A bare LF line ending would never match: refuse it early.
        if (bytes.size() > pos && bytes.substr(pos).find("\n\n") != std::string_view::npos)
            return fail(400, "line ends with a bare LF");
        if (bytes.size() >= lim.max_head)
            return fail(request ? 431 : 502,
                        "head larger than max_head (" + std::to_string(lim.max_head) + " bytes)");
        return {};
    }
    if (end + 4 > lim.max_head)
        return fail(request ? 431 : 502,
                    "head larger than max_head (" + std::to_string(lim.max_head) + " bytes)");
    out.head_size = end + 4;
    std::string_view head = bytes.substr(pos, end + 2 - pos);  // each line ends with CRLF
    bool first_line = true;
    while (!head.empty()) {
        const auto eol = head.find("\r\n");
        std::string_view line = head.substr(0, eol);
        head.remove_prefix(eol + 2);
        if (line.find('\r') != std::string_view::npos || line.find('\n') != std::string_view::npos)
            return fail(400, "bare CR or LF in the head");
        if (line.find('\0') != std::string_view::npos) return fail(400, "NUL in the head");
        if (first_line) {
            first = line;
            first_line = false;
            continue;
        }
        if (line.front() == ' ' || line.front() == '\t')
            return fail(400, "obs-fold (a header line starting with whitespace)");
        const auto colon = line.find(':');
        if (colon == std::string_view::npos) return fail(400, "header line without a colon");
        const auto name = line.substr(0, colon);
        if (!is_token(name))
            return fail(400, "invalid header name (whitespace before the colon or bad token)");
        const auto value = trim(line.substr(colon + 1));
        if (!is_field_value(value)) return fail(400, "invalid character in a header value");
        if (out.headers.size() >= lim.max_headers)
            return fail(request ? 431 : 502,
                        "more than max_headers (" + std::to_string(lim.max_headers) + ") headers");
        out.headers.push_back(header{std::string{name}, std::string{value}});
    }
    parse_result r;
    r.state = parse_state::done;
    return r;
}

bool parse_version(std::string_view v, int& minor)
{
    if (v.size() != 8 || v.substr(0, 7) != "HTTP/1.") return false;
    if (v[7] != '0' && v[7] != '1') return false;
    minor = v[7] - '0';
    return true;
}

// Content-Length / Transfer-Encoding, shared by both directions.
parse_result framing(message_head& out, bool request)
{
    std::optional<std::uint64_t> length;
    bool te = false;
    bool chunked = false;
    for (const auto& h : out.headers) {
        if (iequals(h.name, "content-length")) {
            // "5, 5" (a list of equal values) is tolerated by RFC 9110; we do
            // not: one plain decimal number, equal in every field.
            const std::string_view v = h.value;
            if (v.empty() || v.size() > 18 ||
                !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
                return fail(400, "invalid Content-Length");
            std::uint64_t n = 0;
            for (char c : v) n = n * 10 + static_cast<std::uint64_t>(c - '0');
            if (length && *length != n) return fail(400, "differing Content-Length values");
            length = n;
        } else if (iequals(h.name, "transfer-encoding")) {
            te = true;
            // Only "chunked", once, as the final coding: anything else we
            // cannot frame (request: 501; we do not decode gzip, etc.).
            std::string_view list = h.value;
            while (!list.empty()) {
                const auto comma = list.find(',');
                const auto item = trim(list.substr(0, comma));
                if (!item.empty()) {
                    if (chunked) return fail(400, "Transfer-Encoding with a coding after chunked");
                    if (iequals(item, "chunked")) chunked = true;
                    else if (request) return fail(501, "unsupported Transfer-Encoding");
                }
                if (comma == std::string_view::npos) break;
                list.remove_prefix(comma + 1);
            }
        }
    }
    if (te && length) return fail(400, "both Content-Length and Transfer-Encoding");
    if (te && out.minor == 0 && request) return fail(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (te) {
        if (chunked) {
            out.body = body_kind::chunked;
        } else if (request) {
            return fail(400, "Transfer-Encoding without chunked");
        } else {
            out.body = body_kind::close;
        }
    } else if (length) {
        out.body = *length ? body_kind::length : body_kind::none;
        out.content_length = *length;
    } else {
        out.body = request ? body_kind::none : body_kind::close;
    }
    parse_result r;
    r.state = parse_state::done;
    return r;
}

void connection_flags(message_head& out)
{
    bool close = false, keep = false, upgrade = false;
    for (const auto& h : out.headers)
        if (iequals(h.name, "connection")) {
            close |= list_has(h.value, "close");
            keep |= list_has(h.value, "keep-alive");
            upgrade |= list_has(h.value, "upgrade");
        }
    out.keep_alive = out.minor == 1 ? !close : keep && !close;
    out.upgrade = upgrade && out.count("upgrade") > 0;
}

}  // namespace

std::optional<std::string_view> message_head::get(std::string_view name) const
{
    for (const auto& h : headers)
        if (iequals(h.name, name)) return std::string_view{h.value};
    return std::nullopt;
}

std::size_t message_head::count(std::string_view name) const
{
    std::size_t n = 0;
    for (const auto& h : headers)
        if (iequals(h.name, name)) ++n;
    return n;
}

parse_result parse_request(std::string_view bytes, const head_limits& lim, message_head& out)
{
    out = message_head{};
    std::string_view first;
    auto r = split_head(bytes, lim, true, first, out);
    if (r.state != parse_state::done) return r;
    // method SP request-target SP HTTP-version
    const auto sp1 = first.find(' ');
    const auto sp2 = sp1 == std::string_view::npos ? sp1 : first.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || first.find(' ', sp2 + 1) != std::string_view::npos)
        return fail(400, "malformed request line");
    const auto method = first.substr(0, sp1);
    const auto target = first.substr(sp1 + 1, sp2 - sp1 - 1);
    const auto version = first.substr(sp2 + 1);
    if (!is_token(method)) return fail(400, "invalid method");
    if (target.empty()) return fail(400, "empty request target");
    for (unsigned char c : target)
        if (c <= 0x20 || c >= 0x7f) return fail(400, "invalid character in the request target");
    if (!parse_version(version, out.minor)) {
        if (version.substr(0, 5) == "HTTP/") return fail(505, "unsupported HTTP version");
        return fail(400, "malformed HTTP version");
    }
    out.method = std::string{method};
    out.target = std::string{target};
    // One Host, required in HTTP/1.1 (RFC 9112 §3.2).
    const auto hosts = out.count("host");
    if (hosts > 1) return fail(400, "more than one Host header");
    if (hosts == 0 && out.minor == 1) return fail(400, "HTTP/1.1 request without Host");
    if (auto rr = framing(out, true); rr.state != parse_state::done) return rr;
    connection_flags(out);
    if (auto e = out.get("expect")) out.expect_continue = iequals(trim(*e), "100-continue");
    r.state = parse_state::done;
    return r;
}

parse_result parse_response(std::string_view bytes, const head_limits& lim,
                            std::string_view request_method, message_head& out)
{
    out = message_head{};
    std::string_view first;
    auto r = split_head(bytes, lim, false, first, out);
    if (r.state == parse_state::error) r.status = 502;
    if (r.state != parse_state::done) return r;
    // HTTP-version SP status-code SP [reason-phrase]
    if (first.size() < 12 || first[8] != ' ' || (first.size() > 12 && first[12] != ' '))
        return fail(502, "malformed status line");
    if (!parse_version(first.substr(0, 8), out.minor)) return fail(502, "unsupported HTTP version");
    const auto code = first.substr(9, 3);
    if (!std::all_of(code.begin(), code.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        code[0] == '0')
        return fail(502, "invalid status code");
    out.status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
    out.reason = first.size() > 13 ? std::string{first.substr(13)} : std::string{};
    if (auto rr = framing(out, false); rr.state != parse_state::done) {
        rr.status = 502;
        return rr;
    }
    connection_flags(out);
    // No body, whatever the headers say (RFC 9112 §6.3 items 1 and 2).
    if (out.status < 200 || out.status == 204 || out.status == 304 || request_method == "HEAD" ||
        (request_method == "CONNECT" && out.status < 300)) {
        out.body = body_kind::none;
        out.content_length = 0;
    }
    if (out.body == body_kind::close) out.keep_alive = false;
    r.state = parse_state::done;
    return r;
}

// ------------------------------------------------------------------ framer

void body_framer::start(body_kind kind, std::uint64_t length)
{
    error_.clear();
    seen_ = 0;
    line_ = 0;
    digits_ = 0;
    switch (kind) {
    case body_kind::none: state_ = st::done; break;
    case body_kind::length:
        left_ = length;
        state_ = length ? st::length : st::done;
        break;
    case body_kind::chunked:
        left_ = 0;
        state_ = st::size;
        break;
    case body_kind::close: state_ = st::close; break;
    }
}

void body_framer::fail(std::string why)
{
    state_ = st::failed;
    error_ = std::move(why);
}

void body_framer::finish_at_eof()
{
    if (state_ == st::close) state_ = st::done;
    else if (state_ != st::done && state_ != st::failed) fail("connection closed inside the body");
}

std::size_t body_framer::feed(std::string_view bytes)
{
    std::size_t i = 0;
    const std::size_t n = bytes.size();
    while (i < n) {
        switch (state_) {
        case st::done:
        case st::failed: return i;
        case st::close:
            seen_ += n - i;
            return n;
        case st::length: {
            const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(left_, n - i));
            left_ -= take;
            i += take;
            seen_ += take;
            if (left_ == 0) state_ = st::done;
            break;
        }
        case st::size: {
            const char c = bytes[i];
            int v = -1;
            if (c >= '0' && c <= '9') v = c - '0';
            else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
            else if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
            if (v >= 0) {
                if (digits_ >= 15) {  // 2^60: far beyond anything real, and no overflow
                    fail("chunk size too large");
                    return i;
                }
                left_ = left_ * 16 + static_cast<std::uint64_t>(v);
                ++digits_;
            } else if (digits_ == 0) {
                fail("chunk size is not a hex number");
                return i;
            } else if (c == ';') {
                state_ = st::size_ext;
            } else if (c == ' ' || c == '\t') {
                state_ = st::size_ws;  // BWS before an extension
            } else if (c == '\r') {
                state_ = st::size_lf;
            } else {
                fail("invalid character after the chunk size");
                return i;
            }
            ++i;
            ++seen_;
            if (++line_ > max_chunk_line) {
                fail("chunk size line too long");
                return i;
            }
            break;
        }
        case st::size_ws: {
            const char c = bytes[i];
            if (c == ';') state_ = st::size_ext;
            else if (c == '\r') state_ = st::size_lf;
            else if (c != ' ' && c != '\t') {
                fail("invalid character after the chunk size");
                return i;
            }
            ++i;
            ++seen_;
            if (++line_ > max_chunk_line) {
                fail("chunk size line too long");
                return i;
            }
            break;
        }
        case st::size_ext: {
            const char c = bytes[i];
            if (c == '\r') state_ = st::size_lf;
            else if (c == '\n' || c == '\0') {
                fail("bare LF or NUL in a chunk extension");
                return i;
            }
            ++i;
            ++seen_;
            if (++line_ > max_chunk_line) {
                fail("chunk size line too long");
                return i;
            }
            break;
        }
        case st::size_lf:
            if (bytes[i] != '\n') {
                fail("chunk size line without CRLF");
                return i;
            }
            ++i;
            ++seen_;
            line_ = 0;
            digits_ = 0;
            if (left_ == 0) {
                state_ = st::trailer;
                trailer_line_ = 0;
            } else {
                state_ = st::data;
            }
            break;
        case st::data: {
            const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(left_, n - i));
            left_ -= take;
            i += take;
            seen_ += take;
            if (left_ == 0) state_ = st::data_cr;
            break;
        }
        case st::data_cr:
            if (bytes[i] != '\r') {
                fail("chunk data longer than its size");
                return i;
            }
            ++i;
            ++seen_;
            state_ = st::data_lf;
            break;
        case st::data_lf:
            if (bytes[i] != '\n') {
                fail("chunk data not followed by CRLF");
                return i;
            }
            ++i;
            ++seen_;
            state_ = st::size;
            break;
        case st::trailer: {
            // Trailer fields until an empty line. Fields are passed on as
            // they are; only the size and line endings are checked.
            const char c = bytes[i];
            ++i;
            ++seen_;
            if (++line_ > max_trailers) {
                fail("trailer section too large");
                return i;
            }
            if (c == '\r') {
                state_ = st::trailer_lf;
            } else if (c == '\n' || c == '\0') {
                fail("bare LF or NUL in the trailers");
                return i;
            } else {
                ++trailer_line_;
            }
            break;
        }
        case st::trailer_lf:
            if (bytes[i] != '\n') {
                fail("trailer line without CRLF");
                return i;
            }
            ++i;
            ++seen_;
            if (trailer_line_ == 0) {
                state_ = st::done;
            } else {
                trailer_line_ = 0;
                state_ = st::trailer;
            }
            break;
        }
    }
    return i;
}

// ------------------------------------------------------------------ routing

std::string normalize_host(std::string_view h)
{
    h = trim(h);
    std::string out;
    if (h.empty()) return out;
    if (h.front() == '[') {
        const auto close = h.find(']');
        if (close == std::string_view::npos) return {};
        const auto rest = h.substr(close + 1);
        if (!rest.empty() && rest.front() != ':') return {};
        for (char c : h.substr(0, close + 1)) {
            if (!(std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.' || c == '[' ||
                  c == ']'))
                return {};
            out.push_back(lower(c));
        }
        return out;
    }
    const auto colon = h.find(':');
    auto name = h.substr(0, colon);
    if (colon != std::string_view::npos) {
        const auto port = h.substr(colon + 1);
        if (port.size() > 5 ||
            !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
            return {};
    }
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);
    if (name.empty() || name.size() > 253) return {};
    // No empty labels: ".a", "a..b", "a.." are not host names.
    if (name.front() == '.' || name.back() == '.' || name.find("..") != std::string_view::npos)
        return {};
    for (char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                        c == '-' || c == '.' || c == '_';
        if (!ok) return {};
        out.push_back(lower(c));
    }
    return out;
}

bool host_matches(std::string_view pattern, std::string_view name)
{
    if (pattern == "*") return true;
    if (pattern.substr(0, 2) == "*.") {
        const auto suffix = pattern.substr(1);  // ".example.com"
        if (name.size() <= suffix.size()) return false;
        if (name.substr(name.size() - suffix.size()) != suffix) return false;
        const auto label = name.substr(0, name.size() - suffix.size());
        return !label.empty() && label.find('.') == std::string_view::npos;
    }
    return pattern == name;
}

bool router::add(const std::string& host, const std::string& agent, const std::string& tunnel)
{
    for (auto& e : entries_) {
        if (e.host != host) continue;
        if (e.t.online && (e.t.agent != agent || e.t.tunnel != tunnel)) return false;
        e.t = target{agent, tunnel, true};
        e.offline_since = 0;
        return true;
    }
    entries_.push_back(entry{host, target{agent, tunnel, true}, 0});
    return true;
}

void router::set_offline(const std::string& agent, const std::string& tunnel)
{
    std::size_t offline = 0;
    for (auto& e : entries_) {
        if (e.t.agent == agent && e.t.tunnel == tunnel && e.t.online) {
            e.t.online = false;
            e.offline_since = ++clock_;
        }
        if (!e.t.online) ++offline;
    }
    while (offline > max_offline) {
        auto oldest = entries_.end();
        for (auto it = entries_.begin(); it != entries_.end(); ++it)
            if (!it->t.online && (oldest == entries_.end() || it->offline_since < oldest->offline_since))
                oldest = it;
        if (oldest == entries_.end()) break;
        entries_.erase(oldest);
        --offline;
    }
}

void router::remove(const std::string& agent, const std::string& tunnel)
{
    std::erase_if(entries_, [&](const entry& e) { return e.t.agent == agent && e.t.tunnel == tunnel; });
}

std::optional<router::target> router::find(std::string_view host) const
{
    for (const auto& e : entries_)
        if (e.host == host) return e.t;
    return std::nullopt;
}

std::vector<std::string> router::names_of(const std::string& agent, const std::string& tunnel) const
{
    std::vector<std::string> out;
    for (const auto& e : entries_)
        if (e.t.agent == agent && e.t.tunnel == tunnel) out.push_back(e.host);
    return out;
}

// ------------------------------------------------------------- rewriting

namespace {

bool is_forwarding_header(std::string_view name)
{
    return iequals(name, "x-forwarded-for") || iequals(name, "x-forwarded-proto") ||
           iequals(name, "x-forwarded-host") || iequals(name, "forwarded");
}

void start_line(std::string& out, const message_head& h)
{
    out += h.method;
    out += ' ';
    out += h.target;
    out += h.minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n";
}

void add_header(std::string& out, std::string_view name, std::string_view value)
{
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
}

// Forwarded: for="[2001:db8::1]" needs quotes and brackets (RFC 7239 §6).
std::string forwarded_node(std::string_view ip)
{
    if (ip.find(':') != std::string_view::npos) return "\"[" + std::string{ip} + "]\"";
    return std::string{ip};
}

// A quoted-string for Forwarded's host= when it is not a plain token.
std::string forwarded_value(std::string_view v)
{
    if (is_token(v)) return std::string{v};
    std::string out = "\"";
    for (char c : v) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    out += '"';
    return out;
}

}  // namespace

std::string forward_request_head(const message_head& h, const forward_info& fi, std::string_view host)
{
    std::string out;
    out.reserve(h.head_size + 256);
    start_line(out, h);
    std::string xff, xfp, xfh, fwd;
    for (const auto& f : h.headers) {
        if (is_forwarding_header(f.name)) {
            if (!fi.trust_incoming) continue;
            auto& acc = iequals(f.name, "x-forwarded-for")     ? xff
                        : iequals(f.name, "x-forwarded-proto") ? xfp
                        : iequals(f.name, "x-forwarded-host")  ? xfh
                                                               : fwd;
            if (!acc.empty()) acc += ", ";
            acc += f.value;
            continue;
        }
        if (iequals(f.name, "proxy-connection")) continue;
        add_header(out, f.name, f.value);
    }
    const std::string_view proto = fi.tls ? "https" : "http";
    // X-Forwarded-For appends the client; Proto and Host describe the hop
    // the client made to us, so ours replace untrusted ones and stay first
    // for trusted ones (the original client's view).
    add_header(out, "X-Forwarded-For", xff.empty() ? fi.client_ip : xff + ", " + fi.client_ip);
    add_header(out, "X-Forwarded-Proto", xfp.empty() ? std::string{proto} : xfp);
    add_header(out, "X-Forwarded-Host", xfh.empty() ? std::string{host} : xfh);
    std::string mine = "for=" + forwarded_node(fi.client_ip) + ";proto=" + std::string{proto};
    if (!host.empty()) mine += ";host=" + forwarded_value(host);
    add_header(out, "Forwarded", fwd.empty() ? mine : fwd + ", " + mine);
    out += "\r\n";
    return out;
}

std::string rewrite_host(const message_head& h, std::string_view new_host)
{
    std::string out;
    out.reserve(h.head_size + 64);
    start_line(out, h);
    bool done = false;
    for (const auto& f : h.headers) {
        if (iequals(f.name, "host")) {
            if (!done) add_header(out, "Host", new_host);
            done = true;
            continue;
        }
        add_header(out, f.name, f.value);
    }
    if (!done) add_header(out, "Host", new_host);
    out += "\r\n";
    return out;
}

std::string_view reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 301: return "Moved Permanently";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 421: return "Misdirected Request";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    }
    return "Error";
}

std::string error_response(int status, std::string_view title, std::string_view detail,
                           std::string_view extra_headers)
{
    std::string body = "<!doctype html>\n<html><head><title>" + std::to_string(status) + " " +
                       std::string{title} + "</title></head>\n<body><h1>" + std::to_string(status) +
                       " " + std::string{title} + "</h1>\n<p>" + std::string{detail} +
                       "</p>\n</body></html>\n";
    std::string out = "HTTP/1.1 " + std::to_string(status) + " " + std::string{reason_phrase(status)} +
                      "\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: " +
                      std::to_string(body.size()) + "\r\nConnection: close\r\nCache-Control: no-store\r\n";
    out += extra_headers;
    out += "\r\n";
    out += body;
    return out;
}

// ---------------------------------------------------------------- basic auth

namespace {

std::optional<std::string> base64_decode(std::string_view in)
{
    auto val = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    if (in.size() % 4 != 0 || in.size() > 4096) return std::nullopt;
    std::string out;
    std::uint32_t acc = 0;
    int bits = 0;
    std::size_t pad = 0;
    for (std::size_t i = 0; i < in.size(); ++i) {
        const char c = in[i];
        if (c == '=') {
            if (i + 2 < in.size()) return std::nullopt;
            ++pad;
            continue;
        }
        if (pad) return std::nullopt;
        const int v = val(c);
        if (v < 0) return std::nullopt;
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    return out;
}

}  // namespace

std::string sha256_hex(std::string_view data)
{
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < len; ++i) {
        out.push_back(hex[md[i] >> 4]);
        out.push_back(hex[md[i] & 15]);
    }
    return out;
}

bool basic_auth_ok(std::string_view authorization, const std::vector<std::string>& credentials)
{
    authorization = trim(authorization);
    if (authorization.size() < 6 || !iequals(authorization.substr(0, 6), "basic ")) return false;
    const auto decoded = base64_decode(trim(authorization.substr(6)));
    if (!decoded) return false;
    const auto colon = decoded->find(':');
    if (colon == std::string::npos) return false;
    const std::string user = decoded->substr(0, colon);
    const std::string hash = sha256_hex(std::string_view{*decoded}.substr(colon + 1));
    bool ok = false;
    for (const auto& c : credentials) {
        const auto cc = c.find(':');
        if (cc == std::string::npos) continue;
        const std::string_view cu = std::string_view{c}.substr(0, cc);
        const std::string_view ch = std::string_view{c}.substr(cc + 1);
        // Compare digests (fixed length) in constant time; the user name
        // is not secret.
        const bool hash_ok =
            ch.size() == hash.size() && CRYPTO_memcmp(ch.data(), hash.data(), hash.size()) == 0;
        ok |= hash_ok && cu == user;
    }
    return ok;
}

// -------------------------------------------------------------- allow lists

std::optional<cidr> parse_cidr(std::string_view text)
{
    text = trim(text);
    cidr c;
    std::string addr{text.substr(0, text.find('/'))};
    if (addr.size() > 2 && addr.front() == '[' && addr.back() == ']') addr = addr.substr(1, addr.size() - 2);
    if (::inet_pton(AF_INET, addr.c_str(), c.addr) == 1) {
        c.v6 = false;
        c.bits = 32;
    } else if (::inet_pton(AF_INET6, addr.c_str(), c.addr) == 1) {
        c.v6 = true;
        c.bits = 128;
    } else {
        return std::nullopt;
    }
    const auto slash = text.find('/');
    if (slash != std::string_view::npos) {
        const auto b = text.substr(slash + 1);
        if (b.empty() || b.size() > 3 ||
            !std::all_of(b.begin(), b.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
            return std::nullopt;
        const int bits = std::stoi(std::string{b});
        if (bits > c.bits) return std::nullopt;
        c.bits = bits;
    }
    return c;
}

bool ip_allowed(std::string_view ip, const std::vector<cidr>& allow)
{
    auto me = parse_cidr(ip);
    if (!me) return false;
    // An IPv4-mapped IPv6 address counts as its IPv4 address.
    static const std::uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (me->v6 && std::memcmp(me->addr, mapped, 12) == 0) {
        cidr v4;
        std::memcpy(v4.addr, me->addr + 12, 4);
        v4.bits = 32;
        *me = v4;
    }
    for (const auto& a : allow) {
        if (a.v6 != me->v6) continue;
        int bits = a.bits;
        int i = 0;
        bool ok = true;
        for (; bits >= 8; bits -= 8, ++i)
            if (a.addr[i] != me->addr[i]) ok = false;
        if (ok && bits > 0) {
            const auto mask = static_cast<std::uint8_t>(0xff << (8 - bits));
            if ((a.addr[i] & mask) != (me->addr[i] & mask)) ok = false;
        }
        if (ok) return true;
    }
    return false;
}

std::string ip_of(std::string_view peer)
{
    if (!peer.empty() && peer.front() == '[') {
        const auto close = peer.find(']');
        return std::string{peer.substr(1, close == std::string_view::npos ? peer.size() - 1 : close - 1)};
    }
    const auto colon = peer.rfind(':');
    return std::string{colon == std::string_view::npos ? peer : peer.substr(0, colon)};
}

}  // namespace muxgate::http
