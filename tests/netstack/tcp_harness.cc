// TCP test helpers: segment building/parsing and the scripted-peer and two-stack fixtures.
#include "tcp_harness.h"

namespace {

void put16(Bytes &b, size_t off, uint16_t v) { b[off] = uint8_t(v >> 8); b[off + 1] = uint8_t(v); }
void put32(Bytes &b, size_t off, uint32_t v)
{
    b[off] = uint8_t(v >> 24);
    b[off + 1] = uint8_t(v >> 16);
    b[off + 2] = uint8_t(v >> 8);
    b[off + 3] = uint8_t(v);
}
uint32_t get32(const uint8_t *p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }
uint16_t get16(const uint8_t *p) { return uint16_t(p[0] << 8 | p[1]); }

}  // namespace

Bytes tcp_opts_bytes(const TcpOpt &o)
{
    Bytes b;
    if (o.mss >= 0) {
        b.insert(b.end(), {NS_TCPOPT_MSS, 4, uint8_t(o.mss >> 8), uint8_t(o.mss)});
    }
    if (o.sackperm)
        b.insert(b.end(), {NS_TCPOPT_NOP, NS_TCPOPT_NOP, NS_TCPOPT_SACK_PERM, 2});
    if (o.ts) {
        b.insert(b.end(), {NS_TCPOPT_NOP, NS_TCPOPT_NOP, NS_TCPOPT_TIMESTAMP, 10});
        size_t at = b.size();
        b.resize(at + 8);
        put32(b, at, o.tsval);
        put32(b, at + 4, o.tsecr);
    }
    if (o.ws >= 0)
        b.insert(b.end(), {NS_TCPOPT_NOP, NS_TCPOPT_WSCALE, 3, uint8_t(o.ws)});
    if (!o.sack.empty()) {
        b.insert(b.end(), {NS_TCPOPT_NOP, NS_TCPOPT_NOP, NS_TCPOPT_SACK, uint8_t(2 + 8 * o.sack.size())});
        for (auto &s : o.sack) {
            size_t at = b.size();
            b.resize(at + 8);
            put32(b, at, s.first);
            put32(b, at + 4, s.second);
        }
    }
    while (b.size() % 4)
        b.push_back(NS_TCPOPT_EOL);
    return b;
}

Bytes tcp_pkt(be32_t src, be32_t dst, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags,
              uint16_t win, const Bytes &opts, const Bytes &payload, bool bad_cksum)
{
    Bytes t(20);
    put16(t, 0, sport);
    put16(t, 2, dport);
    put32(t, 4, seq);
    put32(t, 8, ack);
    t[12] = uint8_t(((20 + opts.size()) / 4) << 4);
    t[13] = flags;
    put16(t, 14, win);
    t.insert(t.end(), opts.begin(), opts.end());
    t.insert(t.end(), payload.begin(), payload.end());
    uint32_t sum = ns_cksum_pseudo(src, dst, NS_IPPROTO_TCP, uint16_t(t.size()));
    uint16_t ck = ns_ntoh16(ns_cksum_finish(ns_cksum_add(sum, t.data(), t.size())));
    if (bad_cksum)
        ck ^= 0x0101;
    put16(t, 16, ck);
    return t;
}

TcpSeg parse_tcp(const Bytes &frame)
{
    TcpSeg s;
    Parsed p = parse(frame);
    if (!p.ip_ok || p.ip()->proto != NS_IPPROTO_TCP || p.l4.size() < 20)
        return s;
    const uint8_t *h = p.l4.data();
    size_t hl = size_t(h[12] >> 4) * 4;
    if (hl < 20 || hl > p.l4.size())
        return s;
    s.ok = true;
    s.sport = get16(h);
    s.dport = get16(h + 2);
    s.seq = get32(h + 4);
    s.ack = get32(h + 8);
    s.flags = h[13];
    s.win = get16(h + 14);
    uint32_t sum = ns_cksum_pseudo(p.ip()->src, p.ip()->dst, NS_IPPROTO_TCP, uint16_t(p.l4.size()));
    s.cksum_ok = ns_cksum_finish(ns_cksum_add(sum, p.l4.data(), p.l4.size())) == 0;
    for (size_t i = 20; i < hl;) {
        uint8_t k = h[i];
        if (k == NS_TCPOPT_EOL)
            break;
        if (k == NS_TCPOPT_NOP) {
            i++;
            continue;
        }
        if (i + 1 >= hl || h[i + 1] < 2 || i + h[i + 1] > hl)
            break;
        uint8_t l = h[i + 1];
        if (k == NS_TCPOPT_MSS && l == 4)
            s.opt.mss = get16(h + i + 2);
        else if (k == NS_TCPOPT_WSCALE && l == 3)
            s.opt.ws = h[i + 2];
        else if (k == NS_TCPOPT_SACK_PERM && l == 2)
            s.opt.sackperm = true;
        else if (k == NS_TCPOPT_TIMESTAMP && l == 10) {
            s.opt.ts = true;
            s.opt.tsval = get32(h + i + 2);
            s.opt.tsecr = get32(h + i + 6);
        } else if (k == NS_TCPOPT_SACK) {
            for (size_t j = 2; j + 8 <= l; j += 8)
                s.opt.sack.emplace_back(get32(h + i + j), get32(h + i + j + 4));
        }
        i += l;
    }
    s.payload.assign(p.l4.begin() + long(hl), p.l4.end());
    return s;
}

void TcpTest::SetUp()
{
    // A static ARP entry for the peer: long virtual waits must not see it expire.
    struct ns_config c;
    ns_config_defaults(&c);
    c.ipv4 = ipA();
    c.netmask = netmask24();
    c.gateway = ipGw();
    static struct ns_arp_static peer;
    peer.ip = ipB();
    memcpy(peer.mac, kMacB.data(), 6);
    c.arp_static = &peer;
    c.n_arp_static = 1;
    for (int i = 0; i < 16; i++)
        c.isn_secret[i] = uint8_t(i * 17 + 3);
    make_stack(&c);
}

std::vector<TcpSeg> TcpTest::segs()
{
    std::vector<TcpSeg> out;
    ns_flush(ns);                // what API calls queued goes out now
    for (auto &f : tx()) {
        TcpSeg s = parse_tcp(f);
        if (s.ok) {
            EXPECT_TRUE(s.cksum_ok) << "bad checksum on a segment we sent";
            out.push_back(s);
        }
    }
    return out;
}

TcpSeg TcpTest::one()
{
    auto v = segs();
    EXPECT_EQ(v.size(), 1u) << "expected exactly one segment";
    return v.empty() ? TcpSeg() : v[0];
}

void TcpTest::peer_send(uint32_t seq, uint32_t ack, uint8_t flags, const Bytes &payload, uint16_t win, const TcpOpt &o)
{
    inject(from_peer_ip(NS_IPPROTO_TCP,
                        tcp_pkt(ipB(), ipA(), pport, lport, seq, ack, flags, win, tcp_opts_bytes(o), payload)));
}

void TcpTest::peer_data(const Bytes &payload, uint8_t flags)
{
    peer_send(pseq, snd, flags, payload);
    pseq += uint32_t(payload.size()) + ((flags & NS_TCP_FIN) ? 1 : 0);
}

void TcpTest::peer_ack(uint32_t ack, uint16_t win) { peer_send(pseq, ack, NS_TCP_ACK, {}, win); }

int TcpTest::open_passive(const TcpOpt &syn_opts, int)
{
    lsd = ns_tcp_socket(ns);
    EXPECT_GE(lsd, 0);
    ns_sockaddr l = sa(0, lport);
    EXPECT_EQ(ns_tcp_bind(ns, lsd, &l), 0);
    EXPECT_EQ(ns_tcp_listen(ns, lsd, 16), 0);
    peer_send(peer_iss, 0, NS_TCP_SYN, {}, 65535, syn_opts);
    TcpSeg sa_ = one();
    EXPECT_TRUE(sa_.has(NS_TCP_SYN | NS_TCP_ACK));
    EXPECT_EQ(sa_.ack, peer_iss + 1);
    last_syn_opts = sa_.opt;
    iss = sa_.seq;
    snd = iss + 1;
    pseq = peer_iss + 1;
    TcpOpt ack_opts;
    if (syn_opts.ts && sa_.opt.ts) {
        ack_opts.ts = true;
        ack_opts.tsval = syn_opts.tsval + 1;
        ack_opts.tsecr = sa_.opt.tsval;
    }
    peer_send(pseq, snd, NS_TCP_ACK, {}, 65535, ack_opts);
    ns_sockaddr peer;
    int sd = ns_tcp_accept(ns, lsd, &peer);
    EXPECT_GE(sd, 0);
    EXPECT_EQ(peer.addr, ipB());
    EXPECT_EQ(ns_ntoh16(peer.port), pport);
    return sd;
}

int TcpTest::open_active(const TcpOpt &synack_opts, uint16_t win)
{
    int sd = ns_tcp_socket(ns);
    EXPECT_GE(sd, 0);
    ns_sockaddr r = sa(ipB(), pport);
    EXPECT_EQ(ns_tcp_connect(ns, sd, &r), -EINPROGRESS);
    poll();
    TcpSeg syn = one();
    EXPECT_TRUE(syn.has(NS_TCP_SYN));
    EXPECT_FALSE(syn.has(NS_TCP_ACK));
    last_syn_opts = syn.opt;
    lport = syn.sport;
    iss = syn.seq;
    snd = iss + 1;
    pseq = peer_iss + 1;
    TcpOpt o = synack_opts;
    if (o.ts)
        o.tsecr = syn.opt.tsval;
    inject(from_peer_ip(NS_IPPROTO_TCP, tcp_pkt(ipB(), ipA(), pport, lport, peer_iss, snd, NS_TCP_SYN | NS_TCP_ACK,
                                                win, tcp_opts_bytes(o))));
    TcpSeg ack = one();
    EXPECT_TRUE(ack.has(NS_TCP_ACK));
    EXPECT_EQ(ack.ack, pseq);
    EXPECT_EQ(ack.seq, snd);
    return sd;
}

int TcpTest::to_state(enum ns_tcp_state st)
{
    int sd = open_passive();
    switch (st) {
    case NS_TCP_ESTABLISHED:
        break;
    case NS_TCP_CLOSE_WAIT:
        peer_data({}, NS_TCP_ACK | NS_TCP_FIN);
        break;
    case NS_TCP_LAST_ACK:
        peer_data({}, NS_TCP_ACK | NS_TCP_FIN);
        EXPECT_EQ(ns_tcp_shutdown(ns, sd, 1), 0);
        break;
    case NS_TCP_FIN_WAIT_1:
        EXPECT_EQ(ns_tcp_shutdown(ns, sd, 1), 0);
        break;
    case NS_TCP_FIN_WAIT_2:
        EXPECT_EQ(ns_tcp_shutdown(ns, sd, 1), 0);
        segs();
        peer_ack(snd + 1);
        break;
    case NS_TCP_CLOSING:
        EXPECT_EQ(ns_tcp_shutdown(ns, sd, 1), 0);
        segs();
        peer_send(pseq, snd, NS_TCP_ACK | NS_TCP_FIN);  // crosses our FIN
        pseq++;
        break;
    case NS_TCP_TIME_WAIT:
        EXPECT_EQ(ns_tcp_shutdown(ns, sd, 1), 0);
        segs();
        peer_ack(snd + 1);
        peer_data({}, NS_TCP_ACK | NS_TCP_FIN);
        break;
    default:
        ADD_FAILURE() << "to_state: unsupported state " << int(st);
    }
    segs();
    EXPECT_EQ(state(sd), int(st));
    if (st == NS_TCP_FIN_WAIT_1 || st == NS_TCP_CLOSING || st == NS_TCP_LAST_ACK)
        snd += 0;                // our FIN is in flight at snd
    return sd;
}

int TcpTest::state(int sd)
{
    struct ns_tcp_info i;
    if (ns_tcp_info(ns, sd, &i) < 0)
        return -1;
    return int(i.state);
}

std::string TcpTest::recv_all(int sd)
{
    std::string s;
    char buf[4096];
    for (;;) {
        int n = ns_tcp_recv(ns, sd, buf, sizeof(buf));
        if (n <= 0)
            break;
        s.append(buf, size_t(n));
    }
    return s;
}

std::pair<int, int> TcpPair::connect_pair(uint16_t port)
{
    int l = ns_tcp_socket(b);
    EXPECT_GE(l, 0);
    ns_sockaddr la = sa(0, port);
    EXPECT_EQ(ns_tcp_bind(b, l, &la), 0);
    EXPECT_EQ(ns_tcp_listen(b, l, 8), 0);
    int c = ns_tcp_socket(a);
    ns_sockaddr ra = sa(ipB(), port);
    EXPECT_EQ(ns_tcp_connect(a, c, &ra), -EINPROGRESS);
    pump();
    int s = ns_tcp_accept(b, l, nullptr);
    EXPECT_GE(s, 0);
    EXPECT_EQ(ns_tcp_close(b, l), 0);
    return {c, s};
}

void TcpPair::run_ms(uint64_t ms, uint64_t step_ms)
{
    uint64_t end = now + ms * kMs;
    while (now < end) {
        now += step_ms * kMs;
        pump();
    }
}

std::string TcpPair::drain(struct netstack *s, int sd)
{
    std::string out;
    char buf[4096];
    for (;;) {
        int n = ns_tcp_recv(s, sd, buf, sizeof(buf));
        if (n <= 0)
            break;
        out.append(buf, size_t(n));
    }
    return out;
}

int TcpPair::state(struct netstack *s, int sd)
{
    struct ns_tcp_info i;
    if (ns_tcp_info(s, sd, &i) < 0)
        return -1;
    return int(i.state);
}
