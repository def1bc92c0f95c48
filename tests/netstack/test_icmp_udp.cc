// ICMP and UDP tests: echo, ping and UDP exchange between two stacks, checksum rules,
// port unreachable on the wire and as ECONNREFUSED on the sender, socket API errors.
#include "harness.h"

namespace {

class NsIcmp : public StackTest {};

TEST_F(NsIcmp, EchoRequestGetsReply)
{
    learn_peer();
    Bytes payload = str_bytes("0123456789abcdefX");  // odd length
    inject(from_peer_ip(NS_IPPROTO_ICMP, icmp_pkt(NS_ICMP_ECHO_REQUEST, 0, 0x12340007, payload)));
    auto out = tx();
    ASSERT_EQ(out.size(), 1u);
    Parsed p = parse(out[0]);
    ASSERT_TRUE(p.ip_ok);
    EXPECT_EQ(p.ip()->proto, NS_IPPROTO_ICMP);
    EXPECT_EQ(p.ip()->dst, ipB());
    EXPECT_EQ(p.dst, kMacB);
    ASSERT_EQ(p.l4.size(), 8 + payload.size());
    EXPECT_EQ(p.l4[0], NS_ICMP_ECHO_REPLY);
    EXPECT_EQ(ns_cksum_finish(ns_cksum_add(0, p.l4.data(), p.l4.size())), 0);
    EXPECT_EQ(Bytes(p.l4.begin() + 4, p.l4.begin() + 8), (Bytes{0x12, 0x34, 0x00, 0x07}));
    EXPECT_EQ(Bytes(p.l4.begin() + 8, p.l4.end()), payload);
}

TEST_F(NsIcmp, BadEchoRequestsAreDropped)
{
    learn_peer();
    inject(from_peer_ip(NS_IPPROTO_ICMP, icmp_pkt(NS_ICMP_ECHO_REQUEST, 0, 1, str_bytes("x"), true)));
    EXPECT_EQ(stats().icmp_rx_bad_cksum, 1u);
    Bytes m = icmp_pkt(NS_ICMP_ECHO_REQUEST, 0, 1, {});
    for (size_t n = 0; n < m.size(); n++)
        inject(from_peer_ip(NS_IPPROTO_ICMP, Bytes(m.begin(), m.begin() + long(n))));
    EXPECT_EQ(stats().icmp_rx_truncated, m.size());
    inject(eth_frame(kBcast, kMacB, NS_ETH_TYPE_IPV4,
                     ipv4_pkt(ipB(), NS_IPV4_BCAST, NS_IPPROTO_ICMP, icmp_pkt(NS_ICMP_ECHO_REQUEST, 0, 1, {}))));
    EXPECT_EQ(stats().icmp_rx_echo_bcast, 1u);
    inject(from_peer_ip(NS_IPPROTO_ICMP, icmp_pkt(13, 0, 0, Bytes(12, 0))));  // timestamp request
    EXPECT_EQ(stats().icmp_rx_other, 1u);
    EXPECT_TRUE(tx().empty());
}

TEST_F(NsIcmp, NoErrorAboutAnError)
{
    learn_peer();
    // An ICMP error with an unknown code/quote must not trigger anything back, nor must an
    // unknown-protocol datagram sent to broadcast.
    Bytes quote = ipv4_pkt(ipA(), ipB(), 99, Bytes(8, 0));
    inject(from_peer_ip(NS_IPPROTO_ICMP, icmp_pkt(NS_ICMP_DEST_UNREACH, NS_ICMP_UNREACH_PROTO, 0, quote)));
    inject(eth_frame(kBcast, kMacB, NS_ETH_TYPE_IPV4, ipv4_pkt(ipB(), NS_IPV4_BCAST, 99, Bytes(8, 0))));
    EXPECT_TRUE(tx().empty());
    EXPECT_EQ(stats().icmp_rx_err_unmatched, 1u);
}

TEST_F(NsIcmp, ErrorsAreRateLimited)
{
    learn_peer();
    for (unsigned i = 0; i < NS_ICMP_ERR_BURST + 10; i++)
        inject(from_peer_ip(NS_IPPROTO_UDP, udp_pkt(ipB(), ipA(), 1000, 2000, {})));
    EXPECT_EQ(tx().size(), size_t(NS_ICMP_ERR_BURST));
    EXPECT_EQ(stats().icmp_tx_ratelimited, 10u);
    now += 1000 * kMs;
    inject(from_peer_ip(NS_IPPROTO_UDP, udp_pkt(ipB(), ipA(), 1000, 2000, {})));
    EXPECT_EQ(tx().size(), 1u);
}

class NsUdp : public StackTest {};

TEST_F(NsUdp, ChecksumRules)
{
    int sd = udp_bound(7000);
    inject(from_peer_ip(NS_IPPROTO_UDP, udp_pkt(ipB(), ipA(), 1, 7000, str_bytes("zero"), 1)));
    EXPECT_EQ(ns_udp_rx_pending(ns, sd), 1) << "zero checksum accepted (RFC 768)";
    inject(from_peer_ip(NS_IPPROTO_UDP, udp_pkt(ipB(), ipA(), 1, 7000, str_bytes("bad"), 2)));
    EXPECT_EQ(stats().udp_rx_bad_cksum, 1u);
    // Checksum computed over a different source address (a rewritten header) fails too.
    Bytes l4 = udp_pkt(NS_IP4(10, 0, 0, 3), ipA(), 1, 7000, str_bytes("spoof"));
    inject(from_peer_ip(NS_IPPROTO_UDP, l4));
    EXPECT_EQ(stats().udp_rx_bad_cksum, 2u);
    EXPECT_EQ(ns_udp_rx_pending(ns, sd), 1);
    EXPECT_TRUE(tx().empty()) << "no ICMP for corrupt datagrams";
}

TEST_F(NsUdp, LengthRules)
{
    int sd = udp_bound(7000);
    Bytes p = str_bytes("abcdef");
    inject(from_peer_ip(NS_IPPROTO_UDP, udp_pkt(ipB(), ipA(), 1, 7000, p, 1, 15)));  // > IP payload
    inject(from_peer_ip(NS_IPPROTO_UDP, udp_pkt(ipB(), ipA(), 1, 7000, p, 1, 7)));   // < header
    EXPECT_EQ(stats().udp_rx_bad_len, 2u);
    Bytes u = udp_pkt(ipB(), ipA(), 1, 7000, p, 1);
    for (size_t n = 0; n < 8; n++)
        inject(from_peer_ip(NS_IPPROTO_UDP, Bytes(u.begin(), u.begin() + long(n))));
    EXPECT_EQ(stats().udp_rx_truncated, 8u);
    // UDP length shorter than the IP payload: the datagram ends where UDP says.
    inject(from_peer_ip(NS_IPPROTO_UDP, udp_pkt(ipB(), ipA(), 1, 7000, p, 1, 11)));
    char buf[16];
    EXPECT_EQ(ns_udp_recvfrom(ns, sd, buf, sizeof(buf), nullptr), 3);
    EXPECT_EQ(ns_udp_recvfrom(ns, sd, buf, sizeof(buf), nullptr), -EAGAIN);
}

TEST_F(NsUdp, ClosedPortSendsPortUnreachableQuotingTheDatagram)
{
    learn_peer();
    Bytes dg = ipv4_pkt(ipB(), ipA(), NS_IPPROTO_UDP, udp_pkt(ipB(), ipA(), 4444, 9999, str_bytes("hello")));
    inject(eth_frame(kMacA, kMacB, NS_ETH_TYPE_IPV4, dg));
    EXPECT_EQ(stats().udp_rx_no_port, 1u);
    auto out = tx();
    ASSERT_EQ(out.size(), 1u);
    Parsed p = parse(out[0]);
    ASSERT_TRUE(p.ip_ok);
    EXPECT_EQ(p.ip()->dst, ipB());
    ASSERT_EQ(p.l4.size(), 8 + dg.size());
    EXPECT_EQ(p.l4[0], NS_ICMP_DEST_UNREACH);
    EXPECT_EQ(p.l4[1], NS_ICMP_UNREACH_PORT);
    EXPECT_EQ(Bytes(p.l4.begin() + 8, p.l4.end()), dg);
    EXPECT_EQ(ns_cksum_finish(ns_cksum_add(0, p.l4.data(), p.l4.size())), 0);
    // Not for broadcasts.
    inject(eth_frame(kBcast, kMacB, NS_ETH_TYPE_IPV4,
                     ipv4_pkt(ipB(), NS_IPV4_BCAST, 17, udp_pkt(ipB(), NS_IPV4_BCAST, 4444, 9999, {}))));
    EXPECT_TRUE(tx().empty());
}

TEST_F(NsUdp, SocketApiErrors)
{
    int a = udp_bound(7000);
    int b = ns_udp_socket(ns);
    ns_sockaddr l = sa(0, 7000);
    EXPECT_EQ(ns_udp_bind(ns, b, &l), -EADDRINUSE);
    l = sa(NS_IP4(10, 0, 0, 5), 7001);
    EXPECT_EQ(ns_udp_bind(ns, b, &l), -EADDRNOTAVAIL);
    l = sa(ipA(), 0);
    EXPECT_EQ(ns_udp_bind(ns, b, &l), 0);
    ns_sockaddr got{};
    ASSERT_EQ(ns_udp_getsockname(ns, b, &got), 0);
    EXPECT_GE(ns_ntoh16(got.port), NS_EPHEMERAL_PORT_MIN);
    EXPECT_EQ(ns_udp_bind(ns, b, &l), -EINVAL) << "already bound";
    EXPECT_EQ(ns_udp_sendto(ns, a, "x", 1, nullptr), -EDESTADDRREQ);
    ns_sockaddr d = sa(NS_IPV4_BCAST, 9);
    EXPECT_EQ(ns_udp_sendto(ns, a, "x", 1, &d), -EACCES);
    d = sa(ipB(), 0);
    EXPECT_EQ(ns_udp_sendto(ns, a, "x", 1, &d), -EINVAL);
    d = sa(NS_IP4(127, 0, 0, 1), 9);
    EXPECT_EQ(ns_udp_sendto(ns, a, "x", 1, &d), -EINVAL) << "127/8 is never ours";
    d = sa(ipA(), 9);
    EXPECT_EQ(ns_udp_recvfrom(ns, a, nullptr, 0, nullptr), -EAGAIN);
    EXPECT_EQ(ns_udp_close(ns, a), 0);
    EXPECT_EQ(ns_udp_close(ns, a), -EBADF);
    EXPECT_EQ(ns_udp_sendto(ns, 9999, "x", 1, &d), -EBADF);
    EXPECT_EQ(ns_udp_rx_pending(ns, -1), -EBADF);
    int n = 1;
    while (ns_udp_socket(ns) >= 0)
        n++;
    EXPECT_EQ(n, NS_UDP_MAX_SOCKETS);
}

TEST_F(NsUdp, ReceiveQueueIsBoundedAndClosingFreesIt)
{
    int sd = udp_bound(7000);
    for (int i = 0; i < NS_UDP_RXQ_MAX + 4; i++) {
        ASSERT_TRUE(dev.inject(from_peer_ip(NS_IPPROTO_UDP, udp_pkt(ipB(), ipA(), 1, 7000, str_bytes("q")))));
        if (i % 32 == 0)
            poll();
    }
    poll();
    EXPECT_EQ(ns_udp_rx_pending(ns, sd), NS_UDP_RXQ_MAX);
    EXPECT_EQ(stats().udp_rx_queue_full, 4u);
    EXPECT_EQ(ns_udp_close(ns, sd), 0);
    EXPECT_EQ(dev.pool.in_use, 0u);
}

TEST_F(NsUdp, OurOwnAddressLoopsBackWithoutTouchingTheLink)
{
    int rx = udp_bound(7000);
    int txs = ns_udp_socket(ns);
    ns_sockaddr self = sa(ipA(), 7000);
    ASSERT_EQ(ns_udp_sendto(ns, txs, "me", 2, &self), 2);
    EXPECT_EQ(ns_udp_rx_pending(ns, rx), 0) << "delivered on the next ns_poll, not inside sendto";
    EXPECT_LE(ns_next_timer(ns), now) << "queued loopback work must not let the caller sleep";
    poll();
    char buf[8];
    ns_sockaddr src{};
    ASSERT_EQ(ns_udp_recvfrom(ns, rx, buf, sizeof(buf), &src), 2);
    EXPECT_EQ(std::string(buf, 2), "me");
    EXPECT_EQ(src.addr, ipA());
    EXPECT_TRUE(tx().empty()) << "nothing went to the device";
    EXPECT_EQ(stats().ip_loopback, 1u);
    // A closed port answers ourselves with port unreachable, on a connected socket as ECONNREFUSED.
    ns_sockaddr closed = sa(ipA(), 7999);
    ASSERT_EQ(ns_udp_connect(ns, txs, &closed), 0);
    ASSERT_EQ(ns_udp_sendto(ns, txs, "x", 1, nullptr), 1);
    poll();
    EXPECT_EQ(ns_udp_recvfrom(ns, txs, buf, sizeof(buf), nullptr), -ECONNREFUSED);
    // Still queued at destroy: freed with the stack (the leak check at TearDown sees it).
    ASSERT_EQ(ns_udp_sendto(ns, txs, "y", 1, &self), 1);
}

TEST_F(NsUdp, ZeroCopyReceive)
{
    int sd = udp_bound(7000);
    inject(from_peer_ip(NS_IPPROTO_UDP, udp_pkt(ipB(), ipA(), 1234, 7000, str_bytes("zc"))));
    nsbuf *b = nullptr;
    ns_sockaddr src{};
    ASSERT_EQ(ns_udp_recv_buf(ns, sd, &b, &src), 2);
    EXPECT_EQ(std::string(reinterpret_cast<char *>(b->data), b->len), "zc");
    EXPECT_EQ(ns_ntoh16(src.port), 1234);
    EXPECT_EQ(dev.pool.in_use, 1u) << "the application holds the frame's buffer";
    ns_buf_free(ns, b);
    EXPECT_EQ(dev.pool.in_use, 0u);
}

TEST_F(NsUdp, ConnectedSocketOnlyHearsItsPeerAndWinsDemux)
{
    int any = udp_bound(7000);
    // A connected socket on another port, and one sharing no port: demux by exact match first.
    int c = ns_udp_socket(ns);
    ns_sockaddr l = sa(0, 7001), r = sa(ipB(), 5000);
    ASSERT_EQ(ns_udp_bind(ns, c, &l), 0);
    ASSERT_EQ(ns_udp_connect(ns, c, &r), 0);
    inject(from_peer_ip(NS_IPPROTO_UDP, udp_pkt(ipB(), ipA(), 5000, 7001, str_bytes("mine"))));
    inject(from_peer_ip(NS_IPPROTO_UDP, udp_pkt(ipB(), ipA(), 5001, 7001, str_bytes("stranger"))));
    EXPECT_EQ(ns_udp_rx_pending(ns, c), 1);
    EXPECT_EQ(stats().udp_rx_no_port, 1u);
    EXPECT_EQ(ns_udp_rx_pending(ns, any), 0);
}

TEST_F(TwoStacks, PingRoundTrip)
{
    Bytes data = str_bytes("ping payload");
    ASSERT_EQ(ns_ping_send(a, ipB(), 77, 1, data.data(), data.size()), 0);
    pump();
    struct ns_ping_reply r{};
    ASSERT_EQ(ns_ping_reply(a, &r), 0);
    EXPECT_EQ(r.from, ipB());
    EXPECT_EQ(r.id, 77);
    EXPECT_EQ(r.seq, 1);
    EXPECT_EQ(r.len, data.size());
    EXPECT_EQ(ns_ping_reply(a, &r), -EAGAIN);
    // Second ping needs no ARP in either direction.
    ASSERT_EQ(ns_ping_send(a, ipB(), 77, 2, nullptr, 0), 0);
    ns_poll(a, now);
    EXPECT_EQ(da.txq.size(), 1u);
    pump();
    ASSERT_EQ(ns_ping_reply(a, &r), 0);
    EXPECT_EQ(r.seq, 2);
    ns_stats sa_{}, sb{};
    ns_stats_get(a, &sa_);
    ns_stats_get(b, &sb);
    EXPECT_EQ(sa_.arp_requests_tx, 1u);
    EXPECT_EQ(sb.arp_requests_tx, 0u) << "B learned A from A's request";
}

TEST_F(TwoStacks, UdpExchange)
{
    int sb = ns_udp_socket(b);
    ns_sockaddr l = sa(0, 5353);
    ASSERT_EQ(ns_udp_bind(b, sb, &l), 0);
    int sa_ = ns_udp_socket(a);
    ns_sockaddr to = sa(ipB(), 5353);
    char buf[2048];
    ns_sockaddr from{};
    // The first datagram waits for ARP; the next ones go straight out (more than the pending limit).
    ASSERT_EQ(ns_udp_sendto(a, sa_, "first", 5, &to), 5);
    pump();
    ASSERT_EQ(ns_udp_recvfrom(b, sb, buf, sizeof(buf), &from), 5);
    for (int i = 0; i < 20; i++) {
        std::string m = "request " + std::to_string(i);
        ASSERT_EQ(ns_udp_sendto(a, sa_, m.data(), m.size(), &to), int(m.size()));
    }
    pump();
    for (int i = 0; i < 20; i++) {
        int n = ns_udp_recvfrom(b, sb, buf, sizeof(buf), &from);
        ASSERT_GT(n, 0) << i;
        EXPECT_EQ(std::string(buf, size_t(n)), "request " + std::to_string(i));
        EXPECT_EQ(from.addr, ipA());
        std::string rep = "reply " + std::to_string(i);
        ASSERT_EQ(ns_udp_sendto(b, sb, rep.data(), rep.size(), &from), int(rep.size()));
    }
    EXPECT_EQ(ns_udp_recvfrom(b, sb, buf, sizeof(buf), &from), -EAGAIN);
    pump();
    for (int i = 0; i < 20; i++) {
        int n = ns_udp_recvfrom(a, sa_, buf, sizeof(buf), &from);
        ASSERT_GT(n, 0);
        EXPECT_EQ(std::string(buf, size_t(n)), "reply " + std::to_string(i));
        EXPECT_EQ(from.addr, ipB());
        EXPECT_EQ(ns_ntoh16(from.port), 5353);
    }
    // Largest datagram that fits the MTU, byte exact.
    Bytes big(1472);
    for (size_t i = 0; i < big.size(); i++)
        big[i] = uint8_t(i * 7);
    ASSERT_EQ(ns_udp_sendto(a, sa_, big.data(), big.size(), &to), 1472);
    pump();
    ASSERT_EQ(ns_udp_recvfrom(b, sb, buf, sizeof(buf), nullptr), 1472);
    EXPECT_EQ(Bytes(buf, buf + 1472), big);
}

TEST_F(TwoStacks, ClosedPortBecomesConnRefusedOnConnectedSender)
{
    int c = ns_udp_socket(a);
    ns_sockaddr to = sa(ipB(), 4000);  // nothing bound on B
    ASSERT_EQ(ns_udp_connect(a, c, &to), 0);
    ASSERT_EQ(ns_udp_sendto(a, c, "x", 1, nullptr), 1);
    // And an unconnected socket sending to the same port gets no error.
    int u = ns_udp_socket(a);
    ASSERT_EQ(ns_udp_sendto(a, u, "y", 1, &to), 1);
    pump();
    char buf[8];
    EXPECT_EQ(ns_udp_recvfrom(a, c, buf, sizeof(buf), nullptr), -ECONNREFUSED);
    EXPECT_EQ(ns_udp_recvfrom(a, c, buf, sizeof(buf), nullptr), -EAGAIN) << "reported once";
    EXPECT_EQ(ns_udp_recvfrom(a, u, buf, sizeof(buf), nullptr), -EAGAIN);
    ns_stats s{};
    ns_stats_get(a, &s);
    EXPECT_EQ(s.icmp_rx_unreach, 2u);
    EXPECT_EQ(s.icmp_rx_err_unmatched, 1u);
    ns_stats_get(b, &s);
    EXPECT_EQ(s.udp_rx_no_port, 2u);
    // The next send on the connected socket reports the error too, if not read before.
    ASSERT_EQ(ns_udp_sendto(a, c, "x", 1, nullptr), 1);
    pump();
    EXPECT_EQ(ns_udp_sendto(a, c, "x", 1, nullptr), -ECONNREFUSED);
}

TEST_F(TwoStacks, ForgedUnreachableIsIgnored)
{
    int c = ns_udp_socket(a);
    ns_sockaddr to = sa(ipB(), 4000);
    ASSERT_EQ(ns_udp_connect(a, c, &to), 0);
    ns_sockaddr local{};
    ns_udp_getsockname(a, c, &local);
    // Quotes a datagram A never sent (source is not A): must not touch the socket.
    Bytes quote = ipv4_pkt(NS_IP4(10, 0, 0, 9), ipB(), 17, udp_pkt(NS_IP4(10, 0, 0, 9), ipB(), ns_ntoh16(local.port), 4000, {}));
    Bytes icmp = icmp_pkt(NS_ICMP_DEST_UNREACH, NS_ICMP_UNREACH_PORT, 0, quote);
    ASSERT_TRUE(da.inject(eth_frame(kMacA, kMacB, NS_ETH_TYPE_IPV4, ipv4_pkt(ipB(), ipA(), 1, icmp))));
    ns_poll(a, now);
    char buf[8];
    EXPECT_EQ(ns_udp_recvfrom(a, c, buf, sizeof(buf), nullptr), -EAGAIN);
    ns_stats s{};
    ns_stats_get(a, &s);
    EXPECT_EQ(s.icmp_rx_err_bad, 1u);
    da.take_tx();
}

}  // namespace
