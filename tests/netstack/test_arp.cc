// ARP tests: replies, learning, the RFC 826 merge rule, gratuitous ARP vs static entries,
// expiry on the virtual clock, retries and timeout, the bounded pending queue, bad packets.
#include "harness.h"

namespace {

class NsArp : public StackTest {
protected:
    Bytes req_from(const Mac &mac, be32_t spa, be32_t tpa, const Mac &dst = kBcast)
    {
        return eth_frame(dst, mac, NS_ETH_TYPE_ARP, arp_pkt(NS_ARP_OP_REQUEST, mac, spa, kZeroMac, tpa));
    }
    Bytes reply_from(const Mac &mac, be32_t spa, be32_t tpa = ipA())
    {
        return eth_frame(kMacA, mac, NS_ETH_TYPE_ARP, arp_pkt(NS_ARP_OP_REPLY, mac, spa, kMacA, tpa));
    }
    // Send one datagram to ip:9 and return what went out after a poll.
    std::vector<Bytes> send_to(be32_t ip, const char *msg = "m")
    {
        if (sd < 0)
            sd = ns_udp_socket(ns);
        ns_sockaddr d = sa(ip, 9);
        EXPECT_EQ(ns_udp_sendto(ns, sd, msg, strlen(msg), &d), int(strlen(msg)));
        poll();
        return tx();
    }
    static bool is_arp_request_for(const Bytes &f, be32_t ip)
    {
        Parsed p = parse(f);
        return p.type == NS_ETH_TYPE_ARP && ns_ntoh16(p.arp()->op) == NS_ARP_OP_REQUEST && p.arp()->tpa == ip &&
               p.dst == kBcast;
    }
    static Mac ip_dst_mac(const Bytes &f)
    {
        Parsed p = parse(f);
        EXPECT_TRUE(p.ip_ok);
        return p.dst;
    }
    int sd = -1;
};

TEST_F(NsArp, RequestForUsGetsUnicastReplyAndTeachesUs)
{
    inject(req_from(kMacB, ipB(), ipA()));
    auto out = tx();
    ASSERT_EQ(out.size(), 1u);
    Parsed p = parse(out[0]);
    ASSERT_EQ(p.type, NS_ETH_TYPE_ARP);
    EXPECT_EQ(p.dst, kMacB);
    EXPECT_EQ(p.src, kMacA);
    const ns_arp_hdr *a = p.arp();
    EXPECT_EQ(ns_ntoh16(a->op), NS_ARP_OP_REPLY);
    EXPECT_EQ(0, memcmp(a->sha, kMacA.data(), 6));
    EXPECT_EQ(a->spa, ipA());
    EXPECT_EQ(0, memcmp(a->tha, kMacB.data(), 6));
    EXPECT_EQ(a->tpa, ipB());
    EXPECT_GE(out[0].size(), 60u) << "padded to the Ethernet minimum";
    // Learned: a datagram to the peer leaves at once.
    out = send_to(ipB());
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(ip_dst_mac(out[0]), kMacB);
    EXPECT_EQ(stats().arp_replies_tx, 1u);
}

TEST_F(NsArp, RequestForAnotherIpIsIgnoredAndNotLearned)
{
    inject(req_from(kMacB, ipB(), NS_IP4(10, 0, 0, 77)));
    EXPECT_TRUE(tx().empty());
    EXPECT_EQ(stats().arp_rx_not_for_us, 1u);
    auto out = send_to(ipB());
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(is_arp_request_for(out[0], ipB())) << "the sender of a request for someone else was not learned";
}

TEST_F(NsArp, ResolveSendsPendingInOrderOnReply)
{
    sd = ns_udp_socket(ns);
    ns_sockaddr d = sa(ipB(), 9);
    for (char c : std::string("abc"))
        ASSERT_EQ(ns_udp_sendto(ns, sd, &c, 1, &d), 1);
    poll();
    auto out = tx();
    ASSERT_EQ(out.size(), 1u) << "one request, not one per datagram";
    ASSERT_TRUE(is_arp_request_for(out[0], ipB()));
    EXPECT_EQ(0, memcmp(parse(out[0]).arp()->sha, kMacA.data(), 6));
    inject(reply_from(kMacB, ipB()));
    out = tx();
    ASSERT_EQ(out.size(), 3u);
    for (int i = 0; i < 3; i++) {
        Parsed p = parse(out[i]);
        ASSERT_TRUE(p.ip_ok);
        EXPECT_EQ(p.dst, kMacB);
        EXPECT_EQ(p.l4[8], "abc"[i]);
    }
}

TEST_F(NsArp, PendingQueueOverflowDropsWithCounter)
{
    sd = ns_udp_socket(ns);
    ns_sockaddr d = sa(ipB(), 9);
    for (int i = 0; i < NS_ARP_PENDING_PER_ENTRY + 3; i++)
        ASSERT_EQ(ns_udp_sendto(ns, sd, "p", 1, &d), 1);
    EXPECT_EQ(stats().arp_pending_overflow, 3u);
    poll();
    tx();
    inject(reply_from(kMacB, ipB()));
    EXPECT_EQ(tx().size(), size_t(NS_ARP_PENDING_PER_ENTRY));
}

TEST_F(NsArp, GlobalPendingLimit)
{
    sd = ns_udp_socket(ns);
    int sent = 0;
    for (int host = 10; host < 60 && sent < NS_ARP_PENDING_MAX + 5; host++)
        for (int k = 0; k < NS_ARP_PENDING_PER_ENTRY && sent < NS_ARP_PENDING_MAX + 5; k++, sent++) {
            ns_sockaddr d = sa(NS_IP4(10, 0, 0, host), 9);
            ASSERT_EQ(ns_udp_sendto(ns, sd, "p", 1, &d), 1);
        }
    EXPECT_EQ(stats().arp_pending_overflow, 5u);
}

TEST_F(NsArp, RetriesThenTimeoutDropsPending)
{
    ns_config c;
    ns_config_defaults(&c);
    c.ipv4 = ipA();
    c.netmask = netmask24();
    c.arp_request_timeout_ms = 100;
    c.arp_request_retries = 2;
    make_stack(&c);
    sd = ns_udp_socket(ns);
    ns_sockaddr d = sa(ipB(), 9);
    ASSERT_EQ(ns_udp_sendto(ns, sd, "1", 1, &d), 1);
    ASSERT_EQ(ns_udp_sendto(ns, sd, "2", 1, &d), 1);
    poll();
    EXPECT_EQ(tx().size(), 1u);
    advance(99);
    EXPECT_TRUE(tx().empty()) << "no retry before the timeout";
    advance(1);
    auto out = tx();
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(is_arp_request_for(out[0], ipB()));
    advance(100);
    EXPECT_EQ(tx().size(), 1u);
    EXPECT_EQ(stats().arp_requests_tx, 3u);
    EXPECT_EQ(stats().arp_resolve_timeout, 0u);
    advance(100);
    EXPECT_TRUE(tx().empty());
    EXPECT_EQ(stats().arp_resolve_timeout, 2u);
    // A late reply is not for an entry any more: by the merge rule it creates one (it is for us)
    // but nothing old is sent.
    inject(reply_from(kMacB, ipB()));
    EXPECT_TRUE(tx().empty());
}

TEST_F(NsArp, LearnedEntryExpiresOnTheClock)
{
    learn_peer();
    EXPECT_EQ(ip_dst_mac(send_to(ipB())[0]), kMacB);
    advance(NS_ARP_TTL_MS - 1);
    auto out = send_to(ipB());
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(parse(out[0]).type, NS_ETH_TYPE_IPV4) << "still valid just before the TTL";
    advance(2);
    EXPECT_EQ(stats().arp_expired, 1u);
    out = send_to(ipB());
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(is_arp_request_for(out[0], ipB()));
}

TEST_F(NsArp, ReplyRefreshesExpiry)
{
    learn_peer();
    advance(NS_ARP_TTL_MS - 10);
    inject(reply_from(kMacB, ipB()));
    advance(20);
    auto out = send_to(ipB());
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(parse(out[0]).type, NS_ETH_TYPE_IPV4);
}

class NsArpStatic : public NsArp {
protected:
    void SetUp() override
    {
        ns_config c;
        ns_config_defaults(&c);
        c.ipv4 = ipA();
        c.netmask = netmask24();
        st[0].ip = ipGw();
        memcpy(st[0].mac, kMacGw.data(), 6);
        c.arp_static = st;
        c.n_arp_static = 1;
        make_stack(&c);
    }
    ns_arp_static st[1];
};

TEST_F(NsArpStatic, StaticEntryNeedsNoResolutionAndNeverExpires)
{
    auto out = send_to(ipGw());
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(ip_dst_mac(out[0]), kMacGw);
    advance(10 * NS_ARP_TTL_MS);
    out = send_to(ipGw());
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(ip_dst_mac(out[0]), kMacGw);
    EXPECT_EQ(stats().arp_requests_tx, 0u);
}

TEST_F(NsArpStatic, GratuitousArpNeverOverridesStatic)
{
    // Gratuitous request and reply, and a request to us, all claiming the gateway's IP.
    inject(req_from(kMacOther, ipGw(), ipGw()));
    inject(eth_frame(kBcast, kMacOther, NS_ETH_TYPE_ARP, arp_pkt(NS_ARP_OP_REPLY, kMacOther, ipGw(), kBcast, ipGw())));
    inject(req_from(kMacOther, ipGw(), ipA()));
    EXPECT_EQ(stats().arp_static_conflict, 3u);
    tx();
    auto out = send_to(ipGw());
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(ip_dst_mac(out[0]), kMacGw);
}

TEST_F(NsArp, GratuitousArpUpdatesOnlyExistingEntries)
{
    // Unknown address: not learned.
    inject(req_from(kMacOther, NS_IP4(10, 0, 0, 50), NS_IP4(10, 0, 0, 50)));
    EXPECT_TRUE(tx().empty());
    auto out = send_to(NS_IP4(10, 0, 0, 50));
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(is_arp_request_for(out[0], NS_IP4(10, 0, 0, 50)));
    // Known address: the new MAC is merged in (RFC 826), e.g. after a NIC swap.
    learn_peer();
    inject(req_from(kMacOther, ipB(), ipB()));
    out = send_to(ipB());
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(ip_dst_mac(out[0]), kMacOther);
}

TEST_F(NsArp, ProbeIsAnsweredButNotCached)
{
    inject(req_from(kMacB, 0, ipA()));  // RFC 5227 probe: sender IP 0
    auto out = tx();
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(parse(out[0]).dst, kMacB);
    EXPECT_EQ(parse(out[0]).arp()->tpa, 0u);
}

TEST_F(NsArp, BadPacketsAreDropped)
{
    Bytes good = arp_pkt(NS_ARP_OP_REQUEST, kMacB, ipB(), kZeroMac, ipA());
    for (size_t n = 0; n < good.size(); n++)
        inject(eth_frame(kBcast, kMacB, NS_ETH_TYPE_ARP, Bytes(good.begin(), good.begin() + long(n))));
    EXPECT_EQ(stats().arp_rx_bad, good.size());
    auto mutate = [&](size_t off, uint8_t v) {
        Bytes b = good;
        b[off] = v;
        inject(eth_frame(kBcast, kMacB, NS_ETH_TYPE_ARP, b));
    };
    mutate(1, 6);   // htype
    mutate(2, 0x86);  // ptype
    mutate(4, 8);   // hlen
    mutate(5, 16);  // plen
    mutate(7, 3);   // op
    EXPECT_EQ(stats().arp_rx_bad, good.size() + 5);
    uint64_t bad_sender = 0;
    for (const Mac &m : {kBcast, Mac{0x01, 0, 0x5e, 0, 0, 1}, kZeroMac, kMacA}) {
        inject(eth_frame(kBcast, kMacB, NS_ETH_TYPE_ARP, arp_pkt(NS_ARP_OP_REQUEST, m, ipB(), kZeroMac, ipA())));
        bad_sender++;
    }
    for (be32_t ip : {NS_IPV4_BCAST, NS_IP4(224, 0, 0, 1), ipA(), NS_IP4(127, 0, 0, 1)}) {
        inject(eth_frame(kBcast, kMacB, NS_ETH_TYPE_ARP, arp_pkt(NS_ARP_OP_REQUEST, kMacB, ip, kZeroMac, ipA())));
        bad_sender++;
    }
    EXPECT_EQ(stats().arp_rx_bad_sender, bad_sender);
    EXPECT_TRUE(tx().empty());
}

TEST_F(NsArp, CacheFullEvictsLeastRecentlyUsed)
{
    // Fill the cache with learned entries, keep the first one in use, then learn one more.
    for (int i = 0; i < NS_ARP_CACHE_SIZE; i++) {
        Mac m = {0x02, 0, 0, 0, 1, uint8_t(i)};
        inject(req_from(m, NS_IP4(10, 0, 0, 10 + i), ipA()));
        now += kMs;
    }
    tx();
    send_to(NS_IP4(10, 0, 0, 10));  // refresh use of the oldest
    inject(req_from(kMacB, ipB(), ipA()));
    tx();
    auto out = send_to(NS_IP4(10, 0, 0, 11));
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(is_arp_request_for(out[0], NS_IP4(10, 0, 0, 11))) << "the LRU entry was evicted";
    out = send_to(NS_IP4(10, 0, 0, 10));
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(parse(out[0]).type, NS_ETH_TYPE_IPV4);
}

}  // namespace
