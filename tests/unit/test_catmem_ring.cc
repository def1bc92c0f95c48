// Unit tests of catmem's shared-memory message ring, driven directly: framing, wrap-around, full and empty rings, sizes from 1 B to 1 MiB, and corrupt positions or records.
#include <gtest/gtest.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <random>
#include <vector>

#include "../../libos/catmem/ring.h"

namespace {

struct Ring {
    std::vector<uint8_t> mem;
    cm_ring prod{}, cons{};
    uint64_t cap;
    explicit Ring(uint64_t c) : mem(catmem_ring_bytes(c) + 64), cap(c)
    {
        catmem_ring_format(base(), cap);
        EXPECT_EQ(0, catmem_ring_attach(&prod, base(), cap, true));
        EXPECT_EQ(0, catmem_ring_attach(&cons, base(), cap, false));
    }
    // 64-aligned start inside the vector, as mmap would give.
    void *base() { return (void *)(((uintptr_t)mem.data() + 63) & ~(uintptr_t)63); }
    catmem_ring_ctl *ctl() { return (catmem_ring_ctl *)base(); }
};

struct Rx {
    std::vector<std::vector<uint8_t>> bufs;
    static void *alloc(void *ctx, uint32_t len)
    {
        Rx *r = (Rx *)ctx;
        r->bufs.emplace_back(len);
        return r->bufs.back().data();
    }
};

// Pop one whole message, or return an empty vector if none is there.
std::vector<uint8_t> get(Ring &r, Rx &rx, int *rc_out = nullptr)
{
    uint32_t len = 0;
    int rc = catmem_ring_get(&r.cons, Rx::alloc, &rx, &len);
    if (rc_out)
        *rc_out = rc;
    if (rc != 1)
        return {};
    std::vector<uint8_t> v = std::move(rx.bufs.back());
    rx.bufs.pop_back();
    EXPECT_EQ(len, v.size());
    return v;
}

std::vector<uint8_t> pattern(size_t n, uint32_t seed)
{
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; i++)
        v[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 8));
    return v;
}

TEST(CatmemRing, AttachRejectsBadCapacity)
{
    std::vector<uint8_t> mem(4096);
    cm_ring r;
    EXPECT_EQ(-EINVAL, catmem_ring_attach(&r, mem.data(), 100, true));
    EXPECT_EQ(-EINVAL, catmem_ring_attach(&r, mem.data(), 32, true));
    EXPECT_EQ(-EINVAL, catmem_ring_attach(&r, mem.data(), 0, true));
}

TEST(CatmemRing, EmptyRingHasNothing)
{
    Ring r(4096);
    Rx rx;
    int rc;
    EXPECT_TRUE(get(r, rx, &rc).empty());
    EXPECT_EQ(0, rc);
    EXPECT_FALSE(catmem_ring_readable(&r.cons));
    EXPECT_EQ(4096u, catmem_ring_room(&r.prod));
}

TEST(CatmemRing, MessagesKeepBoundariesAndOrder)
{
    Ring r(4096);
    Rx rx;
    for (uint32_t i = 1; i <= 20; i++) {
        auto m = pattern(i, i);
        uint32_t done = 0;
        ASSERT_EQ(1, catmem_ring_put(&r.prod, m.data(), i, &done));
    }
    for (uint32_t i = 1; i <= 20; i++) {
        auto v = get(r, rx);
        ASSERT_EQ(pattern(i, i), v) << "message " << i;
    }
    EXPECT_TRUE(get(r, rx).empty());
}

TEST(CatmemRing, FullRingWaitsAndResumes)
{
    Ring r(256);
    auto m = pattern(40, 1); // 16 + 40 = 56, padded to 64 bytes a record
    int n = 0;
    for (;;) {
        uint32_t done = 0;
        int rc = catmem_ring_put(&r.prod, m.data(), 40, &done);
        if (rc == 0) {
            EXPECT_EQ(0u, done); // fits the ring whole, so it is never split
            break;
        }
        ASSERT_EQ(1, rc);
        n++;
    }
    EXPECT_EQ(4, n); // 4 * 64 = 256 <= 256 < 320
    Rx rx;
    ASSERT_EQ(m, get(r, rx));
    uint32_t done = 0;
    EXPECT_EQ(1, catmem_ring_put(&r.prod, m.data(), 40, &done));
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(m, get(r, rx));
    EXPECT_TRUE(get(r, rx).empty());
}

TEST(CatmemRing, WrapAroundKeepsBytes)
{
    // Odd sizes through a small ring cross the end at every possible offset.
    Ring r(512);
    Rx rx;
    std::mt19937 rng(7);
    for (uint32_t i = 0; i < 5000; i++) {
        uint32_t len = 1 + rng() % 200;
        auto m = pattern(len, i);
        uint32_t done = 0;
        ASSERT_EQ(1, catmem_ring_put(&r.prod, m.data(), len, &done));
        ASSERT_EQ(m, get(r, rx)) << "message " << i;
    }
}

TEST(CatmemRing, InterleavedProducerConsumerRandomSizes)
{
    Ring r(8192);
    Rx rx;
    std::mt19937 rng(11);
    uint32_t sent = 0, recvd = 0, done = 0;
    std::vector<uint32_t> lens;
    for (int i = 0; i < 3000; i++)
        lens.push_back(1 + rng() % 3000);
    while (recvd < lens.size()) {
        while (sent < lens.size()) {
            auto m = pattern(lens[sent], sent);
            int rc = catmem_ring_put(&r.prod, m.data(), lens[sent], &done);
            ASSERT_GE(rc, 0);
            if (rc == 0)
                break;
            sent++;
            done = 0;
        }
        int take = 1 + rng() % 4;
        for (int k = 0; k < take && recvd < sent; k++) {
            auto v = get(r, rx);
            ASSERT_EQ(pattern(lens[recvd], recvd), v) << "message " << recvd;
            recvd++;
        }
    }
}

TEST(CatmemRing, SizesOneByteToOneMiB)
{
    // A 64 KiB ring: messages above it are split and reassembled.
    Ring r(65536);
    Rx rx;
    for (uint32_t len = 1; len <= (1u << 20); len *= 2) {
        for (uint32_t l : {len, len + 1 > (1u << 20) ? len : len + 1, len > 1 ? len - 1 : len}) {
            auto m = pattern(l, l);
            uint32_t done = 0;
            std::vector<uint8_t> got;
            int guard = 0;
            for (;;) {
                int rc = catmem_ring_put(&r.prod, m.data(), l, &done);
                ASSERT_GE(rc, 0);
                int grc;
                auto v = get(r, rx, &grc);
                ASSERT_GE(grc, 0);
                if (grc == 1) {
                    got = v;
                    break;
                }
                ASSERT_LT(++guard, 100000);
            }
            ASSERT_EQ(l, got.size());
            ASSERT_TRUE(m == got) << "size " << l;
        }
    }
}

TEST(CatmemRing, PutRejectsEmptyAndHuge)
{
    Ring r(4096);
    uint8_t b = 0;
    uint32_t done = 0;
    EXPECT_EQ(-EMSGSIZE, catmem_ring_put(&r.prod, &b, 0, &done));
    EXPECT_EQ(-EMSGSIZE, catmem_ring_put(&r.prod, &b, CM_MSG_MAX + 1u, &done));
}

TEST(CatmemRing, CorruptTailIsEio)
{
    Ring r(4096);
    Rx rx;
    __atomic_store_n(&r.ctl()->tail, (uint64_t)1 << 40, __ATOMIC_RELEASE);
    int rc;
    get(r, rx, &rc);
    EXPECT_EQ(-EIO, rc);
    get(r, rx, &rc);
    EXPECT_EQ(-EIO, rc); // sticky
    EXPECT_TRUE(catmem_ring_readable(&r.cons));
}

TEST(CatmemRing, TailMovingBackIsEio)
{
    Ring r(4096);
    Rx rx;
    auto m = pattern(100, 1);
    uint32_t done = 0;
    ASSERT_EQ(1, catmem_ring_put(&r.prod, m.data(), 100, &done));
    ASSERT_EQ(m, get(r, rx));
    // The waiter's look before it sleeps reads tail (128) ...
    EXPECT_FALSE(catmem_ring_readable(&r.cons));
    // ... so a tail that then goes back is impossible, and found by the next such look.
    __atomic_store_n(&r.ctl()->tail, (uint64_t)0, __ATOMIC_RELEASE);
    EXPECT_TRUE(catmem_ring_readable(&r.cons));
    int rc;
    get(r, rx, &rc);
    EXPECT_EQ(-EIO, rc);
}

TEST(CatmemRing, CorruptTailIsFoundWhileSpinning)
{
    // A consumer spinning on an empty ring reads tail in one of every 64 empty gets
    // only (it watches the record header); a lie about tail is still found within that.
    Ring r(4096);
    Rx rx;
    int rc = 0;
    for (int i = 0; i < 10; i++) {
        get(r, rx, &rc);
        ASSERT_EQ(0, rc);
    }
    __atomic_store_n(&r.ctl()->tail, (uint64_t)1024, __ATOMIC_RELEASE); // past us, with no record there
    int calls = 0;
    do {
        get(r, rx, &rc);
        calls++;
    } while (rc == 0 && calls < 1000);
    EXPECT_EQ(-EIO, rc);
    EXPECT_LE(calls, 64);
}

TEST(CatmemRing, CorruptHeadIsEio)
{
    Ring r(4096);
    auto m = pattern(100, 1);
    __atomic_store_n(&r.ctl()->head, (uint64_t)1 << 40, __ATOMIC_RELEASE);
    uint32_t done = 0;
    // Room is looked at only when the cached view says full: fill it first.
    int rc = 1;
    for (int i = 0; i < 100 && rc == 1; i++) {
        done = 0;
        rc = catmem_ring_put(&r.prod, m.data(), 100, &done);
    }
    EXPECT_EQ(-EIO, rc);
    EXPECT_EQ(0u, catmem_ring_room(&r.prod));
}

TEST(CatmemRing, CorruptRecordLengthIsEio)
{
    Ring r(4096);
    Rx rx;
    auto m = pattern(100, 1);
    uint32_t done = 0;
    ASSERT_EQ(1, catmem_ring_put(&r.prod, m.data(), 100, &done));
    uint8_t *data = (uint8_t *)r.base() + CM_RING_CTL_BYTES;
    uint32_t bad = 0xfffffff0u;
    memcpy(data, &bad, 4); // the record claims more bytes than were published
    int rc;
    get(r, rx, &rc);
    EXPECT_EQ(-EIO, rc);
}

TEST(CatmemRing, ContinuationWithoutStartIsEio)
{
    Ring r(4096);
    Rx rx;
    auto m = pattern(100, 1);
    uint32_t done = 0;
    ASSERT_EQ(1, catmem_ring_put(&r.prod, m.data(), 100, &done));
    uint8_t *data = (uint8_t *)r.base() + CM_RING_CTL_BYTES;
    uint32_t zero = 0;
    memcpy(data + 4, &zero, 4); // total = 0 marks a continuation, but no message is open
    int rc;
    get(r, rx, &rc);
    EXPECT_EQ(-EIO, rc);
}

TEST(CatmemRing, RecordSeenByItsHeaderBeforeTail)
{
    // The producer stores the header, then tail: a consumer in between takes the record by its header.
    Ring r(4096);
    Rx rx;
    auto m = pattern(100, 3);
    uint32_t done = 0;
    ASSERT_EQ(1, catmem_ring_put(&r.prod, m.data(), 100, &done));
    uint64_t tail = __atomic_load_n(&r.ctl()->tail, __ATOMIC_ACQUIRE);
    __atomic_store_n(&r.ctl()->tail, (uint64_t)0, __ATOMIC_RELEASE);
    ASSERT_EQ(m, get(r, rx));
    int rc;
    EXPECT_TRUE(get(r, rx, &rc).empty());
    EXPECT_EQ(0, rc); // tail lagging what the headers showed is not corruption
    __atomic_store_n(&r.ctl()->tail, tail, __ATOMIC_RELEASE);
    EXPECT_TRUE(get(r, rx, &rc).empty());
    EXPECT_EQ(0, rc);
    done = 0;
    ASSERT_EQ(1, catmem_ring_put(&r.prod, m.data(), 100, &done));
    EXPECT_EQ(m, get(r, rx));
}

TEST(CatmemRing, TailPastAMissingHeaderIsEio)
{
    Ring r(4096);
    Rx rx;
    __atomic_store_n(&r.ctl()->tail, (uint64_t)128, __ATOMIC_RELEASE); // in bounds, but no record was written
    int rc;
    get(r, rx, &rc);
    EXPECT_EQ(-EIO, rc);
}

TEST(CatmemRing, StaleBytesOfAnEarlierLapAreNotRecords)
{
    // Fill a small ring several laps with payloads that spell every plausible position + 1;
    // the consumer must never take leftovers for a record.
    Ring r(256);
    Rx rx;
    for (uint64_t lap = 0; lap < 64; lap++) {
        std::vector<uint8_t> m(48);
        for (size_t i = 0; i + 8 <= m.size(); i += 8) {
            uint64_t v = lap * 256 + i + 1;
            memcpy(&m[i], &v, 8);
        }
        uint32_t done = 0;
        ASSERT_EQ(1, catmem_ring_put(&r.prod, m.data(), (uint32_t)m.size(), &done));
        ASSERT_EQ(m, get(r, rx));
        int rc;
        EXPECT_TRUE(get(r, rx, &rc).empty());
        ASSERT_EQ(0, rc);
    }
}

TEST(CatmemRing, AllocFailureIsRetried)
{
    Ring r(4096);
    auto m = pattern(100, 1);
    uint32_t done = 0;
    ASSERT_EQ(1, catmem_ring_put(&r.prod, m.data(), 100, &done));
    uint32_t len;
    EXPECT_EQ(-ENOMEM, catmem_ring_get(&r.cons, [](void *, uint32_t) -> void * { return nullptr; }, nullptr, &len));
    Rx rx;
    EXPECT_EQ(m, get(r, rx));
}

} // namespace
