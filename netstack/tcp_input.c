/*
 * TCP input, RFC 9293 3.10.7: validation, demux, then per-state processing —
 * LISTEN (new children), SYN_SENT, and the synchronized states (PAWS,
 * sequence acceptability, RST/SYN checks of RFC 5961, ACK processing with RTT
 * samples, fast retransmit / NewReno and SACK recovery, window update, data
 * into the in-order or out-of-order queue, FIN). Chain: ns_ipv4_input ->
 * ns_tcp_input -> tcp_lookup -> ..._input -> deliver / ack_process ->
 * tcp_output (tcp_output.c).
 */
#include <errno.h>
#include <string.h>

#include "tcp_internal.h"

#define PAWS_IDLE_NS (24ull * 24 * 3600 * 1000000000ull) /* RFC 7323 5.5: ts_recent older than 24 days is void */

static void parse_opts(const uint8_t *p, uint32_t n, struct tcp_opts *o, bool syn)
{
    o->has = 0;
    o->nsack = 0;
    /* The usual non-SYN layout: NOP NOP TS. */
    if (n == 12 && p[0] == NS_TCPOPT_NOP && p[1] == NS_TCPOPT_NOP && p[2] == NS_TCPOPT_TIMESTAMP &&
        p[3] == NS_TCPOLEN_TIMESTAMP) {
        be32_t v, e;
        memcpy(&v, p + 4, 4);
        memcpy(&e, p + 8, 4);
        o->tsval = ns_ntoh32(v);
        o->tsecr = ns_ntoh32(e);
        o->has = TOPT_TS;
        return;
    }
    uint32_t i = 0;
    while (i < n) {
        uint8_t kind = p[i];
        if (kind == NS_TCPOPT_EOL)
            break;
        if (kind == NS_TCPOPT_NOP) {
            i++;
            continue;
        }
        if (i + 1 >= n)
            break;
        uint8_t len = p[i + 1];
        if (len < 2 || i + len > n)
            break;               /* malformed: ignore the rest */
        const uint8_t *v = p + i + 2;
        switch (kind) {
        case NS_TCPOPT_MSS:
            if (syn && len == NS_TCPOLEN_MSS) {
                o->mss = (uint16_t)(v[0] << 8 | v[1]);
                o->has |= TOPT_MSS;
            }
            break;
        case NS_TCPOPT_WSCALE:
            if (syn && len == NS_TCPOLEN_WSCALE) {
                /* RFC 7323 2.3: a shift above 14 is used as 14. */
                o->ws = v[0] > NS_TCP_MAX_WSCALE ? NS_TCP_MAX_WSCALE : v[0];
                o->has |= TOPT_WS;
            }
            break;
        case NS_TCPOPT_SACK_PERM:
            if (syn && len == NS_TCPOLEN_SACK_PERM)
                o->has |= TOPT_SACKPERM;
            break;
        case NS_TCPOPT_TIMESTAMP:
            if (len == NS_TCPOLEN_TIMESTAMP) {
                be32_t a, b;
                memcpy(&a, v, 4);
                memcpy(&b, v + 4, 4);
                o->tsval = ns_ntoh32(a);
                o->tsecr = ns_ntoh32(b);
                o->has |= TOPT_TS;
            }
            break;
        case NS_TCPOPT_SACK:
            if (!syn && len >= 10 && (len - 2) % 8 == 0) {
                uint32_t k = (len - 2u) / 8u;
                for (uint32_t j = 0; j < k && o->nsack < 4; j++) {
                    be32_t a, b;
                    memcpy(&a, v + 8 * j, 4);
                    memcpy(&b, v + 8 * j + 4, 4);
                    o->sack[o->nsack][0] = ns_ntoh32(a);
                    o->sack[o->nsack][1] = ns_ntoh32(b);
                    o->nsack++;
                }
                o->has |= TOPT_SACK;
            }
            break;
        default:
            break;
        }
        i += len;
    }
}

/* Options of the peer's SYN decide what the connection uses. */
static void apply_syn_options(struct netstack *ns, struct ns_tcb *t, const struct tcp_seg *s)
{
    const struct tcp_opts *o = &s->o;
    if (o->has & TOPT_MSS)
        t->peer_mss = u32max(o->mss, NS_TCP_MIN_MSS);
    else
        t->peer_mss = NS_TCP_DEFAULT_MSS;
    t->ws_ok = NS_TCP_USE_WSCALE && (o->has & TOPT_WS);
    t->snd_wscale = t->ws_ok ? o->ws : 0;
    if (!t->ws_ok)
        t->rcv_wscale = 0;
    t->ts_ok = NS_TCP_USE_TIMESTAMPS && (o->has & TOPT_TS);
    if (t->ts_ok) {
        t->ts_recent = o->tsval;
        t->ts_recent_age = ns->now;
    }
    t->sack_ok = NS_TCP_USE_SACK && (o->has & TOPT_SACKPERM);
    tcp_update_mss(ns, t);
    ns_cc_set_mss(&t->cc, t->snd_mss);
    if (t->cc.cwnd < t->snd_mss || t->snd_max == t->iss + 1)
        ns_cc_init(&t->cc, t->cc_algo, t->snd_mss, ns->now);
}

static void listen_input(struct netstack *ns, struct ns_tcb *lis, const struct ns_rxinfo *ri,
                         const struct ns_tcp_hdr *th, const struct tcp_seg *s)
{
    if (s->flags & NS_TCP_RST)
        return;
    if (s->flags & NS_TCP_ACK) {
        tcp_send_reset_for(ns, ri, th, s);
        return;
    }
    if (!(s->flags & NS_TCP_SYN))
        return;
    if (lis->syn_count >= NS_TCP_SYN_BACKLOG) {
        ns->st.tcp_syn_queue_overflow++;
        return;
    }
    if (lis->acc_count > lis->backlog) {
        ns->st.tcp_accept_queue_overflow++;  /* Linux drops the SYN too */
        return;
    }
    struct ns_tcb *c = tcp_new_child(ns, lis, ri->ip->src, th->sport);
    if (!c) {
        ns->st.tcp_no_tcb++;
        return;
    }
    c->irs = s->seq;
    c->rcv_nxt = s->seq + 1;
    c->rcv_adv = c->rcv_nxt;
    apply_syn_options(ns, c, s);
    c->snd_wnd = s->wnd;         /* a SYN's window is never scaled */
    c->max_snd_wnd = c->snd_wnd;
    c->snd_wl1 = s->seq;
    c->snd_wl2 = c->iss;
    tcp_set_state(ns, c, NS_TCP_SYN_RECEIVED);
    c->rtt_timing = true;
    c->rtt_seq = c->iss + 1;
    c->rtt_start = ns->now;
    tcp_send_syn(ns, c);
    tcp_arm_rtx(ns, c);
}

static void connected(struct netstack *ns, struct ns_tcb *t, const struct tcp_seg *s)
{
    if (t->rtt_timing && SEQ_GEQ(s->ack, t->rtt_seq)) {
        tcp_rtt_sample(t, (uint32_t)((ns->now - t->rtt_start) / 1000));
        t->rtt_timing = false;
    }
    t->snd_una = s->ack;
    if (SEQ_LT(t->snd_nxt, t->snd_una))
        t->snd_nxt = t->snd_una;
    t->snd_wnd = s->wnd << t->snd_wscale;
    t->max_snd_wnd = u32max(t->max_snd_wnd, t->snd_wnd);
    t->snd_wl1 = s->seq;
    t->snd_wl2 = s->ack;
    t->backoff = 0;
    t->syn_tries = 0;
    ns_tw_cancel(&ns->tw, &t->t_rtx);
    t->recover = t->snd_una - 1;
    tcp_arm_keepalive(ns, t);
}

/* ---- receive queues */
static void rsack_trim(struct ns_tcb *t)
{
    uint32_t w = 0;
    for (uint32_t i = 0; i < t->nrsack; i++)
        if (SEQ_GT(t->rsack[i].end, t->rcv_nxt)) {
            t->rsack[w] = t->rsack[i];
            if (SEQ_LT(t->rsack[w].start, t->rcv_nxt))
                t->rsack[w].start = t->rcv_nxt;
            w++;
        }
    t->nrsack = (uint8_t)w;
}

static void fin_input(struct netstack *ns, struct ns_tcb *t);

static void rxq_append(struct netstack *ns, struct ns_tcb *t, struct nsbuf *b)
{
    struct nsbuf *tail = t->rxq_tail;
    /* Small segments are copied into the tail buffer: a queue of tiny frames
     * would pin a pool buffer per few bytes. */
    if (tail && b->len <= NS_TCP_COALESCE_MAX && tail->refcnt == 1 && nsbuf_tailroom(tail) >= b->len) {
        memcpy(nsbuf_append(tail, b->len), b->data, b->len);
        t->rxq_bytes += b->len;
        ns_buf_put(ns, b);
        return;
    }
    b->next = NULL;
    if (tail)
        tail->next = b;
    else
        t->rxq_head = b;
    t->rxq_tail = b;
    t->rxq_bytes += b->len;
    t->rxq_nbufs++;
}

/* In-order bytes at rcv_nxt: queue them, then whatever the out-of-order queue now continues. */
static void deliver(struct netstack *ns, struct ns_tcb *t, struct nsbuf *b)
{
    t->rcv_nxt += b->len;
    t->rcv_unacked += b->len;
    if (b->len > t->rcv_mss)
        t->rcv_mss = b->len;
    rxq_append(ns, t, b);
    if (t->ooo_head) {
        t->ack_now = true;       /* a gap filled: tell the sender at once (RFC 5681 4.2) */
        while (t->ooo_head && SEQ_LEQ(t->ooo_head->seq, t->rcv_nxt)) {
            struct nsbuf *o = t->ooo_head;
            t->ooo_head = o->next;
            t->ooo_count--;
            o->next = NULL;
            uint32_t end = o->seq + o->len;
            if (SEQ_LEQ(end, t->rcv_nxt)) {
                ns_buf_put(ns, o);
                continue;
            }
            nsbuf_pull(o, t->rcv_nxt - o->seq);
            t->rcv_nxt = end;
            t->rcv_unacked += o->len;
            rxq_append(ns, t, o);
        }
        rsack_trim(t);
        if (t->ooo_fin && t->ooo_fin_seq == t->rcv_nxt && !t->ooo_head) {
            t->ooo_fin = false;
            fin_input(ns, t);
        }
    }
    if (t->rcv_unacked >= 2 * t->rcv_mss)
        t->ack_now = true;
    tcp_mark(ns, t);
}

/* Report first the block holding the segment just received (RFC 2018 4). */
static void rsack_note(struct ns_tcb *t, uint32_t seq)
{
    struct nsbuf *o = t->ooo_head;
    uint32_t start = 0, end = 0;
    bool found = false;
    while (o) {
        uint32_t s = o->seq, e = o->seq + o->len;
        struct nsbuf *n = o->next;
        while (n && n->seq == e) {
            e = n->seq + n->len;
            n = n->next;
        }
        if (SEQ_LEQ(s, seq) && SEQ_LT(seq, e)) {
            start = s;
            end = e;
            found = true;
            break;
        }
        o = n;
    }
    if (!found)
        return;
    struct sack_block nb[4];
    uint32_t k = 0;
    nb[k++] = (struct sack_block){ start, end };
    for (uint32_t i = 0; i < t->nrsack && k < 4; i++) {
        const struct sack_block *x = &t->rsack[i];
        if (SEQ_LEQ(x->end, t->rcv_nxt) || (SEQ_LT(x->start, end) && SEQ_GT(x->end, start)))
            continue;
        nb[k++] = *x;
    }
    memcpy(t->rsack, nb, k * sizeof(nb[0]));
    t->nrsack = (uint8_t)k;
}

static void ooo_insert(struct netstack *ns, struct ns_tcb *t, struct nsbuf *b, uint32_t seq)
{
    t->ack_now = true;           /* duplicate ACK (with SACK) at once (RFC 5681 4.2) */
    if (t->ooo_count >= NS_TCP_OOO_MAX) {
        ns->st.tcp_rx_ooo_dropped++;
        ns_buf_put(ns, b);
        return;
    }
    b->seq = seq;
    struct nsbuf **pp = &t->ooo_head;
    struct nsbuf *prev = NULL;
    while (*pp && SEQ_LT((*pp)->seq, seq)) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (prev) {
        uint32_t pend = prev->seq + prev->len;
        if (SEQ_GEQ(pend, seq + b->len)) {
            ns_buf_put(ns, b);   /* already held */
            rsack_note(t, seq);
            return;
        }
        if (SEQ_GT(pend, seq)) {
            nsbuf_pull(b, pend - seq);
            b->seq = seq = pend;
        }
    }
    /* Drop following segments we cover completely, then trim our tail to the next. */
    while (*pp && SEQ_LEQ((*pp)->seq + (*pp)->len, seq + b->len)) {
        struct nsbuf *dead = *pp;
        *pp = dead->next;
        dead->next = NULL;
        t->ooo_count--;
        ns_buf_put(ns, dead);
    }
    if (*pp && SEQ_GT(seq + b->len, (*pp)->seq))
        nsbuf_trim(b, (*pp)->seq - seq);
    if (b->len == 0) {
        ns_buf_put(ns, b);
        return;
    }
    b->next = *pp;
    *pp = b;
    t->ooo_count++;
    ns->st.tcp_rx_ooo++;
    rsack_note(t, seq);
}

static void fin_input(struct netstack *ns, struct ns_tcb *t)
{
    t->rcv_nxt++;
    t->fin_rcvd = true;
    t->ack_now = true;
    switch (t->state) {
    case NS_TCP_SYN_RECEIVED:
    case NS_TCP_ESTABLISHED:
        tcp_set_state(ns, t, NS_TCP_CLOSE_WAIT);
        break;
    case NS_TCP_FIN_WAIT_1:
        tcp_set_state(ns, t, NS_TCP_CLOSING);
        break;
    case NS_TCP_FIN_WAIT_2:
        tcp_enter_time_wait(ns, t);
        break;
    default:
        break;
    }
    tcp_mark(ns, t);
}

/* ---- ACK processing */
static void sack_update(struct ns_tcb *t, const struct tcp_opts *o)
{
    /* Drop what the cumulative ACK covers. */
    uint32_t w = 0;
    for (uint32_t i = 0; i < t->nsb; i++)
        if (SEQ_GT(t->sb[i].end, t->snd_una)) {
            t->sb[w] = t->sb[i];
            if (SEQ_LT(t->sb[w].start, t->snd_una))
                t->sb[w].start = t->snd_una;
            w++;
        }
    t->nsb = (uint8_t)w;
    for (uint32_t j = 0; j < o->nsack; j++) {
        uint32_t s = o->sack[j][0], e = o->sack[j][1];
        /* Only blocks inside what we sent and not yet cumulatively acked. */
        if (!SEQ_LT(s, e) || SEQ_LEQ(e, t->snd_una) || SEQ_GT(e, t->snd_max) || SEQ_LT(s, t->snd_una))
            continue;
        /* Merge into the sorted list. */
        struct sack_block nb = { s, e };
        struct sack_block out[NS_TCP_SACK_BLOCKS + 1];
        uint32_t k = 0;
        bool placed = false;
        for (uint32_t i = 0; i < t->nsb; i++) {
            struct sack_block x = t->sb[i];
            if (SEQ_LT(x.end, nb.start)) {
                out[k++] = x;
            } else if (SEQ_LT(nb.end, x.start)) {
                if (!placed) {
                    out[k++] = nb;
                    placed = true;
                }
                out[k++] = x;
            } else {
                nb.start = seq_min(nb.start, x.start);
                nb.end = seq_max(nb.end, x.end);
            }
        }
        if (!placed)
            out[k++] = nb;
        if (k > NS_TCP_SACK_BLOCKS)
            k = NS_TCP_SACK_BLOCKS;  /* the highest blocks fall off; they will be reported again */
        memcpy(t->sb, out, k * sizeof(out[0]));
        t->nsb = (uint8_t)k;
    }
}

static void enter_recovery(struct netstack *ns, struct ns_tcb *t)
{
    uint32_t flight = t->snd_max - t->snd_una;
    t->in_recovery = true;
    t->recover = t->snd_max - 1;
    t->n_fast_rtx++;
    ns->st.tcp_fast_retransmits++;
    ns_cc_on_congestion(&t->cc, flight, ns->now);
    t->snd_nxt = t->snd_max;
    uint32_t end = tcp_retransmit_head(ns, t);
    if (t->sack_ok) {
        t->high_rxt = end;
    } else {
        t->cc.cwnd = t->cc.ssthresh + NS_TCP_DUPTHRESH * t->snd_mss;
    }
}

/* Returns false when the segment must be dropped. */
static bool ack_process(struct netstack *ns, struct ns_tcb *t, const struct tcp_seg *s, bool *freed)
{
    uint32_t ack = s->ack;
    /* RFC 5961 5.2: an ACK for data never sent is answered and dropped; one far
     * below snd_una (more than the largest window) gets a challenge ACK. */
    if (SEQ_GT(ack, t->snd_max)) {
        ns->st.tcp_rx_ack_unsent++;
        t->ack_now = true;
        return false;
    }
    if (SEQ_LT(ack, t->snd_una - u32max(t->max_snd_wnd, 1))) {
        tcp_send_challenge_ack(ns, t);
        return false;
    }
    uint32_t new_wnd = s->wnd << t->snd_wscale;
    if (SEQ_GT(ack, t->snd_una)) {
        uint32_t flight = t->snd_max - t->snd_una;
        uint32_t acked = ack - t->snd_una;
        /* RTT: a timed segment (never retransmitted, Karn) or the echoed timestamp. */
        if (t->rtt_timing && SEQ_GEQ(ack, t->rtt_seq)) {
            tcp_rtt_sample(t, (uint32_t)((ns->now - t->rtt_start) / 1000));
            t->rtt_timing = false;
        } else if (t->ts_ok && (s->o.has & TOPT_TS) && s->o.tsecr) {
            uint32_t d = tcp_ts_now(ns, t) - s->o.tsecr;
            if (d < 3600u * 1000u)
                tcp_rtt_sample(t, d * 1000u + 500u);
        }
        if (SEQ_GT(ack, t->snd_buf_seq)) {
            uint32_t n = u32min(ack - t->snd_buf_seq, t->sbuf_len);
            t->sbuf_head = (t->sbuf_head + n) & (t->sbuf_cap ? t->sbuf_cap - 1 : 0);
            t->sbuf_len -= n;
            t->snd_buf_seq += n;
        }
        t->snd_una = ack;
        if (SEQ_LT(t->snd_nxt, t->snd_una))
            t->snd_nxt = t->snd_una;
        t->backoff = 0;
        t->keep_probes = 0;
        if (t->sack_ok)
            sack_update(t, &s->o);
        if (t->in_recovery) {
            if (SEQ_GT(ack, t->recover)) {
                t->in_recovery = false;
                t->dupacks = 0;
                ns_cc_on_recovery_exit(&t->cc, t->snd_max - t->snd_una, ns->now);
            } else if (!t->sack_ok) {
                /* RFC 6582 3.2 step 5: partial ACK, retransmit the next hole, deflate. */
                tcp_retransmit_head(ns, t);
                t->cc.cwnd = t->cc.cwnd > acked ? t->cc.cwnd - acked : t->snd_mss;
                if (acked >= t->snd_mss)
                    t->cc.cwnd += t->snd_mss;
                tcp_arm_rtx(ns, t);
            } else {
                t->high_rxt = seq_max(t->high_rxt, t->snd_una);
            }
        } else {
            t->dupacks = 0;
            ns_cc_on_ack(&t->cc, acked, flight, t->srtt_us, ns->now);
        }
        if (t->snd_una == t->snd_max) {
            ns_tw_cancel(&ns->tw, &t->t_rtx);
            t->persist = false;
        } else {
            t->rtx_stamp = ns->now;
            tcp_arm_rtx(ns, t);
        }
        tcp_mark(ns, t);
    } else if (ack == t->snd_una) {
        uint32_t before = tcp_sacked_bytes(t);
        if (t->sack_ok && s->o.nsack)
            sack_update(t, &s->o);
        bool new_sack = t->sack_ok && tcp_sacked_bytes(t) > before;
        if (t->snd_max != t->snd_una && s->len == 0 && !(s->flags & (NS_TCP_SYN | NS_TCP_FIN)) &&
            (new_wnd == t->snd_wnd || new_sack)) {
            t->dupacks++;
            ns->st.tcp_dupacks_rx++;
            if (t->in_recovery) {
                if (!t->sack_ok)
                    t->cc.cwnd += t->snd_mss;   /* RFC 6582 3.2 step 4: inflate */
            } else if (t->dupacks >= NS_TCP_DUPTHRESH && SEQ_GT(ack, t->recover)) {
                enter_recovery(ns, t);
            }
        }
    }
    /* Window update (RFC 9293 3.10.7.4), only from the newest segment. */
    if (SEQ_LT(t->snd_wl1, s->seq) || (t->snd_wl1 == s->seq && SEQ_LEQ(t->snd_wl2, ack))) {
        bool opened = new_wnd > t->snd_wnd;
        t->snd_wnd = new_wnd;
        t->max_snd_wnd = u32max(t->max_snd_wnd, new_wnd);
        t->snd_wl1 = s->seq;
        t->snd_wl2 = ack;
        if (opened && t->persist && new_wnd) {
            ns_tw_cancel(&ns->tw, &t->t_rtx);
            t->persist = false;
            t->backoff = 0;
        }
    }
    /* Our FIN acknowledged? */
    if (t->fin_sent && SEQ_GT(t->snd_una, t->fin_seq)) {
        switch (t->state) {
        case NS_TCP_FIN_WAIT_1:
            tcp_set_state(ns, t, NS_TCP_FIN_WAIT_2);
            tcp_arm_keepalive(ns, t);
            tcp_mark(ns, t);
            break;
        case NS_TCP_CLOSING:
            tcp_enter_time_wait(ns, t);
            break;
        case NS_TCP_LAST_ACK:
            tcp_close_conn(ns, t, 0);
            *freed = true;
            return false;
        default:
            break;
        }
    }
    return true;
}

static bool seq_acceptable(const struct ns_tcb *t, uint32_t seq, uint32_t seglen)
{
    uint32_t wnd = SEQ_GT(t->rcv_adv, t->rcv_nxt) ? t->rcv_adv - t->rcv_nxt : 0;
    if (seglen == 0) {
        if (wnd == 0)
            return seq == t->rcv_nxt;
        return SEQ_LEQ(t->rcv_nxt, seq) && SEQ_LT(seq, t->rcv_nxt + wnd);
    }
    if (wnd == 0)
        return false;
    uint32_t last = seq + seglen - 1;
    return (SEQ_LEQ(t->rcv_nxt, seq) && SEQ_LT(seq, t->rcv_nxt + wnd)) ||
           (SEQ_LEQ(t->rcv_nxt, last) && SEQ_LT(last, t->rcv_nxt + wnd));
}

static void reset_received(struct netstack *ns, struct ns_tcb *t)
{
    ns->st.tcp_rst_rx++;
    switch (t->state) {
    case NS_TCP_SYN_RECEIVED:
        tcp_close_conn(ns, t, t->parent ? 0 : ECONNREFUSED);
        break;
    case NS_TCP_CLOSE_WAIT:
        tcp_close_conn(ns, t, EPIPE);   /* Linux tcp_reset: the peer had finished sending */
        break;
    case NS_TCP_ESTABLISHED:
    case NS_TCP_FIN_WAIT_1:
    case NS_TCP_FIN_WAIT_2:
        tcp_close_conn(ns, t, ECONNRESET);
        break;
    default:
        tcp_close_conn(ns, t, 0);
        break;
    }
}

/* Synchronized states (and SYN_RECEIVED). Consumes b. */
static void established_input(struct netstack *ns, struct ns_tcb *t, struct nsbuf *b, struct tcp_seg *s)
{
    bool freed = false;
    uint8_t fl = s->flags;
    uint32_t seglen = s->len + !!(fl & NS_TCP_SYN) + !!(fl & NS_TCP_FIN);

    /* PAWS (RFC 7323 5.3). */
    if (t->ts_ok && (s->o.has & TOPT_TS) && !(fl & NS_TCP_RST) && SEQ_LT(s->o.tsval, t->ts_recent) &&
        ns->now - t->ts_recent_age < PAWS_IDLE_NS) {
        ns->st.tcp_rx_paws++;
        tcp_send_ack(ns, t);
        goto drop;
    }
    if ((fl & NS_TCP_SYN) && !(fl & (NS_TCP_ACK | NS_TCP_RST)) && t->state == NS_TCP_SYN_RECEIVED &&
        s->seq == t->irs) {
        tcp_send_syn(ns, t);     /* the peer retransmitted its SYN: our SYN-ACK was lost */
        goto drop;
    }
    if ((fl & (NS_TCP_SYN | NS_TCP_ACK | NS_TCP_RST)) == (NS_TCP_SYN | NS_TCP_ACK) &&
        t->state == NS_TCP_SYN_RECEIVED && !t->parent && s->seq + 1 == t->rcv_nxt && s->ack == t->snd_nxt) {
        /* Simultaneous open: the peer's SYN-ACK acknowledges ours; take it as the ACK. */
        s->seq++;
        fl &= (uint8_t)~NS_TCP_SYN;
        s->flags = fl;
        seglen--;
        t->ack_now = true;       /* as Linux: the SYN-ACK is a retransmission to ACK */
    }
    if (!seq_acceptable(t, s->seq, seglen)) {
        ns->st.tcp_rx_out_of_window++;
        if (!(fl & NS_TCP_RST)) {
            if (t->state == NS_TCP_TIME_WAIT && (fl & NS_TCP_FIN))
                tcp_enter_time_wait(ns, t);   /* a retransmitted FIN: ACK it, restart 2 MSL */
            tcp_send_ack(ns, t);
        }
        goto drop;
    }
    t->last_rx = ns->now;
    if (fl & NS_TCP_RST) {
        /* RFC 5961 3.2: only an exact match resets; in window gets a challenge ACK. */
        if (s->seq == t->rcv_nxt)
            reset_received(ns, t);
        else
            tcp_send_challenge_ack(ns, t);
        goto drop;
    }
    if (fl & NS_TCP_SYN) {
        tcp_send_challenge_ack(ns, t);  /* RFC 5961 4.2 */
        goto drop;
    }
    if (!(fl & NS_TCP_ACK))
        goto drop;
    /* Timestamp to echo (RFC 7323 4.3). */
    if (t->ts_ok && (s->o.has & TOPT_TS) && SEQ_LEQ(s->seq, t->last_ack_sent) && SEQ_GEQ(s->o.tsval, t->ts_recent)) {
        t->ts_recent = s->o.tsval;
        t->ts_recent_age = ns->now;
    }
    if (t->state == NS_TCP_SYN_RECEIVED) {
        if (!(SEQ_LT(t->snd_una, s->ack) && SEQ_LEQ(s->ack, t->snd_max))) {
            struct ns_tcp_hdr th = { .sport = t->remote.port, .dport = t->local.port };
            struct ns_ipv4_hdr ip = { .src = t->remote.addr, .dst = t->local.addr };
            struct ns_rxinfo ri = { .ip = &ip };
            tcp_send_reset_for(ns, &ri, &th, s);
            goto drop;
        }
        if (t->parent) {
            if (!tcp_child_established(ns, t))
                goto drop;       /* accept queue full: as Linux, ignore the ACK, the SYN-ACK is retried */
        } else {
            tcp_set_state(ns, t, NS_TCP_ESTABLISHED);
            tcp_mark(ns, t);
        }
        connected(ns, t, s);
        t->rcv_adv = seq_max(t->rcv_adv, t->rcv_nxt);
        if (t->wr_shut)
            tcp_set_state(ns, t, NS_TCP_FIN_WAIT_1);
    }
    if (!ack_process(ns, t, s, &freed)) {
        if (freed)
            goto drop;
        goto out;
    }
    if (t->state == NS_TCP_TIME_WAIT && (s->len || (fl & NS_TCP_FIN)))
        t->ack_now = true;       /* Linux TCP_TW_ACK: anything but a bare ACK is answered */
    if (t->state == NS_TCP_TIME_WAIT || t->state == NS_TCP_CLOSED)
        goto drop_ack;

    /* Trim to the window: bytes we already have, bytes beyond what we offered. */
    uint32_t seq = s->seq;
    bool fin = fl & NS_TCP_FIN;
    if (fin && SEQ_LT(s->seq + s->len, t->rcv_nxt))
        fin = false;             /* a FIN we consumed already */
    if (SEQ_LT(seq, t->rcv_nxt)) {
        uint32_t dup = t->rcv_nxt - seq;
        if (dup >= s->len && s->len)
            t->ack_now = true;   /* a retransmission we have: re-ACK at once */
        uint32_t n = u32min(dup, s->len);
        nsbuf_pull(b, n);
        s->len -= n;
        seq += n;
    }
    uint32_t wnd_end = t->rcv_adv;
    if (s->len && SEQ_GT(seq + s->len, wnd_end)) {
        uint32_t keep = SEQ_GT(wnd_end, seq) ? wnd_end - seq : 0;
        nsbuf_trim(b, keep);
        s->len = keep;
        fin = false;
        t->ack_now = true;
    }
    if (s->len) {
        bool open = t->state == NS_TCP_ESTABLISHED || t->state == NS_TCP_FIN_WAIT_1 ||
                    t->state == NS_TCP_FIN_WAIT_2;
        if (!open) {
            /* Data after the peer's FIN: nothing to do with it. */
        } else if (!t->user && t->rd_shut) {
            /* Data for a closed socket nobody will read: reset (RFC 9293 3.10.4, Linux). */
            tcp_send_rst(ns, t);
            ns->st.tcp_aborts_on_data++;
            tcp_close_conn(ns, t, 0);
            goto drop;
        } else if (seq == t->rcv_nxt) {
            if (t->rxq_nbufs >= NS_TCP_RXQ_MAX_BUFS) {
                ns->st.tcp_rx_queue_full++;
                t->ack_now = true;
                goto drop_ack;
            }
            struct nsbuf *d = b;
            b = NULL;
            deliver(ns, t, d);
        } else {
            struct nsbuf *d = b;
            b = NULL;
            if (fin) {
                t->ooo_fin = true;
                t->ooo_fin_seq = seq + s->len;
                fin = false;
            }
            ooo_insert(ns, t, d, seq);
        }
    }
    if (fin) {
        if (seq + s->len == t->rcv_nxt && !t->fin_rcvd) {
            fin_input(ns, t);
        } else if (SEQ_GT(seq + s->len, t->rcv_nxt)) {
            t->ooo_fin = true;
            t->ooo_fin_seq = seq + s->len;
            t->ack_now = true;
        }
    }
drop_ack:
    if (b)
        ns_buf_put(ns, b);
    b = NULL;
out:
    if (t->used && t->state != NS_TCP_CLOSED) {
        tcp_output(ns, t);
        if (t->rcv_unacked && !t->ack_now && !ns_timer_armed(&t->t_dack))
            tcp_arm_dack(ns, t);
    }
drop:
    if (b)
        ns_buf_put(ns, b);
}

static void syn_sent_input(struct netstack *ns, struct ns_tcb *t, struct nsbuf *b, struct tcp_seg *s,
                           const struct ns_rxinfo *ri, const struct ns_tcp_hdr *th)
{
    uint8_t fl = s->flags;
    if (fl & NS_TCP_ACK) {
        if (SEQ_LEQ(s->ack, t->iss) || SEQ_GT(s->ack, t->snd_max)) {
            tcp_send_reset_for(ns, ri, th, s);
            goto drop;
        }
    }
    if (fl & NS_TCP_RST) {
        if (fl & NS_TCP_ACK) {
            ns->st.tcp_rst_rx++;
            tcp_close_conn(ns, t, ECONNREFUSED);
        }
        goto drop;
    }
    if (!(fl & NS_TCP_SYN))
        goto drop;
    t->irs = s->seq;
    t->rcv_nxt = s->seq + 1;
    t->last_rx = ns->now;
    apply_syn_options(ns, t, s);
    if (fl & NS_TCP_ACK) {
        tcp_set_state(ns, t, NS_TCP_ESTABLISHED);
        connected(ns, t, s);
        t->snd_wnd = s->wnd;     /* a SYN's window is never scaled */
        t->max_snd_wnd = t->snd_wnd;
        t->rcv_adv = t->rcv_nxt;
        t->ack_now = true;
        tcp_mark(ns, t);
        /* Data or FIN riding on the SYN-ACK take the usual path. */
        if (s->len || (fl & NS_TCP_FIN)) {
            s->seq++;
            s->flags &= (uint8_t)~NS_TCP_SYN;
            t->snd_wl1 = s->seq;
            established_input(ns, t, b, s);
            return;
        }
        tcp_output(ns, t);
        goto drop;
    }
    /* Simultaneous open (RFC 9293 3.5 figure 8). */
    tcp_set_state(ns, t, NS_TCP_SYN_RECEIVED);
    t->snd_wnd = s->wnd;
    t->snd_wl1 = s->seq;
    t->snd_wl2 = t->iss;
    t->rcv_adv = t->rcv_nxt;
    t->rtt_timing = false;
    tcp_send_syn(ns, t);
    tcp_arm_rtx(ns, t);
drop:
    ns_buf_put(ns, b);
}

void ns_tcp_input(struct netstack *ns, struct nsbuf *b, const struct ns_rxinfo *ri)
{
    ns->st.tcp_rx++;
    if (ri->ip_bcast || ri->l2_mcast) {
        ns->st.tcp_rx_bcast++;   /* TCP is unicast only (RFC 1122 4.2.3.10) */
        goto drop;
    }
    if (b->len < NS_TCP_HLEN) {
        ns->st.tcp_rx_bad_hlen++;
        goto drop;
    }
    const struct ns_tcp_hdr *th = (const struct ns_tcp_hdr *)b->data;
    uint32_t hlen = ns_tcp_hlen(th);
    if (hlen < NS_TCP_HLEN || hlen > b->len) {
        ns->st.tcp_rx_bad_hlen++;
        goto drop;
    }
    if ((b->flags & NSBUF_RX_L4_CKSUM_BAD) ||
        (!(b->flags & NSBUF_RX_L4_CKSUM_GOOD) &&
         ns_cksum_finish(ns_cksum_add(ns_cksum_pseudo(ri->ip->src, ri->ip->dst, NS_IPPROTO_TCP, (uint16_t)b->len),
                                      b->data, b->len)) != 0)) {
        ns->st.tcp_rx_bad_cksum++;
        goto drop;
    }
    if (th->sport == 0 || th->dport == 0) {
        ns->st.tcp_rx_bad_port++;
        goto drop;
    }
    struct tcp_seg s;
    s.seq = ns_ntoh32(th->seq);
    s.ack = ns_ntoh32(th->ack);
    s.flags = th->flags;
    s.wnd = ns_ntoh16(th->window);
    if (hlen > NS_TCP_HLEN)
        parse_opts(b->data + NS_TCP_HLEN, hlen - NS_TCP_HLEN, &s.o, s.flags & NS_TCP_SYN);
    else
        s.o.has = 0, s.o.nsack = 0;
    /* Keep a copy of the header: the buffer may be queued and pulled. */
    struct ns_tcp_hdr hdr = *th;
    nsbuf_pull(b, hlen);
    s.len = b->len;

    struct ns_tcb *t = tcp_lookup(ns, ri->ip->src, hdr.sport, hdr.dport);
    if (t && t->state == NS_TCP_TIME_WAIT && (s.flags & (NS_TCP_SYN | NS_TCP_ACK | NS_TCP_RST)) == NS_TCP_SYN &&
        (SEQ_GT(s.seq, t->rcv_nxt) || (t->ts_ok && (s.o.has & TOPT_TS) && SEQ_GT(s.o.tsval, t->ts_recent))) &&
        tcp_find_listener(ns, hdr.dport)) {
        /* RFC 1122 4.2.2.13 / RFC 6191: a new incarnation may take over TIME_WAIT. */
        tcp_close_conn(ns, t, 0);
        if (t->used)
            t->state = NS_TCP_CLOSED;
        t = NULL;
    }
    if (!t) {
        struct ns_tcb *lis = tcp_find_listener(ns, hdr.dport);
        if (lis) {
            listen_input(ns, lis, ri, &hdr, &s);
        } else {
            ns->st.tcp_rx_no_socket++;
            tcp_send_reset_for(ns, ri, &hdr, &s);
        }
        goto drop;
    }
    if (t->state == NS_TCP_SYN_SENT) {
        syn_sent_input(ns, t, b, &s, ri, &hdr);
        return;
    }
    established_input(ns, t, b, &s);
    return;
drop:
    ns_buf_put(ns, b);
}

/* Linux's icmp_err_convert for destination unreachable; fragmentation needed
 * (PMTU) is not acted on: we send with DF at the MTU we were given. */
static int tcp_unreach_errno(uint8_t code)
{
    switch (code) {
    case 0: case 6: case 9: case 11:
        return ENETUNREACH;
    case 1: case 7: case 8: case 10: case 12: case 13: case 14: case 15:
        return EHOSTUNREACH;
    case NS_ICMP_UNREACH_PROTO:
        return ENOPROTOOPT;
    case NS_ICMP_UNREACH_PORT:
        return ECONNREFUSED;
    default:
        return 0;
    }
}

void ns_tcp_icmp_error(struct netstack *ns, const struct ns_ipv4_hdr *inner, const uint8_t *l4, uint8_t code)
{
    be16_t sport, dport;
    be32_t seq;
    memcpy(&sport, l4, 2);
    memcpy(&dport, l4 + 2, 2);
    memcpy(&seq, l4 + 4, 4);
    struct ns_tcb *t = tcp_lookup(ns, inner->dst, dport, sport);
    int err = tcp_unreach_errno(code);
    if (!t || err == 0) {
        ns->st.icmp_rx_err_unmatched++;
        return;
    }
    /* RFC 5927 4.1: the quoted sequence number must be one we have in flight. */
    uint32_t s = ns_ntoh32(seq);
    if (SEQ_LT(s, t->snd_una) || SEQ_GT(s, t->snd_max)) {
        ns->st.tcp_icmp_out_of_window++;
        return;
    }
    ns->st.tcp_icmp_errors++;
    if (t->state == NS_TCP_SYN_SENT) {
        tcp_close_conn(ns, t, err);   /* hard error while connecting (RFC 1122 4.2.3.9, Linux) */
        return;
    }
    if (t->state == NS_TCP_SYN_RECEIVED && t->parent) {
        tcp_close_conn(ns, t, 0);
        return;
    }
    t->soft_err = err;
}
