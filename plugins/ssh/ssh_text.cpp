#include "ssh_text.hpp"

#include <algorithm>
#include <cstdio>

namespace muxgate::ssh {

namespace {

bool printable_ascii(char c) noexcept { return c >= 0x21 && c <= 0x7e; }

}  // namespace

std::size_t banner_parser::feed(std::string_view data)
{
    std::size_t used = 0;
    while (used < data.size() && state_ == state::need_more) {
        const char c = data[used++];
        if (++total_ > banner_preamble_max) {
            fail("no SSH identification line within the first " +
                 std::to_string(banner_preamble_max) + " bytes");
            break;
        }
        if (c == '\n') {
            finish_line();
            continue;
        }
        if (c == '\0') {
            fail("NUL byte in the identification line");
            break;
        }
        // 255 bytes including the LF (and the CR, if any).
        if (line_.size() >= banner_line_max - 1) {
            fail("identification line longer than " + std::to_string(banner_line_max) + " bytes");
            break;
        }
        line_.push_back(c);
    }
    return used;
}

void banner_parser::fail(std::string why)
{
    state_ = state::invalid;
    error_ = std::move(why);
}

void banner_parser::finish_line()
{
    if (!line_.empty() && line_.back() == '\r') line_.pop_back();
    if (line_.rfind("SSH-", 0) != 0) {
        if (!allow_preamble_) {
            fail("first line is not an SSH identification line: \"" + printable(line_, 64) + "\"");
            return;
        }
        line_.clear();  // a server's preamble line: skip it
        return;
    }
    const std::string_view rest = std::string_view{line_}.substr(4);
    const auto dash = rest.find('-');
    if (dash == std::string_view::npos || dash == 0) {
        fail("identification line without a protocol version: \"" + printable(line_, 64) + "\"");
        return;
    }
    const std::string_view proto = rest.substr(0, dash);
    const std::string_view after = rest.substr(dash + 1);
    const auto sp = after.find(' ');
    const std::string_view software = after.substr(0, sp);
    const std::string_view comments =
        sp == std::string_view::npos ? std::string_view{} : after.substr(sp + 1);
    if (software.empty()) {
        fail("identification line without a software version: \"" + printable(line_, 64) + "\"");
        return;
    }
    if (!std::all_of(proto.begin(), proto.end(), printable_ascii) ||
        !std::all_of(software.begin(), software.end(), printable_ascii)) {
        fail("identification line with control or non-ASCII bytes: \"" + printable(line_, 64) +
             "\"");
        return;
    }
    if (!std::all_of(comments.begin(), comments.end(),
                     [](char c) { return c == ' ' || printable_ascii(c); })) {
        fail("identification comments with control or non-ASCII bytes: \"" +
             printable(line_, 64) + "\"");
        return;
    }
    proto_ = proto;
    software_ = software;
    comments_ = comments;
    state_ = state::done;
}

std::string printable(std::string_view s, std::size_t max)
{
    std::string out;
    for (const char ch : s.substr(0, max)) {
        const auto c = static_cast<unsigned char>(ch);
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            out.push_back(ch);
        } else {
            char buf[5];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        }
    }
    if (s.size() > max) out += "...";
    return out;
}

bool glob_match(std::string_view pattern, std::string_view text) noexcept
{
    std::size_t p = 0, t = 0;
    std::size_t star = std::string_view::npos, mark = 0;
    while (t < text.size()) {
        if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
            ++p;
            ++t;
        } else if (p < pattern.size() && pattern[p] == '*') {
            star = p++;
            mark = t;
        } else if (star != std::string_view::npos) {
            p = star + 1;
            t = ++mark;
        } else {
            return false;
        }
    }
    while (p < pattern.size() && pattern[p] == '*') ++p;
    return p == pattern.size();
}

bool valid_name(std::string_view s) noexcept
{
    if (s.empty() || s.size() > 64) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
    });
}

resolution resolve_target(std::string_view name, const std::vector<tunnel_ref>& tunnels)
{
    resolution r;
    // agent (64) + '.' + tunnel (64)
    if (name.empty() || name.size() > 129 ||
        !std::all_of(name.begin(), name.end(), [](char c) {
            return valid_name(std::string_view{&c, 1});
        })) {
        r.what = resolution::kind::invalid;
        r.detail = "not a tunnel name (1-64 of A-Z a-z 0-9 . _ -, or agent.tunnel)";
        return r;
    }
    // "agent.tunnel": try every split, since both parts may contain dots.
    for (const auto& t : tunnels) {
        if (name.size() == t.agent.size() + 1 + t.tunnel.size() &&
            name.substr(0, t.agent.size()) == t.agent && name[t.agent.size()] == '.' &&
            name.substr(t.agent.size() + 1) == t.tunnel) {
            r.what = resolution::kind::found;
            r.ref = t;
            return r;
        }
    }
    std::size_t hits = 0;
    for (const auto& t : tunnels) {
        if (t.tunnel != name) continue;
        if (hits++ == 0) {
            r.ref = t;
        } else {
            r.detail += ", ";
        }
        r.detail += t.agent;
    }
    if (hits == 1) {
        r.what = resolution::kind::found;
        r.detail.clear();
    } else if (hits > 1) {
        r.what = resolution::kind::ambiguous;
        r.ref = {};
    }
    return r;
}

bool known_key_type(std::string_view type) noexcept
{
    static constexpr std::string_view types[] = {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
        "ssh-dss",
    };
    return std::find(std::begin(types), std::end(types), type) != std::end(types);
}

key_line parse_key_line(std::string_view line)
{
    key_line k;
    if (line.size() > key_line_max) {
        k.what = key_line::kind::invalid;
        k.error = "line longer than " + std::to_string(key_line_max) + " bytes";
        return k;
    }
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
    std::size_t i = 0;
    auto skip_space = [&] {
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    };
    // A token ends at a blank outside double quotes (options may quote).
    auto token = [&](bool quotes) {
        const std::size_t start = i;
        bool in_quote = false;
        while (i < line.size()) {
            const char c = line[i];
            if (quotes && c == '\\' && in_quote && i + 1 < line.size()) {
                i += 2;
                continue;
            }
            if (quotes && c == '"') in_quote = !in_quote;
            else if (!in_quote && (c == ' ' || c == '\t')) break;
            ++i;
        }
        return std::pair{line.substr(start, i - start), in_quote};
    };
    skip_space();
    if (i == line.size() || line[i] == '#') return k;  // blank or comment
    auto [first, open_quote] = token(true);
    if (open_quote) {
        k.what = key_line::kind::invalid;
        k.error = "unterminated quote in the options";
        return k;
    }
    if (!known_key_type(first)) {
        k.options = std::string{first};
        skip_space();
        first = token(false).first;
        if (!known_key_type(first)) {
            k.what = key_line::kind::invalid;
            k.error = first.empty() ? "no key type" : "unknown key type \"" + printable(first, 40) + "\"";
            return k;
        }
    }
    k.type = std::string{first};
    skip_space();
    const auto b64 = token(false).first;
    if (b64.empty()) {
        k.what = key_line::kind::invalid;
        k.error = "no key after the type " + k.type;
        return k;
    }
    if (!std::all_of(b64.begin(), b64.end(), [](char c) {
            return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   c == '+' || c == '/' || c == '=';
        })) {
        k.what = key_line::kind::invalid;
        k.error = "the key is not base64";
        return k;
    }
    k.base64 = std::string{b64};
    skip_space();
    k.comment = std::string{line.substr(i)};
    k.what = key_line::kind::key;
    return k;
}

}  // namespace muxgate::ssh
