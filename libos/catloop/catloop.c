/* catloop: TCP sockets between processes of one host over shared-memory byte rings, with every kernel peer (and UDP) delegated to catnap's ops table. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "libos.h"

/*
 * Design. Every TCP socket starts as a catnap (kernel) socket in q->priv: the kernel
 * then arbitrates ports (EADDRINUSE, ephemeral ports, SO_REUSEADDR) for us. A socket
 * becomes catloop's only when it listens (it also publishes a listener file in
 * /dev/shm) or when it connects to an address with such a listener; those sockets get
 * an entry in a table indexed by qd, and every op checks the table first. Anything
 * without an entry (UDP, kernel connections, kernel-accepted sockets) goes to catnap.
 *
 * A connection is one shm file holding two SPSC byte rings (client->server and
 * server->client). The client creates it and posts its name into a slot of the
 * listener's file; the listener's poll opens it, unlinks it and marks it accepted.
 * Peer death is found by kill(pid, 0) when a ring stays idle.
 */

#define CL_MAGIC 0x636c6f6f70763031ull /* "cloopv01" */
#define CL_SLOTS 128u
#define CL_NAME_MAX 64u
#define CL_RING_CAP (256u * 1024u) /* power of two */
#define CL_POP_MAX (64u * 1024u)
#define CL_LIVENESS_NS 2000000ull /* how often an idle connection checks its peer's pid */
#define CL_KCHECK_NS 50000ull     /* how often a listener waiting to accept looks at its kernel socket */
#define CL_KPOLL_EVERY 8u         /* while ring operations wait, catnap is polled this seldom */
#define CL_FLAG_NS 20000ull       /* ring ops idle this long ask the peer for a wake-up (below the core's spin) */
#define CL_TICK_NS 1000000ull     /* while a ring operation waits with no wake-up armed, the core's sleep is cut to this */
#define CL_SLOW_TICK_NS 50000000ull /* when every waiting op has a peer wake-up armed: only to notice a dead peer */

struct cl_slot {
    _Atomic uint32_t state; /* 0 free, 1 being written, 2 posted */
    char name[CL_NAME_MAX];
};

struct cl_listen_shm {
    uint64_t magic;
    int32_t pid;
    struct cl_slot slot[CL_SLOTS];
};

struct cl_ring_ctl {
    _Atomic uint64_t head __attribute__((aligned(64))); /* consumer's bytes consumed */
    _Atomic uint64_t tail __attribute__((aligned(64))); /* producer's bytes published */
};

/* The shared connection region: 0 = client side, 1 = server side; ring i is written by side i. */
struct cl_conn_shm {
    uint64_t magic;
    _Atomic uint32_t accepted; /* 0 pending, 1 accepted, 2 refused */
    int32_t pid[2];
    _Atomic uint32_t closed[2]; /* side i will write no more */
    struct sockaddr_in addr[2];
    int32_t wake_fd[2];           /* side i's wake pipe (write end), as an fd number in pid[i] */
    _Atomic uint32_t want_wake[2]; /* side i may sleep: write a byte to its wake pipe after publishing */
    struct cl_ring_ctl ring[2] __attribute__((aligned(64)));
};

#define CL_CONN_DATA_OFF 4096u
#define CL_CONN_BYTES (CL_CONN_DATA_OFF + 2u * CL_RING_CAP)

enum cl_kind { CL_LISTENER = 1, CL_CONN };

struct cl_sock {
    enum cl_kind kind;
    int qd;
    struct core_queue *q;
    struct cl_sock *next, *prev; /* all catloop sockets, for poll */
    struct core_oplist accepts, connects, pushes, pops;
    /* listener */
    struct cl_listen_shm *lsh;
    char lname[CL_NAME_MAX];
    struct sockaddr_in laddr;
    int kfd;               /* catnap's listening kernel fd (not ours to close), or -1 */
    uint64_t next_kcheck_ns;
    /* connection */
    struct cl_conn_shm *csh;
    char cname[CL_NAME_MAX];
    int side; /* 0 client, 1 server */
    bool posted;
    struct sockaddr_in target;
    uint64_t next_check_ns;
    bool dead;
    int peer_wfd;        /* the peer's wake pipe, opened through /proc on first use, or -1 */
    uint64_t idle_since; /* ring ops waiting without progress since (0: progressing) */
    bool flagged;        /* we set want_wake[side] */
};

static struct {
    const struct libos_ops *kn; /* catnap */
    bool fallback;
    uint32_t seq;
    struct cl_sock **tab;
    size_t ntab;
    struct cl_sock *all;
    /*
     * Waiting: the core sleeps on wait_fd, our epoll set holding catnap's set and a
     * timerfd. Ring peers cannot wake a kernel fd, so while any ring operation waits
     * the timer ticks every CL_TICK_NS (CL_SLOW_TICK_NS once every waiting connection
     * has asked its peer for a wake-up): a ring completion may come up to one tick late
     * once the core's spin phase is over, and an idle process with nothing pending on
     * a ring sleeps with no wake-ups at all.
     */
    int epfd, tfd;
    int wpipe[2]; /* our wake pipe: ring peers write to it when we asked (want_wake) */
    bool armed;
    uint64_t next_tick_ns;
    uint64_t last_busy_ns;
    uint64_t period; /* of the armed tick */
    bool ring_busy;  /* the last poll left ring operations waiting */
    uint32_t npolls;
} cl = {.epfd = -1, .tfd = -1, .wpipe = {-1, -1}};

/* ---- helpers -------------------------------------------------------------------- */

static struct cl_sock *lookup(const struct core_queue *q)
{
    if (q->qd < 0 || (size_t)q->qd >= cl.ntab)
        return NULL;
    return cl.tab[q->qd];
}

static int tab_set(int qd, struct cl_sock *s)
{
    if (qd < 0)
        return -EINVAL;
    if ((size_t)qd >= cl.ntab) {
        if (s == NULL)
            return 0;
        size_t n = cl.ntab ? cl.ntab : 64;
        while (n <= (size_t)qd)
            n *= 2;
        struct cl_sock **t = realloc(cl.tab, n * sizeof(*t));
        if (t == NULL)
            return -ENOMEM;
        memset(t + cl.ntab, 0, (n - cl.ntab) * sizeof(*t));
        cl.tab = t;
        cl.ntab = n;
    }
    cl.tab[qd] = s;
    return 0;
}

static struct cl_sock *sock_new(enum cl_kind kind, struct core_queue *q)
{
    struct cl_sock *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->kind = kind;
    s->q = q;
    s->qd = q->qd;
    s->peer_wfd = -1;
    if (tab_set(q->qd, s) < 0) {
        free(s);
        return NULL;
    }
    s->next = cl.all;
    if (cl.all)
        cl.all->prev = s;
    cl.all = s;
    return s;
}

static void sock_free(struct cl_sock *s)
{
    tab_set(s->qd, NULL);
    if (s->prev)
        s->prev->next = s->next;
    else
        cl.all = s->next;
    if (s->next)
        s->next->prev = s->prev;
    free(s);
}

static bool pid_alive(int32_t pid)
{
    if (pid <= 0)
        return false;
    return kill(pid, 0) == 0 || errno != ESRCH;
}

static void listen_name(char *buf, const struct sockaddr_in *a)
{
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
    snprintf(buf, CL_NAME_MAX, "/demi-catloop.%s.%u", ip, (unsigned)ntohs(a->sin_port));
}

/* Map an shm object of exactly size bytes; -errno on failure. */
static void *map_fd(int fd, size_t size, int *err)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        *err = -errno;
        return NULL;
    }
    if ((size_t)st.st_size != size || st.st_uid != geteuid()) {
        *err = -EIO;
        return NULL;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        *err = -errno;
        return NULL;
    }
    return p;
}

/* Open a live listener's file for the address, or NULL. */
static struct cl_listen_shm *find_listener(const struct sockaddr_in *a)
{
    struct sockaddr_in cand[2] = {*a, *a};
    int n = 1;
    if ((ntohl(a->sin_addr.s_addr) >> 24) == 127) {
        cand[1].sin_addr.s_addr = htonl(INADDR_ANY);
        n = 2;
    }
    for (int i = 0; i < n; i++) {
        char name[CL_NAME_MAX];
        listen_name(name, &cand[i]);
        int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int err = 0;
        struct cl_listen_shm *l = map_fd(fd, sizeof(*l), &err);
        close(fd);
        if (l == NULL)
            continue;
        if (l->magic == CL_MAGIC && pid_alive(l->pid))
            return l;
        munmap(l, sizeof(*l));
    }
    return NULL;
}

static uint8_t *ring_data(struct cl_conn_shm *c, int i)
{
    return (uint8_t *)c + CL_CONN_DATA_OFF + (size_t)i * CL_RING_CAP;
}

/* Bytes readable in ring i, or -EIO when the producer's index is impossible. */
static int64_t ring_avail(struct cl_conn_shm *c, int i, uint64_t *head)
{
    struct cl_ring_ctl *r = &c->ring[i];
    *head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    uint64_t n = tail - *head;
    if (n > CL_RING_CAP)
        return -EIO;
    return (int64_t)n;
}

static int64_t ring_room(struct cl_conn_shm *c, int i, uint64_t *tail)
{
    struct cl_ring_ctl *r = &c->ring[i];
    *tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    uint64_t used = *tail - head;
    if (used > CL_RING_CAP)
        return -EIO;
    return (int64_t)(CL_RING_CAP - used);
}

static void ring_copy_out(struct cl_conn_shm *c, int i, uint64_t pos, void *dst, size_t n)
{
    size_t off = pos & (CL_RING_CAP - 1), first = CL_RING_CAP - off;
    if (first > n)
        first = n;
    memcpy(dst, ring_data(c, i) + off, first);
    memcpy((uint8_t *)dst + first, ring_data(c, i), n - first);
}

static void ring_copy_in(struct cl_conn_shm *c, int i, uint64_t pos, const void *src, size_t n)
{
    size_t off = pos & (CL_RING_CAP - 1), first = CL_RING_CAP - off;
    if (first > n)
        first = n;
    memcpy(ring_data(c, i) + off, src, first);
    memcpy(ring_data(c, i), (const uint8_t *)src + first, n - first);
}

static void fail_all(struct cl_sock *s, int err)
{
    core_oplist_fail_all(&s->accepts, err);
    core_oplist_fail_all(&s->connects, err);
    core_oplist_fail_all(&s->pushes, err);
    core_oplist_fail_all(&s->pops, err);
}

/* ---- progress -------------------------------------------------------------------- */

static bool peer_gone(struct cl_sock *s)
{
    if (s->dead)
        return true;
    uint64_t now = core_now_ns();
    if (now < s->next_check_ns)
        return false;
    s->next_check_ns = now + CL_LIVENESS_NS;
    int32_t pid = s->csh->pid[1 - s->side];
    if (!pid_alive(pid))
        s->dead = true;
    return s->dead;
}

static int conn_io(struct cl_sock *s);

static int conn_progress(struct cl_sock *s)
{
    struct cl_conn_shm *c = s->csh;
    int done = 0;

    if (s->connects.head != NULL) {
        struct core_op *op = s->connects.head;
        uint32_t a = atomic_load_explicit(&c->accepted, memory_order_acquire);
        if (a == 1) {
            core_oplist_remove(&s->connects, op);
            core_op_complete_connect(op);
            done++;
        } else if (a != 0 || s->lsh == NULL || !pid_alive(s->lsh->pid)) {
            core_oplist_remove(&s->connects, op);
            core_op_fail(op, ECONNREFUSED);
            done++;
        } else if (!s->posted) {
            for (uint32_t i = 0; i < CL_SLOTS; i++) {
                uint32_t zero = 0;
                if (atomic_compare_exchange_strong(&s->lsh->slot[i].state, &zero, 1)) {
                    memcpy(s->lsh->slot[i].name, s->cname, CL_NAME_MAX);
                    atomic_store_explicit(&s->lsh->slot[i].state, 2, memory_order_release);
                    s->posted = true;
                    break;
                }
            }
        }
        if (s->connects.head == NULL && s->lsh != NULL) {
            munmap(s->lsh, sizeof(*s->lsh));
            s->lsh = NULL;
        }
        return done;
    }
    return conn_io(s);
}

/* Wake the peer if it asked; after a publish (tail, head or closed) and a full fence. */
static void wake_peer(struct cl_sock *s)
{
    struct cl_conn_shm *c = s->csh;
    int peer = 1 - s->side;
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&c->want_wake[peer], memory_order_relaxed) == 0)
        return;
    if (s->peer_wfd < 0) {
        int32_t pid = c->pid[peer], fd = c->wake_fd[peer];
        if (pid <= 0 || fd < 0)
            return;
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, (int)fd);
        int w = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (w < 0)
            return;
        struct stat st;
        /* The numbers come from the peer: write only into a pipe, never into some file of ours. */
        if (fstat(w, &st) < 0 || !S_ISFIFO(st.st_mode)) {
            close(w);
            return;
        }
        s->peer_wfd = w;
    }
    if (write(s->peer_wfd, "w", 1) < 0) {
        /* EAGAIN: the pipe is full, so already readable */
    }
}

static void drain_wake_pipe(void)
{
    char buf[256];
    while (cl.wpipe[0] >= 0 && read(cl.wpipe[0], buf, sizeof(buf)) == (ssize_t)sizeof(buf)) {
    }
}

static int conn_io(struct cl_sock *s)
{
    struct cl_conn_shm *c = s->csh;
    int done = 0, me = s->side, peer = 1 - s->side;
    bool published = false;

again:
    while (s->pushes.head != NULL) {
        struct core_op *op = s->pushes.head;
        if (atomic_load_explicit(&c->closed[peer], memory_order_acquire) == 2 || peer_gone(s)) {
            core_oplist_remove(&s->pushes, op);
            core_op_fail(op, s->dead ? ECONNRESET : EPIPE);
            done++;
            continue;
        }
        uint64_t tail;
        int64_t room = ring_room(c, me, &tail);
        if (room < 0) {
            core_oplist_remove(&s->pushes, op);
            core_op_fail(op, EIO);
            done++;
            continue;
        }
        uint32_t len = op->sga.sga_segs[0].sgaseg_len;
        size_t n = len - op->progress;
        if ((uint64_t)room < n)
            n = (size_t)room;
        if (n == 0)
            break;
        ring_copy_in(c, me, tail, (const uint8_t *)op->sga.sga_segs[0].sgaseg_buf + op->progress, n);
        atomic_store_explicit(&c->ring[me].tail, tail + n, memory_order_release);
        published = true;
        op->progress += (uint32_t)n;
        if (op->progress < len)
            break;
        core_oplist_remove(&s->pushes, op);
        core_op_complete_push(op);
        done++;
    }

    while (s->pops.head != NULL) {
        struct core_op *op = s->pops.head;
        uint64_t head;
        int64_t avail = ring_avail(c, peer, &head);
        if (avail < 0) {
            core_oplist_remove(&s->pops, op);
            core_op_fail(op, EIO);
            done++;
            continue;
        }
        bool eof = false;
        if (avail == 0) {
            if (atomic_load_explicit(&c->closed[peer], memory_order_acquire) != 0) {
                /* Closed after its last write: re-check so no byte published before is lost. */
                avail = ring_avail(c, peer, &head);
                eof = avail == 0;
            } else if (peer_gone(s)) {
                core_oplist_remove(&s->pops, op);
                core_op_fail(op, ECONNRESET);
                done++;
                continue;
            }
            if (avail == 0 && !eof)
                break;
        }
        size_t n = avail > CL_POP_MAX ? CL_POP_MAX : (size_t)avail;
        demi_sgarray_t sga = core_sga_alloc(n ? n : 1);
        if (sga.sga_numsegs == 0)
            break; /* retry on a later poll */
        if (n > 0) {
            ring_copy_out(c, peer, head, sga.sga_segs[0].sgaseg_buf, n);
            atomic_store_explicit(&c->ring[peer].head, head + n, memory_order_release);
            published = true;
        }
        sga.sga_segs[0].sgaseg_len = (uint32_t)n;
        core_oplist_remove(&s->pops, op);
        core_op_complete_pop(op, &sga);
        done++;
    }
    if (published)
        wake_peer(s);

    bool waiting = s->pushes.head != NULL || s->pops.head != NULL;
    if (done > 0 || !waiting) {
        if (s->flagged) {
            atomic_store_explicit(&c->want_wake[me], 0, memory_order_relaxed);
            s->flagged = false;
        }
        s->idle_since = 0;
    } else if (!s->flagged && cl.wpipe[1] >= 0) {
        uint64_t now = core_now_ns();
        if (s->idle_since == 0) {
            s->idle_since = now;
        } else if (now - s->idle_since >= CL_FLAG_NS) {
            /* Ask for a wake-up, then look once more: what the peer published before it saw the flag is found here. */
            drain_wake_pipe();
            atomic_store_explicit(&c->want_wake[me], 1, memory_order_relaxed);
            atomic_thread_fence(memory_order_seq_cst);
            s->flagged = true;
            published = false;
            goto again;
        }
    }
    return done;
}

/*
 * The kernel fd catnap listens on for laddr. catnap does not expose it and a LibOS
 * must not look inside another, so we ask the kernel: the one listening AF_INET
 * stream socket of this process bound to exactly that address. -1 if none or
 * ambiguous (then kernel clients wait in the backlog, never accepted).
 */
static int find_kernel_listener(const struct sockaddr_in *laddr)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    int found = -1, n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (*end != '\0' || fd < 0 || fd == dirfd(d))
            continue;
        int v = 0;
        socklen_t len = sizeof(v);
        if (getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) < 0 || v != 1)
            continue;
        len = sizeof(v);
        if (getsockopt((int)fd, SOL_SOCKET, SO_DOMAIN, &v, &len) < 0 || v != AF_INET)
            continue;
        struct sockaddr_in a;
        len = sizeof(a);
        if (getsockname((int)fd, (struct sockaddr *)&a, &len) < 0 || a.sin_port != laddr->sin_port ||
            a.sin_addr.s_addr != laddr->sin_addr.s_addr)
            continue;
        found = (int)fd;
        n++;
    }
    closedir(d);
    return n == 1 ? found : -1;
}

/* A kernel client is waiting: hand the oldest accept to catnap, which takes it at once. */
static int kernel_accept_progress(struct cl_sock *s)
{
    uint64_t now = core_now_ns();
    if (s->kfd < 0 || now < s->next_kcheck_ns)
        return 0;
    s->next_kcheck_ns = now + CL_KCHECK_NS;
    struct pollfd p = {.fd = s->kfd, .events = POLLIN};
    if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN))
        return 0;
    struct core_op *op = s->accepts.head;
    core_oplist_remove(&s->accepts, op);
    int ret = cl.kn->accept(s->q, op);
    if (ret < 0)
        core_op_fail(op, -ret);
    return 1;
}

/* Take one posted connection request, or return 0 if none. */
static int listener_progress(struct cl_sock *s)
{
    int done = 0;
    for (uint32_t i = 0; i < CL_SLOTS && s->accepts.head != NULL; i++) {
        struct cl_slot *sl = &s->lsh->slot[i];
        if (atomic_load_explicit(&sl->state, memory_order_acquire) != 2)
            continue;
        char name[CL_NAME_MAX];
        memcpy(name, sl->name, CL_NAME_MAX);
        atomic_store_explicit(&sl->state, 0, memory_order_release);
        name[CL_NAME_MAX - 1] = '\0';
        if (name[0] != '/' || strchr(name + 1, '/') != NULL)
            continue;
        int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int err = 0;
        struct cl_conn_shm *c = map_fd(fd, CL_CONN_BYTES, &err);
        close(fd);
        if (c == NULL)
            continue;
        shm_unlink(name);
        if (c->magic != CL_MAGIC) {
            munmap(c, CL_CONN_BYTES);
            continue;
        }
        struct core_queue *nq;
        int qd = core_queue_new(CORE_Q_TCP, NULL, &nq);
        struct cl_sock *ns = qd >= 0 ? sock_new(CL_CONN, nq) : NULL;
        if (ns == NULL || cl.kn->socket(nq, AF_INET, SOCK_STREAM, 0) < 0) {
            /* Refuse; the queue (if any) stays for the application to never see: close it in the core's eyes. */
            atomic_store_explicit(&c->accepted, 2, memory_order_release);
            munmap(c, CL_CONN_BYTES);
            if (ns)
                sock_free(ns);
            continue;
        }
        ns->csh = c;
        ns->side = 1;
        c->pid[1] = getpid();
        c->wake_fd[1] = cl.wpipe[1];
        c->addr[1] = s->laddr;
        if (c->addr[1].sin_addr.s_addr == htonl(INADDR_ANY))
            c->addr[1].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        atomic_store_explicit(&c->accepted, 1, memory_order_release);
        struct sockaddr_in peer = c->addr[0];
        peer.sin_family = AF_INET;
        struct core_op *op = s->accepts.head;
        core_oplist_remove(&s->accepts, op);
        core_op_complete_accept(op, qd, &peer);
        done++;
    }
    return done;
}

/* ---- ops ------------------------------------------------------------------------- */

static void wait_teardown(void)
{
    if (cl.tfd >= 0)
        close(cl.tfd);
    if (cl.epfd >= 0)
        close(cl.epfd);
    for (int i = 0; i < 2; i++)
        if (cl.wpipe[i] >= 0)
            close(cl.wpipe[i]);
    cl.tfd = cl.epfd = cl.wpipe[0] = cl.wpipe[1] = -1;
    cl.armed = false;
}

static int wait_setup(void)
{
    int kfd = cl.kn->wait_fd ? cl.kn->wait_fd() : -ENOTSUP;
    cl.epfd = epoll_create1(EPOLL_CLOEXEC);
    cl.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    int ret = 0;
    if (cl.epfd < 0 || cl.tfd < 0)
        ret = -errno;
    struct epoll_event ev = {.events = EPOLLIN};
    if (ret == 0 && epoll_ctl(cl.epfd, EPOLL_CTL_ADD, cl.tfd, &ev) < 0)
        ret = -errno;
    if (ret == 0 && kfd >= 0 && epoll_ctl(cl.epfd, EPOLL_CTL_ADD, kfd, &ev) < 0)
        ret = -errno;
    if (ret == 0 && pipe2(cl.wpipe, O_NONBLOCK | O_CLOEXEC) < 0)
        ret = -errno;
    if (ret == 0 && epoll_ctl(cl.epfd, EPOLL_CTL_ADD, cl.wpipe[0], &ev) < 0)
        ret = -errno;
    if (ret < 0)
        wait_teardown();
    return ret;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * Keep the tick running exactly while a ring operation waits. The timer fires at
 * t0 + k * CL_TICK_NS; once the next expiry is past we drain it, so the fd is never
 * left readable (which would turn the core's sleep into a spin) and costs a read
 * only once per tick.
 */
static void tick_update(bool busy, uint64_t period)
{
    uint64_t now = mono_ns();
    if (busy)
        cl.last_busy_ns = now;
    if (cl.armed && busy && period != cl.period) {
        /* Re-armed below with the new period. */
        struct itimerspec off = {{0, 0}, {0, 0}};
        if (timerfd_settime(cl.tfd, 0, &off, NULL) == 0)
            cl.armed = false;
        uint64_t n;
        if (read(cl.tfd, &n, sizeof(n)) < 0) {
            /* nothing was pending */
        }
    }
    if (cl.armed) {
        if (now >= cl.next_tick_ns) {
            uint64_t n;
            if (read(cl.tfd, &n, sizeof(n)) < 0) {
                /* raced with the expiry itself: the next poll drains it */
            }
            cl.next_tick_ns += ((now - cl.next_tick_ns) / cl.period + 1) * cl.period;
        }
        /* Disarm lazily: a ring round trip arms and clears busy every time, and three system calls per op would cost more than the ring. */
        if (busy || now - cl.last_busy_ns < 2 * CL_TICK_NS)
            return;
        struct itimerspec off = {{0, 0}, {0, 0}};
        if (timerfd_settime(cl.tfd, 0, &off, NULL) == 0)
            cl.armed = false;
        uint64_t n;
        if (read(cl.tfd, &n, sizeof(n)) < 0) {
            /* nothing was pending */
        }
        return;
    }
    if (!busy)
        return;
    uint64_t first = now + period;
    struct itimerspec it = {{(time_t)(period / 1000000000ull), (long)(period % 1000000000ull)},
                            {(time_t)(first / 1000000000ull), (long)(first % 1000000000ull)}};
    if (timerfd_settime(cl.tfd, TFD_TIMER_ABSTIME, &it, NULL) == 0) {
        cl.armed = true;
        cl.period = period;
        cl.next_tick_ns = first;
    }
}

static int cl_init(const struct core_config *cfg)
{
    cl.kn = core_registry_find("catnap");
    if (cl.kn == NULL)
        return -ENODEV;
    const char *fb = getenv("DEMI_CATLOOP_FALLBACK");
    cl.fallback = !(fb != NULL && strcmp(fb, "0") == 0);
    int ret = cl.kn->init(cfg);
    if (ret < 0)
        return ret;
    return wait_setup();
}

static void cl_fini(void)
{
    wait_teardown();
    free(cl.tab);
    cl.tab = NULL;
    cl.ntab = 0;
    if (cl.kn->fini)
        cl.kn->fini();
}

static int cl_socket(struct core_queue *q, int domain, int type, int protocol)
{
    return cl.kn->socket(q, domain, type, protocol);
}

static int cl_bind(struct core_queue *q, const struct sockaddr_in *addr)
{
    return cl.kn->bind(q, addr);
}

static int cl_listen(struct core_queue *q, int backlog)
{
    if (q->kind != CORE_Q_TCP)
        return cl.kn->listen(q, backlog);
    int ret = cl.kn->listen(q, backlog);
    if (ret < 0)
        return ret;
    struct sockaddr_in a;
    ret = cl.kn->getsockname(q, &a);
    if (ret < 0)
        return ret;
    struct cl_sock *s = sock_new(CL_LISTENER, q);
    if (s == NULL)
        return -ENOMEM;
    s->laddr = a;
    listen_name(s->lname, &a);
    for (int tries = 0; tries < 3; tries++) {
        int fd = shm_open(s->lname, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            if (ftruncate(fd, sizeof(*s->lsh)) < 0) {
                ret = -errno;
                close(fd);
                shm_unlink(s->lname);
                break;
            }
            s->lsh = map_fd(fd, sizeof(*s->lsh), &ret);
            close(fd);
            if (s->lsh == NULL) {
                shm_unlink(s->lname);
                break;
            }
            s->lsh->pid = getpid();
            s->lsh->magic = CL_MAGIC;
            s->kfd = find_kernel_listener(&a);
            return 0;
        }
        if (errno != EEXIST) {
            ret = -errno;
            break;
        }
        /* A file is there: a live listener owns the port, or a dead one left it. */
        fd = shm_open(s->lname, O_RDONLY | O_CLOEXEC, 0);
        int32_t pid = 0;
        if (fd >= 0) {
            struct cl_listen_shm hdr;
            if (pread(fd, &hdr, offsetof(struct cl_listen_shm, slot), 0) == (ssize_t)offsetof(struct cl_listen_shm, slot))
                pid = hdr.pid;
            close(fd);
        }
        if (pid > 0 && pid != getpid() && pid_alive(pid)) {
            ret = -EADDRINUSE;
            break;
        }
        shm_unlink(s->lname);
        ret = -EADDRINUSE;
    }
    sock_free(s);
    return ret;
}

static int cl_accept(struct core_queue *q, struct core_op *op)
{
    struct cl_sock *s = lookup(q);
    if (s == NULL)
        return cl.kn->accept(q, op);
    core_oplist_push(&s->accepts, op);
    listener_progress(s);
    return 0;
}

static int cl_connect(struct core_queue *q, struct core_op *op)
{
    if (q->kind != CORE_Q_TCP || lookup(q) != NULL)
        return cl.kn->connect(q, op);
    struct cl_listen_shm *l = find_listener(&op->addr);
    if (l == NULL) {
        if (cl.fallback)
            return cl.kn->connect(q, op);
        core_op_fail(op, ECONNREFUSED);
        return 0;
    }
    /* The kernel socket stays bound: it reserves our ephemeral port and keeps socket options. */
    struct sockaddr_in me;
    int ret = cl.kn->getsockname(q, &me);
    if (ret == 0 && me.sin_port == 0) {
        struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        ret = cl.kn->bind(q, &lo);
        if (ret == 0)
            ret = cl.kn->getsockname(q, &me);
    }
    if (ret < 0) {
        munmap(l, sizeof(*l));
        return ret;
    }
    if (me.sin_addr.s_addr == htonl(INADDR_ANY))
        me.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    struct cl_sock *s = sock_new(CL_CONN, q);
    if (s == NULL) {
        munmap(l, sizeof(*l));
        return -ENOMEM;
    }
    snprintf(s->cname, CL_NAME_MAX, "/demi-catloop-c.%d.%u", (int)getpid(), cl.seq++);
    int fd = shm_open(s->cname, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, CL_CONN_BYTES) < 0) {
        ret = -errno;
        if (fd >= 0) {
            close(fd);
            shm_unlink(s->cname);
        }
        munmap(l, sizeof(*l));
        sock_free(s);
        return ret;
    }
    s->csh = map_fd(fd, CL_CONN_BYTES, &ret);
    close(fd);
    if (s->csh == NULL) {
        shm_unlink(s->cname);
        munmap(l, sizeof(*l));
        sock_free(s);
        return ret;
    }
    s->csh->magic = CL_MAGIC;
    s->csh->pid[0] = getpid();
    s->csh->wake_fd[0] = cl.wpipe[1];
    s->csh->wake_fd[1] = -1;
    s->csh->addr[0] = me;
    s->csh->addr[1] = op->addr;
    s->side = 0;
    s->lsh = l;
    s->target = op->addr;
    core_oplist_push(&s->connects, op);
    conn_progress(s);
    return 0;
}

static int cl_push(struct core_queue *q, struct core_op *op)
{
    struct cl_sock *s = lookup(q);
    if (s == NULL)
        return cl.kn->push(q, op);
    if (s->kind != CL_CONN)
        return -ENOTCONN;
    core_oplist_push(&s->pushes, op);
    conn_progress(s);
    return 0;
}

static int cl_pop(struct core_queue *q, struct core_op *op)
{
    struct cl_sock *s = lookup(q);
    if (s == NULL)
        return cl.kn->pop(q, op);
    if (s->kind != CL_CONN)
        return -ENOTCONN;
    core_oplist_push(&s->pops, op);
    conn_progress(s);
    return 0;
}

static int cl_close(struct core_queue *q)
{
    struct cl_sock *s = lookup(q);
    if (s != NULL) {
        fail_all(s, ECANCELED);
        if (s->kind == CL_LISTENER) {
            /* Refuse what was posted and not taken, then withdraw the address. */
            for (uint32_t i = 0; i < CL_SLOTS; i++) {
                struct cl_slot *sl = &s->lsh->slot[i];
                if (atomic_load_explicit(&sl->state, memory_order_acquire) != 2)
                    continue;
                char name[CL_NAME_MAX];
                memcpy(name, sl->name, CL_NAME_MAX);
                name[CL_NAME_MAX - 1] = '\0';
                int fd = name[0] == '/' && strchr(name + 1, '/') == NULL ? shm_open(name, O_RDWR | O_CLOEXEC, 0) : -1;
                if (fd >= 0) {
                    int err;
                    struct cl_conn_shm *c = map_fd(fd, CL_CONN_BYTES, &err);
                    close(fd);
                    if (c != NULL) {
                        atomic_store_explicit(&c->accepted, 2, memory_order_release);
                        munmap(c, CL_CONN_BYTES);
                    }
                }
            }
            shm_unlink(s->lname);
            munmap(s->lsh, sizeof(*s->lsh));
        } else {
            /* 2 = fully closed (a push to us fails), 1 = only our write side (shutdown). */
            atomic_store_explicit(&s->csh->closed[s->side], 2, memory_order_release);
            wake_peer(s);
            if (s->peer_wfd >= 0)
                close(s->peer_wfd);
            if (s->side == 0)
                shm_unlink(s->cname);
            munmap(s->csh, CL_CONN_BYTES);
            if (s->lsh)
                munmap(s->lsh, sizeof(*s->lsh));
        }
        sock_free(s);
    }
    return q->priv != NULL ? cl.kn->close(q) : 0;
}

static int cl_shutdown(struct core_queue *q, int how)
{
    struct cl_sock *s = lookup(q);
    if (s == NULL)
        return cl.kn->shutdown(q, how);
    if (s->kind != CL_CONN)
        return -ENOTCONN;
    if (how == SHUT_WR || how == SHUT_RDWR) {
        uint32_t zero = 0;
        atomic_compare_exchange_strong(&s->csh->closed[s->side], &zero, 1);
        wake_peer(s);
    }
    return 0;
}

static int cl_setsockopt(struct core_queue *q, int level, int optname, const void *optval, socklen_t optlen)
{
    return cl.kn->setsockopt(q, level, optname, optval, optlen);
}

static int cl_getsockopt(struct core_queue *q, int level, int optname, void *optval, socklen_t *optlen)
{
    return cl.kn->getsockopt(q, level, optname, optval, optlen);
}

static int cl_getpeername(struct core_queue *q, struct sockaddr_in *addr)
{
    struct cl_sock *s = lookup(q);
    if (s == NULL || s->kind != CL_CONN)
        return cl.kn->getpeername(q, addr);
    if (s->connects.head != NULL)
        return -ENOTCONN;
    *addr = s->side == 0 ? s->target : s->csh->addr[0];
    addr->sin_family = AF_INET;
    return 0;
}

static int cl_getsockname(struct core_queue *q, struct sockaddr_in *addr)
{
    struct cl_sock *s = lookup(q);
    if (s == NULL || s->kind != CL_CONN || s->side == 0)
        return cl.kn->getsockname(q, addr);
    *addr = s->csh->addr[1];
    addr->sin_family = AF_INET;
    return 0;
}

static int cl_poll(void)
{
    /*
     * catnap's poll is an epoll_wait system call, several times a ring round trip:
     * while ring operations wait it runs every CL_KPOLL_EVERY-th poll only. No kernel
     * event is lost: catnap's set stays readable inside ours until it is drained.
     */
    int done = 0;
    if (!cl.ring_busy || (++cl.npolls % CL_KPOLL_EVERY) == 0)
        done += cl.kn->poll();
    bool busy = false, urgent = false;
    struct cl_sock *s = cl.all;
    while (s != NULL) {
        struct cl_sock *next = s->next;
        if (s->kind == CL_LISTENER) {
            if (s->accepts.head != NULL) {
                done += listener_progress(s);
                if (s->accepts.head != NULL)
                    done += kernel_accept_progress(s);
                busy |= s->accepts.head != NULL;
                urgent |= s->accepts.head != NULL;
            }
        } else if (s->connects.head != NULL || s->pushes.head != NULL || s->pops.head != NULL) {
            done += conn_progress(s);
            bool w = s->connects.head != NULL || s->pushes.head != NULL || s->pops.head != NULL;
            busy |= w;
            urgent |= w && (!s->flagged || s->connects.head != NULL);
        }
        s = next;
    }
    cl.ring_busy = busy;
    if (cl.epfd >= 0)
        tick_update(busy, urgent ? CL_TICK_NS : CL_SLOW_TICK_NS);
    return done;
}

static void cl_fork_child(void)
{
    if (cl.kn->fork_child)
        cl.kn->fork_child();
    /* catnap's set is new in the child: ours must hold that one, and a timer of our own. */
    wait_teardown();
    if (wait_setup() < 0)
        cl.epfd = -1;
}

static int cl_wait_fd(void)
{
    return cl.epfd >= 0 ? cl.epfd : -ENOTSUP;
}

static const struct libos_ops catloop_ops = {
    .name = "catloop",
    .init = cl_init,
    .fini = cl_fini,
    .socket = cl_socket,
    .bind = cl_bind,
    .listen = cl_listen,
    .accept = cl_accept,
    .connect = cl_connect,
    .push = cl_push,
    .pop = cl_pop,
    .close = cl_close,
    .shutdown = cl_shutdown,
    .setsockopt = cl_setsockopt,
    .getsockopt = cl_getsockopt,
    .getpeername = cl_getpeername,
    .getsockname = cl_getsockname,
    .poll = cl_poll,
    .wait_fd = cl_wait_fd,
    .fork_child = cl_fork_child,
};

LIBOS_REGISTER(catloop)
{
    return &catloop_ops;
}
