/*
 * The qtoken table, operation completion and the wait loop.
 *
 * A token is (generation << 32 | slot). Slots live in fixed chunks, so an op's
 * address never moves while a LibOS holds it; a slot's generation grows every
 * time it is reused, so a consumed or stale token never names a newer operation.
 *
 * Waiting: every waiter polls the LibOS while it spins (wait_spin_us), then one
 * thread at a time -- the leader -- sleeps in the kernel on the LibOS's wait fd
 * plus our eventfd; the others sleep on a condition variable. Whoever completes
 * operations wakes the sleepers in core_unlock(), so no wake-up is lost.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <linux/futex.h>
#include <time.h>
#include <unistd.h>

#include <demi/wait.h>

#include "internal.h"

/* The wait loop reads the clock every this many rounds (a power of two). */
#define WAIT_CLOCK_EVERY 8u
/* ... and lets go of the core lock every this many rounds (a power of two), or at once when a thread wants it. */
#define WAIT_RELEASE_EVERY 8u
/* ... and, letting go for a thread blocked on the lock, waits this many pauses (~3 us here) for it to take it. */
#define WAIT_HANDOFF_PAUSES 128u
/* A wait spins this long before it starts yielding the CPU every few rounds. */
#define WAIT_YIELD_AFTER_NS 1000ull

#define CHUNK_SHIFT 8
#define CHUNK_SIZE (1u << CHUNK_SHIFT)
#define MAX_OPS (1u << 24)

struct op_slot {
    struct core_op op;
    uint32_t gen;
    uint32_t next_free;
};

static struct op_slot **chunks;
static uint32_t nchunks, chunk_cap;
static uint32_t free_head = UINT32_MAX;
static size_t live;
static struct core_op *done_head, *done_tail; /* completed, not consumed */

static inline struct op_slot *slot_at(uint32_t idx)
{
    return &chunks[idx >> CHUNK_SHIFT][idx & (CHUNK_SIZE - 1)];
}

static inline uint32_t slot_index(const struct core_op *op)
{
    return (uint32_t)(op->qt & 0xffffffffu);
}

static int add_chunk(void)
{
    if ((nchunks + 1) * CHUNK_SIZE > MAX_OPS)
        return -ENOMEM;
    if (nchunks == chunk_cap) {
        uint32_t ncap = chunk_cap ? chunk_cap * 2 : 16;
        struct op_slot **nc = realloc(chunks, ncap * sizeof(*nc));
        if (nc == NULL)
            return -ENOMEM;
        chunks = nc;
        chunk_cap = ncap;
    }
    struct op_slot *c = calloc(CHUNK_SIZE, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    chunks[nchunks] = c;
    uint32_t base = nchunks * CHUNK_SIZE;
    for (uint32_t i = CHUNK_SIZE; i-- > 0;) {
        c[i].gen = 0;
        c[i].next_free = free_head;
        free_head = base + i;
    }
    nchunks++;
    return 0;
}

struct core_op *core_op_alloc(struct core_queue *q, demi_opcode_t opc)
{
    if (free_head == UINT32_MAX && add_chunk() < 0)
        return NULL;
    uint32_t idx = free_head;
    struct op_slot *s = slot_at(idx);
    free_head = s->next_free;
    s->gen++;
    if (s->gen == 0) /* generation 0 is never issued */
        s->gen = 1;
    struct core_op *op = &s->op;
    /*
     * Field by field, not a memset of the whole op: its result is written in full by
     * every completion (op_done and the complete_* calls), and clearing ~250 bytes
     * per operation was a tenth of a catmem message's software cost.
     */
    op->qt = ((uint64_t)s->gen << 32) | idx;
    op->q = q;
    op->opcode = opc;
    memset(&op->sga, 0, sizeof(op->sga));
    memset(&op->addr, 0, sizeof(op->addr));
    op->has_addr = false;
    op->progress = 0;
    op->deadline_ns = 0;
    op->next = op->prev = NULL;
    op->state = CORE_OP_PENDING;
    op->cnext = op->cprev = NULL;
    q->npending++;
    live++;
    return op;
}

static void op_free(struct core_op *op)
{
    uint32_t idx = slot_index(op);
    struct op_slot *s = slot_at(idx);
    op->state = CORE_OP_FREE;
    s->next_free = free_head;
    free_head = idx;
    live--;
}

void core_op_release(struct core_op *op)
{
    if (op->q)
        op->q->npending--;
    op_free(op);
}

struct core_op *core_op_lookup(demi_qtoken_t qt)
{
    uint32_t idx = (uint32_t)(qt & 0xffffffffu);
    uint32_t gen = (uint32_t)(qt >> 32);
    if (gen == 0 || idx >= nchunks * CHUNK_SIZE)
        return NULL;
    struct op_slot *s = slot_at(idx);
    if (s->gen != gen || s->op.state == CORE_OP_FREE)
        return NULL;
    return &s->op;
}

size_t core_ops_live(void) { return live; }

void core_ops_reset(void)
{
    for (uint32_t i = 0; i < nchunks; i++)
        free(chunks[i]);
    free(chunks);
    chunks = NULL;
    nchunks = chunk_cap = 0;
    free_head = UINT32_MAX;
    live = 0;
    done_head = done_tail = NULL;
}

/* ---- completion ---------------------------------------------------------- */

static void op_done(struct core_op *op, demi_opcode_t opc, int64_t ret)
{
    op->result.qr_opcode = opc;
    op->result.qr_qd = op->q ? op->q->qd : -1;
    op->result.qr_qt = op->qt;
    op->result.qr_ret = ret;
    if (op->q) {
        op->q->npending--;
        op->q = NULL;
    }
    op->state = CORE_OP_DONE;
    op->cnext = NULL;
    op->cprev = done_tail;
    if (done_tail)
        done_tail->cnext = op;
    else
        done_head = op;
    done_tail = op;
    core.completions++;
    LOG_TRACE("token %#llx done: opcode %d, ret %lld", (unsigned long long)op->qt, (int)opc, (long long)ret);
}

void core_op_complete_push(struct core_op *op)
{
    op->result.qr_value.sga = op->sga;
    op_done(op, DEMI_OPC_PUSH, 0);
}

void core_op_complete_pop(struct core_op *op, const demi_sgarray_t *sga)
{
    op->result.qr_value.sga = *sga;
    op_done(op, DEMI_OPC_POP, 0);
}

void core_op_complete_accept(struct core_op *op, int new_qd, const struct sockaddr_in *peer)
{
    memset(&op->result.qr_value, 0, sizeof(op->result.qr_value));
    op->result.qr_value.ares.qd = new_qd;
    if (peer)
        op->result.qr_value.ares.addr = *peer;
    op_done(op, DEMI_OPC_ACCEPT, 0);
}

void core_op_complete_connect(struct core_op *op)
{
    memset(&op->result.qr_value, 0, sizeof(op->result.qr_value));
    if (op->q && op->q->kind == CORE_Q_TCP)
        op->q->state = CORE_QS_CONNECTED;
    else if (op->q && op->q->kind == CORE_Q_UDP)
        op->q->udp_connected = op->addr.sin_family != AF_UNSPEC;
    op_done(op, DEMI_OPC_CONNECT, 0);
}

void core_op_fail(struct core_op *op, int err)
{
    /* A failed connect leaves the socket bound (the kernel bound it), not connected. */
    if (op->opcode == DEMI_OPC_CONNECT && op->q && op->q->state == CORE_QS_CONNECTING)
        op->q->state = CORE_QS_BOUND;
    memset(&op->result.qr_value, 0, sizeof(op->result.qr_value));
    op_done(op, DEMI_OPC_FAILED, err);
}

/* Hand a completed op's result to the caller and free its token. */
static void consume(struct core_op *op, demi_qresult_t *qr_out)
{
    *qr_out = op->result;
    if (op->cprev)
        op->cprev->cnext = op->cnext;
    else
        done_head = op->cnext;
    if (op->cnext)
        op->cnext->cprev = op->cprev;
    else
        done_tail = op->cprev;
    op_free(op);
}

/* ---- sleeping and waking -------------------------------------------------- */

int core_wait_init(void)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&core.cond, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0)
        return -rc;
    core.wake_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (core.wake_efd < 0) {
        int err = errno;
        pthread_cond_destroy(&core.cond);
        return -err;
    }
    return 0;
}

void core_unlock(void)
{
    if (core.completions != core.notified) {
        core.notified = core.completions;
        if (core.followers)
            pthread_cond_broadcast(&core.cond);
        if (core.leader && core.ops->block) {
            __atomic_add_fetch(&core.wake_word, 1, __ATOMIC_SEQ_CST);
            syscall(SYS_futex, &core.wake_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
        } else if (core.leader) {
            uint64_t one = 1;
            ssize_t n = write(core.wake_efd, &one, sizeof(one));
            (void)n; /* a full counter already means "wake up" */
        }
    }
    pthread_mutex_unlock(&core.lock);
}

uint64_t core_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* A timeout the wait calls accept: NULL (forever) or a normalized, non-negative timespec. */
static bool timeout_ok(const struct timespec *timeout)
{
    return timeout == NULL ||
           (timeout->tv_sec >= 0 && timeout->tv_nsec >= 0 && timeout->tv_nsec < 1000000000L);
}

/* The absolute deadline of a valid timeout counted from now (UINT64_MAX = forever). */
static uint64_t deadline_of(const struct timespec *timeout, uint64_t now)
{
    if (timeout == NULL)
        return UINT64_MAX;
    uint64_t ns = (uint64_t)timeout->tv_nsec;
    if ((uint64_t)timeout->tv_sec > (UINT64_MAX - now - ns) / 1000000000ull)
        return UINT64_MAX;
    return now + (uint64_t)timeout->tv_sec * 1000000000ull + ns;
}

/* Sleep in the kernel until the LibOS fd or our eventfd fires, or the deadline. Lock not held. */
static void kernel_sleep(int libos_fd, uint64_t deadline)
{
    struct pollfd pfd[2] = {
        {.fd = core.wake_efd, .events = POLLIN},
        {.fd = libos_fd, .events = POLLIN},
    };
    struct timespec ts, *tsp = NULL;
    if (deadline != UINT64_MAX) {
        uint64_t now = core_now_ns();
        uint64_t rem = deadline > now ? deadline - now : 0;
        ts.tv_sec = (time_t)(rem / 1000000000ull);
        ts.tv_nsec = (long)(rem % 1000000000ull);
        tsp = &ts;
    }
    if (ppoll(pfd, libos_fd >= 0 ? 2 : 1, tsp, NULL) > 0 && (pfd[0].revents & POLLIN)) {
        uint64_t v;
        ssize_t n = read(core.wake_efd, &v, sizeof(v));
        (void)n;
    }
}

/*
 * The wait loop, entered and left with the lock held. ready() is checked under
 * the lock; returns 0 when it holds, -ETIMEDOUT at the deadline, or the
 * negative errno ready() reports (e.g. a token consumed by another thread).
 */
typedef int (*ready_fn)(void *ctx);

static int wait_loop(ready_fn ready, void *ctx, const struct timespec *timeout)
{
    /* The fast path: done already, or done by one poll. No clock, no wait fd. */
    int r = ready(ctx);
    if (r != 0)
        return r > 0 ? 0 : r;
    core.ops->poll();
    r = ready(ctx);
    if (r != 0)
        return r > 0 ? 0 : r;
    /* The timeout counts from here: one poll later than the call, which no caller can tell. */
    uint64_t start = core_now_ns();
    uint64_t deadline = deadline_of(timeout, start);
    uint64_t spin_end = start + (uint64_t)core.cfg.wait_spin_us * 1000ull;
    uint64_t yield_from = start + WAIT_YIELD_AFTER_NS;
    uint64_t now = start;
    unsigned spins = 0;
    bool blocks = core.ops->block != NULL && core.ops->block_prepare != NULL;
    int libos_fd = blocks ? 0 : core.ops->wait_fd ? core.ops->wait_fd() : -ENOTSUP;
    for (;;) {
        if (now >= deadline) /* checked after the polls above: a zero timeout still polls once */
            return -ETIMEDOUT;
        r = ready(ctx);
        if (r != 0)
            return r > 0 ? 0 : r;
        core.ops->poll();
        r = ready(ctx);
        if (r != 0)
            return r > 0 ? 0 : r;
        /*
         * The clock costs as much as a fast LibOS's whole poll (about 30 ns here), so
         * it is read every few rounds only; deadlines and the spin's end are then
         * late by a few rounds at most.
         */
        if ((++spins & (WAIT_CLOCK_EVERY - 1)) == 0)
            now = core_now_ns();
        if (now < spin_end || libos_fd < 0) {
            /*
             * Spin: let other threads take the lock between our polls, and give the
             * CPU away if something else is runnable on it -- the peer we wait for may
             * share our core, and spinning would only delay it. A yield is a system
             * call (about 0.5 us in a VM), longer than a whole catmem round trip, so
             * the first WAIT_YIELD_AFTER_NS of a wait spin without it: an answer from
             * a peer on another CPU usually comes sooner.
             */
            bool yield = now >= yield_from && (spins & 3) == 0;
            /*
             * The lock is let go only every few rounds, when another thread waits for it,
             * when sleepers must hear of completions, or to yield: an unlock and lock per
             * round made a round half again as long, and an answer is seen half a round
             * after it lands, on average.
             */
            bool wanted = __atomic_load_n(&core.lock_waiters, __ATOMIC_RELAXED) != 0;
            bool release = yield || wanted || (spins & (WAIT_RELEASE_EVERY - 1)) == 0 ||
                           core.completions != core.notified;
            if (release) {
                core_unlock();
                /* A pause costs 27 ns here, most of a round: only where we let go of the lock. */
                cpu_relax();
                if (yield) {
                    sched_yield();
                } else if (wanted) {
                    /*
                     * A blocked thread needs a futex wake-up (microseconds) to get the lock: let
                     * it have it (it leaves lock_waiters once it has) rather than take it back
                     * at once, for up to WAIT_HANDOFF_PAUSES pauses.
                     */
                    for (unsigned i = 0; i < WAIT_HANDOFF_PAUSES && __atomic_load_n(&core.lock_waiters, __ATOMIC_RELAXED) != 0; i++)
                        cpu_relax();
                }
                core_lock();
            }
            continue;
        }
        if (!core.leader && blocks) {
            /* The LibOS sleeps on its own futexes; our wake-ups reach it through wake_word. */
            uint32_t seen = __atomic_load_n(&core.wake_word, __ATOMIC_SEQ_CST);
            if (core.ops->block_prepare() > 0)
                continue;
            core.leader = true;
            core_unlock();
            core.ops->block(&core.wake_word, seen, deadline);
            pthread_mutex_lock(&core.lock);
            core.leader = false;
            now = core_now_ns();
            core.ops->poll();
            if (core.followers)
                pthread_cond_broadcast(&core.cond);
        } else if (!core.leader) {
            core.leader = true;
            core_unlock();
            kernel_sleep(libos_fd, deadline);
            pthread_mutex_lock(&core.lock);
            core.leader = false;
            now = core_now_ns();
            core.ops->poll();
            /* Followers may need to take over as leader, or find their op done. */
            if (core.followers)
                pthread_cond_broadcast(&core.cond);
        } else {
            core.followers++;
            if (deadline == UINT64_MAX) {
                pthread_cond_wait(&core.cond, &core.lock);
            } else {
                struct timespec ts = {.tv_sec = (time_t)(deadline / 1000000000ull),
                                      .tv_nsec = (long)(deadline % 1000000000ull)};
                pthread_cond_timedwait(&core.cond, &core.lock, &ts);
            }
            core.followers--;
            now = core_now_ns();
        }
    }
}

/* ---- the wait calls -------------------------------------------------------- */

struct one_ctx {
    demi_qtoken_t qt;
    struct core_op *op;
};

static int one_ready(void *p)
{
    struct one_ctx *c = p;
    c->op = core_op_lookup(c->qt);
    if (c->op == NULL)
        return -EINVAL; /* consumed by another thread meanwhile */
    return c->op->state == CORE_OP_DONE;
}

int demi_wait(demi_qresult_t *qr_out, demi_qtoken_t qt, const struct timespec *timeout)
{
    if (qr_out == NULL)
        return EINVAL;
    if (!timeout_ok(timeout))
        return EINVAL;
    core_lock();
    if (!core.initialized || core_op_lookup(qt) == NULL) {
        core_unlock();
        return EINVAL;
    }
    struct one_ctx c = {.qt = qt};
    int rc = wait_loop(one_ready, &c, timeout);
    if (rc == 0)
        consume(c.op, qr_out);
    core_unlock();
    return -rc;
}

struct any_ctx {
    const demi_qtoken_t *qts;
    int n;
    int idx;
};

static int any_ready(void *p)
{
    struct any_ctx *c = p;
    for (int i = 0; i < c->n; i++) {
        struct core_op *op = core_op_lookup(c->qts[i]);
        if (op == NULL)
            return -EINVAL;
        if (op->state == CORE_OP_DONE) {
            c->idx = i;
            return 1;
        }
    }
    return 0;
}

int demi_wait_any(demi_qresult_t *qr_out, int *ready_offset, const demi_qtoken_t qts[], int num_qts,
                  const struct timespec *timeout)
{
    if (qr_out == NULL || ready_offset == NULL || qts == NULL || num_qts <= 0)
        return EINVAL;
    if (!timeout_ok(timeout))
        return EINVAL;
    core_lock();
    if (!core.initialized) {
        core_unlock();
        return EINVAL;
    }
    struct any_ctx c = {.qts = qts, .n = num_qts, .idx = -1};
    for (int i = 0; i < num_qts; i++) {
        if (core_op_lookup(qts[i]) == NULL) {
            core_unlock();
            return EINVAL;
        }
    }
    int rc = wait_loop(any_ready, &c, timeout);
    if (rc == 0) {
        consume(core_op_lookup(qts[c.idx]), qr_out);
        *ready_offset = c.idx;
    }
    core_unlock();
    return -rc;
}

static int next_ready(void *p)
{
    (void)p;
    return done_head != NULL;
}

int demi_wait_next_n(demi_qresult_t *qr_out, int num_qrs, int *num_qrs_out, const struct timespec *timeout)
{
    if (qr_out == NULL || num_qrs_out == NULL || num_qrs <= 0)
        return EINVAL;
    if (!timeout_ok(timeout))
        return EINVAL;
    core_lock();
    if (!core.initialized) {
        core_unlock();
        return EINVAL;
    }
    int rc = wait_loop(next_ready, NULL, timeout);
    if (rc == 0) {
        int n = 0;
        while (n < num_qrs && done_head != NULL)
            consume(done_head, &qr_out[n++]);
        *num_qrs_out = n;
    }
    core_unlock();
    return -rc;
}
