/*
 * TCP timers on the stack's wheel: retransmission (RFC 6298 RTO with backoff,
 * SYN and SYN-ACK retries, user timeout -> ETIMEDOUT), persist (zero-window
 * probes), delayed ACK, keepalive (RFC 1122 4.2.3.6), FIN_WAIT_2 timeout and
 * TIME_WAIT (2 MSL); and the RTT estimator. Chain: ns_poll -> ns_tw_run ->
 * rtx_fire / dack_fire / keep_fire -> tcp_output / tcp_xmit (tcp_output.c).
 */
#include <errno.h>
#include <stddef.h>

#include "tcp_internal.h"

#define TCB_OF(ptr, member) ((struct ns_tcb *)((char *)(ptr)-offsetof(struct ns_tcb, member)))

/* RFC 6298 2.2/2.3 in microseconds; RTO = SRTT + max(G, 4 RTTVAR), clamped. */
void tcp_rtt_sample(struct ns_tcb *t, uint32_t r)
{
    if (r == 0)
        r = 1;
    if (t->srtt_us == 0) {
        t->srtt_us = r;
        t->rttvar_us = r / 2;
    } else {
        uint32_t d = t->srtt_us > r ? t->srtt_us - r : r - t->srtt_us;
        t->rttvar_us = (3 * t->rttvar_us + d) / 4;
        t->srtt_us = (7 * t->srtt_us + r) / 8;
        if (t->srtt_us == 0)
            t->srtt_us = 1;
    }
    uint64_t var = 4ull * t->rttvar_us;
    if (var < NS_TIMER_GRANULARITY_MS * 1000ull)
        var = NS_TIMER_GRANULARITY_MS * 1000ull;
    uint64_t rto = (t->srtt_us + var + 999) / 1000;
    if (rto < NS_TCP_RTO_MIN_MS)
        rto = NS_TCP_RTO_MIN_MS;
    if (rto > NS_TCP_RTO_MAX_MS)
        rto = NS_TCP_RTO_MAX_MS;
    t->rto_ms = (uint32_t)rto;
}

void tcp_arm_rtx(struct netstack *ns, struct ns_tcb *t)
{
    t->persist = false;
    uint64_t d = (uint64_t)t->rto_ms * NS_MS;
    /* Never sleep past the user timeout: it is checked when the timer fires. */
    if (t->user_timeout_ms && t->snd_max != t->snd_una) {
        uint64_t deadline = t->rtx_stamp + (uint64_t)t->user_timeout_ms * NS_MS;
        if (deadline > ns->now && deadline - ns->now < d)
            d = deadline - ns->now;
    }
    ns_tw_arm(&ns->tw, &t->t_rtx, ns->now + d);
}

void tcp_arm_persist(struct netstack *ns, struct ns_tcb *t)
{
    uint64_t d = u32max(t->rto_ms, NS_TCP_PERSIST_MIN_MS);
    for (uint32_t i = 0; i < t->backoff && d < NS_TCP_RTO_MAX_MS; i++)
        d *= 2;
    if (d > NS_TCP_RTO_MAX_MS)
        d = NS_TCP_RTO_MAX_MS;
    t->persist = true;
    ns_tw_arm(&ns->tw, &t->t_rtx, ns->now + d * NS_MS);
}

void tcp_arm_dack(struct netstack *ns, struct ns_tcb *t)
{
    ns_tw_arm(&ns->tw, &t->t_dack, ns->now + (uint64_t)NS_TCP_DELACK_MS * NS_MS);
}

void tcp_arm_keepalive(struct netstack *ns, struct ns_tcb *t)
{
    switch (t->state) {
    case NS_TCP_TIME_WAIT:
        return;                  /* t_keep is the 2 MSL timer */
    case NS_TCP_FIN_WAIT_2:
        if (!t->user) {
            ns_tw_arm(&ns->tw, &t->t_keep, ns->now + (uint64_t)NS_TCP_FIN_TIMEOUT_MS * NS_MS);
            return;
        }
        /* fall through */
    case NS_TCP_ESTABLISHED:
    case NS_TCP_CLOSE_WAIT:
    case NS_TCP_FIN_WAIT_1:
        if (t->keepalive) {
            ns_tw_arm(&ns->tw, &t->t_keep, t->last_rx + (uint64_t)t->keepidle_s * 1000 * NS_MS);
            return;
        }
        break;
    default:
        break;
    }
    ns_tw_cancel(&ns->tw, &t->t_keep);
}

static void timed_out(struct netstack *ns, struct ns_tcb *t)
{
    ns->st.tcp_timeouts++;
    /* Linux: an ICMP error seen meanwhile explains the timeout better. */
    tcp_close_conn(ns, t, t->soft_err ? t->soft_err : ETIMEDOUT);
}

static void rtx_fire(struct netstack *ns, struct ns_timer *tm)
{
    struct ns_tcb *t = TCB_OF(tm, t_rtx);
    if (t->persist) {
        /* Zero-window probe: an old sequence number makes the peer answer with
         * its current window (as Linux; the byte-carrying probe of RFC 9293 works too). */
        ns->st.tcp_zero_window_probes++;
        tcp_xmit(ns, t, t->snd_una - 1, 0, NS_TCP_ACK);
        if (t->backoff < 31)
            t->backoff++;
        tcp_arm_persist(ns, t);
        return;
    }
    if (t->state == NS_TCP_SYN_SENT || t->state == NS_TCP_SYN_RECEIVED) {
        uint32_t max = t->state == NS_TCP_SYN_SENT ? NS_TCP_SYN_RETRIES : NS_TCP_SYNACK_RETRIES;
        bool ut = t->user_timeout_ms && ns->now - t->rtx_stamp >= (uint64_t)t->user_timeout_ms * NS_MS &&
                  t->state == NS_TCP_SYN_SENT;
        if (t->syn_tries >= max || ut) {
            timed_out(ns, t);
            return;
        }
        t->syn_tries++;
        t->n_retransmits++;
        ns->st.tcp_retransmits++;
        t->rtt_timing = false;
        t->rto_ms = u32min(t->rto_ms * 2, NS_TCP_RTO_MAX_MS);
        tcp_send_syn(ns, t);
        tcp_arm_rtx(ns, t);
        return;
    }
    if (t->snd_una == t->snd_max) {
        tcp_output(ns, t);       /* nothing outstanding: maybe a window to probe */
        return;
    }
    if (t->backoff >= NS_TCP_RETRIES ||
        (t->user_timeout_ms && ns->now - t->rtx_stamp >= (uint64_t)t->user_timeout_ms * NS_MS)) {
        timed_out(ns, t);
        return;
    }
    t->n_rto++;
    ns->st.tcp_rto_events++;
    if (t->backoff == 0)
        ns_cc_on_rto(&t->cc, t->snd_max - t->snd_una, ns->now);
    else
        t->cc.cwnd = t->snd_mss;
    t->backoff++;
    t->rto_ms = u32min(t->rto_ms * 2, NS_TCP_RTO_MAX_MS);
    /* RFC 6582 4.1 / RFC 6675 5.1: leave recovery, forget SACKs (the receiver
     * may have reneged), and go back to snd_una. */
    t->in_recovery = false;
    t->dupacks = 0;
    t->recover = t->snd_max - 1;
    t->nsb = 0;
    t->high_rxt = t->snd_una;
    t->snd_nxt = t->snd_una;
    t->rtt_timing = false;
    tcp_output(ns, t);
    if (!ns_timer_armed(&t->t_rtx))
        tcp_arm_rtx(ns, t);
}

static void dack_fire(struct netstack *ns, struct ns_timer *tm)
{
    struct ns_tcb *t = TCB_OF(tm, t_dack);
    if (t->state == NS_TCP_CLOSED || t->state == NS_TCP_LISTEN || t->state == NS_TCP_SYN_SENT)
        return;
    ns->st.tcp_delayed_acks++;
    tcp_send_ack(ns, t);
}

static void keep_fire(struct netstack *ns, struct ns_timer *tm)
{
    struct ns_tcb *t = TCB_OF(tm, t_keep);
    switch (t->state) {
    case NS_TCP_TIME_WAIT:
        tcp_close_conn(ns, t, 0);
        return;
    case NS_TCP_FIN_WAIT_2:
        if (!t->user) {
            /* Silent, as Linux's FIN_WAIT2 timewait expiry; a later segment meets no socket and gets a reset. */
            tcp_close_conn(ns, t, 0);
            return;
        }
        break;
    default:
        break;
    }
    if (!t->keepalive)
        return;
    uint64_t idle = (uint64_t)t->keepidle_s * 1000 * NS_MS;
    if (t->snd_max != t->snd_una || t->sbuf_len) {
        /* Data in flight: the retransmission timer watches the peer. */
        ns_tw_arm(&ns->tw, &t->t_keep, ns->now + idle);
        return;
    }
    if (ns->now - t->last_rx < idle && t->keep_probes == 0) {
        ns_tw_arm(&ns->tw, &t->t_keep, t->last_rx + idle);
        return;
    }
    if (t->keep_probes > 0 && t->last_rx >= t->keep_sent) {
        /* The peer answered the last probe. */
        t->keep_probes = 0;
        ns_tw_arm(&ns->tw, &t->t_keep, t->last_rx + idle);
        return;
    }
    if (t->keep_probes >= t->keepcnt) {
        tcp_send_rst(ns, t);     /* Linux tcp_keepalive_timer resets the peer as it gives up */
        timed_out(ns, t);
        return;
    }
    t->keep_probes++;
    t->keep_sent = ns->now;
    ns->st.tcp_keepalive_probes++;
    tcp_xmit(ns, t, t->snd_una - 1, 0, NS_TCP_ACK);
    ns_tw_arm(&ns->tw, &t->t_keep, ns->now + (uint64_t)t->keepintvl_s * 1000 * NS_MS);
}

void tcp_timers_init(struct ns_tcb *t)
{
    t->t_rtx.fn = rtx_fire;
    t->t_dack.fn = dack_fire;
    t->t_keep.fn = keep_fire;
}

void tcp_timers_stop(struct netstack *ns, struct ns_tcb *t)
{
    ns_tw_cancel(&ns->tw, &t->t_rtx);
    ns_tw_cancel(&ns->tw, &t->t_dack);
    ns_tw_cancel(&ns->tw, &t->t_keep);
    t->persist = false;
}
