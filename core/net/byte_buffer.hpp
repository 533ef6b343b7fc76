// A growable byte buffer for the transport: live bytes are [begin, end) of
// one allocation. Unlike std::vector it never zero-fills (a vector resize of
// 256 KiB costs a memset per burst), and it moves live bytes down only when
// at least half the allocation is dead, so the copying is amortized.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace muxgate::net {

class byte_buffer {
public:
    byte_buffer() = default;
    byte_buffer(const byte_buffer&) = delete;
    byte_buffer& operator=(const byte_buffer&) = delete;
    ~byte_buffer() { std::free(p_); }

    std::uint8_t* data() noexcept { return p_ + begin_; }
    const std::uint8_t* data() const noexcept { return p_ + begin_; }
    std::size_t size() const noexcept { return end_ - begin_; }
    bool empty() const noexcept { return end_ == begin_; }
    std::size_t capacity() const noexcept { return cap_; }
    std::uint8_t* tail() noexcept { return p_ + end_; }
    std::size_t room() const noexcept { return cap_ - end_; }

    void commit(std::size_t n) noexcept { end_ += n; }
    void consume(std::size_t n) noexcept
    {
        begin_ += n;
        if (begin_ == end_) begin_ = end_ = 0;
    }
    void clear() noexcept { begin_ = end_ = 0; }

    // Make room for at least `n` bytes after the live ones.
    void prepare(std::size_t n)
    {
        if (room() >= n) return;
        const std::size_t live = size();
        if (begin_ > 0 && begin_ >= cap_ / 2 && cap_ - live >= n) {
            std::memmove(p_, p_ + begin_, live);
            begin_ = 0;
            end_ = live;
            return;
        }
        std::size_t cap = cap_ ? cap_ : 4096;
        while (cap < live + n) cap *= 2;
        auto* q = static_cast<std::uint8_t*>(std::malloc(cap));
        if (!q) throw std::bad_alloc{};
        if (live) std::memcpy(q, p_ + begin_, live);
        std::free(p_);
        p_ = q;
        cap_ = cap;
        begin_ = 0;
        end_ = live;
    }

    void append(const void* src, std::size_t n)
    {
        prepare(n);
        std::memcpy(p_ + end_, src, n);
        end_ += n;
    }

    // Give the memory back (only when empty).
    void release() noexcept
    {
        if (!empty()) return;
        std::free(p_);
        p_ = nullptr;
        cap_ = begin_ = end_ = 0;
    }

private:
    std::uint8_t* p_ = nullptr;
    std::size_t cap_ = 0;
    std::size_t begin_ = 0;
    std::size_t end_ = 0;
};

}  // namespace muxgate::net
