// TCP timers and loss recovery: RTO per RFC 6298 (doubling, Karn, ETIMEDOUT), SYN retries,
// fast retransmit and NewReno partial ACKs, SACK blocks and SACK-based retransmission,
// out-of-order reassembly, Nagle, zero-window probes, keepalive, user timeout, PAWS,
// simultaneous open, ISNs; against a scripted peer.
#include <errno.h>

#include "tcp_harness.h"

namespace {

class NsTcpLoss : public TcpTest {
protected:
    // Advance in 1 ms steps until something is sent or `limit` ms pass; returns the ms waited.
    uint64_t wait_tx(uint64_t limit)
    {
        for (uint64_t t = 1; t <= limit; t++) {
            advance(1);
            ns_flush(ns);
            if (!dev.txq.empty())
                return t;
        }
        return limit + 1;
    }
    struct ns_tcp_info info(int sd)
    {
        struct ns_tcp_info i;
        EXPECT_EQ(ns_tcp_info(ns, sd, &i), 0);
        return i;
    }
    void send_str(int sd, const std::string &s)
    {
        ASSERT_EQ(ns_tcp_send(ns, sd, s.data(), s.size()), int(s.size()));
        ns_flush(ns);
    }
};

TEST_F(NsTcpLoss, RtoDoublesThenTimesOut)
{
    int sd = open_passive();
    uint32_t rto = info(sd).rto_ms;
    EXPECT_EQ(rto, NS_TCP_RTO_MIN_MS) << "handshake RTT ~0: RTO at its floor";
    send_str(sd, "data");
    TcpSeg d = one();
    ASSERT_EQ(d.payload, str_bytes("data"));
    uint64_t expect = rto;
    for (int i = 0; i < 5; i++) {
        uint64_t waited = wait_tx(expect + 5);
        EXPECT_GE(waited, expect) << "retransmission " << i;
        EXPECT_LE(waited, expect + 1) << "retransmission " << i;
        TcpSeg r = one();
        EXPECT_EQ(r.seq, d.seq);
        EXPECT_EQ(r.payload, d.payload);
        expect *= 2;
    }
    EXPECT_EQ(info(sd).rto_events, 5u);
    // Keep going until the retry limit: ETIMEDOUT.
    for (int i = 0; i < 40 && state(sd) != NS_TCP_CLOSED; i++) {
        advance(NS_TCP_RTO_MAX_MS);
        segs();
    }
    EXPECT_EQ(state(sd), NS_TCP_CLOSED);
    char b[4];
    EXPECT_EQ(ns_tcp_recv(ns, sd, b, 4), -ETIMEDOUT);
    EXPECT_EQ(stats().tcp_timeouts, 1u);
    EXPECT_EQ(stats().tcp_rto_events, uint64_t(NS_TCP_RETRIES));
}

TEST_F(NsTcpLoss, KarnNoSampleFromRetransmission)
{
    int sd = open_passive();  // no timestamps: only timed segments give samples
    send_str(sd, "a");
    one();
    advance(60);
    peer_ack(snd + 1);        // 60 ms RTT sample
    snd += 1;
    uint32_t srtt = info(sd).srtt_us;
    EXPECT_NEAR(double(srtt), (7.0 * 1 + 60000) / 8, 1000);
    send_str(sd, "b");
    one();
    uint64_t w = wait_tx(5000);
    ASSERT_LE(w, 5000u);
    one();                     // the retransmission
    uint32_t backed = info(sd).rto_ms;
    advance(backed - 50);      // a late ACK would be a big sample if taken
    segs();
    peer_ack(snd + 1);
    snd += 1;
    EXPECT_EQ(info(sd).srtt_us, srtt) << "Karn: the ACK of a retransmitted segment is no sample";
    EXPECT_EQ(info(sd).rto_ms, backed) << "backed-off RTO kept until a valid sample";
    send_str(sd, "c");
    one();
    advance(10);
    peer_ack(snd + 1);
    EXPECT_LT(info(sd).rto_ms, backed);
}

TEST_F(NsTcpLoss, SynRetriesEndInEtimedout)
{
    int sd = ns_tcp_socket(ns);
    ns_sockaddr r = sa(ipB(), pport);
    ASSERT_EQ(ns_tcp_connect(ns, sd, &r), -EINPROGRESS);
    ns_flush(ns);
    TcpSeg syn = one();
    uint64_t expect = NS_TCP_RTO_INIT_MS;
    for (unsigned i = 0; i < NS_TCP_SYN_RETRIES; i++) {
        advance(expect - 1);
        EXPECT_TRUE(segs().empty());
        advance(1);
        TcpSeg s = one();
        EXPECT_TRUE(s.has(NS_TCP_SYN));
        EXPECT_EQ(s.seq, syn.seq);
        expect *= 2;
    }
    advance(expect);
    EXPECT_EQ(state(sd), NS_TCP_CLOSED);
    EXPECT_TRUE(ns_tcp_events(ns, sd) & NS_EV_ERR);
    int err = 0;
    ns_tcp_getsockopt(ns, sd, NS_SO_ERROR, &err);
    EXPECT_EQ(err, ETIMEDOUT);
}

TEST_F(NsTcpLoss, SynAckRetriesAndHalfOpenDropped)
{
    lsd = ns_tcp_socket(ns);
    ns_sockaddr l = sa(0, lport);
    ASSERT_EQ(ns_tcp_bind(ns, lsd, &l), 0);
    ASSERT_EQ(ns_tcp_listen(ns, lsd, 4), 0);
    peer_send(100, 0, NS_TCP_SYN);
    TcpSeg sa1 = one();
    // A retransmitted SYN gets the SYN-ACK again.
    peer_send(100, 0, NS_TCP_SYN);
    TcpSeg sa2 = one();
    EXPECT_EQ(sa2.seq, sa1.seq);
    int n = 0;
    for (int i = 0; i < 200; i++) {
        advance(1000);
        n += int(segs().size());
    }
    EXPECT_EQ(n, int(NS_TCP_SYNACK_RETRIES));
    // The half-open child is gone: its ACK now meets the listener, which resets.
    peer_send(101, sa1.seq + 1, NS_TCP_ACK);
    EXPECT_TRUE(one().has(NS_TCP_RST));
}

TEST_F(NsTcpLoss, FastRetransmitAndNewRenoPartialAck)
{
    TcpOpt o;
    o.mss = 1000;
    int sd = open_passive(o);
    ASSERT_EQ(ns_tcp_setsockopt(ns, sd, NS_TCP_NODELAY, 1), 0);
    std::string data(6000, 'x');
    send_str(sd, data);
    auto v = segs();
    ASSERT_EQ(v.size(), 6u);
    // Segments 1 and 3 lost: three duplicate ACKs for seg 1.
    for (int i = 0; i < 2; i++)
        peer_ack(snd);
    EXPECT_TRUE(segs().empty());
    peer_ack(snd);
    TcpSeg r = one();
    EXPECT_EQ(r.seq, snd) << "third duplicate ACK: fast retransmit";
    EXPECT_EQ(r.payload.size(), 1000u);
    EXPECT_EQ(stats().tcp_fast_retransmits, 1u);
    EXPECT_EQ(info(sd).fast_retransmits, 1u);
    // Partial ACK up to seg 3: NewReno retransmits it at once (RFC 6582).
    peer_ack(snd + 2000);
    auto p = segs();
    ASSERT_GE(p.size(), 1u);
    EXPECT_EQ(p[0].seq, snd + 2000);
    // Full ACK ends recovery.
    peer_ack(snd + 6000);
    EXPECT_EQ(info(sd).unacked, 0u);
    EXPECT_EQ(stats().tcp_rto_events, 0u);
}

TEST_F(NsTcpLoss, SackBlocksReportMostRecentFirst)
{
    TcpOpt o;
    o.sackperm = true;
    int sd = open_passive(o);
    uint32_t base = pseq;
    peer_send(base + 100, snd, NS_TCP_ACK, Bytes(100, 'b'));  // [100,200)
    TcpSeg a = one();
    EXPECT_EQ(a.ack, base) << "out of order: immediate duplicate ACK";
    ASSERT_EQ(a.opt.sack.size(), 1u);
    EXPECT_EQ(a.opt.sack[0], std::make_pair(base + 100, base + 200));
    peer_send(base + 300, snd, NS_TCP_ACK, Bytes(100, 'd'));  // [300,400)
    a = one();
    ASSERT_EQ(a.opt.sack.size(), 2u);
    EXPECT_EQ(a.opt.sack[0], std::make_pair(base + 300, base + 400));
    EXPECT_EQ(a.opt.sack[1], std::make_pair(base + 100, base + 200));
    peer_send(base + 200, snd, NS_TCP_ACK, Bytes(100, 'c'));  // joins both
    a = one();
    ASSERT_EQ(a.opt.sack.size(), 1u);
    EXPECT_EQ(a.opt.sack[0], std::make_pair(base + 100, base + 400));
    peer_send(base, snd, NS_TCP_ACK, Bytes(100, 'a'));        // fills the gap
    a = one();
    EXPECT_EQ(a.ack, base + 400) << "gap filled: immediate cumulative ACK";
    EXPECT_TRUE(a.opt.sack.empty());
    std::string got = recv_all(sd);
    EXPECT_EQ(got, std::string(100, 'a') + std::string(100, 'b') + std::string(100, 'c') + std::string(100, 'd'));
}

TEST_F(NsTcpLoss, SackRecoveryRetransmitsOnlyHoles)
{
    TcpOpt o;
    o.mss = 1000;
    o.sackperm = true;
    int sd = open_passive(o);
    ASSERT_EQ(ns_tcp_setsockopt(ns, sd, NS_TCP_NODELAY, 1), 0);
    send_str(sd, std::string(8000, 's'));
    ASSERT_EQ(segs().size(), 8u);
    // Segments 0 and 3 lost; the peer SACKs the rest as it arrives.
    auto sack_ack = [&](std::vector<std::pair<uint32_t, uint32_t>> blocks) {
        TcpOpt so;
        so.sack = blocks;
        peer_send(pseq, snd, NS_TCP_ACK, {}, 65535, so);
    };
    sack_ack({{snd + 1000, snd + 2000}});
    sack_ack({{snd + 1000, snd + 3000}});
    sack_ack({{snd + 4000, snd + 5000}, {snd + 1000, snd + 3000}});
    auto r = segs();
    ASSERT_GE(r.size(), 1u);
    EXPECT_EQ(r[0].seq, snd);
    bool hole3 = false;
    for (auto &x : r) {
        if (x.seq == snd + 3000)
            hole3 = true;
        bool in_sacked = (x.seq >= snd + 1000 && x.seq < snd + 3000) || (x.seq >= snd + 4000 && x.seq < snd + 5000);
        EXPECT_FALSE(in_sacked) << "retransmitted SACKed data at +" << (x.seq - snd);
    }
    sack_ack({{snd + 4000, snd + 8000}, {snd + 1000, snd + 3000}});
    r = segs();
    for (auto &x : r) {
        if (x.seq == snd + 3000)
            hole3 = true;
        bool in_sacked = (x.seq >= snd + 1000 && x.seq < snd + 3000) || (x.seq >= snd + 4000 && x.seq < snd + 8000);
        EXPECT_FALSE(in_sacked) << "retransmitted SACKed data at +" << (x.seq - snd);
    }
    EXPECT_TRUE(hole3) << "second hole retransmitted";
    peer_ack(snd + 8000);
    EXPECT_EQ(info(sd).unacked, 0u);
    EXPECT_EQ(stats().tcp_rto_events, 0u);
}

TEST_F(NsTcpLoss, OutOfOrderReassembly)
{
    int sd = open_passive();
    uint32_t base = pseq;
    peer_send(base + 20, snd, NS_TCP_ACK, str_bytes("CCCCCCCCCC"));
    peer_send(base + 10, snd, NS_TCP_ACK, str_bytes("BBBBBBBBBB"));
    peer_send(base + 15, snd, NS_TCP_ACK, str_bytes("bbbbbCCCCC"));  // overlapping duplicate
    EXPECT_EQ(segs().size(), 3u) << "each out-of-order segment is ACKed at once";
    char c;
    EXPECT_EQ(ns_tcp_recv(ns, sd, &c, 1), -EAGAIN);
    peer_send(base, snd, NS_TCP_ACK | NS_TCP_FIN, str_bytes("AAAAAAAAAA"));  // FIN after the gap... at 10
    peer_send(base + 30, snd, NS_TCP_ACK | NS_TCP_FIN, {});
    EXPECT_EQ(recv_all(sd), "AAAAAAAAAABBBBBBBBBBCCCCCCCCCC");
    EXPECT_EQ(state(sd), NS_TCP_CLOSE_WAIT);
    EXPECT_EQ(ns_tcp_recv(ns, sd, &c, 1), 0);
}

TEST_F(NsTcpLoss, NagleHoldsSmallSegmentsUnlessNoDelay)
{
    int sd = open_passive();
    send_str(sd, "a");
    EXPECT_EQ(one().payload, str_bytes("a"));
    send_str(sd, "b");
    send_str(sd, "c");
    EXPECT_TRUE(segs().empty()) << "Nagle: small data waits while data is unacknowledged";
    peer_ack(snd + 1);
    TcpSeg s = one();
    EXPECT_EQ(s.payload, str_bytes("bc"));
    ASSERT_EQ(ns_tcp_setsockopt(ns, sd, NS_TCP_NODELAY, 1), 0);
    send_str(sd, "d");
    EXPECT_EQ(one().payload, str_bytes("d"));
}

TEST_F(NsTcpLoss, ZeroWindowProbes)
{
    TcpOpt o;
    o.mss = 1000;
    int sd = open_passive(o);
    send_str(sd, std::string(500, 'z'));
    one();
    peer_ack(snd + 500, 0);  // all acked, window closed
    snd += 500;
    send_str(sd, std::string(300, 'y'));
    EXPECT_TRUE(segs().empty());
    uint64_t w1 = wait_tx(10000);
    TcpSeg p1 = one();
    EXPECT_EQ(p1.seq, snd - 1) << "probe with an old sequence number";
    EXPECT_TRUE(p1.payload.empty());
    peer_ack(snd, 0);
    uint64_t w2 = wait_tx(20000);
    one();
    EXPECT_GT(w2, w1) << "probe interval backs off";
    EXPECT_EQ(stats().tcp_zero_window_probes, 2u);
    peer_ack(snd, 4000);     // window opens
    TcpSeg d = one();
    EXPECT_EQ(d.payload.size(), 300u);
    EXPECT_EQ(d.seq, snd);
}

TEST_F(NsTcpLoss, KeepaliveProbesThenTimeout)
{
    int sd = open_passive();
    ASSERT_EQ(ns_tcp_setsockopt(ns, sd, NS_TCP_KEEPIDLE, 10), 0);
    ASSERT_EQ(ns_tcp_setsockopt(ns, sd, NS_TCP_KEEPINTVL, 2), 0);
    ASSERT_EQ(ns_tcp_setsockopt(ns, sd, NS_TCP_KEEPCNT, 3), 0);
    ASSERT_EQ(ns_tcp_setsockopt(ns, sd, NS_SO_KEEPALIVE, 1), 0);
    advance(9990);
    EXPECT_TRUE(segs().empty());
    advance(20);
    TcpSeg k = one();
    EXPECT_EQ(k.seq, snd - 1);
    EXPECT_EQ(k.flags, NS_TCP_ACK);
    // Answered: the connection lives and idles again.
    peer_ack(snd);
    segs();
    advance(2000);
    EXPECT_TRUE(segs().empty());
    EXPECT_EQ(state(sd), NS_TCP_ESTABLISHED);
    advance(8100);
    EXPECT_EQ(one().seq, snd - 1);
    // Unanswered: 3 probes 2 s apart, then ETIMEDOUT.
    for (int i = 0; i < 2; i++) {
        advance(2000);
        EXPECT_EQ(segs().size(), 1u);
    }
    advance(2000);
    EXPECT_EQ(state(sd), NS_TCP_CLOSED);
    TcpSeg r = one();
    EXPECT_TRUE(r.has(NS_TCP_RST)) << "giving up resets the peer, as Linux";
    char c;
    EXPECT_EQ(ns_tcp_recv(ns, sd, &c, 1), -ETIMEDOUT);
    EXPECT_EQ(stats().tcp_keepalive_probes, 4u);
}

TEST_F(NsTcpLoss, UserTimeoutEndsConnection)
{
    int sd = open_passive();
    ASSERT_EQ(ns_tcp_setsockopt(ns, sd, NS_TCP_USER_TIMEOUT, 1500), 0);
    send_str(sd, "never acked");
    one();
    for (int i = 0; i < 3000 && state(sd) != NS_TCP_CLOSED; i++)
        advance(1);
    EXPECT_EQ(state(sd), NS_TCP_CLOSED);
    EXPECT_GE(now, 1000 * kMs + 1500 * kMs);
    EXPECT_LE(now, 1000 * kMs + 1502 * kMs);
    int err = 0;
    ns_tcp_getsockopt(ns, sd, NS_SO_ERROR, &err);
    EXPECT_EQ(err, ETIMEDOUT);
}

TEST_F(NsTcpLoss, PawsDropsOldTimestamps)
{
    TcpOpt o;
    o.ts = true;
    o.tsval = 1000;
    int sd = open_passive(o);
    TcpOpt t;
    t.ts = true;
    t.tsval = 2000;
    peer_send(pseq, snd, NS_TCP_ACK, str_bytes("new"), 65535, t);
    pseq += 3;
    segs();
    t.tsval = 1500;  // older than TS.Recent
    peer_send(pseq, snd, NS_TCP_ACK, str_bytes("old"), 65535, t);
    TcpSeg a = one();
    EXPECT_EQ(a.ack, pseq) << "PAWS: dropped and ACKed";
    EXPECT_EQ(stats().tcp_rx_paws, 1u);
    EXPECT_EQ(a.opt.tsecr, 2000u);
    EXPECT_EQ(recv_all(sd), "new");
}

TEST_F(NsTcpLoss, TimestampsGiveRttSamples)
{
    TcpOpt o;
    o.ts = true;
    o.tsval = 1;
    int sd = open_passive(o);
    ASSERT_EQ(ns_tcp_setsockopt(ns, sd, NS_TCP_NODELAY, 1), 0);
    send_str(sd, "x");
    TcpSeg d = one();
    ASSERT_TRUE(d.opt.ts);
    // Let it be retransmitted, then ACK echoing the ORIGINAL transmission's TSval:
    // the timestamp makes the sample safe despite the retransmission (RFC 7323 4).
    wait_tx(1000);
    one();
    TcpOpt t;
    t.ts = true;
    t.tsval = 5;
    t.tsecr = d.opt.tsval;
    peer_send(pseq, snd + 1, NS_TCP_ACK, {}, 65535, t);
    EXPECT_GT(info(sd).srtt_us, 20000u) << "a ~200 ms sample from the echoed timestamp";
}

TEST_F(NsTcpLoss, WindowScaleApplied)
{
    TcpOpt o;
    o.ws = 4;
    int sd = open_passive(o);
    ASSERT_GE(last_syn_opts.ws, 0);
    int ours = last_syn_opts.ws;
    // Our later windows are scaled by our shift.
    peer_data(str_bytes("w"));
    advance(NS_TCP_DELACK_MS + 1);
    TcpSeg a = one();
    uint32_t rcvbuf = NS_TCP_RCVBUF;
    EXPECT_NEAR(double(uint32_t(a.win) << ours), double(rcvbuf), double(1u << ours) + 1);
    // The peer's windows are scaled by its shift.
    peer_ack(snd, 100);
    EXPECT_EQ(info(sd).snd_wnd, 100u << 4);
}

TEST_F(NsTcpLoss, SimultaneousOpen)
{
    int sd = ns_tcp_socket(ns);
    ns_sockaddr r = sa(ipB(), pport);
    ASSERT_EQ(ns_tcp_connect(ns, sd, &r), -EINPROGRESS);
    ns_flush(ns);
    TcpSeg syn = one();
    lport = syn.sport;
    peer_send(peer_iss, 0, NS_TCP_SYN);  // the peer's own SYN crosses ours
    TcpSeg sa_ = one();
    EXPECT_TRUE(sa_.has(NS_TCP_SYN | NS_TCP_ACK));
    EXPECT_EQ(sa_.seq, syn.seq);
    EXPECT_EQ(sa_.ack, peer_iss + 1);
    EXPECT_EQ(state(sd), NS_TCP_SYN_RECEIVED);
    peer_send(peer_iss, syn.seq + 1, NS_TCP_SYN | NS_TCP_ACK);
    EXPECT_EQ(state(sd), NS_TCP_ESTABLISHED);
    EXPECT_TRUE(ns_tcp_events(ns, sd) & NS_EV_OUT);
}

TEST_F(NsTcpLoss, InitialSequenceNumbersDependOnTupleAndClock)
{
    auto syn_seq = [&](uint16_t rport) {
        int sd = ns_tcp_socket(ns);
        ns_sockaddr r = sa(ipB(), rport);
        EXPECT_EQ(ns_tcp_connect(ns, sd, &r), -EINPROGRESS);
        ns_flush(ns);
        TcpSeg s = one();
        ns_tcp_close(ns, sd);
        return s.seq;
    };
    uint32_t a = syn_seq(1111), b = syn_seq(2222);
    EXPECT_NE(a, b);
    now += 4000 * 1000;  // 4 ms: the clock part moves by 1000
    uint32_t c = syn_seq(1111);
    EXPECT_NE(a, c);
}

TEST_F(NsTcpLoss, AckAfterRtoCarriesHighestSequence)
{
    TcpOpt o;
    o.mss = 1000;
    int sd = open_passive(o);
    ASSERT_EQ(ns_tcp_setsockopt(ns, sd, NS_TCP_NODELAY, 1), 0);
    send_str(sd, std::string(3000, 'r'));
    ASSERT_EQ(segs().size(), 3u);
    wait_tx(1000);           // RTO: snd_nxt goes back to snd_una
    TcpSeg rt = one();
    EXPECT_EQ(rt.seq, snd);
    peer_data(str_bytes("q"));   // the peer's data wants an ACK (delayed, then sent)
    advance(NS_TCP_DELACK_MS + 1);
    TcpSeg a = one();
    EXPECT_TRUE(a.payload.empty());
    EXPECT_EQ(a.seq, snd + 3000) << "a pure ACK carries snd_max, not the rewound snd_nxt";
}

TEST_F(NsTcpLoss, SackBlocksNeverPushSegmentsPastTheMtu)
{
    TcpOpt o;
    o.mss = 1460;
    o.sackperm = true;
    o.ts = true;
    o.tsval = 10;
    int sd = open_passive(o);
    // Three out-of-order blocks from the peer: our ACKs now carry 3 SACK blocks.
    for (int i = 0; i < 3; i++) {
        TcpOpt t;
        t.ts = true;
        t.tsval = 11;
        peer_send(pseq + 100 + 200 * uint32_t(i), snd, NS_TCP_ACK, Bytes(100, 'o'), 65535, t);
    }
    segs();
    send_str(sd, std::string(20000, 'm'));
    auto out = tx();
    ASSERT_FALSE(out.empty());
    for (auto &f : out) {
        Parsed p = parse(f);
        ASSERT_TRUE(p.ip_ok);
        EXPECT_LE(ns_ntoh16(p.ip()->total_len), 1500);
        TcpSeg s = parse_tcp(f);
        EXPECT_EQ(s.opt.sack.size(), 3u);
    }
    EXPECT_EQ(stats().tcp_tx_too_big, 0u);
}

TEST_F(NsTcpLoss, LimitedTransmitOnFirstDupacks)
{
    TcpOpt o;
    o.mss = 1000;
    int sd = open_passive(o);
    ASSERT_EQ(ns_tcp_setsockopt(ns, sd, NS_TCP_NODELAY, 1), 0);
    struct ns_tcp_info i = info(sd);
    uint32_t iw = i.cwnd;
    send_str(sd, std::string(iw + 3000, 'l'));
    EXPECT_EQ(segs().size(), size_t(iw / 1000));
    peer_ack(snd);
    auto v = segs();
    ASSERT_EQ(v.size(), 1u) << "RFC 3042: first duplicate ACK sends one new segment";
    EXPECT_EQ(v[0].seq, snd + iw);
    peer_ack(snd);
    v = segs();
    ASSERT_EQ(v.size(), 1u);
    EXPECT_EQ(v[0].seq, snd + iw + 1000);
    EXPECT_EQ(info(sd).cwnd, iw) << "cwnd unchanged by limited transmit";
}

TEST_F(NsTcpLoss, IdleStackHasNoTimer)
{
    int sd = open_passive();
    EXPECT_EQ(ns_next_timer(ns), UINT64_MAX) << "established and idle: nothing to wake up for";
    ASSERT_EQ(ns_tcp_send(ns, sd, "x", 1), 1);
    EXPECT_LE(ns_next_timer(ns), now + uint64_t(NS_TCP_RTO_MIN_MS) * kMs);
}

TEST_F(NsTcpLoss, IcmpUnreachableFailsConnect)
{
    int sd = ns_tcp_socket(ns);
    ns_sockaddr r = sa(ipB(), pport);
    ASSERT_EQ(ns_tcp_connect(ns, sd, &r), -EINPROGRESS);
    ns_flush(ns);
    auto frames = tx();
    ASSERT_EQ(frames.size(), 1u);
    Parsed p = parse(frames[0]);
    TcpSeg syn = parse_tcp(frames[0]);
    // A quote whose sequence number was never sent is ignored (RFC 5927).
    Bytes bad = p.l3;
    bad[20 + 4] ^= 0x40;
    inject(from_peer_ip(NS_IPPROTO_ICMP, icmp_pkt(NS_ICMP_DEST_UNREACH, NS_ICMP_UNREACH_PORT, 0,
                                                  Bytes(bad.begin(), bad.begin() + 28))));
    EXPECT_EQ(state(sd), NS_TCP_SYN_SENT);
    EXPECT_EQ(stats().tcp_icmp_out_of_window, 1u);
    inject(from_peer_ip(NS_IPPROTO_ICMP, icmp_pkt(NS_ICMP_DEST_UNREACH, NS_ICMP_UNREACH_HOST, 0,
                                                  Bytes(p.l3.begin(), p.l3.begin() + 28))));
    EXPECT_EQ(state(sd), NS_TCP_CLOSED);
    int err = 0;
    ns_tcp_getsockopt(ns, sd, NS_SO_ERROR, &err);
    EXPECT_EQ(err, EHOSTUNREACH);
    (void)syn;
}

TEST_F(NsTcpLoss, IcmpOnEstablishedIsSoftUntilTimeout)
{
    int sd = open_passive();
    ASSERT_EQ(ns_tcp_setsockopt(ns, sd, NS_TCP_USER_TIMEOUT, 1000), 0);
    send_str(sd, "lost");
    auto frames = tx();
    ASSERT_EQ(frames.size(), 1u);
    Parsed p = parse(frames[0]);
    inject(from_peer_ip(NS_IPPROTO_ICMP, icmp_pkt(NS_ICMP_DEST_UNREACH, NS_ICMP_UNREACH_NET, 0,
                                                  Bytes(p.l3.begin(), p.l3.begin() + 28))));
    EXPECT_EQ(state(sd), NS_TCP_ESTABLISHED) << "soft error: the connection goes on";
    for (int i = 0; i < 1100 && state(sd) != NS_TCP_CLOSED; i++)
        advance(1);
    char c;
    EXPECT_EQ(ns_tcp_recv(ns, sd, &c, 1), -ENETUNREACH) << "the timeout reports the ICMP error";
}

class NsTcpStates : public TcpTest, public ::testing::WithParamInterface<ns_tcp_state> {};

TEST_P(NsTcpStates, RstAndSynChecksInEveryState)
{
    int sd = to_state(GetParam());
    ASSERT_EQ(ns_tcp_close(ns, lsd), 0);  // no listener: a SYN cannot take over TIME_WAIT
    // In-window RST with the wrong sequence number: challenge ACK, state kept.
    peer_send(pseq + 10, 0, NS_TCP_RST);
    TcpSeg c = one();
    EXPECT_EQ(c.flags, NS_TCP_ACK);
    EXPECT_EQ(c.ack, pseq);
    EXPECT_EQ(state(sd), int(GetParam()));
    // SYN: challenge ACK too (RFC 5961 4.2).
    peer_send(pseq + 20, 0, NS_TCP_SYN);
    EXPECT_EQ(one().flags, NS_TCP_ACK);
    EXPECT_EQ(state(sd), int(GetParam()));
    // Garbage: wrong checksum, out-of-window data: no state change.
    peer_send(pseq + 3000000, snd, NS_TCP_ACK, str_bytes("far"));
    segs();
    EXPECT_EQ(state(sd), int(GetParam()));
    // Exact RST closes.
    peer_send(pseq, 0, NS_TCP_RST);
    EXPECT_EQ(state(sd), NS_TCP_CLOSED);
    EXPECT_TRUE(segs().empty());
    int err = -1;
    ns_tcp_getsockopt(ns, sd, NS_SO_ERROR, &err);
    int want = GetParam() == NS_TCP_CLOSE_WAIT ? EPIPE
               : (GetParam() == NS_TCP_ESTABLISHED || GetParam() == NS_TCP_FIN_WAIT_1 || GetParam() == NS_TCP_FIN_WAIT_2)
                   ? ECONNRESET
                   : 0;
    EXPECT_EQ(err, want) << "error per Linux tcp_reset";
    EXPECT_TRUE(ns_tcp_events(ns, sd) & NS_EV_HUP);
    EXPECT_EQ(ns_tcp_close(ns, sd), 0);
}

INSTANTIATE_TEST_SUITE_P(All, NsTcpStates,
                         ::testing::Values(NS_TCP_ESTABLISHED, NS_TCP_CLOSE_WAIT, NS_TCP_LAST_ACK, NS_TCP_FIN_WAIT_1,
                                           NS_TCP_FIN_WAIT_2, NS_TCP_CLOSING, NS_TCP_TIME_WAIT));

TEST_F(TcpPair, LossyLinkTransferCompletes)
{
    auto [c, s] = connect_pair();
    std::string big(200000, '\0');
    for (size_t i = 0; i < big.size(); i++)
        big[i] = char(i * 7 + i / 251);
    size_t sent = 0;
    std::string got;
    unsigned n = 0;
    for (int round = 0; round < 200000 && got.size() < big.size(); round++) {
        if (sent < big.size()) {
            int k = ns_tcp_send(a, c, big.data() + sent, big.size() - sent);
            if (k > 0)
                sent += size_t(k);
        }
        ns_poll(a, now);
        ns_poll(b, now);
        for (auto &f : da.take_tx())
            if (++n % 9 != 0)        // lose every 9th frame each way
                ASSERT_TRUE(db.inject(f));
        for (auto &f : db.take_tx())
            if (++n % 9 != 0)
                ASSERT_TRUE(da.inject(f));
        now += 1000000;          // 1 ms per round
        got += drain(b, s);
    }
    EXPECT_EQ(got.size(), big.size());
    EXPECT_TRUE(got == big);
    ns_stats st;
    ns_stats_get(a, &st);
    EXPECT_GT(st.tcp_retransmits, 0u);
    ns_tcp_close(a, c);
    ns_tcp_close(b, s);
}

}  // namespace
