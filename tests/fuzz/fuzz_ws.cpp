// Fuzzes the WebSocket frame decoder and the handshake parsers.
//
// Invariant: decoding a byte stream gives the same events whether it arrives
// whole or in pieces (the chunking is chosen by the input), the way the
// transport feeds it; every event's data lies inside the buffer; consumed()
// never runs past what was given. The handshake parsers must not crash and
// must stay consistent with head_size().
#include "ws/codec.hpp"
#include "ws/handshake.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using namespace muxgate;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            std::fprintf(stderr, "*** invariant broken at %s:%d: %s\n", __FILE__, __LINE__, \
                         #cond);                                                         \
            std::abort();                                                                \
        }                                                                                \
    } while (0)

struct event {
    ws::decoded::kind what;
    std::string data;
    bool binary;
    std::uint16_t code;
    bool operator==(const event& o) const
    {
        return what == o.what && data == o.data && binary == o.binary && code == o.code;
    }
};

// Feeds `stream` to a decoder `step` bytes at a time (step 0: all at once),
// exactly as ws_conn does: keep unconsumed bytes at the front, append more.
std::vector<event> decode(ws::role r, std::size_t max, const std::vector<std::uint8_t>& stream,
                          std::size_t step)
{
    ws::decoder d{r, max};
    std::vector<event> out;
    std::vector<std::uint8_t> buf;
    std::size_t fed = 0;
    for (int guard = 0; guard < 100000; ++guard) {
        auto e = d.next(buf.data(), buf.size());
        CHECK(d.consumed() <= buf.size());
        if (e.what == ws::decoded::kind::need_more) {
            CHECK(e.need > buf.size());
            if (fed == stream.size()) return out;
            const std::size_t n = step == 0 ? stream.size() - fed : std::min(step, stream.size() - fed);
            buf.insert(buf.end(), stream.begin() + static_cast<long>(fed),
                       stream.begin() + static_cast<long>(fed + n));
            fed += n;
            continue;
        }
        if (!e.data.empty()) {
            CHECK(e.data.data() >= buf.data());
            CHECK(e.data.data() + e.data.size() <= buf.data() + buf.size());
        }
        out.push_back({e.what, std::string(reinterpret_cast<const char*>(e.data.data()), e.data.size()),
                       e.binary, e.close_code});
        if (e.what == ws::decoded::kind::error) return out;
        buf.erase(buf.begin(), buf.begin() + static_cast<long>(d.consumed()));
    }
    CHECK(!"decoder made no progress");
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size < 2) return 0;
    const auto r = (data[0] & 1) ? ws::role::server : ws::role::client;
    const std::size_t step = 1 + (data[0] >> 1) % 37;
    const std::size_t max = 64 + data[1] * 16;
    std::vector<std::uint8_t> stream(data + 2, data + size);

    const auto whole = decode(r, max, stream, 0);
    const auto pieces = decode(r, max, stream, step);
    CHECK(whole == pieces);

    const std::string_view text{reinterpret_cast<const char*>(data + 2), size - 2};
    std::string err;
    const auto head = ws::head_size(text);
    CHECK(head <= text.size());
    if (head) {
        (void)ws::parse_request(text.substr(0, head), err);
        (void)ws::parse_response(text.substr(0, head), err);
    }
    (void)ws::offers(text, "muxgate.v1");
    return 0;
}
