// Transfers between two netstacks over the lossy link (lossy_link.h) on a virtual clock.
// LossyLinkUdp checks the link itself with UDP datagrams (loss, duplication, reordering,
// corruption caught by checksums, rate limit, determinism per seed).
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <vector>

#include "lossy_link.h"

extern "C" {
#include "prot/byteorder.h"
}

namespace {

constexpr uint64_t kUs = 1000ull;
constexpr uint64_t kMsV = 1000000ull;
constexpr uint64_t kSecV = 1000000000ull;

ns_sockaddr addr_of(int side, uint16_t port)
{
    ns_sockaddr a;
    a.addr = NS_IP4(10, 0, 0, side + 1);
    a.port = ns_hton16(port);
    return a;
}

// Datagram i: [seq u32][len u32][len-8 bytes from a PRNG seeded by seq].
std::vector<uint8_t> make_dgram(uint32_t seq, uint32_t len)
{
    std::vector<uint8_t> d(len);
    memcpy(&d[0], &seq, 4);
    memcpy(&d[4], &len, 4);
    uint64_t s = seq * 7919ull + 1;
    for (uint32_t i = 8; i < len; i++)
        d[i] = uint8_t(splitmix64(s));
    return d;
}

bool dgram_valid(const uint8_t *p, size_t n, uint32_t *seq)
{
    if (n < 8)
        return false;
    uint32_t len;
    memcpy(seq, p, 4);
    memcpy(&len, p + 4, 4);
    return len == n && make_dgram(*seq, len) == std::vector<uint8_t>(p, p + n);
}

struct UdpRun {
    std::vector<uint32_t> order;     // seqs as received (valid ones)
    uint64_t invalid = 0;
    uint64_t end_ns = 0;
    LinkStats st{};
    struct ns_stats rx{};
};

// Side 0 sends n datagrams (sizes 8..1472 from the seed) to side 1, at most `window` frames in flight.
UdpRun udp_run(uint64_t seed, const LinkParams &p, uint32_t n, bool static_arp, size_t window = 64)
{
    UdpRun r;
    LinkParams back;  // clean reverse path (ARP replies)
    LinkPair lp(seed, p, back, NS_CC_CUBIC, static_arp);
    int tx = ns_udp_socket(lp.ns[0]);
    int rx = ns_udp_socket(lp.ns[1]);
    ns_sockaddr l = addr_of(1, 9000);
    EXPECT_EQ(ns_udp_bind(lp.ns[1], rx, &l), 0);
    uint64_t sizes = seed;
    uint32_t sent = 0;
    std::vector<uint8_t> buf(2048);
    auto app = [&]() {
        bool progress = false;
        // Without static ARP the first datagram waits in ARP's pending queue (8 deep): send
        // the rest once the (clean) reverse path has delivered the reply.
        bool resolved = static_arp || lp.link.stats(1).delivered > 0;
        while (sent < n && lp.link.in_flight() < window && (resolved || sent == 0)) {
            uint32_t len = 8 + uint32_t(splitmix64(sizes) % (1472 - 8 + 1));
            auto d = make_dgram(sent, len);
            int rc = ns_udp_sendto(lp.ns[0], tx, d.data(), d.size(), &l);
            EXPECT_EQ(rc, int(len));
            sent++;
            progress = true;
        }
        ns_sockaddr from;
        for (;;) {
            int rc = ns_udp_recvfrom(lp.ns[1], rx, buf.data(), buf.size(), &from);
            if (rc == -EAGAIN)
                break;
            uint32_t seq;
            if (rc >= 0 && dgram_valid(buf.data(), size_t(rc), &seq))
                r.order.push_back(seq);
            else
                r.invalid++;
            progress = true;
        }
        return progress;
    };
    std::string why;
    bool ok = lp.run(app, [&]() { return sent == n && lp.link.in_flight() == 0 && ns_udp_rx_pending(lp.ns[1], rx) == 0; },
                     600 * kSecV, 10000000, &why);
    EXPECT_TRUE(ok) << why << lp.link.describe();
    r.end_ns = lp.link.now - lp.start_ns;
    r.st = lp.link.stats(0);
    ns_stats_get(lp.ns[1], &r.rx);
    ns_udp_close(lp.ns[0], tx);
    ns_udp_close(lp.ns[1], rx);
    // Nothing in flight and nothing queued: every buffer is back in its pool.
    EXPECT_EQ(lp.link.pool(0)->in_use, 0u);
    EXPECT_EQ(lp.link.pool(1)->in_use, 0u);
    return r;
}

}  // namespace

TEST(LossyLinkUdp, CleanLinkDeliversEverythingInOrder)
{
    UdpRun r = udp_run(1, LinkParams(), 3000, false);
    ASSERT_EQ(r.order.size(), 3000u);
    for (uint32_t i = 0; i < 3000; i++)
        ASSERT_EQ(r.order[i], i);
    EXPECT_EQ(r.invalid, 0u);
    EXPECT_EQ(r.st.lost + r.st.duplicated + r.st.reordered + r.st.corrupted, 0u);
}

TEST(LossyLinkUdp, ImpairmentsHappenAndChecksumsCatchCorruption)
{
    LinkParams p;
    p.loss = p.dup = p.reorder = p.corrupt = 0.10;
    p.delay_ns = 200 * kUs;
    p.jitter_ns = 100 * kUs;
    const uint32_t n = 20000;
    UdpRun r = udp_run(7, p, n, false);
    // Every impairment showed up at roughly its rate.
    for (uint64_t v : {r.st.lost, r.st.duplicated, r.st.reordered, r.st.corrupted}) {
        EXPECT_GT(v, n * 8 / 100);
        EXPECT_LT(v, n * 13 / 100);
    }
    // No corrupted datagram reached the application.
    EXPECT_EQ(r.invalid, 0u);
    uint64_t dropped = r.rx.udp_rx_bad_cksum + r.rx.ip_rx_bad_cksum + r.rx.eth_rx_not_for_us +
                       r.rx.eth_rx_unknown_type + r.rx.eth_rx_bad_src + r.rx.ip_rx_bad_len + r.rx.ip_rx_bad_ihl +
                       r.rx.ip_rx_bad_version + r.rx.ip_rx_not_for_us + r.rx.ip_rx_bad_src + r.rx.udp_rx_bad_len +
                       r.rx.udp_rx_no_port + r.rx.ip_rx_frag_dropped + r.rx.ip_rx_unknown_proto + r.rx.udp_rx_truncated;
    EXPECT_GT(dropped, r.st.corrupted / 2);
    EXPECT_LE(dropped, r.st.corrupted);
    // Every frame the link delivered is a valid datagram, a dropped corrupted one, or ARP.
    EXPECT_EQ(r.order.size() + dropped + r.rx.arp_rx, r.st.delivered);
    // Reordering and duplicates visible to the receiver.
    uint64_t inversions = 0, dups = 0;
    std::map<uint32_t, int> seen;
    for (size_t i = 0; i < r.order.size(); i++) {
        if (i && r.order[i] < r.order[i - 1])
            inversions++;
        if (seen[r.order[i]]++)
            dups++;
    }
    EXPECT_GT(inversions, n / 20);
    EXPECT_GT(dups, n / 20);
}

TEST(LossyLinkUdp, SameSeedSameRun)
{
    LinkParams p;
    p.loss = p.dup = p.reorder = p.corrupt = 0.05;
    p.jitter_ns = 50 * kUs;
    UdpRun a = udp_run(42, p, 3000, true);
    UdpRun b = udp_run(42, p, 3000, true);
    UdpRun c = udp_run(43, p, 3000, true);
    EXPECT_EQ(a.order, b.order);
    EXPECT_EQ(a.end_ns, b.end_ns);
    EXPECT_EQ(a.st.lost, b.st.lost);
    EXPECT_EQ(a.st.corrupted, b.st.corrupted);
    EXPECT_NE(a.order, c.order);
}

TEST(LossyLinkUdp, RateLimitSpacesFramesAndQueueDrops)
{
    // 1 Gbit/s: a 1514 B frame (+24 B wire overhead) takes 12.3 us; 500 datagrams need >= 6 ms.
    LinkParams p;
    p.rate_bps = 1000000000ull;
    UdpRun r = udp_run(3, p, 500, true, 1000);
    EXPECT_EQ(r.st.queue_drops, 0u);
    EXPECT_EQ(r.order.size(), 500u);
    uint64_t wire_ns = (r.st.bytes + 24 * r.st.frames) * 8;
    EXPECT_GE(r.end_ns, wire_ns);
    EXPECT_LT(r.end_ns, wire_ns + 2 * kMsV);
    // A 20 kB queue cannot absorb 500 back-to-back datagrams.
    p.queue_bytes = 20000;
    r = udp_run(3, p, 500, true, 1000);
    EXPECT_GT(r.st.queue_drops, 0u);
    EXPECT_EQ(r.order.size() + r.st.queue_drops, 500u);
}
