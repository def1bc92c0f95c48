/*
 * Congestion control for one TCP connection: NewReno (RFC 5681 + RFC 6582) and
 * CUBIC (RFC 9438), chosen per socket. Call chain: tcp_input.c (ACK processing,
 * loss detection) and tcp_timer.c (RTO) -> ns_cc_* here; the sender reads
 * cc->cwnd/ssthresh. The recovery bookkeeping (recover point, partial ACKs,
 * window inflation during fast recovery) stays in the sender; this module
 * only decides how cwnd and ssthresh move. All sizes in bytes, times in ns.
 */
#ifndef NS_TCP_CC_H
#define NS_TCP_CC_H

#include <stdint.h>

#include "netstack.h"

struct ns_cc {
    enum ns_cc_algo algo;
    uint32_t mss;                /* sender MSS the counts are based on */
    uint32_t cwnd;
    uint32_t ssthresh;
    uint32_t bytes_acked;        /* congestion avoidance accumulator (RFC 5681 3.1 byte counting) */
    /* CUBIC (RFC 9438 4); unused by NewReno */
    uint64_t epoch_start;        /* ns; 0: no congestion-avoidance epoch yet */
    uint32_t w_max;              /* bytes, window before the last reduction */
    uint32_t w_last_max;         /* for fast convergence (4.7) */
    uint32_t cwnd_prior;
    uint32_t w_est;              /* Reno-friendly estimate (4.3), bytes */
    uint64_t est_acked;          /* bytes acked * alpha*17 not yet turned into W_est growth */
    int64_t k_ns;                /* time to reach w_max from the epoch */
    uint32_t min_rtt_us;
};

/* Initial window per RFC 6928 (min(10*mss, max(2*mss, 14600))), ssthresh "infinite". */
void ns_cc_init(struct ns_cc *cc, enum ns_cc_algo algo, uint32_t mss, uint64_t now_ns);
/* New data acknowledged outside loss recovery: slow start or congestion avoidance.
 * `acked` bytes newly acknowledged, `flight` bytes in flight before this ACK,
 * srtt_us the smoothed RTT (0 if none yet). cwnd only grows when the sender was
 * using it (flight + acked >= cwnd), RFC 7661's spirit. */
void ns_cc_on_ack(struct ns_cc *cc, uint32_t acked, uint32_t flight, uint32_t srtt_us, uint64_t now_ns);
/* Loss detected by duplicate ACKs / SACK: sets ssthresh (NewReno: max(flight/2, 2*mss);
 * CUBIC: beta 0.7 and fast convergence) and cwnd = ssthresh. The sender then
 * inflates for fast recovery itself. Called once per recovery episode. */
void ns_cc_on_congestion(struct ns_cc *cc, uint32_t flight, uint64_t now_ns);
/* Retransmission timeout: ssthresh as on_congestion, cwnd = 1 MSS (RFC 5681 3.1),
 * CUBIC epoch reset. Called for the first RTO of a episode only (not each backoff). */
void ns_cc_on_rto(struct ns_cc *cc, uint32_t flight, uint64_t now_ns);
/* Fast recovery ended by a full ACK: cwnd = min(ssthresh, flight + mss) (RFC 6582 3.2 step 3). */
void ns_cc_on_recovery_exit(struct ns_cc *cc, uint32_t flight, uint64_t now_ns);
/* MSS changed (path MTU, options): rescale what is counted in segments. */
void ns_cc_set_mss(struct ns_cc *cc, uint32_t mss);

#endif /* NS_TCP_CC_H */
