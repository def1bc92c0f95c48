/*
 * The core's buffer pool behind demi_sgaalloc/demi_sgafree and the LibOSes'
 * popped data. Power-of-two size classes from 64 B to 1 MiB are carved from
 * slabs and recycled through free lists, so steady-state allocation never calls
 * malloc; larger buffers are allocated one by one. Total memory is capped by
 * sga_pool_max_bytes. It has its own lock so applications may allocate and free
 * from any thread without the core lock.
 *
 * Each thread keeps a small cache of free buffers of the small classes (up to
 * TC_MAX of each, classes up to TC_CLASSES), so a message's buffer is taken and
 * given back without the pool lock: on catmem's ping-pong the two lock round
 * trips per message were a tenth of the software cost. A free claims the buffer
 * with a compare-and-swap of its state, so a double free is still refused (also
 * from two threads at once), and the bytes in use are counted atomically. A
 * thread's cache goes back to the pool when the thread exits; a pool reset
 * (demi teardown) bumps a generation that makes every cache forget its buffers.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <demi/sga.h>

#include "internal.h"

#define MIN_SHIFT 6  /* 64 B */
#define MAX_SHIFT 20 /* 1 MiB: largest pooled class */
#define NCLASSES (MAX_SHIFT - MIN_SHIFT + 1)
#define SLAB_BYTES (256u * 1024u)
#define BUF_MAGIC 0x64656d69u /* "demi" */
#define CLASS_LARGE 0xffffu

enum { BUF_FREE = 1, BUF_USED = 2 };

/* Sits in front of every buffer; sga_buf points at it. 64 bytes keep the data cache-aligned. */
struct buf_hdr {
    uint32_t magic;
    uint16_t cls;
    uint16_t state;
    uint64_t size;         /* usable bytes */
    struct buf_hdr *next;  /* free list link */
    uint8_t pad[40];
};
_Static_assert(sizeof(struct buf_hdr) == 64, "buffer header must keep data 64-byte aligned");

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct buf_hdr *free_list[NCLASSES];
static uint64_t pool_max = 1ull << 30;
static uint64_t pool_reserved; /* bytes taken from malloc (slabs + large buffers) */
static uint64_t pool_in_use;   /* bytes handed out (atomic access) */
static void **slabs;
static size_t nslabs, slab_cap;
static uint32_t pool_gen = 1;  /* bumped by a reset: thread caches of older generations are void (atomic access) */

/* The per-thread cache: classes 64 B .. 2 KiB, at most TC_MAX free buffers each. */
#define TC_CLASSES 6u
#define TC_MAX 32u
struct tcache {
    uint32_t gen; /* pool_gen the buffers below belong to; 0: never used */
    uint16_t n[TC_CLASSES];
    struct buf_hdr *top[TC_CLASSES];
};
static __thread struct tcache tc __attribute__((tls_model("initial-exec")));
static pthread_key_t tc_key;
static pthread_once_t tc_once = PTHREAD_ONCE_INIT;
static bool tc_key_ok;

/* fork(2) support: hold the pool lock across fork so the child never inherits it taken. */
void core_sga_pool_lock(void) { pthread_mutex_lock(&pool_lock); }
void core_sga_pool_unlock(void) { pthread_mutex_unlock(&pool_lock); }

void core_sga_pool_init(uint64_t max_bytes)
{
    pthread_mutex_lock(&pool_lock);
    pool_max = max_bytes;
    pthread_mutex_unlock(&pool_lock);
}

uint64_t core_sga_pool_in_use(void)
{
    return __atomic_load_n(&pool_in_use, __ATOMIC_RELAXED);
}

/* Give thread cache t's buffers back to the free lists (if they are of the pool's generation). Lock held. */
static void tc_flush_locked(struct tcache *t)
{
    if (t->gen == __atomic_load_n(&pool_gen, __ATOMIC_RELAXED)) {
        for (unsigned c = 0; c < TC_CLASSES; c++) {
            while (t->top[c] != NULL) {
                struct buf_hdr *h = t->top[c];
                t->top[c] = h->next;
                h->next = free_list[c];
                free_list[c] = h;
            }
        }
    }
    memset(t, 0, sizeof(*t));
}

/* A thread's exit: its cache goes back to the pool. */
static void tc_destroy(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&pool_lock);
    tc_flush_locked(&tc);
    pthread_mutex_unlock(&pool_lock);
}

static void tc_key_init(void) { tc_key_ok = pthread_key_create(&tc_key, tc_destroy) == 0; }

/* This thread's cache, valid for the current pool; NULL if it cannot have one (no key for its exit). */
static struct tcache *tc_get(void)
{
    uint32_t gen = __atomic_load_n(&pool_gen, __ATOMIC_ACQUIRE);
    if (__builtin_expect(tc.gen == gen, 1))
        return &tc;
    pthread_once(&tc_once, tc_key_init);
    /* Registered before use, so the exit hands it back; a void cache's buffers are forgotten, not freed. */
    if (!tc_key_ok || pthread_setspecific(tc_key, &tc) != 0)
        return NULL;
    memset(&tc, 0, sizeof(tc));
    tc.gen = gen;
    return &tc;
}

void core_sga_pool_reset(void)
{
    pthread_mutex_lock(&pool_lock);
    __atomic_add_fetch(&pool_gen, 1, __ATOMIC_RELEASE);
    memset(&tc, 0, sizeof(tc));
    for (size_t i = 0; i < nslabs; i++)
        free(slabs[i]);
    free(slabs);
    slabs = NULL;
    nslabs = slab_cap = 0;
    memset(free_list, 0, sizeof(free_list));
    pool_reserved = 0;
    __atomic_store_n(&pool_in_use, 0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&pool_lock);
}

static unsigned class_of(size_t size)
{
    if (size <= ((size_t)1 << MIN_SHIFT))
        return 0;
    return (unsigned)(64 - __builtin_clzll((unsigned long long)(size - 1))) - MIN_SHIFT;
}

/* Carve a new slab into buffers of class c. Pool lock held. */
static int refill(unsigned c)
{
    size_t bsize = sizeof(struct buf_hdr) + ((size_t)1 << (c + MIN_SHIFT));
    size_t count = SLAB_BYTES / bsize;
    if (count == 0)
        count = 1;
    size_t bytes = count * bsize;
    if (pool_reserved + bytes > pool_max) {
        /* Near the cap, take just one buffer's worth. */
        count = 1;
        bytes = bsize;
        if (pool_reserved + bytes > pool_max)
            return -ENOMEM;
    }
    if (nslabs == slab_cap) {
        size_t ncap = slab_cap ? slab_cap * 2 : 64;
        void **ns = realloc(slabs, ncap * sizeof(*ns));
        if (ns == NULL)
            return -ENOMEM;
        slabs = ns;
        slab_cap = ncap;
    }
    uint8_t *mem = aligned_alloc(64, bytes);
    if (mem == NULL)
        return -ENOMEM;
    slabs[nslabs++] = mem;
    pool_reserved += bytes;
    for (size_t i = 0; i < count; i++) {
        struct buf_hdr *h = (struct buf_hdr *)(mem + i * bsize);
        h->magic = BUF_MAGIC;
        h->cls = (uint16_t)c;
        h->state = BUF_FREE;
        h->size = (uint64_t)1 << (c + MIN_SHIFT);
        h->next = free_list[c];
        free_list[c] = h;
    }
    return 0;
}

demi_sgarray_t core_sga_alloc(size_t size)
{
    demi_sgarray_t sga;
    memset(&sga, 0, sizeof(sga));
    if (size == 0 || size > UINT32_MAX)
        return sga;
    struct buf_hdr *h = NULL;
    unsigned c = size <= ((size_t)1 << MAX_SHIFT) ? class_of(size) : NCLASSES;
    struct tcache *t = c < TC_CLASSES ? tc_get() : NULL;
    if (t != NULL && t->top[c] != NULL) {
        h = t->top[c];
        t->top[c] = h->next;
        t->n[c]--;
        goto got;
    }
    pthread_mutex_lock(&pool_lock);
    if (c < NCLASSES) {
        if (free_list[c] != NULL || refill(c) == 0) {
            h = free_list[c];
            free_list[c] = h->next;
            /* Take a few more into our cache while we hold the lock. */
            while (t != NULL && t->n[c] < TC_MAX / 2 && free_list[c] != NULL) {
                struct buf_hdr *x = free_list[c];
                free_list[c] = x->next;
                x->next = t->top[c];
                t->top[c] = x;
                t->n[c]++;
            }
        }
    } else if (pool_reserved + size + sizeof(*h) <= pool_max) {
        h = aligned_alloc(64, (sizeof(*h) + size + 63) & ~(size_t)63);
        if (h != NULL) {
            h->magic = BUF_MAGIC;
            h->cls = CLASS_LARGE;
            h->size = size;
            pool_reserved += size + sizeof(*h);
        }
    }
    pthread_mutex_unlock(&pool_lock);
    if (h == NULL)
        return sga;
got:
    h->next = NULL;
    __atomic_store_n(&h->state, BUF_USED, __ATOMIC_RELEASE);
    __atomic_add_fetch(&pool_in_use, h->size, __ATOMIC_RELAXED);
    sga.sga_buf = h;
    sga.sga_numsegs = 1;
    sga.sga_segs[0].sgaseg_buf = h + 1;
    sga.sga_segs[0].sgaseg_len = (uint32_t)size;
    return sga;
}

int core_sga_free(demi_sgarray_t *sga)
{
    if (sga == NULL || sga->sga_buf == NULL || ((uintptr_t)sga->sga_buf & 63) != 0)
        return -EINVAL;
    struct buf_hdr *h = sga->sga_buf;
    uint16_t used = BUF_USED;
    /* The state's compare-and-swap makes exactly one of two frees of one buffer win, even from two threads. */
    if (__atomic_load_n(&h->magic, __ATOMIC_RELAXED) != BUF_MAGIC ||
        !__atomic_compare_exchange_n(&h->state, &used, BUF_FREE, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        return -EINVAL;
    __atomic_sub_fetch(&pool_in_use, h->size, __ATOMIC_RELAXED);
    struct tcache *t = h->cls < TC_CLASSES ? tc_get() : NULL;
    if (t != NULL && t->n[h->cls] < TC_MAX) {
        h->next = t->top[h->cls];
        t->top[h->cls] = h;
        t->n[h->cls]++;
        sga->sga_buf = NULL;
        sga->sga_numsegs = 0;
        return 0;
    }
    pthread_mutex_lock(&pool_lock);
    if (h->cls == CLASS_LARGE) {
        pool_reserved -= h->size + sizeof(*h);
        h->magic = 0;
        free(h);
    } else {
        h->next = free_list[h->cls];
        free_list[h->cls] = h;
    }
    pthread_mutex_unlock(&pool_lock);
    sga->sga_buf = NULL;
    sga->sga_numsegs = 0;
    return 0;
}
