// Data-path buffers: fixed-size blocks from a per-thread pool, handed along
// the relay by moving (socket -> stream queue -> WebSocket write) so the bytes
// are copied only by the kernel and by TLS.
//
// A chunk is a reference-counted view [begin, end) of one block. The count is
// not atomic: a block is referenced from one strand at a time (it may be
// *moved* to another strand, never shared across two).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>
#include <utility>

namespace muxgate::net {

// Size of one pooled block: the most a socket read takes at once. 64 KiB
// keeps syscalls per GiB low while a block of an idle stream is never held
// (reads start only when the socket is readable).
inline constexpr std::size_t block_size = 64 * 1024;

// Blocks kept per thread for reuse; beyond this they go back to malloc so an
// idle process returns to its base footprint.
inline constexpr std::size_t pool_cache_limit = 64;

namespace detail {

struct block {
    block* next = nullptr;  // free-list link
    std::uint32_t refs = 0;
    std::uint32_t capacity = 0;
    std::uint8_t* data() noexcept { return reinterpret_cast<std::uint8_t*>(this + 1); }
};

struct block_pool {
    block* head = nullptr;
    std::size_t count = 0;
    ~block_pool()
    {
        while (head) {
            block* b = head;
            head = b->next;
            std::free(b);
        }
    }
};

inline block_pool& thread_pool() noexcept
{
    thread_local block_pool p;
    return p;
}

inline block* allocate_block(std::size_t capacity)
{
    if (capacity == block_size) {
        auto& p = thread_pool();
        if (p.head) {
            block* b = p.head;
            p.head = b->next;
            --p.count;
            b->next = nullptr;
            b->refs = 1;
            return b;
        }
    }
    void* mem = std::malloc(sizeof(block) + capacity);
    if (!mem) throw std::bad_alloc{};
    auto* b = new (mem) block{};
    b->refs = 1;
    b->capacity = static_cast<std::uint32_t>(capacity);
    return b;
}

inline void release_block(block* b) noexcept
{
    if (--b->refs != 0) return;
    auto& p = thread_pool();
    if (b->capacity == block_size && p.count < pool_cache_limit) {
        b->next = p.head;
        p.head = b;
        ++p.count;
        return;
    }
    std::free(b);
}

}  // namespace detail

class chunk {
public:
    chunk() noexcept = default;
    // A new block of `capacity` bytes, empty (begin == end == 0).
    static chunk make(std::size_t capacity = block_size)
    {
        chunk c;
        c.b_ = detail::allocate_block(capacity);
        return c;
    }
    static chunk copy_of(std::span<const std::uint8_t> bytes)
    {
        chunk c = make(bytes.size() > block_size ? bytes.size() : block_size);
        std::memcpy(c.b_->data(), bytes.data(), bytes.size());
        c.end_ = static_cast<std::uint32_t>(bytes.size());
        return c;
    }

    chunk(const chunk& o) noexcept : b_(o.b_), begin_(o.begin_), end_(o.end_)
    {
        if (b_) ++b_->refs;
    }
    chunk(chunk&& o) noexcept
        : b_(std::exchange(o.b_, nullptr)), begin_(o.begin_), end_(o.end_)
    {
    }
    chunk& operator=(chunk o) noexcept
    {
        std::swap(b_, o.b_);
        begin_ = o.begin_;
        end_ = o.end_;
        return *this;
    }
    ~chunk()
    {
        if (b_) detail::release_block(b_);
    }

    explicit operator bool() const noexcept { return b_ != nullptr; }
    // Only this chunk references the block (safe to append into its room).
    bool unique() const noexcept { return b_ && b_->refs == 1; }
    std::uint8_t* data() noexcept { return b_->data() + begin_; }
    const std::uint8_t* data() const noexcept { return b_->data() + begin_; }
    std::size_t size() const noexcept { return end_ - begin_; }
    bool empty() const noexcept { return end_ == begin_; }
    std::size_t capacity() const noexcept { return b_ ? b_->capacity : 0; }
    // Free room after end, for reading into.
    std::uint8_t* tail() noexcept { return b_->data() + end_; }
    std::size_t room() const noexcept { return b_ ? b_->capacity - end_ : 0; }
    void commit(std::size_t n) noexcept { end_ += static_cast<std::uint32_t>(n); }
    void consume(std::size_t n) noexcept { begin_ += static_cast<std::uint32_t>(n); }
    std::span<const std::uint8_t> bytes() const noexcept { return {data(), size()}; }

private:
    detail::block* b_ = nullptr;
    std::uint32_t begin_ = 0;
    std::uint32_t end_ = 0;
};

// Appends a copy of `bytes` to a queue of chunks, filling the last block's
// free room first, so many small writes share blocks instead of each taking
// one (a stalled consumer of tiny frames must not cost a block per frame).
template <class Queue>
void append_copy(Queue& q, std::span<const std::uint8_t> bytes)
{
    if (!q.empty()) {
        chunk& back = q.back();
        if (back.unique() && back.room() > 0) {
            const std::size_t n = bytes.size() < back.room() ? bytes.size() : back.room();
            std::memcpy(back.tail(), bytes.data(), n);
            back.commit(n);
            bytes = bytes.subspan(n);
        }
    }
    while (!bytes.empty()) {
        chunk c = chunk::make();
        const std::size_t n = bytes.size() < c.room() ? bytes.size() : c.room();
        std::memcpy(c.tail(), bytes.data(), n);
        c.commit(n);
        q.push_back(std::move(c));
        bytes = bytes.subspan(n);
    }
}

}  // namespace muxgate::net
