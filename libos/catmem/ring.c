/* catmem's single-producer single-consumer message ring: framing, wrap-around and the bounds checks that keep a corrupt peer from moving us outside the region. */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>

#include "ring.h"

#define HDR 16u
/* Records start on cache lines: a record never shares a line with the one before, which the consumer may still be reading (measured: 250 -> 211 ns ring round trip for 64 B). */
#define ALIGN 64u
#define PADR(x) (((uint64_t)(x) + (ALIGN - 1)) & ~(uint64_t)(ALIGN - 1))
/* A message that does not fit the ring goes in pieces no smaller than this (or its rest). */
#define MIN_PIECE 4096u
/* An empty get checks the producer's tail once in this many calls (a power of two); see tail_lies. */
#define TAIL_CHECK_EVERY 64u

/*
 * seq is (the record's stream position + 1) ^ the ring's key, stored last
 * (release): a consumer spinning on the header at its position sees the record
 * appear without first reading tail, one cache miss instead of two. A stale
 * header of an earlier lap, or the zeroes of a fresh ring, never carry the
 * current position; the random key makes stale payload bytes that happen to hold
 * a number like a position as unlikely to match as a random 64-bit guess.
 */
struct rec_hdr {
    uint32_t len;
    uint32_t total;
    uint64_t seq;
};
_Static_assert(sizeof(struct rec_hdr) == HDR, "record header size");

static inline uint64_t load_acq(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void store_rel(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

void catmem_ring_format(void *mem, uint64_t cap)
{
    memset(mem, 0, catmem_ring_bytes(cap));
    /* The key only has to be unlikely to appear in stale payload bytes; it is no secret from the peer. */
    uint64_t key;
    if (getrandom(&key, sizeof(key), GRND_NONBLOCK) != (ssize_t)sizeof(key)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        key = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 16) ^ (uintptr_t)mem;
    }
    ((struct catmem_ring_ctl *)mem)->key = key;
}

int catmem_ring_attach(struct cm_ring *r, void *mem, uint64_t cap, bool producer)
{
    if (cap < CM_RING_MIN_CAP || cap > CM_RING_MAX_CAP || (cap & (cap - 1)) != 0)
        return -EINVAL;
    memset(r, 0, sizeof(*r));
    r->ctl = mem;
    r->data = (uint8_t *)mem + CM_RING_CTL_BYTES;
    r->cap = cap;
    r->key = __atomic_load_n(&r->ctl->key, __ATOMIC_RELAXED);
    /* Start where the ring is now (0 for a fresh one); the peer's side must agree or it is corrupt. */
    uint64_t head = load_acq(&r->ctl->head), tail = load_acq(&r->ctl->tail);
    if (tail - head > cap || (head & (ALIGN - 1)) || (tail & (ALIGN - 1)))
        return -EIO;
    r->pos = producer ? tail : head;
    r->peer = producer ? head : tail;
    return 0;
}

/* Copy n bytes into the data area at stream position pos, wrapping at the end. */
static void copy_in(struct cm_ring *r, uint64_t pos, const uint8_t *src, uint64_t n)
{
    uint64_t off = pos & (r->cap - 1);
    uint64_t first = r->cap - off < n ? r->cap - off : n;
    memcpy(r->data + off, src, first);
    if (n > first)
        memcpy(r->data, src + first, n - first);
}

static void copy_out(struct cm_ring *r, uint64_t pos, uint8_t *dst, uint64_t n)
{
    uint64_t off = pos & (r->cap - 1);
    uint64_t first = r->cap - off < n ? r->cap - off : n;
    memcpy(dst, r->data + off, first);
    if (n > first)
        memcpy(dst + first, r->data, n - first);
}

/* Producer: refresh the consumer's position; it may only move forward and never past what we wrote. */
static int refresh_head(struct cm_ring *r)
{
    uint64_t head = load_acq(&r->ctl->head);
    if (head - r->peer > r->pos - r->peer || (head & (ALIGN - 1))) {
        r->broken = true;
        return -EIO;
    }
    r->peer = head;
    return 0;
}

uint64_t catmem_ring_room(struct cm_ring *r)
{
    if (r->broken || refresh_head(r) < 0)
        return 0;
    return r->cap - (r->pos - r->peer);
}

int catmem_ring_put(struct cm_ring *r, const void *buf, uint32_t len, uint32_t *done)
{
    if (r->broken)
        return -EIO;
    if (len == 0 || len > CM_MSG_MAX || *done >= len)
        return -EMSGSIZE;
    bool refreshed = false;
    for (;;) {
        uint64_t room = r->cap - (r->pos - r->peer);
        uint32_t rest = len - *done;
        uint64_t piece;
        if (PADR(HDR + rest) <= room)
            piece = rest;
        else if (*done == 0 && PADR(HDR + rest) <= r->cap)
            piece = 0; /* fits the ring whole: wait for room rather than split it */
        else if (room >= HDR + MIN_PIECE || (room >= ALIGN && r->cap < 2 * (HDR + MIN_PIECE)))
            piece = (room & ~(uint64_t)(ALIGN - 1)) - HDR; /* room is a multiple of ALIGN anyway */
        else
            piece = 0;
        if (piece == 0) {
            if (refreshed)
                return 0;
            int rc = refresh_head(r); /* the consumer may have made room since we last looked */
            if (rc < 0)
                return rc;
            refreshed = true;
            continue;
        }
        struct rec_hdr *h = (struct rec_hdr *)(r->data + (r->pos & (r->cap - 1)));
        copy_in(r, r->pos + HDR, (const uint8_t *)buf + *done, piece);
        h->len = (uint32_t)piece;
        h->total = *done == 0 ? len : 0;
        store_rel(&h->seq, (r->pos + 1) ^ r->key);
        r->pos += PADR(HDR + piece);
        *done += (uint32_t)piece;
        store_rel(&r->ctl->tail, r->pos);
        if (*done == len) {
            /*
             * Own the line after the next record's header line before the next message:
             * the consumer read it a lap ago, and a store to a line another core holds
             * waits for the invalidation, holding back (x86 stores commit in order) the
             * header store behind it. The header line itself the consumer watches; taking
             * it now would only make it bounce.
             */
            __builtin_prefetch(r->data + ((r->pos + ALIGN) & (r->cap - 1)), 1);
            return 1;
        }
    }
}

/*
 * Consumer: refresh the producer's position. It may only move forward, and never
 * more than cap past our position. It may lag the records we already took by
 * their headers (the producer stores tail after the header), so it is checked
 * against what it said before, not against our position.
 */
static int refresh_tail(struct cm_ring *r)
{
    uint64_t tail = load_acq(&r->ctl->tail);
    if (tail - r->peer > r->pos + r->cap - r->peer || (tail & (ALIGN - 1))) {
        r->broken = true;
        return -EIO;
    }
    r->peer = tail;
    return 0;
}

/* Consumer: the header at our position if the producer has published it there. */
static bool header_at(struct cm_ring *r, struct rec_hdr *h)
{
    struct rec_hdr *sh = (struct rec_hdr *)(r->data + (r->pos & (r->cap - 1)));
    if (load_acq(&sh->seq) != ((r->pos + 1) ^ r->key))
        return false;
    /* The record's next line is on its way while we look at the header and find a buffer. */
    __builtin_prefetch(r->data + ((r->pos + ALIGN) & (r->cap - 1)));
    h->len = __atomic_load_n(&sh->len, __ATOMIC_RELAXED);
    h->total = __atomic_load_n(&sh->total, __ATOMIC_RELAXED);
    return true;
}

/*
 * Consumer, with no header at our position: is the producer's tail impossible, or
 * past us (it is stored after the header, so a tail past us with no header is a
 * lie)? Reads tail, then the header once more (the producer may have published
 * both in between). Reading tail pulls the producer's tail line over to us, and
 * the producer's next store to it must then wait for the line to come back: while
 * we spin this is done once in TAIL_CHECK_EVERY empty gets, and always before the
 * waiter sleeps (catmem_ring_readable), so a corrupt tail is found within a few
 * microseconds of spinning and never slept over.
 */
static bool tail_lies(struct cm_ring *r)
{
    if (refresh_tail(r) < 0)
        return true;
    struct rec_hdr h;
    return r->peer - r->pos - 1 < r->cap && !header_at(r, &h);
}

bool catmem_ring_readable(struct cm_ring *r)
{
    if (r->broken)
        return true;
    struct rec_hdr h;
    if (header_at(r, &h))
        return true;
    if (tail_lies(r)) {
        r->broken = true; /* the next get says -EIO */
        return true;
    }
    return false;
}

int catmem_ring_get(struct cm_ring *r, cm_alloc_fn alloc, void *ctx, uint32_t *len_out)
{
    if (r->broken)
        return -EIO;
    /* Everything the producer may have written lies within one lap of what we last freed. */
    uint64_t limit = r->pos + r->cap;
    bool consumed = false;
    int ret = 0;
    for (;;) {
        struct rec_hdr h;
        if (!header_at(r, &h)) {
            if (!consumed && (r->empty_gets++ & (TAIL_CHECK_EVERY - 1)) == 0 && tail_lies(r))
                goto corrupt;
            break;
        }
        if (h.len == 0 || PADR(HDR + h.len) > limit - r->pos)
            goto corrupt;
        if (r->rx_buf == NULL) {
            if (h.total == 0 || h.total > CM_MSG_MAX || h.len > h.total)
                goto corrupt;
            r->rx_buf = alloc(ctx, h.total);
            if (r->rx_buf == NULL) {
                ret = -ENOMEM;
                break;
            }
            r->rx_total = h.total;
            r->rx_off = 0;
        } else if (h.total != 0 || h.len > r->rx_total - r->rx_off) {
            goto corrupt;
        }
        copy_out(r, r->pos + HDR, r->rx_buf + r->rx_off, h.len);
        r->rx_off += h.len;
        r->pos += PADR(HDR + h.len);
        consumed = true;
        if (r->rx_off == r->rx_total) {
            *len_out = r->rx_total;
            r->rx_buf = NULL;
            r->rx_total = r->rx_off = 0;
            ret = 1;
            break;
        }
    }
    if (consumed)
        store_rel(&r->ctl->head, r->pos);
    return ret;
corrupt:
    if (consumed)
        store_rel(&r->ctl->head, r->pos);
    r->broken = true;
    return -EIO;
}
