/* catnap: the LibOS that runs every queue over a non-blocking Linux kernel socket, driven by one edge-triggered epoll set. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#include "config.h"
#include "libos.h"
#include "log.h"

#define CATNAP_MAX_EVENTS 128
#define CATNAP_DEFAULT_POP_SIZE 65536u
/* Large enough for any IPv4 datagram, so a UDP pop never truncates. */
#define CATNAP_UDP_POP_SIZE 65536u
/* Zero-length pops after end of stream still hand out a real buffer so demi_sgafree works. */
#define CATNAP_EOF_POP_SIZE 1u

/*
 * Per-queue state. Every pending operation waits in the list of its kind, in
 * submission order; only the head of a list is ever retried, which is what keeps
 * pops (and pushes) completing in order.
 */
struct catnap_sock {
    int fd;
    enum core_qkind kind;
    /* A TCP pop already saw end of stream: the API wants every later pop to say so again. */
    bool eof;
    /*
     * First hard error (ECONNRESET, ETIMEDOUT ...) seen on a TCP connection. The
     * kernel reports such an error to one syscall only and then answers recv with
     * 0, so without this a reset seen by a push would look like a clean EOF to pops.
     */
    int conn_err;
    /*
     * The last receive said EAGAIN and no EPOLLIN edge came since: a new pop
     * cannot succeed, so it waits for the edge instead of paying a recv that must
     * fail (one system call per message saved in request-response traffic).
     */
    bool rx_dry;
    /* EPOLLRDHUP/HUP/ERR was reported: a FIN may wait behind the data, so a short read proves nothing. */
    bool rx_hup;
    struct core_oplist accepts;
    struct core_oplist connects;
    struct core_oplist pops;
    struct core_oplist pushes;
    /* Link in the connect deadline list (only while a connect with a deadline is pending). */
    struct catnap_sock *dl_next, *dl_prev;
    bool on_dl;
    /* Link in the list of every socket, so fini can release what tests leave open. */
    struct catnap_sock *all_next, *all_prev;
};

static struct {
    bool up;
    int epfd;
    /* Wakes a blocked wait when the earliest connect deadline passes; -1 without connect_timeout_ms. */
    int timerfd;
    uint32_t pop_size;
    uint64_t connect_timeout_ns;
    /* tcp_socket_options from the configuration, applied to each new TCP socket. */
    bool nodelay;
    bool keepalive;
    int keepidle_s;
    int keepintvl_s;
    bool linger;
    int linger_s;
    /*
     * Sockets with a timed connect pending. Every connect gets the same timeout,
     * so appending keeps the list sorted by deadline and the head is the earliest.
     */
    struct catnap_sock *dl_head, *dl_tail;
    struct catnap_sock *all_head;
    struct epoll_event events[CATNAP_MAX_EVENTS];
} cn = { .epfd = -1, .timerfd = -1 };

/* epoll data.ptr of the timerfd; its address cannot collide with a catnap_sock. */
static char timer_tag;

/* ---- helpers ---------------------------------------------------------------- */

static bool is_again(int e)
{
    return e == EAGAIN || e == EWOULDBLOCK;
}

static int ms_to_s_ceil(uint32_t ms)
{
    return (int)((ms + 999u) / 1000u);
}

/* Failing to apply a configured default is not worth refusing the socket over. */
static void apply_tcp_defaults(int fd)
{
    int one = 1;

    if (cn.nodelay && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        LOG_WARN("catnap: TCP_NODELAY on fd %d: %s", fd, strerror(errno));
    if (cn.keepalive) {
        if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) < 0)
            LOG_WARN("catnap: SO_KEEPALIVE on fd %d: %s", fd, strerror(errno));
        if (cn.keepidle_s > 0 &&
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &cn.keepidle_s, sizeof(cn.keepidle_s)) < 0)
            LOG_WARN("catnap: TCP_KEEPIDLE on fd %d: %s", fd, strerror(errno));
        if (cn.keepintvl_s > 0 &&
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &cn.keepintvl_s, sizeof(cn.keepintvl_s)) < 0)
            LOG_WARN("catnap: TCP_KEEPINTVL on fd %d: %s", fd, strerror(errno));
    }
    if (cn.linger) {
        struct linger l = { .l_onoff = 1, .l_linger = cn.linger_s };
        if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)) < 0)
            LOG_WARN("catnap: SO_LINGER on fd %d: %s", fd, strerror(errno));
    }
}

/* Wrap fd in a catnap_sock and add it to the epoll set. On failure the caller still owns fd. */
static int sock_open(int fd, enum core_qkind kind, struct catnap_sock **out)
{
    struct catnap_sock *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->fd = fd;
    s->kind = kind;
    /*
     * Edge-triggered: the core sleeps on the epoll fd, and a level-triggered
     * registration would keep it readable for as long as a socket held data no
     * pop asked for. The price is that every operation tries its syscall at once
     * and every event retries the pending ones until the kernel says EAGAIN.
     */
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
        .data.ptr = s,
    };
    if (epoll_ctl(cn.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int e = errno;
        free(s);
        return -e;
    }
    s->all_next = cn.all_head;
    if (cn.all_head)
        cn.all_head->all_prev = s;
    cn.all_head = s;
    *out = s;
    return 0;
}

static void sock_destroy(struct catnap_sock *s)
{
    if (s->all_prev)
        s->all_prev->all_next = s->all_next;
    else
        cn.all_head = s->all_next;
    if (s->all_next)
        s->all_next->all_prev = s->all_prev;
    epoll_ctl(cn.epfd, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    free(s);
}

/* ---- connect deadlines ------------------------------------------------------- */

/* Point the timerfd at the earliest pending deadline, or disarm it. */
static void timer_arm(void)
{
    if (cn.timerfd < 0)
        return;
    struct itimerspec its;
    memset(&its, 0, sizeof(its));
    if (cn.dl_head != NULL && cn.dl_head->connects.head != NULL) {
        uint64_t now = core_now_ns();
        uint64_t dl = cn.dl_head->connects.head->deadline_ns;
        /* A zero it_value would disarm the timer; an overdue deadline must fire at once. */
        uint64_t rel = dl > now ? dl - now : 1;
        its.it_value.tv_sec = (time_t)(rel / 1000000000u);
        its.it_value.tv_nsec = (long)(rel % 1000000000u);
    }
    if (timerfd_settime(cn.timerfd, 0, &its, NULL) < 0)
        LOG_WARN("catnap: timerfd_settime: %s", strerror(errno));
}

static void dl_add(struct catnap_sock *s)
{
    if (s->on_dl)
        return;
    s->dl_next = NULL;
    s->dl_prev = cn.dl_tail;
    if (cn.dl_tail)
        cn.dl_tail->dl_next = s;
    else
        cn.dl_head = s;
    cn.dl_tail = s;
    s->on_dl = true;
    if (cn.dl_head == s)
        timer_arm();
}

static void dl_remove(struct catnap_sock *s)
{
    if (!s->on_dl)
        return;
    bool was_head = cn.dl_head == s;
    if (s->dl_prev)
        s->dl_prev->dl_next = s->dl_next;
    else
        cn.dl_head = s->dl_next;
    if (s->dl_next)
        s->dl_next->dl_prev = s->dl_prev;
    else
        cn.dl_tail = s->dl_prev;
    s->dl_next = s->dl_prev = NULL;
    s->on_dl = false;
    if (was_head)
        timer_arm();
}

/*
 * Stop the kernel's own connect attempt, so a socket whose connect we declared
 * timed out cannot become connected behind the application's back.
 */
static void abort_connect(struct catnap_sock *s)
{
    struct sockaddr sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_family = AF_UNSPEC;
    if (connect(s->fd, &sa, sizeof(sa)) < 0)
        LOG_DEBUG("catnap: disconnect of fd %d: %s", s->fd, strerror(errno));
    /* Disconnecting a SYN_SENT socket leaves ECONNRESET in SO_ERROR; the app already has ETIMEDOUT. */
    int err;
    socklen_t len = sizeof(err);
    (void)getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
}

static int expire_connects(void)
{
    int done = 0;
    uint64_t now = core_now_ns();
    bool changed = false;

    while (cn.dl_head != NULL) {
        struct catnap_sock *s = cn.dl_head;
        struct core_op *op = s->connects.head;
        if (op != NULL && op->deadline_ns > now)
            break;
        /* Unlink by hand so the timer is re-armed once, after the loop. */
        cn.dl_head = s->dl_next;
        if (cn.dl_head)
            cn.dl_head->dl_prev = NULL;
        else
            cn.dl_tail = NULL;
        s->dl_next = s->dl_prev = NULL;
        s->on_dl = false;
        changed = true;
        if (op == NULL)
            continue;
        core_oplist_remove(&s->connects, op);
        abort_connect(s);
        core_op_fail(op, ETIMEDOUT);
        done++;
    }
    if (changed)
        timer_arm();
    return done;
}

/* ---- per-kind attempts ---------------------------------------------------------
 * Each *_try works on the head of its list and returns true when it finished
 * that op (unlinked and completed or failed), false when the kernel said EAGAIN
 * and the op stays at the head until the next event.
 */

/* accept(2) errors that concern one dead incoming connection, not the listener (see accept(2)). */
static bool accept_error_is_transient(int e)
{
    switch (e) {
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
        return true;
    default:
        return false;
    }
}

static bool accept_try(struct catnap_sock *ls, struct core_op *op)
{
    struct sockaddr_in peer;
    socklen_t plen;
    int fd;

    for (;;) {
        memset(&peer, 0, sizeof(peer));
        plen = sizeof(peer);
        fd = accept4(ls->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0)
            break;
        int e = errno;
        if (is_again(e))
            return false;
        if (accept_error_is_transient(e))
            continue;
        core_oplist_remove(&ls->accepts, op);
        core_op_fail(op, e);
        return true;
    }

    core_oplist_remove(&ls->accepts, op);
    struct catnap_sock *ns = NULL;
    int ret = sock_open(fd, CORE_Q_TCP, &ns);
    if (ret < 0) {
        close(fd);
        core_op_fail(op, -ret);
        return true;
    }
    apply_tcp_defaults(fd);
    struct core_queue *nq = NULL;
    int qd = core_queue_new(CORE_Q_TCP, ns, &nq);
    if (qd < 0) {
        sock_destroy(ns);
        core_op_fail(op, -qd);
        return true;
    }
    core_op_complete_accept(op, qd, &peer);
    return true;
}

/* Is the kernel still working on this socket's connect? */
static bool tcp_still_connecting(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return false;
    return ti.tcpi_state == TCP_SYN_SENT;
}

/*
 * Decide a pending connect from the socket's state rather than the event bits:
 * with edge triggering an event only says that something changed.
 */
static bool connect_check(struct catnap_sock *s, struct core_op *op)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err == 0) {
        struct sockaddr_in peer;
        socklen_t plen = sizeof(peer);
        if (getpeername(s->fd, (struct sockaddr *)&peer, &plen) == 0) {
            core_oplist_remove(&s->connects, op);
            dl_remove(s);
            core_op_complete_connect(op);
            return true;
        }
        err = errno;
        if (err == ENOTCONN) {
            if (tcp_still_connecting(s->fd))
                return false;
            /* Failed, but someone (a getsockopt(SO_ERROR) by the app) already took the reason. */
            err = ECONNABORTED;
        }
    }
    core_oplist_remove(&s->connects, op);
    dl_remove(s);
    core_op_fail(op, err);
    return true;
}

static bool push_try(struct catnap_sock *s, struct core_op *op)
{
    /* The application keeps the buffer intact until completion, so it is sent in place. */
    const char *buf = op->sga.sga_segs[0].sgaseg_buf;
    uint32_t len = op->sga.sga_segs[0].sgaseg_len;
    int err = 0;

    if (s->kind == CORE_Q_UDP) {
        ssize_t n;
        do {
            if (op->has_addr)
                n = sendto(s->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT,
                           (const struct sockaddr *)&op->addr, sizeof(op->addr));
            else
                n = send(s->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            err = errno;
            if (is_again(err))
                return false;
        }
    } else {
        while (op->progress < len) {
            ssize_t n = send(s->fd, buf + op->progress, len - op->progress, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n >= 0) {
                op->progress += (uint32_t)n;
                continue;
            }
            err = errno;
            if (err == EINTR)
                continue;
            if (is_again(err))
                return false;
            /* EPIPE only says our side is shut; anything else is the connection's fate. */
            if (err != EPIPE && s->conn_err == 0)
                s->conn_err = err;
            break;
        }
    }

    core_oplist_remove(&s->pushes, op);
    if (err != 0)
        core_op_fail(op, err);
    else
        core_op_complete_push(op);
    return true;
}

static bool pop_try_tcp(struct catnap_sock *s, struct core_op *op)
{
    demi_sgarray_t sga = core_sga_alloc(s->eof ? CATNAP_EOF_POP_SIZE : cn.pop_size);
    if (sga.sga_numsegs == 0) {
        core_oplist_remove(&s->pops, op);
        core_op_fail(op, ENOMEM);
        return true;
    }
    if (s->eof) {
        sga.sga_segs[0].sgaseg_len = 0;
        core_oplist_remove(&s->pops, op);
        core_op_complete_pop(op, &sga);
        return true;
    }

    ssize_t n;
    do
        n = recv(s->fd, sga.sga_segs[0].sgaseg_buf, cn.pop_size, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        int e = errno;
        core_sga_free(&sga);
        if (is_again(e)) {
            s->rx_dry = true;
            return false;
        }
        if (s->conn_err == 0)
            s->conn_err = e;
        core_oplist_remove(&s->pops, op);
        core_op_fail(op, e);
        return true;
    }
    core_oplist_remove(&s->pops, op);
    /*
     * Data that arrived before a reset is still delivered; once it is drained the
     * kernel answers 0, which after an error means the error, not a clean close.
     */
    if (n == 0 && s->conn_err != 0) {
        core_sga_free(&sga);
        core_op_fail(op, s->conn_err);
        return true;
    }
    if (n == 0)
        s->eof = true;
    else if ((size_t)n < cn.pop_size && !s->rx_hup)
        s->rx_dry = true; /* a short read took everything there was; new data or a FIN brings a new edge */
    sga.sga_segs[0].sgaseg_len = (uint32_t)n;
    core_op_complete_pop(op, &sga);
    return true;
}

static bool pop_try_udp(struct catnap_sock *s, struct core_op *op)
{
    demi_sgarray_t sga = core_sga_alloc(CATNAP_UDP_POP_SIZE);
    if (sga.sga_numsegs == 0) {
        core_oplist_remove(&s->pops, op);
        core_op_fail(op, ENOMEM);
        return true;
    }

    struct sockaddr_in from;
    socklen_t flen;
    ssize_t n;
    do {
        memset(&from, 0, sizeof(from));
        flen = sizeof(from);
        n = recvfrom(s->fd, sga.sga_segs[0].sgaseg_buf, CATNAP_UDP_POP_SIZE, MSG_DONTWAIT,
                     (struct sockaddr *)&from, &flen);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        int e = errno;
        core_sga_free(&sga);
        if (is_again(e)) {
            s->rx_dry = true;
            return false;
        }
        /* Datagram errors (an ICMP refusal on a connected socket) concern one exchange, not the socket. */
        core_oplist_remove(&s->pops, op);
        core_op_fail(op, e);
        return true;
    }
    core_oplist_remove(&s->pops, op);
    sga.sga_segs[0].sgaseg_len = (uint32_t)n;
    sga.sga_addr = from;
    core_op_complete_pop(op, &sga);
    return true;
}

static bool pop_try(struct catnap_sock *s, struct core_op *op)
{
    return s->kind == CORE_Q_UDP ? pop_try_udp(s, op) : pop_try_tcp(s, op);
}

/* Retry the head of l until the kernel says EAGAIN or the list is empty. */
static int run_list(struct catnap_sock *s, struct core_oplist *l,
                    bool (*try_op)(struct catnap_sock *, struct core_op *))
{
    int done = 0;
    struct core_op *op;
    while ((op = l->head) != NULL && try_op(s, op))
        done++;
    return done;
}

/* Everything an epoll event on s may have unblocked. */
static int sock_progress(struct catnap_sock *s)
{
    int done = 0;
    done += run_list(s, &s->accepts, accept_try);
    done += run_list(s, &s->connects, connect_check);
    done += run_list(s, &s->pops, pop_try);
    done += run_list(s, &s->pushes, push_try);
    return done;
}

/*
 * Queue op behind the ones already waiting; only if none was waiting try it now.
 * A waiting op means the kernel said EAGAIN and an event is due, and trying the
 * newcomer first could reorder it ahead of them.
 */
static void submit(struct catnap_sock *s, struct core_oplist *l, struct core_op *op,
                   bool (*try_op)(struct catnap_sock *, struct core_op *))
{
    bool idle = l->head == NULL;
    core_oplist_push(l, op);
    if (idle)
        try_op(s, op);
}

/* ---- ops ------------------------------------------------------------------------ */

static int catnap_init(const struct core_config *cfg)
{
    /* A delegating LibOS may bring catnap up; a second init keeps the first set-up. */
    if (cn.up)
        return 0;

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return -errno;
    int tfd = -1;
    if (cfg != NULL && cfg->connect_timeout_ms > 0) {
        tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (tfd < 0) {
            int e = errno;
            close(ep);
            return -e;
        }
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &timer_tag };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) < 0) {
            int e = errno;
            close(tfd);
            close(ep);
            return -e;
        }
    }

    cn.epfd = ep;
    cn.timerfd = tfd;
    cn.pop_size = CATNAP_DEFAULT_POP_SIZE;
    cn.connect_timeout_ns = 0;
    cn.nodelay = cn.keepalive = cn.linger = false;
    cn.keepidle_s = cn.keepintvl_s = cn.linger_s = 0;
    if (cfg != NULL) {
        if (cfg->catnap_pop_size > 0)
            cn.pop_size = cfg->catnap_pop_size;
        cn.connect_timeout_ns = (uint64_t)cfg->connect_timeout_ms * 1000000u;
        cn.nodelay = cfg->nodelay;
        cn.keepalive = cfg->keepalive_enabled;
        cn.keepidle_s = ms_to_s_ceil(cfg->keepalive_time_ms);
        cn.keepintvl_s = ms_to_s_ceil(cfg->keepalive_interval_ms);
        cn.linger = cfg->linger_enabled;
        cn.linger_s = cfg->linger_time_s > INT32_MAX ? INT32_MAX : (int)cfg->linger_time_s;
    }
    cn.dl_head = cn.dl_tail = NULL;
    cn.all_head = NULL;
    cn.up = true;
    LOG_DEBUG("catnap: up, pop size %u, connect timeout %llu ms", cn.pop_size,
              (unsigned long long)(cn.connect_timeout_ns / 1000000u));
    return 0;
}

static void catnap_fini(void)
{
    if (!cn.up)
        return;
    /*
     * Normally every queue is closed by now, but a test reset may tear the core
     * down with queues open; their operations die with the core's tables, so
     * only the kernel sockets and our structs are left to release.
     */
    while (cn.all_head != NULL)
        sock_destroy(cn.all_head);
    if (cn.timerfd >= 0)
        close(cn.timerfd);
    close(cn.epfd);
    cn.timerfd = cn.epfd = -1;
    cn.dl_head = cn.dl_tail = NULL;
    cn.up = false;
}

/*
 * After fork the child shares the parent's epoll instance: events one process
 * consumes would be lost to the other, and a socket registered by one would
 * report a data.ptr that means nothing in the other. Give the child its own set
 * holding every inherited socket; adding an edge-triggered fd reports its current
 * readiness once, so operations pending across the fork are retried.
 */
static void catnap_fork_child(void)
{
    if (!cn.up)
        return;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        LOG_ERROR("catnap: fork: epoll_create1: %s; the child cannot use inherited sockets", strerror(errno));
        return;
    }
    close(cn.epfd);
    cn.epfd = ep;
    for (struct catnap_sock *s = cn.all_head; s != NULL; s = s->all_next) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = s};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) < 0)
            LOG_ERROR("catnap: fork: re-adding fd %d: %s", s->fd, strerror(errno));
    }
    if (cn.timerfd >= 0) {
        /* The timerfd is shared too; a fresh one keeps deadlines per process. */
        close(cn.timerfd);
        cn.timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &timer_tag};
        if (cn.timerfd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, cn.timerfd, &ev) < 0)
            LOG_ERROR("catnap: fork: connect timer: %s", strerror(errno));
        else
            timer_arm();
    }
}

static int catnap_socket(struct core_queue *q, int domain, int type, int protocol)
{
    (void)domain;
    (void)type;
    int stype;
    if (q->kind == CORE_Q_TCP)
        stype = SOCK_STREAM;
    else if (q->kind == CORE_Q_UDP)
        stype = SOCK_DGRAM;
    else
        return -ENOTSUP;

    int fd = socket(AF_INET, stype | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
    if (fd < 0)
        return -errno;
    struct catnap_sock *s;
    int ret = sock_open(fd, q->kind, &s);
    if (ret < 0) {
        close(fd);
        return ret;
    }
    if (q->kind == CORE_Q_TCP)
        apply_tcp_defaults(fd);
    q->priv = s;
    return 0;
}

static int catnap_bind(struct core_queue *q, const struct sockaddr_in *addr)
{
    struct catnap_sock *s = q->priv;
    if (bind(s->fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0)
        return -errno;
    return 0;
}

static int catnap_listen(struct core_queue *q, int backlog)
{
    struct catnap_sock *s = q->priv;
    if (listen(s->fd, backlog) < 0)
        return -errno;
    return 0;
}

static int catnap_accept(struct core_queue *q, struct core_op *op)
{
    struct catnap_sock *s = q->priv;
    submit(s, &s->accepts, op, accept_try);
    return 0;
}

/* connect(2) errors that mean the request itself was wrong; all others are the outcome of trying. */
static bool connect_error_is_argument(int e)
{
    switch (e) {
    case EINVAL:
    case EAFNOSUPPORT:
    case EISCONN:
    case EALREADY:
    case EBADF:
    case ENOTSOCK:
    case EFAULT:
    case EPROTOTYPE:
        return true;
    default:
        return false;
    }
}

static int catnap_connect(struct core_queue *q, struct core_op *op)
{
    struct catnap_sock *s = q->priv;
    int r = connect(s->fd, (const struct sockaddr *)&op->addr, sizeof(op->addr));
    /*
     * After an earlier non-blocking attempt failed (and we took its error with
     * SO_ERROR), the kernel answers the next connect() with ECONNABORTED and
     * resets the socket; a blocking socket would have started a new attempt.
     * Start it.
     */
    if (r < 0 && errno == ECONNABORTED)
        r = connect(s->fd, (const struct sockaddr *)&op->addr, sizeof(op->addr));
    if (r == 0) {
        core_op_complete_connect(op);
        return 0;
    }
    int e = errno;
    /* An interrupted connect carries on in the kernel just like one in progress. */
    if (s->kind == CORE_Q_TCP && (e == EINPROGRESS || e == EINTR)) {
        op->deadline_ns = 0;
        core_oplist_push(&s->connects, op);
        if (cn.connect_timeout_ns > 0 && cn.timerfd >= 0) {
            op->deadline_ns = core_now_ns() + cn.connect_timeout_ns;
            dl_add(s);
        }
        return 0;
    }
    if (connect_error_is_argument(e))
        return -e;
    core_op_fail(op, e);
    return 0;
}

static int catnap_push(struct core_queue *q, struct core_op *op)
{
    struct catnap_sock *s = q->priv;
    op->progress = 0;
    submit(s, &s->pushes, op, push_try);
    return 0;
}

static int catnap_pop(struct core_queue *q, struct core_op *op)
{
    struct catnap_sock *s = q->priv;
    if (s->rx_dry && !s->eof)
        core_oplist_push(&s->pops, op); /* the next EPOLLIN edge retries it */
    else
        submit(s, &s->pops, op, pop_try);
    return 0;
}

static int catnap_close(struct core_queue *q)
{
    struct catnap_sock *s = q->priv;
    if (s == NULL)
        return 0;
    core_oplist_fail_all(&s->accepts, ECANCELED);
    core_oplist_fail_all(&s->connects, ECANCELED);
    core_oplist_fail_all(&s->pops, ECANCELED);
    core_oplist_fail_all(&s->pushes, ECANCELED);
    dl_remove(s);
    /* With SO_LINGER {1, 0} set by the app, this close sends the RST it asked for. */
    sock_destroy(s);
    q->priv = NULL;
    return 0;
}

static int catnap_shutdown(struct core_queue *q, int how)
{
    struct catnap_sock *s = q->priv;
    if (shutdown(s->fd, how) < 0)
        return -errno;
    s->rx_dry = false;
    /* Pending pops now see EOF and pending pushes EPIPE; settle them without waiting for an event. */
    sock_progress(s);
    return 0;
}

/* Options handed through to the kernel; anything else is ENOPROTOOPT. */
/*
 * Options go to the kernel socket as they are: catnap's sockets are kernel
 * sockets, so the kernel's answers (values, errors, ENOPROTOOPT/EOPNOTSUPP for
 * what it does not know) are exactly Linux's. Nothing a program can set
 * changes how catnap drives the socket: it stays non-blocking and edge-triggered.
 */
static int catnap_setsockopt(struct core_queue *q, int level, int optname, const void *optval,
                             socklen_t optlen)
{
    struct catnap_sock *s = q->priv;
    if (setsockopt(s->fd, level, optname, optval, optlen) < 0)
        return -errno;
    return 0;
}

static int catnap_getsockopt(struct core_queue *q, int level, int optname, void *optval,
                             socklen_t *optlen)
{
    struct catnap_sock *s = q->priv;
    if (getsockopt(s->fd, level, optname, optval, optlen) < 0)
        return -errno;
    return 0;
}

static int catnap_getpeername(struct core_queue *q, struct sockaddr_in *addr)
{
    struct catnap_sock *s = q->priv;
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    memset(&a, 0, sizeof(a));
    if (getpeername(s->fd, (struct sockaddr *)&a, &len) < 0)
        return -errno;
    *addr = a;
    return 0;
}

static int catnap_getsockname(struct core_queue *q, struct sockaddr_in *addr)
{
    struct catnap_sock *s = q->priv;
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    memset(&a, 0, sizeof(a));
    if (getsockname(s->fd, (struct sockaddr *)&a, &len) < 0)
        return -errno;
    *addr = a;
    return 0;
}

static int catnap_poll(void)
{
    int done = 0;
    int n = epoll_wait(cn.epfd, cn.events, CATNAP_MAX_EVENTS, 0);

    /* Ops run under the core lock, so no close can free a socket between epoll_wait and here. */
    for (int i = 0; i < n; i++) {
        void *p = cn.events[i].data.ptr;
        if (p == &timer_tag) {
            uint64_t ticks;
            /* Drain it so the level-triggered timerfd stops waking the core. */
            if (read(cn.timerfd, &ticks, sizeof(ticks)) < 0 && !is_again(errno))
                LOG_WARN("catnap: timerfd read: %s", strerror(errno));
            continue;
        }
        struct catnap_sock *s = p;
        if (cn.events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            s->rx_dry = false;
        if (cn.events[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            s->rx_hup = true;
        done += sock_progress(s);
    }
    if (cn.dl_head != NULL)
        done += expire_connects();
    return done;
}

static int catnap_wait_fd(void)
{
    return cn.up ? cn.epfd : -ENOTSUP;
}

static const struct libos_ops catnap_ops = {
    .name = "catnap",
    .init = catnap_init,
    .fini = catnap_fini,
    .socket = catnap_socket,
    .bind = catnap_bind,
    .listen = catnap_listen,
    .accept = catnap_accept,
    .connect = catnap_connect,
    .push = catnap_push,
    .pop = catnap_pop,
    .close = catnap_close,
    .shutdown = catnap_shutdown,
    .setsockopt = catnap_setsockopt,
    .getsockopt = catnap_getsockopt,
    .getpeername = catnap_getpeername,
    .getsockname = catnap_getsockname,
    .poll = catnap_poll,
    .wait_fd = catnap_wait_fd,
    .fork_child = catnap_fork_child,
};

LIBOS_REGISTER(catnap)
{
    return &catnap_ops;
}
