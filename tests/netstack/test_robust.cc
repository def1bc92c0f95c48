// Randomized robustness test: 100k seeded random and mutated frames of every kind the stack
// parses, on a virtual clock; no crash (run under ASan/UBSan), every frame we send stays
// well-formed, and every nsbuf is back in the pool at the end. NS_ROBUST_SEED picks the seed.
#include <cstdlib>
#include <random>

#include "harness.h"

namespace {

class NsRobust : public StackTest {
protected:
    std::mt19937_64 rng;
    uint32_t r(uint32_t n) { return n ? uint32_t(rng() % n) : 0; }
    be32_t peer_ip() { return NS_IP4(10, 0, 0, 2 + r(6)); }
    Mac peer_mac() { return Mac{0x02, 0, 0, 0, 0x10, uint8_t(2 + r(6))}; }
    Bytes rand_bytes(size_t n)
    {
        Bytes b(n);
        for (auto &x : b)
            x = uint8_t(rng());
        return b;
    }

    Bytes template_frame(uint16_t connected_port)
    {
        Mac pm = peer_mac();
        be32_t pip = peer_ip();
        Mac dst = r(4) ? kMacA : kBcast;
        switch (r(11)) {
        case 0:
            return eth_frame(kBcast, pm, NS_ETH_TYPE_ARP, arp_pkt(NS_ARP_OP_REQUEST, pm, pip, kZeroMac, ipA()));
        case 1:
            return eth_frame(kMacA, pm, NS_ETH_TYPE_ARP, arp_pkt(NS_ARP_OP_REPLY, pm, pip, kMacA, ipA()));
        case 2:
            return eth_frame(kBcast, pm, NS_ETH_TYPE_ARP, arp_pkt(NS_ARP_OP_REQUEST, pm, pip, kZeroMac, pip));
        case 3:
            return eth_frame(dst, pm, NS_ETH_TYPE_IPV4,
                             ipv4_pkt(pip, ipA(), 17, udp_pkt(pip, ipA(), uint16_t(1 + r(3)), 7000, rand_bytes(r(1400)), int(r(2)))));
        case 4:
            return eth_frame(dst, pm, NS_ETH_TYPE_IPV4,
                             ipv4_pkt(pip, ipA(), 17, udp_pkt(pip, ipA(), 1, uint16_t(8000 + r(3)), rand_bytes(r(100)))));
        case 5:
            return eth_frame(dst, pm, NS_ETH_TYPE_IPV4,
                             ipv4_pkt(pip, ipA(), 1, icmp_pkt(NS_ICMP_ECHO_REQUEST, 0, uint32_t(rng()), rand_bytes(r(1400)))));
        case 6: {
            Bytes quote = ipv4_pkt(ipA(), pip, 17, udp_pkt(ipA(), pip, connected_port, 4000, rand_bytes(r(20))));
            quote.resize(r(2) ? quote.size() : 28);
            return eth_frame(dst, pm, NS_ETH_TYPE_IPV4,
                             ipv4_pkt(pip, ipA(), 1, icmp_pkt(NS_ICMP_DEST_UNREACH, uint8_t(r(16)), 0, quote)));
        }
        case 7: {
            IpOpt o;
            o.options = rand_bytes(4 * r(11));
            return eth_frame(dst, pm, NS_ETH_TYPE_IPV4, ipv4_pkt(pip, ipA(), uint8_t(rng()), rand_bytes(r(200)), o));
        }
        case 8: {
            IpOpt o;
            o.frag = uint16_t(rng());
            return eth_frame(dst, pm, NS_ETH_TYPE_IPV4, ipv4_pkt(pip, ipA(), 17, udp_pkt(pip, ipA(), 1, 7000, rand_bytes(r(100))), o));
        }
        case 9:
            return eth_frame(dst, pm, NS_ETH_TYPE_IPV4, ipv4_pkt(pip, ipA(), 6, rand_bytes(20 + r(100))));
        default:
            return rand_bytes(r(1600));
        }
    }

    void mutate(Bytes &f)
    {
        uint32_t how = r(10);
        if (how < 6 && !f.empty()) {
            for (uint32_t k = 1 + r(4); k > 0; k--) {
                size_t pos = r(2) ? r(uint32_t(std::min<size_t>(f.size(), 64))) : r(uint32_t(f.size()));
                f[pos] = r(2) ? uint8_t(rng()) : uint8_t(f[pos] ^ (1u << r(8)));
            }
        } else if (how < 8) {
            f.resize(r(uint32_t(f.size()) + 1));
        } else if (how < 9) {
            Bytes junk = rand_bytes(r(64));
            f.insert(f.end(), junk.begin(), junk.end());
            if (f.size() > 1900)
                f.resize(1900);
        }
        // else: unmodified
    }

    void check_tx()
    {
        for (const Bytes &f : tx()) {
            Parsed p = parse(f);
            ASSERT_TRUE(p.ok);
            ASSERT_EQ(p.src, kMacA);
            if (p.type == NS_ETH_TYPE_IPV4) {
                ASSERT_TRUE(p.ip_ok) << "we sent a malformed IPv4 header";
                ASSERT_EQ(p.ip()->src, ipA());
                ASSERT_LE(p.l3.size(), 1500u);
                if (p.ip()->proto == NS_IPPROTO_ICMP)
                    ASSERT_EQ(ns_cksum_finish(ns_cksum_add(0, p.l4.data(), p.l4.size())), 0);
            } else {
                ASSERT_EQ(p.type, NS_ETH_TYPE_ARP);
                ASSERT_GE(p.l3.size(), 28u);
                ASSERT_EQ(p.arp()->spa, ipA());
            }
        }
    }
};

TEST_F(NsRobust, HundredThousandMutatedFrames)
{
    uint64_t seed = 20240501;
    if (const char *s = getenv("NS_ROBUST_SEED"))
        seed = strtoull(s, nullptr, 0);
    rng.seed(seed);
    SCOPED_TRACE("seed " + std::to_string(seed));

    int bound = udp_bound(7000);
    int conn = ns_udp_socket(ns);
    ns_sockaddr to = sa(ipB(), 4000);
    ASSERT_EQ(ns_udp_connect(ns, conn, &to), 0);
    ns_sockaddr local{};
    ns_udp_getsockname(ns, conn, &local);
    char buf[2048];
    for (int i = 0; i < 100000; i++) {
        Bytes f = template_frame(ns_ntoh16(local.port));
        mutate(f);
        ASSERT_TRUE(dev.inject(f));
        if (i % 32 == 31) {
            now += r(3) ? r(2 * kMs) : r(200) * kMs;
            if (r(4) == 0) {
                ns_sockaddr d = sa(peer_ip(), 9);
                ns_udp_sendto(ns, bound, "out", 3, &d);
                ns_udp_sendto(ns, conn, "c", 1, nullptr);
            }
            poll();
            while (ns_udp_recvfrom(ns, bound, buf, sizeof(buf), nullptr) != -EAGAIN) {}
            while (ns_udp_recvfrom(ns, conn, buf, sizeof(buf), nullptr) != -EAGAIN) {}
            struct ns_ping_reply pr;
            while (ns_ping_reply(ns, &pr) == 0) {}
            check_tx();
            if (HasFatalFailure())
                return;
        }
    }
    poll();
    check_tx();
    ns_stats s = stats();
    EXPECT_EQ(s.eth_rx, 100000u);
    // Some of everything got through the mutations.
    EXPECT_GT(s.udp_rx, 0u);
    EXPECT_GT(s.icmp_tx, 0u);
    EXPECT_GT(s.arp_replies_tx, 0u);
    EXPECT_GT(s.ip_rx_bad_cksum, 0u);
}

}  // namespace
