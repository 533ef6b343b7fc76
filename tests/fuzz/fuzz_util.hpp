// Helpers shared by the fuzz targets: a reader that takes bytes from the
// front of the input (so seed files can be written by hand, see
// corpus/make_corpus.py) and require(), which turns a broken invariant into a
// crash libFuzzer reports and saves.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>

namespace muxgate::fuzz {

// A failed invariant: print what and abort (libFuzzer saves the input).
[[noreturn]] inline void fail(const char* what, const char* file, int line)
{
    std::fprintf(stderr, "\n*** invariant broken at %s:%d: %s\n", file, line, what);
    std::abort();
}

#define FUZZ_REQUIRE(cond)                                                   \
    do {                                                                     \
        if (!(cond)) ::muxgate::fuzz::fail(#cond, __FILE__, __LINE__);       \
    } while (0)

// Reads the input front to back; past the end every read gives zeros, so any
// input is a complete program.
class reader {
public:
    reader(const std::uint8_t* data, std::size_t size) : p_(data), n_(size) {}

    bool empty() const noexcept { return n_ == 0; }
    std::size_t left() const noexcept { return n_; }

    std::uint8_t u8() noexcept
    {
        if (n_ == 0) return 0;
        --n_;
        return *p_++;
    }
    // Big-endian; each read is sequenced (the operands of | are not).
    std::uint16_t u16() noexcept
    {
        const unsigned hi = u8();
        return static_cast<std::uint16_t>(hi << 8 | u8());
    }
    std::uint32_t u32() noexcept
    {
        const std::uint32_t hi = u16();
        return hi << 16 | u16();
    }
    // Up to `k` bytes (fewer at the end of the input).
    std::span<const std::uint8_t> take(std::size_t k) noexcept
    {
        if (k > n_) k = n_;
        std::span<const std::uint8_t> out{p_, k};
        p_ += k;
        n_ -= k;
        return out;
    }
    std::string_view rest_text() noexcept
    {
        auto s = take(n_);
        return {reinterpret_cast<const char*>(s.data()), s.size()};
    }

private:
    const std::uint8_t* p_;
    std::size_t n_;
};

}  // namespace muxgate::fuzz
