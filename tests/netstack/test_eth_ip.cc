// Ethernet and IPv4 input validation and output tests on one stack and a fake peer:
// truncation at every length, bad headers, TTL, fragments, addressing, DF/MTU, routing.
#include "harness.h"

namespace {

class NsEthIp : public StackTest {
protected:
    void SetUp() override
    {
        StackTest::SetUp();
        sd = udp_bound(7000);
    }
    Bytes good_udp_frame(const IpOpt &o = IpOpt())
    {
        return from_peer_ip(NS_IPPROTO_UDP, udp_pkt(ipB(), ipA(), 5555, 7000, str_bytes("payload")), o);
    }
    int delivered() { return ns_udp_rx_pending(ns, sd); }
    uint64_t drops()
    {
        ns_stats s = stats();
        uint64_t d = 0;
        for (size_t i = 0; i < NS_STATS_COUNT; i++) {
            std::string n = ns_stats_name(i);
            if (n.find("_rx_") != std::string::npos && n != "udp_rx")
                d += ns_stats_value(&s, i);
        }
        return d;
    }
    int sd = -1;
};

TEST_F(NsEthIp, GoodFrameIsDelivered)
{
    inject(good_udp_frame());
    EXPECT_EQ(delivered(), 1);
    char buf[64];
    ns_sockaddr src{};
    ASSERT_EQ(ns_udp_recvfrom(ns, sd, buf, sizeof(buf), &src), 7);
    EXPECT_EQ(std::string(buf, 7), "payload");
    EXPECT_EQ(src.addr, ipB());
    EXPECT_EQ(ns_ntoh16(src.port), 5555);
    EXPECT_EQ(stats().eth_rx, 1u);
}

TEST_F(NsEthIp, TruncatedAtEveryLengthIsDroppedAndCounted)
{
    Bytes f = good_udp_frame();
    for (size_t n = 0; n < f.size(); n++) {
        uint64_t before = drops();
        inject(Bytes(f.begin(), f.begin() + long(n)));
        ASSERT_EQ(delivered(), 0) << "length " << n;
        ASSERT_EQ(drops(), before + 1) << "length " << n << " dropped without a counter";
    }
    EXPECT_EQ(stats().eth_rx_truncated, 14u);
    EXPECT_TRUE(tx().empty()) << "no ICMP about truncated garbage";
}

TEST_F(NsEthIp, EthernetPaddingIsNotPayload)
{
    Bytes f = from_peer_ip(NS_IPPROTO_UDP, udp_pkt(ipB(), ipA(), 5555, 7000, str_bytes("x")));
    ASSERT_LT(f.size(), 60u);
    f.resize(60, 0xee);
    inject(f);
    char buf[64];
    EXPECT_EQ(ns_udp_recvfrom(ns, sd, buf, sizeof(buf), nullptr), 1);
}

TEST_F(NsEthIp, EthernetFilters)
{
    Bytes ip = ipv4_pkt(ipB(), ipA(), NS_IPPROTO_UDP, udp_pkt(ipB(), ipA(), 5555, 7000, str_bytes("a")));
    inject(eth_frame(kMacOther, kMacB, NS_ETH_TYPE_IPV4, ip));
    Mac mc = {0x01, 0x00, 0x5e, 0, 0, 1};
    inject(eth_frame(mc, kMacB, NS_ETH_TYPE_IPV4, ip));
    EXPECT_EQ(stats().eth_rx_not_for_us, 2u);
    inject(eth_frame(kMacA, mc, NS_ETH_TYPE_IPV4, ip));
    inject(eth_frame(kMacA, kMacA, NS_ETH_TYPE_IPV4, ip));
    EXPECT_EQ(stats().eth_rx_bad_src, 2u);
    inject(eth_frame(kMacA, kMacB, NS_ETH_TYPE_IPV6, ip));
    inject(eth_frame(kMacA, kMacB, NS_ETH_TYPE_VLAN, ip));
    EXPECT_EQ(stats().eth_rx_unknown_type, 2u);
    EXPECT_EQ(delivered(), 0);
}

TEST_F(NsEthIp, BadHeadersAreDropped)
{
    IpOpt o;
    o.version = 6;
    inject(good_udp_frame(o));
    EXPECT_EQ(stats().ip_rx_bad_version, 1u);

    for (int ihl : {0, 1, 4}) {
        o = IpOpt();
        o.ihl = ihl;
        inject(good_udp_frame(o));
    }
    o = IpOpt();
    o.ihl = 15;  // 60 bytes of header in a 35-byte datagram
    inject(eth_frame(kMacA, kMacB, NS_ETH_TYPE_IPV4, ipv4_pkt(ipB(), ipA(), 17, Bytes(15, 0), o)));
    EXPECT_EQ(stats().ip_rx_bad_ihl, 4u);

    o = IpOpt();
    o.tot = 2000;
    inject(good_udp_frame(o));
    o.tot = 19;
    inject(good_udp_frame(o));
    EXPECT_EQ(stats().ip_rx_bad_len, 2u);

    o = IpOpt();
    o.bad_cksum = true;
    inject(good_udp_frame(o));
    EXPECT_EQ(stats().ip_rx_bad_cksum, 1u);
    EXPECT_EQ(delivered(), 0);
    EXPECT_TRUE(tx().empty());
}

TEST_F(NsEthIp, DeviceChecksumOffloadIsHonoured)
{
    IpOpt o;
    o.bad_cksum = true;
    ASSERT_TRUE(dev.inject(good_udp_frame(o)));
    dev.rxq.back()->flags = NSBUF_RX_IP_CKSUM_GOOD;  // the device vouches for it
    poll();
    EXPECT_EQ(delivered(), 1);
    ASSERT_TRUE(dev.inject(good_udp_frame()));
    dev.rxq.back()->flags = NSBUF_RX_IP_CKSUM_BAD;
    poll();
    EXPECT_EQ(stats().ip_rx_bad_cksum, 1u);
    EXPECT_EQ(delivered(), 1);
}

TEST_F(NsEthIp, TtlZeroDroppedTtlOneAccepted)
{
    IpOpt o;
    o.ttl = 0;
    inject(good_udp_frame(o));
    EXPECT_EQ(stats().ip_rx_ttl_zero, 1u);
    EXPECT_EQ(delivered(), 0);
    o.ttl = 1;
    inject(good_udp_frame(o));
    EXPECT_EQ(delivered(), 1);
}

// Reassembly itself is tested in test_frag.cc; here: a piece is never delivered as a whole.
TEST_F(NsEthIp, FragmentsAreNeverDeliveredAlone)
{
    for (uint16_t frag : {uint16_t(NS_IPV4_MF), uint16_t(1), uint16_t(NS_IPV4_MF | 100), uint16_t(185)}) {
        IpOpt o;
        o.frag = frag;
        inject(good_udp_frame(o));
    }
    EXPECT_EQ(stats().ip_reasm_frags, 4u);
    EXPECT_EQ(stats().ip_reasm_ok, 0u);
    EXPECT_EQ(delivered(), 0);
    EXPECT_TRUE(tx().empty());
    IpOpt o;
    o.frag = 0;  // DF clear, not a fragment
    inject(good_udp_frame(o));
    EXPECT_EQ(delivered(), 1);
}

TEST_F(NsEthIp, OptionsAreSkipped)
{
    IpOpt o;
    o.options = {1, 1, 1, 0};  // NOP NOP NOP EOL
    inject(good_udp_frame(o));
    char buf[16];
    EXPECT_EQ(ns_udp_recvfrom(ns, sd, buf, sizeof(buf), nullptr), 7);
}

TEST_F(NsEthIp, Addressing)
{
    Bytes l4 = udp_pkt(ipB(), NS_IP4(10, 0, 0, 9), 5555, 7000, str_bytes("a"));
    inject(eth_frame(kMacA, kMacB, NS_ETH_TYPE_IPV4, ipv4_pkt(ipB(), NS_IP4(10, 0, 0, 9), 17, l4)));
    EXPECT_EQ(stats().ip_rx_not_for_us, 1u);
    // Link broadcast carrying a unicast IP destination (RFC 1122 3.3.6).
    inject(eth_frame(kBcast, kMacB, NS_ETH_TYPE_IPV4,
                     ipv4_pkt(ipB(), ipA(), 17, udp_pkt(ipB(), ipA(), 5555, 7000, str_bytes("a")))));
    EXPECT_EQ(stats().ip_rx_not_for_us, 2u);
    for (be32_t bad : {NS_IPV4_BCAST, NS_IP4(10, 0, 0, 255), NS_IP4(224, 0, 0, 1), NS_IP4(127, 0, 0, 1),
                       NS_IP4(240, 0, 0, 1), be32_t(0), ipA()}) {
        inject(eth_frame(kMacA, kMacB, NS_ETH_TYPE_IPV4,
                         ipv4_pkt(bad, ipA(), 17, udp_pkt(bad, ipA(), 5555, 7000, str_bytes("a")))));
    }
    EXPECT_EQ(stats().ip_rx_bad_src, 7u);
    EXPECT_EQ(delivered(), 0);
    // Subnet and limited broadcast are ours.
    for (be32_t bc : {NS_IPV4_BCAST, NS_IP4(10, 0, 0, 255)})
        inject(eth_frame(kBcast, kMacB, NS_ETH_TYPE_IPV4,
                         ipv4_pkt(ipB(), bc, 17, udp_pkt(ipB(), bc, 5555, 7000, str_bytes("b")))));
    EXPECT_EQ(delivered(), 2);
    EXPECT_TRUE(tx().empty());
}

TEST_F(NsEthIp, UnknownProtocolGetsProtocolUnreachableTcpIsCounted)
{
    inject(from_peer_ip(99, str_bytes("whatever")));
    EXPECT_EQ(stats().ip_rx_unknown_proto, 1u);
    auto out = tx();
    ASSERT_EQ(out.size(), 1u);  // the peer is unknown: an ARP request, the ICMP waits
    Parsed p = parse(out[0]);
    EXPECT_EQ(p.type, NS_ETH_TYPE_ARP);
    inject(eth_frame(kMacA, kMacB, NS_ETH_TYPE_ARP, arp_pkt(NS_ARP_OP_REPLY, kMacB, ipB(), kMacA, ipA())));
    out = tx();
    ASSERT_EQ(out.size(), 1u);
    p = parse(out[0]);
    ASSERT_TRUE(p.ip_ok);
    EXPECT_EQ(p.ip()->proto, NS_IPPROTO_ICMP);
    EXPECT_EQ(p.l4[0], NS_ICMP_DEST_UNREACH);
    EXPECT_EQ(p.l4[1], NS_ICMP_UNREACH_PROTO);
    Bytes tcp(20, 0);
    inject(from_peer_ip(NS_IPPROTO_TCP, tcp));
    EXPECT_EQ(stats().tcp_rx_bad_hlen, 1u);
    EXPECT_TRUE(tx().empty());
}

TEST_F(NsEthIp, OutputSetsDfAndRefusesOversize)
{
    learn_peer();
    int s = ns_udp_socket(ns);
    ns_sockaddr dst = sa(ipB(), 9);
    Bytes big(1473, 'x');
    EXPECT_EQ(ns_udp_sendto(ns, s, big.data(), big.size(), &dst), -EMSGSIZE);
    EXPECT_EQ(ns_udp_sendto(ns, s, big.data(), 1472, &dst), 1472);
    poll();
    auto out = tx();
    ASSERT_EQ(out.size(), 1u);
    Parsed p = parse(out[0]);
    ASSERT_TRUE(p.ip_ok);
    EXPECT_EQ(out[0].size(), 1514u);
    EXPECT_EQ(p.dst, kMacB);
    EXPECT_EQ(p.src, kMacA);
    EXPECT_EQ(ns_ntoh16(p.ip()->frag_off), NS_IPV4_DF);
    EXPECT_EQ(p.ip()->ttl, NS_IP_DEFAULT_TTL);
    EXPECT_EQ(p.ip()->src, ipA());
    EXPECT_EQ(p.ip()->dst, ipB());
    EXPECT_EQ(ns_udp_close(ns, s), 0);
}

TEST_F(NsEthIp, SmallerConfiguredMtu)
{
    ns_config c;
    ns_config_defaults(&c);
    c.ipv4 = ipA();
    c.netmask = netmask24();
    c.mtu = 576;
    make_stack(&c);
    int s = ns_udp_socket(ns);
    ns_sockaddr dst = sa(ipB(), 9);
    Bytes big(549, 'x');
    EXPECT_EQ(ns_udp_sendto(ns, s, big.data(), big.size(), &dst), -EMSGSIZE);
    EXPECT_EQ(ns_udp_sendto(ns, s, big.data(), 548, &dst), 548);
    c.mtu = 9000;  // above the device's
    struct netstack *bad = nullptr;
    EXPECT_EQ(ns_create(&c, &dev.dev, now, &bad), -EINVAL);
}

TEST_F(NsEthIp, OffLinkGoesToGatewayAndNoGatewayIsUnreachable)
{
    int s = ns_udp_socket(ns);
    ns_sockaddr far = sa(NS_IP4(8, 8, 8, 8), 53);
    EXPECT_EQ(ns_udp_sendto(ns, s, "q", 1, &far), 1);
    poll();
    auto out = tx();
    ASSERT_EQ(out.size(), 1u);
    Parsed p = parse(out[0]);
    ASSERT_EQ(p.type, NS_ETH_TYPE_ARP);
    EXPECT_EQ(p.arp()->tpa, ipGw());
    inject(eth_frame(kMacA, kMacGw, NS_ETH_TYPE_ARP, arp_pkt(NS_ARP_OP_REPLY, kMacGw, ipGw(), kMacA, ipA())));
    out = tx();
    ASSERT_EQ(out.size(), 1u);
    p = parse(out[0]);
    ASSERT_TRUE(p.ip_ok);
    EXPECT_EQ(p.dst, kMacGw);
    EXPECT_EQ(p.ip()->dst, NS_IP4(8, 8, 8, 8));

    ns_config c;
    ns_config_defaults(&c);
    c.ipv4 = ipA();
    c.netmask = netmask24();
    make_stack(&c);
    s = ns_udp_socket(ns);
    EXPECT_EQ(ns_udp_sendto(ns, s, "q", 1, &far), -ENETUNREACH);
    EXPECT_EQ(stats().ip_tx_no_route, 1u);
}

TEST_F(NsEthIp, BadConfigsAreRejected)
{
    struct netstack *x = nullptr;
    ns_config c;
    ns_config_defaults(&c);
    c.netmask = netmask24();
    EXPECT_EQ(ns_create(&c, &dev.dev, now, &x), -EINVAL) << "no address";
    c.ipv4 = ipA();
    c.netmask = NS_IP4(255, 0, 255, 0);
    EXPECT_EQ(ns_create(&c, &dev.dev, now, &x), -EINVAL) << "holey mask";
    c.netmask = netmask24();
    c.gateway = NS_IP4(10, 9, 9, 9);
    EXPECT_EQ(ns_create(&c, &dev.dev, now, &x), -EINVAL) << "off-link gateway";
    c.gateway = 0;
    ns_arp_static st = {NS_IPV4_BCAST, {2, 0, 0, 0, 0, 9}};
    c.arp_static = &st;
    c.n_arp_static = 1;
    EXPECT_EQ(ns_create(&c, &dev.dev, now, &x), -EINVAL) << "broadcast static entry";
    EXPECT_EQ(x, nullptr);
}

TEST_F(NsEthIp, TxDeviceFullDropsAndCounts)
{
    learn_peer();
    dev.tx_room = 1;
    int s = ns_udp_socket(ns);
    ns_sockaddr dst = sa(ipB(), 9);
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(ns_udp_sendto(ns, s, "z", 1, &dst), 1);
    poll();
    EXPECT_EQ(tx().size(), 1u);
    EXPECT_EQ(stats().tx_dev_full, 2u);
}

}  // namespace
