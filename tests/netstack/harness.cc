// Test harness implementation: the fake netdev over an nsbuf pool, frame builders and parser,
// and the fixtures' setup/teardown with the per-test leak check (every nsbuf back in its pool).
#include "harness.h"

namespace {

uint16_t fake_rx(struct netdev *d, struct nsbuf **bufs, uint16_t n)
{
    auto *f = static_cast<FakeDev *>(d->priv);
    uint16_t i = 0;
    while (i < n && !f->rxq.empty()) {
        bufs[i++] = f->rxq.front();
        f->rxq.pop_front();
    }
    return i;
}

uint16_t fake_tx(struct netdev *d, struct nsbuf **bufs, uint16_t n)
{
    auto *f = static_cast<FakeDev *>(d->priv);
    uint16_t i = 0;
    while (i < n && f->tx_room > 0) {
        f->txq.push_back(bufs[i++]);
        if (f->tx_room != UINT32_MAX)
            f->tx_room--;
    }
    return i;
}

struct nsbuf *fake_alloc(struct netdev *d)
{
    return nsbuf_pool_get(&static_cast<FakeDev *>(d->priv)->pool);
}

void fake_free(struct netdev *, struct nsbuf *b) { nsbuf_pool_put(b); }

const struct netdev_ops fake_ops = {
    .rx_burst = fake_rx, .tx_burst = fake_tx, .buf_alloc = fake_alloc, .buf_free = fake_free,
};

uint16_t cksum_of(const Bytes &b) { return ns_ntoh16(ns_cksum_finish(ns_cksum_add(0, b.data(), b.size()))); }

void put16(Bytes &b, size_t off, uint16_t v) { b[off] = uint8_t(v >> 8); b[off + 1] = uint8_t(v); }

void append(Bytes &b, const void *p, size_t n)
{
    const auto *c = static_cast<const uint8_t *>(p);
    b.insert(b.end(), c, c + n);
}

}  // namespace

FakeDev::FakeDev(const Mac &mac, uint32_t nbufs, uint32_t mtu)
{
    EXPECT_EQ(nsbuf_pool_init(&pool, nbufs, 2048, 128), 0);
    dev.ops = &fake_ops;
    memcpy(dev.mac, mac.data(), 6);
    dev.mtu = mtu;
    dev.priv = this;
}

FakeDev::~FakeDev()
{
    free_all();
    nsbuf_pool_fini(&pool);
}

void FakeDev::free_all()
{
    for (auto *b : rxq)
        nsbuf_pool_put(b);
    for (auto *b : txq)
        nsbuf_pool_put(b);
    rxq.clear();
    txq.clear();
}

bool FakeDev::inject(const Bytes &frame)
{
    struct nsbuf *b = nsbuf_pool_get(&pool);
    if (!b)
        return false;
    void *p = nsbuf_append(b, uint32_t(frame.size()));
    if (!p) {
        nsbuf_pool_put(b);
        return false;
    }
    if (!frame.empty())
        memcpy(p, frame.data(), frame.size());
    rxq.push_back(b);
    return true;
}

std::vector<Bytes> FakeDev::take_tx()
{
    std::vector<Bytes> out;
    for (auto *b : txq) {
        EXPECT_EQ(b->refcnt, 1u);
        out.emplace_back(b->data, b->data + b->len);
        nsbuf_pool_put(b);
    }
    txq.clear();
    return out;
}

Bytes str_bytes(const std::string &s) { return Bytes(s.begin(), s.end()); }

Bytes eth_frame(const Mac &dst, const Mac &src, uint16_t type, const Bytes &payload)
{
    Bytes f;
    append(f, dst.data(), 6);
    append(f, src.data(), 6);
    f.push_back(uint8_t(type >> 8));
    f.push_back(uint8_t(type));
    f.insert(f.end(), payload.begin(), payload.end());
    return f;
}

Bytes arp_pkt(uint16_t op, const Mac &sha, be32_t spa, const Mac &tha, be32_t tpa)
{
    ns_arp_hdr a{};
    a.htype = ns_hton16(NS_ARP_HTYPE_ETHER);
    a.ptype = ns_hton16(NS_ETH_TYPE_IPV4);
    a.hlen = 6;
    a.plen = 4;
    a.op = ns_hton16(op);
    memcpy(a.sha, sha.data(), 6);
    a.spa = spa;
    memcpy(a.tha, tha.data(), 6);
    a.tpa = tpa;
    Bytes b;
    append(b, &a, sizeof(a));
    return b;
}

Bytes ipv4_pkt(be32_t src, be32_t dst, uint8_t proto, const Bytes &payload, const IpOpt &o)
{
    size_t hlen = 20 + o.options.size();
    Bytes b(20);
    int ihl = o.ihl >= 0 ? o.ihl : int(hlen / 4);
    b[0] = uint8_t((o.version << 4) | (ihl & 0xf));
    put16(b, 2, uint16_t(o.tot >= 0 ? o.tot : int(hlen + payload.size())));
    put16(b, 4, 0x1234);
    put16(b, 6, o.frag);
    b[8] = o.ttl;
    b[9] = proto;
    memcpy(&b[12], &src, 4);
    memcpy(&b[16], &dst, 4);
    b.insert(b.end(), o.options.begin(), o.options.end());
    uint16_t ck = cksum_of(b);
    if (o.bad_cksum)
        ck ^= 0x5a5a;
    put16(b, 10, ck);
    b.insert(b.end(), payload.begin(), payload.end());
    return b;
}

Bytes udp_pkt(be32_t src, be32_t dst, uint16_t sport, uint16_t dport, const Bytes &payload, int cksum_mode,
              int len_override)
{
    Bytes u(8);
    uint16_t ulen = uint16_t(8 + payload.size());
    put16(u, 0, sport);
    put16(u, 2, dport);
    put16(u, 4, len_override >= 0 ? uint16_t(len_override) : ulen);
    u.insert(u.end(), payload.begin(), payload.end());
    if (cksum_mode != 1) {
        uint32_t sum = ns_cksum_pseudo(src, dst, NS_IPPROTO_UDP, ulen);
        uint16_t ck = ns_ntoh16(ns_cksum_finish(ns_cksum_add(sum, u.data(), u.size())));
        if (ck == 0)
            ck = 0xffff;
        if (cksum_mode == 2)
            ck ^= 0x0101;
        put16(u, 6, ck);
    }
    return u;
}

Bytes icmp_pkt(uint8_t type, uint8_t code, uint32_t rest, const Bytes &payload, bool bad_cksum)
{
    Bytes b(8);
    b[0] = type;
    b[1] = code;
    b[4] = uint8_t(rest >> 24);
    b[5] = uint8_t(rest >> 16);
    b[6] = uint8_t(rest >> 8);
    b[7] = uint8_t(rest);
    b.insert(b.end(), payload.begin(), payload.end());
    uint16_t ck = cksum_of(b);
    if (bad_cksum)
        ck ^= 0x1111;
    put16(b, 2, ck);
    return b;
}

Parsed parse(const Bytes &f)
{
    Parsed p;
    if (f.size() < 14)
        return p;
    p.ok = true;
    memcpy(p.dst.data(), &f[0], 6);
    memcpy(p.src.data(), &f[6], 6);
    p.type = uint16_t(f[12] << 8 | f[13]);
    p.l3.assign(f.begin() + 14, f.end());
    if (p.type == NS_ETH_TYPE_IPV4 && p.l3.size() >= 20) {
        const ns_ipv4_hdr *ip = p.ip();
        size_t hl = ns_ipv4_hlen(ip), tot = ns_ntoh16(ip->total_len);
        if (ns_ipv4_version(ip) == 4 && hl >= 20 && tot >= hl && tot <= p.l3.size() &&
            ns_ipv4_cksum(ip, unsigned(hl)) == 0) {
            p.l3.resize(tot);
            p.ip_ok = true;
            p.l4.assign(p.l3.begin() + long(hl), p.l3.end());
        }
    }
    return p;
}

void StackTest::SetUp() { make_stack(); }

void StackTest::make_stack(const struct ns_config *cfg)
{
    if (ns)
        ns_destroy(ns);
    ns = nullptr;
    struct ns_config c;
    if (!cfg) {
        ns_config_defaults(&c);
        c.ipv4 = ipA();
        c.netmask = netmask24();
        c.gateway = ipGw();
        cfg = &c;
    }
    ASSERT_EQ(ns_create(cfg, &dev.dev, now, &ns), 0);
}

void StackTest::TearDown()
{
    ns_destroy(ns);
    ns = nullptr;
    dev.free_all();
    EXPECT_EQ(dev.pool.in_use, 0u) << "nsbuf leak";
}

Bytes StackTest::from_peer_ip(uint8_t proto, const Bytes &l4, const IpOpt &o)
{
    return eth_frame(kMacA, kMacB, NS_ETH_TYPE_IPV4, ipv4_pkt(ipB(), ipA(), proto, l4, o));
}

void StackTest::learn_peer()
{
    inject(eth_frame(kBcast, kMacB, NS_ETH_TYPE_ARP, arp_pkt(NS_ARP_OP_REQUEST, kMacB, ipB(), kZeroMac, ipA())));
    tx();
}

int StackTest::udp_bound(uint16_t port)
{
    int sd = ns_udp_socket(ns);
    EXPECT_GE(sd, 0);
    ns_sockaddr l = sa(0, port);
    EXPECT_EQ(ns_udp_bind(ns, sd, &l), 0);
    return sd;
}

void TwoStacks::SetUp()
{
    struct ns_config c;
    ns_config_defaults(&c);
    c.netmask = netmask24();
    c.ipv4 = ipA();
    ASSERT_EQ(ns_create(&c, &da.dev, now, &a), 0);
    c.ipv4 = ipB();
    ASSERT_EQ(ns_create(&c, &db.dev, now, &b), 0);
}

void TwoStacks::TearDown()
{
    ns_destroy(a);
    ns_destroy(b);
    da.free_all();
    db.free_all();
    EXPECT_EQ(da.pool.in_use, 0u) << "nsbuf leak on A";
    EXPECT_EQ(db.pool.in_use, 0u) << "nsbuf leak on B";
}

void TwoStacks::pump(int max_rounds)
{
    for (int r = 0; r < max_rounds; r++) {
        ns_poll(a, now);
        ns_poll(b, now);
        if (da.txq.empty() && db.txq.empty())
            return;
        for (auto &f : da.take_tx())
            ASSERT_TRUE(db.inject(f));
        for (auto &f : db.take_tx())
            ASSERT_TRUE(da.inject(f));
        now += 10000;  // 10 us of wire time per round
    }
    FAIL() << "link did not go quiet";
}
