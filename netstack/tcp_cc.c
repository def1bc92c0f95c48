/*
 * How cwnd and ssthresh move for one TCP connection: NewReno (RFC 5681 slow
 * start and byte-counting congestion avoidance, RFC 6582 window at recovery
 * exit) and CUBIC (RFC 9438). Call chain: tcp input (ACK processing, loss
 * detection) and the RTO timer -> ns_cc_* here; the sender reads cc->cwnd.
 * CUBIC's per-ACK work is a handful of double multiplications; the only
 * iterative step (the cube root for K) runs once per congestion epoch.
 */
#include "tcp_cc.h"

#include <stdint.h>

/* Largest cwnd we let the arithmetic reach; far beyond any receive window. */
#define CC_CWND_MAX (1u << 30)

/* RFC 9438 4.5/4.6: beta_cubic = 0.7, C = 0.4 segments/s^3; alpha_cubic (4.3)
 * = 3 * (1 - beta) / (1 + beta) = 9/17 while W_est < cwnd_prior, then 1. */
#define CUBIC_BETA 0.7
#define CUBIC_C 0.4
#define CUBIC_ALPHA_NUM 9u
#define CUBIC_ALPHA_DEN 17u

static uint32_t clamp_cwnd(uint64_t v)
{
    return v > CC_CWND_MAX ? CC_CWND_MAX : (uint32_t)v;
}

static uint32_t max_u32(uint32_t a, uint32_t b) { return a > b ? a : b; }
static uint32_t min_u32(uint32_t a, uint32_t b) { return a < b ? a : b; }

/* Cube root of x >= 0 by Newton's method; converges in a few dozen steps for
 * any window we can see, and spares netstack a libm dependency. */
static double cube_root(double x)
{
    if (x <= 0.0)
        return 0.0;
    double y = x > 1.0 ? x : 1.0;
    for (int i = 0; i < 200; i++) {
        double next = (2.0 * y + x / (y * y)) / 3.0;
        double d = y - next;
        y = next;
        if (d < 1e-12 * y && d > -1e-12 * y)
            break;
    }
    return y;
}

void ns_cc_init(struct ns_cc *cc, enum ns_cc_algo algo, uint32_t mss, uint64_t now_ns)
{
    (void)now_ns;
    if (mss == 0)
        mss = 536;               /* RFC 9293 default; a caller bug must not divide by zero */
    *cc = (struct ns_cc){0};
    cc->algo = algo;
    cc->mss = mss;
    /* RFC 6928: IW = min(10*MSS, max(2*MSS, 14600)) */
    cc->cwnd = min_u32(10 * mss, max_u32(2 * mss, 14600));
    cc->ssthresh = UINT32_MAX;
}

/* RFC 5681 3.1: at most one SMSS per ACK, so delayed ACKs do not make bursts. */
static void slow_start(struct ns_cc *cc, uint32_t acked)
{
    cc->cwnd = clamp_cwnd((uint64_t)cc->cwnd + min_u32(acked, cc->mss));
}

/* RFC 5681 3.1 byte counting: one SMSS per cwnd of acknowledged bytes. */
static void reno_avoid(struct ns_cc *cc, uint32_t acked)
{
    cc->bytes_acked += acked;
    if (cc->bytes_acked >= cc->cwnd) {
        cc->bytes_acked -= cc->cwnd;
        cc->cwnd = clamp_cwnd((uint64_t)cc->cwnd + cc->mss);
        if (cc->bytes_acked >= cc->cwnd)  /* a huge stretch ACK: do not carry more than one window */
            cc->bytes_acked = 0;
    }
}

/* W_cubic(t) = C*(t-K)^3 + W_max (RFC 9438 eq. 1), in bytes for t in ns. */
static double w_cubic(const struct ns_cc *cc, int64_t t_ns)
{
    double d = (double)(t_ns - cc->k_ns) * 1e-9;
    return CUBIC_C * d * d * d * (double)cc->mss + (double)cc->w_max;
}

static void cubic_epoch_start(struct ns_cc *cc, uint64_t now_ns)
{
    cc->epoch_start = now_ns ? now_ns : 1;  /* 0 means "no epoch" */
    cc->bytes_acked = 0;
    cc->est_acked = 0;
    /* 4.3: W_est starts at cwnd_epoch. 4.2/4.8: when cwnd is already at or above
     * W_max (after an RTO, or CA entered without a loss) the plateau is here: K = 0. */
    cc->w_est = cc->cwnd;
    if (cc->cwnd >= cc->w_max) {
        cc->w_max = cc->cwnd;
        cc->k_ns = 0;
    } else {
        double segs = (double)(cc->w_max - cc->cwnd) / (double)cc->mss;
        cc->k_ns = (int64_t)(cube_root(segs / CUBIC_C) * 1e9);
    }
}

static void cubic_avoid(struct ns_cc *cc, uint32_t acked, uint32_t srtt_us, uint64_t now_ns)
{
    if (cc->epoch_start == 0)
        cubic_epoch_start(cc, now_ns);
    int64_t t = (int64_t)(now_ns - cc->epoch_start);

    /* Reno-friendly estimate (4.3): W_est += alpha * segments_acked / cwnd per
     * ACK, i.e. alpha*MSS per cwnd of acknowledged bytes, counted exactly. */
    uint64_t alpha_num = cc->w_est >= cc->cwnd_prior ? CUBIC_ALPHA_DEN : CUBIC_ALPHA_NUM;
    uint64_t est = (uint64_t)cc->est_acked + (uint64_t)acked * alpha_num;
    uint64_t unit = (uint64_t)cc->cwnd * CUBIC_ALPHA_DEN;  /* scaled by 17 to keep alpha exact */
    uint64_t steps = est / unit;
    cc->est_acked = est - steps * unit;
    cc->w_est = clamp_cwnd((uint64_t)cc->w_est + steps * cc->mss);

    double wc = w_cubic(cc, t);
    if (wc < (double)cc->w_est) {
        /* Reno-friendly region (4.3): follow what Reno would have. */
        if (cc->w_est > cc->cwnd)
            cc->cwnd = cc->w_est;
        return;
    }

    /* Concave/convex regions (4.4, 4.5): aim at W_cubic one RTT ahead, never
     * below cwnd nor above 1.5 cwnd, and move (target - cwnd)/cwnd per segment. */
    double target = w_cubic(cc, t + (int64_t)srtt_us * 1000);
    double hi = 1.5 * (double)cc->cwnd;
    if (target > hi)
        target = hi;
    if (target <= (double)cc->cwnd)
        return;
    uint64_t gap = (uint64_t)(target - (double)cc->cwnd);
    uint64_t num = gap * acked + cc->bytes_acked;  /* remainder carried so small steps add up */
    uint64_t inc = num / cc->cwnd;
    cc->bytes_acked = (uint32_t)(num - inc * cc->cwnd);
    cc->cwnd = clamp_cwnd((uint64_t)cc->cwnd + inc);
}

void ns_cc_on_ack(struct ns_cc *cc, uint32_t acked, uint32_t flight, uint32_t srtt_us, uint64_t now_ns)
{
    if (acked == 0)
        return;
    if ((uint64_t)flight + acked < cc->cwnd)
        return;                  /* application- or receiver-limited: cwnd was not tested (RFC 7661) */
    if (cc->cwnd < cc->ssthresh) {
        slow_start(cc, acked);
        return;
    }
    if (cc->algo == NS_CC_CUBIC)
        cubic_avoid(cc, acked, srtt_us, now_ns);
    else
        reno_avoid(cc, acked);
}

/* ssthresh after a loss, per algorithm; CUBIC also records W_max (4.6, 4.7). */
static uint32_t loss_ssthresh(struct ns_cc *cc, uint32_t flight)
{
    uint32_t floor = 2 * cc->mss;
    if (cc->algo != NS_CC_CUBIC)
        return max_u32(flight / 2, floor);  /* RFC 5681 eq. 4 */

    /* Fast convergence (4.7): a flow whose W_max is shrinking gives way. */
    cc->w_last_max = cc->w_max;
    if (cc->cwnd < cc->w_max)
        cc->w_max = (uint32_t)((double)cc->cwnd * (1.0 + CUBIC_BETA) / 2.0);
    else
        cc->w_max = cc->cwnd;
    cc->cwnd_prior = cc->cwnd;
    cc->epoch_start = 0;
    return max_u32((uint32_t)((double)flight * CUBIC_BETA), floor);
}

void ns_cc_on_congestion(struct ns_cc *cc, uint32_t flight, uint64_t now_ns)
{
    (void)now_ns;
    cc->ssthresh = loss_ssthresh(cc, flight);
    cc->cwnd = cc->ssthresh;
    cc->bytes_acked = 0;
}

void ns_cc_on_rto(struct ns_cc *cc, uint32_t flight, uint64_t now_ns)
{
    (void)now_ns;
    cc->ssthresh = loss_ssthresh(cc, flight);
    cc->cwnd = cc->mss;          /* loss window, RFC 5681 3.1 */
    cc->bytes_acked = 0;
    /* RFC 9438 4.8: the first CA stage after a timeout uses K = 0 and W_max =
     * cwnd at its start; w_max 0 makes cubic_epoch_start do exactly that. */
    if (cc->algo == NS_CC_CUBIC)
        cc->w_max = 0;
}

void ns_cc_on_recovery_exit(struct ns_cc *cc, uint32_t flight, uint64_t now_ns)
{
    (void)now_ns;
    cc->cwnd = min_u32(cc->ssthresh, clamp_cwnd((uint64_t)flight + cc->mss));
    cc->bytes_acked = 0;
}

static uint32_t rescale(uint32_t v, uint32_t from, uint32_t to)
{
    if (v == UINT32_MAX)
        return v;
    return clamp_cwnd((uint64_t)v * to / from);
}

void ns_cc_set_mss(struct ns_cc *cc, uint32_t mss)
{
    if (mss == 0 || mss == cc->mss)
        return;
    uint32_t old = cc->mss;
    cc->cwnd = max_u32(rescale(cc->cwnd, old, mss), mss);
    if (cc->ssthresh != UINT32_MAX)
        cc->ssthresh = max_u32(rescale(cc->ssthresh, old, mss), 2 * mss);
    cc->w_max = rescale(cc->w_max, old, mss);
    cc->w_last_max = rescale(cc->w_last_max, old, mss);
    cc->cwnd_prior = rescale(cc->cwnd_prior, old, mss);
    cc->w_est = rescale(cc->w_est, old, mss);
    cc->bytes_acked = 0;
    cc->est_acked = 0;
    cc->mss = mss;
}
