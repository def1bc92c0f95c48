/*
 * POSIX socket semantics over the demi_* queue API: descriptors, byte streams
 * over popped buffers, blocking and non-blocking calls, and readiness for
 * epoll/poll/select mixed with kernel descriptors.
 *
 * Model. Each socket holds one outstanding pop (and, when listening, one
 * accept), so its readiness is known without a system call. Completions are
 * collected by progress() (demi_wait_next_n with a zero timeout) and applied to
 * the sockets by dispatch(). The shim never sleeps inside demi_*: it sleeps in
 * the kernel, on the LibOS's wait fd plus the descriptors that matter, and then
 * calls progress() again. Each socket's descriptor number is a real eventfd,
 * kept readable exactly while the socket is readable, so a kernel poll on it
 * means something and blocked readers can be woken by whichever thread
 * dispatched their data. Each epoll set is a real kernel epoll set holding the
 * program's kernel fds, the LibOS wait fd and an eventfd that is readable while
 * the set's user-space ready list is not empty.
 *
 * One mutex guards everything; every entry point takes it (through enter()),
 * and it is released only to sleep.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <demi/ext.h>
#include <demi/libos.h>
#include <demi/sga.h>
#include <demi/wait.h>

#include "internal.h"

#define FD_PAGE_SHIFT 10
#define FD_PAGE_SIZE (1 << FD_PAGE_SHIFT)
#define FD_PAGES 1024                /* 1 Mi descriptors */
#define RX_LIMIT (256u * 1024u)      /* stop popping while this much is buffered unread */
#define TX_LIMIT (1024u * 1024u)     /* bytes in flight before writes block / EAGAIN */
#define TX_CHUNK (256u * 1024u)      /* largest single push */
#define UDP_MAX 65507u
#define ACCQ_LIMIT 4096u
#define KITEM_TAG 0x6b69u
#define SLEEP_CAP_MS 10              /* waits no completion can signal (writability) re-check this often */

__thread int shim_depth __attribute__((tls_model("initial-exec")));

static pthread_mutex_t lk = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static bool active;
static int wait_fd = -1;
static uint64_t spin_us = 50; /* DEMI_WAIT_SPIN_US, as the core's wait loop */
static struct sfd **fdtab[FD_PAGES];
static struct ssock **byqd;
static int byqd_cap;
static struct rxent *rx_free;
static struct ssock *lingering;
static const struct timespec zero_ts = {0, 0};
static uint64_t tx_pending_total; /* pushes in flight over all sockets */
/* Internal tags in our kernel epoll sets (kitem pointers are the third kind). */
static char tag_wait, tag_wake;

/* ---- small helpers ----------------------------------------------------------- */

static inline long ret(long rc)
{
    if (rc < 0) {
        errno = (int)-rc;
        return -1;
    }
    return rc;
}

static inline void enter(void)
{
    shim_depth++;
    pthread_mutex_lock(&lk);
}

static inline void leave(void)
{
    pthread_mutex_unlock(&lk);
    shim_depth--;
}

static long sys_close(int fd) { return syscall(SYS_close, fd); }

static int sys_eventfd(void)
{
    long fd = syscall(SYS_eventfd2, 0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fd < 0 ? -errno : (int)fd;
}

static void efd_signal(int fd)
{
    uint64_t one = 1;
    (void)syscall(SYS_write, fd, &one, sizeof(one));
}

static void efd_clear(int fd)
{
    uint64_t v;
    (void)syscall(SYS_read, fd, &v, sizeof(v));
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- descriptor table ----------------------------------------------------------- */

static struct sfd *fd_get(int fd)
{
    if (fd < 0 || fd >= FD_PAGES * FD_PAGE_SIZE)
        return NULL;
    struct sfd **page = __atomic_load_n(&fdtab[fd >> FD_PAGE_SHIFT], __ATOMIC_ACQUIRE);
    if (page == NULL)
        return NULL;
    return __atomic_load_n(&page[fd & (FD_PAGE_SIZE - 1)], __ATOMIC_ACQUIRE);
}

static int fd_set_entry(int fd, struct sfd *e)
{
    if (fd < 0 || fd >= FD_PAGES * FD_PAGE_SIZE)
        return -EMFILE;
    struct sfd **page = fdtab[fd >> FD_PAGE_SHIFT];
    if (page == NULL) {
        page = calloc(FD_PAGE_SIZE, sizeof(*page));
        if (page == NULL)
            return -ENOMEM;
        __atomic_store_n(&fdtab[fd >> FD_PAGE_SHIFT], page, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&page[fd & (FD_PAGE_SIZE - 1)], e, __ATOMIC_RELEASE);
    return 0;
}

/* Call fn on every descriptor of ours, visiting only allocated pages. Lock held. */
static void for_each_fd(void (*fn)(int fd, struct sfd *e, void *ctx), void *ctx)
{
    for (int p = 0; p < FD_PAGES; p++) {
        struct sfd **page = fdtab[p];
        if (page == NULL)
            continue;
        for (int i = 0; i < FD_PAGE_SIZE; i++)
            if (page[i] != NULL)
                fn(p * FD_PAGE_SIZE + i, page[i], ctx);
    }
}

/* Some other descriptor of ours that names the same socket or epoll set as `not`, or -1. */
struct other_ctx {
    int not;
    const void *obj;
    int found;
};

static void other_cb(int fd, struct sfd *e, void *p)
{
    struct other_ctx *c = p;
    if (c->found < 0 && fd != c->not && (e->sock == c->obj || e->ep == c->obj))
        c->found = fd;
}

static int other_fd(int not, const void *obj)
{
    struct other_ctx c = {.not = not, .obj = obj, .found = -1};
    for_each_fd(other_cb, &c);
    return c.found;
}

bool shim_owns(int fd) { return active && fd_get(fd) != NULL; }

bool shim_owns_socket(int fd)
{
    struct sfd *e = active ? fd_get(fd) : NULL;
    return e != NULL && e->kind == SFD_SOCK;
}

bool shim_owns_epoll(int fd)
{
    struct sfd *e = active ? fd_get(fd) : NULL;
    return e != NULL && e->kind == SFD_EPOLL;
}

static struct ssock *sock_of(int fd)
{
    struct sfd *e = fd_get(fd);
    return e && e->kind == SFD_SOCK ? e->sock : NULL;
}

/* ---- lifecycle ---------------------------------------------------------------------- */

static void fork_child(void);

static void do_init(void)
{
    shim_depth++;
    static char arg0[] = "demirun";
    static char *argv[] = {arg0, NULL};
    struct demi_args args = {.argc = 1, .argv = argv, .callback = NULL};
    int rc = demi_init(&args);
    const char *spin = getenv("DEMI_WAIT_SPIN_US");
    if (spin != NULL && *spin != '\0') {
        char *end;
        unsigned long v = strtoul(spin, &end, 10);
        if (*end == '\0' && v <= 1000000)
            spin_us = v; /* demi_init has already rejected anything else */
    }
    if (rc == 0 || rc == EEXIST) {
        int fd;
        wait_fd = demi_wait_fd(&fd) == 0 ? fd : -1;
        pthread_atfork(NULL, NULL, fork_child);
        active = true;
    } else {
        const char *mode = getenv("DEMI_PRELOAD_FALLBACK");
        char msg[256];
        int n = snprintf(msg, sizeof(msg), "demikernel preload: the LibOS did not start (%s); %s\n", strerror(rc),
                         mode && strcmp(mode, "abort") == 0 ? "aborting (DEMI_PRELOAD_FALLBACK=abort)"
                                                            : "falling back to the kernel for every call");
        (void)syscall(SYS_write, 2, msg, n > 0 ? (size_t)n : 0);
        if (mode && strcmp(mode, "abort") == 0)
            abort();
    }
    shim_depth--;
}

int shim_init(void)
{
    pthread_once(&init_once, do_init);
    return active ? 0 : -1;
}

bool shim_active(void) { return active; }

bool shim_wants_socket(int domain, int type, int protocol)
{
    int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (domain != AF_INET)
        return false;
    if (base == SOCK_STREAM)
        return protocol == 0 || protocol == IPPROTO_TCP;
    if (base == SOCK_DGRAM)
        return protocol == 0 || protocol == IPPROTO_UDP;
    return false;
}

/* ---- receive buffers ------------------------------------------------------------------ */

static struct rxent *rxent_get(void)
{
    struct rxent *r = rx_free;
    if (r != NULL) {
        rx_free = r->next;
        return r;
    }
    return malloc(sizeof(*r));
}

static void rxent_put(struct rxent *r)
{
    r->next = rx_free;
    rx_free = r;
}

static void rx_drop_head(struct ssock *s)
{
    struct rxent *r = s->rx_head;
    s->rx_head = r->next;
    if (s->rx_head == NULL)
        s->rx_tail = NULL;
    s->rx_bytes -= r->len - r->off;
    s->rx_count--;
    demi_sgafree(&r->sga);
    rxent_put(r);
}

/* ---- readiness ------------------------------------------------------------------------------ */

static bool tx_room(const struct ssock *s) { return s->tx_bytes < TX_LIMIT; }

/* The socket's current poll mask, as Linux's tcp_poll/udp_poll would report it. */
static uint32_t sock_events(const struct ssock *s)
{
    uint32_t ev = 0;
    if (s->type == SOCK_DGRAM) {
        if (s->rx_count > 0)
            ev |= EPOLLIN | EPOLLRDNORM;
        if (tx_room(s))
            ev |= EPOLLOUT | EPOLLWRNORM;
        if (s->rx_err)
            ev |= EPOLLERR;
        return ev;
    }
    switch (s->state) {
    case SS_LISTENING:
        if (s->accq_len > 0 || s->acc_err)
            ev |= EPOLLIN | EPOLLRDNORM;
        return ev;
    case SS_CONNECTING:
        return 0;
    case SS_NEW:
        if (s->conn_failed)
            return EPOLLOUT | EPOLLWRNORM | EPOLLERR * (s->so_error != 0) | EPOLLHUP;
        return EPOLLOUT | EPOLLWRNORM | EPOLLHUP;
    case SS_CONNECTED:
        break;
    }
    if (s->rx_bytes > 0 || s->rx_eof || s->rx_err)
        ev |= EPOLLIN | EPOLLRDNORM;
    if (s->rx_eof)
        ev |= EPOLLRDHUP;
    if (tx_room(s) || s->shut_wr || s->reset_seen)
        ev |= EPOLLOUT | EPOLLWRNORM;
    if (s->rx_err)
        ev |= EPOLLERR;
    if (s->reset_seen || (s->rx_eof && s->shut_wr))
        ev |= EPOLLHUP;
    return ev;
}

static void ready_add(struct sepoll *ep, struct epitem *it)
{
    if (it->queued)
        return;
    it->queued = true;
    it->rnext = NULL;
    it->rprev = ep->ready_tail;
    if (ep->ready_tail)
        ep->ready_tail->rnext = it;
    else
        ep->ready_head = it;
    ep->ready_tail = it;
    /* The eventfd only matters to a thread asleep in the kernel set, or to an outer set. */
    if (!ep->wake_set && (ep->sleepers > 0 || ep->nested)) {
        ep->wake_set = true;
        efd_signal(ep->wake_efd);
    }
}

static void ready_remove(struct sepoll *ep, struct epitem *it)
{
    if (!it->queued)
        return;
    it->queued = false;
    if (it->rprev)
        it->rprev->rnext = it->rnext;
    else
        ep->ready_head = it->rnext;
    if (it->rnext)
        it->rnext->rprev = it->rprev;
    else
        ep->ready_tail = it->rprev;
    it->rnext = it->rprev = NULL;
    if (ep->ready_head == NULL && ep->wake_set) {
        ep->wake_set = false;
        efd_clear(ep->wake_efd);
    }
}

/* Make s's eventfd readable exactly while s is readable. */
static void efd_sync(struct ssock *s, uint32_t ev)
{
    if (s->efd < 0)
        return;
    bool readable = (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0;
    if (readable && !s->efd_set) {
        s->efd_set = true;
        efd_signal(s->efd);
    } else if (!readable && s->efd_set) {
        s->efd_set = false;
        efd_clear(s->efd);
    }
}

/*
 * The socket's state changed: wake threads asleep on its eventfd, and queue its
 * epoll registrations that now have something to report. For EPOLLET a change
 * is an edge, so the item is queued even if it was reported before. The
 * eventfd is kept in sync only while someone sleeps on it (two system calls
 * per message otherwise); a sleeper syncs it before sleeping.
 */
static void sock_changed(struct ssock *s)
{
    uint32_t ev = sock_events(s);
    if (s->waiters > 0)
        efd_sync(s, ev);
    for (struct epitem *it = s->items; it != NULL; it = it->snext) {
        if (!it->disabled && (ev & (it->events | EPOLLERR | EPOLLHUP)))
            ready_add(it->ep, it);
        else
            ready_remove(it->ep, it); /* nothing to report any more: an outer set must not see it */
    }
}

/*
 * A connection whose peer closed has no pop outstanding, so a reset that follows
 * (the answer to data sent after the peer's FIN) would go unnoticed: ask the
 * LibOS for the socket's error when readiness or a write depends on it.
 */
static void probe_error(struct ssock *s)
{
    if (s->type != SOCK_STREAM || s->state != SS_CONNECTED || !s->rx_eof || s->reset_seen || s->shut_rd)
        return;
    int e = 0;
    socklen_t l = sizeof(e);
    if (demi_getsockopt(s->qd, SOL_SOCKET, SO_ERROR, &e, &l) == 0 && e != 0) {
        s->rx_err = e;
        s->reset_seen = true;
        sock_changed(s);
    }
}

/* ---- operations on the LibOS ------------------------------------------------------------------ */

static void ensure_pop(struct ssock *s)
{
    if (s->pop_pending || s->rx_eof || s->rx_err || s->closing || s->shut_rd)
        return;
    if (s->type == SOCK_STREAM && s->state != SS_CONNECTED)
        return;
    if (s->rx_bytes >= RX_LIMIT)
        return;
    if (demi_pop(&s->pop_qt, s->qd) == 0)
        s->pop_pending = true;
}

/* Does an epoll set of this process watch s for readability? */
static bool watched_for_input(const struct ssock *s)
{
    for (const struct epitem *it = s->items; it != NULL; it = it->snext)
        if (!it->disabled && (it->events & EPOLLIN))
            return true;
    return false;
}

static void ensure_accept(struct ssock *s)
{
    if (s->acc_pending || s->state != SS_LISTENING || s->accq_len >= ACCQ_LIMIT || s->closing)
        return;
    if (demi_accept(&s->acc_qt, s->qd) == 0)
        s->acc_pending = true;
}

static void sock_free(struct ssock *s);
static void sock_destroy(struct ssock *s);

static struct txent *tx_find(struct ssock *s, demi_qtoken_t qt, uint32_t *pos)
{
    for (uint32_t i = 0; i < s->tx_len; i++) {
        uint32_t p = (s->tx_head + i) % s->tx_cap;
        if (s->tx[p].qt == qt) {
            *pos = i;
            return &s->tx[p];
        }
    }
    return NULL;
}

static void tx_remove(struct ssock *s, uint32_t i)
{
    tx_pending_total--;
    /* Pushes complete in order almost always; keep the ring dense otherwise. */
    for (; i > 0; i--) {
        uint32_t a = (s->tx_head + i) % s->tx_cap, b = (s->tx_head + i - 1) % s->tx_cap;
        s->tx[a] = s->tx[b];
    }
    s->tx_head = (s->tx_head + 1) % s->tx_cap;
    s->tx_len--;
}

static void apply_deferred_shutdown(struct ssock *s)
{
    if (s->shut_wr_deferred && s->tx_len == 0) {
        s->shut_wr_deferred = false;
        (void)demi_shutdown(s->qd, SHUT_WR);
    }
}

/* Apply one completion to its socket. */
static void dispatch(const demi_qresult_t *qr)
{
    struct ssock *s = qr->qr_qd >= 0 && qr->qr_qd < byqd_cap ? byqd[qr->qr_qd] : NULL;
    bool failed = qr->qr_opcode == DEMI_OPC_FAILED;
    int err = failed ? (int)qr->qr_ret : 0;
    if (s == NULL) {
        if (qr->qr_opcode == DEMI_OPC_POP)
            demi_sgafree((demi_sgarray_t *)&qr->qr_value.sga);
        return;
    }
    if (s->pop_pending && qr->qr_qt == s->pop_qt) {
        s->pop_pending = false;
        if (failed) {
            if (err != ECANCELED) {
                /* The connection is over; the error waits for the first call that asks. */
                if (!s->reset_seen)
                    s->rx_err = err;
                s->rx_eof = true;
                s->reset_seen = true;
            }
        } else {
            demi_sgarray_t sga = qr->qr_value.sga;
            uint32_t len = sga.sga_numsegs ? sga.sga_segs[0].sgaseg_len : 0;
            if (len == 0 && s->type == SOCK_STREAM) {
                s->rx_eof = true;
                demi_sgafree(&sga);
            } else {
                struct rxent *r = rxent_get();
                if (r == NULL) {
                    demi_sgafree(&sga);
                    s->rx_err = ENOMEM;
                } else {
                    r->sga = sga;
                    r->off = 0;
                    r->len = len;
                    r->from = sga.sga_addr;
                    r->next = NULL;
                    if (s->rx_tail)
                        s->rx_tail->next = r;
                    else
                        s->rx_head = r;
                    s->rx_tail = r;
                    s->rx_bytes += len;
                    s->rx_count++;
                }
            }
            ensure_pop(s);
        }
    } else if (s->acc_pending && qr->qr_qt == s->acc_qt) {
        s->acc_pending = false;
        if (failed) {
            if (err != ECANCELED)
                s->acc_err = err;
        } else {
            if (s->accq_len == s->accq_cap) {
                uint32_t ncap = s->accq_cap ? s->accq_cap * 2 : 16;
                struct acc *n = malloc(ncap * sizeof(*n));
                if (n == NULL) {
                    (void)demi_close(qr->qr_value.ares.qd);
                    s->acc_err = ENOMEM;
                    goto accepted;
                }
                for (uint32_t i = 0; i < s->accq_len; i++)
                    n[i] = s->accq[(s->accq_head + i) % s->accq_cap];
                free(s->accq);
                s->accq = n;
                s->accq_cap = ncap;
                s->accq_head = 0;
            }
            struct acc *a = &s->accq[(s->accq_head + s->accq_len) % s->accq_cap];
            a->qd = qr->qr_value.ares.qd;
            a->addr = qr->qr_value.ares.addr;
            s->accq_len++;
        }
    accepted:
        /* Keep accepting only for a process that watches or waits (see shim_listen). */
        if (s->waiters > 0 || watched_for_input(s))
            ensure_accept(s);
    } else if (s->conn_pending && qr->qr_qt == s->conn_qt) {
        s->conn_pending = false;
        if (failed) {
            if (err != ECANCELED) {
                s->so_error = err;
                s->conn_failed = true;
            }
            if (s->type == SOCK_STREAM)
                s->state = SS_NEW;
        } else if (s->type == SOCK_STREAM) {
            s->state = SS_CONNECTED;
            s->bound = true;
            ensure_pop(s);
        } else {
            s->udp_connected = !s->unconnecting;
        }
    } else {
        uint32_t pos;
        struct txent *t = tx_find(s, qr->qr_qt, &pos);
        if (t == NULL)
            return;
        s->tx_bytes -= t->len;
        if (t->sga.sga_buf != NULL)
            demi_sgafree(&t->sga);
        tx_remove(s, pos);
        if (failed && err != ECANCELED && !s->reset_seen) {
            s->rx_err = err;
            s->reset_seen = true;
        }
        apply_deferred_shutdown(s);
        if (s->closing && s->tx_len == 0) {
            sock_destroy(s);
            return;
        }
    }
    sock_changed(s);
}

/* Collect every completion the LibOS has now. Lock held. */
static void progress(void)
{
    demi_qresult_t qrs[32];
    for (int round = 0; round < 16; round++) {
        int n = 0;
        if (demi_wait_next_n(qrs, 32, &n, &zero_ts) != 0)
            return;
        for (int i = 0; i < n; i++)
            dispatch(&qrs[i]);
        if (n < 32)
            return;
    }
}

static void sock_free(struct ssock *s);

/* ---- sleeping ---------------------------------------------------------------------------------- */

/*
 * Blocking calls and signals. A handler installed with SA_RESTART makes Linux
 * resume an interrupted read/write/accept/connect; without it the call fails
 * with EINTR. A ppoll cannot tell which signal woke it, so a sleeping thread
 * blocks every signal, watches the ones it had unblocked through a signalfd,
 * and on waking looks at which are pending: then it unblocks them (their
 * handlers run, outside our lock) and restarts only if every one of them asked
 * for SA_RESTART.
 */
static pthread_key_t sigfd_key;
static pthread_once_t sigfd_once = PTHREAD_ONCE_INIT;
static __thread int sigfd = -1;

static void sigfd_close(void *p)
{
    sys_close((int)(intptr_t)p - 1);
}

static void sigfd_key_init(void)
{
    (void)pthread_key_create(&sigfd_key, sigfd_close);
}

/* The signalfd watching `mask`, or -1. */
static int sigfd_for(const sigset_t *mask)
{
    int fd = signalfd(sigfd, mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return -1;
    if (sigfd < 0) {
        pthread_once(&sigfd_once, sigfd_key_init);
        (void)pthread_setspecific(sigfd_key, (void *)(intptr_t)(fd + 1));
    }
    sigfd = fd;
    return fd;
}

/*
 * Sleep, lock released, until the LibOS may have progress, s's eventfd is
 * readable, or timeout_ms passes (-1: forever; capped when cap is set).
 * Returns 0, or -EINTR when a signal handler without SA_RESTART ran.
 */
static int sleep_on(struct ssock *s, int timeout_ms, bool cap)
{
    /*
     * Spin first, as demi_wait does: an answer that comes within spin_us is
     * picked up without a sleep and a wake-up in the kernel (the round trip of
     * a blocking request-response client).
     */
    if (s != NULL && spin_us > 0 && timeout_ms != 0) {
        uint32_t ev0 = sock_events(s);
        bool pending0 = s->conn_pending;
        uint64_t end = now_us() + spin_us;
        s->waiters++; /* keeps s allocated while the lock is dropped (see sock_destroy) */
        bool changed = false;
        do {
            pthread_mutex_unlock(&lk);
            sched_yield();
            pthread_mutex_lock(&lk);
            if (!s->dead)
                progress();
            changed = s->dead || sock_events(s) != ev0 || s->conn_pending != pending0;
        } while (!changed && now_us() < end);
        if (--s->waiters == 0 && s->dead) {
            sock_free(s);
            return 0;
        }
        if (changed)
            return 0; /* something changed: the caller looks again */
    }
    struct pollfd p[3];
    nfds_t n = 0;
    if (wait_fd >= 0)
        p[n++] = (struct pollfd){.fd = wait_fd, .events = POLLIN};
    if (s != NULL) {
        efd_sync(s, sock_events(s));
        s->waiters++;
        if (s->efd >= 0)
            p[n++] = (struct pollfd){.fd = s->efd, .events = POLLIN};
    }
    if (wait_fd < 0 || (cap && (timeout_ms < 0 || timeout_ms > SLEEP_CAP_MS)))
        timeout_ms = wait_fd < 0 ? 0 : SLEEP_CAP_MS; /* no wait fd: the LibOS only busy-polls */
    struct timespec ts = {.tv_sec = timeout_ms / 1000, .tv_nsec = (long)(timeout_ms % 1000) * 1000000L};

    sigset_t all, old, open;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    sigemptyset(&open);
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP && !sigismember(&old, sig))
            sigaddset(&open, sig);
    int sfd = sigfd_for(&open);
    nfds_t si = n;
    if (sfd >= 0)
        p[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};

    pthread_mutex_unlock(&lk);
    int depth = shim_depth;
    shim_depth = 0; /* handlers that run below may call into the shim */
    (void)syscall(SYS_ppoll, p, n, timeout_ms < 0 ? NULL : &ts, NULL, (size_t)(_NSIG / 8));
    bool interrupted = false;
    if (sfd >= 0 && (p[si].revents & POLLIN)) {
        sigset_t pend;
        sigpending(&pend);
        for (int sig = 1; sig < NSIG; sig++) {
            struct sigaction sa;
            if (!sigismember(&pend, sig) || !sigismember(&open, sig) || sigaction(sig, NULL, &sa) != 0)
                continue;
            bool handler = (sa.sa_flags & SA_SIGINFO) || (sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN);
            if (handler && !(sa.sa_flags & SA_RESTART))
                interrupted = true;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL); /* pending signals are delivered here */
    shim_depth = depth;
    pthread_mutex_lock(&lk);
    if (s != NULL && --s->waiters == 0 && s->dead)
        sock_free(s); /* it was destroyed while we slept */
    return interrupted ? -EINTR : 0;
}

/* Remaining ms until deadline (UINT64_MAX: none) as a poll timeout. */
static int remaining_ms(uint64_t deadline)
{
    if (deadline == UINT64_MAX)
        return -1;
    uint64_t now = now_ms();
    if (now >= deadline)
        return 0;
    uint64_t r = deadline - now;
    return r > INT_MAX ? INT_MAX : (int)r;
}

/* Deadline for a blocking call under SO_RCVTIMEO / SO_SNDTIMEO (0 ms: none). */
static uint64_t timeo_deadline(uint32_t ms)
{
    return ms ? now_ms() + ms : UINT64_MAX;
}

/* ---- sockets: creation and release ------------------------------------------------------------ */

static int byqd_put(int qd, struct ssock *s)
{
    if (qd >= byqd_cap) {
        int ncap = byqd_cap ? byqd_cap : 256;
        while (ncap <= qd)
            ncap *= 2;
        struct ssock **n = realloc(byqd, (size_t)ncap * sizeof(*n));
        if (n == NULL)
            return -ENOMEM;
        memset(n + byqd_cap, 0, (size_t)(ncap - byqd_cap) * sizeof(*n));
        byqd = n;
        byqd_cap = ncap;
    }
    byqd[qd] = s;
    return 0;
}

/* Wrap qd in a socket with a fresh descriptor; returns the fd or -errno (qd then still the caller's). */
static int sock_new(int qd, int type, bool nonblock, bool cloexec, struct ssock **out)
{
    struct ssock *s = calloc(1, sizeof(*s));
    struct sfd *e = calloc(1, sizeof(*e));
    if (s == NULL || e == NULL) {
        free(s);
        free(e);
        return -ENOMEM;
    }
    int fd = sys_eventfd();
    if (fd < 0) {
        free(s);
        free(e);
        return fd;
    }
    s->qd = qd;
    s->type = type;
    s->efd = fd;
    s->nfds = 1;
    s->nonblock = nonblock;
    s->backlog = SOMAXCONN;
    e->kind = SFD_SOCK;
    e->sock = s;
    e->cloexec = cloexec;
    int rc = byqd_put(qd, s);
    if (rc == 0)
        rc = fd_set_entry(fd, e);
    if (rc < 0) {
        if (qd < byqd_cap)
            byqd[qd] = NULL;
        sys_close(fd);
        free(s);
        free(e);
        return rc;
    }
    *out = s;
    return fd;
}

/* Consume a completed-or-cancelled token right after demi_close, so nothing stale is left. */
static void drain_token(demi_qtoken_t qt)
{
    demi_qresult_t qr;
    if (demi_wait(&qr, qt, &zero_ts) == 0 && qr.qr_opcode == DEMI_OPC_POP)
        demi_sgafree(&qr.qr_value.sga);
}

/* Close the queue and free everything; the socket has no descriptor and no epoll item left. */
static void sock_destroy(struct ssock *s)
{
    if (s->closing) {
        struct ssock **pp = &lingering;
        while (*pp && *pp != s)
            pp = &(*pp)->lnext;
        if (*pp)
            *pp = s->lnext;
    }
    (void)demi_close(s->qd);
    if (s->pop_pending)
        drain_token(s->pop_qt);
    if (s->acc_pending)
        drain_token(s->acc_qt);
    if (s->conn_pending)
        drain_token(s->conn_qt);
    while (s->tx_len > 0) {
        struct txent *t = &s->tx[s->tx_head];
        drain_token(t->qt);
        if (t->sga.sga_buf != NULL)
            demi_sgafree(&t->sga);
        tx_remove(s, 0);
    }
    while (s->accq_len > 0) {
        (void)demi_close(s->accq[s->accq_head].qd);
        s->accq_head = (s->accq_head + 1) % s->accq_cap;
        s->accq_len--;
    }
    while (s->rx_head)
        rx_drop_head(s);
    if (s->qd < byqd_cap && byqd[s->qd] == s)
        byqd[s->qd] = NULL;
    if (s->waiters > 0) {
        /* Threads asleep on it: wake them; the last one to leave frees it. */
        s->dead = true;
        if (s->efd >= 0)
            efd_signal(s->efd);
        return;
    }
    sock_free(s);
}

static void sock_free(struct ssock *s)
{
    free(s->tx);
    free(s->accq);
    free(s);
}

static void epitem_unlink(struct epitem *it);

/* The last descriptor of s is gone: flush pending pushes (as close(2) does) and release it. */
/*
 * The flusher drives the LibOS while bytes a write(2) already accepted are still
 * in flight (or a closed socket waits for them): the kernel goes on sending
 * after write and close return, and a program may not call us again for a long
 * time (it waits in a poll of its own kernel fds, or exits main).
 */
static bool reaper_running;

static void *reaper(void *arg)
{
    (void)arg;
    shim_depth++;
    pthread_mutex_lock(&lk);
    while (lingering != NULL || tx_pending_total > 0) {
        progress();
        if ((lingering == NULL && tx_pending_total == 0) || sleep_on(NULL, SLEEP_CAP_MS, true) < 0)
            continue;
    }
    reaper_running = false;
    pthread_mutex_unlock(&lk);
    return NULL;
}

static void reaper_start(void)
{
    if (reaper_running)
        return;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* The reaper must never take the program's signals: it starts with all of them blocked. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_t t;
    if (pthread_create(&t, &attr, reaper, NULL) == 0)
        reaper_running = true;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
}

static void sock_release(struct ssock *s)
{
    while (s->items)
        epitem_unlink(s->items);
    if (s->tx_len > 0)
        progress(); /* most pushes are done already; collect them */
    if (s->tx_len > 0 && !s->linger0 && !s->reset_seen) {
        s->closing = true;
        s->lnext = lingering;
        lingering = s;
        if (s->shut_wr_deferred)
            apply_deferred_shutdown(s);
        reaper_start();
        return;
    }
    sock_destroy(s);
}

int shim_socket(int domain, int type, int protocol)
{
    if (!shim_wants_socket(domain, type, protocol))
        return (int)ret(-EAFNOSUPPORT);
    int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    enter();
    int qd, fd;
    int rc = demi_socket(&qd, AF_INET, base, protocol);
    if (rc != 0) {
        fd = rc == ENOTSUP ? -EAFNOSUPPORT : -rc;
    } else {
        struct ssock *s;
        fd = sock_new(qd, base, type & SOCK_NONBLOCK, type & SOCK_CLOEXEC, &s);
        if (fd < 0)
            (void)demi_close(qd);
        else
            sock_changed(s);
    }
    leave();
    return (int)ret(fd);
}

/* ---- binding, listening, connecting -------------------------------------------------------- */

static int check_sockaddr(const struct sockaddr *addr, socklen_t len)
{
    /* In the kernel's order: the length first (a NULL address of length 0 is EINVAL), then the copy. */
    if ((int)len < 0 || len > sizeof(struct sockaddr_storage) || len < sizeof(struct sockaddr_in))
        return -EINVAL;
    if (addr == NULL)
        return -EFAULT;
    if (addr->sa_family != AF_INET)
        return -EAFNOSUPPORT;
    return 0;
}

int shim_bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    enter();
    struct ssock *s = sock_of(fd);
    long rc;
    if (s == NULL)
        rc = -EBADF;
    else if ((rc = check_sockaddr(addr, len)) == 0) {
        if (s->bound || s->state != SS_NEW)
            rc = -EINVAL;
        else {
            struct sockaddr_in sin;
            memcpy(&sin, addr, sizeof(sin));
            rc = -demi_bind(s->qd, (struct sockaddr *)&sin, sizeof(sin));
            if (rc == 0) {
                s->bound = true;
                if (s->type == SOCK_DGRAM)
                    ensure_pop(s);
            }
        }
    }
    leave();
    return (int)ret(rc);
}

int shim_listen(int fd, int backlog)
{
    enter();
    struct ssock *s = sock_of(fd);
    long rc;
    if (s == NULL)
        rc = -EBADF;
    else if (s->type != SOCK_STREAM)
        rc = -EOPNOTSUPP;
    else if (s->state == SS_CONNECTED || s->state == SS_CONNECTING)
        rc = -EINVAL;
    else {
        rc = -demi_listen(s->qd, backlog);
        if (rc == 0) {
            s->state = SS_LISTENING;
            s->bound = true;
            s->backlog = backlog < 1 ? 1 : backlog;
            /*
             * No accept is posted yet: one outstanding here would take connections
             * off the kernel's queue for this process even if only a forked sibling
             * ever calls accept(). It is posted when someone accepts or watches.
             */
            sock_changed(s);
        }
    }
    leave();
    return (int)ret(rc);
}

static void copy_addr(const struct sockaddr_in *sin, struct sockaddr *addr, socklen_t *len)
{
    if (addr == NULL || len == NULL)
        return;
    size_t n = *len < sizeof(*sin) ? *len : sizeof(*sin);
    memcpy(addr, sin, n);
    *len = sizeof(*sin);
}

int shim_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC))
        return (int)ret(-EINVAL);
    enter();
    long rc;
    uint64_t deadline = 0;
    for (;;) {
        struct ssock *s = sock_of(fd);
        if (s == NULL) {
            rc = -EBADF;
            break;
        }
        if (deadline == 0)
            deadline = timeo_deadline(s->rcvtimeo_ms);
        if (s->type != SOCK_STREAM) {
            rc = -EOPNOTSUPP;
            break;
        }
        if (s->state != SS_LISTENING || s->unlistened) {
            rc = -EINVAL;
            break;
        }
        if (s->accq_len == 0) {
            ensure_accept(s); /* this process asks for connections now */
            progress();
        }
        if (s->accq_len > 0) {
            struct acc a = s->accq[s->accq_head];
            s->accq_head = (s->accq_head + 1) % s->accq_cap;
            s->accq_len--;
            if (watched_for_input(s))
                ensure_accept(s);
            sock_changed(s);
            struct ssock *ns;
            rc = sock_new(a.qd, SOCK_STREAM, flags & SOCK_NONBLOCK, flags & SOCK_CLOEXEC, &ns);
            if (rc < 0) {
                (void)demi_close(a.qd);
                break;
            }
            ns->state = SS_CONNECTED;
            ns->bound = true;
            ensure_pop(ns);
            sock_changed(ns);
            copy_addr(&a.addr, addr, len);
            break;
        }
        if (s->acc_err) {
            rc = -s->acc_err;
            s->acc_err = 0;
            sock_changed(s);
            break;
        }
        if (s->nonblock) {
            rc = -EAGAIN;
            break;
        }
        int wait = remaining_ms(deadline);
        if (wait == 0) {
            rc = -EAGAIN; /* SO_RCVTIMEO expired */
            break;
        }
        if ((rc = sleep_on(s, wait, false)) < 0)
            break;
    }
    leave();
    return (int)ret(rc);
}

int shim_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    enter();
    long rc;
    struct ssock *s = sock_of(fd);
    if (s == NULL) {
        rc = -EBADF;
        goto out;
    }
    if (s->type == SOCK_DGRAM && addr != NULL && len >= sizeof(sa_family_t) && addr->sa_family == AF_UNSPEC) {
        /* Dissolve the association (demi_connect's AF_UNSPEC extension); it completes at once. */
        struct sockaddr_in un = {.sin_family = AF_UNSPEC};
        int e = demi_connect(&s->conn_qt, s->qd, (struct sockaddr *)&un, sizeof(un));
        if (e != 0) {
            rc = -e;
            goto out;
        }
        s->conn_pending = true;
        s->unconnecting = true;
        progress();
        while (s->conn_pending && sleep_on(s, 10, true) == 0 && sock_of(fd) == s)
            progress();
        s->unconnecting = false;
        rc = 0;
        goto out;
    }
    if ((rc = check_sockaddr(addr, len)) < 0)
        goto out;
    if (s->type == SOCK_STREAM) {
        if (s->state == SS_CONNECTED) {
            /* As Linux: the first connect() after a non-blocking one completed reports success. */
            rc = s->conn_async ? 0 : -EISCONN;
            s->conn_async = false;
            goto out;
        }
        if (s->state == SS_LISTENING) {
            rc = -EISCONN;
            goto out;
        }
        if (s->state == SS_CONNECTING) {
            rc = -EALREADY;
            goto out;
        }
        if (s->conn_failed && s->so_error) {
            /* A failed non-blocking connect reports its error to the next connect. */
            rc = -s->so_error;
            s->so_error = 0;
            s->conn_failed = false;
            sock_changed(s);
            goto out;
        }
    }
    struct sockaddr_in sin;
    memcpy(&sin, addr, sizeof(sin));
    int e = demi_connect(&s->conn_qt, s->qd, (struct sockaddr *)&sin, sizeof(sin));
    if (e != 0) {
        rc = -e;
        goto out;
    }
    s->conn_pending = true;
    s->conn_failed = false;
    s->so_error = 0;
    if (s->type == SOCK_STREAM)
        s->state = SS_CONNECTING;
    sock_changed(s);
    if (s->type == SOCK_STREAM && s->nonblock) {
        s->conn_async = true;
        rc = -EINPROGRESS;
        goto out;
    }
    for (;;) {
        progress();
        if (!s->conn_pending)
            break;
        if ((rc = sleep_on(s, -1, true)) < 0)
            goto out; /* EINTR: the connect goes on in the background, as Linux's does */
        s = sock_of(fd);
        if (s == NULL) {
            rc = -EBADF;
            goto out;
        }
    }
    if (s->so_error) {
        rc = -s->so_error;
        s->so_error = 0;
        s->conn_failed = false;
    } else {
        rc = 0;
        if (s->type == SOCK_DGRAM)
            ensure_pop(s);
    }
    sock_changed(s);
out:
    leave();
    return (int)ret(rc);
}

int shim_shutdown(int fd, int how)
{
    enter();
    long rc = 0;
    struct ssock *s = sock_of(fd);
    if (s == NULL)
        rc = -EBADF;
    else if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
        rc = -EINVAL;
    else if (s->type == SOCK_STREAM && s->state == SS_LISTENING) {
        /* As Linux: shutting a listener's read side stops it accepting; the write side is a no-op. */
        if (how != SHUT_WR)
            s->unlistened = true;
        sock_changed(s);
    } else if (s->type == SOCK_STREAM && s->state != SS_CONNECTED)
        rc = -ENOTCONN;
    else if (s->type == SOCK_DGRAM && !s->udp_connected)
        rc = -ENOTCONN;
    else {
        if (how != SHUT_WR) {
            s->shut_rd = true;
            s->rx_eof = true;
        }
        if (how != SHUT_RD && !s->shut_wr) {
            s->shut_wr = true;
            /* Bytes still in flight must reach the peer before the FIN. */
            if (s->tx_len > 0)
                s->shut_wr_deferred = true;
            else
                rc = -demi_shutdown(s->qd, SHUT_WR);
        }
        if (how != SHUT_WR)
            (void)demi_shutdown(s->qd, SHUT_RD);
        sock_changed(s);
    }
    leave();
    return (int)ret(rc);
}

/* ---- receiving ------------------------------------------------------------------------------ */

/* The checks the kernel's copy would fail with EFAULT that can be made without faulting: NULL buffers. */
static bool iov_valid(const struct iovec *iov, size_t n)
{
    if (n > 0 && iov == NULL)
        return false;
    for (size_t i = 0; i < n; i++)
        if (iov[i].iov_base == NULL && iov[i].iov_len > 0)
            return false;
    return true;
}

static size_t iov_total(const struct iovec *iov, size_t n)
{
    size_t t = 0;
    for (size_t i = 0; i < n; i++)
        t += iov[i].iov_len;
    return t;
}

/* Copy up to `want` buffered bytes into iov starting at iov offset `at`; consume unless peek. */
static size_t rx_copy_stream(struct ssock *s, const struct iovec *iov, size_t iovcnt, size_t at, size_t want,
                             bool peek)
{
    size_t done = 0, vi = 0, voff = at;
    while (vi < iovcnt && voff >= iov[vi].iov_len) {
        voff -= iov[vi].iov_len;
        vi++;
    }
    struct rxent *r = s->rx_head;
    uint32_t roff = r ? r->off : 0;
    while (done < want && r != NULL && vi < iovcnt) {
        size_t avail = r->len - roff;
        size_t room = iov[vi].iov_len - voff;
        size_t n = avail < room ? avail : room;
        if (n > want - done)
            n = want - done;
        memcpy((char *)iov[vi].iov_base + voff, (char *)r->sga.sga_segs[0].sgaseg_buf + roff, n);
        done += n;
        roff += (uint32_t)n;
        voff += n;
        if (voff == iov[vi].iov_len) {
            vi++;
            voff = 0;
        }
        if (roff == r->len) {
            struct rxent *next = r->next;
            if (!peek)
                rx_drop_head(s);
            r = next;
            roff = r ? r->off : 0;
        } else if (!peek) {
            s->rx_bytes -= n;
            r->off = roff;
        }
    }
    return done;
}

static ssize_t recv_stream(struct ssock **sp, int fd, struct msghdr *msg, int flags)
{
    struct ssock *s = *sp;
    size_t total = iov_total(msg->msg_iov, msg->msg_iovlen);
    bool peek = flags & MSG_PEEK;
    bool waitall = (flags & MSG_WAITALL) && !peek;
    bool nonblock = s->nonblock || (flags & MSG_DONTWAIT);
    size_t got = 0;
    uint64_t deadline = timeo_deadline(s->rcvtimeo_ms);
    msg->msg_namelen = 0;
    if (s->state != SS_CONNECTED)
        return s->state == SS_NEW && s->conn_failed ? 0 : -ENOTCONN;
    if (total == 0) {
        /* As tcp_recvmsg: a non-blocking empty read of nothing is EAGAIN, otherwise 0. */
        if (nonblock && s->rx_bytes == 0 && !s->rx_eof && !s->rx_err) {
            progress();
            if (s->rx_bytes == 0 && !s->rx_eof && !s->rx_err)
                return -EAGAIN;
        }
        return 0;
    }
    for (;;) {
        if (s->rx_bytes == 0 && !s->rx_eof && !s->rx_err)
            progress();
        if (s->rx_bytes > 0) {
            got += rx_copy_stream(s, msg->msg_iov, msg->msg_iovlen, got, total - got, peek);
            ensure_pop(s);
            sock_changed(s);
            if (!waitall || got == total)
                return (ssize_t)got;
            continue;
        }
        if (s->rx_err) {
            if (got > 0)
                return (ssize_t)got;
            int e = s->rx_err;
            s->rx_err = 0;
            sock_changed(s);
            return -e;
        }
        if (s->rx_eof)
            return (ssize_t)got;
        int wait = remaining_ms(deadline);
        if (nonblock || wait == 0)
            return got > 0 ? (ssize_t)got : -EAGAIN;
        long rc = sleep_on(s, wait, false);
        if (rc < 0)
            return got > 0 ? (ssize_t)got : rc;
        if ((s = sock_of(fd)) == NULL)
            return got > 0 ? (ssize_t)got : -EBADF;
        *sp = s;
    }
}

static ssize_t recv_dgram(struct ssock **sp, int fd, struct msghdr *msg, int flags)
{
    struct ssock *s = *sp;
    bool nonblock = s->nonblock || (flags & MSG_DONTWAIT);
    uint64_t deadline = timeo_deadline(s->rcvtimeo_ms);
    for (;;) {
        if (s->rx_count == 0 && !s->rx_err) {
            ensure_pop(s);
            progress();
        }
        if (s->rx_count > 0) {
            struct rxent *r = s->rx_head;
            size_t total = iov_total(msg->msg_iov, msg->msg_iovlen);
            size_t n = r->len < total ? r->len : total;
            size_t done = 0;
            for (size_t i = 0; i < msg->msg_iovlen && done < n; i++) {
                size_t c = msg->msg_iov[i].iov_len < n - done ? msg->msg_iov[i].iov_len : n - done;
                memcpy(msg->msg_iov[i].iov_base, (char *)r->sga.sga_segs[0].sgaseg_buf + done, c);
                done += c;
            }
            msg->msg_flags = r->len > total ? MSG_TRUNC : 0;
            if (msg->msg_name != NULL) {
                socklen_t l = msg->msg_namelen;
                copy_addr(&r->from, msg->msg_name, &l);
                msg->msg_namelen = l;
            } else {
                msg->msg_namelen = 0;
            }
            ssize_t result = (flags & MSG_TRUNC) ? (ssize_t)r->len : (ssize_t)n;
            if (!(flags & MSG_PEEK)) {
                rx_drop_head(s);
                ensure_pop(s);
                sock_changed(s);
            }
            return result;
        }
        if (s->rx_err) {
            int e = s->rx_err;
            s->rx_err = 0;
            s->rx_eof = false;
            ensure_pop(s);
            sock_changed(s);
            return -e;
        }
        int wait = remaining_ms(deadline);
        if (nonblock || wait == 0)
            return -EAGAIN;
        long rc = sleep_on(s, wait, false);
        if (rc < 0)
            return rc;
        if ((s = sock_of(fd)) == NULL)
            return -EBADF;
        *sp = s;
    }
}

ssize_t shim_recvmsg(int fd, struct msghdr *msg, int flags)
{
    if (msg == NULL)
        return ret(-EFAULT);
    if (flags & MSG_OOB)
        return ret(-EINVAL);
    enter();
    ssize_t rc;
    struct ssock *s = sock_of(fd);
    if (s == NULL)
        rc = -EBADF;
    else if (msg->msg_iovlen > IOV_MAX)
        rc = -EMSGSIZE;
    else if (!iov_valid(msg->msg_iov, msg->msg_iovlen)) {
        rc = -EFAULT;
        /* The kernel dequeues a datagram before the copy fails: it is gone. */
        if (s->type == SOCK_DGRAM && !(flags & MSG_PEEK) && s->rx_head)
            rx_drop_head(s), ensure_pop(s), sock_changed(s);
    } else {
        msg->msg_controllen = 0;
        if (s->type == SOCK_STREAM) {
            rc = recv_stream(&s, fd, msg, flags);
            msg->msg_flags = 0;
        } else {
            rc = recv_dgram(&s, fd, msg, flags);
        }
    }
    leave();
    return ret(rc);
}

ssize_t shim_read(int fd, void *buf, size_t len)
{
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    return shim_recvmsg(fd, &m, 0);
}

ssize_t shim_readv(int fd, const struct iovec *iov, int iovcnt)
{
    if (iovcnt < 0 || iovcnt > IOV_MAX)
        return ret(-EINVAL);
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    return shim_recvmsg(fd, &m, 0);
}

ssize_t shim_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *src, socklen_t *srclen)
{
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_name = src, .msg_namelen = srclen ? *srclen : 0};
    if (src == NULL)
        m.msg_name = NULL;
    ssize_t r = shim_recvmsg(fd, &m, flags);
    if (r >= 0 && src != NULL && srclen != NULL)
        *srclen = m.msg_namelen;
    return r;
}

/* ---- sending -------------------------------------------------------------------------------- */

static int tx_reserve(struct ssock *s);

static int tx_push(struct ssock *s, demi_sgarray_t *sga, uint32_t len, const struct sockaddr_in *to)
{
    int rc = tx_reserve(s);
    if (rc < 0)
        return rc;
    sga->sga_segs[0].sgaseg_len = len;
    demi_qtoken_t qt;
    int e = to ? demi_pushto(&qt, s->qd, sga, (const struct sockaddr *)to, sizeof(*to)) : demi_push(&qt, s->qd, sga);
    if (e != 0)
        return -e;
    /*
     * Most pushes complete inside demi_push (the kernel took the bytes): collect
     * that at once, which costs no system call, instead of tracking it.
     */
    demi_qresult_t qr;
    if (demi_wait(&qr, qt, &zero_ts) == 0) {
        if (qr.qr_opcode == DEMI_OPC_FAILED && qr.qr_ret != ECANCELED && !s->reset_seen) {
            s->rx_err = (int)qr.qr_ret;
            s->reset_seen = true;
        }
        demi_sgafree(sga);
        return 0;
    }
    struct txent *t = &s->tx[(s->tx_head + s->tx_len) % s->tx_cap];
    t->qt = qt;
    t->sga = *sga;
    t->len = len;
    s->tx_len++;
    tx_pending_total++;
    s->tx_bytes += len;
    return 0;
}

/* Make room for one more push in flight; 0 or -ENOMEM. */
static int tx_reserve(struct ssock *s)
{
    if (s->tx_len < s->tx_cap)
        return 0;
    uint32_t ncap = s->tx_cap ? s->tx_cap * 2 : 16;
    struct txent *n = malloc(ncap * sizeof(*n));
    if (n == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < s->tx_len; i++)
        n[i] = s->tx[(s->tx_head + i) % s->tx_cap];
    free(s->tx);
    s->tx = n;
    s->tx_cap = ncap;
    s->tx_head = 0;
    return 0;
}

/* A zero-byte datagram, tracked like any push so ordering and close still hold. */
static int tx_push_empty(struct ssock *s, const struct sockaddr_in *to)
{
    int rc = tx_reserve(s);
    if (rc < 0)
        return rc;
    demi_qtoken_t qt;
    int e = demi_pushto_empty(&qt, s->qd, (const struct sockaddr *)to, to ? sizeof(*to) : 0);
    if (e != 0)
        return -e;
    struct txent *t = &s->tx[(s->tx_head + s->tx_len) % s->tx_cap];
    memset(t, 0, sizeof(*t));
    t->qt = qt;
    s->tx_len++;
    tx_pending_total++;
    return 0;
}

/* Gather up to n bytes from iov (starting at byte `at`) into dst. */
static void iov_gather(const struct iovec *iov, size_t iovcnt, size_t at, char *dst, size_t n)
{
    size_t vi = 0;
    while (vi < iovcnt && at >= iov[vi].iov_len) {
        at -= iov[vi].iov_len;
        vi++;
    }
    while (n > 0 && vi < iovcnt) {
        size_t c = iov[vi].iov_len - at;
        if (c > n)
            c = n;
        memcpy(dst, (const char *)iov[vi].iov_base + at, c);
        dst += c;
        n -= c;
        at = 0;
        vi++;
    }
}

static ssize_t pipe_error(int flags)
{
    if (!(flags & MSG_NOSIGNAL))
        raise(SIGPIPE);
    return -EPIPE;
}

static ssize_t send_stream(struct ssock **sp, int fd, const struct msghdr *msg, int flags)
{
    struct ssock *s = *sp;
    size_t total = iov_total(msg->msg_iov, msg->msg_iovlen);
    bool nonblock = s->nonblock || (flags & MSG_DONTWAIT);
    size_t sent = 0;
    uint64_t deadline = timeo_deadline(s->sndtimeo_ms);
    if (s->state != SS_CONNECTED) {
        if (s->state == SS_CONNECTING)
            return -EAGAIN;
        return s->conn_failed && s->so_error ? -s->so_error : pipe_error(flags);
    }
    probe_error(s);
    for (;;) {
        if (s->rx_err && sent == 0) {
            /* The pending error goes to the first call that asks, as sk_err does. */
            int e = s->rx_err;
            s->rx_err = 0;
            sock_changed(s);
            return e == EPIPE ? pipe_error(flags) : -e;
        }
        if (s->shut_wr || s->reset_seen)
            return sent > 0 ? (ssize_t)sent : pipe_error(flags);
        if (sent == total)
            return (ssize_t)sent;
        if (!tx_room(s))
            progress();
        while (sent < total && tx_room(s)) {
            size_t room = TX_LIMIT - s->tx_bytes;
            size_t n = total - sent;
            if (n > room)
                n = room;
            if (n > TX_CHUNK)
                n = TX_CHUNK;
            demi_sgarray_t sga = demi_sgaalloc(n);
            if (sga.sga_numsegs == 0)
                return sent > 0 ? (ssize_t)sent : -ENOBUFS;
            iov_gather(msg->msg_iov, msg->msg_iovlen, sent, sga.sga_segs[0].sgaseg_buf, n);
            int e = tx_push(s, &sga, (uint32_t)n, NULL);
            if (e < 0) {
                demi_sgafree(&sga);
                return sent > 0 ? (ssize_t)sent : e;
            }
            sent += n;
        }
        sock_changed(s);
        if (sent == total)
            return (ssize_t)sent;
        int wait = remaining_ms(deadline);
        if (nonblock || wait == 0)
            return sent > 0 ? (ssize_t)sent : -EAGAIN;
        long rc = sleep_on(NULL, wait, true);
        if (rc < 0)
            return sent > 0 ? (ssize_t)sent : rc;
        progress();
        if ((s = sock_of(fd)) == NULL)
            return sent > 0 ? (ssize_t)sent : -EBADF;
        *sp = s;
    }
}

static ssize_t send_dgram(struct ssock *s, const struct msghdr *msg, int flags)
{
    size_t total = iov_total(msg->msg_iov, msg->msg_iovlen);
    const struct sockaddr_in *to = NULL;
    struct sockaddr_in sin;
    if (msg->msg_name != NULL) {
        long rc = check_sockaddr(msg->msg_name, msg->msg_namelen);
        if (rc < 0)
            return rc;
        memcpy(&sin, msg->msg_name, sizeof(sin));
        to = &sin;
    } else if (!s->udp_connected) {
        return -EDESTADDRREQ;
    }
    if (s->shut_wr)
        return pipe_error(flags);
    if (total > UDP_MAX)
        return -EMSGSIZE;
    if (!tx_room(s))
        progress();
    demi_sgarray_t sga;
    int e;
    if (total == 0) {
        /* An empty datagram is a datagram too; demi_push cannot carry one, the extension can. */
        memset(&sga, 0, sizeof(sga));
        e = tx_push_empty(s, to);
    } else {
        sga = demi_sgaalloc(total);
        if (sga.sga_numsegs == 0)
            return -ENOBUFS;
        iov_gather(msg->msg_iov, msg->msg_iovlen, 0, sga.sga_segs[0].sgaseg_buf, total);
        e = tx_push(s, &sga, (uint32_t)total, to);
    }
    if (e < 0) {
        if (sga.sga_buf != NULL)
            demi_sgafree(&sga);
        return e;
    }
    s->bound = true; /* sending binds an unbound datagram socket */
    ensure_pop(s);
    sock_changed(s);
    return (ssize_t)total;
}

ssize_t shim_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    if (msg == NULL)
        return ret(-EFAULT);
    if (flags & MSG_OOB)
        return ret(-EOPNOTSUPP);
    enter();
    ssize_t rc;
    struct ssock *s = sock_of(fd);
    if (s == NULL)
        rc = -EBADF;
    else if (msg->msg_iovlen > IOV_MAX)
        rc = -EMSGSIZE;
    else if (!iov_valid(msg->msg_iov, msg->msg_iovlen))
        rc = -EFAULT;
    else if (s->type == SOCK_STREAM)
        rc = send_stream(&s, fd, msg, flags);
    else
        rc = send_dgram(s, msg, flags);
    if (tx_pending_total > 0)
        reaper_start(); /* bytes the kernel would keep sending after we return */
    leave();
    return ret(rc);
}

ssize_t shim_write(int fd, const void *buf, size_t len)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    return shim_sendmsg(fd, &m, 0);
}

ssize_t shim_writev(int fd, const struct iovec *iov, int iovcnt)
{
    if (iovcnt < 0 || iovcnt > IOV_MAX)
        return ret(-EINVAL);
    struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    return shim_sendmsg(fd, &m, 0);
}

ssize_t shim_sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *dst, socklen_t dstlen)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_name = (void *)dst, .msg_namelen = dstlen};
    /* As Linux: a stream socket ignores the address. */
    if (dst != NULL && shim_owns_socket(fd)) {
        enter();
        struct ssock *s = sock_of(fd);
        if (s && s->type == SOCK_STREAM) {
            m.msg_name = NULL;
            m.msg_namelen = 0;
        }
        leave();
    }
    return shim_sendmsg(fd, &m, flags);
}

/* sendfile(2) out of one of our sockets (the kernel splices from a socket, too). */
static ssize_t sendfile_from_socket(int out_fd, int in_fd, off_t *offset, size_t count)
{
    if (offset != NULL)
        return ret(-ESPIPE);
    char buf[16 * 1024];
    size_t done = 0;
    while (done < count) {
        size_t want = count - done < sizeof(buf) ? count - done : sizeof(buf);
        /* Wait (per the socket's mode) only for the first bytes, as a splice does. */
        ssize_t n = shim_recvfrom(in_fd, buf, want, done > 0 ? MSG_DONTWAIT : 0, NULL, NULL);
        if (n <= 0) {
            if (done > 0 || n == 0)
                break;
            return -1;
        }
        size_t w = 0;
        while (w < (size_t)n) {
            long r = shim_owns_socket(out_fd) ? shim_write(out_fd, buf + w, (size_t)n - w)
                                              : syscall(SYS_write, out_fd, buf + w, (size_t)n - w);
            if (r < 0)
                return done > 0 ? (ssize_t)done : -1; /* what was read is lost, as a failed splice loses it */
            w += (size_t)r;
        }
        done += (size_t)n;
    }
    return (ssize_t)done;
}

ssize_t shim_sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
    if (shim_owns_socket(in_fd))
        return sendfile_from_socket(out_fd, in_fd, offset, count);
    /* Read the file into pushes; the file is the kernel's, so raw reads. */
    char buf[64 * 1024];
    size_t done = 0;
    off_t pos = offset ? *offset : 0;
    while (done < count) {
        size_t want = count - done < sizeof(buf) ? count - done : sizeof(buf);
        long n = offset ? syscall(SYS_pread64, in_fd, buf, want, pos) : syscall(SYS_read, in_fd, buf, want);
        if (n < 0) {
            if (done > 0)
                break;
            return -1;
        }
        if (n == 0)
            break;
        ssize_t w = shim_write(out_fd, buf, (size_t)n);
        if (w < 0) {
            if (done > 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (!offset)
                    (void)lseek(in_fd, -(off_t)n, SEEK_CUR);
                break;
            }
            if (!offset && done == 0)
                (void)lseek(in_fd, -(off_t)n, SEEK_CUR);
            return done > 0 ? (ssize_t)done : -1;
        }
        done += (size_t)w;
        pos += w;
        if (w < n) {
            if (!offset)
                (void)lseek(in_fd, -(off_t)(n - w), SEEK_CUR);
            break;
        }
    }
    if (offset)
        *offset = pos;
    return (ssize_t)done;
}

/* ---- options and names ------------------------------------------------------------------------ */

int shim_getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
    enter();
    long rc = 0;
    struct ssock *s = sock_of(fd);
    if (s == NULL) {
        rc = -EBADF;
    } else if (len == NULL || (val == NULL && *len > 0)) {
        rc = -EFAULT;
    } else if (level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO)) {
        uint32_t ms = name == SO_RCVTIMEO ? s->rcvtimeo_ms : s->sndtimeo_ms;
        struct timeval tv = {.tv_sec = ms / 1000u, .tv_usec = (suseconds_t)(ms % 1000u) * 1000};
        size_t n = *len < sizeof(tv) ? *len : sizeof(tv);
        memcpy(val, &tv, n);
        *len = (socklen_t)n;
    } else if (level == SOL_SOCKET && (name == SO_ERROR || name == SO_TYPE || name == SO_ACCEPTCONN ||
                                        name == SO_DOMAIN || name == SO_PROTOCOL)) {
        int v = 0;
        {
            switch (name) {
            case SO_ERROR:
                progress();
                probe_error(s);
                v = s->so_error ? s->so_error : s->rx_err;
                if (s->so_error)
                    s->so_error = 0;
                else
                    s->rx_err = 0;
                sock_changed(s);
                break;
            case SO_TYPE: v = s->type; break;
            case SO_ACCEPTCONN: v = s->state == SS_LISTENING; break;
            case SO_DOMAIN: v = AF_INET; break;
            case SO_PROTOCOL: v = s->type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP; break;
            }
            socklen_t n = *len < sizeof(v) ? *len : sizeof(v);
            memcpy(val, &v, n);
            *len = n;
        }
    } else if ((int)*len < 0) {
        rc = -EINVAL;
    } else {
        /* Ask with room to spare, then truncate to the caller's length as the kernel does. */
        char buf[512];
        socklen_t l = sizeof(buf);
        rc = -demi_getsockopt(s->qd, level, name, buf, &l);
        if (rc == 0) {
            socklen_t n = *len < l ? *len : l;
            memcpy(val, buf, n);
            *len = n;
        }
    }
    leave();
    return (int)ret(rc);
}

int shim_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    enter();
    long rc;
    struct ssock *s = sock_of(fd);
    if (s == NULL)
        rc = -EBADF;
    else if (val == NULL && len > 0)
        rc = -EFAULT;
    else if (len == 0)
        rc = -EINVAL;
    else if (level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO)) {
        /* Timeouts of blocking calls are the shim's business: the queues underneath never block. */
        const struct timeval *tv = val;
        if (len < sizeof(*tv))
            rc = -EINVAL;
        else if (tv->tv_usec < 0 || tv->tv_usec >= 1000000)
            rc = -EDOM;
        else {
            uint64_t ms = tv->tv_sec < 0 ? 0 : (uint64_t)tv->tv_sec * 1000u + (uint64_t)(tv->tv_usec + 999) / 1000u;
            if (ms > UINT32_MAX)
                ms = 0; /* longer than anyone waits: forever */
            *(name == SO_RCVTIMEO ? &s->rcvtimeo_ms : &s->sndtimeo_ms) = (uint32_t)ms;
            rc = 0;
        }
    } else {
        rc = -demi_setsockopt(s->qd, level, name, val, len);
        if (rc == 0 && level == SOL_SOCKET && name == SO_LINGER && len >= sizeof(struct linger)) {
            const struct linger *l = val;
            s->linger0 = l->l_onoff && l->l_linger == 0;
        }
    }
    leave();
    return (int)ret(rc);
}

static int get_name(int fd, struct sockaddr *addr, socklen_t *len, bool peer)
{
    enter();
    long rc;
    struct ssock *s = sock_of(fd);
    if (s == NULL)
        rc = -EBADF;
    else if (addr == NULL || len == NULL)
        rc = -EFAULT;
    else if ((int)*len < 0)
        rc = -EINVAL;
    else if (peer && s->type == SOCK_STREAM && s->state != SS_CONNECTED)
        rc = -ENOTCONN;
    else if (!peer && !s->bound && s->state == SS_NEW) {
        /* Unbound: the kernel answers 0.0.0.0:0 without asking anyone. */
        struct sockaddr_in any = {.sin_family = AF_INET};
        copy_addr(&any, addr, len);
        rc = 0;
    } else {
        struct sockaddr_in sin;
        socklen_t l = sizeof(sin);
        rc = peer ? -demi_getpeername(s->qd, (struct sockaddr *)&sin, &l)
                  : -demi_getsockname(s->qd, (struct sockaddr *)&sin, &l);
        if (rc == 0)
            copy_addr(&sin, addr, len);
    }
    leave();
    return (int)ret(rc);
}

int shim_getsockname(int fd, struct sockaddr *addr, socklen_t *len) { return get_name(fd, addr, len, false); }
int shim_getpeername(int fd, struct sockaddr *addr, socklen_t *len) { return get_name(fd, addr, len, true); }

/* ---- descriptors: fcntl, ioctl, dup, close ----------------------------------------------------- */

static void epoll_free(struct sepoll *ep);

/* Drop one descriptor's entry (the kernel fd is already closed or replaced). Lock held. */
static void fd_drop(int fd, struct sfd *e)
{
    fd_set_entry(fd, NULL);
    if (e->kind == SFD_SOCK) {
        struct ssock *s = e->sock;
        if (--s->nfds == 0) {
            if (s->waiters > 0)
                efd_signal(fd); /* sleepers hold this file; wake them before it goes */
            s->efd = -1;        /* the number is the kernel's again once closed */
            sock_release(s);
        }
        else if (s->efd == fd)
            s->efd = other_fd(fd, s); /* keep a live descriptor to signal the eventfd through */
    } else {
        struct sepoll *ep = e->ep;
        if (--ep->nfds == 0)
            epoll_free(ep);
        else if (ep->kfd == fd)
            ep->kfd = other_fd(fd, ep);
    }
    free(e);
}

int shim_close(int fd)
{
    enter();
    long rc = 0;
    struct sfd *e = fd_get(fd);
    if (e == NULL) {
        rc = -EBADF;
    } else {
        fd_drop(fd, e);
        if (sys_close(fd) < 0)
            rc = -errno;
    }
    leave();
    return (int)ret(rc);
}

/* Register newfd as another descriptor of what oldfd's entry names. Lock held. */
static int fd_alias(int newfd, const struct sfd *old, bool cloexec)
{
    struct sfd *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -ENOMEM;
    *e = *old;
    e->cloexec = cloexec;
    int rc = fd_set_entry(newfd, e);
    if (rc < 0) {
        free(e);
        return rc;
    }
    if (e->kind == SFD_SOCK)
        e->sock->nfds++;
    else
        e->ep->nfds++;
    return 0;
}

static int dup_from(int fd, long minfd, bool cloexec)
{
    struct sfd *e = fd_get(fd);
    if (e == NULL)
        return -EBADF;
    long nfd = syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, minfd);
    if (nfd < 0)
        return -errno;
    int rc = fd_alias((int)nfd, e, cloexec);
    if (rc < 0) {
        sys_close((int)nfd);
        return rc;
    }
    return (int)nfd;
}

int shim_fcntl(int fd, int cmd, long arg)
{
    enter();
    long rc = 0;
    struct sfd *e = fd_get(fd);
    if (e == NULL) {
        rc = -EBADF;
        goto out;
    }
    switch (cmd) {
    case F_GETFL:
        rc = O_RDWR | (e->kind == SFD_SOCK ? e->sock->status_flags | (e->sock->nonblock ? O_NONBLOCK : 0) : 0);
        break;
    case F_SETFL:
        /* The flags Linux lets F_SETFL change; they belong to the open file, shared by dups. */
        if (e->kind == SFD_SOCK) {
            e->sock->nonblock = (arg & O_NONBLOCK) != 0;
            e->sock->status_flags = (int)(arg & (O_APPEND | O_ASYNC | O_DIRECT | O_NOATIME));
        }
        break;
    case F_GETFD:
        rc = e->cloexec ? FD_CLOEXEC : 0;
        break;
    case F_SETFD:
        e->cloexec = (arg & FD_CLOEXEC) != 0;
        break;
    case F_DUPFD:
    case F_DUPFD_CLOEXEC:
        rc = arg < 0 ? -EINVAL : dup_from(fd, arg, cmd == F_DUPFD_CLOEXEC);
        break;
    default:
        /* Everything else (locks, owners, signals) is the eventfd's business. */
        rc = syscall(SYS_fcntl, fd, cmd, arg);
        if (rc < 0)
            rc = -errno;
    }
out:
    leave();
    return (int)ret(rc);
}

int shim_ioctl(int fd, unsigned long req, void *arg)
{
    enter();
    long rc = 0;
    struct ssock *s = sock_of(fd);
    if (s == NULL) {
        rc = fd_get(fd) ? -ENOTTY : -EBADF;
        goto out;
    }
    switch (req) {
    case FIONBIO:
        if (arg == NULL)
            rc = -EFAULT;
        else
            s->nonblock = *(int *)arg != 0;
        break;
    case FIONREAD: /* == SIOCINQ */
        if (arg == NULL) {
            rc = -EFAULT;
            break;
        }
        if (s->state == SS_LISTENING) {
            rc = -EINVAL;
            break;
        }
        progress();
        *(int *)arg = s->type == SOCK_DGRAM ? (s->rx_head ? (int)s->rx_head->len : 0)
                                            : (int)(s->rx_bytes > INT_MAX ? INT_MAX : s->rx_bytes);
        break;
    case TIOCOUTQ: /* == SIOCOUTQ */
        if (arg == NULL)
            rc = -EFAULT;
        else
            *(int *)arg = (int)s->tx_bytes;
        break;
    default:
        rc = -ENOTTY;
    }
out:
    leave();
    return (int)ret(rc);
}

int shim_dup(int fd)
{
    enter();
    long rc = dup_from(fd, 0, false);
    leave();
    return (int)ret(rc);
}

int shim_dup3(int oldfd, int newfd, int flags)
{
    bool dup2_semantics = flags == -1;
    if (!dup2_semantics && (flags & ~O_CLOEXEC))
        return (int)ret(-EINVAL);
    enter();
    long rc;
    struct sfd *old = fd_get(oldfd);
    if (oldfd == newfd) {
        if (dup2_semantics)
            rc = old || syscall(SYS_fcntl, oldfd, F_GETFD) >= 0 ? newfd : -EBADF;
        else
            rc = -EINVAL;
        goto out;
    }
    /* The kernel replaces newfd atomically; then we forget what newfd was. */
    long r = syscall(SYS_dup3, oldfd, newfd, old ? O_CLOEXEC : (dup2_semantics ? 0 : flags));
    if (r < 0) {
        rc = -errno;
        goto out;
    }
    struct sfd *prev = fd_get(newfd);
    if (prev)
        fd_drop(newfd, prev);
    rc = newfd;
    if (old) {
        int e = fd_alias(newfd, old, !dup2_semantics && (flags & O_CLOEXEC));
        if (e < 0) {
            sys_close(newfd);
            rc = e;
        }
    }
out:
    leave();
    return (int)ret(rc);
}

/* ---- epoll ----------------------------------------------------------------------------------- */

static void epitem_unlink(struct epitem *it)
{
    struct ssock *s = it->s;
    ready_remove(it->ep, it);
    if (it->sprev)
        it->sprev->snext = it->snext;
    else
        s->items = it->snext;
    if (it->snext)
        it->snext->sprev = it->sprev;
    free(it);
}

static void epoll_free(struct sepoll *ep)
{
    /* Unlink our sockets' items that point at this set. */
    for (int qd = 0; qd < byqd_cap; qd++) {
        struct ssock *s = byqd[qd];
        if (s == NULL)
            continue;
        struct epitem *it = s->items;
        while (it) {
            struct epitem *next = it->snext;
            if (it->ep == ep)
                epitem_unlink(it);
            it = next;
        }
    }
    for (int i = 0; i < ep->kitems_cap; i++)
        free(ep->kitems[i]); /* the kernel set dies with its last descriptor */
    free(ep->kitems);
    sys_close(ep->wake_efd);
    ep->wake_efd = -1;
    if (ep->sleepers > 0)
        ep->dead = true; /* the last sleeper frees it */
    else
        free(ep);
}

int shim_epoll_create1(int flags)
{
    if (flags & ~EPOLL_CLOEXEC)
        return (int)ret(-EINVAL);
    enter();
    long rc;
    struct sepoll *ep = calloc(1, sizeof(*ep));
    struct sfd *e = calloc(1, sizeof(*e));
    int kfd = -1, wfd = -1;
    if (ep == NULL || e == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    kfd = (int)syscall(SYS_epoll_create1, EPOLL_CLOEXEC);
    if (kfd < 0) {
        rc = -errno;
        goto fail;
    }
    if ((wfd = sys_eventfd()) < 0) {
        rc = wfd;
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &tag_wake};
    if (syscall(SYS_epoll_ctl, kfd, EPOLL_CTL_ADD, wfd, &ev) < 0) {
        rc = -errno;
        goto fail;
    }
    ep->kfd = kfd;
    ep->wake_efd = wfd;
    ep->nfds = 1;
    e->kind = SFD_EPOLL;
    e->ep = ep;
    e->cloexec = flags & EPOLL_CLOEXEC;
    if ((rc = fd_set_entry(kfd, e)) < 0)
        goto fail;
    leave();
    return kfd;
fail:
    if (kfd >= 0)
        sys_close(kfd);
    if (wfd >= 0)
        sys_close(wfd);
    free(ep);
    free(e);
    leave();
    return (int)ret(rc);
}

static struct epitem *epitem_find(struct ssock *s, struct sepoll *ep)
{
    for (struct epitem *it = s->items; it; it = it->snext)
        if (it->ep == ep)
            return it;
    return NULL;
}

static int kitem_slot(struct sepoll *ep, int fd)
{
    if (fd >= ep->kitems_cap) {
        int ncap = ep->kitems_cap ? ep->kitems_cap : 64;
        while (ncap <= fd)
            ncap *= 2;
        struct kitem **n = realloc(ep->kitems, (size_t)ncap * sizeof(*n));
        if (n == NULL)
            return -ENOMEM;
        memset(n + ep->kitems_cap, 0, (size_t)(ncap - ep->kitems_cap) * sizeof(*n));
        ep->kitems = n;
        ep->kitems_cap = ncap;
    }
    return 0;
}

static long epoll_ctl_kernel(struct sepoll *ep, int op, int fd, struct epoll_event *ev)
{
    long rc = kitem_slot(ep, fd);
    if (rc < 0)
        return rc;
    struct kitem *old = ep->kitems[fd];
    if (op == EPOLL_CTL_DEL) {
        if (syscall(SYS_epoll_ctl, ep->kfd, EPOLL_CTL_DEL, fd, NULL) < 0)
            return -errno;
        ep->kitems[fd] = NULL;
        if (old)
            ep->nkitems--;
        free(old);
        return 0;
    }
    if (ev == NULL)
        return -EFAULT;
    struct kitem *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return -ENOMEM;
    k->fd = fd;
    k->tag = KITEM_TAG;
    k->data = ev->data;
    k->events = ev->events;
    struct epoll_event kev = {.events = ev->events, .data.ptr = k};
    if (syscall(SYS_epoll_ctl, ep->kfd, op, fd, &kev) < 0) {
        rc = -errno;
        free(k);
        return rc;
    }
    if (old) {
        /*
         * MOD swapped the pointer the kernel holds, so the old record is unreachable.
         * An ADD the kernel accepted although we had a record means the program
         * closed that fd and reused the number: the kernel dropped the old entry if
         * the old file is gone, but keeps it (and our pointer) while a duplicate of
         * the old file lives on -- so mark it dead and let it leak; it is tiny.
         */
        if (op == EPOLL_CTL_MOD)
            free(old);
        else
            old->dead = true;
    } else {
        ep->nkitems++;
    }
    ep->kitems[fd] = k;
    return 0;
}

int shim_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    if (fd < 0)
        return (int)ret(-EBADF);
    enter();
    long rc = 0;
    struct sfd *e = fd_get(epfd);
    if (e == NULL || e->kind != SFD_EPOLL) {
        rc = -EBADF;
        goto out;
    }
    struct sepoll *ep = e->ep;
    if (fd == epfd) {
        rc = -EINVAL;
        goto out;
    }
    if (op != EPOLL_CTL_ADD && op != EPOLL_CTL_MOD && op != EPOLL_CTL_DEL) {
        rc = -EINVAL;
        goto out;
    }
    if (op != EPOLL_CTL_DEL && ev != NULL && op == EPOLL_CTL_MOD && (ev->events & EPOLLEXCLUSIVE)) {
        rc = -EINVAL;
        goto out;
    }
    struct ssock *s = sock_of(fd);
    if (s == NULL) {
        rc = epoll_ctl_kernel(ep, op, fd, ev);
        struct sfd *inner = fd_get(fd);
        if (rc == 0 && op == EPOLL_CTL_ADD && inner && inner->kind == SFD_EPOLL) {
            /* An outer kernel set watches this one: keep its wake fd in sync from now on. */
            inner->ep->nested = true;
            if (inner->ep->ready_head && !inner->ep->wake_set) {
                inner->ep->wake_set = true;
                efd_signal(inner->ep->wake_efd);
            }
        }
        goto out;
    }
    struct epitem *it = epitem_find(s, ep);
    if (op == EPOLL_CTL_DEL) {
        if (it == NULL)
            rc = -ENOENT;
        else
            epitem_unlink(it);
        goto out;
    }
    if (ev == NULL) {
        rc = -EFAULT;
        goto out;
    }
    if (op == EPOLL_CTL_MOD && it != NULL && it->exclusive) {
        rc = -EINVAL;
        goto out;
    }
    if (op == EPOLL_CTL_ADD) {
        if (it != NULL) {
            rc = -EEXIST;
            goto out;
        }
        it = calloc(1, sizeof(*it));
        if (it == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        it->ep = ep;
        it->s = s;
        it->fd = fd;
        it->snext = s->items;
        if (s->items)
            s->items->sprev = it;
        s->items = it;
    } else if (it == NULL) {
        rc = -ENOENT;
        goto out;
    }
    if (op == EPOLL_CTL_ADD)
        it->exclusive = (ev->events & EPOLLEXCLUSIVE) != 0;
    it->events = ev->events & ~EPOLLEXCLUSIVE;
    it->data = ev->data;
    it->disabled = false;
    ready_remove(ep, it);
    if (s->state == SS_LISTENING && (it->events & EPOLLIN))
        ensure_accept(s);
    progress();
    sock_changed(s);
out:
    leave();
    return (int)ret(rc);
}

/* Move up to max ready events of our sockets from ep's ready list into out. Lock held. */
static int collect_ours(struct sepoll *ep, struct epoll_event *out, int max)
{
    int n = 0;
    struct epitem *it = ep->ready_head;
    struct epitem *stop = ep->ready_tail;
    while (it != NULL && n < max) {
        struct epitem *next = it->rnext;
        bool last = it == stop;
        probe_error(it->s);
        uint32_t ev = sock_events(it->s) & (it->events | EPOLLERR | EPOLLHUP);
        ready_remove(ep, it);
        if (ev != 0 && !it->disabled) {
            out[n].events = ev;
            out[n].data = it->data;
            n++;
            if (it->events & EPOLLONESHOT)
                it->disabled = true;
            else if (!(it->events & EPOLLET))
                ready_add(ep, it); /* level-triggered: stays ready, goes to the back */
        }
        if (last)
            break;
        it = next;
    }
    return n;
}

/* Translate kernel events of ep's kernel set into the program's events; skip our internal tags. */
static int translate_kernel(struct epoll_event *kev, int k, struct epoll_event *out, int max, bool *libos)
{
    int n = 0;
    for (int i = 0; i < k && n < max; i++) {
        void *p = kev[i].data.ptr;
        if (p == &tag_wait) {
            *libos = true;
            continue;
        }
        if (p == &tag_wake)
            continue;
        struct kitem *ki = p;
        if (ki == NULL || ki->tag != KITEM_TAG || ki->dead)
            continue;
        out[n].events = kev[i].events;
        out[n].data = ki->data;
        n++;
    }
    return n;
}

int shim_epoll_pwait(int epfd, struct epoll_event *events, int maxevents, int timeout, const sigset_t *sigmask)
{
    if (events == NULL)
        return (int)ret(-EFAULT);
    if (maxevents <= 0)
        return (int)ret(-EINVAL);
    uint64_t deadline = timeout < 0 ? UINT64_MAX : now_ms() + (uint64_t)timeout;
    uint64_t spin_end = 0;
    struct epoll_event kev[64];
    enter();
    long rc;
    for (;;) {
        struct sfd *e = fd_get(epfd);
        if (e == NULL || e->kind != SFD_EPOLL) {
            rc = -EBADF;
            break;
        }
        struct sepoll *ep = e->ep;
        progress();
        int n = 0;
        bool libos = false;
        int kmax = maxevents < 64 ? maxevents : 64;
        /* Alternate which kind fills the buffer first, so neither starves the other. */
        ep->ours_first = !ep->ours_first;
        if (ep->ours_first)
            n = collect_ours(ep, events, maxevents);
        if (n < maxevents && ep->nkitems > 0) {
            int room = maxevents - n < kmax ? maxevents - n : kmax;
            long k = syscall(SYS_epoll_pwait, ep->kfd, kev, room, 0, NULL, (size_t)(_NSIG / 8));
            if (k > 0)
                n += translate_kernel(kev, (int)k, events + n, maxevents - n, &libos);
        }
        if (!ep->ours_first && n < maxevents)
            n += collect_ours(ep, events + n, maxevents - n);
        if (n > 0) {
            rc = n;
            break;
        }
        int wait = remaining_ms(deadline);
        if (wait == 0) {
            rc = 0;
            break;
        }
        /*
         * Spin a little before sleeping, as demi_wait does: a request that arrives
         * within spin_us is served without a sleep and a wake-up in the kernel.
         */
        if (spin_end == 0)
            spin_end = now_us() + spin_us;
        if (now_us() < spin_end) {
            pthread_mutex_unlock(&lk);
            sched_yield();
            pthread_mutex_lock(&lk);
            continue;
        }
        /* Nothing ready: sleep in the kernel set, which holds the LibOS wait fd and our wake fd. */
        int kfd = ep->kfd;
        /*
         * The LibOS wait fd is in the kernel set only while someone sleeps in it:
         * kept there for good, it would make this set look readable to an outer
         * set whenever the LibOS has work, though nothing of the program's is ready.
         */
        if (ep->sleepers++ == 0 && wait_fd >= 0) {
            struct epoll_event wev = {.events = EPOLLIN, .data.ptr = &tag_wait};
            (void)syscall(SYS_epoll_ctl, kfd, EPOLL_CTL_ADD, wait_fd, &wev);
        }
        if (ep->wake_set && ep->ready_head == NULL) {
            ep->wake_set = false;
            efd_clear(ep->wake_efd);
        }
        pthread_mutex_unlock(&lk);
        int depth = shim_depth;
        shim_depth = 0;
        long k = syscall(SYS_epoll_pwait, kfd, kev, kmax, wait_fd >= 0 ? wait : (wait < 0 || wait > 1 ? 1 : wait),
                         sigmask, (size_t)(_NSIG / 8));
        int err = errno;
        shim_depth = depth;
        pthread_mutex_lock(&lk);
        if (--ep->sleepers == 0) {
            if (ep->dead) {
                free(ep); /* closed while we slept */
                rc = -EBADF;
                break;
            }
            if (wait_fd >= 0)
                (void)syscall(SYS_epoll_ctl, ep->kfd, EPOLL_CTL_DEL, wait_fd, NULL);
        }
        if (k < 0) {
            rc = -err; /* epoll_wait is never restarted after a signal handler */
            break;
        }
        if (k > 0) {
            e = fd_get(epfd);
            if (e == NULL || e->kind != SFD_EPOLL) {
                rc = -EBADF;
                break;
            }
            n = translate_kernel(kev, (int)k, events, maxevents, &libos);
            if (n > 0) {
                /* Add whatever of ours is ready too, then return. */
                progress();
                n += collect_ours(e->ep, events + n, maxevents - n);
                rc = n;
                break;
            }
        }
    }
    leave();
    return (int)ret(rc);
}

/* ---- poll and select ------------------------------------------------------------------------- */

bool shim_pollset_has_ours(const struct pollfd *fds, nfds_t nfds)
{
    if (!active || fds == NULL)
        return false;
    for (nfds_t i = 0; i < nfds; i++)
        if (fds[i].fd >= 0 && fd_get(fds[i].fd) != NULL)
            return true;
    return false;
}

bool shim_fdset_has_ours(int nfds, const fd_set *r, const fd_set *w, const fd_set *e)
{
    if (!active)
        return false;
    for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++)
        if (((r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w)) || (e && FD_ISSET(fd, e))) && fd_get(fd) != NULL)
            return true;
    return false;
}

/* poll(2) bits of one of our descriptors. Lock held. */
static short our_revents(int fd, short events)
{
    struct sfd *e = fd_get(fd);
    if (e == NULL)
        return POLLNVAL;
    if (e->kind == SFD_EPOLL) {
        struct sepoll *ep = e->ep;
        if (ep->ready_head != NULL)
            return events & POLLIN;
        struct epoll_event kev[8];
        long k = syscall(SYS_epoll_pwait, ep->kfd, kev, 8, 0, NULL, (size_t)(_NSIG / 8));
        /* Peeking consumed nothing level-triggered; any event of the program's means "readable". */
        bool lib = false;
        struct epoll_event out[8];
        if (k > 0 && translate_kernel(kev, (int)k, out, 8, &lib) > 0)
            return events & POLLIN;
        return 0;
    }
    probe_error(e->sock);
    uint32_t ev = sock_events(e->sock);
    short r = 0;
    if (ev & EPOLLIN)
        r |= POLLIN;
    if (ev & EPOLLOUT)
        r |= POLLOUT;
    if (ev & EPOLLRDNORM)
        r |= POLLRDNORM;
    if (ev & EPOLLWRNORM)
        r |= POLLWRNORM;
    if (ev & EPOLLRDHUP)
        r |= POLLRDHUP;
    r &= events | POLLRDNORM | POLLWRNORM;
    r &= (short)(events | POLLERR | POLLHUP);
    if (ev & EPOLLERR)
        r |= POLLERR;
    if (ev & EPOLLHUP)
        r |= POLLHUP;
    return r;
}

int shim_ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *timeout, const sigset_t *sigmask)
{
    if (nfds > (nfds_t)FD_PAGES * FD_PAGE_SIZE)
        return (int)ret(-EINVAL);
    if (fds == NULL && nfds > 0)
        return (int)ret(-EFAULT);
    if (timeout && (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000L))
        return (int)ret(-EINVAL);
    uint64_t deadline =
        timeout ? now_ms() + (uint64_t)timeout->tv_sec * 1000u + (uint64_t)(timeout->tv_nsec + 999999) / 1000000u
                : UINT64_MAX;
    /*
     * k is what the kernel polls: program fds as given, ours as their eventfd or
     * kernel epoll fd (POLLIN), plus the LibOS wait fd. socks/eps remember which
     * of ours a sleeper registered with, to unregister after waking.
     */
    struct pollfd stack_k[33];
    struct mine {
        void *obj;   /* struct ssock or struct sepoll, by kind */
        int kind;    /* 0: a kernel fd */
        bool asleep; /* registered as a sleeper on obj */
    } stack_o[32];
    struct pollfd *k = nfds < 33 ? stack_k : malloc((nfds + 1) * sizeof(*k));
    struct mine *ours = nfds <= 32 ? stack_o : malloc((nfds ? nfds : 1) * sizeof(*ours));
    if (k == NULL || ours == NULL) {
        if (k != stack_k)
            free(k);
        if (ours != stack_o)
            free(ours);
        return (int)ret(-ENOMEM);
    }
    enter();
    long rc;
    for (;;) {
        progress();
        int ready = 0, nkernel = 0;
        bool need_cap = false;
        for (nfds_t i = 0; i < nfds; i++) {
            struct sfd *e = fds[i].fd >= 0 ? fd_get(fds[i].fd) : NULL;
            k[i] = fds[i];
            k[i].revents = 0;
            ours[i].obj = NULL;
            ours[i].kind = 0;
            ours[i].asleep = false;
            if (e == NULL) {
                fds[i].revents = 0;
                nkernel += fds[i].fd >= 0;
                continue;
            }
            if (e->kind == SFD_SOCK && e->sock->state == SS_LISTENING && (fds[i].events & POLLIN) &&
                !e->sock->acc_pending && e->sock->accq_len == 0) {
                ensure_accept(e->sock);
                progress();
            }
            fds[i].revents = our_revents(fds[i].fd, fds[i].events);
            if (fds[i].revents)
                ready++;
            else if (fds[i].events & POLLOUT)
                need_cap = true; /* writability has no wake-up of its own */
            k[i].fd = fds[i].revents ? -1 : fds[i].fd;
            k[i].events = POLLIN;
            ours[i].kind = e->kind;
            ours[i].obj = e->kind == SFD_SOCK ? (void *)e->sock : (void *)e->ep;
        }
        /* Kernel fds: ask now without blocking (only if there are any). */
        if (nkernel > 0) {
            long kr = syscall(SYS_ppoll, k, nfds, &zero_ts, NULL, (size_t)(_NSIG / 8));
            if (kr > 0)
                for (nfds_t i = 0; i < nfds; i++)
                    if (ours[i].kind == 0 && k[i].revents) {
                        fds[i].revents = k[i].revents;
                        ready++;
                    }
        }
        if (ready > 0) {
            rc = ready;
            break;
        }
        int wait = remaining_ms(deadline);
        if (wait == 0) {
            rc = 0;
            break;
        }
        if (need_cap && (wait < 0 || wait > SLEEP_CAP_MS))
            wait = SLEEP_CAP_MS;
        nfds_t m = nfds;
        if (wait_fd >= 0)
            k[m++] = (struct pollfd){.fd = wait_fd, .events = POLLIN};
        else if (wait < 0 || wait > 1)
            wait = 1;
        /* Register as a sleeper, so completions dispatched by other threads wake us. */
        for (nfds_t i = 0; i < nfds; i++) {
            if (ours[i].kind == 0 || k[i].fd < 0)
                continue;
            ours[i].asleep = true;
            if (ours[i].kind == SFD_SOCK) {
                struct ssock *ss = ours[i].obj;
                efd_sync(ss, sock_events(ss));
                ss->waiters++;
            } else {
                struct sepoll *ep = ours[i].obj;
                ep->sleepers++;
                if (ep->wake_set && ep->ready_head == NULL) {
                    ep->wake_set = false;
                    efd_clear(ep->wake_efd);
                }
            }
        }
        struct timespec ts = {.tv_sec = wait / 1000, .tv_nsec = (long)(wait % 1000) * 1000000L};
        pthread_mutex_unlock(&lk);
        int depth = shim_depth;
        shim_depth = 0;
        long r = syscall(SYS_ppoll, k, m, wait < 0 ? NULL : &ts, sigmask, (size_t)(_NSIG / 8));
        int err = errno;
        shim_depth = depth;
        pthread_mutex_lock(&lk);
        /* Unregister; an object closed meanwhile was kept for us (dead) and is freed by the last sleeper. */
        for (nfds_t i = 0; i < nfds; i++) {
            if (!ours[i].asleep)
                continue;
            ours[i].asleep = false;
            if (ours[i].kind == SFD_SOCK) {
                struct ssock *ss = ours[i].obj;
                if (--ss->waiters == 0 && ss->dead)
                    sock_free(ss);
            } else {
                struct sepoll *ep = ours[i].obj;
                if (--ep->sleepers == 0 && ep->dead)
                    free(ep);
            }
        }
        if (r < 0 && err == EINTR) {
            rc = -EINTR; /* poll is never restarted after a signal handler */
            break;
        }
    }
    leave();
    if (k != stack_k)
        free(k);
    if (ours != stack_o)
        free(ours);
    return (int)ret(rc);
}

int shim_pselect(int nfds, fd_set *r, fd_set *w, fd_set *ex, const struct timespec *timeout, const sigset_t *sigmask)
{
    if (nfds < 0 || nfds > FD_SETSIZE)
        return (int)ret(-EINVAL);
    struct pollfd pf[FD_SETSIZE];
    int map[FD_SETSIZE];
    nfds_t n = 0;
    for (int fd = 0; fd < nfds; fd++) {
        short ev = 0;
        if (r && FD_ISSET(fd, r))
            ev |= POLLIN;
        if (w && FD_ISSET(fd, w))
            ev |= POLLOUT;
        if (ex && FD_ISSET(fd, ex))
            ev |= POLLPRI;
        if (ev) {
            pf[n] = (struct pollfd){.fd = fd, .events = ev};
            map[n++] = fd;
        }
    }
    int rc = shim_ppoll(pf, n, timeout, sigmask);
    if (rc < 0)
        return -1;
    for (nfds_t i = 0; i < n; i++)
        if (pf[i].revents & POLLNVAL) {
            errno = EBADF;
            return -1;
        }
    if (r)
        FD_ZERO(r);
    if (w)
        FD_ZERO(w);
    if (ex)
        FD_ZERO(ex);
    int count = 0;
    for (nfds_t i = 0; i < n; i++) {
        short re = pf[i].revents;
        if (r && (re & (POLLIN | POLLHUP | POLLERR)) && (pf[i].events & POLLIN)) {
            FD_SET(map[i], r);
            count++;
        }
        if (w && (re & (POLLOUT | POLLERR)) && (pf[i].events & POLLOUT)) {
            FD_SET(map[i], w);
            count++;
        }
        if (ex && (re & POLLPRI)) {
            FD_SET(map[i], ex);
            count++;
        }
    }
    return count;
}

/* ---- fork -------------------------------------------------------------------------------------- */

/*
 * In the child, the kernel objects behind our descriptors (eventfds, epoll sets)
 * are shared with the parent: give every one a private copy under the same
 * number, so neither process drains the other's wake-ups. The LibOS has already
 * made its own state private (its fork handler ran first) and may have a new wait fd.
 */
static void fork_alias_cb(int fd, struct sfd *e, void *ctx)
{
    (void)ctx;
    /* Point every descriptor at its object's new kernel file (prepared in fork_new). */
    int nfd = e->kind == SFD_SOCK ? e->sock->fork_new : e->ep->fork_new;
    if (nfd >= 0)
        (void)syscall(SYS_dup3, nfd, fd, O_CLOEXEC);
}

static void fork_epoll_cb(int fd, struct sfd *e, void *ctx)
{
    (void)ctx;
    if (e->kind != SFD_EPOLL || e->ep->kfd != fd || e->ep->fork_new != -2)
        return;
    struct sepoll *ep = e->ep;
    ep->fork_new = -1;
    int nk = (int)syscall(SYS_epoll_create1, EPOLL_CLOEXEC);
    int nw = sys_eventfd();
    if (nk < 0 || nw < 0) {
        if (nk >= 0)
            sys_close(nk);
        if (nw >= 0)
            sys_close(nw);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &tag_wake};
    syscall(SYS_epoll_ctl, nk, EPOLL_CTL_ADD, nw, &ev);
    for (int f = 0; f < ep->kitems_cap; f++) {
        struct kitem *ki = ep->kitems[f];
        if (ki == NULL)
            continue;
        struct epoll_event kev = {.events = ki->events, .data.ptr = ki};
        syscall(SYS_epoll_ctl, nk, EPOLL_CTL_ADD, f, &kev);
    }
    sys_close(ep->wake_efd);
    ep->wake_efd = nw;
    ep->wake_set = false;
    ep->fork_new = nk;
}

static void fork_mark_cb(int fd, struct sfd *e, void *ctx)
{
    (void)fd;
    (void)ctx;
    if (e->kind == SFD_EPOLL)
        e->ep->fork_new = -2; /* to be rebuilt once */
}

static void fork_close_cb(int fd, struct sfd *e, void *ctx)
{
    (void)fd;
    (void)ctx;
    int *p = e->kind == SFD_SOCK ? &e->sock->fork_new : &e->ep->fork_new;
    if (*p >= 0) {
        sys_close(*p);
    }
    *p = -1;
}

/*
 * In the child, the kernel objects behind our descriptors (eventfds, epoll sets)
 * are shared with the parent: give every one a private copy under the same
 * numbers, so neither process drains the other's wake-ups. The LibOS has already
 * made its own state private (its fork handler ran first) and may have a new wait fd.
 */
static void fork_child(void)
{
    pthread_mutex_init(&lk, NULL);
    int fd;
    wait_fd = demi_wait_fd(&fd) == 0 ? fd : -1;
    for (int qd = 0; qd < byqd_cap; qd++)
        if (byqd[qd] != NULL)
            byqd[qd]->fork_new = sys_eventfd();
    for_each_fd(fork_mark_cb, NULL);
    for_each_fd(fork_epoll_cb, NULL);
    for_each_fd(fork_alias_cb, NULL);
    for_each_fd(fork_close_cb, NULL);
    for (int qd = 0; qd < byqd_cap; qd++) {
        struct ssock *s = byqd[qd];
        if (s == NULL)
            continue;
        s->fork_new = -1;
        s->efd_set = false;
        sock_changed(s);
    }
    for_each_fd(fork_mark_cb, NULL);
    for_each_fd(fork_close_cb, NULL);
}
