// IPv4 reassembly tests (netstack/ipv4_frag.c): order, duplicates, overlaps, timeout with ICMP
// time exceeded, the 65535-byte limit, memory limits and eviction, equal IDs from different
// sources, bad lengths. The harness checks after each test that every device buffer came back.
#include <algorithm>
#include <random>

#include "harness.h"
#include "tcp_harness.h"

extern "C" {
#include "../../netstack/internal.h"  // libos/core has an internal.h too
}

namespace {

const Mac kMacC = {0x02, 0, 0, 0, 0, 0x03};
be32_t ipC() { return NS_IP4(10, 0, 0, 3); }

struct Frag {
    uint32_t off;   // bytes
    uint32_t len;
    bool mf;
};

// Cut total bytes into pieces of the given sizes (multiples of 8 but the last), the rest in one.
std::vector<Frag> split(size_t total, const std::vector<uint32_t> &sizes)
{
    std::vector<Frag> out;
    uint32_t off = 0;
    for (uint32_t s : sizes) {
        if (off + s >= total)
            break;
        out.push_back({off, s, true});
        off += s;
    }
    out.push_back({off, uint32_t(total - off), false});
    return out;
}

std::vector<Frag> split_even(size_t total, uint32_t piece)
{
    return split(total, std::vector<uint32_t>(total / piece + 1, piece));
}

class NsFrag : public StackTest {
protected:
    void SetUp() override
    {
        StackTest::SetUp();
        learn_peer();
        sd = udp_bound(7000);
    }

    // One fragment of the datagram whose IP payload is l4, as a frame from (mac, src).
    Bytes frag_frame(const Frag &f, const Bytes &l4, uint16_t id = 0x4242, be32_t src = ipB(), const Mac &mac = kMacB,
                     uint8_t proto = NS_IPPROTO_UDP, const Bytes &options = {})
    {
        IpOpt o;
        o.frag = uint16_t((f.mf ? NS_IPV4_MF : 0) | (f.off / 8));
        o.options = options;
        Bytes slice(l4.begin() + long(f.off), l4.begin() + long(f.off + f.len));
        Bytes ip = ipv4_pkt(src, ipA(), proto, slice, o);
        ip[4] = uint8_t(id >> 8);
        ip[5] = uint8_t(id);
        ip[10] = ip[11] = 0;
        be16_t ck = ns_ipv4_cksum(ip.data(), unsigned(20 + options.size()));
        memcpy(&ip[10], &ck, 2);
        return eth_frame(kMacA, mac, NS_ETH_TYPE_IPV4, ip);
    }

    void send_frags(const std::vector<Frag> &fr, const Bytes &l4, uint16_t id = 0x4242, be32_t src = ipB(),
                    const Mac &mac = kMacB)
    {
        for (const Frag &f : fr)
            inject(frag_frame(f, l4, id, src, mac));
    }

    Bytes payload(size_t n, uint32_t seed = 1)
    {
        Bytes p(n);
        std::mt19937 rng(seed);
        for (auto &c : p)
            c = uint8_t(rng());
        return p;
    }

    // The next datagram on sd (empty if none) and its source.
    Bytes recv(be32_t *from = nullptr)
    {
        std::vector<uint8_t> buf(70000);
        ns_sockaddr src{};
        int n = ns_udp_recvfrom(ns, sd, buf.data(), buf.size(), &src);
        if (n < 0)
            return {};
        if (from)
            *from = src.addr;
        buf.resize(size_t(n));
        return buf;
    }

    int sd = -1;
};

TEST_F(NsFrag, InOrderSmallAndLarge)
{
    // 1000 bytes fit a device buffer (copied into one); 4000 do not (a large reassembly buffer).
    for (size_t n : {1000u, 4000u}) {
        Bytes data = payload(n, uint32_t(n));
        Bytes l4 = udp_pkt(ipB(), ipA(), 5555, 7000, data);
        send_frags(split_even(l4.size(), 512), l4, uint16_t(n));
        EXPECT_EQ(recv(), data) << n;
    }
    auto s = stats();
    EXPECT_EQ(s.ip_reasm_ok, 2u);
    EXPECT_EQ(s.ip_rx_frag_dropped, 0u);
    EXPECT_EQ(s.udp_rx_bad_cksum, 0u);
    EXPECT_EQ(ns->reasm.nactive, 0u);
    EXPECT_EQ(ns->reasm.pool.in_use, 0u);
    EXPECT_EQ(dev.pool.in_use, 0u);
}

TEST_F(NsFrag, ReverseOrder)
{
    Bytes data = payload(3000);
    Bytes l4 = udp_pkt(ipB(), ipA(), 5555, 7000, data);
    auto fr = split_even(l4.size(), 1480);
    std::reverse(fr.begin(), fr.end());
    send_frags(fr, l4);
    EXPECT_EQ(recv(), data);
    EXPECT_EQ(stats().ip_reasm_ok, 1u);
}

TEST_F(NsFrag, RandomOrderRandomSizes)
{
    for (uint32_t seed = 1; seed <= 40; seed++) {
        std::mt19937 rng(seed);
        size_t n = 1600 + rng() % 12000;  // always more than one fragment
        Bytes data = payload(n, seed);
        Bytes l4 = udp_pkt(ipB(), ipA(), 5555, 7000, data);
        std::vector<uint32_t> sizes;
        for (int i = 0; i < 64; i++)
            sizes.push_back(8 * (32 + rng() % 154));  // 256..1480
        auto fr = split(l4.size(), sizes);
        std::shuffle(fr.begin(), fr.end(), rng);
        send_frags(fr, l4, uint16_t(seed));
        ASSERT_EQ(recv(), data) << "seed " << seed;
    }
    EXPECT_EQ(stats().ip_reasm_ok, 40u);
    EXPECT_EQ(stats().ip_rx_frag_dropped, 0u);
}

TEST_F(NsFrag, DuplicatesAreIgnored)
{
    Bytes data = payload(2500);
    Bytes l4 = udp_pkt(ipB(), ipA(), 5555, 7000, data);
    auto fr = split_even(l4.size(), 1000);
    ASSERT_EQ(fr.size(), 3u);
    // Every fragment but the last twice, and a piece inside the first (all its bytes already here).
    for (size_t i = 0; i + 1 < fr.size(); i++) {
        inject(frag_frame(fr[i], l4));
        inject(frag_frame(fr[i], l4));
    }
    inject(frag_frame({8, 16, true}, l4));
    EXPECT_EQ(stats().ip_reasm_dup, 3u);
    EXPECT_TRUE(recv().empty());
    inject(frag_frame(fr.back(), l4));
    EXPECT_EQ(recv(), data);
    EXPECT_TRUE(recv().empty());
    EXPECT_EQ(stats().ip_reasm_ok, 1u);
}

TEST_F(NsFrag, PartialOverlapDiscardsTheDatagram)
{
    Bytes data = payload(2000);
    Bytes l4 = udp_pkt(ipB(), ipA(), 5555, 7000, data);
    inject(frag_frame({0, 1000, true}, l4));
    inject(frag_frame({992, 16, true}, l4));  // starts inside the first fragment, ends beyond it
    EXPECT_EQ(stats().ip_reasm_overlap, 1u);
    EXPECT_EQ(ns->reasm.nactive, 0u);
    // The rest arrives: a new, incomplete datagram, never a mix of the two.
    inject(frag_frame({1000, uint32_t(l4.size() - 1000), false}, l4));
    EXPECT_TRUE(recv().empty());
    EXPECT_EQ(stats().ip_reasm_ok, 0u);
    // The sender's retransmission (a new ID) goes through.
    send_frags(split_even(l4.size(), 1000), l4, 0x4343);
    EXPECT_EQ(recv(), data);
}

TEST_F(NsFrag, MissingFragmentTimesOutWithTimeExceeded)
{
    Bytes data = payload(3000);
    Bytes l4 = udp_pkt(ipB(), ipA(), 5555, 7000, data);
    auto fr = split_even(l4.size(), 1000);
    inject(frag_frame(fr[0], l4));
    inject(frag_frame(fr[2], l4));
    advance(NS_IP_REASM_TIMEOUT_MS - 1);
    EXPECT_TRUE(tx().empty());
    EXPECT_EQ(stats().ip_reasm_timeout, 0u);
    learn_peer();  // the ARP entry expired meanwhile
    advance(2);
    EXPECT_EQ(stats().ip_reasm_timeout, 1u);
    EXPECT_EQ(ns->reasm.nactive, 0u);
    auto out = tx();
    ASSERT_EQ(out.size(), 1u);
    Parsed p = parse(out[0]);
    ASSERT_TRUE(p.ip_ok);
    EXPECT_EQ(p.ip()->dst, ipB());
    ASSERT_GE(p.l4.size(), 8u + 20u + 8u);
    EXPECT_EQ(p.l4[0], NS_ICMP_TIME_EXCEEDED);
    EXPECT_EQ(p.l4[1], NS_ICMP_TIMXCEED_REASS);
    // The quote is the first fragment: its header (ID, offset 0) and the start of its data.
    const auto *q = reinterpret_cast<const ns_ipv4_hdr *>(&p.l4[8]);
    EXPECT_EQ(ns_ntoh16(q->id), 0x4242);
    EXPECT_EQ(ns_ntoh16(q->frag_off) & NS_IPV4_OFFMASK, 0);
    EXPECT_EQ(Bytes(p.l4.begin() + 28, p.l4.begin() + 36), Bytes(l4.begin(), l4.begin() + 8));
    // The missing piece coming late starts a new datagram, never a delivery.
    inject(frag_frame(fr[1], l4));
    EXPECT_TRUE(recv().empty());
}

TEST_F(NsFrag, TimeoutWithoutFirstFragmentSendsNothing)
{
    Bytes l4 = udp_pkt(ipB(), ipA(), 5555, 7000, payload(3000));
    auto fr = split_even(l4.size(), 1000);
    advance(NS_ARP_TTL_MS + 1);  // the peer's ARP entry gone: reassembly is the only timer
    EXPECT_EQ(ns_next_timer(ns), UINT64_MAX);
    inject(frag_frame(fr[1], l4));
    EXPECT_EQ(ns_next_timer(ns), now + NS_IP_REASM_TIMEOUT_MS * kMs);  // a caller may sleep until then
    inject(frag_frame(fr[2], l4));
    advance(NS_IP_REASM_TIMEOUT_MS);
    EXPECT_EQ(stats().ip_reasm_timeout, 1u);
    EXPECT_EQ(ns_next_timer(ns), UINT64_MAX);
    EXPECT_TRUE(tx().empty());
}

TEST_F(NsFrag, MaxSizeDatagramAndOneByteMore)
{
    // 65535 bytes in all: 20 header + 8 UDP + 65507 data.
    Bytes data = payload(65507);
    Bytes l4 = udp_pkt(ipB(), ipA(), 5555, 7000, data);
    send_frags(split_even(l4.size(), 1480), l4);
    struct nsbuf *b = nullptr;
    ns_sockaddr src{};
    ASSERT_EQ(ns_udp_recv_buf(ns, sd, &b, &src), int(data.size()));
    ASSERT_EQ(b->len, data.size());
    EXPECT_EQ(Bytes(b->data, b->data + b->len), data);
    EXPECT_EQ(ns->reasm.pool.in_use, 1u);  // zero copy: the large buffer itself
    ns_buf_free(ns, b);
    EXPECT_EQ(ns->reasm.pool.in_use, 0u);

    // A last fragment ending one byte further: 65536 bytes, dropped at once.
    Bytes l4b = l4;
    l4b.push_back(0);
    auto fr = split_even(l4b.size(), 1480);
    for (size_t i = 0; i + 1 < fr.size(); i++)
        inject(frag_frame(fr[i], l4b, 0x5000));
    EXPECT_EQ(ns->reasm.nactive, 1u);
    inject(frag_frame(fr.back(), l4b, 0x5000));
    EXPECT_EQ(stats().ip_reasm_too_big, 1u);
    EXPECT_EQ(ns->reasm.nactive, 0u);
    // The classic ping of death: one fragment at the largest offset.
    Bytes pod(65528 + 16, 0);
    inject(frag_frame({65528, 16, false}, pod, 0x5001));
    EXPECT_EQ(stats().ip_reasm_too_big, 2u);
    EXPECT_TRUE(recv().empty());
    EXPECT_EQ(stats().ip_reasm_ok, 1u);
}

TEST_F(NsFrag, FirstFragmentOptionsPushingPastTheLimit)
{
    // Later fragments say 65515 payload bytes; a first fragment with 40 option bytes makes 65575.
    Bytes l4(65515, 0x55);
    auto fr = split_even(l4.size(), 1480);
    for (size_t i = 1; i < fr.size(); i++)
        inject(frag_frame(fr[i], l4));
    inject(frag_frame(fr[0], l4, 0x4242, ipB(), kMacB, NS_IPPROTO_UDP, Bytes(40, 1)));
    EXPECT_EQ(stats().ip_reasm_too_big, 1u);
    EXPECT_EQ(stats().ip_reasm_ok, 0u);
    EXPECT_EQ(ns->reasm.nactive, 0u);
}

TEST_F(NsFrag, FirstFragmentOptionsAreKept)
{
    Bytes data = payload(1500);
    Bytes l4 = udp_pkt(ipB(), ipA(), 5555, 7000, data);
    auto fr = split_even(l4.size(), 800);
    inject(frag_frame(fr[1], l4));
    inject(frag_frame(fr[0], l4, 0x4242, ipB(), kMacB, NS_IPPROTO_UDP, {1, 1, 1, 0}));
    EXPECT_EQ(recv(), data);
}

TEST_F(NsFrag, TableFullEvictsTheOldest)
{
    Bytes l4 = udp_pkt(ipB(), ipA(), 5555, 7000, payload(3000));
    auto fr = split_even(l4.size(), 1480);
    ASSERT_EQ(fr.size(), 3u);
    // One datagram more than the table holds, each missing its middle piece.
    for (uint16_t id = 0; id <= NS_IP_REASM_MAX_DATAGRAMS; id++) {
        inject(frag_frame(fr[0], l4, id));
        inject(frag_frame(fr[2], l4, id));
        advance(1);
    }
    EXPECT_EQ(stats().ip_reasm_evicted, 1u);
    EXPECT_EQ(ns->reasm.nactive, uint32_t(NS_IP_REASM_MAX_DATAGRAMS));
    EXPECT_EQ(dev.pool.in_use, 0u) << "reassembly holds no device buffer";
    // ID 0 was evicted: its middle piece alone cannot complete it (and evicts ID 1).
    inject(frag_frame(fr[1], l4, 0));
    EXPECT_TRUE(recv().empty());
    // The newest ones complete.
    inject(frag_frame(fr[1], l4, NS_IP_REASM_MAX_DATAGRAMS));
    EXPECT_EQ(recv().size(), 3000u);
    EXPECT_EQ(stats().ip_reasm_evicted, 2u);
}

TEST_F(NsFrag, LargeBuffersHeldBySocketsAreNotTaken)
{
    // Large datagrams nobody reads keep every large buffer.
    Bytes data = payload(4000);
    Bytes l4 = udp_pkt(ipB(), ipA(), 5555, 7000, data);
    auto fr = split_even(l4.size(), 1480);
    for (uint16_t id = 0; id < NS_IP_REASM_BUFS; id++)
        send_frags(fr, l4, id);
    EXPECT_EQ(ns_udp_rx_pending(ns, sd), NS_IP_REASM_BUFS);
    EXPECT_EQ(ns->reasm.pool.in_use, uint32_t(NS_IP_REASM_BUFS));
    // The next one finds no buffer: its fragments are dropped, counted.
    send_frags(fr, l4, 0x7777);
    EXPECT_EQ(ns_udp_rx_pending(ns, sd), NS_IP_REASM_BUFS);
    EXPECT_EQ(stats().ip_reasm_nomem, fr.size());
    EXPECT_EQ(stats().ip_rx_frag_dropped, fr.size());
    // Reading one frees one.
    EXPECT_EQ(recv(), data);
    send_frags(fr, l4, 0x7778);
    EXPECT_EQ(ns_udp_rx_pending(ns, sd), NS_IP_REASM_BUFS);
    // Closing the socket returns them all (TearDown's leak check covers the rest).
    ns_udp_close(ns, sd);
    EXPECT_EQ(ns->reasm.pool.in_use, 0u);
}

TEST_F(NsFrag, SameIdFromTwoSourcesInterleaved)
{
    inject(eth_frame(kBcast, kMacC, NS_ETH_TYPE_ARP, arp_pkt(NS_ARP_OP_REQUEST, kMacC, ipC(), kZeroMac, ipA())));
    tx();
    Bytes dB = payload(3000, 11), dC = payload(3000, 22);
    Bytes lB = udp_pkt(ipB(), ipA(), 5555, 7000, dB), lC = udp_pkt(ipC(), ipA(), 5555, 7000, dC);
    auto fr = split_even(lB.size(), 1000);
    for (size_t i = 0; i < fr.size(); i++) {
        inject(frag_frame(fr[i], lB, 0x1234, ipB(), kMacB));
        inject(frag_frame(fr[fr.size() - 1 - i], lC, 0x1234, ipC(), kMacC));
    }
    be32_t from1 = 0, from2 = 0;
    Bytes r1 = recv(&from1), r2 = recv(&from2);
    EXPECT_EQ(from1 == ipB() ? r1 : r2, dB);
    EXPECT_EQ(from1 == ipB() ? r2 : r1, dC);
    EXPECT_NE(from1, from2);
    // Same source and ID but another protocol is another datagram too.
    Bytes icmp = icmp_pkt(NS_ICMP_ECHO_REQUEST, 0, 0x00010001, payload(992));
    inject(frag_frame({0, 504, true}, icmp, 0x1234, ipB(), kMacB, NS_IPPROTO_ICMP));
    inject(frag_frame({0, 504, true}, lB, 0x1234));
    inject(frag_frame({504, uint32_t(icmp.size() - 504), false}, icmp, 0x1234, ipB(), kMacB, NS_IPPROTO_ICMP));
    auto out = tx();
    ASSERT_EQ(out.size(), 1u);  // the echo reply, one unfragmented datagram
    Parsed p = parse(out[0]);
    ASSERT_TRUE(p.ip_ok);
    EXPECT_EQ(p.l4[0], NS_ICMP_ECHO_REPLY);
    EXPECT_EQ(Bytes(p.l4.begin() + 8, p.l4.end()), Bytes(icmp.begin() + 8, icmp.end()));
    EXPECT_EQ(ns->reasm.nactive, 1u);  // the UDP piece waits
}

TEST_F(NsFrag, BadLengthsAndInconsistentEnds)
{
    Bytes l4 = udp_pkt(ipB(), ipA(), 5555, 7000, payload(3000));
    inject(frag_frame({0, 1001, true}, l4));  // not the last, not a multiple of 8
    inject(frag_frame({0, 0, true}, l4));     // empty
    EXPECT_EQ(stats().ip_reasm_bad_len, 2u);
    EXPECT_EQ(ns->reasm.nactive, 0u);
    // Two last fragments ending in different places.
    inject(frag_frame({0, 1000, true}, l4, 1));
    inject(frag_frame({2000, 1008, false}, l4, 1));
    inject(frag_frame({1000, 1000, false}, l4, 1));
    EXPECT_EQ(stats().ip_reasm_inconsistent, 1u);
    EXPECT_EQ(ns->reasm.nactive, 0u);
    // A piece past the known end.
    inject(frag_frame({1000, 1000, false}, l4, 2));
    inject(frag_frame({2000, 1000, true}, l4, 2));
    EXPECT_EQ(stats().ip_reasm_inconsistent, 2u);
    EXPECT_TRUE(recv().empty());
    EXPECT_EQ(stats().ip_rx_frag_dropped, 4u);
}

TEST_F(NsFrag, TooManyPiecesDiscardsTheDatagram)
{
    Bytes l4(16 * (NS_IP_REASM_MAX_RANGES + 1), 0);
    // Every other 8-byte block: each one a separate range.
    for (uint32_t i = 0; i <= NS_IP_REASM_MAX_RANGES; i++)
        inject(frag_frame({16 * i, 8, true}, l4));
    EXPECT_EQ(stats().ip_reasm_too_fragmented, 1u);
    EXPECT_EQ(ns->reasm.nactive, 0u);
}

// TCP segments a middlebox fragmented reach the connection whole, through both delivery paths
// (copied into a device buffer, and the large buffer queued zero copy in the receive queue).
class TcpFrag : public TcpTest {};

TEST_F(TcpFrag, FragmentedSegmentsAreReceived)
{
    int sd = open_passive();
    std::string want;
    uint16_t id = 100;
    for (size_t n : {1000u, 3000u}) {
        Bytes data(n);
        for (size_t i = 0; i < n; i++)
            data[i] = uint8_t('a' + (i + n) % 26);
        Bytes l4 = tcp_pkt(ipB(), ipA(), pport, lport, pseq, snd, NS_TCP_ACK | NS_TCP_PSH, 65535, {}, data);
        auto fr = split_even(l4.size(), 512);
        std::reverse(fr.begin(), fr.end());
        for (const Frag &f : fr) {
            IpOpt o;
            o.frag = uint16_t((f.mf ? NS_IPV4_MF : 0) | (f.off / 8));
            Bytes ip = ipv4_pkt(ipB(), ipA(), NS_IPPROTO_TCP, Bytes(l4.begin() + long(f.off),
                                                                   l4.begin() + long(f.off + f.len)), o);
            ip[4] = uint8_t(id >> 8);
            ip[5] = uint8_t(id);
            ip[10] = ip[11] = 0;
            be16_t ck = ns_ipv4_cksum(ip.data(), 20);
            memcpy(&ip[10], &ck, 2);
            inject(eth_frame(kMacA, kMacB, NS_ETH_TYPE_IPV4, ip));
        }
        id++;
        pseq += uint32_t(n);
        want += std::string(data.begin(), data.end());
    }
    EXPECT_EQ(stats().ip_reasm_ok, 2u);
    EXPECT_EQ(recv_all(sd), want);
    EXPECT_EQ(ns->reasm.pool.in_use, 0u);
    ns_tcp_close(ns, sd);
}

TEST_F(NsFrag, BroadcastFragmentsGetNoTimeExceeded)
{
    Bytes l4 = udp_pkt(ipB(), NS_IPV4_BCAST, 5555, 7000, payload(2000));
    IpOpt o;
    o.frag = NS_IPV4_MF;
    Bytes first(l4.begin(), l4.begin() + 1000);
    inject(eth_frame(kBcast, kMacB, NS_ETH_TYPE_IPV4, ipv4_pkt(ipB(), NS_IPV4_BCAST, NS_IPPROTO_UDP, first, o)));
    EXPECT_EQ(ns->reasm.nactive, 1u);
    advance(NS_IP_REASM_TIMEOUT_MS + 1);
    EXPECT_EQ(stats().ip_reasm_timeout, 1u);
    EXPECT_TRUE(tx().empty());
}

}  // namespace
