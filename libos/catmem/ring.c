/* catmem's single-producer single-consumer message ring: framing, wrap-around and the bounds checks that keep a corrupt peer from moving us outside the region. */
#include <errno.h>
#include <string.h>

#include "ring.h"

#define HDR 8u
#define PAD8(x) (((uint64_t)(x) + 7u) & ~(uint64_t)7u)
/* A message that does not fit the ring goes in pieces no smaller than this (or its rest). */
#define MIN_PIECE 4096u

struct rec_hdr {
    uint32_t len;
    uint32_t total;
};

static inline uint64_t load_acq(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void store_rel(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

void catmem_ring_format(void *mem, uint64_t cap)
{
    memset(mem, 0, catmem_ring_bytes(cap));
}

int catmem_ring_attach(struct cm_ring *r, void *mem, uint64_t cap, bool producer)
{
    if (cap < CM_RING_MIN_CAP || cap > CM_RING_MAX_CAP || (cap & (cap - 1)) != 0)
        return -EINVAL;
    memset(r, 0, sizeof(*r));
    r->ctl = mem;
    r->data = (uint8_t *)mem + CM_RING_CTL_BYTES;
    r->cap = cap;
    /* Start where the ring is now (0 for a fresh one); the peer's side must agree or it is corrupt. */
    uint64_t head = load_acq(&r->ctl->head), tail = load_acq(&r->ctl->tail);
    if (tail - head > cap || (head & 7) || (tail & 7))
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
    if (head - r->peer > r->pos - r->peer || (head & 7)) {
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
        if (HDR + PAD8(rest) <= room)
            piece = rest;
        else if (*done == 0 && HDR + PAD8(rest) <= r->cap)
            piece = 0; /* fits the ring whole: wait for room rather than split it */
        else if (room >= HDR + MIN_PIECE || (room >= HDR + 8 && r->cap < 2 * (HDR + MIN_PIECE)))
            piece = (room - HDR) & ~(uint64_t)7u;
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
        struct rec_hdr h = {.len = (uint32_t)piece, .total = *done == 0 ? len : 0};
        memcpy(r->data + (r->pos & (r->cap - 1)), &h, HDR);
        copy_in(r, r->pos + HDR, (const uint8_t *)buf + *done, piece);
        r->pos += HDR + PAD8(piece);
        *done += (uint32_t)piece;
        store_rel(&r->ctl->tail, r->pos);
        if (*done == len)
            return 1;
    }
}

/* Consumer: refresh the producer's position; it may only move forward and never more than cap ahead of us. */
static int refresh_tail(struct cm_ring *r)
{
    uint64_t tail = load_acq(&r->ctl->tail);
    if (tail - r->pos > r->cap || tail - r->peer > r->cap + (r->peer - r->pos) || (tail & 7)) {
        r->broken = true;
        return -EIO;
    }
    r->peer = tail;
    return 0;
}

bool catmem_ring_readable(struct cm_ring *r)
{
    if (r->broken)
        return true;
    uint64_t tail = __atomic_load_n(&r->ctl->tail, __ATOMIC_RELAXED);
    return tail != r->pos;
}

int catmem_ring_get(struct cm_ring *r, cm_alloc_fn alloc, void *ctx, uint32_t *len_out)
{
    if (r->broken)
        return -EIO;
    int rc = refresh_tail(r);
    if (rc < 0)
        return rc;
    bool consumed = false;
    int ret = 0;
    while (r->peer != r->pos) {
        uint64_t avail = r->peer - r->pos;
        struct rec_hdr h;
        if (avail < HDR)
            goto corrupt;
        memcpy(&h, r->data + (r->pos & (r->cap - 1)), HDR);
        if (h.len == 0 || HDR + PAD8(h.len) > avail)
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
        r->pos += HDR + PAD8(h.len);
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
