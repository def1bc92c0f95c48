// The lossy link and the two-stack event loop declared in lossy_link.h. Frames stay in the
// sender's buffer (one reference per scheduled delivery) until delivery copies them into a
// buffer of the receiver's pool, so corruption never touches what the sender may retransmit.
#include "lossy_link.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

extern "C" {
#include "defaults.h"
}

namespace {

// NS_LINK_TRACE=1 in the environment prints one line per frame (for bug reports).
bool trace_on()
{
    static const bool on = getenv("NS_LINK_TRACE") && *getenv("NS_LINK_TRACE") == '1';
    return on;
}

void trace(uint64_t now, int dir, const char *what, const uint8_t *f, uint32_t len)
{
    char info[160] = "";
    if (len >= 14 + 20 && f[12] == 0x08 && f[13] == 0x00 && f[14 + 9] == 6) {
        uint32_t ihl = (f[14] & 0xf) * 4u, tot = uint32_t(f[16] << 8 | f[17]);
        const uint8_t *t = f + 14 + ihl;
        if (14 + ihl + 20 <= len && tot >= ihl + 20) {
            auto be32 = [](const uint8_t *p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; };
            uint32_t hl = (t[12] >> 4) * 4u;
            uint8_t fl = t[13];
            snprintf(info, sizeof(info), "seq %u ack %u win %u len %u %s%s%s%s%s", be32(t + 4), be32(t + 8),
                     unsigned(t[14] << 8 | t[15]), tot - ihl - hl, fl & 2 ? "S" : "", fl & 1 ? "F" : "",
                     fl & 4 ? "R" : "", fl & 16 ? "." : "", fl & 8 ? "P" : "");
        }
    }
    fprintf(stderr, "%12.6f %d->%d %-9s %4u B %s\n", double(now) / 1e9, dir, 1 - dir, what, len, info);
}

constexpr uint32_t kBufSize = 2048;
constexpr uint32_t kHeadroom = 128;

const uint8_t kMac[2][6] = {{0x02, 0, 0, 0, 0, 0x01}, {0x02, 0, 0, 0, 0, 0x02}};

be32_t side_ip(int side) { return NS_IP4(10, 0, 0, side + 1); }

}  // namespace

LossyLink::LossyLink(uint64_t seed, const LinkParams &p01, const LinkParams &p10, uint32_t nbufs, uint32_t mtu)
{
    static const struct netdev_ops ops = {
        .rx_burst = rx_burst, .tx_burst = tx_burst, .buf_alloc = buf_alloc, .buf_free = buf_free,
    };
    uint64_t s = seed;
    dir_[0].p = p01;
    dir_[1].p = p10;
    dir_[0].rng = splitmix64(s) | 1;
    dir_[1].rng = splitmix64(s) | 1;
    for (int i = 0; i < 2; i++) {
        Side &sd = side_[i];
        sd.link = this;
        sd.idx = i;
        if (nsbuf_pool_init(&sd.pool, nbufs, kBufSize, kHeadroom) != 0)
            abort();
        sd.dev.ops = &ops;
        memcpy(sd.dev.mac, kMac[i], 6);
        sd.dev.mtu = mtu;
        sd.dev.priv = &sd;
    }
}

LossyLink::~LossyLink()
{
    drain();
    for (auto &sd : side_)
        nsbuf_pool_fini(&sd.pool);
}

void LossyLink::release(struct nsbuf *b)
{
    if (--b->refcnt == 0)
        nsbuf_pool_put(b);
}

void LossyLink::drain()
{
    for (auto &d : dir_) {
        while (!d.q.empty()) {
            release(d.q.top().buf);
            d.q.pop();
        }
        d.busy_until = 0;
    }
}

uint64_t LossyLink::next_u64(Dir &d)
{
    // xorshift64*: cheap, and the stream depends only on the seed and the order of frames.
    uint64_t x = d.rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    d.rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

double LossyLink::next_unit(Dir &d) { return double(next_u64(d) >> 11) * (1.0 / 9007199254740992.0); }

uint64_t LossyLink::next_delivery() const
{
    uint64_t t = UINT64_MAX;
    for (const auto &d : dir_)
        if (!d.q.empty())
            t = std::min(t, d.q.top().at);
    return t;
}

bool LossyLink::rx_due(int side) const
{
    const Dir &d = dir_[1 - side];
    return !d.q.empty() && d.q.top().at <= now;
}

void LossyLink::send(int dir, struct nsbuf *b)
{
    Dir &d = dir_[dir];
    const LinkParams &p = d.p;
    d.st.frames++;
    d.st.bytes += b->len;
    // Draw every decision for every frame so one knob does not shift the others' streams.
    bool lose = next_unit(d) < p.loss;
    bool dup = next_unit(d) < p.dup;
    if (trace_on())
        trace(now, dir, lose ? "LOST" : dup ? "sent+dup" : "sent", b->data, b->len);
    if (lose) {
        d.st.lost++;
        release(b);
        return;
    }
    int copies = dup ? 2 : 1;
    if (dup) {
        d.st.duplicated++;
        b->refcnt++;
    }
    for (int c = 0; c < copies; c++) {
        uint64_t at = now;
        if (p.rate_bps) {
            uint64_t start = std::max(now, d.busy_until);
            uint64_t wait_bytes = (start - now) * p.rate_bps / 8000000000ull;
            if (p.queue_bytes && wait_bytes > p.queue_bytes) {
                d.st.queue_drops++;
                release(b);
                continue;
            }
            d.busy_until = start + uint64_t(b->len + 24) * 8000000000ull / p.rate_bps;  // + preamble/IFG/FCS
            at = d.busy_until;
        }
        at += p.delay_ns;
        double j = next_unit(d);
        if (p.jitter_ns)
            at += uint64_t(j * double(p.jitter_ns));
        if (next_unit(d) < p.reorder) {
            d.st.reordered++;
            at += p.reorder_ns;
        }
        bool corrupt = next_unit(d) < p.corrupt;
        d.q.push(Frame{at, seq_++, b, corrupt});
    }
}

uint16_t LossyLink::tx_burst(struct netdev *dev, struct nsbuf **bufs, uint16_t n)
{
    auto *sd = static_cast<Side *>(dev->priv);
    for (uint16_t i = 0; i < n; i++)
        sd->link->send(sd->idx, bufs[i]);
    return n;
}

uint16_t LossyLink::rx_burst(struct netdev *dev, struct nsbuf **bufs, uint16_t n)
{
    auto *sd = static_cast<Side *>(dev->priv);
    LossyLink *l = sd->link;
    Dir &d = l->dir_[1 - sd->idx];
    uint16_t got = 0;
    while (got < n && !d.q.empty() && d.q.top().at <= l->now) {
        Frame f = d.q.top();
        d.q.pop();
        struct nsbuf *dst = nsbuf_pool_get(&sd->pool);
        if (!dst) {
            d.st.rx_nobuf++;
            l->release(f.buf);
            continue;
        }
        uint32_t len = f.buf->len;
        memcpy(nsbuf_append(dst, len), f.buf->data, len);
        l->release(f.buf);
        if (f.corrupt && len >= 2) {
            // A burst inside one 16-bit word: 1-3 distinct bits, so the Internet checksum
            // (which misses compensating flips in different words) always sees it.
            uint32_t word = uint32_t(l->next_u64(d) % (len / 2));
            uint16_t mask = 0;
            int nbits = 1 + int(l->next_u64(d) % 3);
            while (__builtin_popcount(mask) < nbits)
                mask |= uint16_t(1u << (l->next_u64(d) % 16));
            dst->data[2 * word] ^= uint8_t(mask >> 8);
            dst->data[2 * word + 1] ^= uint8_t(mask);
            d.st.corrupted++;
        }
        d.st.delivered++;
        if (trace_on())
            trace(l->now, 1 - sd->idx, f.corrupt ? "deliv-bad" : "delivered", dst->data, len);
        bufs[got++] = dst;
    }
    return got;
}

struct nsbuf *LossyLink::buf_alloc(struct netdev *dev)
{
    return nsbuf_pool_get(&static_cast<Side *>(dev->priv)->pool);
}

void LossyLink::buf_free(struct netdev *, struct nsbuf *b) { nsbuf_pool_put(b); }

std::string LossyLink::describe() const
{
    std::ostringstream o;
    for (int i = 0; i < 2; i++) {
        const LinkStats &s = dir_[i].st;
        o << "link " << i << "->" << 1 - i << ": frames " << s.frames << " bytes " << s.bytes << " delivered "
          << s.delivered << " lost " << s.lost << " dup " << s.duplicated << " reordered " << s.reordered
          << " corrupted " << s.corrupted << " queue_drops " << s.queue_drops << " rx_nobuf " << s.rx_nobuf
          << " in_flight " << dir_[i].q.size() << "; pool " << i << " in use " << side_[i].pool.in_use << "\n";
    }
    return o.str();
}

LinkPair::LinkPair(uint64_t seed, const LinkParams &p01, const LinkParams &p10, enum ns_cc_algo cc,
                   bool static_arp, uint32_t nbufs)
    : link(seed, p01, p10, nbufs)
{
    link.now = 1000000000ull;
    start_ns = link.now;
    uint64_t s = seed ^ 0x5eed;
    for (int i = 0; i < 2; i++) {
        struct ns_config c;
        ns_config_defaults(&c);
        c.ipv4 = side_ip(i);
        c.netmask = NS_IP4(255, 255, 255, 0);
        struct ns_arp_static peer;
        peer.ip = side_ip(1 - i);
        memcpy(peer.mac, kMac[1 - i], 6);
        if (static_arp) {
            c.arp_static = &peer;
            c.n_arp_static = 1;
        }
        for (auto &byte : c.isn_secret)
            byte = uint8_t(splitmix64(s));
        c.tcp_cc = cc;
        if (ns_create(&c, link.dev(i), link.now, &ns[i]) != 0)
            abort();
    }
}

LinkPair::~LinkPair()
{
    for (auto *n : ns)
        if (n)
            ns_destroy(n);
    link.drain();
}

uint64_t LinkPair::delivered_total() const { return link.stats(0).delivered + link.stats(1).delivered; }
uint64_t LinkPair::frames_total() const { return link.stats(0).frames + link.stats(1).frames; }

bool LinkPair::step(const std::function<bool()> &app)
{
    iters++;
    uint64_t before = delivered_total() + frames_total() + link.stats(0).rx_nobuf + link.stats(1).rx_nobuf;
    bool progress = app ? app() : false;
    ns_poll(ns[0], link.now);
    ns_poll(ns[1], link.now);
    uint64_t after = delivered_total() + frames_total() + link.stats(0).rx_nobuf + link.stats(1).rx_nobuf;
    if (progress || after != before || link.rx_due(0) || link.rx_due(1))
        return true;
    uint64_t next = std::min({link.next_delivery(), ns_next_timer(ns[0]), ns_next_timer(ns[1])});
    if (next == UINT64_MAX)
        return false;
    // A timer reported due that ns_poll left alone (granularity): step past it instead of spinning.
    link.now = next > link.now ? next : link.now + 1000;
    return true;
}

bool LinkPair::run(const std::function<bool()> &app, const std::function<bool()> &done, uint64_t max_virtual_ns,
                   uint64_t max_iters, std::string *why)
{
    uint64_t t0 = link.now, i0 = iters;
    while (!done()) {
        if (iters - i0 > max_iters) {
            *why = "iteration limit " + std::to_string(max_iters) + " reached";
            return false;
        }
        if (link.now - t0 > max_virtual_ns) {
            *why = "virtual time limit " + std::to_string(max_virtual_ns / 1000000) + " ms reached";
            return false;
        }
        if (!step(app)) {
            *why = "idle forever: nothing in flight and no timer armed";
            return false;
        }
    }
    return true;
}

void LinkPair::idle_for(uint64_t ns_)
{
    uint64_t target = link.now + ns_;
    while (link.now < target) {
        uint64_t t = link.now;
        uint64_t before = delivered_total() + frames_total();
        ns_poll(ns[0], t);
        ns_poll(ns[1], t);
        if (delivered_total() + frames_total() != before || link.rx_due(0) || link.rx_due(1))
            continue;
        uint64_t next = std::min({link.next_delivery(), ns_next_timer(ns[0]), ns_next_timer(ns[1])});
        if (next <= t)
            next = t + 1000;
        link.now = std::min(next, target);
    }
    ns_poll(ns[0], link.now);
    ns_poll(ns[1], link.now);
}

std::string LinkPair::stack_counters(int side) const
{
    struct ns_stats st;
    ns_stats_get(ns[side], &st);
    std::ostringstream o;
    o << "stack " << side << " counters:";
    for (size_t i = 0; i < NS_STATS_COUNT; i++) {
        uint64_t v = ns_stats_value(&st, i);
        if (v)
            o << " " << ns_stats_name(i) << "=" << v;
    }
    o << "\n";
    return o.str();
}
