/* catmem's single-producer single-consumer message ring in shared memory, and the layout of a pipe's region; internal to catmem and its tests. */
#ifndef DEMI_CATMEM_RING_H
#define DEMI_CATMEM_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The shared part of a ring: the consumer's and the producer's positions, each
 * on its own cache line, free-running 64-bit byte counts (never wrapped; the
 * data offset is pos & (cap - 1)). The data area follows (CM_RING_CTL_BYTES on).
 *
 * A record is a 16-byte header {len, total, seq} and len payload bytes, the
 * whole padded to a 64-byte cache line. The first record of a message carries the message's total length in
 * total; a message larger than the ring goes as several records, later ones with
 * total == 0. seq, stored last, is (position + 1) ^ key: the consumer watches the
 * header at its position rather than tail, which saves a cache miss per message
 * (tail is still published, and checked when no record is there: see tail_lies). Headers are 64-aligned and cap is a
 * power of two >= 64, so a header never straddles the end of the data area; a
 * payload may, and is copied in two parts.
 */
struct catmem_ring_ctl {
    uint64_t head __attribute__((aligned(64))); /* consumer: bytes consumed (atomic access only) */
    uint64_t key;                               /* random, set at format: mixes record sequence words */
    uint64_t tail __attribute__((aligned(64))); /* producer: bytes published (atomic access only) */
};

#define CM_RING_CTL_BYTES 128u
#define CM_RING_MIN_CAP 64u
#define CM_RING_MAX_CAP (1u << 30)
/* Largest message: anything bigger is refused by put (EMSGSIZE) and by get (EIO). */
#define CM_MSG_MAX (1u << 30)

/*
 * One side's private view of a ring. Everything the peer can write (head for the
 * producer, tail and record headers for the consumer) is read once into a local,
 * checked, and never trusted beyond that; our own position lives here and is only
 * ever published, never read back, so a peer that scribbles on it cannot move us.
 */
struct cm_ring {
    struct catmem_ring_ctl *ctl;
    uint8_t *data;
    uint64_t cap;   /* power of two, fixed at attach */
    uint64_t key;   /* the ring's key, read once at attach */
    uint64_t pos;   /* our position: tail for the producer, head for the consumer */
    uint64_t peer;  /* last validated peer position */
    bool broken;    /* a corrupt value was seen: every later call says -EIO */
    uint32_t empty_gets; /* consumer: gets that found nothing (tail is checked in one of TAIL_CHECK_EVERY) */
    /* consumer: the message being reassembled */
    uint8_t *rx_buf;
    uint32_t rx_total;
    uint32_t rx_off;
};

/* Bytes a ring of capacity cap occupies in the region. */
static inline size_t catmem_ring_bytes(uint64_t cap) { return CM_RING_CTL_BYTES + (size_t)cap; }

/* Zero a fresh ring's shared part (creator only, before anyone attaches). */
void catmem_ring_format(void *mem, uint64_t cap);
/* Attach to a ring at mem of capacity cap as producer or consumer. -EINVAL on a bad cap. */
int catmem_ring_attach(struct cm_ring *r, void *mem, uint64_t cap, bool producer);

/*
 * Producer: write bytes [*done, len) of the message at buf, as far as room allows.
 * Returns 1 once the whole message is in the ring, 0 if it waits for room (*done
 * tells how far it got), -EMSGSIZE for len 0 or above CM_MSG_MAX, -EIO if the
 * consumer's position is impossible.
 */
int catmem_ring_put(struct cm_ring *r, const void *buf, uint32_t len, uint32_t *done);

/* Allocation callback of get: a buffer of len bytes for a message, or NULL. */
typedef void *(*cm_alloc_fn)(void *ctx, uint32_t len);

/*
 * Consumer: take what records are there. Returns 1 with a whole message in the
 * buffer alloc gave (its length in *len_out; the buffer is the caller's), 0 if no
 * whole message is there yet, -ENOMEM if alloc failed (retry later), -EIO if the
 * producer wrote anything impossible.
 */
int catmem_ring_get(struct cm_ring *r, cm_alloc_fn alloc, void *ctx, uint32_t *len_out);

/* Consumer: true if the producer published bytes we have not consumed (or a corrupt position). */
bool catmem_ring_readable(struct cm_ring *r);
/* Producer: free bytes as the consumer last published them (0 if corrupt). */
uint64_t catmem_ring_room(struct cm_ring *r);

#ifdef __cplusplus
}
#endif

#endif /* DEMI_CATMEM_RING_H */
