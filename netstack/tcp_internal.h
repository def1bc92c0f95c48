/*
 * TCP's private state and the functions its four files call on each other.
 * Input: ns_ipv4_input -> ns_tcp_input (tcp_input.c) -> demux (tcp_state.c)
 *   -> per-state processing -> receive queue / ACK processing -> tcp_output.
 * Output: ns_tcp_send / input / timers -> tcp_output (tcp_output.c) ->
 *   tcp_xmit -> ns_ipv4_output. Timers: ns_poll -> ns_tw_run -> tcp_timer.c.
 * API: ns_tcp_* (tcp_state.c). Congestion control: tcp_cc.h.
 */
#ifndef NS_TCP_INTERNAL_H
#define NS_TCP_INTERNAL_H

#include "internal.h"
#include "prot/tcp.h"
#include "tcp_cc.h"
#include "timer_wheel.h"

#define SEQ_LT(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) < 0)
#define SEQ_LEQ(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) <= 0)
#define SEQ_GT(a, b) SEQ_LT(b, a)
#define SEQ_GEQ(a, b) SEQ_LEQ(b, a)
static inline uint32_t seq_max(uint32_t a, uint32_t b) { return SEQ_GT(a, b) ? a : b; }
static inline uint32_t seq_min(uint32_t a, uint32_t b) { return SEQ_LT(a, b) ? a : b; }
static inline uint32_t u32min(uint32_t a, uint32_t b) { return a < b ? a : b; }
static inline uint32_t u32max(uint32_t a, uint32_t b) { return a > b ? a : b; }

/* Option bits seen in a segment. */
#define TOPT_MSS 0x01u
#define TOPT_WS 0x02u
#define TOPT_SACKPERM 0x04u
#define TOPT_TS 0x08u
#define TOPT_SACK 0x10u

struct tcp_opts {
    uint8_t has;
    uint8_t ws;
    uint16_t mss;
    uint32_t tsval, tsecr;
    uint8_t nsack;
    uint32_t sack[4][2];         /* host order [start, end) */
};

/* A received segment in host order. */
struct tcp_seg {
    uint32_t seq, ack;
    uint32_t len;                /* payload bytes (b->data/len after the header is pulled) */
    uint32_t wnd;                /* window field, unscaled */
    uint8_t flags;
    struct tcp_opts o;
};

struct sack_block {
    uint32_t start, end;
};

struct ns_tcb {
    /* ---- identity, demux */
    bool used;                   /* slot taken */
    bool user;                   /* the application holds sd (false: embryonic child or orphan) */
    bool bound;
    bool hashed;                 /* in the 4-tuple hash */
    uint8_t state;               /* enum ns_tcp_state */
    int sd;
    struct ns_sockaddr local, remote;
    struct ns_tcb *hnext;        /* hash chain */
    uint32_t hash;
    /* ---- listener / child */
    struct ns_tcb *parent;       /* listener of a child not yet accepted */
    struct ns_tcb *acc_next;     /* accept queue link (children of one listener) */
    struct ns_tcb *acc_head, *acc_tail;
    uint32_t acc_count, syn_count, backlog;
    struct ns_tcb *lnext;        /* listener list */
    /* ---- options the user set */
    bool reuseaddr, keepalive, nodelay, linger0;
    enum ns_cc_algo cc_algo;
    uint32_t sndbuf, rcvbuf;
    uint32_t mss_clamp;          /* 0: none */
    uint32_t keepidle_s, keepintvl_s, keepcnt;
    uint32_t user_timeout_ms;
    /* ---- flags */
    bool connected_once;         /* left SYN_SENT/SYN_RECEIVED for ESTABLISHED at some point */
    bool ev_dirty;
    bool rd_shut;                /* shutdown(SHUT_RD) */
    bool wr_shut;                /* shutdown(SHUT_WR)/close: FIN queued after the data */
    bool fin_sent;
    bool fin_rcvd;               /* peer's FIN consumed in sequence */
    bool eof_reported;
    bool err_reported;           /* a fatal error was returned once; later reads give 0 */
    bool ws_ok, ts_ok, sack_ok;
    bool in_recovery;
    bool rtt_timing;
    bool ack_now;                /* send an ACK at the end of input processing */
    bool persist;                /* rtx timer is the persist timer */
    int so_error;                /* pending error (positive errno) for SO_ERROR / the next call */
    int fatal;                   /* connection-ending error kept for reads after the report */
    int soft_err;                /* last ICMP error on a synchronized connection: reported if it times out */
    /* ---- send sequence space */
    uint32_t iss;
    uint32_t snd_una, snd_nxt, snd_max;
    uint32_t snd_wnd, max_snd_wnd;
    uint32_t snd_wl1, snd_wl2;
    uint8_t snd_wscale, rcv_wscale;
    uint32_t snd_mss;            /* payload bytes per segment we send (options excluded) */
    uint32_t peer_mss;           /* MSS the peer announced */
    uint32_t fin_seq;            /* valid when fin_sent */
    /* send ring: bytes [snd_buf_seq, snd_buf_seq + sbuf_len) */
    uint8_t *sbuf;
    uint32_t sbuf_cap;           /* power of two; 0: not allocated */
    uint32_t sbuf_head;          /* ring index of snd_buf_seq */
    uint32_t sbuf_len;
    uint32_t snd_buf_seq;
    /* ---- receive sequence space */
    uint32_t irs, rcv_nxt;
    uint32_t rcv_adv;            /* right edge of the window we last advertised */
    uint32_t last_ack_sent;
    uint32_t rcv_mss;            /* largest segment seen: paces delayed ACKs */
    uint32_t rcv_unacked;        /* bytes received since our last ACK */
    struct nsbuf *rxq_head, *rxq_tail;
    uint32_t rxq_bytes, rxq_nbufs;
    struct nsbuf *ooo_head;      /* sorted by seq, non-overlapping; nsbuf.seq = first byte */
    uint32_t ooo_count;
    bool ooo_fin;                /* a FIN beyond a gap, at ooo_fin_seq */
    uint32_t ooo_fin_seq;
    struct sack_block rsack[4];  /* blocks to report, most recent first */
    uint8_t nrsack;
    /* ---- timestamps */
    uint32_t ts_offset;
    uint32_t ts_recent;
    uint64_t ts_recent_age;      /* ns */
    /* ---- RTT / RTO (RFC 6298) */
    uint32_t srtt_us, rttvar_us; /* srtt 0: no sample yet */
    uint32_t rto_ms;
    uint32_t backoff;            /* consecutive RTO expirations */
    uint32_t rtt_seq;
    uint64_t rtt_start;
    uint64_t rtx_stamp;          /* when the oldest unacknowledged data was first sent */
    /* ---- loss recovery */
    uint32_t dupacks;
    uint32_t recover;            /* RFC 6582 recover point */
    uint32_t high_rxt;           /* SACK recovery: retransmitted up to here */
    struct sack_block sb[NS_TCP_SACK_BLOCKS]; /* sorted scoreboard above snd_una */
    uint8_t nsb;
    struct ns_cc cc;
    /* ---- timers */
    struct ns_timer t_rtx;       /* retransmission, SYN retries, persist */
    struct ns_timer t_dack;      /* delayed ACK */
    struct ns_timer t_keep;      /* keepalive, FIN_WAIT_2 timeout, TIME_WAIT */
    uint64_t last_rx;            /* ns, any segment from the peer (keepalive idle) */
    uint32_t keep_probes;
    uint64_t keep_sent;          /* ns, last keepalive probe */
    uint32_t syn_tries;
    /* ---- counters (ns_tcp_info) */
    uint64_t n_retransmits, n_rto, n_fast_rtx;
};

struct ns_tcp {
    struct ns_tcb tcb[NS_TCP_MAX_SOCKETS];
    struct ns_tcb *hash[NS_TCP_HASH_BUCKETS];
    struct ns_tcb *listeners;
    uint64_t hash_key;
    uint8_t isn_key[16];
    uint16_t next_ephemeral;
    uint64_t chal_at;            /* challenge ACK budget window start */
    uint32_t chal_count;
};

/* Bytes of the sequence space in flight. */
static inline uint32_t tcp_flight(const struct ns_tcb *t) { return t->snd_nxt - t->snd_una; }
static inline uint32_t tcp_ts_now(const struct netstack *ns, const struct ns_tcb *t)
{
    return (uint32_t)(ns->now / NS_MS) + t->ts_offset;
}
static inline struct ns_tcp *tcp_of(struct netstack *ns) { return ns->tcp; }

/* tcp_state.c */
struct ns_tcb *tcp_lookup(struct netstack *ns, be32_t raddr, be16_t rport, be16_t lport);
struct ns_tcb *tcp_find_listener(struct netstack *ns, be16_t lport);
struct ns_tcb *tcp_new_child(struct netstack *ns, struct ns_tcb *lis, be32_t raddr, be16_t rport);
void tcp_hash_insert(struct netstack *ns, struct ns_tcb *t);
void tcp_set_state(struct netstack *ns, struct ns_tcb *t, enum ns_tcp_state st);
/* The connection is over: error (positive errno, 0 none) reported to the user, timers
 * stopped, queues kept for reading; freed if nobody holds it. */
void tcp_close_conn(struct netstack *ns, struct ns_tcb *t, int err);
void tcp_enter_time_wait(struct netstack *ns, struct ns_tcb *t);
/* The child finished its handshake: into the listener's accept queue. */
bool tcp_child_established(struct netstack *ns, struct ns_tcb *t);
void tcp_mark(struct netstack *ns, struct ns_tcb *t);
uint32_t tcp_isn(struct netstack *ns, struct ns_tcb *t);
uint64_t ns_siphash24(const uint8_t key[16], const void *data, size_t len);
void tcp_init_conn(struct netstack *ns, struct ns_tcb *t);

/* tcp_output.c */
void tcp_output(struct netstack *ns, struct ns_tcb *t);
/* One segment: seq, payload len from the send ring at seq, flags; options as the state
 * wants. Returns 0 or -errno (no buffer). */
int tcp_xmit(struct netstack *ns, struct ns_tcb *t, uint32_t seq, uint32_t len, uint8_t flags);
void tcp_send_ack(struct netstack *ns, struct ns_tcb *t);
void tcp_send_syn(struct netstack *ns, struct ns_tcb *t);
/* RST or RST+ACK for a segment no connection takes (RFC 9293 3.10.7.1). */
void tcp_send_reset_for(struct netstack *ns, const struct ns_rxinfo *ri, const struct ns_tcp_hdr *th,
                        const struct tcp_seg *s);
void tcp_send_rst(struct netstack *ns, struct ns_tcb *t);
void tcp_send_challenge_ack(struct netstack *ns, struct ns_tcb *t);
uint32_t tcp_rcv_window(const struct ns_tcb *t);
/* Resend the segment at snd_una; returns the sequence number after it. */
uint32_t tcp_retransmit_head(struct netstack *ns, struct ns_tcb *t);
void tcp_sack_output(struct netstack *ns, struct ns_tcb *t);
void tcp_update_mss(struct netstack *ns, struct ns_tcb *t);
uint32_t tcp_seg_max(const struct netstack *ns, const struct ns_tcb *t);
uint32_t tcp_sacked_bytes(const struct ns_tcb *t);

/* tcp_timer.c */
void tcp_timers_init(struct ns_tcb *t);
void tcp_timers_stop(struct netstack *ns, struct ns_tcb *t);
void tcp_arm_rtx(struct netstack *ns, struct ns_tcb *t);
void tcp_arm_persist(struct netstack *ns, struct ns_tcb *t);
void tcp_arm_keepalive(struct netstack *ns, struct ns_tcb *t);
void tcp_arm_dack(struct netstack *ns, struct ns_tcb *t);
void tcp_rtt_sample(struct ns_tcb *t, uint32_t rtt_us);

#endif /* NS_TCP_INTERNAL_H */
