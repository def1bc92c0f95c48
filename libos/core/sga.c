/*
 * The core's buffer pool behind demi_sgaalloc/demi_sgafree and the LibOSes'
 * popped data. Power-of-two size classes from 64 B to 1 MiB are carved from
 * slabs and recycled through free lists, so steady-state allocation never calls
 * malloc; larger buffers are allocated one by one. Total memory is capped by
 * sga_pool_max_bytes. It has its own lock so applications may allocate and free
 * from any thread without the core lock.
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
static uint64_t pool_in_use;   /* bytes handed out */
static void **slabs;
static size_t nslabs, slab_cap;

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
    pthread_mutex_lock(&pool_lock);
    uint64_t v = pool_in_use;
    pthread_mutex_unlock(&pool_lock);
    return v;
}

void core_sga_pool_reset(void)
{
    pthread_mutex_lock(&pool_lock);
    for (size_t i = 0; i < nslabs; i++)
        free(slabs[i]);
    free(slabs);
    slabs = NULL;
    nslabs = slab_cap = 0;
    memset(free_list, 0, sizeof(free_list));
    pool_reserved = pool_in_use = 0;
    pthread_mutex_unlock(&pool_lock);
}

static unsigned class_of(size_t size)
{
    unsigned shift = MIN_SHIFT;
    while (((size_t)1 << shift) < size)
        shift++;
    return shift - MIN_SHIFT;
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
    pthread_mutex_lock(&pool_lock);
    if (size <= ((size_t)1 << MAX_SHIFT)) {
        unsigned c = class_of(size);
        if (free_list[c] != NULL || refill(c) == 0) {
            h = free_list[c];
            free_list[c] = h->next;
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
    if (h != NULL) {
        h->state = BUF_USED;
        h->next = NULL;
        pool_in_use += h->size;
    }
    pthread_mutex_unlock(&pool_lock);
    if (h == NULL)
        return sga;
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
    pthread_mutex_lock(&pool_lock);
    if (h->magic != BUF_MAGIC || h->state != BUF_USED) {
        pthread_mutex_unlock(&pool_lock);
        return -EINVAL;
    }
    pool_in_use -= h->size;
    if (h->cls == CLASS_LARGE) {
        pool_reserved -= h->size + sizeof(*h);
        h->magic = 0;
        free(h);
    } else {
        h->state = BUF_FREE;
        h->next = free_list[h->cls];
        free_list[h->cls] = h;
    }
    pthread_mutex_unlock(&pool_lock);
    sga->sga_buf = NULL;
    sga->sga_numsegs = 0;
    return 0;
}
