/* catloop: TCP sockets between processes of one host over shared-memory byte rings, with every kernel peer (and UDP) delegated to catnap's ops table. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
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
#include "log.h"

/*
 * Design (doc/catloop.md has the long form). Every TCP socket starts as a catnap
 * (kernel) socket in q->priv: the kernel arbitrates ports (EADDRINUSE, SO_REUSEADDR,
 * SO_REUSEPORT, ephemeral ports) for us. A socket becomes catloop's only when it
 * listens (it then also claims a listener group in the port's file in /dev/shm) or
 * when it connects to an address with a live group; those sockets get an entry in a
 * table indexed by qd, and every op checks the table first. Anything without an entry
 * (UDP, kernel connections, kernel-accepted sockets) goes to catnap.
 *
 * Liveness is kernel-kept, never a pid: each holder of a shared object keeps an fd
 * with an open-file-description (OFD) lock on a byte of the object's file. Such a
 * lock is shared by every process the fd was inherited by across fork and vanishes
 * only when the last of them closes it or dies, which is exactly the lifetime of a
 * kernel socket shared by fork. Byte g of a port file is listener group g; the bytes
 * after the groups are the request slots (held by a client while it connects);
 * byte i of a connection file is side i (0 client, 1 server).
 *
 * Connection set-up: the client locks a free slot of a live group, writes the name of
 * a connection file it then creates (two SPSC byte rings), posts the slot and wakes
 * the group's sleeping acceptors. Whichever process holding the listener has an
 * accept pending takes the slot (CAS), opens and unlinks the file and marks it
 * accepted. An acceptor that cannot open it (another user, e.g. nginx workers that
 * dropped root) answers "use the kernel" and the client connects over kernel TCP.
 * A slot whose client lock is gone belongs to a dead client: its file is unlinked.
 */

#define CL_MAGIC 0x636c6f6f70763033ull /* "cloopv03" */
#define CL_GROUPS 8u                   /* live listeners one port can have (SO_REUSEPORT) */
#define CL_SLOTS 128u                  /* connection requests a listener holds before clients use the kernel */
#define CL_WAITERS 8u                  /* acceptor processes of one listener a client can wake */
#define CL_NAME_MAX 64u
#define CL_RING_CAP (256u * 1024u) /* power of two */
#define CL_POP_MAX (64u * 1024u)
#define CL_LIVENESS_NS 2000000ull /* how often an idle connection checks its peer; a listener its dead slots */
#define CL_KCHECK_NS 50000ull     /* how often a listener waiting to accept looks at its kernel socket */
#define CL_KPOLL_EVERY 8u         /* while ring operations wait, catnap is polled this seldom */
#define CL_FLAG_NS 20000ull       /* ops idle this long ask the peer for a wake-up (below the core's spin) */
#define CL_TICK_NS 1000000ull     /* while an op waits with no wake-up armed, the core's sleep is cut to this */
#define CL_SLOW_TICK_NS 50000000ull /* when every waiting op has a wake-up armed: only to notice a dead peer */
#define CL_DRAIN_POLLS 64u /* after a wake-up is disarmed, polls during which a late byte is still drained often */
#define CL_TAKE_MAX_NS 100000000ull /* a process sharing a connection's side holds its rings no longer */
#define CL_STALE_S 2              /* an unlocked connection file older than this is litter of dead processes */

/*
 * The full store-load barrier between "I published / I may sleep" and "does the
 * other side sleep / was there news". ThreadSanitizer cannot model a fence, so its
 * builds use a sequentially consistent read-modify-write, a full barrier on the
 * machines we run on too.
 */
#if defined(__SANITIZE_THREAD__)
static _Atomic uint32_t cl_fence_word;
#define CL_FENCE() ((void)atomic_fetch_add_explicit(&cl_fence_word, 0, memory_order_seq_cst))
#else
#define CL_FENCE() atomic_thread_fence(memory_order_seq_cst)
#endif

/* Lock bytes of a port file: one per group, then one per request slot of each group. */
#define CL_LOCK_SLOT(g, i) ((off_t)CL_GROUPS + (off_t)(g) * CL_SLOTS + (off_t)(i))
#define CL_LOCK_SPAN CL_LOCK_SLOT(CL_GROUPS, 0)

/* A slot's state word: a generation (so a stale CAS fails) and one of these. */
enum { SL_FREE = 0, SL_WRITING, SL_POSTED, SL_TAKEN, SL_KERNEL };
#define SL_ST(v) ((v) & 7u)
#define SL_GEN(v) ((v) >> 3)
#define SL_MAKE(gen, st) ((uint32_t)(((gen) << 3) | (st)))

struct cl_slot {
    _Atomic uint32_t state;
    _Atomic int32_t taker;  /* pid of the acceptor answering it (TAKEN), 0 otherwise: a hint for its client */
    _Atomic uint64_t wake; /* the client's wake registration (see wake_reg) */
    char name[CL_NAME_MAX]; /* its connection file */
};

struct cl_group {
    _Atomic uint32_t posts __attribute__((aligned(64))); /* bumped by every post: acceptors scan on change */
    _Atomic uint32_t kernel_only; /* its acceptors run as another user than the file's owner: clients use the kernel */
    _Atomic uint64_t waiter[CL_WAITERS];                 /* acceptors asleep, as wake registrations */
    struct cl_slot slot[CL_SLOTS];
};

struct cl_port_shm {
    uint64_t magic;
    _Atomic uint32_t used; /* groups ever claimed and not withdrawn (a hint: a crashed one stays set) */
    struct cl_group group[CL_GROUPS];
};

struct cl_ring_ctl {
    _Atomic uint64_t head __attribute__((aligned(64))); /* consumer's bytes consumed */
    _Atomic uint64_t tail __attribute__((aligned(64))); /* producer's bytes published */
};

/* Who uses side i's rings right now (a pid): processes sharing a side by fork take turns. */
struct cl_user {
    _Atomic uint32_t pid __attribute__((aligned(64)));
};

/* The shared connection region: 0 = client side, 1 = server side; ring i is written by side i. */
struct cl_conn_shm {
    uint64_t magic;
    _Atomic uint32_t accepted; /* 0 pending, 1 accepted, 2 refused */
    _Atomic uint32_t closed[2]; /* side i will write no more: 1 shutdown, 2 closed by its last holder */
    struct sockaddr_in addr[2];
    _Atomic uint64_t wake[2];      /* side i's wake registration */
    _Atomic uint32_t want_wake[2]; /* side i may sleep: wake it after publishing */
    struct cl_user user[2];
    struct cl_ring_ctl ring[2] __attribute__((aligned(64)));
};

#define CL_CONN_DATA_OFF 4096u
#define CL_CONN_BYTES (CL_CONN_DATA_OFF + 2u * CL_RING_CAP)

_Static_assert(sizeof(struct cl_conn_shm) <= CL_CONN_DATA_OFF, "connection header overlaps the rings");

enum cl_kind { CL_LISTENER = 1, CL_CONN };

struct cl_sock {
    enum cl_kind kind;
    int qd;
    struct core_queue *q;
    struct cl_sock *next, *prev; /* all catloop sockets, for poll */
    struct core_oplist accepts, connects, pushes, pops;
    /* listener: port file (fd holds the group lock), or a client's while it connects (fd holds the slot lock) */
    struct cl_port_shm *psh;
    int pfd;
    int group;
    char pname[CL_NAME_MAX];
    struct sockaddr_in laddr;
    int kfd;               /* catnap's listening kernel fd (not ours to close), or -1 */
    bool kfd_in_ep;        /* kfd is in our epoll set (while accepts wait) */
    bool uid_checked;      /* we compared our user with the port file's owner (cl_accept) */
    uint64_t next_kcheck_ns;
    uint32_t seen_posts;
    uint64_t next_sweep_ns;
    /* connection */
    struct cl_conn_shm *csh;
    int fd; /* the connection file, with the OFD lock on byte side */
    char cname[CL_NAME_MAX];
    int side; /* 0 client, 1 server */
    int slot;
    uint32_t slot_gen;
    struct sockaddr_in target;
    uint64_t next_check_ns;
    bool dead;
    bool suspect;        /* the peer's lock was gone at the last check */
    uint32_t moved, moved_seen; /* ring progress (bumped when bytes move), as of the last liveness check */
    uint64_t take_since; /* side_take failing since */
    int peer_wfd;        /* the peer's wake pipe, opened through /proc, or -1 */
    uint64_t peer_wreg;  /* the registration peer_wfd was opened for */
    /* both: whether a wake-up is armed (the process went idle while this socket waited) */
    bool flagged;
};

static struct {
    const struct libos_ops *kn; /* catnap */
    bool fallback;
    bool test_die_on_take; /* DEMI_CATLOOP_TEST_DIE_ON_TAKE=1 (tests only): _exit right after taking a request */
    uint32_t seq;
    int32_t pid; /* ours, refreshed in a fork child */
    struct cl_sock **tab;
    size_t ntab;
    struct cl_sock *all;
    unsigned nflagged; /* sockets with a wake-up armed: the wake pipe is drained at each poll while > 0 */
    uint32_t drain_polls; /* polls left after a wake-up was disarmed or a connect answered (late bytes may come) */
    uint32_t npolls_drain; /* drain every 8th poll while a byte may come, every 64th otherwise */
    /*
     * Waiting: the core sleeps on wait_fd, our epoll set holding catnap's set, a
     * timerfd, our wake pipe and the kernel fds of listeners with accepts pending.
     * Ring peers wake us through the pipe once we armed a wake-up (after CL_FLAG_NS
     * idle); until then, while any ring operation waits, the timer ticks every
     * CL_TICK_NS (CL_SLOW_TICK_NS once every waiting op has a wake-up armed, only to
     * notice dead peers); an idle process sleeps with no wake-ups at all.
     */
    int epfd, tfd;
    int wpipe[2];
    bool armed;
    uint64_t next_tick_ns;
    uint64_t last_busy_ns;
    uint64_t period; /* of the armed tick */
    bool ring_busy;  /* the last poll left ring operations waiting */
    uint32_t npolls;
    /*
     * The clock as of the current poll: read once per poll, not per socket (a read
     * costs about 20 ns, and a poll looks at every socket with work waiting).
     * Paths outside a poll use the last poll's value: their deadlines (liveness
     * checks, sweeps) are at most one poll late.
     */
    uint64_t now;
    /* The process made no progress since (0: it did in the last poll): wake-ups are armed past CL_FLAG_NS. */
    uint64_t idle_since;
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
    s->pfd = -1;
    s->fd = -1;
    s->kfd = -1;
    s->slot = -1;
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

static void set_flag(struct cl_sock *s, bool on)
{
    if (s->flagged == on)
        return;
    s->flagged = on;
    if (on) {
        cl.nflagged++;
    } else {
        cl.nflagged--;
        cl.drain_polls = CL_DRAIN_POLLS;
    }
}

static void sock_free(struct cl_sock *s)
{
    set_flag(s, false);
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

/* Take an OFD lock of type (F_WRLCK/F_UNLCK) on [start, start+len) without waiting; 0 or -errno. */
static int ofd_lock(int fd, off_t start, off_t len, short type)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* Does an open file description other than fd's hold a lock in [start, start+len)? */
static bool ofd_held(int fd, off_t start, off_t len)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return true; /* cannot tell: assume alive, never tear down a live peer */
    return fl.l_type != F_UNLCK;
}

/* The inode of one of our namespaces (/proc/self/ns/NAME), or 0 if /proc cannot tell. */
static unsigned long ns_ino(const char *name)
{
    char path[32];
    snprintf(path, sizeof(path), "/proc/self/ns/%s", name);
    struct stat st;
    return stat(path, &st) == 0 ? (unsigned long)st.st_ino : 0;
}

/*
 * A port's file: /demi-catloop.<netns>-<pidns>.<ip>.<port>. The network namespace
 * is in the name because 127.0.0.1:80 in one namespace is not the same socket as in
 * another (containers sharing /dev/shm must neither connect across namespaces nor see
 * each other's listeners as EADDRINUSE); the PID namespace because wake-ups name a
 * pid, opened through /proc, which means nothing in another one. Processes of
 * different namespaces thus never meet here and talk over the kernel, as they would
 * without us. Read once per bind and per connect, so a process that moved (setns,
 * unshare) uses its current namespaces.
 */
/* Namespace inodes are 32-bit proc inode numbers (the kernel's ns_common.inum). */
#define CL_NS_TAG_MAX 18u
static void ns_tag(char *tag)
{
    snprintf(tag, CL_NS_TAG_MAX, "%x-%x", (unsigned)ns_ino("net"), (unsigned)ns_ino("pid"));
}

static void listen_name(char *buf, const char *tag, const struct sockaddr_in *a)
{
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
    snprintf(buf, CL_NAME_MAX, "/demi-catloop.%s.%s.%u", tag, ip, (unsigned)ntohs(a->sin_port));
}

/* A connection file name as we make them; anything else read from a slot is refused. */
static bool conn_name_ok(const char *name)
{
    return strncmp(name, "/demi-catloop-c.", 16) == 0 && strchr(name + 1, '/') == NULL &&
           memchr(name, '\0', CL_NAME_MAX) != NULL;
}

/* Map an shm object of exactly size bytes owned by us; NULL with -errno in *err. */
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

/* Does the name still lead to the file open as fd (not unlinked and replaced)? */
static bool same_file(int fd, const char *name)
{
    char path[CL_NAME_MAX + 16];
    snprintf(path, sizeof(path), "/dev/shm%s", name);
    struct stat a, b;
    return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

/*
 * Unlink a port file no live listener or connecting client holds. The lock over
 * every group and slot byte excludes them while we unlink; a listener that opened
 * the file just before re-checks the name after locking its group (same_file).
 */
static void port_unlink_if_dead(int fd, const char *name)
{
    if (ofd_lock(fd, 0, CL_LOCK_SPAN, F_WRLCK) < 0)
        return;
    if (same_file(fd, name))
        shm_unlink(name);
    ofd_lock(fd, 0, CL_LOCK_SPAN, F_UNLCK);
}

/* Our wake registration: pid and the write end of our wake pipe, for /proc/<pid>/fd/<fd>. */
static uint64_t my_wake_reg(void)
{
    if (cl.wpipe[1] < 0)
        return 0;
    return ((uint64_t)(uint32_t)cl.pid << 32) | (uint32_t)cl.wpipe[1];
}

/* Open the wake pipe a peer registered; -errno (-ESRCH: that process is gone). */
static int wake_open(uint64_t reg)
{
    int32_t pid = (int32_t)(reg >> 32), fd = (int32_t)(uint32_t)reg;
    if (pid <= 0 || fd < 0)
        return -EINVAL;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, (int)fd);
    int w = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (w < 0)
        return errno == ENOENT ? -ESRCH : -errno;
    struct stat st;
    /* The numbers come from shared memory: write only into a pipe, never into some file of ours. */
    if (fstat(w, &st) < 0 || !S_ISFIFO(st.st_mode)) {
        close(w);
        return -EINVAL;
    }
    return w;
}

static void wake_write(int fd)
{
    if (write(fd, "w", 1) < 0) {
        /* EAGAIN: the pipe is full, so already readable */
    }
}

/* Wake a process once through its registration (set-up paths; ring paths cache the fd). */
static int wake_once(uint64_t reg)
{
    int w = wake_open(reg);
    if (w < 0)
        return w;
    wake_write(w);
    close(w);
    return 0;
}

static void drain_wake_pipe(void)
{
    char buf[256];
    while (cl.wpipe[0] >= 0 && read(cl.wpipe[0], buf, sizeof(buf)) == (ssize_t)sizeof(buf)) {
    }
}

/*
 * Open the port file for a, with its live groups: pick one (spreading a client's
 * connections over SO_REUSEPORT listeners). A file without live groups is litter
 * of dead listeners and is removed on the way. 0, or -ENOENT if no live listener.
 */
static int find_listener(const struct sockaddr_in *a, struct cl_port_shm **pp, int *pfd, int *group, char *name_out)
{
    struct sockaddr_in cand[2] = {*a, *a};
    int n = 1;
    if ((ntohl(a->sin_addr.s_addr) >> 24) == 127) {
        cand[1].sin_addr.s_addr = htonl(INADDR_ANY);
        n = 2;
    }
    char tag[CL_NS_TAG_MAX];
    ns_tag(tag);
    for (int i = 0; i < n; i++) {
        char name[CL_NAME_MAX];
        listen_name(name, tag, &cand[i]);
        int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int err = 0;
        struct cl_port_shm *p = map_fd(fd, sizeof(*p), &err);
        if (p == NULL) {
            /* Another user's listener is not for us (the kernel connects us); root still clears a dead one away. */
            if (geteuid() == 0)
                port_unlink_if_dead(fd, name);
            close(fd);
            continue;
        }
        int live[CL_GROUPS], nlive = 0;
        bool dead = true;
        uint32_t used = atomic_load_explicit(&p->used, memory_order_acquire);
        if (p->magic == CL_MAGIC)
            for (unsigned g = 0; g < CL_GROUPS; g++)
                if ((used & (1u << g)) && ofd_held(fd, g, 1)) {
                    if (atomic_load_explicit(&p->group[g].kernel_only, memory_order_relaxed))
                        dead = false; /* live, but only over the kernel */
                    else
                        live[nlive++] = (int)g;
                }
        if (nlive > 0) {
            memcpy(name_out, name, CL_NAME_MAX);
            *pp = p;
            *pfd = fd;
            *group = live[((uint32_t)cl.pid + cl.seq) % (uint32_t)nlive];
            return 0;
        }
        munmap(p, sizeof(*p));
        if (dead)
            port_unlink_if_dead(fd, name);
        close(fd);
    }
    return -ENOENT;
}

/*
 * Remove what dead processes left in /dev/shm: port files no one holds, and
 * connection files whose both sides are gone (a client killed while connecting
 * to a listener that then died too).
 */
static void sweep_stale(void)
{
    DIR *d = opendir("/dev/shm");
    if (d == NULL)
        return;
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "demi-catloop", 12) != 0 || strlen(e->d_name) + 2 > CL_NAME_MAX)
            continue;
        char name[CL_NAME_MAX];
        snprintf(name, sizeof(name), "/%s", e->d_name);
        int fd = shm_open(name, O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0);
        if (fd < 0)
            continue;
        struct stat st;
        /* Only our own files, or anyone's for root (a server that dropped to nobody leaves nobody's files). */
        if (fstat(fd, &st) == 0 && (st.st_uid == geteuid() || geteuid() == 0)) {
            bool conn = strncmp(e->d_name, "demi-catloop-c.", 15) == 0;
            if (conn && (size_t)st.st_size == CL_CONN_BYTES && now - st.st_ctime > CL_STALE_S && !ofd_held(fd, 0, 2))
                shm_unlink(name);
            else if (!conn && (size_t)st.st_size == sizeof(struct cl_port_shm))
                port_unlink_if_dead(fd, name);
        }
        close(fd);
    }
    closedir(d);
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
    uint64_t now = cl.now;
    if (now < s->next_check_ns)
        return false;
    s->next_check_ns = now + CL_LIVENESS_NS;
    if (s->moved != s->moved_seen) {
        /* Bytes moved since the last look: the peer was there; a busy connection costs no check. */
        s->moved_seen = s->moved;
        return false;
    }
    /* By name: keeping an fd per connection would cost programs that size fd tables by connections (wrk). */
    int fd = shm_open(s->cname, O_RDONLY | O_CLOEXEC, 0);
    bool held = fd >= 0 ? ofd_held(fd, 1 - s->side, 1) : errno != ENOENT;
    if (fd >= 0)
        close(fd);
    if (held) {
        s->suspect = false;
        return false;
    }
    /*
     * A closing peer drops its lock a moment before it marks the side closed (it must
     * first learn whether a process sharing the side keeps it): only a lock still gone
     * a little later, with the side still not closed, is a death.
     */
    if (!s->suspect) {
        s->suspect = true;
        s->next_check_ns = now + CL_LIVENESS_NS / 16;
        return false;
    }
    s->dead = true;
    return true;
}

/* The client's request slot, once answered or abandoned: free it (if still ours) and let go of the port file. */
static void client_release_slot(struct cl_sock *s, bool free_it)
{
    if (s->psh == NULL)
        return;
    if (free_it && s->slot >= 0) {
        struct cl_slot *sl = &s->psh->group[s->group].slot[s->slot];
        uint32_t v = atomic_load_explicit(&sl->state, memory_order_acquire);
        if (SL_GEN(v) == s->slot_gen && (SL_ST(v) == SL_POSTED || SL_ST(v) == SL_KERNEL || SL_ST(v) == SL_WRITING))
            atomic_compare_exchange_strong(&sl->state, &v, SL_MAKE(s->slot_gen + 1, SL_FREE));
    }
    munmap(s->psh, sizeof(*s->psh)); /* drops the slot lock (our mapping kept its file description) */
    s->psh = NULL;
}

/* Undo a client connection that never came up: its file, its slot, its table entry. */
static void client_abandon(struct cl_sock *s)
{
    client_release_slot(s, true);
    if (s->csh != NULL) {
        atomic_store_explicit(&s->csh->closed[0], 2, memory_order_release);
        munmap(s->csh, CL_CONN_BYTES);
    }
    if (s->cname[0] != '\0')
        shm_unlink(s->cname);
    sock_free(s);
}

/* The listener sends us to the kernel (it cannot map our file, or has no room): connect there, as if never ours. */
static int client_to_kernel(struct cl_sock *s, struct core_op *op)
{
    struct core_queue *q = s->q;
    core_oplist_remove(&s->connects, op);
    client_abandon(s);
    if (!cl.fallback) {
        core_op_fail(op, ECONNREFUSED);
        return 1;
    }
    int ret = cl.kn->connect(q, op);
    if (ret < 0)
        core_op_fail(op, -ret);
    return 1;
}

static int conn_io(struct cl_sock *s);
static void wake_acceptors(struct cl_group *g);

static int conn_progress(struct cl_sock *s)
{
    struct cl_conn_shm *c = s->csh;
    if (s->connects.head == NULL)
        return conn_io(s);
    struct core_op *op = s->connects.head;
    uint32_t a = atomic_load_explicit(&c->accepted, memory_order_acquire);
    if (a == 1) {
        atomic_store_explicit(&c->want_wake[0], 0, memory_order_relaxed); /* armed only for the answer */
        client_release_slot(s, false);
        core_oplist_remove(&s->connects, op);
        core_op_complete_connect(op);
        return 1;
    }
    struct cl_slot *sl = &s->psh->group[s->group].slot[s->slot];
    uint32_t v = atomic_load_explicit(&sl->state, memory_order_acquire);
    if (a == 0 && SL_GEN(v) == s->slot_gen && SL_ST(v) == SL_KERNEL)
        return client_to_kernel(s, op);
    if (a == 0) {
        uint64_t now = cl.now;
        if (now < s->next_check_ns)
            return 0;
        s->next_check_ns = now + CL_LIVENESS_NS;
        int fd = shm_open(s->pname, O_RDONLY | O_CLOEXEC, 0);
        bool live = fd >= 0 && ofd_held(fd, s->group, 1);
        if (fd >= 0)
            close(fd);
        if (live) {
            /* An acceptor (sharing the listener with live others) died between taking our request and answering: post it again. */
            int32_t t = atomic_load_explicit(&sl->taker, memory_order_relaxed);
            if (SL_GEN(v) == s->slot_gen && SL_ST(v) == SL_TAKEN && t > 0 && !pid_alive(t)) {
                atomic_store_explicit(&sl->taker, 0, memory_order_relaxed);
                if (atomic_compare_exchange_strong(&sl->state, &v, SL_MAKE(s->slot_gen, SL_POSTED))) {
                    struct cl_group *g = &s->psh->group[s->group];
                    atomic_fetch_add_explicit(&g->posts, 1, memory_order_release);
                    wake_acceptors(g);
                }
            }
            return 0;
        }
        /* The listener is gone, or its process took the slot and died before answering. */
        if (atomic_load_explicit(&c->accepted, memory_order_acquire) != 0)
            return 0; /* answered after all (just before its last holder closed): settled on the next poll */
    }
    client_release_slot(s, true);
    core_oplist_remove(&s->connects, op);
    core_op_fail(op, ECONNREFUSED);
    return 1;
}

/* Wake the peer if it asked; after a publish (tail, head or closed) and a full fence. */
static void wake_peer(struct cl_sock *s)
{
    struct cl_conn_shm *c = s->csh;
    int peer = 1 - s->side;
    CL_FENCE();
    if (atomic_load_explicit(&c->want_wake[peer], memory_order_relaxed) == 0)
        return;
    uint64_t reg = atomic_load_explicit(&c->wake[peer], memory_order_relaxed);
    if (reg != s->peer_wreg || s->peer_wfd < 0) {
        if (s->peer_wfd >= 0)
            close(s->peer_wfd);
        s->peer_wfd = wake_open(reg);
        s->peer_wreg = reg;
        if (s->peer_wfd < 0)
            return;
    }
    wake_write(s->peer_wfd);
}

/*
 * Take our side's rings for this call: one process at a time when a connection is
 * shared by fork (each ring has one producer and one consumer). A holder that died
 * in the middle leaves its pid behind, which we take over; so do we after
 * CL_TAKE_MAX_NS, as a holder never keeps it longer than one poll (a corrupt
 * region must not stall us: its indices then fail the operations with EIO).
 */
static bool side_take(struct cl_sock *s)
{
    _Atomic uint32_t *u = &s->csh->user[s->side].pid;
    uint32_t cur = 0;
    if (atomic_compare_exchange_strong_explicit(u, &cur, (uint32_t)cl.pid, memory_order_acquire, memory_order_relaxed)) {
        s->take_since = 0;
        return true;
    }
    uint64_t now = cl.now;
    if (s->take_since == 0)
        s->take_since = now;
    if (cur == (uint32_t)cl.pid || !pid_alive((int32_t)cur) || now - s->take_since > CL_TAKE_MAX_NS) {
        if (atomic_compare_exchange_strong_explicit(u, &cur, (uint32_t)cl.pid, memory_order_acquire,
                                                    memory_order_relaxed)) {
            s->take_since = 0;
            return true;
        }
    }
    return false;
}

static void side_give(struct cl_sock *s)
{
    atomic_store_explicit(&s->csh->user[s->side].pid, 0, memory_order_release);
}

/*
 * Nothing can happen on s now: no bytes to pop, no room for a push, the peer still
 * open and no liveness check due. Read-only, so a poll over many quiet connections
 * costs a few cache hits each, not an atomic read-modify-write (side_take).
 */
static bool conn_quiet(const struct cl_sock *s)
{
    const struct cl_conn_shm *c = s->csh;
    int me = s->side, peer = 1 - s->side;
    if (s->dead || cl.now >= s->next_check_ns || atomic_load_explicit(&c->closed[peer], memory_order_relaxed) != 0)
        return false;
    if (s->pops.head != NULL && atomic_load_explicit(&c->ring[peer].tail, memory_order_relaxed) !=
                                    atomic_load_explicit(&c->ring[peer].head, memory_order_relaxed))
        return false;
    if (s->pushes.head != NULL && atomic_load_explicit(&c->ring[me].tail, memory_order_relaxed) -
                                          atomic_load_explicit(&c->ring[me].head, memory_order_relaxed) !=
                                      CL_RING_CAP)
        return false;
    return true;
}

static int conn_io(struct cl_sock *s)
{
    struct cl_conn_shm *c = s->csh;
    int done = 0, me = s->side, peer = 1 - s->side;
    bool published = false;

    if (conn_quiet(s))
        return 0;
    if (!side_take(s))
        return 0; /* a process we share this side with is at it; retry on the next poll */
    if (atomic_load_explicit(&c->closed[peer], memory_order_relaxed) > 2) {
        /* Not a value we write: the region is corrupt. */
        core_oplist_fail_all(&s->pushes, EIO);
        core_oplist_fail_all(&s->pops, EIO);
        side_give(s);
        return 1;
    }
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
                if (avail < 0)
                    continue;
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
    if (published) {
        s->moved++;
        wake_peer(s);
    }
    /* Progress, or nothing left to wait for: a wake-up armed for this socket is no longer wanted. */
    if (s->flagged && (done > 0 || (s->pushes.head == NULL && s->pops.head == NULL))) {
        atomic_store_explicit(&c->want_wake[me], 0, memory_order_relaxed);
        set_flag(s, false);
    }
    side_give(s);
    return done;
}

/* Ask s's peer for a wake-up after its next publish (the caller then fences and looks at s once more). */
static void conn_arm(struct cl_sock *s, uint64_t me)
{
    atomic_store_explicit(&s->csh->wake[s->side], me, memory_order_relaxed);
    atomic_store_explicit(&s->csh->want_wake[s->side], 1, memory_order_relaxed);
    set_flag(s, true);
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
    uint64_t now = cl.now;
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

static void slot_free(struct cl_slot *sl, uint32_t gen)
{
    atomic_store_explicit(&sl->taker, 0, memory_order_relaxed);
    atomic_store_explicit(&sl->state, SL_MAKE(gen + 1, SL_FREE), memory_order_release);
}

/* We took the slot: say who, so its client can re-post it should we die before answering. */
static void slot_taken(struct cl_slot *sl)
{
    atomic_store_explicit(&sl->taker, cl.pid, memory_order_relaxed);
}

/* Send a client waiting in a slot we took to the kernel, and wake it. */
static void slot_to_kernel(struct cl_slot *sl, uint32_t gen)
{
    uint64_t reg = atomic_load_explicit(&sl->wake, memory_order_relaxed);
    atomic_store_explicit(&sl->taker, 0, memory_order_relaxed);
    atomic_store_explicit(&sl->state, SL_MAKE(gen, SL_KERNEL), memory_order_release);
    wake_once(reg);
}

/* Open and map the connection file a slot names; NULL with the reason in *err. */
static struct cl_conn_shm *slot_open(const char *name, int *fd_out, int *err)
{
    int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
        *err = -errno;
        return NULL;
    }
    struct cl_conn_shm *c = map_fd(fd, CL_CONN_BYTES, err);
    if (c == NULL) {
        close(fd);
        return NULL;
    }
    *fd_out = fd;
    return c;
}

/* We took slot i (state TAKEN, gen): turn it into an accepted connection, or settle it. */
static int take_slot(struct cl_sock *s, struct cl_group *g, uint32_t i, uint32_t gen)
{
    struct cl_slot *sl = &g->slot[i];
    char name[CL_NAME_MAX];
    memcpy(name, sl->name, CL_NAME_MAX);
    name[CL_NAME_MAX - 1] = '\0';
    if (!conn_name_ok(name)) {
        slot_free(sl, gen);
        return 0;
    }
    if (!ofd_held(s->pfd, CL_LOCK_SLOT(s->group, i), 1)) {
        /* The client died after posting: its file is litter. */
        shm_unlink(name);
        slot_free(sl, gen);
        return 0;
    }
    int fd = -1, err = 0;
    struct cl_conn_shm *c = slot_open(name, &fd, &err);
    if (c == NULL) {
        if (err == -EACCES || err == -EIO) {
            /* Not ours to map (we run as another user): the kernel connects this client and, from now on, all. */
            atomic_store_explicit(&g->kernel_only, 1, memory_order_relaxed);
            slot_to_kernel(sl, gen);
        }
        else
            slot_free(sl, gen); /* withdrawn meanwhile */
        return 0;
    }
    if (c->magic != CL_MAGIC || ofd_lock(fd, 1, 1, F_WRLCK) < 0) {
        munmap(c, CL_CONN_BYTES);
        close(fd);
        slot_to_kernel(sl, gen);
        return 0;
    }
    close(fd); /* the mapping keeps our description, and so our lock, alive */
    fd = -1;
    struct core_queue *nq;
    int qd = core_queue_new(CORE_Q_TCP, NULL, &nq);
    struct cl_sock *ns = qd >= 0 ? sock_new(CL_CONN, nq) : NULL;
    if (ns == NULL || cl.kn->socket(nq, AF_INET, SOCK_STREAM, 0) < 0) {
        /* Refuse; the queue (if any) is never seen by the application. */
        atomic_store_explicit(&c->accepted, 2, memory_order_release);
        uint64_t reg = atomic_load_explicit(&c->wake[0], memory_order_relaxed);
        munmap(c, CL_CONN_BYTES);
        if (ns)
            sock_free(ns);
        slot_free(sl, gen);
        wake_once(reg);
        return 0;
    }
    ns->csh = c;
    memcpy(ns->cname, name, CL_NAME_MAX);
    ns->side = 1;
    c->wake[1] = my_wake_reg();
    c->addr[1] = s->laddr;
    if (c->addr[1].sin_addr.s_addr == htonl(INADDR_ANY))
        c->addr[1].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    atomic_store_explicit(&c->accepted, 1, memory_order_release);
    slot_free(sl, gen);
    wake_once(atomic_load_explicit(&c->wake[0], memory_order_relaxed));
    struct sockaddr_in peer = c->addr[0];
    peer.sin_family = AF_INET;
    struct core_op *op = s->accepts.head;
    core_oplist_remove(&s->accepts, op);
    core_op_complete_accept(op, qd, &peer);
    return 1;
}

/*
 * Take posted connection requests while accepts wait. The group's post counter
 * says when there is something new; every CL_LIVENESS_NS we also look for slots
 * left by clients that died while writing or before reading our answer.
 */
static int listener_progress(struct cl_sock *s)
{
    struct cl_group *g = &s->psh->group[s->group];
    uint32_t posts = atomic_load_explicit(&g->posts, memory_order_acquire);
    uint64_t now = cl.now;
    bool sweep = now >= s->next_sweep_ns;
    if (posts == s->seen_posts && !sweep)
        return 0;
    if (sweep)
        s->next_sweep_ns = now + CL_LIVENESS_NS;
    int done = 0;
    uint32_t i;
    for (i = 0; i < CL_SLOTS && s->accepts.head != NULL; i++) {
        struct cl_slot *sl = &g->slot[i];
        uint32_t v = atomic_load_explicit(&sl->state, memory_order_acquire);
        uint32_t st = SL_ST(v), gen = SL_GEN(v);
        if (st == SL_POSTED) {
            if (atomic_compare_exchange_strong(&sl->state, &v, SL_MAKE(gen, SL_TAKEN))) {
                slot_taken(sl);
                if (cl.test_die_on_take)
                    _exit(99); /* an acceptor crashing mid-answer, for the test of the client's re-post */
                done += take_slot(s, g, i, gen);
            }
        } else if (sweep && (st == SL_WRITING || st == SL_KERNEL) && !ofd_held(s->pfd, CL_LOCK_SLOT(s->group, i), 1)) {
            char name[CL_NAME_MAX];
            memcpy(name, sl->name, CL_NAME_MAX);
            name[CL_NAME_MAX - 1] = '\0';
            if (atomic_compare_exchange_strong(&sl->state, &v, SL_MAKE(gen + 1, SL_FREE)) && conn_name_ok(name))
                shm_unlink(name);
        }
    }
    if (i == CL_SLOTS)
        s->seen_posts = posts;
    return done;
}

/* Add or remove our acceptor registration in the group (clients wake the registered ones). */
static void acceptor_register(struct cl_sock *s, bool on)
{
    struct cl_group *g = &s->psh->group[s->group];
    uint64_t me = my_wake_reg();
    if (me == 0)
        return;
    int freeslot = -1;
    for (unsigned w = 0; w < CL_WAITERS; w++) {
        uint64_t v = atomic_load_explicit(&g->waiter[w], memory_order_relaxed);
        if (v == me) {
            if (!on)
                atomic_compare_exchange_strong(&g->waiter[w], &v, 0);
            return;
        }
        if (v == 0 && freeslot < 0)
            freeslot = (int)w;
    }
    if (!on)
        return;
    if (freeslot < 0) {
        /* Full of registrations: drop one whose process is gone, else stay unregistered (ticks find us). */
        for (unsigned w = 0; w < CL_WAITERS && freeslot < 0; w++) {
            uint64_t v = atomic_load_explicit(&g->waiter[w], memory_order_relaxed);
            if (!pid_alive((int32_t)(v >> 32)) && atomic_compare_exchange_strong(&g->waiter[w], &v, 0))
                freeslot = (int)w;
        }
    }
    if (freeslot >= 0) {
        uint64_t zero = 0;
        atomic_compare_exchange_strong(&g->waiter[freeslot], &zero, me);
    }
}

/* A client posted: wake every acceptor that sleeps on this group. */
static void wake_acceptors(struct cl_group *g)
{
    CL_FENCE();
    for (unsigned w = 0; w < CL_WAITERS; w++) {
        uint64_t v = atomic_load_explicit(&g->waiter[w], memory_order_relaxed);
        if (v != 0 && wake_once(v) == -ESRCH)
            atomic_compare_exchange_strong(&g->waiter[w], &v, 0);
    }
}

/* After a poll of listener s: drop its wake-up on progress, or once no accept waits. */
static void listener_disarm(struct cl_sock *s, int done)
{
    if (s->flagged && (done > 0 || s->accepts.head == NULL)) {
        acceptor_register(s, false);
        set_flag(s, false);
    }
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

/*
 * Keep the tick running exactly while a ring operation waits. The timer fires at
 * t0 + k * CL_TICK_NS; once the next expiry is past we drain it, so the fd is never
 * left readable (which would turn the core's sleep into a spin) and costs a read
 * only once per tick.
 */
static void tick_update(bool busy, uint64_t period)
{
    uint64_t now = cl.now;
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
    cl.test_die_on_take = getenv("DEMI_CATLOOP_TEST_DIE_ON_TAKE") != NULL;
    cl.pid = getpid();
    int ret = cl.kn->init(cfg);
    if (ret < 0)
        return ret;
    return wait_setup();
}

static void cl_fini(void)
{
    wait_teardown();
    /* Normally every queue is closed by now; a test reset may tear down with some open. */
    while (cl.all != NULL) {
        struct cl_sock *s = cl.all;
        if (s->psh != NULL)
            munmap(s->psh, sizeof(*s->psh));
        if (s->csh != NULL)
            munmap(s->csh, CL_CONN_BYTES);
        if (s->pfd >= 0)
            close(s->pfd);
        if (s->peer_wfd >= 0)
            close(s->peer_wfd);
        sock_free(s);
    }
    cl.nflagged = 0;
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

/*
 * Claim a free group of the port file (the kernel already allowed this listen, so a
 * live group of someone else means SO_REUSEPORT). 0 with s->psh/pfd/group set, or
 * -errno: then the socket listens on the kernel only.
 */
static int port_claim(struct cl_sock *s)
{
    for (int tries = 0; tries < 4; tries++) {
        int fd = shm_open(s->pname, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
            return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0 || st.st_uid != geteuid() ||
            (st.st_size != 0 && (size_t)st.st_size != sizeof(struct cl_port_shm)) ||
            (st.st_size == 0 && ftruncate(fd, sizeof(struct cl_port_shm)) < 0)) {
            close(fd);
            return -EIO;
        }
        int err = 0;
        struct cl_port_shm *p = map_fd(fd, sizeof(*p), &err);
        if (p == NULL) {
            close(fd);
            return err;
        }
        int group = -1;
        for (unsigned g = 0; g < CL_GROUPS && group < 0; g++)
            if (ofd_lock(fd, g, 1, F_WRLCK) == 0)
                group = (int)g;
        if (group < 0) {
            munmap(p, sizeof(*p));
            close(fd);
            return -EADDRINUSE;
        }
        if (!same_file(fd, s->pname)) {
            /* Unlinked as dead between our open and our lock: start over on a new file. */
            munmap(p, sizeof(*p));
            close(fd);
            continue;
        }
        struct cl_group *g = &p->group[group];
        /* The group's last holder died: its registrations are stale, and a slot it took but never answered is re-posted. */
        for (unsigned w = 0; w < CL_WAITERS; w++)
            atomic_store_explicit(&g->waiter[w], 0, memory_order_relaxed);
        atomic_store_explicit(&g->kernel_only, 0, memory_order_relaxed);
        for (unsigned i = 0; i < CL_SLOTS; i++) {
            uint32_t v = atomic_load_explicit(&g->slot[i].state, memory_order_relaxed);
            if (SL_ST(v) == SL_TAKEN) {
                atomic_store_explicit(&g->slot[i].taker, 0, memory_order_relaxed);
                atomic_compare_exchange_strong(&g->slot[i].state, &v, SL_MAKE(SL_GEN(v), SL_POSTED));
            }
        }
        p->magic = CL_MAGIC;
        atomic_fetch_or_explicit(&p->used, 1u << group, memory_order_release);
        s->psh = p;
        s->pfd = fd;
        s->group = group;
        s->seen_posts = atomic_load_explicit(&g->posts, memory_order_relaxed) - 1; /* scan once */
        return 0;
    }
    return -EBUSY;
}

static int cl_listen(struct core_queue *q, int backlog)
{
    if (q->kind != CORE_Q_TCP)
        return cl.kn->listen(q, backlog);
    int ret = cl.kn->listen(q, backlog);
    if (ret < 0 || lookup(q) != NULL)
        return ret; /* a second listen() only changes the kernel backlog */
    struct sockaddr_in a;
    ret = cl.kn->getsockname(q, &a);
    if (ret < 0)
        return ret;
    struct cl_sock *s = sock_new(CL_LISTENER, q);
    if (s == NULL)
        return -ENOMEM;
    s->laddr = a;
    char tag[CL_NS_TAG_MAX];
    ns_tag(tag);
    listen_name(s->pname, tag, &a);
    sweep_stale();
    ret = port_claim(s);
    if (ret < 0) {
        /* Still a listener: kernel clients and catloop clients (over the kernel) reach it. */
        LOG_WARN("catloop: %s: no shared-memory listener (%s); connections go over kernel TCP", s->pname + 1,
                 strerror(-ret));
        sock_free(s);
        return 0;
    }
    s->kfd = find_kernel_listener(&a);
    return 0;
}

static int cl_accept(struct core_queue *q, struct core_op *op)
{
    struct cl_sock *s = lookup(q);
    if (s == NULL)
        return cl.kn->accept(q, op);
    if (!s->uid_checked) {
        /*
         * An acceptor that dropped privileges after listen (nginx workers as nobody)
         * cannot map the connection files of the listener's user: tell clients to use
         * the kernel before they try.
         */
        struct stat st;
        s->uid_checked = true;
        if (fstat(s->pfd, &st) == 0 && st.st_uid != geteuid())
            atomic_store_explicit(&s->psh->group[s->group].kernel_only, 1, memory_order_relaxed);
    }
    core_oplist_push(&s->accepts, op);
    listener_progress(s);
    return 0;
}

/* Claim a free request slot of the group: its lock byte first, so a slot in use always has a live lock. */
static int slot_claim(struct cl_sock *s)
{
    struct cl_group *g = &s->psh->group[s->group];
    uint32_t start = ((uint32_t)cl.pid * 31u + cl.seq) % CL_SLOTS;
    for (uint32_t k = 0; k < CL_SLOTS; k++) {
        uint32_t i = (start + k) % CL_SLOTS;
        uint32_t v = atomic_load_explicit(&g->slot[i].state, memory_order_relaxed);
        if (SL_ST(v) != SL_FREE || ofd_lock(s->pfd, CL_LOCK_SLOT(s->group, i), 1, F_WRLCK) < 0)
            continue;
        v = atomic_load_explicit(&g->slot[i].state, memory_order_acquire);
        if (SL_ST(v) == SL_FREE &&
            atomic_compare_exchange_strong(&g->slot[i].state, &v, SL_MAKE(SL_GEN(v), SL_WRITING))) {
            s->slot = (int)i;
            s->slot_gen = SL_GEN(v);
            return 0;
        }
        ofd_lock(s->pfd, CL_LOCK_SLOT(s->group, i), 1, F_UNLCK);
    }
    return -EAGAIN;
}

/* Create our connection file (named in the slot before it exists, so a death in between leaves no orphan). */
static int conn_create(struct cl_sock *s, const struct sockaddr_in *me, const struct sockaddr_in *to)
{
    int fd = shm_open(s->cname, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int ret = 0;
    if (ofd_lock(fd, 0, 1, F_WRLCK) < 0 || ftruncate(fd, CL_CONN_BYTES) < 0)
        ret = -errno;
    if (ret == 0 && (s->csh = map_fd(fd, CL_CONN_BYTES, &ret)) == NULL && ret == 0)
        ret = -EIO;
    if (ret < 0) {
        close(fd);
        shm_unlink(s->cname);
        s->cname[0] = '\0';
        return ret;
    }
    close(fd); /* the mapping keeps the lock */
    struct cl_conn_shm *c = s->csh;
    c->magic = CL_MAGIC;
    c->wake[0] = my_wake_reg();
    c->want_wake[0] = 1; /* the acceptor wakes us when it answers */
    c->addr[0] = *me;
    c->addr[1] = *to;
    return 0;
}

static int cl_connect(struct core_queue *q, struct core_op *op)
{
    if (q->kind != CORE_Q_TCP || lookup(q) != NULL)
        return cl.kn->connect(q, op);
    struct cl_port_shm *p;
    int pfd, group;
    char pname[CL_NAME_MAX];
    if (find_listener(&op->addr, &p, &pfd, &group, pname) < 0) {
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
    struct cl_sock *s = ret < 0 ? NULL : sock_new(CL_CONN, q);
    if (s == NULL) {
        munmap(p, sizeof(*p));
        close(pfd);
        return ret < 0 ? ret : -ENOMEM;
    }
    if (me.sin_addr.s_addr == htonl(INADDR_ANY))
        me.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->psh = p;
    s->pfd = pfd;
    memcpy(s->pname, pname, CL_NAME_MAX);
    s->group = group;
    s->side = 0;
    s->target = op->addr;
    core_oplist_push(&s->connects, op);
    int claimed = slot_claim(s);
    close(s->pfd); /* our mapping keeps the slot lock */
    s->pfd = -1;
    if (claimed < 0) {
        /* The listener's request slots are full: its kernel backlog takes us instead. */
        client_to_kernel(s, op);
        return 0;
    }
    struct cl_group *g = &p->group[group];
    struct cl_slot *sl = &g->slot[s->slot];
    atomic_store_explicit(&sl->wake, my_wake_reg(), memory_order_relaxed);
    ret = -EEXIST;
    for (int tries = 0; tries < 4 && ret == -EEXIST; tries++) {
        /* A file of that name is left by an earlier process with our pid: take the next. */
        snprintf(s->cname, CL_NAME_MAX, "/demi-catloop-c.%d.%u", (int)cl.pid, cl.seq++);
        memcpy(sl->name, s->cname, CL_NAME_MAX);
        ret = conn_create(s, &me, &op->addr);
    }
    if (ret < 0) {
        core_oplist_remove(&s->connects, op);
        client_abandon(s);
        return ret;
    }
    atomic_store_explicit(&sl->state, SL_MAKE(s->slot_gen, SL_POSTED), memory_order_release);
    atomic_fetch_add_explicit(&g->posts, 1, memory_order_release);
    wake_acceptors(g);
    s->next_check_ns = core_now_ns() + CL_LIVENESS_NS;
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

/* The last holder of a listener withdraws it: requests still posted are refused. */
static void listener_withdraw(struct cl_sock *s)
{
    struct cl_group *g = &s->psh->group[s->group];
    for (uint32_t i = 0; i < CL_SLOTS; i++) {
        struct cl_slot *sl = &g->slot[i];
        uint32_t v = atomic_load_explicit(&sl->state, memory_order_acquire);
        if (SL_ST(v) != SL_POSTED || !atomic_compare_exchange_strong(&sl->state, &v, SL_MAKE(SL_GEN(v), SL_TAKEN)))
            continue;
        slot_taken(sl);
        char name[CL_NAME_MAX];
        memcpy(name, sl->name, CL_NAME_MAX);
        name[CL_NAME_MAX - 1] = '\0';
        int fd = -1, err = 0;
        struct cl_conn_shm *c = conn_name_ok(name) ? slot_open(name, &fd, &err) : NULL;
        if (c != NULL) {
            atomic_store_explicit(&c->accepted, 2, memory_order_release);
            uint64_t reg = atomic_load_explicit(&c->wake[0], memory_order_relaxed);
            munmap(c, CL_CONN_BYTES);
            close(fd);
            shm_unlink(name);
            slot_free(sl, SL_GEN(v));
            wake_once(reg);
        } else {
            slot_to_kernel(sl, SL_GEN(v));
        }
    }
}

/*
 * Reopen fd's file through /proc (a new open file description), so that once our
 * fd and mapping are gone (each keeps our description, and so its lock, alive) we
 * can still see whether a process sharing it by fork holds the lock. -1 if /proc
 * cannot give it (not mounted, or we dropped the rights since, as nginx workers do).
 */
static int reopen_self(int fd)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    return open(path, O_RDWR | O_CLOEXEC);
}

static ssize_t shm_rw(int fd, bool wr, void *buf, size_t n, size_t off)
{
    return wr ? pwrite(fd, buf, n, (off_t)off) : pread(fd, buf, n, (off_t)off);
}

/*
 * Our mapping is gone and no process shares our side any more: mark it closed and
 * wake the peer, through a descriptor. The second side to close removes the file.
 */
static void conn_close_via(int fd, struct cl_sock *s)
{
    uint32_t two = 2, want = 0, peer_closed = 0;
    uint64_t reg = 0;
    int peer = 1 - s->side;
    if (shm_rw(fd, true, &two, sizeof(two), offsetof(struct cl_conn_shm, closed) + sizeof(uint32_t) * (size_t)s->side) !=
        (ssize_t)sizeof(two))
        return;
    CL_FENCE();
    if (shm_rw(fd, false, &peer_closed, sizeof(peer_closed), offsetof(struct cl_conn_shm, closed) + sizeof(uint32_t) * (size_t)peer) ==
            (ssize_t)sizeof(peer_closed) &&
        (peer_closed == 2 || !ofd_held(fd, peer, 1))) {
        shm_unlink(s->cname);
        return;
    }
    if (shm_rw(fd, false, &want, sizeof(want), offsetof(struct cl_conn_shm, want_wake) + sizeof(uint32_t) * (size_t)peer) ==
            (ssize_t)sizeof(want) &&
        want != 0 &&
        shm_rw(fd, false, &reg, sizeof(reg), offsetof(struct cl_conn_shm, wake) + sizeof(uint64_t) * (size_t)peer) ==
            (ssize_t)sizeof(reg))
        wake_once(reg);
}

static void conn_release(struct cl_sock *s)
{
    bool connecting = s->psh != NULL;
    if (connecting)
        client_release_slot(s, true);
    if (s->csh != NULL) {
        /* The side stays open while a process we forked (or that forked us) still holds it. */
        int fd = s->cname[0] != '\0' ? shm_open(s->cname, O_RDWR | O_CLOEXEC, 0) : -1;
        if (fd < 0) {
            /* Refused or withdrawn already (the name is gone), or no descriptor to spare: close through the mapping. */
            atomic_store_explicit(&s->csh->closed[s->side], 2, memory_order_release);
            wake_peer(s);
        }
        munmap(s->csh, CL_CONN_BYTES);
        s->csh = NULL;
        if (fd >= 0) {
            if (connecting)
                shm_unlink(s->cname); /* never accepted: the acceptor, if any, finds it closed or gone */
            if (!ofd_held(fd, s->side, 1))
                conn_close_via(fd, s);
            close(fd);
        }
    }
    if (s->peer_wfd >= 0)
        close(s->peer_wfd);
}

static void listener_release(struct cl_sock *s)
{
    if (s->flagged)
        acceptor_register(s, false);
    if (s->kfd_in_ep && cl.epfd >= 0)
        epoll_ctl(cl.epfd, EPOLL_CTL_DEL, s->kfd, NULL);
    int probe = reopen_self(s->pfd);
    munmap(s->psh, sizeof(*s->psh));
    s->psh = NULL;
    close(s->pfd);
    s->pfd = -1;
    if (probe < 0)
        return; /* cannot tell whether others keep it: they, or the next visitor, clean up */
    if (!ofd_held(probe, s->group, 1)) {
        /* We were its last holder: refuse what is still posted, then remove the file if no other group lives. */
        int err = 0;
        s->psh = map_fd(probe, sizeof(*s->psh), &err);
        if (s->psh != NULL) {
            listener_withdraw(s);
            atomic_fetch_and_explicit(&s->psh->used, ~(1u << s->group), memory_order_release);
            munmap(s->psh, sizeof(*s->psh));
            s->psh = NULL;
        }
        port_unlink_if_dead(probe, s->pname);
    }
    close(probe);
}

static int cl_close(struct core_queue *q)
{
    struct cl_sock *s = lookup(q);
    if (s != NULL) {
        fail_all(s, ECANCELED);
        if (s->kind == CL_LISTENER)
            listener_release(s);
        else
            conn_release(s);
        sock_free(s);
    }
    return q->priv != NULL ? cl.kn->close(q) : 0;
}

static int cl_shutdown(struct core_queue *q, int how)
{
    struct cl_sock *s = lookup(q);
    if (s == NULL)
        return cl.kn->shutdown(q, how);
    if (s->kind != CL_CONN || s->connects.head != NULL)
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

/* While accepts wait, the kernel listening socket is in our epoll set: a kernel client wakes us. */
static void listener_watch_kernel(struct cl_sock *s)
{
    bool want = s->accepts.head != NULL && s->kfd >= 0 && cl.epfd >= 0;
    if (want == s->kfd_in_ep)
        return;
    struct epoll_event ev = {.events = EPOLLIN};
    if (epoll_ctl(cl.epfd, want ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, s->kfd, &ev) == 0 || !want)
        s->kfd_in_ep = want;
}

/*
 * The process is idle: ask for a wake-up on every socket still waiting without one
 * of ours, then look at each once more, after a full fence, so what a peer published
 * before it could see the request is found here (and disarms that socket again).
 */
static int arm_all(uint64_t me, bool *connecting)
{
    int armed = 0, done = 0;
    *connecting = false;
    for (struct cl_sock *s = cl.all; s != NULL; s = s->next) {
        *connecting |= s->kind == CL_CONN && s->connects.head != NULL; /* answered by a wake-up of their own */
        if (s->kind == CL_LISTENER) {
            if (s->accepts.head != NULL && !s->flagged) {
                acceptor_register(s, true);
                set_flag(s, true);
                armed++;
            }
        } else if (s->connects.head == NULL && (s->pushes.head != NULL || s->pops.head != NULL) &&
                   (!s->flagged || atomic_load_explicit(&s->csh->wake[s->side], memory_order_relaxed) != me)) {
            conn_arm(s, me);
            armed++;
        }
    }
    if (armed == 0)
        return 0;
    CL_FENCE();
    struct cl_sock *s = cl.all;
    while (s != NULL) {
        struct cl_sock *next = s->next; /* progress may free s */
        if (s->flagged) {
            if (s->kind == CL_LISTENER) {
                s->seen_posts--; /* a request posted before the client could see us registered */
                int d = listener_progress(s);
                listener_disarm(s, d);
                done += d;
            } else if (s->pushes.head != NULL || s->pops.head != NULL) {
                done += conn_progress(s);
            }
        }
        s = next;
    }
    return done;
}

static int cl_poll(void)
{
    /*
     * catnap's poll is an epoll_wait system call, several times a ring round trip:
     * while ring operations wait it runs every CL_KPOLL_EVERY-th poll only. No kernel
     * event is lost: catnap's set stays readable inside ours until it is drained.
     */
    int done = 0;
    cl.now = core_now_ns();
    if (!cl.ring_busy || (++cl.npolls % CL_KPOLL_EVERY) == 0)
        done += cl.kn->poll();
    /*
     * Bytes in our wake pipe only end a sleep: every waiting operation is looked at
     * below anyway. A byte left in it would keep our epoll set readable, so the core
     * would poll instead of sleeping; it is drained at the start of a poll (so what
     * it announced is found below), every 8th poll while bytes may come and every
     * 64th otherwise: a few spare polls, not a system call per poll.
     */
    bool expect = cl.nflagged > 0 || cl.drain_polls > 0;
    if (cl.drain_polls > 0)
        cl.drain_polls--;
    if ((++cl.npolls_drain & (expect ? 7u : 63u)) == 0)
        drain_wake_pipe();
    bool busy = false, urgent = false;
    uint64_t me = my_wake_reg();
    struct cl_sock *s = cl.all;
    while (s != NULL) {
        struct cl_sock *next = s->next;
        if (s->kind == CL_LISTENER) {
            if (s->accepts.head != NULL) {
                int d = listener_progress(s);
                if (s->accepts.head != NULL)
                    d += kernel_accept_progress(s);
                listener_disarm(s, d);
                done += d;
                /* Armed, a listener needs no tick: clients wake it, and its kernel socket is in our set. */
                busy |= s->accepts.head != NULL && !s->flagged;
                urgent |= s->accepts.head != NULL && !s->flagged;
            } else if (s->flagged) {
                listener_disarm(s, 0);
            }
            listener_watch_kernel(s);
        } else if (s->connects.head != NULL || s->pushes.head != NULL || s->pops.head != NULL) {
            bool connecting = s->connects.head != NULL;
            int d = conn_progress(s);
            done += d;
            if (connecting)
                cl.drain_polls = CL_DRAIN_POLLS; /* the acceptor's wake-up may come after its answer */
            if (connecting && d > 0) {
                /* s may be gone (sent to the kernel or refused) */
                busy = true;
                s = next;
                continue;
            }
            bool w = s->connects.head != NULL || s->pushes.head != NULL || s->pops.head != NULL;
            busy |= w;
            /* Armed, and our registration is still the one the peer sees (a process sharing the side may have replaced it). */
            bool armed = s->flagged && atomic_load_explicit(&s->csh->wake[s->side], memory_order_relaxed) == me;
            urgent |= w && (!armed || s->connects.head != NULL);
        }
        s = next;
    }
    /*
     * Wake-ups are a process matter: while the process makes progress it polls every
     * socket anyway, and a peer's publish costs nothing more than the ring write. Only
     * once the whole process went CL_FLAG_NS without progress (it is about to sleep:
     * the core's and the shim's spins are longer) does every waiting socket ask its
     * peer for a wake-up, which then costs the peer a write(2) per socket. A busy server
     * with many connections, each idle between its requests, thus arms none of them.
     */
    if (done > 0 || !busy) {
        cl.idle_since = 0;
    } else if (cl.idle_since == 0) {
        cl.idle_since = cl.now;
    } else if (urgent && cl.now - cl.idle_since >= CL_FLAG_NS && cl.wpipe[1] >= 0) {
        bool connecting;
        done += arm_all(me, &connecting);
        /* Every other waiting socket is armed now, unless progress disarmed it: the next poll sorts that out. */
        urgent = connecting || done > 0;
        if (done > 0)
            cl.idle_since = 0;
    }
    cl.ring_busy = busy;
    if (cl.epfd >= 0)
        tick_update(busy, urgent ? CL_TICK_NS : CL_SLOW_TICK_NS);
    return done;
}

static void cl_fork_child(void)
{
    cl.pid = getpid();
    cl.test_die_on_take = getenv("DEMI_CATLOOP_TEST_DIE_ON_TAKE") != NULL;
    if (cl.kn->fork_child)
        cl.kn->fork_child();
    /* catnap's set is new in the child: ours must hold that one, and a timer and wake pipe of our own. */
    wait_teardown();
    if (wait_setup() < 0)
        cl.epfd = -1;
    /* The parent's wake-up registrations stay the parent's; the child arms its own when it waits. */
    for (struct cl_sock *s = cl.all; s != NULL; s = s->next) {
        s->flagged = false;
        s->kfd_in_ep = false;
        s->uid_checked = false; /* the child may change user before it accepts */
    }
    cl.nflagged = 0;
    cl.idle_since = 0;
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
