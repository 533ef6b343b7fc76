// fuzz_ssh_text: the ssh plugin's own parsers (plugins/ssh/ssh_text.hpp) over
// arbitrary bytes: the version banner (fed in pieces), authorized_keys lines,
// jump target names and allow globs.
//
// Input: [selector u8][split u8][bytes...].
//
// Checked: the banner parser never reads past the LF that completes it, a
// finished banner is at most 255 bytes and starts with "SSH-", and feeding
// the same bytes in two pieces gives the same result as in one; a key line
// that parses has a known type and a base64 key; a resolved name is one of
// the registered tunnels; a pattern matches itself when it has no wildcard.
#include "fuzz_util.hpp"
#include "ssh_text.hpp"

#include <string>

using namespace muxgate::ssh;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size < 2) return 0;
    const unsigned selector = data[0] % 4;
    const std::size_t split = data[1];
    const std::string_view in{reinterpret_cast<const char*>(data + 2), size - 2};
    switch (selector) {
    case 0: {
        banner_parser one{(split & 1) != 0};
        const std::size_t used = one.feed(in);
        FUZZ_REQUIRE(used <= in.size());
        banner_parser two{(split & 1) != 0};
        const std::size_t cut = std::min(split, in.size());
        std::size_t used2 = two.feed(in.substr(0, cut));
        if (two.status() == banner_parser::state::need_more) used2 += two.feed(in.substr(cut));
        FUZZ_REQUIRE(one.status() == two.status());
        FUZZ_REQUIRE(used == used2);
        if (one.status() == banner_parser::state::done) {
            FUZZ_REQUIRE(one.line() == two.line());
            FUZZ_REQUIRE(one.line().size() < banner_line_max);
            FUZZ_REQUIRE(one.line().rfind("SSH-", 0) == 0);
            FUZZ_REQUIRE(in[used - 1] == '\n');
        }
        if (one.status() == banner_parser::state::invalid) FUZZ_REQUIRE(!one.error().empty());
        break;
    }
    case 1: {
        const auto k = parse_key_line(in);
        if (k.what == key_line::kind::key) {
            FUZZ_REQUIRE(known_key_type(k.type));
            FUZZ_REQUIRE(!k.base64.empty());
        }
        if (k.what == key_line::kind::invalid) FUZZ_REQUIRE(!k.error.empty());
        (void)printable(in, split);
        break;
    }
    case 2: {
        const std::vector<tunnel_ref> t = {{"a1", "pc"}, {"a2", "pc"}, {"a.b", "c"}, {"a", "b.c"},
                                           {"lab", "x"}};
        const auto r = resolve_target(in, t);
        if (r.what == resolution::kind::found) {
            bool known = false;
            for (const auto& x : t) known = known || (x.agent == r.ref.agent && x.tunnel == r.ref.tunnel);
            FUZZ_REQUIRE(known);
        }
        break;
    }
    default: {
        const std::size_t cut = std::min(split, in.size());
        const auto pattern = in.substr(0, cut);
        const auto text = in.substr(cut);
        (void)glob_match(pattern, text);
        if (pattern.find_first_of("*?") == std::string_view::npos)
            FUZZ_REQUIRE(glob_match(pattern, pattern));
        break;
    }
    }
    return 0;
}
