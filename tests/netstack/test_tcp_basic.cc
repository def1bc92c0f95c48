// TCP basics (RFC 9293): handshakes both ways with option negotiation, data both ways,
// every close order, resets, listen queues, ports, events, socket calls; against a scripted
// peer and between two stacks.
#include <errno.h>

#include "tcp_harness.h"

extern "C" uint64_t ns_siphash24(const uint8_t key[16], const void *data, size_t len);

namespace {

class NsTcp : public TcpTest {};
class NsTcpPair : public TcpPair {};

TEST(NsTcpIsn, SipHashMatchesReferenceVector)
{
    // SipHash-2-4 paper, appendix A: key 00..0f, message 00..0e.
    uint8_t key[16], msg[15];
    for (int i = 0; i < 16; i++)
        key[i] = uint8_t(i);
    for (int i = 0; i < 15; i++)
        msg[i] = uint8_t(i);
    EXPECT_EQ(ns_siphash24(key, msg, 15), 0xa129ca6149be45e5ull);
}

TEST_F(NsTcp, PassiveOpenNegotiatesOptions)
{
    TcpOpt o;
    o.mss = 1400;
    o.ws = 7;
    o.sackperm = true;
    o.ts = true;
    o.tsval = 5000;
    int sd = open_passive(o);
    EXPECT_EQ(last_syn_opts.mss, 1460);
    EXPECT_TRUE(last_syn_opts.sackperm);
    EXPECT_TRUE(last_syn_opts.ts);
    EXPECT_EQ(last_syn_opts.tsecr, 5000u);
    EXPECT_GE(last_syn_opts.ws, 0);
    struct ns_tcp_info i;
    ASSERT_EQ(ns_tcp_info(ns, sd, &i), 0);
    EXPECT_EQ(i.state, NS_TCP_ESTABLISHED);
    EXPECT_EQ(i.snd_mss, 1400u - 12u);  // peer MSS less the timestamp option
    EXPECT_EQ(i.snd_wscale, 7);
    EXPECT_TRUE(i.ts_ok);
    EXPECT_TRUE(i.sack_ok);
    EXPECT_EQ(i.snd_wnd, 65535u << 7);
    ns_sockaddr l, r;
    ASSERT_EQ(ns_tcp_getsockname(ns, sd, &l), 0);
    EXPECT_EQ(l.addr, ipA());
    EXPECT_EQ(ns_ntoh16(l.port), lport);
    ASSERT_EQ(ns_tcp_getpeername(ns, sd, &r), 0);
    EXPECT_EQ(r.addr, ipB());
    EXPECT_EQ(ns_ntoh16(r.port), pport);
    EXPECT_EQ(stats().tcp_passive_opens, 1u);
}

TEST_F(NsTcp, PassiveOpenWithoutOptionsUsesDefaults)
{
    int sd = open_passive(TcpOpt());
    EXPECT_EQ(last_syn_opts.mss, 1460);
    EXPECT_FALSE(last_syn_opts.sackperm);
    EXPECT_FALSE(last_syn_opts.ts);
    EXPECT_EQ(last_syn_opts.ws, -1) << "no window scale in a SYN-ACK unless the SYN had one (RFC 7323 1.3)";
    struct ns_tcp_info i;
    ASSERT_EQ(ns_tcp_info(ns, sd, &i), 0);
    EXPECT_EQ(i.snd_mss, NS_TCP_DEFAULT_MSS);
    EXPECT_EQ(i.snd_wscale, 0xff);
    EXPECT_FALSE(i.ts_ok);
    EXPECT_FALSE(i.sack_ok);
}

TEST_F(NsTcp, ActiveOpenAndConnectEvent)
{
    TcpOpt o;
    o.mss = 1460;
    o.ws = 2;
    o.sackperm = true;
    o.ts = true;
    o.tsval = 77;
    int sd = open_active(o);
    EXPECT_EQ(last_syn_opts.mss, 1460);
    EXPECT_TRUE(last_syn_opts.sackperm);
    EXPECT_TRUE(last_syn_opts.ts);
    EXPECT_GE(last_syn_opts.ws, 0);
    EXPECT_EQ(state(sd), NS_TCP_ESTABLISHED);
    EXPECT_TRUE(ns_tcp_events(ns, sd) & NS_EV_OUT);
    int err = -1;
    EXPECT_EQ(ns_tcp_getsockopt(ns, sd, NS_SO_ERROR, &err), 0);
    EXPECT_EQ(err, 0);
    ns_event ev[8];
    int n = ns_events(ns, ev, 8);
    ASSERT_EQ(n, 1);
    EXPECT_EQ(ev[0].proto, NS_PROTO_TCP);
    EXPECT_EQ(ev[0].sd, sd);
    EXPECT_TRUE(ev[0].events & NS_EV_OUT);
    EXPECT_EQ(ns_events(ns, ev, 8), 0) << "listed once";
}

TEST_F(NsTcp, ConnectRefusedByReset)
{
    int sd = ns_tcp_socket(ns);
    ns_sockaddr r = sa(ipB(), pport);
    ASSERT_EQ(ns_tcp_connect(ns, sd, &r), -EINPROGRESS);
    EXPECT_EQ(ns_tcp_connect(ns, sd, &r), -EALREADY);
    poll();
    TcpSeg syn = one();
    lport = syn.sport;
    // An RST whose ACK does not cover our SYN is ignored (RFC 9293 3.10.7.3).
    peer_send(0, syn.seq + 5, NS_TCP_RST | NS_TCP_ACK);
    EXPECT_EQ(state(sd), NS_TCP_SYN_SENT);
    peer_send(0, syn.seq + 1, NS_TCP_RST | NS_TCP_ACK);
    EXPECT_EQ(state(sd), NS_TCP_CLOSED);
    EXPECT_EQ(ns_tcp_events(ns, sd) & (NS_EV_OUT | NS_EV_ERR), NS_EV_OUT | NS_EV_ERR);
    int err = 0;
    EXPECT_EQ(ns_tcp_getsockopt(ns, sd, NS_SO_ERROR, &err), 0);
    EXPECT_EQ(err, ECONNREFUSED);
    EXPECT_EQ(ns_tcp_getsockopt(ns, sd, NS_SO_ERROR, &err), 0);
    EXPECT_EQ(err, 0) << "SO_ERROR clears";
    EXPECT_EQ(ns_tcp_close(ns, sd), 0);
}

TEST_F(NsTcp, ResetForClosedPort)
{
    peer_send(555, 0, NS_TCP_SYN, str_bytes("ab"));
    TcpSeg r = one();
    EXPECT_TRUE(r.has(NS_TCP_RST | NS_TCP_ACK));
    EXPECT_EQ(r.seq, 0u);
    EXPECT_EQ(r.ack, 555u + 1 + 2);
    peer_send(555, 4242, NS_TCP_ACK, str_bytes("x"));
    r = one();
    EXPECT_EQ(r.flags, NS_TCP_RST);
    EXPECT_EQ(r.seq, 4242u);
    peer_send(555, 4242, NS_TCP_RST | NS_TCP_ACK);
    EXPECT_TRUE(segs().empty()) << "never answer a reset";
    EXPECT_EQ(stats().tcp_rx_no_socket, 3u);
}

TEST_F(NsTcp, BadSegmentsAreCountedAndDropped)
{
    Bytes seg = tcp_pkt(ipB(), ipA(), pport, lport, 1, 0, NS_TCP_SYN, 1000, {}, {}, true);
    inject(from_peer_ip(NS_IPPROTO_TCP, seg));
    EXPECT_EQ(stats().tcp_rx_bad_cksum, 1u);
    seg = tcp_pkt(ipB(), ipA(), pport, lport, 1, 0, NS_TCP_SYN, 1000);
    seg[12] = 0xf0;  // data offset 60 > segment
    inject(from_peer_ip(NS_IPPROTO_TCP, seg));
    EXPECT_EQ(stats().tcp_rx_bad_hlen, 1u);
    inject(eth_frame(kBcast, kMacB, NS_ETH_TYPE_IPV4,
                     ipv4_pkt(ipB(), NS_IPV4_BCAST, NS_IPPROTO_TCP,
                              tcp_pkt(ipB(), NS_IPV4_BCAST, pport, lport, 1, 0, NS_TCP_SYN, 1000))));
    EXPECT_EQ(stats().tcp_rx_bcast, 1u);
    EXPECT_TRUE(segs().empty());
}

TEST_F(NsTcp, DataInBothDirections)
{
    int sd = open_passive();
    // Two full segments: the second is ACKed at once (every 2nd full segment, RFC 5681 4.2).
    Bytes a(536, 'a'), b(536, 'b');
    peer_data(a);
    EXPECT_TRUE(segs().empty()) << "first segment: ACK delayed";
    EXPECT_TRUE(ns_tcp_events(ns, sd) & NS_EV_IN);
    peer_data(b);
    TcpSeg ack = one();
    EXPECT_EQ(ack.ack, pseq);
    std::string got = recv_all(sd);
    EXPECT_EQ(got, std::string(536, 'a') + std::string(536, 'b'));
    // Our data: one segment with PSH.
    ASSERT_EQ(ns_tcp_send(ns, sd, "hello", 5), 5);
    poll();
    TcpSeg d = one();
    EXPECT_TRUE(d.has(NS_TCP_ACK | NS_TCP_PSH));
    EXPECT_EQ(d.seq, snd);
    EXPECT_EQ(d.payload, str_bytes("hello"));
    snd += 5;
    peer_ack(snd);
    struct ns_tcp_info i;
    ns_tcp_info(ns, sd, &i);
    EXPECT_EQ(i.unacked, 0u);
    EXPECT_EQ(i.sndq, 0u);
}

TEST_F(NsTcp, DelayedAckFiresAfterTimeout)
{
    int sd = open_passive();
    peer_data(str_bytes("ping"));
    EXPECT_TRUE(segs().empty());
    advance(NS_TCP_DELACK_MS - 1);
    EXPECT_TRUE(segs().empty());
    advance(2);
    TcpSeg a = one();
    EXPECT_EQ(a.ack, pseq);
    EXPECT_EQ(stats().tcp_delayed_acks, 1u);
    // A reply before the timer carries the ACK instead.
    peer_data(str_bytes("ping2"));
    ASSERT_EQ(ns_tcp_send(ns, sd, "pong", 4), 4);
    poll();
    TcpSeg d = one();
    EXPECT_EQ(d.ack, pseq);
    advance(NS_TCP_DELACK_MS + 1);
    EXPECT_TRUE(segs().empty());
}

TEST_F(NsTcp, ZeroCopyReceiveHandsOutBuffers)
{
    int sd = open_passive();
    peer_data(Bytes(1000, 'z'));
    nsbuf *b = nullptr;
    ASSERT_EQ(ns_tcp_recv_buf(ns, sd, &b), 1000);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->len, 1000u);
    EXPECT_EQ(b->data[0], 'z');
    ns_buf_free(ns, b);
    EXPECT_EQ(ns_tcp_recv_buf(ns, sd, &b), -EAGAIN);
    peer_data({}, NS_TCP_ACK | NS_TCP_FIN);
    EXPECT_EQ(ns_tcp_recv_buf(ns, sd, &b), 0);
    EXPECT_EQ(b, nullptr);
}

TEST_F(NsTcp, SmallSegmentsAreCoalesced)
{
    int sd = open_passive();
    for (int i = 0; i < 20; i++)
        peer_data(Bytes(10, uint8_t('a' + i)));
    nsbuf *b = nullptr;
    int n = ns_tcp_recv_buf(ns, sd, &b);
    EXPECT_GT(n, 10) << "tiny segments share a buffer";
    ns_buf_free(ns, b);
}

TEST_F(NsTcp, ActiveCloseThroughTimeWait)
{
    int sd = open_passive();
    ASSERT_EQ(ns_tcp_shutdown(ns, sd, 1), 0);
    EXPECT_EQ(state(sd), NS_TCP_FIN_WAIT_1);
    TcpSeg f = one();
    EXPECT_TRUE(f.has(NS_TCP_FIN | NS_TCP_ACK));
    EXPECT_EQ(f.seq, snd);
    EXPECT_EQ(ns_tcp_send(ns, sd, "x", 1), -EPIPE);
    peer_ack(snd + 1);
    EXPECT_EQ(state(sd), NS_TCP_FIN_WAIT_2);
    peer_data(str_bytes("late"), NS_TCP_ACK | NS_TCP_FIN);
    TcpSeg a = one();
    EXPECT_EQ(a.ack, pseq);
    EXPECT_EQ(state(sd), NS_TCP_TIME_WAIT);
    EXPECT_EQ(recv_all(sd), "late");
    EXPECT_TRUE(ns_tcp_events(ns, sd) & NS_EV_HUP);
    // Data in TIME_WAIT is answered with an ACK (Linux), not taken.
    peer_send(pseq, snd + 1, NS_TCP_ACK | NS_TCP_PSH, str_bytes("zz"));
    EXPECT_EQ(one().ack, pseq);
    // A retransmitted FIN is ACKed again (and restarts 2 MSL).
    peer_send(pseq - 1, snd + 1, NS_TCP_ACK | NS_TCP_FIN);
    EXPECT_EQ(one().ack, pseq);
    advance(2 * NS_TCP_MSL_MS - 5);
    EXPECT_EQ(state(sd), NS_TCP_TIME_WAIT);
    advance(10);
    EXPECT_EQ(state(sd), NS_TCP_CLOSED);
    EXPECT_EQ(ns_tcp_close(ns, sd), 0);
}

TEST_F(NsTcp, PassiveCloseThroughLastAck)
{
    int sd = open_passive();
    peer_data({}, NS_TCP_ACK | NS_TCP_FIN);
    EXPECT_EQ(one().ack, pseq) << "FIN is ACKed at once";
    EXPECT_EQ(state(sd), NS_TCP_CLOSE_WAIT);
    EXPECT_TRUE(ns_tcp_events(ns, sd) & NS_EV_RDHUP);
    char c;
    EXPECT_EQ(ns_tcp_recv(ns, sd, &c, 1), 0);
    ASSERT_EQ(ns_tcp_send(ns, sd, "bye", 3), 3);
    ASSERT_EQ(ns_tcp_close(ns, sd), 0);
    poll();
    auto v = segs();
    ASSERT_GE(v.size(), 1u);
    EXPECT_TRUE(v.back().has(NS_TCP_FIN | NS_TCP_ACK));
    Bytes all;
    for (auto &x : v)
        all.insert(all.end(), x.payload.begin(), x.payload.end());
    EXPECT_EQ(all, str_bytes("bye"));
    peer_ack(snd + 4);
    EXPECT_TRUE(segs().empty());
    // The connection is gone: a new segment gets a reset.
    peer_data(str_bytes("?"));
    EXPECT_TRUE(one().has(NS_TCP_RST));
}

TEST_F(NsTcp, SimultaneousClose)
{
    int sd = open_passive();
    ASSERT_EQ(ns_tcp_shutdown(ns, sd, 1), 0);
    TcpSeg f = one();
    ASSERT_TRUE(f.has(NS_TCP_FIN));
    // The peer's FIN crosses ours (it has not seen our FIN yet).
    peer_send(pseq, snd, NS_TCP_ACK | NS_TCP_FIN);
    pseq++;
    EXPECT_EQ(state(sd), NS_TCP_CLOSING);
    EXPECT_EQ(one().ack, pseq);
    peer_ack(snd + 1);
    EXPECT_EQ(state(sd), NS_TCP_TIME_WAIT);
}

TEST_F(NsTcp, CloseWithUnreadDataResets)
{
    int sd = open_passive();
    peer_data(str_bytes("unread"));
    segs();
    ASSERT_EQ(ns_tcp_close(ns, sd), 0);
    poll();
    TcpSeg r = one();
    EXPECT_TRUE(r.has(NS_TCP_RST));
    EXPECT_EQ(r.seq, snd);
    EXPECT_EQ(stats().tcp_aborts_on_close, 1u);
}

TEST_F(NsTcp, LingerZeroResets)
{
    int sd = open_passive();
    ASSERT_EQ(ns_tcp_setsockopt(ns, sd, NS_SO_LINGER0, 1), 0);
    ASSERT_EQ(ns_tcp_close(ns, sd), 0);
    poll();
    EXPECT_TRUE(one().has(NS_TCP_RST));
}

TEST_F(NsTcp, DataAfterCloseResets)
{
    int sd = open_passive();
    ASSERT_EQ(ns_tcp_close(ns, sd), 0);
    poll();
    EXPECT_TRUE(one().has(NS_TCP_FIN));
    peer_data(str_bytes("more"));
    TcpSeg r = one();
    EXPECT_TRUE(r.has(NS_TCP_RST));
    EXPECT_EQ(stats().tcp_aborts_on_data, 1u);
}

TEST_F(NsTcp, ResetChecksPerRfc5961)
{
    int sd = open_passive();
    // In window but not exactly rcv_nxt: challenge ACK, connection stays.
    peer_send(pseq + 100, 0, NS_TCP_RST);
    TcpSeg c = one();
    EXPECT_EQ(c.flags, NS_TCP_ACK);
    EXPECT_EQ(c.ack, pseq);
    EXPECT_EQ(state(sd), NS_TCP_ESTABLISHED);
    EXPECT_EQ(stats().tcp_challenge_acks, 1u);
    // Out of window: silently dropped.
    peer_send(pseq + 10000000, 0, NS_TCP_RST);
    EXPECT_TRUE(segs().empty());
    EXPECT_EQ(state(sd), NS_TCP_ESTABLISHED);
    // A SYN on an established connection: challenge ACK.
    peer_send(pseq + 5, 0, NS_TCP_SYN);
    EXPECT_EQ(one().flags, NS_TCP_ACK);
    EXPECT_EQ(stats().tcp_challenge_acks, 2u);
    // Exact: reset.
    peer_send(pseq, 0, NS_TCP_RST);
    EXPECT_TRUE(segs().empty());
    EXPECT_EQ(state(sd), NS_TCP_CLOSED);
    char b[4];
    EXPECT_EQ(ns_tcp_recv(ns, sd, b, 4), -ECONNRESET);
    EXPECT_EQ(ns_tcp_recv(ns, sd, b, 4), 0) << "reported once";
    EXPECT_EQ(ns_tcp_send(ns, sd, b, 4), -EPIPE);
    EXPECT_EQ(stats().tcp_rst_rx, 1u);
}

TEST_F(NsTcp, ChallengeAcksAreRateLimited)
{
    open_passive();
    for (unsigned i = 0; i < NS_TCP_CHALLENGE_ACK_PER_SEC + 5; i++)
        peer_send(pseq + 1, 0, NS_TCP_RST);
    EXPECT_EQ(segs().size(), size_t(NS_TCP_CHALLENGE_ACK_PER_SEC));
    EXPECT_EQ(stats().tcp_challenge_acks_limited, 5u);
}

TEST_F(NsTcp, AckForUnsentDataIsAnsweredAndDropped)
{
    int sd = open_passive();
    peer_send(pseq, snd + 1000, NS_TCP_ACK | NS_TCP_PSH, str_bytes("data"));
    TcpSeg a = one();
    EXPECT_EQ(a.ack, pseq) << "ACK with our current state; data not taken";
    char b[8];
    EXPECT_EQ(ns_tcp_recv(ns, sd, b, 8), -EAGAIN);
    EXPECT_EQ(stats().tcp_rx_ack_unsent, 1u);
}

TEST_F(NsTcp, OutOfWindowSegmentGetsAck)
{
    open_passive();
    peer_send(pseq - 5000, snd, NS_TCP_ACK, str_bytes("old"));
    EXPECT_EQ(one().ack, pseq);
    EXPECT_EQ(stats().tcp_rx_out_of_window, 1u);
}

TEST_F(NsTcp, AcceptQueueLimit)
{
    lsd = ns_tcp_socket(ns);
    ns_sockaddr l = sa(0, lport);
    ASSERT_EQ(ns_tcp_bind(ns, lsd, &l), 0);
    ASSERT_EQ(ns_tcp_listen(ns, lsd, 1), 0);   // backlog + 1 = 2 queued, as Linux
    for (uint16_t i = 0; i < 3; i++) {
        pport = uint16_t(41000 + i);
        peer_send(100, 0, NS_TCP_SYN);
        auto v = segs();
        if (i < 2) {
            ASSERT_EQ(v.size(), 1u);
            peer_send(101, v[0].seq + 1, NS_TCP_ACK);
        } else {
            EXPECT_TRUE(v.empty()) << "SYN dropped while the accept queue is full";
        }
    }
    EXPECT_EQ(stats().tcp_accept_queue_overflow, 1u);
    EXPECT_TRUE(ns_tcp_events(ns, lsd) & NS_EV_IN);
    EXPECT_GE(ns_tcp_accept(ns, lsd, nullptr), 0);
    EXPECT_GE(ns_tcp_accept(ns, lsd, nullptr), 0);
    EXPECT_EQ(ns_tcp_accept(ns, lsd, nullptr), -EAGAIN);
}

TEST_F(NsTcp, SynQueueLimit)
{
    lsd = ns_tcp_socket(ns);
    ns_sockaddr l = sa(0, lport);
    ASSERT_EQ(ns_tcp_bind(ns, lsd, &l), 0);
    ASSERT_EQ(ns_tcp_listen(ns, lsd, 1000), 0);
    for (unsigned i = 0; i < NS_TCP_SYN_BACKLOG + 3; i++) {
        pport = uint16_t(20000 + i);
        peer_send(100, 0, NS_TCP_SYN);
    }
    EXPECT_EQ(segs().size(), size_t(NS_TCP_SYN_BACKLOG));
    EXPECT_EQ(stats().tcp_syn_queue_overflow, 3u);
    // Closing the listener frees every half-open child.
    EXPECT_EQ(ns_tcp_close(ns, lsd), 0);
}

TEST_F(NsTcp, ListenerCloseResetsUnacceptedConnections)
{
    open_passive();
    pport = 40001;
    peer_send(100, 0, NS_TCP_SYN);
    TcpSeg s = one();
    peer_send(101, s.seq + 1, NS_TCP_ACK);
    ASSERT_EQ(ns_tcp_close(ns, lsd), 0);
    poll();
    TcpSeg r = one();
    EXPECT_TRUE(r.has(NS_TCP_RST));
    EXPECT_EQ(r.dport, 40001);
}

TEST_F(NsTcp, BindRules)
{
    int a = ns_tcp_socket(ns), b = ns_tcp_socket(ns);
    ns_sockaddr l = sa(0, 8080);
    ASSERT_EQ(ns_tcp_bind(ns, a, &l), 0);
    EXPECT_EQ(ns_tcp_bind(ns, a, &l), -EINVAL);
    EXPECT_EQ(ns_tcp_bind(ns, b, &l), -EADDRINUSE);
    ns_sockaddr other = sa(NS_IP4(10, 0, 0, 9), 8081);
    EXPECT_EQ(ns_tcp_bind(ns, b, &other), -EADDRNOTAVAIL);
    ASSERT_EQ(ns_tcp_listen(ns, a, 4), 0);
    ASSERT_EQ(ns_tcp_setsockopt(ns, b, NS_SO_REUSEADDR, 1), 0);
    EXPECT_EQ(ns_tcp_bind(ns, b, &l), -EADDRINUSE) << "never over a listener";
    ns_sockaddr any = sa(0, 0);
    ASSERT_EQ(ns_tcp_bind(ns, b, &any), 0);
    ns_sockaddr got;
    ASSERT_EQ(ns_tcp_getsockname(ns, b, &got), 0);
    EXPECT_GE(ns_ntoh16(got.port), NS_EPHEMERAL_PORT_MIN);
    EXPECT_EQ(ns_tcp_close(ns, 12345), -EBADF);
    EXPECT_EQ(ns_tcp_accept(ns, b, nullptr), -EINVAL);
    char c;
    EXPECT_EQ(ns_tcp_recv(ns, b, &c, 1), -ENOTCONN);
    EXPECT_EQ(ns_tcp_send(ns, b, &c, 1), -ENOTCONN);
    EXPECT_EQ(ns_tcp_shutdown(ns, b, 1), -ENOTCONN);
    EXPECT_EQ(ns_tcp_getpeername(ns, b, &got), -ENOTCONN);
}

TEST_F(NsTcp, ReuseAddrOverTimeWait)
{
    int sd = open_passive();
    ASSERT_EQ(ns_tcp_close(ns, lsd), 0);
    ASSERT_EQ(ns_tcp_close(ns, sd), 0);
    poll();
    segs();
    peer_ack(snd + 1);
    peer_data({}, NS_TCP_ACK | NS_TCP_FIN);  // -> TIME_WAIT (orphan)
    segs();
    int n = ns_tcp_socket(ns);
    ns_sockaddr l = sa(0, lport);
    EXPECT_EQ(ns_tcp_bind(ns, n, &l), -EADDRINUSE);
    ASSERT_EQ(ns_tcp_setsockopt(ns, n, NS_SO_REUSEADDR, 1), 0);
    EXPECT_EQ(ns_tcp_bind(ns, n, &l), 0);
    EXPECT_EQ(ns_tcp_listen(ns, n, 4), 0);
    // A new SYN with a higher sequence number takes over the TIME_WAIT 4-tuple.
    peer_send(pseq + 100000, 0, NS_TCP_SYN);
    TcpSeg s = one();
    EXPECT_TRUE(s.has(NS_TCP_SYN | NS_TCP_ACK));
}

TEST_F(NsTcp, SocketOptionsRoundTrip)
{
    int sd = ns_tcp_socket(ns);
    int v = 0;
    ASSERT_EQ(ns_tcp_setsockopt(ns, sd, NS_TCP_NODELAY, 1), 0);
    ASSERT_EQ(ns_tcp_getsockopt(ns, sd, NS_TCP_NODELAY, &v), 0);
    EXPECT_EQ(v, 1);
    ASSERT_EQ(ns_tcp_setsockopt(ns, sd, NS_SO_RCVBUF, 100000), 0);
    ASSERT_EQ(ns_tcp_getsockopt(ns, sd, NS_SO_RCVBUF, &v), 0);
    EXPECT_EQ(v, 100000);
    EXPECT_EQ(ns_tcp_setsockopt(ns, sd, NS_TCP_MAXSEG, 10), -EINVAL);
    EXPECT_EQ(ns_tcp_setsockopt(ns, sd, NS_TCP_CONGESTION, 7), -EINVAL);
    ASSERT_EQ(ns_tcp_setsockopt(ns, sd, NS_TCP_CONGESTION, NS_CC_NEWRENO), 0);
    ASSERT_EQ(ns_tcp_getsockopt(ns, sd, NS_TCP_CONGESTION, &v), 0);
    EXPECT_EQ(v, NS_CC_NEWRENO);
    EXPECT_EQ(ns_tcp_setsockopt(ns, sd, NS_SO_ERROR, 1), -ENOPROTOOPT);
    EXPECT_EQ(ns_tcp_setsockopt(ns, sd, NS_TCP_KEEPCNT, 0), -EINVAL);
    EXPECT_EQ(ns_tcp_getsockopt(ns, sd, NS_TCP_KEEPIDLE, &v), 0);
    EXPECT_EQ(v, int(NS_TCP_KEEPIDLE_S));
}

TEST_F(NsTcp, MaxSegClampsAnnouncedMss)
{
    lsd = ns_tcp_socket(ns);
    ns_sockaddr l = sa(0, lport);
    ASSERT_EQ(ns_tcp_bind(ns, lsd, &l), 0);
    ASSERT_EQ(ns_tcp_setsockopt(ns, lsd, NS_TCP_MAXSEG, 1000), 0);
    ASSERT_EQ(ns_tcp_listen(ns, lsd, 4), 0);
    TcpOpt o;
    o.mss = 1460;
    peer_send(1, 0, NS_TCP_SYN, {}, 65535, o);
    TcpSeg s = one();
    EXPECT_EQ(s.opt.mss, 1000);
}

TEST_F(NsTcp, UdpDatagramsShowInEvents)
{
    int u = udp_bound(7000);
    inject(from_peer_ip(NS_IPPROTO_UDP, udp_pkt(ipB(), ipA(), 1, 7000, str_bytes("x"))));
    inject(from_peer_ip(NS_IPPROTO_UDP, udp_pkt(ipB(), ipA(), 1, 7000, str_bytes("y"))));
    ns_event ev[4];
    ASSERT_EQ(ns_events(ns, ev, 4), 1);
    EXPECT_EQ(ev[0].proto, NS_PROTO_UDP);
    EXPECT_EQ(ev[0].sd, u);
    EXPECT_TRUE(ev[0].events & NS_EV_IN);
    inject(from_peer_ip(NS_IPPROTO_UDP, udp_pkt(ipB(), ipA(), 1, 7000, str_bytes("z"))));
    ns_udp_close(ns, u);
    EXPECT_EQ(ns_events(ns, ev, 4), 0) << "closed sockets are never listed";
}

TEST_F(NsTcpPair, TransferBothWaysAndClose)
{
    auto [c, s] = connect_pair();
    std::string big(300000, '\0');
    for (size_t i = 0; i < big.size(); i++)
        big[i] = char('a' + i % 23);
    size_t sent_c = 0, sent_s = 0;
    std::string got_s, got_c;
    for (int round = 0; round < 10000 && (got_s.size() < big.size() || got_c.size() < big.size()); round++) {
        if (sent_c < big.size()) {
            int n = ns_tcp_send(a, c, big.data() + sent_c, big.size() - sent_c);
            if (n > 0)
                sent_c += size_t(n);
        }
        if (sent_s < big.size()) {
            int n = ns_tcp_send(b, s, big.data() + sent_s, big.size() - sent_s);
            if (n > 0)
                sent_s += size_t(n);
        }
        now += 100000;
        pump();
        got_s += drain(b, s);
        got_c += drain(a, c);
    }
    EXPECT_EQ(got_s, big);
    EXPECT_EQ(got_c, big);
    ASSERT_EQ(ns_tcp_close(a, c), 0);
    pump();
    EXPECT_EQ(state(b, s), NS_TCP_CLOSE_WAIT);
    char x;
    EXPECT_EQ(ns_tcp_recv(b, s, &x, 1), 0);
    ASSERT_EQ(ns_tcp_close(b, s), 0);
    pump();
    run_ms(2 * NS_TCP_MSL_MS + 100, 50);
    ns_stats st;
    ns_stats_get(a, &st);
    EXPECT_EQ(st.tcp_retransmits, 0u);
}

TEST_F(NsTcpPair, ConnectionsAreDemuxedByFourTuple)
{
    int l = ns_tcp_socket(b);
    ns_sockaddr la = sa(0, 80);
    ASSERT_EQ(ns_tcp_bind(b, l, &la), 0);
    ASSERT_EQ(ns_tcp_listen(b, l, 64), 0);
    std::vector<int> cs, ss;
    for (int i = 0; i < 40; i++) {
        int c = ns_tcp_socket(a);
        ns_sockaddr ra = sa(ipB(), 80);
        ASSERT_EQ(ns_tcp_connect(a, c, &ra), -EINPROGRESS);
        cs.push_back(c);
        if (i == 0)
            pump();              // ARP resolved before the crowd (its pending queue is short)
    }
    pump();
    for (int i = 0; i < 40; i++) {
        int s = ns_tcp_accept(b, l, nullptr);
        ASSERT_GE(s, 0);
        ss.push_back(s);
    }
    for (int i = 0; i < 40; i++) {
        std::string m = "conn" + std::to_string(i);
        ASSERT_EQ(ns_tcp_send(a, cs[size_t(i)], m.data(), m.size()), int(m.size()));
    }
    pump();
    std::vector<std::string> got;
    for (int s : ss)
        got.push_back(drain(b, s));
    for (int i = 0; i < 40; i++) {
        ns_sockaddr pa;
        ns_tcp_getpeername(b, ss[size_t(i)], &pa);
        // Map the server socket back to its client by port.
        for (int j = 0; j < 40; j++) {
            ns_sockaddr ca;
            ns_tcp_getsockname(a, cs[size_t(j)], &ca);
            if (ca.port == pa.port)
                EXPECT_EQ(got[size_t(i)], "conn" + std::to_string(j));
        }
    }
    for (int c : cs)
        ns_tcp_close(a, c);
    for (int s : ss)
        ns_tcp_close(b, s);
    ns_tcp_close(b, l);
    pump();
}

}  // namespace
