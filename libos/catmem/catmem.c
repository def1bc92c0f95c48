/* catmem: the LibOS of named pipes between processes of one host, each a pair of message rings in a shared-memory region, with futex sleeping and peer-death detection. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "catmem.h"
#include "config.h"
#include "libos.h"
#include "log.h"
#include "ring.h"

/*
 * Bytes of each ring (one per direction) of a pipe we create: catmem.ring_size
 * (DEMI_CATMEM_RING_SIZE), 1 MiB by default; messages larger than a ring go in
 * pieces. An opener takes the size the creator chose, within these bounds (the
 * configuration's own).
 */
#define CATMEM_RING_CAP_MIN 4096u
#define CATMEM_RING_CAP_MAX (1u << 28)
static uint64_t ring_cap = 1u << 20;
/* How often poll() asks the kernel whether a peer died while we spin. */
#define CATMEM_LIVE_CHECK_NS 2000000ull
/* ... and reads the clock for it every this many polls (a power of two). */
#define CATMEM_LIVE_CHECK_POLLS 64u
/* Longest futex sleep while a peer is watched: a peer killed while we sleep is noticed within this. */
#define CATMEM_SLEEP_CAP_NS 50000000ull
/* Longest sleep when there are more pipes than one futex_waitv can watch. */
#define CATMEM_OVERFLOW_SLEEP_NS 1000000ull
/* How long open waits for a region whose creator is still setting it up. */
#define CATMEM_OPEN_SETTLE_NS 100000000ull

struct cm_pipe {
    void *base;
    size_t size;
    struct cm_hdr *hdr;
    int me;                     /* 0 creator, 1 opener: index of our end */
    char shm_name[sizeof(CM_SHM_PREFIX) + CM_NAME_MAX];
    struct cm_ring tx, rx;
    int fd;                     /* the region's file: our end's lock lives on its description (see end_lock) */
    uint64_t next_live_check;
    uint32_t live_polls;        /* polls since the clock was last read for the live check */
    int err;                    /* sticky: ECONNRESET (peer died) or EIO (corrupt region) */
    ino_t ino;                  /* the region's inode, to unlink its name only while it is still ours */
    bool inherited;             /* a forked child's copy of its parent's pipe: unusable, off the list */
    demi_sgarray_t rx_sga;      /* buffer of the message being reassembled */
    struct core_oplist pops;
    struct core_oplist pushes;
    struct cm_pipe *next, *prev; /* every open pipe */
};

static struct cm_pipe *pipes;
static unsigned npipes;

/* What the leader sleeps on, filled by block_prepare under the lock, used by block without it. */
static struct futex_waitv sleep_set[FUTEX_WAITV_MAX];
static unsigned sleep_n;
static bool sleep_overflow;
static bool sleep_watch;

static inline uint32_t ld32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

/*
 * A full store-load barrier between "I published / I sleep" and "does the other
 * side sleep / was there news". ThreadSanitizer cannot model a fence, so its
 * builds use a sequentially consistent read-modify-write, which is a full
 * barrier on the machines we run on too.
 */
#if defined(__SANITIZE_THREAD__)
static uint32_t fence_word;
#define FULL_FENCE() ((void)__atomic_fetch_add(&fence_word, 0, __ATOMIC_SEQ_CST))
#else
#define FULL_FENCE() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#endif

static int futex_wake_shared(uint32_t *addr)
{
    return (int)syscall(SYS_futex, addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* After publishing anything the peer may wait for: wake it if it announced it sleeps. */
static void kick(struct cm_pipe *p)
{
    struct cm_end *pe = &p->hdr->end[!p->me];
    FULL_FENCE();
    if (__atomic_load_n(&pe->sleeping, __ATOMIC_RELAXED) &&
        __atomic_exchange_n(&pe->sleeping, 0, __ATOMIC_SEQ_CST)) {
        __atomic_add_fetch(&pe->bell, 1, __ATOMIC_SEQ_CST);
        futex_wake_shared(&pe->bell);
    }
}

static int validate_name(const char *name)
{
    size_t n = strnlen(name, CM_NAME_MAX + 1);
    if (n == 0 || n > CM_NAME_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                  c == '_' || c == '-';
        if (!ok)
            return -EINVAL;
    }
    /* "." and ".." would not name a file of their own under /dev/shm. */
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return -EINVAL;
    return 0;
}

/*
 * Liveness: each end holds an open-file-description lock on one byte of the
 * region's file (byte 0 the creator's, byte 1 the opener's), taken when it
 * creates or opens the pipe. The kernel drops it when the last reference to that
 * description goes: our fd and our mapping, so when we close the pipe or die,
 * however we die. Unlike a pid, a lock means the same thing in every PID
 * namespace that shares /dev/shm (a container's peer), and it cannot name a
 * recycled pid's unrelated process.
 */
static int end_lock(int fd, int end)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = end, .l_len = 1};
    return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* Does a description other than fd's hold end's lock? (A failing query says yes: never a false death.) */
static bool end_held(int fd, int end)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = end, .l_len = 1};
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return true;
    return fl.l_type != F_UNLCK;
}

static struct cm_pipe *pipe_new(const char *shm_name, void *base, size_t size, uint64_t cap, int me)
{
    struct cm_pipe *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->base = base;
    p->size = size;
    p->hdr = base;
    p->me = me;
    p->fd = -1;
    snprintf(p->shm_name, sizeof(p->shm_name), "%s", shm_name);
    uint8_t *r0 = (uint8_t *)base + CM_HDR_BYTES;
    uint8_t *r1 = r0 + catmem_ring_bytes(cap);
    if (catmem_ring_attach(&p->tx, me == 0 ? r0 : r1, cap, true) < 0 ||
        catmem_ring_attach(&p->rx, me == 0 ? r1 : r0, cap, false) < 0) {
        free(p);
        return NULL;
    }
    p->next = pipes;
    if (pipes)
        pipes->prev = p;
    pipes = p;
    npipes++;
    return p;
}

/* A name whose region was left by processes that are all gone (neither end's lock held) may be taken over. */
static bool region_is_stale(const char *shm_name)
{
    int fd = shm_open(shm_name, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct stat st;
    bool stale = false;
    if (fstat(fd, &st) == 0 && st.st_uid == geteuid() && (size_t)st.st_size >= sizeof(struct cm_hdr)) {
        struct cm_hdr *h = mmap(NULL, sizeof(*h), PROT_READ, MAP_SHARED, fd, 0);
        if (h != MAP_FAILED) {
            stale = h->magic == CM_MAGIC && !end_held(fd, 0) && !end_held(fd, 1);
            munmap(h, sizeof(*h));
        }
    }
    close(fd);
    return stale;
}

static int catmem_create_pipe(struct core_queue *q, const char *name)
{
    int rc = validate_name(name);
    if (rc < 0)
        return rc;
    char shm_name[sizeof(CM_SHM_PREFIX) + CM_NAME_MAX];
    snprintf(shm_name, sizeof(shm_name), "%s%s", CM_SHM_PREFIX, name);
    int fd = shm_open(shm_name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST && region_is_stale(shm_name)) {
        LOG_DEBUG("catmem: taking over pipe %s left by processes that are gone", name);
        shm_unlink(shm_name);
        fd = shm_open(shm_name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (fd < 0)
        return -errno;
    uint64_t cap = ring_cap;
    uint64_t size = cm_region_size(cap);
    void *base = MAP_FAILED;
    /* The umask can only narrow 0600; fchmod makes sure nothing widened it. Our end's lock before anyone can open. */
    if (fchmod(fd, 0600) < 0 || (rc = end_lock(fd, 0)) < 0 || ftruncate(fd, (off_t)size) < 0 ||
        (base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED) {
        rc = rc < 0 ? rc : -errno;
        close(fd);
        shm_unlink(shm_name);
        return rc;
    }
    struct cm_hdr *h = base;
    h->version = CM_VERSION;
    h->ring_cap = cap;
    h->region_size = size;
    h->end[0].pid = (uint32_t)getpid();
    uint8_t *r0 = (uint8_t *)base + CM_HDR_BYTES;
    catmem_ring_format(r0, cap);
    catmem_ring_format(r0 + catmem_ring_bytes(cap), cap);
    __atomic_store_n(&h->magic, CM_MAGIC, __ATOMIC_RELEASE);
    struct cm_pipe *p = pipe_new(shm_name, base, size, cap, 0);
    if (p == NULL) {
        munmap(base, size);
        close(fd);
        shm_unlink(shm_name);
        return -ENOMEM;
    }
    p->fd = fd;
    q->priv = p;
    LOG_DEBUG("catmem: qd %d created pipe %s", q->qd, name);
    return 0;
}

static int catmem_open_pipe(struct core_queue *q, const char *name)
{
    int rc = validate_name(name);
    if (rc < 0)
        return rc;
    char shm_name[sizeof(CM_SHM_PREFIX) + CM_NAME_MAX];
    snprintf(shm_name, sizeof(shm_name), "%s%s", CM_SHM_PREFIX, name);
    int fd = shm_open(shm_name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct stat st;
    /* Only a region of our own user and nobody else's access is a pipe we talk over. */
    if (fstat(fd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
        close(fd);
        return -EACCES;
    }
    /* The creator may be between shm_open and ftruncate, or still writing the header. */
    uint64_t t0 = core_now_ns();
    struct cm_hdr *h = MAP_FAILED;
    while ((h == MAP_FAILED || __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != CM_MAGIC) &&
           core_now_ns() - t0 < CATMEM_OPEN_SETTLE_NS) {
        if (h == MAP_FAILED && fstat(fd, &st) == 0 && (uint64_t)st.st_size >= CM_HDR_BYTES)
            h = mmap(NULL, CM_HDR_BYTES, PROT_READ, MAP_SHARED, fd, 0);
        else
            usleep(100);
    }
    if (h == MAP_FAILED || __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != CM_MAGIC) {
        if (h != MAP_FAILED)
            munmap(h, CM_HDR_BYTES);
        close(fd);
        return -EIO;
    }
    /* The creator chose the ring size: read it once and check it against the file before mapping it all. */
    uint32_t version = __atomic_load_n(&h->version, __ATOMIC_RELAXED);
    uint64_t cap = __atomic_load_n(&h->ring_cap, __ATOMIC_RELAXED);
    uint64_t size = __atomic_load_n(&h->region_size, __ATOMIC_RELAXED);
    munmap(h, CM_HDR_BYTES);
    if (version != CM_VERSION || cap < CATMEM_RING_CAP_MIN || cap > CATMEM_RING_CAP_MAX || (cap & (cap - 1)) != 0 ||
        size != cm_region_size(cap) || fstat(fd, &st) < 0 || (uint64_t)st.st_size != size) {
        close(fd);
        return -EIO;
    }
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        close(fd);
        return -ENOMEM;
    }
    ino_t ino = st.st_ino;
    h = base;
    /*
     * Our end's lock first, then the claim: the creator takes a claimed end whose lock
     * is not held for a dead opener. The pid is only the claim (and for people
     * reading the region); liveness never looks at it.
     */
    rc = end_lock(fd, 1);
    if (rc == -EAGAIN || rc == -EACCES)
        rc = -EBUSY; /* another opener holds the second end */
    uint32_t zero = 0;
    if (rc == 0 && !__atomic_compare_exchange_n(&h->end[1].pid, &zero, (uint32_t)getpid(), false,
                                                __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        rc = -EBUSY; /* a pipe has exactly two ends; the second is taken */
    struct cm_pipe *p = NULL;
    if (rc == 0 && (p = pipe_new(shm_name, base, size, cap, 1)) == NULL)
        rc = -EIO; /* the rings' positions are impossible */
    if (rc < 0) {
        munmap(base, size);
        close(fd);
        return rc;
    }
    p->ino = ino;
    p->fd = fd;
    if (!end_held(fd, 0) && !ld32(&h->end[0].closed))
        p->err = ECONNRESET; /* the creator died before we came */
    kick(p);
    q->priv = p;
    LOG_DEBUG("catmem: qd %d opened pipe %s", q->qd, name);
    return 0;
}

/* Is the peer gone without closing? Asks the kernel at most every CATMEM_LIVE_CHECK_NS unless forced. */
static void check_peer(struct cm_pipe *p, bool force)
{
    if (p->err)
        return;
    int peer = !p->me;
    if (peer == 1 && ld32(&p->hdr->end[1].pid) == 0)
        return; /* nobody opened yet (an opener locks its end before it claims it) */
    /* The clock is dear next to a spinning poll: look at it every CATMEM_LIVE_CHECK_POLLS calls only. */
    if (!force && (++p->live_polls & (CATMEM_LIVE_CHECK_POLLS - 1)) != 0)
        return;
    uint64_t now = core_now_ns();
    if (!force && now < p->next_live_check)
        return;
    p->next_live_check = now + CATMEM_LIVE_CHECK_NS;
    /* closed is set before the lock goes (at close), so a lock gone with closed unset is a death. */
    if (!end_held(p->fd, peer) && !ld32(&p->hdr->end[peer].closed)) {
        LOG_DEBUG("catmem: pipe %s: peer process died", p->shm_name);
        p->err = ECONNRESET;
    }
}

static void *rx_alloc(void *ctx, uint32_t len)
{
    struct cm_pipe *p = ctx;
    p->rx_sga = core_sga_alloc(len);
    return p->rx_sga.sga_numsegs ? p->rx_sga.sga_segs[0].sgaseg_buf : NULL;
}

static void complete_eof(struct core_op *op)
{
    /* A real (1-byte) buffer, so the application can hand it to demi_sgafree like any other. */
    demi_sgarray_t sga = core_sga_alloc(1);
    if (sga.sga_numsegs == 0) {
        core_op_fail(op, ENOMEM);
        return;
    }
    sga.sga_segs[0].sgaseg_len = 0;
    core_op_complete_pop(op, &sga);
}

/* Move whatever can move on one pipe; returns the number of operations completed. */
static int pipe_progress(struct cm_pipe *p)
{
    int n = 0;
    bool moved = false;
    uint64_t rx_before = p->rx.pos; /* a partial message read also frees room the writer may wait for */
    if (p->pops.head || p->pushes.head)
        check_peer(p, false);
    struct core_op *op;
    while ((op = p->pops.head) != NULL) {
        if (p->err) {
            core_oplist_fail_all(&p->pops, p->err);
            break;
        }
        uint32_t len;
        int rc = catmem_ring_get(&p->rx, rx_alloc, p, &len);
        if (rc == 0 && p->rx.rx_buf == NULL && ld32(&p->hdr->end[!p->me].closed)) {
            /* closed is set after the last publish: look once more, then it is the end. */
            rc = catmem_ring_get(&p->rx, rx_alloc, p, &len);
            if (rc == 0 && p->rx.rx_buf == NULL) {
                core_oplist_remove(&p->pops, op);
                complete_eof(op);
                n++;
                continue;
            }
        }
        if (rc == 1) {
            demi_sgarray_t sga = p->rx_sga;
            memset(&p->rx_sga, 0, sizeof(p->rx_sga));
            sga.sga_segs[0].sgaseg_len = len;
            core_oplist_remove(&p->pops, op);
            core_op_complete_pop(op, &sga);
            n++;
            moved = true;
            continue;
        }
        if (rc == -EIO) {
            LOG_WARN("catmem: pipe %s: the peer wrote an impossible ring record or position", p->shm_name);
            p->err = EIO;
            continue;
        }
        break; /* nothing whole yet, or -ENOMEM: retry on a later poll */
    }
    while ((op = p->pushes.head) != NULL) {
        if (p->err) {
            core_oplist_fail_all(&p->pushes, p->err);
            break;
        }
        if (ld32(&p->hdr->end[!p->me].closed)) {
            core_oplist_fail_all(&p->pushes, EPIPE);
            break;
        }
        uint32_t before = op->progress;
        int rc = catmem_ring_put(&p->tx, op->sga.sga_segs[0].sgaseg_buf, op->sga.sga_segs[0].sgaseg_len, &op->progress);
        if (op->progress != before)
            moved = true;
        if (rc == 1) {
            core_oplist_remove(&p->pushes, op);
            core_op_complete_push(op);
            n++;
            continue;
        }
        if (rc < 0) {
            LOG_WARN("catmem: pipe %s: the peer's ring position is impossible", p->shm_name);
            p->err = EIO;
            continue;
        }
        break;
    }
    if (moved || p->rx.pos != rx_before)
        kick(p);
    return n;
}

static int catmem_push(struct core_queue *q, struct core_op *op)
{
    struct cm_pipe *p = q->priv;
    if (p->inherited)
        return -ENOTSUP;
    op->progress = 0;
    core_oplist_push(&p->pushes, op);
    if (p->pushes.head == op)
        pipe_progress(p);
    return 0;
}

static int catmem_pop(struct core_queue *q, struct core_op *op)
{
    struct cm_pipe *p = q->priv;
    if (p->inherited)
        return -ENOTSUP;
    core_oplist_push(&p->pops, op);
    if (p->pops.head == op)
        pipe_progress(p);
    return 0;
}

static void unlink_if_same(const char *shm_name, ino_t ino)
{
    int fd = shm_open(shm_name, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return;
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_ino == ino)
        shm_unlink(shm_name);
    close(fd);
}

static void pipe_free(struct cm_pipe *p)
{
    core_oplist_fail_all(&p->pops, ECANCELED);
    core_oplist_fail_all(&p->pushes, ECANCELED);
    if (p->rx.rx_buf != NULL)
        core_sga_free(&p->rx_sga);
    __atomic_store_n(&p->hdr->end[p->me].closed, 1, __ATOMIC_RELEASE);
    kick(p);
    /* The creator's name goes with it: a later create of the same name starts afresh. An opener
     * whose creator died without closing removes the name too (nobody else will), unless the name
     * already belongs to a newer region. */
    if (p->me == 0)
        shm_unlink(p->shm_name);
    else {
        if (p->err == 0)
            check_peer(p, true);
        if (p->err == ECONNRESET && !ld32(&p->hdr->end[0].closed))
            unlink_if_same(p->shm_name, p->ino);
    }
    munmap(p->base, p->size);
    if (p->fd >= 0)
        close(p->fd); /* with the mapping gone, this drops our end's lock */
    if (p->prev)
        p->prev->next = p->next;
    else
        pipes = p->next;
    if (p->next)
        p->next->prev = p->prev;
    npipes--;
    free(p);
}

static int catmem_close(struct core_queue *q)
{
    struct cm_pipe *p = q->priv;
    if (p->inherited)
        free(p); /* the parent's pipe: nothing shared changes (fork_child let go of the rest) */
    else
        pipe_free(p);
    q->priv = NULL;
    return 0;
}

/*
 * A forked child does not get its parent's pipes. Each end belongs to one
 * process (the lock the peer watches for death is on its file description), so
 * a child that could pop would steal the parent's messages. In the child each
 * inherited pipe is let go without touching the shared region: the mapping and
 * our fd of the parent's description go, operations the parent had pending end here with ENOTSUP (the
 * parent still completes its own), new push/pop get ENOTSUP, and demi_close only
 * frees the child's copy. Pipes the child creates or opens itself work as usual.
 */
static void catmem_fork_child(void)
{
    while (pipes) {
        struct cm_pipe *p = pipes;
        pipes = p->next;
        core_oplist_fail_all(&p->pops, ENOTSUP);
        core_oplist_fail_all(&p->pushes, ENOTSUP);
        if (p->rx.rx_buf != NULL)
            core_sga_free(&p->rx_sga);
        munmap(p->base, p->size);
        /* Our copy of the parent's description: closed, so the parent's lock goes with the parent alone. */
        if (p->fd >= 0)
            close(p->fd);
        p->fd = -1;
        p->base = NULL;
        p->hdr = NULL;
        p->next = p->prev = NULL;
        p->inherited = true;
    }
    npipes = 0;
}

static int catmem_poll(void)
{
    int n = 0;
    for (struct cm_pipe *p = pipes; p; p = p->next)
        if (p->pops.head || p->pushes.head)
            n += pipe_progress(p);
    return n;
}

static int catmem_block_prepare(void)
{
    sleep_n = 0;
    sleep_overflow = false;
    sleep_watch = false;
    for (struct cm_pipe *p = pipes; p; p = p->next) {
        if (!(p->pops.head || p->pushes.head) || p->err)
            continue;
        if (sleep_n == FUTEX_WAITV_MAX - 1) {
            sleep_overflow = true;
            break;
        }
        struct cm_end *me = &p->hdr->end[p->me];
        __atomic_store_n(&me->sleeping, 1, __ATOMIC_SEQ_CST);
        FULL_FENCE();
        uint32_t seen = __atomic_load_n(&me->bell, __ATOMIC_SEQ_CST);
        sleep_set[sleep_n++] = (struct futex_waitv){.val = seen, .uaddr = (uintptr_t)&me->bell, .flags = FUTEX_32};
        sleep_watch = true;
        check_peer(p, true);
        /* The full look at the producer's tail, which an empty get takes only now and then: a corrupt tail is never slept over. */
        if (p->pops.head)
            (void)catmem_ring_readable(&p->rx);
    }
    /* Anything published before we said "sleeping" is seen here; anything after wakes the bell. */
    return catmem_poll();
}

static void catmem_block(const uint32_t *wake, uint32_t seen, uint64_t deadline_ns)
{
    struct futex_waitv *w = &sleep_set[sleep_n];
    *w = (struct futex_waitv){.val = seen, .uaddr = (uintptr_t)wake, .flags = FUTEX_32 | FUTEX_PRIVATE_FLAG};
    uint64_t now = core_now_ns();
    uint64_t cap = sleep_overflow ? CATMEM_OVERFLOW_SLEEP_NS : sleep_watch ? CATMEM_SLEEP_CAP_NS : UINT64_MAX;
    if (cap != UINT64_MAX && (deadline_ns == UINT64_MAX || deadline_ns - now > cap))
        deadline_ns = now + cap;
    struct timespec ts, *tsp = NULL;
    if (deadline_ns != UINT64_MAX) {
        ts.tv_sec = (time_t)(deadline_ns / 1000000000ull);
        ts.tv_nsec = (long)(deadline_ns % 1000000000ull);
        tsp = &ts;
    }
    /* Absolute timeout on CLOCK_MONOTONIC, the clock of core_now_ns. */
    syscall(SYS_futex_waitv, sleep_set, sleep_n + 1, 0, tsp, CLOCK_MONOTONIC);
}

static int catmem_init(const struct core_config *cfg)
{
    uint64_t cap = cfg->catmem_ring_size;
    /* config.c validated it already; a caller that built its own config (tests) gets the same rule. */
    if (cap < CATMEM_RING_CAP_MIN || cap > CATMEM_RING_CAP_MAX || (cap & (cap - 1)) != 0)
        return -EINVAL;
    ring_cap = cap;
    return 0;
}

static void catmem_fini(void)
{
    while (pipes)
        pipe_free(pipes);
}

static const struct libos_ops catmem_ops = {
    .name = "catmem",
    .init = catmem_init,
    .fini = catmem_fini,
    .create_pipe = catmem_create_pipe,
    .open_pipe = catmem_open_pipe,
    .push = catmem_push,
    .pop = catmem_pop,
    .close = catmem_close,
    .poll = catmem_poll,
    .block_prepare = catmem_block_prepare,
    .block = catmem_block,
    .fork_child = catmem_fork_child,
};

LIBOS_REGISTER(catmem)
{
    return &catmem_ops;
}
