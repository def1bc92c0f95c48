/*
 * TCP output: what to send now (window, congestion window, Nagle, sender SWS
 * avoidance, SACK-based loss recovery) and how a segment is built (header,
 * options, advertised window, checksum). Chain: ns_tcp_send / tcp input /
 * timers -> tcp_output -> tcp_xmit -> ns_ipv4_output -> arp -> eth -> netdev.
 */
#include <errno.h>
#include <string.h>

#include "tcp_internal.h"

/* Payload bytes per segment: the peer's MSS, our MTU and the user's clamp,
 * less the timestamp option every segment carries once negotiated. */
void tcp_update_mss(struct netstack *ns, struct ns_tcb *t)
{
    uint32_t mss = ns->mtu - NS_IPV4_HLEN - NS_TCP_HLEN;
    mss = u32min(mss, t->peer_mss);
    if (t->mss_clamp)
        mss = u32min(mss, t->mss_clamp);
    if (t->ts_ok)
        mss -= 12;
    if (mss < 64)
        mss = 64;
    t->snd_mss = mss;
}

/* Payload bytes the next segment may carry: the MSS less the option bytes it
 * will really carry (SACK blocks come and go), so header + data never exceed
 * the MTU (RFC 9293 3.7.1, Linux tcp_current_mss). */
uint32_t tcp_seg_max(const struct netstack *ns, const struct ns_tcb *t)
{
    uint32_t opt = t->ts_ok ? 12 : 0;
    if (t->sack_ok && t->nrsack)
        opt += 4 + 8 * u32min(t->nrsack, t->ts_ok ? 3 : 4);
    uint32_t room = ns->mtu - NS_IPV4_HLEN - NS_TCP_HLEN - opt;
    uint32_t mss = t->snd_mss + (t->ts_ok ? 12 : 0);   /* snd_mss already counts the timestamps */
    mss = mss > opt ? mss - opt : 1;
    return u32min(mss, room);
}

static uint32_t our_mss(const struct netstack *ns, const struct ns_tcb *t)
{
    uint32_t mss = ns->mtu - NS_IPV4_HLEN - NS_TCP_HLEN;
    if (t->mss_clamp)
        mss = u32min(mss, t->mss_clamp);
    return mss;
}

/* Free receive space, the most we may offer. */
uint32_t tcp_rcv_window(const struct ns_tcb *t)
{
    uint32_t w = t->rcvbuf > t->rxq_bytes ? t->rcvbuf - t->rxq_bytes : 0;
    uint32_t maxw = (t->ws_ok ? 65535u << t->rcv_wscale : 65535u);
    return u32min(w, maxw);
}

/* The window field for a non-SYN segment: never shrinks the edge we offered
 * (RFC 9293 3.8.6.2.2), grows only in useful steps (receiver SWS avoidance). */
static uint16_t window_field(struct ns_tcb *t)
{
    uint32_t cur = SEQ_GT(t->rcv_adv, t->rcv_nxt) ? t->rcv_adv - t->rcv_nxt : 0;
    uint32_t w = tcp_rcv_window(t);
    if (w < cur || w - cur < u32min(t->rcvbuf / 2, t->rcv_mss))
        w = cur;
    uint8_t ws = t->ws_ok ? t->rcv_wscale : 0;
    uint32_t f = w >> ws;
    if ((f << ws) < cur)
        f = (cur + (1u << ws) - 1) >> ws;
    if (f > 65535)
        f = 65535;
    uint32_t edge = t->rcv_nxt + (f << ws);
    if (SEQ_GT(edge, t->rcv_adv))
        t->rcv_adv = edge;
    return (uint16_t)f;
}

static uint8_t choose_wscale(const struct ns_tcb *t)
{
    uint8_t s = 0;
    while (s < NS_TCP_MAX_WSCALE && (t->rcvbuf >> s) > 65535)
        s++;
    return s;
}

static uint32_t put_ts(uint8_t *p, const struct netstack *ns, const struct ns_tcb *t)
{
    p[0] = NS_TCPOPT_TIMESTAMP;
    p[1] = NS_TCPOLEN_TIMESTAMP;
    be32_t v = ns_hton32(tcp_ts_now(ns, t)), e = ns_hton32(t->ts_recent);
    memcpy(p + 2, &v, 4);
    memcpy(p + 6, &e, 4);
    return 10;
}

/* Options for a segment with these flags; returns their length (multiple of 4). */
static uint32_t build_options(uint8_t *p, struct netstack *ns, struct ns_tcb *t, uint8_t flags)
{
    uint32_t n = 0;
    if (flags & NS_TCP_SYN) {
        be16_t m = ns_hton16((uint16_t)our_mss(ns, t));
        p[n++] = NS_TCPOPT_MSS;
        p[n++] = NS_TCPOLEN_MSS;
        memcpy(p + n, &m, 2);
        n += 2;
        bool active = !(flags & NS_TCP_ACK);
        bool sack = active ? NS_TCP_USE_SACK : t->sack_ok;
        bool ts = active ? NS_TCP_USE_TIMESTAMPS : t->ts_ok;
        bool ws = active ? NS_TCP_USE_WSCALE : t->ws_ok;
        if (ts) {
            if (sack) {
                p[n++] = NS_TCPOPT_SACK_PERM;
                p[n++] = NS_TCPOLEN_SACK_PERM;
            } else {
                p[n++] = NS_TCPOPT_NOP;
                p[n++] = NS_TCPOPT_NOP;
            }
            n += put_ts(p + n, ns, t);
        } else if (sack) {
            p[n++] = NS_TCPOPT_NOP;
            p[n++] = NS_TCPOPT_NOP;
            p[n++] = NS_TCPOPT_SACK_PERM;
            p[n++] = NS_TCPOLEN_SACK_PERM;
        }
        if (ws) {
            p[n++] = NS_TCPOPT_NOP;
            p[n++] = NS_TCPOPT_WSCALE;
            p[n++] = NS_TCPOLEN_WSCALE;
            p[n++] = t->rcv_wscale;
        }
        return n;
    }
    if (t->ts_ok) {
        p[n++] = NS_TCPOPT_NOP;
        p[n++] = NS_TCPOPT_NOP;
        n += put_ts(p + n, ns, t);
    }
    if (t->sack_ok && t->nrsack && (flags & NS_TCP_ACK) && !(flags & NS_TCP_RST)) {
        uint32_t max = t->ts_ok ? 3 : 4;
        uint32_t k = u32min(t->nrsack, max);
        p[n++] = NS_TCPOPT_NOP;
        p[n++] = NS_TCPOPT_NOP;
        p[n++] = NS_TCPOPT_SACK;
        p[n++] = (uint8_t)(2 + 8 * k);
        for (uint32_t i = 0; i < k; i++) {
            be32_t a = ns_hton32(t->rsack[i].start), b = ns_hton32(t->rsack[i].end);
            memcpy(p + n, &a, 4);
            memcpy(p + n + 4, &b, 4);
            n += 8;
        }
    }
    return n;
}

static void copy_from_ring(const struct ns_tcb *t, uint32_t off, uint8_t *dst, uint32_t len)
{
    uint32_t idx = (t->sbuf_head + off) & (t->sbuf_cap - 1);
    uint32_t first = u32min(len, t->sbuf_cap - idx);
    memcpy(dst, t->sbuf + idx, first);
    if (len > first)
        memcpy(dst + first, t->sbuf, len - first);
}

int tcp_xmit(struct netstack *ns, struct ns_tcb *t, uint32_t seq, uint32_t len, uint8_t flags)
{
    struct nsbuf *b = ns_alloc_tx(ns);
    if (!b)
        return -ENOBUFS;
    uint8_t opts[40];
    uint32_t olen = build_options(opts, ns, t, flags);
    uint32_t hlen = NS_TCP_HLEN + olen;
    if (hlen + len + NS_IPV4_HLEN > ns->mtu) {
        ns->st.tcp_tx_too_big++;     /* a sizing bug: never let it vanish silently */
        ns_buf_put(ns, b);
        return -EMSGSIZE;
    }
    uint8_t *p = nsbuf_append(b, hlen + len);
    if (!p) {
        ns->st.tx_nobuf++;
        ns_buf_put(ns, b);
        return -ENOBUFS;
    }
    struct ns_tcp_hdr *h = (struct ns_tcp_hdr *)p;
    h->sport = t->local.port;
    h->dport = t->remote.port;
    h->seq = ns_hton32(seq);
    h->ack = (flags & NS_TCP_ACK) ? ns_hton32(t->rcv_nxt) : 0;
    h->data_off = (uint8_t)((hlen / 4) << 4);
    h->flags = flags;
    if (flags & NS_TCP_SYN) {
        h->window = ns_hton16((uint16_t)u32min(tcp_rcv_window(t), 65535));
        t->rcv_adv = t->rcv_nxt + u32min(tcp_rcv_window(t), 65535);
    } else if (flags & NS_TCP_RST) {
        h->window = 0;
    } else {
        h->window = ns_hton16(window_field(t));
    }
    h->cksum = 0;
    h->urg = 0;
    memcpy(p + NS_TCP_HLEN, opts, olen);
    if (len)
        copy_from_ring(t, seq - t->snd_buf_seq, p + hlen, len);
    uint32_t sum = ns_cksum_pseudo(t->local.addr, t->remote.addr, NS_IPPROTO_TCP, (uint16_t)(hlen + len));
    h->cksum = ns_cksum_finish(ns_cksum_add(sum, p, hlen + len));
    if (flags & NS_TCP_ACK) {
        t->last_ack_sent = t->rcv_nxt;
        t->rcv_unacked = 0;
        t->ack_now = false;
        ns_tw_cancel(&ns->tw, &t->t_dack);
    }
    int rc = ns_ipv4_output(ns, b, t->remote.addr, NS_IPPROTO_TCP);
    if (rc == 0)
        ns->st.tcp_tx++;
    else
        ns->st.tcp_tx_ip_error++;
    return rc;
}

void tcp_send_ack(struct netstack *ns, struct ns_tcb *t)
{
    /* snd_max, not snd_nxt: after an RTO rewinds snd_nxt the peer may hold more
     * than snd_nxt and would find the ACK below its window (4.4BSD does the same). */
    tcp_xmit(ns, t, t->snd_max, 0, NS_TCP_ACK);
}

void tcp_send_syn(struct netstack *ns, struct ns_tcb *t)
{
    if (t->state == NS_TCP_SYN_SENT || t->state == NS_TCP_CLOSED) {
        t->rcv_wscale = NS_TCP_USE_WSCALE ? choose_wscale(t) : 0;
        tcp_xmit(ns, t, t->iss, 0, NS_TCP_SYN);
    } else {
        if (t->ws_ok && t->rcv_wscale == 0)
            t->rcv_wscale = choose_wscale(t);
        tcp_xmit(ns, t, t->iss, 0, NS_TCP_SYN | NS_TCP_ACK);
    }
    t->snd_nxt = t->iss + 1;
    t->snd_max = seq_max(t->snd_max, t->snd_nxt);
}

void tcp_send_rst(struct netstack *ns, struct ns_tcb *t)
{
    ns->st.tcp_rst_tx++;
    tcp_xmit(ns, t, t->snd_max, 0, NS_TCP_RST | NS_TCP_ACK);
}

void tcp_send_reset_for(struct netstack *ns, const struct ns_rxinfo *ri, const struct ns_tcp_hdr *th,
                        const struct tcp_seg *s)
{
    if (s->flags & NS_TCP_RST)
        return;
    struct nsbuf *b = ns_alloc_tx(ns);
    if (!b)
        return;
    struct ns_tcp_hdr *h = nsbuf_append(b, NS_TCP_HLEN);
    if (!h) {
        ns_buf_put(ns, b);
        return;
    }
    memset(h, 0, NS_TCP_HLEN);
    h->sport = th->dport;
    h->dport = th->sport;
    if (s->flags & NS_TCP_ACK) {
        h->seq = ns_hton32(s->ack);
        h->flags = NS_TCP_RST;
    } else {
        uint32_t sl = s->len + !!(s->flags & NS_TCP_SYN) + !!(s->flags & NS_TCP_FIN);
        h->ack = ns_hton32(s->seq + sl);
        h->flags = NS_TCP_RST | NS_TCP_ACK;
    }
    h->data_off = (NS_TCP_HLEN / 4) << 4;
    uint32_t sum = ns_cksum_pseudo(ri->ip->dst, ri->ip->src, NS_IPPROTO_TCP, NS_TCP_HLEN);
    h->cksum = ns_cksum_finish(ns_cksum_add(sum, h, NS_TCP_HLEN));
    ns->st.tcp_tx++;
    ns->st.tcp_rst_tx++;
    ns_ipv4_output(ns, b, ri->ip->src, NS_IPPROTO_TCP);
}

/* RFC 5961 3.2/4.2/5.2 challenge ACK, under a per-stack budget (section 7). */
void tcp_send_challenge_ack(struct netstack *ns, struct ns_tcb *t)
{
    struct ns_tcp *tcp = tcp_of(ns);
    if (ns->now - tcp->chal_at >= 1000 * NS_MS) {
        tcp->chal_at = ns->now;
        tcp->chal_count = 0;
    }
    if (tcp->chal_count >= NS_TCP_CHALLENGE_ACK_PER_SEC) {
        ns->st.tcp_challenge_acks_limited++;
        return;
    }
    tcp->chal_count++;
    ns->st.tcp_challenge_acks++;
    tcp_send_ack(ns, t);
}

static bool sending_state(uint8_t st)
{
    return st == NS_TCP_ESTABLISHED || st == NS_TCP_CLOSE_WAIT || st == NS_TCP_FIN_WAIT_1 ||
           st == NS_TCP_CLOSING || st == NS_TCP_LAST_ACK;
}

/* Send [seq, seq+len) (+FIN) and do the bookkeeping every data segment needs. */
static int send_data(struct netstack *ns, struct ns_tcb *t, uint32_t seq, uint32_t len, bool fin, bool psh)
{
    bool rtx = SEQ_LT(seq, t->snd_max);
    uint8_t flags = NS_TCP_ACK | (fin ? NS_TCP_FIN : 0) | (psh && len ? NS_TCP_PSH : 0);
    if (tcp_xmit(ns, t, seq, len, flags) < 0)
        return -1;
    if (rtx) {
        t->n_retransmits++;
        ns->st.tcp_retransmits++;
        t->rtt_timing = false;   /* Karn: no sample from a retransmitted range */
    } else if (!t->rtt_timing && len) {
        t->rtt_timing = true;
        t->rtt_seq = seq + len;
        t->rtt_start = ns->now;
    }
    uint32_t end = seq + len + (fin ? 1 : 0);
    if (fin) {
        t->fin_sent = true;
        t->fin_seq = seq + len;
    }
    if (t->snd_max == t->snd_una)
        t->rtx_stamp = ns->now;
    if (SEQ_GT(end, t->snd_max))
        t->snd_max = end;
    if (!ns_timer_armed(&t->t_rtx) || t->persist)
        tcp_arm_rtx(ns, t);
    return 0;
}

uint32_t tcp_sacked_bytes(const struct ns_tcb *t)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < t->nsb; i++)
        n += t->sb[i].end - t->sb[i].start;
    return n;
}

/* RFC 6675-style pipe: everything sent above the highest SACK is in flight,
 * holes below it count only once retransmitted. */
static uint32_t sack_pipe(const struct ns_tcb *t, uint32_t hisack)
{
    uint32_t pipe = t->snd_max - hisack;
    uint32_t rx_end = seq_min(t->high_rxt, hisack);
    if (SEQ_GT(rx_end, t->snd_una)) {
        uint32_t holes = rx_end - t->snd_una;
        for (uint32_t i = 0; i < t->nsb; i++) {
            uint32_t s = seq_max(t->sb[i].start, t->snd_una), e = seq_min(t->sb[i].end, rx_end);
            if (SEQ_LT(s, e))
                holes -= e - s;
        }
        pipe += holes;
    }
    return pipe;
}

void tcp_sack_output(struct netstack *ns, struct ns_tcb *t)
{
    uint32_t hisack = t->snd_una;
    for (uint32_t i = 0; i < t->nsb; i++)
        hisack = seq_max(hisack, t->sb[i].end);
    for (int guard = 0; guard < 256; guard++) {
        uint32_t pipe = sack_pipe(t, hisack);
        if (pipe + t->snd_mss > t->cc.cwnd)
            break;
        /* The first hole at or above high_rxt. */
        uint32_t s = seq_max(t->high_rxt, t->snd_una);
        bool moved = true;
        while (moved) {
            moved = false;
            for (uint32_t i = 0; i < t->nsb; i++)
                if (SEQ_LEQ(t->sb[i].start, s) && SEQ_LT(s, t->sb[i].end)) {
                    s = t->sb[i].end;
                    moved = true;
                }
        }
        if (SEQ_LT(s, hisack)) {
            uint32_t e = seq_min(hisack, s + tcp_seg_max(ns, t));
            for (uint32_t i = 0; i < t->nsb; i++)
                if (SEQ_GT(t->sb[i].start, s) && SEQ_LT(t->sb[i].start, e))
                    e = t->sb[i].start;
            uint32_t data_end = t->snd_buf_seq + t->sbuf_len;
            bool fin = false;
            if (SEQ_GT(e, data_end)) {
                e = data_end;
                fin = t->fin_sent;
            }
            if (send_data(ns, t, s, e - s, fin, true) < 0)
                break;
            t->high_rxt = e + (fin ? 1 : 0);
            continue;
        }
        /* No hole left: new data, as the window allows. */
        uint32_t off = t->snd_max - t->snd_buf_seq;
        uint32_t avail = off < t->sbuf_len ? t->sbuf_len - off : 0;
        uint32_t wl = SEQ_GT(t->snd_una + t->snd_wnd, t->snd_max) ? t->snd_una + t->snd_wnd - t->snd_max : 0;
        uint32_t len = u32min(u32min(avail, tcp_seg_max(ns, t)), wl);
        bool fin = t->wr_shut && !t->fin_sent && len == avail;
        if (len == 0 && !fin)
            break;
        t->snd_nxt = t->snd_max;
        if (send_data(ns, t, t->snd_nxt, len, fin, true) < 0)
            break;
        t->snd_nxt = t->snd_max;
        t->high_rxt = seq_max(t->high_rxt, hisack);
    }
    if (t->ack_now)
        tcp_send_ack(ns, t);
}

uint32_t tcp_retransmit_head(struct netstack *ns, struct ns_tcb *t)
{
    uint32_t data_end = t->snd_buf_seq + t->sbuf_len;
    uint32_t len = SEQ_LT(t->snd_una, data_end) ? u32min(data_end - t->snd_una, tcp_seg_max(ns, t)) : 0;
    bool fin = t->fin_sent && t->snd_una + len == t->fin_seq;
    if (len == 0 && !fin)
        return t->snd_una;
    send_data(ns, t, t->snd_una, len, fin, true);
    return t->snd_una + len + (fin ? 1 : 0);
}

void tcp_output(struct netstack *ns, struct ns_tcb *t)
{
    if (!sending_state(t->state)) {
        if (t->ack_now && t->state != NS_TCP_CLOSED && t->state != NS_TCP_LISTEN && t->state != NS_TCP_SYN_SENT)
            tcp_send_ack(ns, t);
        return;
    }
    if (t->in_recovery && t->sack_ok) {
        tcp_sack_output(ns, t);
        return;
    }
    uint32_t avail = 0;
    for (;;) {
        uint32_t off = t->snd_nxt - t->snd_buf_seq;
        avail = off < t->sbuf_len ? t->sbuf_len - off : 0;
        /* RFC 3042 limited transmit: each of the first two duplicate ACKs lets one
         * new segment out beyond cwnd. */
        uint32_t cwnd = t->cc.cwnd;
        if (!t->in_recovery && t->dupacks && t->dupacks < NS_TCP_DUPTHRESH && !SEQ_LT(t->snd_nxt, t->snd_max))
            cwnd += t->dupacks * t->snd_mss;
        uint32_t wnd = u32min(t->snd_wnd, cwnd);
        uint32_t fl = t->snd_nxt - t->snd_una;
        uint32_t usable = wnd > fl ? wnd - fl : 0;
        uint32_t seg = tcp_seg_max(ns, t);
        uint32_t len = u32min(u32min(avail, seg), usable);
        bool fin = t->wr_shut && len == avail && off <= t->sbuf_len && !(t->fin_sent && SEQ_GT(t->snd_nxt, t->fin_seq));
        if (len == 0 && !fin)
            break;
        if (len < avail && len < seg && len < t->max_snd_wnd / 2)
            break;               /* sender SWS avoidance: wait for a useful window */
        bool rtx = SEQ_LT(t->snd_nxt, t->snd_max);
        if (len && len == avail && len < seg && !fin && !t->nodelay && !rtx && t->snd_max != t->snd_una)
            break;               /* Nagle: one small segment in flight at a time */
        if (send_data(ns, t, t->snd_nxt, len, fin, len == avail) < 0)
            break;
        t->snd_nxt += len + (fin ? 1 : 0);
        if (fin)
            break;
    }
    /* Data waits, nothing is in flight to bring an ACK: probe the window. */
    if (avail && t->snd_max == t->snd_una && !ns_timer_armed(&t->t_rtx))
        tcp_arm_persist(ns, t);
    if (t->ack_now)
        tcp_send_ack(ns, t);
}
