// The script runner: one netstack (192.168.0.1/24) on a FakeDev whose gateway
// (192.168.0.254) has a static ARP entry, so every frame it sends is TCP to the remote peer
// 192.0.2.1 that the script plays. Call chain: main.cc -> run_script -> ns_tcp_* / ns_poll on
// the stack under test; frames go in through FakeDev's rx queue and come out of its tx queue.
#include "runner.h"

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <sstream>

#include "../harness.h"

namespace conf {
namespace {

be32_t local_ip() { return NS_IP4(192, 168, 0, 1); }
be32_t gw_ip() { return NS_IP4(192, 168, 0, 254); }
be32_t remote_ip() { return NS_IP4(192, 0, 2, 1); }
constexpr uint64_t kSec = 1000000000ull;
constexpr uint64_t kT0 = 100 * kSec;  // virtual time of script time 0; the stack is created here

// A TCP segment as sent by the stack, in host order.
struct WireOpt {
    uint8_t kind;
    uint32_t a = 0, b = 0;                                // MSS/WSCALE value; TS val, ecr
    std::vector<std::pair<uint32_t, uint32_t>> blocks;    // SACK, absolute
};
struct WireSeg {
    uint16_t sport, dport;
    uint32_t seq, ack;
    uint8_t flags;
    uint16_t win;
    std::vector<WireOpt> opts;
    Bytes payload;
};

// One remote endpoint the script talks for, named by the peer's port.
struct Flow {
    uint16_t rport = 0;
    uint16_t lport = 0;               // 0: not known yet
    uint32_t peer_isn = 0;            // ours (the script's relative 0 for inbound seq)
    bool isn_known = false;
    uint32_t isn = 0;                 // the stack's, learned from its SYN or SYN-ACK
    bool ts_known = false;
    uint32_t ts_base = 0;             // the stack's first TS val: outbound val is relative to it
    uint32_t ts_last = 0;             // the stack's latest TS val, for an inbound "ecr *"
};

struct SockData {
    uint64_t sent = 0;                // stream offset of the next byte send() hands over
    uint64_t received = 0;            // stream offset of the next byte recv() must return
};

struct TxFrame {
    uint64_t t;
    Bytes frame;
};

std::string secs(uint64_t t)
{
    char b[32];
    uint64_t r = t - kT0;
    snprintf(b, sizeof b, "%" PRIu64 ".%06" PRIu64, r / kSec, (r % kSec) / 1000);
    return b;
}

std::string flags_str(uint8_t f)
{
    std::string s;
    if (f & NS_TCP_SYN) s += 'S';
    if (f & NS_TCP_FIN) s += 'F';
    if (f & NS_TCP_RST) s += 'R';
    if (f & NS_TCP_PSH) s += 'P';
    if (f & NS_TCP_URG) s += 'U';
    if (f & NS_TCP_ECE) s += 'E';
    if (f & NS_TCP_CWR) s += 'W';
    if (f & NS_TCP_ACK) s += '.';
    return s;
}

const char *kStates[] = {"CLOSED",      "LISTEN",     "SYN_SENT",  "SYN_RECEIVED", "ESTABLISHED", "FIN_WAIT_1",
                         "FIN_WAIT_2",  "CLOSE_WAIT", "CLOSING",   "LAST_ACK",     "TIME_WAIT"};

bool parse_int(const std::string &s, int64_t *v)
{
    if (s.empty())
        return false;
    char *end = nullptr;
    errno = 0;
    long long x = strtoll(s.c_str(), &end, 0);
    if (errno || *end)
        return false;
    *v = x;
    return true;
}

bool compare(const std::string &op, int64_t a, int64_t e)
{
    if (op == "=") return a == e;
    if (op == "!=") return a != e;
    if (op == "<") return a < e;
    if (op == "<=") return a <= e;
    if (op == ">") return a > e;
    return a >= e;
}

uint16_t get16(const uint8_t *p) { return uint16_t(p[0] << 8 | p[1]); }
uint32_t get32(const uint8_t *p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }
void put16(uint8_t *p, uint16_t v) { p[0] = uint8_t(v >> 8); p[1] = uint8_t(v); }
void put32(uint8_t *p, uint32_t v) { p[0] = uint8_t(v >> 24); p[1] = uint8_t(v >> 16); p[2] = uint8_t(v >> 8); p[3] = uint8_t(v); }

class Runner {
public:
    Runner(const Script &sc, const std::string &path, bool verbose) : sc_(sc), path_(path), verbose_(verbose) {}
    ~Runner()
    {
        if (ns_)
            ns_destroy(ns_);
    }
    bool run(std::string *log);

private:
    bool setup();
    bool do_line(const Line &l);
    bool do_inbound(const Line &l);
    bool do_outbound(const Line &l);
    bool do_call(const Line &l);
    void poll();
    void advance(uint64_t to, bool stop_on_tx);
    bool check_quiet(const char *when);
    Flow &flow(int rport);
    bool decode(const Bytes &frame, WireSeg *seg, std::string *why);
    std::string show(const WireSeg &s);
    std::string show_frame(const Bytes &frame);
    bool match(const Line &l, Flow &f, const WireSeg &s, std::string *why);
    bool sock_of(const std::string &name, int *sd);
    bool expect_int(const Line &l, const std::string &what, int64_t actual, bool errno_result);
    bool fail(const Line *l, const std::string &msg, const std::string &actual = "");
    void trace(const std::string &s)
    {
        if (verbose_)
            fprintf(stderr, "  %s %s\n", secs(now_).c_str(), s.c_str());
    }

    const Script &sc_;
    std::string path_;
    bool verbose_;
    std::string log_;

    std::unique_ptr<FakeDev> dev_;
    struct netstack *ns_ = nullptr;
    uint64_t now_ = kT0;
    uint64_t prev_ = kT0;             // actual time of the previous line (base of +x)
    uint64_t tol_ = 4000000;          // ns either side of an outbound line's time
    std::deque<TxFrame> tx_;
    std::map<std::string, int> socks_;
    std::map<int, SockData> data_;
    std::map<uint16_t, Flow> flows_;
    uint16_t default_rport_ = 40000;
    uint16_t bound_port_ = 8080;      // --lport, then the port of the last bind(): where inbound segments go
    uint32_t peer_isn_ = 1000000;
};

bool Runner::fail(const Line *l, const std::string &msg, const std::string &actual)
{
    std::ostringstream o;
    o << path_ << ":" << (l ? l->lineno : 0) << ": error at " << secs(now_) << ": " << msg << "\n";
    if (l)
        o << (l->is_seg && !l->seg.inbound ? "  expected: " : "  line:     ") << l->text << "\n";
    if (!actual.empty())
        o << "  actual:   " << actual << "\n";
    log_ += o.str();
    return false;
}

bool Runner::setup()
{
    for (const auto &kv : sc_.flags) {
        const std::string &k = kv.first, &v = kv.second;
        uint64_t ns;
        int64_t n;
        if (k == "tolerance" && parse_seconds(v, &ns)) {
            tol_ = ns;
        } else if (k == "rport" && parse_int(v, &n) && n > 0 && n < 65536) {
            default_rport_ = uint16_t(n);
        } else if (k == "lport" && parse_int(v, &n) && n > 0 && n < 65536) {
            bound_port_ = uint16_t(n);
        } else if (k == "peer_isn" && parse_int(v, &n) && n >= 0 && n <= int64_t(UINT32_MAX)) {
            peer_isn_ = uint32_t(n);
        } else if (k == "cc" && (v == "newreno" || v == "cubic")) {
        } else if (k == "mtu" && parse_int(v, &n) && n >= 68 && n <= 9000) {
        } else {
            return fail(nullptr, "bad flag --" + k + "=" + v);
        }
    }
    uint32_t mtu = 1500;
    if (sc_.flags.count("mtu"))
        mtu = uint32_t(std::stoul(sc_.flags.at("mtu")));
    dev_ = std::make_unique<FakeDev>(kMacA, 4096, mtu);
    struct ns_config c;
    ns_config_defaults(&c);
    c.ipv4 = local_ip();
    c.netmask = NS_IP4(255, 255, 255, 0);
    c.gateway = gw_ip();
    struct ns_arp_static gw;
    gw.ip = gw_ip();
    memcpy(gw.mac, kMacGw.data(), 6);
    c.arp_static = &gw;
    c.n_arp_static = 1;
    for (int i = 0; i < 16; i++)
        c.isn_secret[i] = uint8_t(0x5a ^ i);
    if (sc_.flags.count("cc"))
        c.tcp_cc = sc_.flags.at("cc") == "newreno" ? NS_CC_NEWRENO : NS_CC_CUBIC;
    int r = ns_create(&c, &dev_->dev, now_, &ns_);
    if (r < 0)
        return fail(nullptr, "ns_create: " + errno_name(-r));
    return true;
}

void Runner::poll()
{
    ns_poll(ns_, now_);
    for (struct nsbuf *b : dev_->txq) {
        tx_.push_back({now_, Bytes(b->data, b->data + b->len)});
        if (verbose_)
            trace("sent    " + show_frame(tx_.back().frame));
        ns_buf_free(ns_, b);
    }
    dev_->txq.clear();
    // Readiness notifications are only drained: scripts ask events(s) directly.
    struct ns_event ev[64];
    while (ns_events(ns_, ev, 64) == 64) {
    }
}

// Moves the clock to `to`, stopping at each timer the stack announces so that what a timer
// sends is stamped with the time it was due; with stop_on_tx, stops once something was sent.
void Runner::advance(uint64_t to, bool stop_on_tx)
{
    while (now_ < to) {
        if (stop_on_tx && !tx_.empty())
            return;
        uint64_t nt = ns_next_timer(ns_);
        uint64_t next = nt > now_ ? nt : now_ + NS_TIMER_GRANULARITY_MS * kMs;
        now_ = next < to ? next : to;
        poll();
    }
}

bool Runner::check_quiet(const char *when)
{
    if (tx_.empty())
        return true;
    const TxFrame &f = tx_.front();
    return fail(nullptr, std::string("unexpected segment ") + when, secs(f.t) + " " + show_frame(f.frame));
}

Flow &Runner::flow(int rport)
{
    uint16_t p = rport < 0 ? default_rport_ : uint16_t(rport);
    auto it = flows_.find(p);
    if (it == flows_.end()) {
        Flow f;
        f.rport = p;
        f.peer_isn = peer_isn_;
        it = flows_.emplace(p, f).first;
    }
    return it->second;
}

bool Runner::decode(const Bytes &frame, WireSeg *s, std::string *why)
{
    Parsed p = parse(frame);
    if (!p.ok || p.type != NS_ETH_TYPE_IPV4) {
        *why = p.type == NS_ETH_TYPE_ARP ? "an ARP frame" : "not IPv4";
        return false;
    }
    if (!p.ip_ok) {
        *why = "a bad IPv4 header";
        return false;
    }
    if (p.ip()->proto != NS_IPPROTO_TCP) {
        *why = "IPv4 protocol " + std::to_string(p.ip()->proto);
        return false;
    }
    if (memcmp(p.dst.data(), kMacGw.data(), 6) != 0 || p.ip()->src != local_ip() || p.ip()->dst != remote_ip()) {
        *why = "a TCP segment with wrong addresses";
        return false;
    }
    const Bytes &t = p.l4;
    if (t.size() < 20 || (t[12] >> 4) * 4u < 20 || (t[12] >> 4) * 4u > t.size()) {
        *why = "a truncated TCP header";
        return false;
    }
    uint32_t sum = ns_cksum_pseudo(p.ip()->src, p.ip()->dst, NS_IPPROTO_TCP, uint16_t(t.size()));
    if (ns_cksum_finish(ns_cksum_add(sum, t.data(), t.size())) != 0) {
        *why = "a TCP segment with a bad checksum";
        return false;
    }
    s->sport = get16(&t[0]);
    s->dport = get16(&t[2]);
    s->seq = get32(&t[4]);
    s->ack = get32(&t[8]);
    s->flags = t[13];
    s->win = get16(&t[14]);
    size_t hl = (t[12] >> 4) * 4u;
    for (size_t i = 20; i < hl;) {
        uint8_t k = t[i];
        if (k == NS_TCPOPT_EOL || k == NS_TCPOPT_NOP) {
            WireOpt nop;
            nop.kind = k;
            s->opts.push_back(nop);
            i++;
            continue;
        }
        if (i + 1 >= hl || t[i + 1] < 2 || i + t[i + 1] > hl) {
            *why = "a TCP segment with malformed options";
            return false;
        }
        uint8_t len = t[i + 1];
        WireOpt o;
        o.kind = k;
        bool ok = true;
        switch (k) {
        case NS_TCPOPT_MSS: ok = len == 4; if (ok) o.a = get16(&t[i + 2]); break;
        case NS_TCPOPT_WSCALE: ok = len == 3; if (ok) o.a = t[i + 2]; break;
        case NS_TCPOPT_SACK_PERM: ok = len == 2; break;
        case NS_TCPOPT_TIMESTAMP: ok = len == 10; if (ok) { o.a = get32(&t[i + 2]); o.b = get32(&t[i + 6]); } break;
        case NS_TCPOPT_SACK:
            ok = (len - 2) % 8 == 0 && len > 2;
            for (size_t j = i + 2; ok && j < i + len; j += 8)
                o.blocks.emplace_back(get32(&t[j]), get32(&t[j + 4]));
            break;
        default: break;
        }
        if (!ok) {
            *why = "a TCP option " + std::to_string(k) + " of bad length " + std::to_string(len);
            return false;
        }
        s->opts.push_back(o);
        i += len;
    }
    s->payload.assign(t.begin() + long(hl), t.end());
    return true;
}

// The segment in script notation, relative to its flow's sequence bases when they are known.
std::string Runner::show(const WireSeg &s)
{
    auto it = flows_.find(s.dport);
    const Flow *f = it == flows_.end() ? nullptr : &it->second;
    uint32_t isn = f && f->isn_known ? f->isn : 0, pisn = f ? f->peer_isn : 0;
    uint32_t tsb = f && f->ts_known ? f->ts_base : 0;
    std::ostringstream o;
    o << "> ";
    if (!f || s.dport != default_rport_)
        o << "@" << s.dport << " ";
    uint32_t rs = s.seq - isn;
    o << flags_str(s.flags) << " " << rs << ":" << rs + uint32_t(s.payload.size()) << "(" << s.payload.size() << ")";
    if (s.flags & NS_TCP_ACK)
        o << " ack " << s.ack - pisn;
    o << " win " << s.win;
    if (!s.opts.empty()) {
        o << " <";
        for (size_t i = 0; i < s.opts.size(); i++) {
            const WireOpt &w = s.opts[i];
            if (i)
                o << ",";
            switch (w.kind) {
            case NS_TCPOPT_NOP: o << "nop"; break;
            case NS_TCPOPT_EOL: o << "eol"; break;
            case NS_TCPOPT_MSS: o << "mss " << w.a; break;
            case NS_TCPOPT_WSCALE: o << "wscale " << w.a; break;
            case NS_TCPOPT_SACK_PERM: o << "sackOK"; break;
            case NS_TCPOPT_TIMESTAMP: o << "TS val " << w.a - tsb << " ecr " << w.b; break;
            case NS_TCPOPT_SACK:
                o << "sack";
                for (auto &b : w.blocks)
                    o << " " << b.first - pisn << ":" << b.second - pisn;
                break;
            default: o << "kind " << int(w.kind); break;
            }
        }
        o << ">";
    }
    if (s.sport != (f ? f->lport : 0))
        o << "  [from port " << s.sport << "]";
    return o.str();
}

std::string Runner::show_frame(const Bytes &frame)
{
    WireSeg s;
    std::string why;
    if (!decode(frame, &s, &why))
        return "(" + why + ", " + std::to_string(frame.size()) + " bytes)";
    return show(s);
}

bool Runner::match(const Line &l, Flow &f, const WireSeg &s, std::string *why)
{
    const SegSpec &e = l.seg;
    if (s.dport != f.rport) {
        *why = "to port " + std::to_string(s.dport) + ", expected the flow of remote port " + std::to_string(f.rport);
        return false;
    }
    if (f.lport && s.sport != f.lport) {
        *why = "from port " + std::to_string(s.sport) + ", expected " + std::to_string(f.lport);
        return false;
    }
    f.lport = s.sport;
    if ((s.flags & NS_TCP_SYN) && (!f.isn_known || s.seq != f.isn)) {
        // A SYN with a new sequence number starts a new incarnation of the flow.
        f.isn_known = true;
        f.isn = s.seq;
        f.ts_known = false;
    }
    uint32_t isn = f.isn_known ? f.isn : 0;
    for (const WireOpt &w : s.opts)
        if (w.kind == NS_TCPOPT_TIMESTAMP) {
            if (!f.ts_known) {
                f.ts_known = true;
                f.ts_base = w.a;
            }
            f.ts_last = w.a;
        }
    // PSH is the sender's business (RFC 9293 3.9.1): not compared.
    uint8_t mask = uint8_t(~NS_TCP_PSH);
    if ((s.flags & mask) != (e.flags & mask)) {
        *why = "flags " + flags_str(s.flags) + ", expected " + flags_str(e.flags);
        return false;
    }
    if (s.seq - isn != e.start || s.payload.size() != e.end - e.start) {
        *why = "sequence range differs";
        return false;
    }
    if (e.has_ack && !e.ack.any && s.ack - f.peer_isn != e.ack.v) {
        *why = "ack " + std::to_string(s.ack - f.peer_isn) + ", expected " + std::to_string(e.ack.v);
        return false;
    }
    if (e.has_win && !e.win.any && s.win != e.win.v) {
        *why = "win " + std::to_string(s.win) + ", expected " + std::to_string(e.win.v);
        return false;
    }
    // Payload: the bytes send() handed over at this stream offset (data starts at relative 1).
    if (!(s.flags & NS_TCP_SYN))
        for (size_t i = 0; i < s.payload.size(); i++)
            if (s.payload[i] != pattern_byte(uint32_t(e.start - 1 + i))) {
                *why = "payload byte " + std::to_string(i) + " is not the data sent at that offset";
                return false;
            }
    // Options: compared ignoring NOP/EOL padding and order, except SACK blocks keep theirs.
    if (e.opts_any)
        return true;
    std::vector<const WireOpt *> got;
    for (const WireOpt &w : s.opts)
        if (w.kind != NS_TCPOPT_NOP && w.kind != NS_TCPOPT_EOL)
            got.push_back(&w);
    size_t want = 0;
    for (const OptSpec &o : e.opts) {
        if (o.kind == OptSpec::NOP || o.kind == OptSpec::EOL)
            continue;
        want++;
        uint8_t kind = o.kind == OptSpec::MSS ? NS_TCPOPT_MSS : o.kind == OptSpec::WSCALE ? NS_TCPOPT_WSCALE
                     : o.kind == OptSpec::SACKOK ? NS_TCPOPT_SACK_PERM : o.kind == OptSpec::TS ? NS_TCPOPT_TIMESTAMP
                     : NS_TCPOPT_SACK;
        const WireOpt *w = nullptr;
        for (const WireOpt *g : got)
            if (g->kind == kind)
                w = g;
        if (!w) {
            *why = "an expected option is missing";
            return false;
        }
        bool ok = true;
        switch (o.kind) {
        case OptSpec::MSS:
        case OptSpec::WSCALE: ok = o.val.any || w->a == o.val.v; break;
        case OptSpec::TS:
            ok = (o.val.any || w->a - f.ts_base == o.val.v) && (o.ecr.any || w->b == o.ecr.v);
            break;
        case OptSpec::SACK:
            ok = w->blocks.size() == o.blocks.size();
            for (size_t i = 0; ok && i < o.blocks.size(); i++)
                ok = w->blocks[i].first - f.peer_isn == o.blocks[i].first &&
                     w->blocks[i].second - f.peer_isn == o.blocks[i].second;
            break;
        default: break;
        }
        if (!ok) {
            *why = "an option's value differs";
            return false;
        }
    }
    if (want != got.size()) {
        *why = "options differ (unexpected option present)";
        return false;
    }
    return true;
}

bool Runner::do_inbound(const Line &l)
{
    const SegSpec &e = l.seg;
    Flow &f = flow(e.rport);
    if (!f.lport) {
        if (!bound_port_)
            return fail(&l, "no local port known for this flow: bind() first or let the stack send first");
        f.lport = bound_port_;
    }
    std::vector<uint8_t> opt;
    for (const OptSpec &o : e.opts) {
        switch (o.kind) {
        case OptSpec::NOP: opt.push_back(NS_TCPOPT_NOP); break;
        case OptSpec::EOL: opt.push_back(NS_TCPOPT_EOL); break;
        case OptSpec::MSS: opt.insert(opt.end(), {NS_TCPOPT_MSS, 4, uint8_t(o.val.v >> 8), uint8_t(o.val.v)}); break;
        case OptSpec::WSCALE: opt.insert(opt.end(), {NS_TCPOPT_WSCALE, 3, uint8_t(o.val.v)}); break;
        case OptSpec::SACKOK: opt.insert(opt.end(), {NS_TCPOPT_SACK_PERM, 2}); break;
        case OptSpec::TS: {
            uint32_t ecr = o.ecr.any ? f.ts_last : (f.ts_known ? f.ts_base + o.ecr.v : o.ecr.v);
            uint8_t b[10] = {NS_TCPOPT_TIMESTAMP, 10};
            put32(b + 2, o.val.v);
            put32(b + 6, ecr);
            opt.insert(opt.end(), b, b + 10);
            break;
        }
        case OptSpec::SACK: {
            uint32_t base = f.isn_known ? f.isn : 0;
            opt.push_back(NS_TCPOPT_SACK);
            opt.push_back(uint8_t(2 + 8 * o.blocks.size()));
            for (auto &b : o.blocks) {
                uint8_t w[8];
                put32(w, base + b.first);
                put32(w + 4, base + b.second);
                opt.insert(opt.end(), w, w + 8);
            }
            break;
        }
        }
    }
    while (opt.size() % 4)
        opt.push_back(NS_TCPOPT_EOL);
    if (opt.size() > 40)
        return fail(&l, "options longer than 40 bytes");
    uint32_t len = e.end - e.start;
    Bytes t(20 + opt.size() + len);
    put16(&t[0], f.rport);
    put16(&t[2], f.lport);
    put32(&t[4], f.peer_isn + e.start);
    put32(&t[8], e.has_ack ? (f.isn_known ? f.isn : 0) + e.ack.v : 0);
    t[12] = uint8_t((20 + opt.size()) / 4 << 4);
    t[13] = e.flags;
    put16(&t[14], uint16_t(e.has_win ? e.win.v : 65535));
    std::copy(opt.begin(), opt.end(), t.begin() + 20);
    for (uint32_t i = 0; i < len; i++)
        t[20 + opt.size() + i] = pattern_byte(uint32_t(e.start - 1 + i));
    uint32_t sum = ns_cksum_pseudo(remote_ip(), local_ip(), NS_IPPROTO_TCP, uint16_t(t.size()));
    be16_t ck = ns_cksum_finish(ns_cksum_add(sum, t.data(), t.size()));
    memcpy(&t[16], &ck, 2);
    Bytes frame = eth_frame(kMacA, kMacGw, NS_ETH_TYPE_IPV4, ipv4_pkt(remote_ip(), local_ip(), NS_IPPROTO_TCP, t));
    if (!dev_->inject(frame))
        return fail(&l, "harness buffer pool empty");
    trace("inject  " + l.text);
    poll();
    return true;
}

bool Runner::do_outbound(const Line &l)
{
    const TimeSpec &ts = l.time;
    uint64_t lo = (ts.lo_rel ? prev_ : kT0) + ts.lo, hi = (ts.hi_rel ? prev_ : kT0) + ts.hi;
    if (!ts.range) {
        lo = lo > kT0 + tol_ ? lo - tol_ : kT0;
        hi += tol_;
    }
    advance(hi, true);
    if (tx_.empty())
        return fail(&l, "expected segment not sent by " + secs(hi));
    TxFrame fr = tx_.front();
    tx_.pop_front();
    WireSeg s;
    std::string why;
    if (!decode(fr.frame, &s, &why))
        return fail(&l, "sent " + why + " instead of the expected segment");
    Flow &f = flow(l.seg.rport);
    bool ok = match(l, f, s, &why);
    if (ok && fr.t < lo) {
        ok = false;
        why = "sent at " + secs(fr.t) + ", too early (window " + secs(lo) + " .. " + secs(hi) + ")";
    }
    if (!ok)
        return fail(&l, why, secs(fr.t) + " " + show(s));
    prev_ = fr.t;
    return true;
}

bool Runner::sock_of(const std::string &name, int *sd)
{
    auto it = socks_.find(name);
    if (it == socks_.end())
        return false;
    *sd = it->second;
    return true;
}

// Compares an int result; with errno_result, negative values print as -ENAME.
bool Runner::expect_int(const Line &l, const std::string &what, int64_t actual, bool errno_result)
{
    const CallSpec &c = l.call;
    auto show_v = [&](int64_t v) {
        return errno_result && v < 0 ? "-" + errno_name(int(-v)) : std::to_string(v);
    };
    if (c.op.empty()) {
        if (actual < 0)
            return fail(&l, what + " failed with " + show_v(actual));
        return true;
    }
    int64_t e;
    int en;
    if (c.expect == "ok") {
        if (actual < 0)
            return fail(&l, what + " failed with " + show_v(actual));
        return true;
    }
    if (c.expect[0] == '-' && errno_by_name(c.expect.substr(1), &en)) {
        e = -en;
    } else if (errno_by_name(c.expect, &en)) {
        e = en;
    } else if (!parse_int(c.expect, &e)) {
        return fail(&l, "cannot read the expected value '" + c.expect + "'");
    }
    if (!compare(c.op, actual, e))
        return fail(&l, what + " = " + show_v(actual) + ", expected " + c.op + " " + c.expect);
    return true;
}

bool Runner::do_call(const Line &l)
{
    const CallSpec &c = l.call;
    int sd = -1;
    const bool takes_sock = c.fn != "socket" && c.fn != "stat";
    if (takes_sock && !sock_of(c.args[0], &sd))
        return fail(&l, "unknown socket '" + c.args[0] + "'");
    int64_t n = 0;
    if ((c.fn == "bind" || c.fn == "listen" || c.fn == "send" || c.fn == "recv") && !parse_int(c.args[1], &n))
        return fail(&l, "bad number '" + c.args[1] + "'");
    trace("call    " + l.text);
    int r = 0;
    if (c.fn == "socket") {
        r = ns_tcp_socket(ns_);
        if (r < 0)
            return fail(&l, "socket failed with -" + errno_name(-r));
        socks_[c.assign] = r;
        data_[r] = SockData();
    } else if (c.fn == "bind") {
        ns_sockaddr a = sa(0, uint16_t(n));
        r = ns_tcp_bind(ns_, sd, &a);
        ns_sockaddr got;
        if (r == 0 && ns_tcp_getsockname(ns_, sd, &got) == 0)
            bound_port_ = ns_ntoh16(got.port);
    } else if (c.fn == "listen") {
        r = ns_tcp_listen(ns_, sd, int(n));
    } else if (c.fn == "accept") {
        ns_sockaddr peer;
        r = ns_tcp_accept(ns_, sd, &peer);
        if (r >= 0) {
            if (!c.assign.empty())
                socks_[c.assign] = r;
            data_[r] = SockData();
        }
    } else if (c.fn == "connect") {
        std::string a = c.args[1];
        size_t colon = a.find(':');
        if (colon != std::string::npos) {
            if (a.substr(0, colon) != "192.0.2.1")
                return fail(&l, "the remote peer is 192.0.2.1");
            a = a.substr(colon + 1);
        }
        if (!parse_int(a, &n) || n <= 0 || n > 65535)
            return fail(&l, "bad port '" + a + "'");
        ns_sockaddr ra = sa(remote_ip(), uint16_t(n));
        default_rport_ = uint16_t(n);
        flow(-1);
        r = ns_tcp_connect(ns_, sd, &ra);
    } else if (c.fn == "send") {
        SockData &d = data_[sd];
        Bytes b = Bytes(size_t(n));
        for (size_t i = 0; i < b.size(); i++)
            b[i] = pattern_byte(uint32_t(d.sent + i));
        r = ns_tcp_send(ns_, sd, b.data(), b.size());
        if (r > 0)
            d.sent += uint64_t(r);
    } else if (c.fn == "recv") {
        SockData &d = data_[sd];
        Bytes b(size_t(n) + 1);
        r = ns_tcp_recv(ns_, sd, b.data(), size_t(n));
        for (int i = 0; i < r; i++)
            if (b[size_t(i)] != pattern_byte(uint32_t(d.received + uint64_t(i))))
                return fail(&l, "recv returned wrong data at stream offset " + std::to_string(d.received + uint64_t(i)));
        if (r > 0)
            d.received += uint64_t(r);
    } else if (c.fn == "close") {
        r = ns_tcp_close(ns_, sd);
    } else if (c.fn == "shutdown") {
        int how = c.args[1] == "RD" ? 0 : c.args[1] == "WR" ? 1 : c.args[1] == "RDWR" ? 2 : -1;
        if (how < 0)
            return fail(&l, "shutdown takes RD, WR or RDWR");
        r = ns_tcp_shutdown(ns_, sd, how);
    } else if (c.fn == "setsockopt" || c.fn == "getsockopt") {
        static const std::pair<const char *, ns_sockopt> opts[] = {
            {"SO_REUSEADDR", NS_SO_REUSEADDR},   {"SO_KEEPALIVE", NS_SO_KEEPALIVE},
            {"SO_RCVBUF", NS_SO_RCVBUF},         {"SO_SNDBUF", NS_SO_SNDBUF},
            {"SO_LINGER0", NS_SO_LINGER0},       {"SO_ERROR", NS_SO_ERROR},
            {"TCP_NODELAY", NS_TCP_NODELAY},     {"TCP_MAXSEG", NS_TCP_MAXSEG},
            {"TCP_KEEPIDLE", NS_TCP_KEEPIDLE},   {"TCP_KEEPINTVL", NS_TCP_KEEPINTVL},
            {"TCP_KEEPCNT", NS_TCP_KEEPCNT},     {"TCP_CONGESTION", NS_TCP_CONGESTION},
            {"TCP_USER_TIMEOUT", NS_TCP_USER_TIMEOUT},
        };
        int opt = -1;
        for (auto &o : opts)
            if (c.args[1] == o.first)
                opt = o.second;
        if (opt < 0)
            return fail(&l, "unknown socket option '" + c.args[1] + "'");
        if (c.fn == "setsockopt") {
            int64_t v;
            if (c.args[2] == "NEWRENO")
                v = NS_CC_NEWRENO;
            else if (c.args[2] == "CUBIC")
                v = NS_CC_CUBIC;
            else if (!parse_int(c.args[2], &v))
                return fail(&l, "bad option value '" + c.args[2] + "'");
            r = ns_tcp_setsockopt(ns_, sd, ns_sockopt(opt), int(v));
        } else {
            int v = 0;
            r = ns_tcp_getsockopt(ns_, sd, ns_sockopt(opt), &v);
            if (r < 0)
                return fail(&l, "getsockopt failed with -" + errno_name(-r));
            if (c.op.empty())
                return true;
            return expect_int(l, "getsockopt " + c.args[1], v, false);
        }
    } else if (c.fn == "events") {
        r = ns_tcp_events(ns_, sd);
        if (r < 0)
            return fail(&l, "events failed with -" + errno_name(-r));
        if (c.op.empty())
            return true;
        static const std::pair<const char *, unsigned> bits[] = {
            {"IN", NS_EV_IN}, {"OUT", NS_EV_OUT}, {"ERR", NS_EV_ERR}, {"HUP", NS_EV_HUP}, {"RDHUP", NS_EV_RDHUP}};
        unsigned want = 0;
        if (c.expect != "0") {
            std::string rest = c.expect + "|";
            size_t p;
            while ((p = rest.find('|')) != std::string::npos) {
                std::string name = rest.substr(0, p);
                rest = rest.substr(p + 1);
                bool found = false;
                for (auto &b : bits)
                    if (name == b.first) {
                        want |= b.second;
                        found = true;
                    }
                if (!found)
                    return fail(&l, "unknown event '" + name + "' (IN OUT ERR HUP RDHUP)");
            }
        }
        if (c.op != "=" && c.op != "!=" && c.op != "&")
            return fail(&l, "events compare with =, != or & (has these bits)");
        bool ok = c.op == "&" ? (unsigned(r) & want) == want : (unsigned(r) == want) == (c.op == "=");
        if (!ok) {
            std::string got;
            for (auto &b : bits)
                if (unsigned(r) & b.second)
                    got += (got.empty() ? "" : "|") + std::string(b.first);
            return fail(&l, "events = " + (got.empty() ? std::string("0") : got) + ", expected " + c.op + " " + c.expect);
        }
        return true;
    } else if (c.fn == "info") {
        struct ns_tcp_info in;
        r = ns_tcp_info(ns_, sd, &in);
        if (r < 0)
            return fail(&l, "info failed with -" + errno_name(-r));
        const std::string &fld = c.field;
        if (fld == "state") {
            int want = -1;
            for (int i = 0; i < int(sizeof kStates / sizeof *kStates); i++)
                if (c.expect == kStates[i])
                    want = i;
            if (want < 0)
                return fail(&l, "unknown state '" + c.expect + "'");
            if ((int(in.state) == want) != (c.op == "=") || (c.op != "=" && c.op != "!="))
                return fail(&l, "state " + std::string(unsigned(in.state) < 11 ? kStates[in.state] : "?") +
                                    ", expected " + c.op + " " + c.expect);
            return true;
        }
        if (fld == "cc") {
            int64_t want = c.expect == "NEWRENO" ? NS_CC_NEWRENO : NS_CC_CUBIC;
            if ((in.cc == want) != (c.op == "="))
                return fail(&l, "cc differs");
            return true;
        }
        const std::pair<const char *, int64_t> fields[] = {
            {"snd_mss", in.snd_mss}, {"rcv_mss", in.rcv_mss}, {"snd_wscale", in.snd_wscale},
            {"rcv_wscale", in.rcv_wscale}, {"ts_ok", in.ts_ok}, {"sack_ok", in.sack_ok}, {"cwnd", in.cwnd},
            {"ssthresh", in.ssthresh}, {"srtt_us", in.srtt_us}, {"rttvar_us", in.rttvar_us},
            {"rto_ms", in.rto_ms}, {"snd_wnd", in.snd_wnd}, {"rcv_wnd", in.rcv_wnd}, {"unacked", in.unacked},
            {"sndq", in.sndq}, {"rcvq", in.rcvq}, {"retransmits", int64_t(in.retransmits)},
            {"rto_events", int64_t(in.rto_events)}, {"fast_retransmits", int64_t(in.fast_retransmits)},
        };
        for (auto &f : fields)
            if (fld == f.first)
                return expect_int(l, "info." + fld, f.second, false);
        return fail(&l, "unknown info field '" + fld + "'");
    } else if (c.fn == "stat") {
        struct ns_stats st;
        ns_stats_get(ns_, &st);
        for (size_t i = 0; i < NS_STATS_COUNT; i++)
            if (c.args[0] == ns_stats_name(i))
                return expect_int(l, "stat " + c.args[0], int64_t(ns_stats_value(&st, i)), false);
        return fail(&l, "unknown counter '" + c.args[0] + "'");
    } else if (c.fn == "getpeername" || c.fn == "getsockname") {
        ns_sockaddr a;
        r = c.fn == "getpeername" ? ns_tcp_getpeername(ns_, sd, &a) : ns_tcp_getsockname(ns_, sd, &a);
        if (r < 0 || c.op.empty())
            return expect_int(l, c.fn, r, true);
        char buf[32];
        uint32_t ip = ns_ntoh32(a.addr);
        snprintf(buf, sizeof buf, "%u.%u.%u.%u:%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255,
                 unsigned(ns_ntoh16(a.port)));
        if ((c.expect == buf) != (c.op == "="))
            return fail(&l, c.fn + " = " + buf + ", expected " + c.op + " " + c.expect);
        return true;
    }
    if (!expect_int(l, c.fn, r, true))
        return false;
    poll();  // what the call queued leaves now, stamped with the call's time
    return true;
}

bool Runner::do_line(const Line &l)
{
    if (l.is_seg && !l.seg.inbound)
        return do_outbound(l);
    uint64_t t = (l.time.lo_rel ? prev_ : kT0) + l.time.lo;
    advance(t, false);
    if (!tx_.empty()) {
        const TxFrame &f = tx_.front();
        return fail(&l, "unexpected segment before this line", secs(f.t) + " " + show_frame(f.frame));
    }
    prev_ = now_;
    return l.is_seg ? do_inbound(l) : do_call(l);
}

bool Runner::run(std::string *log)
{
    bool ok = setup();
    for (size_t i = 0; ok && i < sc_.lines.size(); i++)
        ok = do_line(sc_.lines[i]);
    if (ok) {
        poll();
        ok = check_quiet("after the last line");
    }
    if (ns_) {
        ns_destroy(ns_);
        ns_ = nullptr;
    }
    if (dev_) {
        dev_->free_all();
        if (dev_->pool.in_use != 0)
            ok = fail(nullptr, "nsbuf leak: " + std::to_string(dev_->pool.in_use) + " buffers not returned");
    }
    *log = log_;
    return ok;
}

}  // namespace

bool run_script(const Script &sc, const std::string &path, bool verbose, std::string *log)
{
    Runner r(sc, path, verbose);
    return r.run(log);
}

}  // namespace conf
