// Transfers between two netstacks over the lossy link (lossy_link.h) on a virtual clock.
// LossyLinkUdp checks the link itself with UDP datagrams (loss, duplication, reordering,
// corruption caught by checksums, rate limit, determinism per seed). TcpTransfer moves 64 MiB
// each way at once (random write and read sizes, a quarter of the reads zero-copy) over a clean
// link, a bottleneck, 10% loss+dup+reordering, and that plus jitter and corruption, with NewReno
// and CUBIC: byte-exact, both EOFs, clean close, bounded virtual time and iterations (else a dump
// of ns_tcp_info, link and stack counters), and no buffer left in either pool afterwards.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
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

// ---- TCP: 64 MiB each way at once, byte-exact, over clean and impaired links, both algorithms.

#ifndef NS_TRANSFER_MIB
#define NS_TRANSFER_MIB 64  // bytes each way; a build may predefine less (64 MiB takes ~3 s under ASan)
#endif

namespace {

// Byte i of stream `key`: position-addressable, so a misplaced segment cannot match.
void fill_content(uint64_t key, uint64_t off, uint8_t *out, size_t n)
{
    while (n) {
        uint64_t w = off / 8;
        uint64_t s = key ^ (w * 0x9e3779b97f4a7c15ull);
        uint64_t v = splitmix64(s);
        size_t first = size_t(off % 8), take = std::min<size_t>(8 - first, n);
        for (size_t i = 0; i < take; i++)
            out[i] = uint8_t(v >> (8 * (first + i)));
        out += take;
        off += take;
        n -= take;
    }
}

// 1 .. 64 KiB, log-uniform: many tiny writes and reads as well as large ones.
size_t random_size(uint64_t &rng)
{
    uint64_t r = splitmix64(rng);
    return 1 + size_t((r >> 8) % (1ull << (r % 17)));
}

const char *state_name(ns_tcp_state s)
{
    static const char *n[] = {"CLOSED", "LISTEN", "SYN_SENT", "SYN_RECEIVED", "ESTABLISHED", "FIN_WAIT_1",
                              "FIN_WAIT_2", "CLOSE_WAIT", "CLOSING", "LAST_ACK", "TIME_WAIT"};
    return unsigned(s) < sizeof(n) / sizeof(n[0]) ? n[s] : "?";
}

std::string info_str(const struct ns_tcp_info &i)
{
    std::ostringstream o;
    o << state_name(i.state) << " mss " << i.snd_mss << "/" << i.rcv_mss << " wscale " << int(i.snd_wscale) << "/"
      << int(i.rcv_wscale) << " ts " << i.ts_ok << " sack " << i.sack_ok << " cc " << i.cc << " cwnd " << i.cwnd
      << " ssthresh " << i.ssthresh << " srtt_us " << i.srtt_us << " rttvar_us " << i.rttvar_us << " rto_ms "
      << i.rto_ms << " snd_wnd " << i.snd_wnd << " rcv_wnd " << i.rcv_wnd << " unacked " << i.unacked << " sndq "
      << i.sndq << " rcvq " << i.rcvq << " retrans " << i.retransmits << " rto_events " << i.rto_events
      << " fast_retrans " << i.fast_retransmits;
    return o.str();
}

struct Peer {
    struct netstack *ns = nullptr;
    int sd = -1;                 // connected socket
    int lsd = -1;                // listener (side 1)
    bool connected = false, shut = false, eof = false, closed = false;
    uint64_t total = 0, sent = 0, rcvd = 0;
    uint64_t tx_key = 0, rx_key = 0;
    uint64_t rng = 0;
    std::vector<uint8_t> chunk;  // content [sent, sent + chunk.size() - chunk_off) waiting for send space
    size_t chunk_off = 0;
    std::vector<uint8_t> rbuf, expect;
    std::string error;
    struct ns_tcp_info last{};
    struct ns_tcp_info final_info{};

    void fail(const std::string &what, int rc)
    {
        if (error.empty())
            error = what + " returned " + std::to_string(rc) + " (" + strerror(-rc) + ")";
    }

    bool verify(const uint8_t *p, size_t n)
    {
        expect.resize(n);
        fill_content(rx_key, rcvd, expect.data(), n);
        if (memcmp(p, expect.data(), n) != 0) {
            size_t at = 0;
            while (p[at] == expect[at])
                at++;
            if (error.empty())
                error = "byte mismatch at offset " + std::to_string(rcvd + at);
            return false;
        }
        rcvd += n;
        return true;
    }

    // Everything this side's user would do now; true if it made progress.
    bool work()
    {
        if (!error.empty() || closed)
            return false;
        bool progress = false;
        if (sd < 0) {
            ns_sockaddr peer;
            int rc = ns_tcp_accept(ns, lsd, &peer);
            if (rc == -EAGAIN)
                return false;
            if (rc < 0) {
                fail("accept", rc);
                return false;
            }
            sd = rc;
            connected = true;
            progress = true;
        }
        if (!connected) {
            int ev = ns_tcp_events(ns, sd);
            if (ev < 0) {
                fail("events", ev);
                return false;
            }
            if (!(ev & NS_EV_OUT))
                return false;
            int err = -1;
            int rc = ns_tcp_getsockopt(ns, sd, NS_SO_ERROR, &err);
            if (rc != 0 || err != 0) {
                fail("connect (SO_ERROR)", rc ? rc : -err);
                return false;
            }
            connected = true;
            progress = true;
        }
        // Send: keep a chunk of random size until the stack took all of it.
        while (sent < total) {
            if (chunk_off == chunk.size()) {
                size_t n = std::min<uint64_t>(random_size(rng), total - sent);
                chunk.resize(n);
                fill_content(tx_key, sent, chunk.data(), n);
                chunk_off = 0;
            }
            int rc = ns_tcp_send(ns, sd, chunk.data() + chunk_off, chunk.size() - chunk_off);
            if (rc == -EAGAIN)
                break;
            if (rc <= 0) {
                fail("send", rc);
                return progress;
            }
            chunk_off += size_t(rc);
            sent += uint64_t(rc);
            progress = true;
        }
        if (sent == total && !shut) {
            int rc = ns_tcp_shutdown(ns, sd, 1);
            if (rc != 0) {
                fail("shutdown(WR)", rc);
                return progress;
            }
            shut = true;
            progress = true;
        }
        // Receive, a quarter of the reads zero-copy.
        while (!eof) {
            if (splitmix64(rng) % 4 == 0) {
                struct nsbuf *b = nullptr;
                int rc = ns_tcp_recv_buf(ns, sd, &b);
                if (rc == -EAGAIN)
                    break;
                if (rc < 0) {
                    fail("recv_buf", rc);
                    return progress;
                }
                progress = true;
                if (!b) {
                    eof = true;
                    break;
                }
                bool ok = b->len > 0 && verify(b->data, b->len);
                if (b->len == 0 && error.empty())
                    error = "recv_buf gave an empty buffer before EOF";
                ns_buf_free(ns, b);
                if (!ok)
                    return progress;
                continue;
            }
            rbuf.resize(random_size(rng));
            int rc = ns_tcp_recv(ns, sd, rbuf.data(), rbuf.size());
            if (rc == -EAGAIN)
                break;
            if (rc < 0) {
                fail("recv", rc);
                return progress;
            }
            progress = true;
            if (rc == 0) {
                eof = true;
                break;
            }
            if (!verify(rbuf.data(), size_t(rc)))
                return progress;
        }
        if (eof && rcvd != total && error.empty())
            error = "EOF after " + std::to_string(rcvd) + " of " + std::to_string(total) + " bytes";
        // Close once both FINs are through and ours is acknowledged.
        if (eof && shut) {
            int rc = ns_tcp_info(ns, sd, &last);
            if (rc != 0) {
                fail("info", rc);
                return progress;
            }
            if ((last.state == NS_TCP_TIME_WAIT || last.state == NS_TCP_CLOSED) && last.unacked == 0 &&
                last.sndq == 0) {
                final_info = last;
                rc = ns_tcp_close(ns, sd);
                if (rc != 0)
                    fail("close", rc);
                closed = true;
                progress = true;
            }
        }
        return progress;
    }

    std::string dump(int side) const
    {
        std::ostringstream o;
        o << "side " << side << ": sent " << sent << "/" << total << " rcvd " << rcvd << " connected " << connected
          << " shut " << shut << " eof " << eof << " closed " << closed;
        if (!error.empty())
            o << " ERROR: " << error;
        struct ns_tcp_info i{};
        if (sd >= 0 && !closed && ns_tcp_info(ns, sd, &i) == 0)
            o << "\n  info: " << info_str(i);
        else if (closed)
            o << "\n  info at close: " << info_str(final_info);
        o << "\n";
        return o.str();
    }
};

struct Scenario {
    const char *name;
    LinkParams p;
    ns_cc_algo cc;
    uint64_t max_virtual_ns;
    uint64_t max_iters;
};

LinkParams impaired(bool jitter_and_corruption)
{
    LinkParams p;
    p.loss = p.dup = p.reorder = 0.10;
    p.delay_ns = 100 * kUs;
    if (jitter_and_corruption) {
        p.delay_ns = 500 * kUs;
        p.jitter_ns = 500 * kUs;
        p.corrupt = 0.10;
    }
    return p;
}

// One impairment at a time, for narrowing a failure down.
LinkParams only(int which)
{
    LinkParams p;
    p.delay_ns = 100 * kUs;
    (which == 0 ? p.loss : which == 1 ? p.dup : which == 2 ? p.reorder : p.corrupt) = 0.10;
    return p;
}

// A 1 Gbit/s bottleneck with a 64 KiB queue each way: losses come only from queue overflow, so
// the congestion controller's window decides how often.
LinkParams bottleneck()
{
    LinkParams p;
    p.delay_ns = 100 * kUs;
    p.rate_bps = 1000000000ull;
    p.queue_bytes = 64 * 1024;
    return p;
}

LinkParams clean()
{
    LinkParams p;
    p.delay_ns = 100 * kUs;
    return p;
}

void PrintTo(const Scenario &s, std::ostream *os) { *os << s.name; }

class TcpTransfer : public ::testing::TestWithParam<Scenario> {};

}  // namespace

TEST_P(TcpTransfer, BothWaysAtOnce)
{
    const Scenario &sc = GetParam();
    const uint64_t total = uint64_t(NS_TRANSFER_MIB) << 20;
    auto lp = std::make_unique<LinkPair>(0xc0ffee ^ uint64_t(sc.cc), sc.p, sc.p, sc.cc);
    Peer peer[2];
    for (int i = 0; i < 2; i++) {
        peer[i].ns = lp->ns[i];
        peer[i].total = total;
        peer[i].tx_key = 0x1000 + uint64_t(i);
        peer[i].rx_key = 0x1000 + uint64_t(1 - i);
        peer[i].rng = 77 + uint64_t(i);
    }
    int probe = ns_tcp_socket(lp->ns[1]);
    if (probe == -ENOSYS)
        GTEST_SKIP() << "TCP not implemented yet (tcp_stub.c)";
    ASSERT_GE(probe, 0);
    peer[1].lsd = probe;
    ns_sockaddr l = addr_of(1, 5001);
    ASSERT_EQ(ns_tcp_bind(lp->ns[1], probe, &l), 0);
    ASSERT_EQ(ns_tcp_listen(lp->ns[1], probe, 4), 0);
    int c = ns_tcp_socket(lp->ns[0]);
    ASSERT_GE(c, 0);
    ASSERT_EQ(ns_tcp_setsockopt(lp->ns[0], c, NS_TCP_CONGESTION, int(sc.cc)), 0);
    ASSERT_EQ(ns_tcp_connect(lp->ns[0], c, &l), -EINPROGRESS);
    peer[0].sd = c;

    auto app = [&]() {
        bool p0 = peer[0].work();
        bool p1 = peer[1].work();
        return p0 || p1;
    };
    auto done = [&]() {
        return (peer[0].closed && peer[1].closed) || !peer[0].error.empty() || !peer[1].error.empty();
    };
    std::string why;
    bool ok = lp->run(app, done, sc.max_virtual_ns, sc.max_iters, &why);
    std::string diag = why + "\n" + peer[0].dump(0) + peer[1].dump(1) + lp->link.describe() + lp->stack_counters(0) +
                       lp->stack_counters(1) + "virtual ms " + std::to_string((lp->link.now - lp->start_ns) / kMsV) +
                       " iterations " + std::to_string(lp->iters);
    ASSERT_TRUE(ok) << diag;
    ASSERT_TRUE(peer[0].error.empty() && peer[1].error.empty()) << diag;
    for (auto &p : peer) {
        EXPECT_EQ(p.sent, total);
        EXPECT_EQ(p.rcvd, total);
        EXPECT_TRUE(p.eof);
        EXPECT_EQ(p.final_info.cc, sc.cc) << diag;
    }
    // Accepted sockets inherit the stack's default algorithm; the connector chose sc.cc.
    ASSERT_EQ(ns_tcp_close(lp->ns[1], peer[1].lsd), 0);
    // TIME_WAIT and every other timer run out; then the stacks hold no buffer at all.
    lp->idle_for(300 * kSecV);
    EXPECT_EQ(lp->link.in_flight(), 0u) << diag;
    EXPECT_EQ(lp->link.pool(0)->in_use, 0u) << "buffers held by stack 0 after everything closed\n" << diag;
    EXPECT_EQ(lp->link.pool(1)->in_use, 0u) << "buffers held by stack 1 after everything closed\n" << diag;
    std::cout << "[ stats    ] " << sc.name << ": virtual " << (lp->link.now - lp->start_ns) / kMsV << " ms, "
              << lp->iters << " iterations, retransmits " << peer[0].final_info.retransmits << "/"
              << peer[1].final_info.retransmits << ", rto " << peer[0].final_info.rto_events << "/"
              << peer[1].final_info.rto_events << "\n";
    lp.reset();
}

std::string scenario_name(const ::testing::TestParamInfo<Scenario> &i) { return std::string(i.param.name); }

INSTANTIATE_TEST_SUITE_P(Clean, TcpTransfer,
                         ::testing::Values(Scenario{"NewReno", clean(), NS_CC_NEWRENO, 600 * kSecV, 20000000},
                                           Scenario{"Cubic", clean(), NS_CC_CUBIC, 600 * kSecV, 20000000}),
                         scenario_name);
// A queue-overflow bottleneck; 10% loss + 10% duplication + 10% reordering; the same plus 0.5-1 ms
// delay with jitter and 10% corruption.
// The bounds only catch hangs: RTOs (200 ms minimum on a 0.2 ms RTT) dominate virtual time here.
constexpr uint64_t kImpairedVirtual = 6 * 3600 * kSecV, kImpairedIters = 30000000;
INSTANTIATE_TEST_SUITE_P(
    Impaired, TcpTransfer,
    ::testing::Values(Scenario{"BottleneckNewReno", bottleneck(), NS_CC_NEWRENO, kImpairedVirtual, kImpairedIters},
                      Scenario{"BottleneckCubic", bottleneck(), NS_CC_CUBIC, kImpairedVirtual, kImpairedIters},
                      Scenario{"LossDupReorderNewReno", impaired(false), NS_CC_NEWRENO, kImpairedVirtual, kImpairedIters},
                      Scenario{"LossDupReorderCubic", impaired(false), NS_CC_CUBIC, kImpairedVirtual, kImpairedIters},
                      Scenario{"JitterCorruptNewReno", impaired(true), NS_CC_NEWRENO, kImpairedVirtual, kImpairedIters},
                      Scenario{"JitterCorruptCubic", impaired(true), NS_CC_CUBIC, kImpairedVirtual, kImpairedIters}),
    scenario_name);
// Always disabled: one impairment at a time, to narrow a failure down (NS_LINK_TRACE=1 prints every frame).
INSTANTIATE_TEST_SUITE_P(
    DISABLED_Single, TcpTransfer,
    ::testing::Values(Scenario{"LossOnly", only(0), NS_CC_NEWRENO, kImpairedVirtual, kImpairedIters},
                      Scenario{"DupOnly", only(1), NS_CC_NEWRENO, kImpairedVirtual, kImpairedIters},
                      Scenario{"ReorderOnly", only(2), NS_CC_NEWRENO, kImpairedVirtual, kImpairedIters},
                      Scenario{"CorruptOnly", only(3), NS_CC_NEWRENO, kImpairedVirtual, kImpairedIters}),
    scenario_name);
