/*
 * nsglue: demi_* socket operations over netstack for any struct netdev. Call
 * chain: core (demi_*, under the core lock) -> nsglue_* -> ns_tcp_* / ns_udp_*
 * -> netstack -> netdev (catpowder's packet socket ...). Pending operations wait
 * in per-socket lists and are completed from nsglue_poll, which drives ns_poll
 * and then visits only the sockets ns_events names.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#include "config.h"
#include "defaults.h"
#include "log.h"
#include "netstack.h"
#include "nsglue.h"

/* Most stack buffers the application may hold at once from zero-copy pops (a static table, so
 * demi_sgafree can recognise ours by address even after the stack is gone). */
#define NSGLUE_MAX_LOANS 4096
/* A TCP pop that cannot borrow a stack buffer copies up to this much instead. */
#define NSGLUE_COPY_POP_SIZE 65536u
#define NSGLUE_EVENT_BATCH 64
#define NSGLUE_NETMASK_DEFAULT 0xffffff00u /* /24 when inetstack_config.ipv4_netmask is unset */

struct nsg_sock {
    enum core_qkind kind;
    int sd;                      /* netstack socket (TCP and UDP number separately) */
    struct core_queue *q;
    bool eof;                    /* a TCP pop saw end of stream: every later pop says so again */
    int conn_err;                /* first hard error of a TCP connection (sticky, as catnap) */
    bool udp_connected;
    bool udp_shut_rd;
    struct ns_sockaddr udp_local; /* as bound (netstack keeps the port, we keep what was asked) */
    bool udp_bound;
    struct ns_sockaddr udp_peer;
    /* Options netstack has no use for, kept so getsockopt reads back what setsockopt wrote. */
    int opt_reuseport;
    int opt_udp_reuseaddr, opt_udp_rcvbuf, opt_udp_sndbuf;
    struct linger linger;
    struct core_oplist accepts, connects, pops, pushes;
    struct nsg_sock *all_next, *all_prev;
    struct nsg_sock *uw_next, *uw_prev; /* UDP sockets with pops waiting */
    bool on_uw;
    struct nsg_sock *dl_next, *dl_prev; /* TCP sockets with a timed connect pending */
    bool on_dl;
};

/* One application-held stack buffer; sga_buf points at the slot. */
struct nsg_loan {
    struct nsbuf *b;
    _Atomic uint32_t state;
    struct nsg_loan *next;       /* free list (core lock) or returned stack (lock-free) */
};
enum { LOAN_FREE = 0, LOAN_OUT, LOAN_RETURNED, LOAN_ORPHAN };

static struct nsg_loan loans[NSGLUE_MAX_LOANS];

/* The binding's own counters, after netstack's and before the device's. */
#define NSGLUE_STATS_LIST(X)                                                                         \
    X(glue_pop_zero_copy, "pops that handed the application the stack's buffer")                   \
    X(glue_pop_copied, "pops copied into a pool buffer (loan limit reached)")                       \
    X(glue_loans_out, "stack buffers the application holds now (gauge)")                            \
    X(glue_ops_completed, "operations completed or failed by the binding")                          \
    X(glue_timer_wakeups, "wake-ups by the stack's timer")                                          \
    X(pcap_frames, "frames written to the DEMI_PCAP file")

struct nsg_stats {
#define NSG_FIELD(n, h) uint64_t n;
    NSGLUE_STATS_LIST(NSG_FIELD)
#undef NSG_FIELD
};
#define NSG_STATS_COUNT (sizeof(struct nsg_stats) / sizeof(uint64_t))
static const struct nsglue_stat_src nsg_stat_src[] = {
#define NSG_SRC(n, h) {#n, h},
    NSGLUE_STATS_LIST(NSG_SRC)
#undef NSG_SRC
};

static struct {
    bool up;
    bool forked;                 /* in a fork child: the device and stack belong to the parent */
    const char *libos;
    struct netstack *ns;
    struct netdev *dev;          /* what the stack drives (the pcap wrapper when capturing) */
    struct nsglue_device d;
    int epfd;
    int tfd;
    uint64_t armed;              /* absolute CLOCK_MONOTONIC ns the timerfd fires at, 0 = disarmed */
    bool dirty;                  /* counters changed since the last publish */
    /* TCP options applied to new sockets (tcp_socket_options, inetstack_config.mss). */
    bool nodelay, keepalive, linger0;
    int keepidle_s, keepintvl_s;
    int mss;
    uint64_t connect_timeout_ns; /* tcp_socket_options.connect_timeout_ms; 0: the stack's own SYN retries */
    /* Sockets with a timed connect; one timeout for all, so appending keeps them sorted by deadline. */
    struct nsg_sock *dl_head, *dl_tail;
    /* Sockets by netstack number. */
    struct nsg_sock **tcp;
    int ntcp;
    struct nsg_sock *udp[NS_UDP_MAX_SOCKETS];
    struct nsg_sock *all;
    struct nsg_sock *uw;         /* UDP sockets with pops waiting */
    /* Loans: free list under the core lock, returned stack pushed by demi_sgafree from any thread. */
    struct nsg_loan *loan_free;
    _Atomic(struct nsg_loan *) loan_returned;
    uint32_t loan_limit;
    struct nsg_stats st;
    uint64_t *values;            /* scratch for publishing: ns + glue + device counters */
    unsigned nvalues;
} g = { .epfd = -1, .tfd = -1 };

/* ---- helpers ---------------------------------------------------------------- */

static struct ns_sockaddr to_ns(const struct sockaddr_in *a)
{
    struct ns_sockaddr s = { .addr = a->sin_addr.s_addr, .port = a->sin_port };
    return s;
}

static struct sockaddr_in from_ns(const struct ns_sockaddr *s)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = s->addr;
    a.sin_port = s->port;
    return a;
}

static void complete_fail(struct core_oplist *l, struct core_op *op, int err)
{
    core_oplist_remove(l, op);
    core_op_fail(op, err);
    g.st.glue_ops_completed++;
}

static int tcp_table_put(int sd, struct nsg_sock *s)
{
    if (sd >= g.ntcp) {
        int n = g.ntcp ? g.ntcp : 64;
        while (n <= sd)
            n *= 2;
        struct nsg_sock **t = realloc(g.tcp, (size_t)n * sizeof(*t));
        if (t == NULL)
            return -ENOMEM;
        memset(t + g.ntcp, 0, (size_t)(n - g.ntcp) * sizeof(*t));
        g.tcp = t;
        g.ntcp = n;
    }
    g.tcp[sd] = s;
    return 0;
}

static struct nsg_sock *sock_of(uint8_t proto, int sd)
{
    if (proto == NS_PROTO_TCP)
        return sd >= 0 && sd < g.ntcp ? g.tcp[sd] : NULL;
    return sd >= 0 && sd < NS_UDP_MAX_SOCKETS ? g.udp[sd] : NULL;
}

static struct nsg_sock *sock_new(enum core_qkind kind, int sd)
{
    struct nsg_sock *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->kind = kind;
    s->sd = sd;
    if (kind == CORE_Q_TCP) {
        if (tcp_table_put(sd, s) < 0) {
            free(s);
            return NULL;
        }
    } else {
        g.udp[sd] = s;
    }
    s->all_next = g.all;
    if (g.all)
        g.all->all_prev = s;
    g.all = s;
    return s;
}

static void uw_add(struct nsg_sock *s)
{
    if (s->on_uw)
        return;
    s->uw_prev = NULL;
    s->uw_next = g.uw;
    if (g.uw)
        g.uw->uw_prev = s;
    g.uw = s;
    s->on_uw = true;
}

static void uw_remove(struct nsg_sock *s)
{
    if (!s->on_uw)
        return;
    if (s->uw_prev)
        s->uw_prev->uw_next = s->uw_next;
    else
        g.uw = s->uw_next;
    if (s->uw_next)
        s->uw_next->uw_prev = s->uw_prev;
    s->uw_next = s->uw_prev = NULL;
    s->on_uw = false;
}

static void dl_add(struct nsg_sock *s)
{
    if (s->on_dl)
        return;
    s->dl_next = NULL;
    s->dl_prev = g.dl_tail;
    if (g.dl_tail)
        g.dl_tail->dl_next = s;
    else
        g.dl_head = s;
    g.dl_tail = s;
    s->on_dl = true;
}

static void dl_remove(struct nsg_sock *s)
{
    if (!s->on_dl)
        return;
    if (s->dl_prev)
        s->dl_prev->dl_next = s->dl_next;
    else
        g.dl_head = s->dl_next;
    if (s->dl_next)
        s->dl_next->dl_prev = s->dl_prev;
    else
        g.dl_tail = s->dl_prev;
    s->dl_next = s->dl_prev = NULL;
    s->on_dl = false;
}

/* Unlink and free the glue side; the netstack socket is the caller's business. */
static void sock_free(struct nsg_sock *s)
{
    uw_remove(s);
    dl_remove(s);
    if (s->kind == CORE_Q_TCP) {
        if (s->sd >= 0 && s->sd < g.ntcp && g.tcp[s->sd] == s)
            g.tcp[s->sd] = NULL;
    } else if (s->sd >= 0 && s->sd < NS_UDP_MAX_SOCKETS && g.udp[s->sd] == s) {
        g.udp[s->sd] = NULL;
    }
    if (s->all_prev)
        s->all_prev->all_next = s->all_next;
    else
        g.all = s->all_next;
    if (s->all_next)
        s->all_next->all_prev = s->all_prev;
    free(s);
}

/* ---- loans: zero-copy pops -------------------------------------------------- */

/* Give back what demi_sgafree returned since the last call (core lock held). */
static void loans_reclaim(void)
{
    struct nsg_loan *l = atomic_exchange_explicit(&g.loan_returned, NULL, memory_order_acquire);
    while (l != NULL) {
        struct nsg_loan *next = l->next;
        if (g.ns != NULL && l->b != NULL)
            ns_buf_free(g.ns, l->b);
        l->b = NULL;
        atomic_store_explicit(&l->state, LOAN_FREE, memory_order_relaxed);
        l->next = g.loan_free;
        g.loan_free = l;
        g.st.glue_loans_out--;
        l = next;
    }
}

/* An sga for the received buffer b (payload at b->data): lend b itself when the loan budget
 * allows, else copy. Consumes b. -ENOMEM when even the copy has no buffer. */
static int sga_of_buf(struct nsbuf *b, demi_sgarray_t *sga)
{
    memset(sga, 0, sizeof(*sga));
    struct nsg_loan *l = g.loan_free;
    if (l != NULL && g.st.glue_loans_out < g.loan_limit) {
        g.loan_free = l->next;
        l->next = NULL;
        l->b = b;
        atomic_store_explicit(&l->state, LOAN_OUT, memory_order_release);
        g.st.glue_loans_out++;
        g.st.glue_pop_zero_copy++;
        sga->sga_buf = l;
        sga->sga_numsegs = 1;
        sga->sga_segs[0].sgaseg_buf = b->data;
        sga->sga_segs[0].sgaseg_len = b->len;
        return 0;
    }
    *sga = core_sga_alloc(b->len ? b->len : 1);
    if (sga->sga_numsegs == 0) {
        ns_buf_free(g.ns, b);
        return -ENOMEM;
    }
    if (b->len)
        memcpy(sga->sga_segs[0].sgaseg_buf, b->data, b->len);
    sga->sga_segs[0].sgaseg_len = b->len;
    ns_buf_free(g.ns, b);
    g.st.glue_pop_copied++;
    return 0;
}

/* Called by demi_sgafree WITHOUT the core lock, from any thread. */
int nsglue_sgafree(demi_sgarray_t *sga)
{
    uintptr_t p = (uintptr_t)sga->sga_buf;
    uintptr_t lo = (uintptr_t)loans, hi = (uintptr_t)(loans + NSGLUE_MAX_LOANS);
    if (p < lo || p >= hi)
        return core_sga_free(sga);
    if ((p - lo) % sizeof(struct nsg_loan) != 0)
        return -EINVAL;
    struct nsg_loan *l = (struct nsg_loan *)p;
    uint32_t want = LOAN_OUT;
    if (!atomic_compare_exchange_strong_explicit(&l->state, &want, LOAN_RETURNED, memory_order_acq_rel,
                                                 memory_order_relaxed)) {
        if (want == LOAN_ORPHAN && atomic_compare_exchange_strong(&l->state, &want, LOAN_FREE)) {
            /* The stack is gone (test reset); its memory went with it. */
            sga->sga_buf = NULL;
            sga->sga_numsegs = 0;
            return 0;
        }
        return -EINVAL; /* double free */
    }
    /* Push-only stack drained whole by loans_reclaim: no ABA. */
    struct nsg_loan *head = atomic_load_explicit(&g.loan_returned, memory_order_relaxed);
    do
        l->next = head;
    while (!atomic_compare_exchange_weak_explicit(&g.loan_returned, &head, l, memory_order_release,
                                                  memory_order_relaxed));
    sga->sga_buf = NULL;
    sga->sga_numsegs = 0;
    return 0;
}

/* ---- per-kind attempts ---------------------------------------------------------
 * Each *_try works on the head of its list and returns true when it finished that
 * op, false when the stack said "not yet" and the op stays until an event.
 */

static bool zero_pop(struct nsg_sock *s, struct core_op *op)
{
    demi_sgarray_t sga = core_sga_alloc(1);
    if (sga.sga_numsegs == 0) {
        complete_fail(&s->pops, op, ENOMEM);
        return true;
    }
    sga.sga_segs[0].sgaseg_len = 0;
    core_oplist_remove(&s->pops, op);
    core_op_complete_pop(op, &sga);
    g.st.glue_ops_completed++;
    return true;
}

static bool pop_try_tcp(struct nsg_sock *s, struct core_op *op)
{
    if (s->eof)
        return zero_pop(s, op);
    demi_sgarray_t sga;
    for (;;) {
        if (g.loan_free == NULL || g.st.glue_loans_out >= g.loan_limit) {
            /* No buffer to lend: copy what is readable, in one go. */
            sga = core_sga_alloc(NSGLUE_COPY_POP_SIZE);
            if (sga.sga_numsegs == 0) {
                complete_fail(&s->pops, op, ENOMEM);
                return true;
            }
            int n = ns_tcp_recv(g.ns, s->sd, sga.sga_segs[0].sgaseg_buf, NSGLUE_COPY_POP_SIZE);
            if (n > 0) {
                sga.sga_segs[0].sgaseg_len = (uint32_t)n;
                g.st.glue_pop_copied++;
                break;
            }
            core_sga_free(&sga);
            if (n == -EAGAIN)
                return false;
            if (n < 0) {
                if (s->conn_err == 0)
                    s->conn_err = -n;
                complete_fail(&s->pops, op, -n);
                return true;
            }
        } else {
            struct nsbuf *b = NULL;
            int n = ns_tcp_recv_buf(g.ns, s->sd, &b);
            if (n == -EAGAIN)
                return false;
            if (n < 0) {
                if (s->conn_err == 0)
                    s->conn_err = -n;
                complete_fail(&s->pops, op, -n);
                return true;
            }
            if (b != NULL && b->len == 0) {
                ns_buf_free(g.ns, b);
                continue;
            }
            if (b != NULL) {
                if (sga_of_buf(b, &sga) < 0) {
                    complete_fail(&s->pops, op, ENOMEM);
                    return true;
                }
                break;
            }
        }
        /* End of stream; after a hard error, an error rather than a clean close. */
        if (s->conn_err != 0) {
            complete_fail(&s->pops, op, s->conn_err);
            return true;
        }
        s->eof = true;
        return zero_pop(s, op);
    }
    core_oplist_remove(&s->pops, op);
    core_op_complete_pop(op, &sga);
    g.st.glue_ops_completed++;
    return true;
}

static bool pop_try_udp(struct nsg_sock *s, struct core_op *op)
{
    if (s->udp_shut_rd)
        return zero_pop(s, op);
    struct nsbuf *b = NULL;
    struct ns_sockaddr src;
    int n = ns_udp_recv_buf(g.ns, s->sd, &b, &src);
    if (n == -EAGAIN)
        return false;
    if (n < 0) {
        /* Datagram errors (an ICMP refusal) concern one exchange, not the socket. */
        complete_fail(&s->pops, op, -n);
        return true;
    }
    demi_sgarray_t sga;
    if (sga_of_buf(b, &sga) < 0) {
        complete_fail(&s->pops, op, ENOMEM);
        return true;
    }
    sga.sga_addr = from_ns(&src);
    core_oplist_remove(&s->pops, op);
    core_op_complete_pop(op, &sga);
    g.st.glue_ops_completed++;
    return true;
}

static bool pop_try(struct nsg_sock *s, struct core_op *op)
{
    return s->kind == CORE_Q_TCP ? pop_try_tcp(s, op) : pop_try_udp(s, op);
}

static bool push_try(struct nsg_sock *s, struct core_op *op)
{
    const char *buf = op->sga.sga_segs[0].sgaseg_buf;
    uint32_t len = op->sga.sga_segs[0].sgaseg_len;
    if (s->kind == CORE_Q_UDP) {
        struct ns_sockaddr dst;
        if (op->has_addr)
            dst = to_ns(&op->addr);
        int n = ns_udp_sendto(g.ns, s->sd, buf, len, op->has_addr ? &dst : NULL);
        if (n == -ENOBUFS)
            return false; /* the pool is empty for now; retried after the next poll */
        if (n < 0) {
            complete_fail(&s->pushes, op, -n);
            return true;
        }
    } else {
        while (op->progress < len) {
            int n = ns_tcp_send(g.ns, s->sd, buf + op->progress, len - op->progress);
            if (n > 0) {
                op->progress += (uint32_t)n;
                continue;
            }
            if (n == -EAGAIN || n == 0)
                return false;
            /* EPIPE only says our side is shut; anything else is the connection's fate. */
            if (n != -EPIPE && s->conn_err == 0)
                s->conn_err = -n;
            complete_fail(&s->pushes, op, -n);
            return true;
        }
    }
    core_oplist_remove(&s->pushes, op);
    core_op_complete_push(op);
    g.st.glue_ops_completed++;
    return true;
}

static void apply_tcp_defaults(int sd)
{
    if (g.nodelay)
        (void)ns_tcp_setsockopt(g.ns, sd, NS_TCP_NODELAY, 1);
    if (g.keepalive) {
        (void)ns_tcp_setsockopt(g.ns, sd, NS_SO_KEEPALIVE, 1);
        if (g.keepidle_s > 0)
            (void)ns_tcp_setsockopt(g.ns, sd, NS_TCP_KEEPIDLE, g.keepidle_s);
        if (g.keepintvl_s > 0)
            (void)ns_tcp_setsockopt(g.ns, sd, NS_TCP_KEEPINTVL, g.keepintvl_s);
    }
    if (g.linger0)
        (void)ns_tcp_setsockopt(g.ns, sd, NS_SO_LINGER0, 1);
    if (g.mss > 0)
        (void)ns_tcp_setsockopt(g.ns, sd, NS_TCP_MAXSEG, g.mss);
}

static bool accept_try(struct nsg_sock *ls, struct core_op *op)
{
    struct ns_sockaddr peer;
    memset(&peer, 0, sizeof(peer));
    int sd = ns_tcp_accept(g.ns, ls->sd, &peer);
    if (sd == -EAGAIN)
        return false;
    if (sd < 0) {
        complete_fail(&ls->accepts, op, -sd);
        return true;
    }
    struct nsg_sock *s = sock_new(CORE_Q_TCP, sd);
    if (s == NULL) {
        ns_tcp_close(g.ns, sd);
        complete_fail(&ls->accepts, op, ENOMEM);
        return true;
    }
    if (g.linger0)
        s->linger = (struct linger){ .l_onoff = 1, .l_linger = 0 };
    struct core_queue *nq = NULL;
    int qd = core_queue_new(CORE_Q_TCP, s, &nq);
    if (qd < 0) {
        sock_free(s);
        ns_tcp_close(g.ns, sd);
        complete_fail(&ls->accepts, op, -qd);
        return true;
    }
    s->q = nq;
    struct sockaddr_in pa = from_ns(&peer);
    core_oplist_remove(&ls->accepts, op);
    core_op_complete_accept(op, qd, &pa);
    g.st.glue_ops_completed++;
    return true;
}

/* Decide a pending connect from the socket's state and pending error. */
static bool connect_check(struct nsg_sock *s, struct core_op *op)
{
    int err = 0;
    if (ns_tcp_getsockopt(g.ns, s->sd, NS_SO_ERROR, &err) == 0 && err != 0) {
        complete_fail(&s->connects, op, err);
        return true;
    }
    struct ns_tcp_info ti;
    if (ns_tcp_info(g.ns, s->sd, &ti) < 0) {
        complete_fail(&s->connects, op, ECONNABORTED);
        return true;
    }
    switch (ti.state) {
    case NS_TCP_SYN_SENT:
    case NS_TCP_SYN_RECEIVED:
        return false;
    case NS_TCP_CLOSED:
    case NS_TCP_LISTEN:
        /* Failed, but the reason was taken already. */
        complete_fail(&s->connects, op, ECONNABORTED);
        return true;
    default:
        core_oplist_remove(&s->connects, op);
        core_op_complete_connect(op);
        g.st.glue_ops_completed++;
        return true;
    }
}

static int run_list(struct nsg_sock *s, struct core_oplist *l, bool (*try_op)(struct nsg_sock *, struct core_op *))
{
    int done = 0;
    struct core_op *op;
    while ((op = l->head) != NULL && try_op(s, op))
        done++;
    return done;
}

static int sock_progress(struct nsg_sock *s)
{
    int done = 0;
    if (s->kind == CORE_Q_TCP) {
        done += run_list(s, &s->accepts, accept_try);
        done += run_list(s, &s->connects, connect_check);
        if (s->connects.head == NULL)
            dl_remove(s);
    }
    done += run_list(s, &s->pops, pop_try);
    done += run_list(s, &s->pushes, push_try);
    if (s->kind == CORE_Q_UDP) {
        if (s->pops.head != NULL || s->pushes.head != NULL)
            uw_add(s);
        else
            uw_remove(s);
    }
    return done;
}

/* Queue op behind the ones already waiting; try it at once only if none was. */
static void submit(struct nsg_sock *s, struct core_oplist *l, struct core_op *op,
                   bool (*try_op)(struct nsg_sock *, struct core_op *))
{
    bool idle = l->head == NULL;
    core_oplist_push(l, op);
    if (idle)
        try_op(s, op);
    if (s->kind == CORE_Q_UDP && (s->pops.head != NULL || s->pushes.head != NULL))
        uw_add(s);
    g.dirty = true;
}

/* ---- the timer and the counters ---------------------------------------------- */

static void timer_arm(void)
{
    if (g.tfd < 0)
        return;
    uint64_t next = ns_next_timer(g.ns);
    if (g.dl_head != NULL && g.dl_head->connects.head != NULL && g.dl_head->connects.head->deadline_ns < next)
        next = g.dl_head->connects.head->deadline_ns;
    uint64_t now = core_now_ns();
    /* An earlier wake-up than needed costs one poll; a later one would lose a timer. */
    if (g.armed != 0 && g.armed > now && g.armed <= next)
        return;
    if (next == UINT64_MAX) {
        if (g.armed == 0)
            return;
        struct itimerspec off;
        memset(&off, 0, sizeof(off));
        (void)timerfd_settime(g.tfd, 0, &off, NULL);
        g.armed = 0;
        return;
    }
    if (next <= now)
        next = now + 1;
    struct itimerspec its;
    memset(&its, 0, sizeof(its));
    its.it_value.tv_sec = (time_t)(next / 1000000000ull);
    its.it_value.tv_nsec = (long)(next % 1000000000ull);
    if (timerfd_settime(g.tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
        g.armed = next;
}

static unsigned stats_count(void) { return (unsigned)(NS_STATS_COUNT + NSG_STATS_COUNT + g.d.nstats); }

static void stats_fill(uint64_t *v)
{
    struct ns_stats ns;
    ns_stats_get(g.ns, &ns);
    memcpy(v, &ns, sizeof(ns));
    g.st.pcap_frames = nsglue_pcap_frames();
    memcpy(v + NS_STATS_COUNT, &g.st, sizeof(g.st));
    for (unsigned i = 0; i < g.d.nstats; i++)
        v[NS_STATS_COUNT + NSG_STATS_COUNT + i] = *g.d.stats[i].value;
}

static void stats_publish(void)
{
    if (g.values == NULL)
        return;
    stats_fill(g.values);
    nsglue_shm_publish(g.values, g.nvalues);
    g.dirty = false;
}

int nsglue_stats(unsigned i, const char **name, const char **help, uint64_t *value)
{
    if (!g.up || g.forked)
        return -ENOTSUP;
    if (i >= stats_count())
        return -ENOENT;
    if (i < NS_STATS_COUNT) {
        struct ns_stats ns;
        ns_stats_get(g.ns, &ns);
        *name = ns_stats_name(i);
        *help = ns_stats_help(i);
        *value = ns_stats_value(&ns, i);
        return 0;
    }
    i -= (unsigned)NS_STATS_COUNT;
    if (i < NSG_STATS_COUNT) {
        g.st.pcap_frames = nsglue_pcap_frames();
        *name = nsg_stat_src[i].name;
        *help = nsg_stat_src[i].help;
        memcpy(value, (const char *)&g.st + i * sizeof(uint64_t), sizeof(*value));
        return 0;
    }
    i -= (unsigned)NSG_STATS_COUNT;
    *name = g.d.stats[i].name;
    *help = g.d.stats[i].help;
    *value = *g.d.stats[i].value;
    return 0;
}

/* ---- start and stop ----------------------------------------------------------- */

static int config_from_core(const struct core_config *cfg, const struct netdev *dev, struct ns_config *nc,
                            struct ns_arp_static *arp)
{
    ns_config_defaults(nc);
    if (!cfg->has_local_ipv4) {
        LOG_ERROR("%s: demikernel.local_ipv4_addr (DEMI_LOCAL_IPV4) is required", g.libos);
        return -EINVAL;
    }
    nc->ipv4 = cfg->local_ipv4.s_addr;
    nc->netmask = cfg->has_ipv4_netmask ? cfg->ipv4_netmask.s_addr : htonl(NSGLUE_NETMASK_DEFAULT);
    nc->gateway = cfg->has_ipv4_gateway ? cfg->ipv4_gateway.s_addr : 0;
    if (cfg->has_local_mac) {
        nc->has_mac = true;
        memcpy(nc->mac, cfg->local_mac, 6);
    }
    uint32_t mtu = cfg->mtu;
    if (dev->mtu != 0 && mtu > dev->mtu) {
        LOG_INFO("%s: inetstack_config.mtu %u is above the device's %u; using %u", g.libos, mtu, dev->mtu,
                 dev->mtu);
        mtu = dev->mtu;
    }
    nc->mtu = mtu;
    for (int i = 0; i < cfg->n_arp; i++) {
        arp[i].ip = cfg->arp_table[i].ip.s_addr;
        memcpy(arp[i].mac, cfg->arp_table[i].mac, 6);
    }
    nc->arp_static = arp;
    nc->n_arp_static = (unsigned)cfg->n_arp;
    nc->arp_ttl_ms = cfg->arp_cache_ttl_s * 1000u;
    nc->arp_request_timeout_ms = cfg->arp_request_timeout_ms;
    nc->arp_request_retries = cfg->arp_request_retries;
    if (getrandom(nc->isn_secret, sizeof(nc->isn_secret), 0) != (ssize_t)sizeof(nc->isn_secret)) {
        LOG_ERROR("%s: getrandom for the RFC 6528 key failed", g.libos);
        return -EIO;
    }
    g.nodelay = cfg->nodelay;
    g.keepalive = cfg->keepalive_enabled;
    g.keepidle_s = (int)((cfg->keepalive_time_ms + 999u) / 1000u);
    g.keepintvl_s = (int)((cfg->keepalive_interval_ms + 999u) / 1000u);
    g.linger0 = cfg->linger_enabled && cfg->linger_time_s == 0;
    g.mss = cfg->mss > 0 && cfg->mss < mtu - 40 ? (int)cfg->mss : 0;
    g.connect_timeout_ns = (uint64_t)cfg->connect_timeout_ms * 1000000ull;
    return 0;
}

static int epoll_add(int ep, int fd)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static void at_exit(void)
{
    /* Only the process that made the counters file removes it (nsglue_shm_close checks). */
    nsglue_shm_close();
}

int nsglue_start(const char *libos, const struct core_config *cfg, const struct nsglue_device *d)
{
    static bool atexit_done;
    if (g.up)
        return -EEXIST;
    memset(&g, 0, sizeof(g));
    g.epfd = g.tfd = -1;
    g.libos = libos;
    g.d = *d;
    g.dev = d->dev;

    struct ns_config nc;
    struct ns_arp_static arp[CORE_CONFIG_MAX_ARP];
    int rc = config_from_core(cfg, d->dev, &nc, arp);
    if (rc < 0)
        return rc;

    const char *pcap = getenv("DEMI_PCAP");
    if (pcap != NULL && pcap[0] != '\0') {
        rc = nsglue_pcap_open(pcap, d->dev, &g.dev);
        if (rc < 0) {
            LOG_ERROR("%s: DEMI_PCAP=%s: %s", libos, pcap, strerror(-rc));
            return rc;
        }
    }
    rc = ns_create(&nc, g.dev, core_now_ns(), &g.ns);
    if (rc < 0) {
        LOG_ERROR("%s: the stack refused the configuration (address, netmask, gateway on link, MTU 68..%u, "
                  "at most %d static ARP entries): %s",
                  libos, d->dev->mtu, NS_ARP_CACHE_SIZE / 2, strerror(-rc));
        goto fail;
    }
    g.epfd = epoll_create1(EPOLL_CLOEXEC);
    g.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (g.epfd < 0 || g.tfd < 0) {
        rc = -errno;
        goto fail;
    }
    if ((rc = epoll_add(g.epfd, g.tfd)) < 0 || (d->fd >= 0 && (rc = epoll_add(g.epfd, d->fd)) < 0))
        goto fail;

    uint32_t limit = d->pool_size / 2;
    g.loan_limit = limit < NSGLUE_MAX_LOANS ? limit : NSGLUE_MAX_LOANS;
    g.loan_free = NULL;
    for (int i = NSGLUE_MAX_LOANS; i-- > 0;) {
        /* A loan still out from an earlier stack stays orphaned: its sgafree must not find it free. */
        if (atomic_load(&loans[i].state) != LOAN_FREE)
            continue;
        loans[i].b = NULL;
        loans[i].next = g.loan_free;
        g.loan_free = &loans[i];
    }
    atomic_store(&g.loan_returned, NULL);

    g.nvalues = stats_count();
    g.values = calloc(g.nvalues, sizeof(uint64_t));
    struct nsglue_stat_src *src = calloc(g.nvalues, sizeof(*src));
    if (g.values == NULL || src == NULL) {
        free(src);
        rc = -ENOMEM;
        goto fail;
    }
    for (unsigned i = 0; i < g.nvalues; i++) {
        uint64_t v;
        g.up = true;
        (void)nsglue_stats(i, &src[i].name, &src[i].help, &v);
        g.up = false;
    }
    if (nsglue_shm_open(libos, src, g.nvalues) < 0)
        LOG_WARN("%s: no counters file in /dev/shm; demi_netstack_stats still works", libos);
    free(src);
    if (!atexit_done) {
        atexit(at_exit);
        atexit_done = true;
    }
    g.up = true;
    stats_publish();
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &nc.ipv4, ip, sizeof(ip));
    LOG_INFO("%s: stack up at %s, MTU %u", libos, ip, nc.mtu ? nc.mtu : d->dev->mtu);
    return 0;
fail:
    if (g.ns)
        ns_destroy(g.ns);
    g.ns = NULL;
    if (g.epfd >= 0)
        close(g.epfd);
    if (g.tfd >= 0)
        close(g.tfd);
    g.epfd = g.tfd = -1;
    free(g.values);
    g.values = NULL;
    nsglue_pcap_close();
    return rc;
}

void nsglue_stop(void)
{
    if (!g.up)
        return;
    if (!g.forked) {
        /* Queues are closed by now unless a test reset the core; their operations died with it. */
        while (g.all != NULL) {
            struct nsg_sock *s = g.all;
            if (s->kind == CORE_Q_TCP)
                ns_tcp_close(g.ns, s->sd);
            else
                ns_udp_close(g.ns, s->sd);
            sock_free(s);
        }
        loans_reclaim();
        for (int i = 0; i < NSGLUE_MAX_LOANS; i++) {
            uint32_t out = LOAN_OUT;
            if (atomic_compare_exchange_strong(&loans[i].state, &out, LOAN_ORPHAN))
                loans[i].b = NULL; /* freed with the device's pool */
        }
        ns_flush(g.ns);
        ns_destroy(g.ns);
        nsglue_shm_close();
        nsglue_pcap_close();
    } else {
        while (g.all != NULL)
            sock_free(g.all);
    }
    g.ns = NULL;
    free(g.tcp);
    g.tcp = NULL;
    g.ntcp = 0;
    memset(g.udp, 0, sizeof(g.udp));
    free(g.values);
    g.values = NULL;
    if (g.epfd >= 0)
        close(g.epfd);
    if (g.tfd >= 0)
        close(g.tfd);
    g.epfd = g.tfd = -1;
    g.up = false;
}

/*
 * The device (its packet socket and rings) and therefore the stack's connections
 * are shared with the parent after fork; a child driving them would steal the
 * parent's frames and could reset its connections. The child refuses every socket
 * call with ENOTSUP instead, keeps nothing of the parent's counters file or capture,
 * and frees only its own bookkeeping on close.
 */
void nsglue_fork_child(void)
{
    if (!g.up)
        return;
    g.forked = true;
    nsglue_shm_forget();
    LOG_ERROR("%s: a forked child cannot use the parent's network stack: socket calls fail with ENOTSUP",
              g.libos);
}

/* ---- ops ----------------------------------------------------------------------- */

#define REFUSE_IN_CHILD()                                                                             \
    do {                                                                                              \
        if (g.forked)                                                                                 \
            return -ENOTSUP;                                                                          \
    } while (0)

int nsglue_socket(struct core_queue *q, int domain, int type, int protocol)
{
    (void)domain;
    (void)type;
    (void)protocol;
    REFUSE_IN_CHILD();
    int sd = q->kind == CORE_Q_TCP ? ns_tcp_socket(g.ns) : q->kind == CORE_Q_UDP ? ns_udp_socket(g.ns) : -ENOTSUP;
    if (sd < 0)
        return sd == -ENOSPC ? -EMFILE : sd;
    struct nsg_sock *s = sock_new(q->kind, sd);
    if (s == NULL) {
        if (q->kind == CORE_Q_TCP)
            ns_tcp_close(g.ns, sd);
        else
            ns_udp_close(g.ns, sd);
        return -ENOMEM;
    }
    s->q = q;
    if (q->kind == CORE_Q_TCP) {
        apply_tcp_defaults(sd);
        if (g.linger0)
            s->linger = (struct linger){ .l_onoff = 1, .l_linger = 0 };
    }
    q->priv = s;
    return 0;
}

int nsglue_bind(struct core_queue *q, const struct sockaddr_in *addr)
{
    REFUSE_IN_CHILD();
    struct nsg_sock *s = q->priv;
    struct ns_sockaddr a = to_ns(addr);
    if (s->kind == CORE_Q_TCP)
        return ns_tcp_bind(g.ns, s->sd, &a);
    int rc = ns_udp_bind(g.ns, s->sd, &a);
    if (rc == 0) {
        s->udp_bound = true;
        s->udp_local = a;
        (void)ns_udp_getsockname(g.ns, s->sd, &s->udp_local);
    }
    return rc;
}

int nsglue_listen(struct core_queue *q, int backlog)
{
    REFUSE_IN_CHILD();
    struct nsg_sock *s = q->priv;
    int rc = ns_tcp_listen(g.ns, s->sd, backlog);
    g.dirty = true;
    return rc;
}

int nsglue_accept(struct core_queue *q, struct core_op *op)
{
    REFUSE_IN_CHILD();
    struct nsg_sock *s = q->priv;
    submit(s, &s->accepts, op, accept_try);
    return 0;
}

/* connect(2) errors that mean the request itself was wrong; the others are its outcome. */
static bool connect_error_is_argument(int e)
{
    return e == EINVAL || e == EAFNOSUPPORT || e == EISCONN || e == EALREADY || e == EBADF || e == EADDRNOTAVAIL ||
           e == ENOSYS || e == EOPNOTSUPP;
}

/* AF_UNSPEC on a UDP socket: drop the peer, keep the local port (netstack has no disconnect,
 * so the socket is replaced by a fresh one bound to the same address). */
static int udp_disconnect(struct nsg_sock *s)
{
    if (!s->udp_connected)
        return 0;
    struct ns_sockaddr local;
    if (ns_udp_getsockname(g.ns, s->sd, &local) < 0)
        return -EBADF;
    int sd = ns_udp_socket(g.ns);
    if (sd < 0)
        return sd;
    ns_udp_close(g.ns, s->sd);
    g.udp[s->sd] = NULL;
    s->sd = sd;
    g.udp[sd] = s;
    local.addr = s->udp_bound ? s->udp_local.addr : 0;
    int rc = ns_udp_bind(g.ns, sd, &local);
    s->udp_connected = false;
    return rc;
}

int nsglue_connect(struct core_queue *q, struct core_op *op)
{
    REFUSE_IN_CHILD();
    struct nsg_sock *s = q->priv;
    g.dirty = true;
    if (s->kind == CORE_Q_UDP) {
        int rc;
        if (op->addr.sin_family == AF_UNSPEC) {
            rc = udp_disconnect(s);
        } else {
            struct ns_sockaddr r = to_ns(&op->addr);
            rc = ns_udp_connect(g.ns, s->sd, &r);
            if (rc == 0) {
                s->udp_connected = true;
                s->udp_peer = r;
            }
        }
        if (rc < 0)
            return rc;
        core_op_complete_connect(op);
        g.st.glue_ops_completed++;
        return 0;
    }
    struct ns_sockaddr r = to_ns(&op->addr);
    int rc = ns_tcp_connect(g.ns, s->sd, &r);
    ns_flush(g.ns);
    if (rc == 0) {
        core_op_complete_connect(op);
        g.st.glue_ops_completed++;
        return 0;
    }
    if (rc == -EINPROGRESS) {
        core_oplist_push(&s->connects, op);
        op->deadline_ns = 0;
        if (g.connect_timeout_ns > 0) {
            op->deadline_ns = core_now_ns() + g.connect_timeout_ns;
            dl_add(s);
        }
        /* A stack that answered at once (a local refusal) has already decided. */
        run_list(s, &s->connects, connect_check);
        if (s->connects.head == NULL)
            dl_remove(s);
        else
            timer_arm();
        return 0;
    }
    if (connect_error_is_argument(-rc))
        return rc;
    core_op_fail(op, -rc);
    g.st.glue_ops_completed++;
    return 0;
}

int nsglue_push(struct core_queue *q, struct core_op *op)
{
    REFUSE_IN_CHILD();
    struct nsg_sock *s = q->priv;
    op->progress = 0;
    submit(s, &s->pushes, op, push_try);
    /* Hand the segments to the device now: a push's latency should not wait for the next poll. */
    ns_flush(g.ns);
    return 0;
}

int nsglue_pop(struct core_queue *q, struct core_op *op)
{
    REFUSE_IN_CHILD();
    struct nsg_sock *s = q->priv;
    submit(s, &s->pops, op, pop_try);
    /* Reading may open the receive window: send the window update now. */
    if (s->kind == CORE_Q_TCP)
        ns_flush(g.ns);
    return 0;
}

int nsglue_close(struct core_queue *q)
{
    struct nsg_sock *s = q->priv;
    if (s == NULL)
        return 0;
    core_oplist_fail_all(&s->accepts, ECANCELED);
    core_oplist_fail_all(&s->connects, ECANCELED);
    core_oplist_fail_all(&s->pops, ECANCELED);
    core_oplist_fail_all(&s->pushes, ECANCELED);
    if (!g.forked) {
        if (s->kind == CORE_Q_TCP)
            ns_tcp_close(g.ns, s->sd);
        else
            ns_udp_close(g.ns, s->sd);
        ns_flush(g.ns);
        g.dirty = true;
    }
    sock_free(s);
    q->priv = NULL;
    return 0;
}

int nsglue_shutdown(struct core_queue *q, int how)
{
    REFUSE_IN_CHILD();
    struct nsg_sock *s = q->priv;
    if (s->kind == CORE_Q_UDP) {
        /* As Linux: only a connected datagram socket can be shut down; SHUT_RD makes pops return 0 bytes. */
        if (!s->udp_connected)
            return -ENOTCONN;
        if (how != SHUT_WR)
            s->udp_shut_rd = true;
    } else {
        int rc = ns_tcp_shutdown(g.ns, s->sd, how);
        if (rc < 0)
            return rc;
        ns_flush(g.ns);
    }
    /* Pending pops now see EOF and pending pushes EPIPE; settle them without waiting for an event. */
    sock_progress(s);
    g.dirty = true;
    return 0;
}

/* ---- options -------------------------------------------------------------------- */

static int tcp_opt_of(int level, int optname, enum ns_sockopt *out)
{
    if (level == SOL_SOCKET) {
        switch (optname) {
        case SO_REUSEADDR: *out = NS_SO_REUSEADDR; return 0;
        case SO_KEEPALIVE: *out = NS_SO_KEEPALIVE; return 0;
        case SO_RCVBUF: *out = NS_SO_RCVBUF; return 0;
        case SO_SNDBUF: *out = NS_SO_SNDBUF; return 0;
        case SO_ERROR: *out = NS_SO_ERROR; return 0;
        default: return -ENOPROTOOPT;
        }
    }
    if (level == IPPROTO_TCP) {
        switch (optname) {
        case TCP_NODELAY: *out = NS_TCP_NODELAY; return 0;
        case TCP_MAXSEG: *out = NS_TCP_MAXSEG; return 0;
        case TCP_KEEPIDLE: *out = NS_TCP_KEEPIDLE; return 0;
        case TCP_KEEPINTVL: *out = NS_TCP_KEEPINTVL; return 0;
        case TCP_KEEPCNT: *out = NS_TCP_KEEPCNT; return 0;
        case TCP_USER_TIMEOUT: *out = NS_TCP_USER_TIMEOUT; return 0;
        default: return -ENOPROTOOPT;
        }
    }
    return -ENOPROTOOPT;
}

static int cc_by_name(const char *name, size_t len, int *cc)
{
    char n[16];
    if (len >= sizeof(n))
        len = sizeof(n) - 1;
    memcpy(n, name, len);
    n[len] = '\0';
    if (strcmp(n, "cubic") == 0)
        *cc = NS_CC_CUBIC;
    else if (strcmp(n, "reno") == 0 || strcmp(n, "newreno") == 0)
        *cc = NS_CC_NEWRENO;
    else
        return -ENOENT; /* as Linux for a congestion control it does not have */
    return 0;
}

int nsglue_setsockopt(struct core_queue *q, int level, int optname, const void *optval, socklen_t optlen)
{
    REFUSE_IN_CHILD();
    struct nsg_sock *s = q->priv;
    if (level == SOL_SOCKET && optname == SO_LINGER) {
        if (optlen < sizeof(struct linger))
            return -EINVAL;
        struct linger l;
        memcpy(&l, optval, sizeof(l));
        if (s->kind == CORE_Q_TCP) {
            int rc = ns_tcp_setsockopt(g.ns, s->sd, NS_SO_LINGER0, l.l_onoff && l.l_linger == 0);
            if (rc < 0)
                return rc;
        }
        s->linger = l;
        return 0;
    }
    if (level == IPPROTO_TCP && optname == TCP_CONGESTION) {
        if (s->kind != CORE_Q_TCP)
            return -ENOPROTOOPT;
        int cc;
        int rc = cc_by_name(optval, optlen, &cc);
        return rc < 0 ? rc : ns_tcp_setsockopt(g.ns, s->sd, NS_TCP_CONGESTION, cc);
    }
    if (optlen < sizeof(int))
        return -EINVAL;
    int v;
    memcpy(&v, optval, sizeof(v));
    if (level == SOL_SOCKET && optname == SO_REUSEPORT) {
        /* Accepted and remembered; netstack has one socket per port, so it changes nothing. */
        s->opt_reuseport = v != 0;
        return 0;
    }
    if (level == SOL_SOCKET && optname == SO_ERROR)
        return -ENOPROTOOPT; /* get only, as Linux */
    if (s->kind == CORE_Q_UDP) {
        if (level != SOL_SOCKET)
            return -ENOPROTOOPT;
        switch (optname) {
        case SO_REUSEADDR: s->opt_udp_reuseaddr = v != 0; return 0;
        case SO_RCVBUF: s->opt_udp_rcvbuf = v; return 0;
        case SO_SNDBUF: s->opt_udp_sndbuf = v; return 0;
        default: return -ENOPROTOOPT;
        }
    }
    enum ns_sockopt o;
    int rc = tcp_opt_of(level, optname, &o);
    if (rc < 0)
        return rc;
    rc = ns_tcp_setsockopt(g.ns, s->sd, o, v);
    ns_flush(g.ns); /* TCP_NODELAY may release a held segment */
    return rc;
}

static int put_int(void *optval, socklen_t *optlen, int v)
{
    /* As Linux: a short buffer gets the first bytes, and optlen says how many. */
    socklen_t n = *optlen < sizeof(int) ? *optlen : (socklen_t)sizeof(int);
    memcpy(optval, &v, n);
    *optlen = n;
    return 0;
}

static void fill_tcp_info(const struct ns_tcp_info *ti, struct tcp_info *out)
{
    static const uint8_t state_map[] = {
        [NS_TCP_CLOSED] = TCP_CLOSE,         [NS_TCP_LISTEN] = TCP_LISTEN,
        [NS_TCP_SYN_SENT] = TCP_SYN_SENT,    [NS_TCP_SYN_RECEIVED] = TCP_SYN_RECV,
        [NS_TCP_ESTABLISHED] = TCP_ESTABLISHED, [NS_TCP_FIN_WAIT_1] = TCP_FIN_WAIT1,
        [NS_TCP_FIN_WAIT_2] = TCP_FIN_WAIT2, [NS_TCP_CLOSE_WAIT] = TCP_CLOSE_WAIT,
        [NS_TCP_CLOSING] = TCP_CLOSING,      [NS_TCP_LAST_ACK] = TCP_LAST_ACK,
        [NS_TCP_TIME_WAIT] = TCP_TIME_WAIT,
    };
    memset(out, 0, sizeof(*out));
    out->tcpi_state = (unsigned)ti->state < sizeof(state_map) ? state_map[ti->state] : TCP_CLOSE;
    out->tcpi_snd_mss = ti->snd_mss;
    out->tcpi_rcv_mss = ti->rcv_mss;
    out->tcpi_rto = ti->rto_ms * 1000u;
    out->tcpi_rtt = ti->srtt_us;
    out->tcpi_rttvar = ti->rttvar_us;
    out->tcpi_snd_ssthresh = ti->snd_mss ? ti->ssthresh / ti->snd_mss : 0;
    out->tcpi_snd_cwnd = ti->snd_mss ? ti->cwnd / ti->snd_mss : 0;
    out->tcpi_total_retrans = (uint32_t)ti->retransmits;
    if (ti->ts_ok)
        out->tcpi_options |= TCPI_OPT_TIMESTAMPS;
    if (ti->sack_ok)
        out->tcpi_options |= TCPI_OPT_SACK;
    if (ti->snd_wscale != 0xff) {
        out->tcpi_options |= TCPI_OPT_WSCALE;
        out->tcpi_snd_wscale = ti->snd_wscale & 0xf;
        out->tcpi_rcv_wscale = ti->rcv_wscale & 0xf;
    }
}

int nsglue_getsockopt(struct core_queue *q, int level, int optname, void *optval, socklen_t *optlen)
{
    REFUSE_IN_CHILD();
    struct nsg_sock *s = q->priv;
    bool tcp = s->kind == CORE_Q_TCP;
    if (level == SOL_SOCKET) {
        switch (optname) {
        case SO_LINGER: {
            socklen_t n = *optlen < sizeof(s->linger) ? *optlen : (socklen_t)sizeof(s->linger);
            memcpy(optval, &s->linger, n);
            *optlen = n;
            return 0;
        }
        case SO_REUSEPORT: return put_int(optval, optlen, s->opt_reuseport);
        case SO_TYPE: return put_int(optval, optlen, tcp ? SOCK_STREAM : SOCK_DGRAM);
        case SO_PROTOCOL: return put_int(optval, optlen, tcp ? IPPROTO_TCP : IPPROTO_UDP);
        case SO_DOMAIN: return put_int(optval, optlen, AF_INET);
        case SO_ACCEPTCONN: return put_int(optval, optlen, q->state == CORE_QS_LISTENING);
        default: break;
        }
        if (!tcp) {
            switch (optname) {
            case SO_REUSEADDR: return put_int(optval, optlen, s->opt_udp_reuseaddr);
            case SO_RCVBUF: return put_int(optval, optlen, s->opt_udp_rcvbuf ? s->opt_udp_rcvbuf : 212992);
            case SO_SNDBUF: return put_int(optval, optlen, s->opt_udp_sndbuf ? s->opt_udp_sndbuf : 212992);
            case SO_ERROR: return put_int(optval, optlen, 0);
            default: return -ENOPROTOOPT;
            }
        }
    }
    if (!tcp)
        return -ENOPROTOOPT;
    if (level == IPPROTO_TCP && optname == TCP_INFO) {
        struct ns_tcp_info ti;
        int rc = ns_tcp_info(g.ns, s->sd, &ti);
        if (rc < 0)
            return rc;
        struct tcp_info out;
        fill_tcp_info(&ti, &out);
        socklen_t n = *optlen < sizeof(out) ? *optlen : (socklen_t)sizeof(out);
        memcpy(optval, &out, n);
        *optlen = n;
        return 0;
    }
    if (level == IPPROTO_TCP && optname == TCP_CONGESTION) {
        int cc = 0;
        int rc = ns_tcp_getsockopt(g.ns, s->sd, NS_TCP_CONGESTION, &cc);
        if (rc < 0)
            return rc;
        char name[16] = "";
        strcpy(name, cc == NS_CC_NEWRENO ? "reno" : "cubic");
        socklen_t n = *optlen < sizeof(name) ? *optlen : (socklen_t)sizeof(name);
        memcpy(optval, name, n);
        *optlen = n;
        return 0;
    }
    enum ns_sockopt o;
    int rc = tcp_opt_of(level, optname, &o);
    if (rc < 0)
        return rc;
    int v = 0;
    rc = ns_tcp_getsockopt(g.ns, s->sd, o, &v);
    if (rc < 0)
        return rc;
    if (o == NS_SO_ERROR && v == 0 && s->conn_err != 0)
        v = 0; /* already reported through a completion; the kernel clears it too */
    return put_int(optval, optlen, v);
}

int nsglue_getpeername(struct core_queue *q, struct sockaddr_in *addr)
{
    REFUSE_IN_CHILD();
    struct nsg_sock *s = q->priv;
    if (s->kind == CORE_Q_UDP) {
        if (!s->udp_connected)
            return -ENOTCONN;
        *addr = from_ns(&s->udp_peer);
        return 0;
    }
    struct ns_sockaddr r;
    int rc = ns_tcp_getpeername(g.ns, s->sd, &r);
    if (rc == 0)
        *addr = from_ns(&r);
    return rc;
}

int nsglue_getsockname(struct core_queue *q, struct sockaddr_in *addr)
{
    REFUSE_IN_CHILD();
    struct nsg_sock *s = q->priv;
    struct ns_sockaddr l;
    int rc = s->kind == CORE_Q_TCP ? ns_tcp_getsockname(g.ns, s->sd, &l) : ns_udp_getsockname(g.ns, s->sd, &l);
    if (rc == 0)
        *addr = from_ns(&l);
    return rc;
}

/* ---- poll ---------------------------------------------------------------------- */

/*
 * A connect that outlived tcp_socket_options.connect_timeout_ms fails with ETIMEDOUT. Its
 * half-open connection is dropped by giving the queue a fresh netstack socket, so it cannot
 * become connected behind the application's back (and the queue may connect again).
 */
static int expire_connects(uint64_t now)
{
    int done = 0;
    while (g.dl_head != NULL) {
        struct nsg_sock *s = g.dl_head;
        struct core_op *op = s->connects.head;
        if (op != NULL && op->deadline_ns > now)
            break;
        dl_remove(s);
        if (op == NULL)
            continue;
        int sd = ns_tcp_socket(g.ns);
        if (sd >= 0 && tcp_table_put(sd, s) == 0) {
            ns_tcp_close(g.ns, s->sd);
            if (s->sd < g.ntcp && g.tcp[s->sd] == s)
                g.tcp[s->sd] = NULL;
            s->sd = sd;
            apply_tcp_defaults(sd);
        } else {
            if (sd >= 0)
                ns_tcp_close(g.ns, sd);
            LOG_WARN("%s: connect timed out but no socket to replace the half-open one", g.libos);
        }
        complete_fail(&s->connects, op, ETIMEDOUT);
        done++;
    }
    return done;
}

int nsglue_poll(void)
{
    if (!g.up || g.forked)
        return 0;
    if (atomic_load_explicit(&g.loan_returned, memory_order_relaxed) != NULL)
        loans_reclaim();
    uint64_t now = core_now_ns();
    if (g.armed != 0 && now >= g.armed) {
        uint64_t ticks;
        /* Drain it so the level-triggered timerfd stops waking the core. */
        if (read(g.tfd, &ticks, sizeof(ticks)) > 0)
            g.st.glue_timer_wakeups++;
        g.armed = 0;
        g.dirty = true;
    }
    int rx = ns_poll(g.ns, now);
    int done = 0;
    struct ns_event ev[NSGLUE_EVENT_BATCH];
    int n;
    do {
        n = ns_events(g.ns, ev, NSGLUE_EVENT_BATCH);
        for (int i = 0; i < n; i++) {
            struct nsg_sock *s = sock_of(ev[i].proto, ev[i].sd);
            if (s != NULL)
                done += sock_progress(s);
        }
    } while (n == NSGLUE_EVENT_BATCH);
    /* UDP readiness need not be reported through ns_events: retry the few sockets that wait. */
    if (rx > 0 || g.uw != NULL) {
        struct nsg_sock *s = g.uw, *next;
        for (; s != NULL; s = next) {
            next = s->uw_next;
            done += sock_progress(s);
        }
    }
    if (g.dl_head != NULL)
        done += expire_connects(now);
    ns_flush(g.ns);
    timer_arm();
    if (rx > 0 || done > 0 || g.dirty)
        stats_publish();
    return done;
}

int nsglue_wait_fd(void)
{
    if (!g.up || g.forked)
        return -ENOTSUP;
    timer_arm();
    return g.epfd;
}
