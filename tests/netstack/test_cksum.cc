// Wire-format and checksum tests: header sizes, RFC 1071 vectors, odd lengths, the
// pseudo-header, chained sums, and the counters' names.
#include <random>
#include <set>

#include "harness.h"

namespace {

// The obvious big-endian reference, to compare the word-at-a-time version against.
uint16_t ref_cksum(const uint8_t *p, size_t n, uint32_t sum = 0)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        sum += uint32_t(p[i] << 8 | p[i + 1]);
    if (n & 1)
        sum += uint32_t(p[n - 1] << 8);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return uint16_t(~sum);
}

uint16_t cks(const Bytes &b) { return ns_ntoh16(ns_cksum_finish(ns_cksum_add(0, b.data(), b.size()))); }

TEST(NsCksum, Rfc1071Example)
{
    // RFC 1071 section 3: these bytes sum to 0xddf2.
    Bytes b = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
    EXPECT_EQ(cks(b), 0xffff - 0xddf2);
}

TEST(NsCksum, Ipv4HeaderVector)
{
    Bytes h = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
               0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
    EXPECT_EQ(ns_ntoh16(ns_ipv4_cksum(h.data(), 20)), 0xb861);
    h[10] = 0xb8;
    h[11] = 0x61;
    EXPECT_EQ(ns_ipv4_cksum(h.data(), 20), 0) << "a correct header verifies to 0";
    h[15] ^= 1;
    EXPECT_NE(ns_ipv4_cksum(h.data(), 20), 0);
}

TEST(NsCksum, OddLengths)
{
    EXPECT_EQ(cks(Bytes{0x01}), 0xfeff);
    EXPECT_EQ(cks(Bytes{0x01, 0x02, 0x03}), 0xfbfd);
    EXPECT_EQ(cks(Bytes{}), 0xffff);
    std::mt19937 rng(7);
    for (size_t n = 0; n < 300; n++) {
        Bytes b(n);
        for (auto &x : b)
            x = uint8_t(rng());
        ASSERT_EQ(cks(b), ref_cksum(b.data(), n)) << "length " << n;
        // Unaligned start.
        if (n > 1)
            ASSERT_EQ(ns_ntoh16(ns_cksum_finish(ns_cksum_add(0, b.data() + 1, n - 1))), ref_cksum(b.data() + 1, n - 1));
    }
}

TEST(NsCksum, ChainedEvenPiecesEqualWhole)
{
    std::mt19937 rng(11);
    for (int t = 0; t < 200; t++) {
        size_t n = rng() % 2000;
        Bytes b(n);
        for (auto &x : b)
            x = uint8_t(rng());
        size_t cut = (rng() % (n + 1)) & ~size_t(1);
        uint32_t s = ns_cksum_add(0, b.data(), cut);
        s = ns_cksum_add(s, b.data() + cut, n - cut);
        ASSERT_EQ(ns_ntoh16(ns_cksum_finish(s)), ref_cksum(b.data(), n));
    }
    // Large all-ones input exercises the carry folding.
    Bytes ones(65535, 0xff);
    EXPECT_EQ(cks(ones), ref_cksum(ones.data(), ones.size()));
}

TEST(NsCksum, SegmentSizesAtEveryAlignmentWithRunningSums)
{
    // The 32-byte main loop, its tail, and a carried-in sum, against the reference.
    std::mt19937 rng(13);
    Bytes b(2100);
    for (auto &x : b)
        x = uint8_t(rng());
    for (size_t n : {31u, 32u, 33u, 63u, 64u, 65u, 100u, 536u, 1448u, 1460u, 1480u, 2048u}) {
        for (size_t off = 0; off < 8; off++) {
            uint32_t start = rng() & 0xffff;
            uint32_t got = ns_cksum_add(start, b.data() + off, n);
            Bytes with(b.begin() + long(off), b.begin() + long(off + n));
            // start is in host order like every partial sum; as bytes it is two more words up front.
            uint16_t s16 = uint16_t(start);
            Bytes pre(2);
            memcpy(pre.data(), &s16, 2);
            pre.insert(pre.end(), with.begin(), with.end());
            ASSERT_EQ(ns_ntoh16(ns_cksum_finish(got)), ref_cksum(pre.data(), pre.size())) << n << " at +" << off;
        }
    }
}

TEST(NsCksum, UdpPseudoHeaderVector)
{
    // 192.168.0.1:1234 -> 192.168.0.199:80 "hi!"; computed independently (Python) as 0xef33.
    be32_t s = NS_IP4(192, 168, 0, 1), d = NS_IP4(192, 168, 0, 199);
    Bytes u = {0x04, 0xd2, 0x00, 0x50, 0x00, 0x0b, 0x00, 0x00, 'h', 'i', '!'};
    uint32_t sum = ns_cksum_pseudo(s, d, NS_IPPROTO_UDP, 11);
    EXPECT_EQ(ns_ntoh16(ns_cksum_finish(ns_cksum_add(sum, u.data(), u.size()))), 0xef33);
    u[6] = 0xef;
    u[7] = 0x33;
    EXPECT_EQ(ns_cksum_finish(ns_cksum_add(sum, u.data(), u.size())), 0);
}

TEST(NsWire, HeaderLayout)
{
    EXPECT_EQ(sizeof(ns_eth_hdr), 14u);
    EXPECT_EQ(sizeof(ns_arp_hdr), 28u);
    EXPECT_EQ(sizeof(ns_ipv4_hdr), 20u);
    EXPECT_EQ(sizeof(ns_icmp_hdr), 8u);
    EXPECT_EQ(sizeof(ns_udp_hdr), 8u);
    EXPECT_EQ(sizeof(ns_tcp_hdr), 20u);
    EXPECT_EQ(offsetof(ns_ipv4_hdr, dst), 16u);
    EXPECT_EQ(offsetof(ns_arp_hdr, tpa), 24u);
    EXPECT_EQ(offsetof(ns_tcp_hdr, window), 14u);
    be32_t a = NS_IP4(10, 1, 2, 3);
    const uint8_t *p = reinterpret_cast<const uint8_t *>(&a);
    EXPECT_EQ(p[0], 10);
    EXPECT_EQ(p[3], 3);
    EXPECT_EQ(ns_ntoh16(ns_hton16(0x1234)), 0x1234);
    EXPECT_EQ(ns_ntoh32(a), 0x0a010203u);
}

TEST(NsStats, NamesUniqueAndComplete)
{
    std::set<std::string> names;
    for (size_t i = 0; i < NS_STATS_COUNT; i++) {
        ASSERT_NE(ns_stats_name(i), nullptr);
        ASSERT_NE(ns_stats_help(i), nullptr);
        names.insert(ns_stats_name(i));
    }
    EXPECT_EQ(names.size(), NS_STATS_COUNT);
    EXPECT_EQ(ns_stats_name(NS_STATS_COUNT), nullptr);
    ns_stats s{};
    s.udp_rx = 42;
    for (size_t i = 0; i < NS_STATS_COUNT; i++)
        if (std::string(ns_stats_name(i)) == "udp_rx")
            EXPECT_EQ(ns_stats_value(&s, i), 42u);
}

TEST(NsPool, GetPutAndExhaustion)
{
    nsbuf_pool p;
    ASSERT_EQ(nsbuf_pool_init(&p, 3, 256, 64), 0);
    nsbuf *a = nsbuf_pool_get(&p), *b = nsbuf_pool_get(&p), *c = nsbuf_pool_get(&p);
    ASSERT_TRUE(a && b && c);
    EXPECT_EQ(nsbuf_pool_get(&p), nullptr);
    EXPECT_EQ(p.in_use, 3u);
    EXPECT_EQ(nsbuf_headroom(a), 64u);
    EXPECT_EQ(nsbuf_tailroom(a), 192u);
    EXPECT_EQ(nsbuf_push(a, 65), nullptr);
    EXPECT_NE(nsbuf_push(a, 64), nullptr);
    EXPECT_EQ(nsbuf_append(a, 193), nullptr);
    nsbuf_pool_put(a);
    nsbuf_pool_put(b);
    nsbuf_pool_put(c);
    EXPECT_EQ(p.in_use, 0u);
    nsbuf_pool_fini(&p);
    EXPECT_EQ(nsbuf_pool_init(&p, 1, 64, 64), -EINVAL);
}

}  // namespace
