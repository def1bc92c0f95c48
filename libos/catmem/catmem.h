/* catmem's shared-region layout and the hooks its tests use; internal to catmem and tests. */
#ifndef DEMI_CATMEM_CATMEM_H
#define DEMI_CATMEM_CATMEM_H

#include <stdint.h>

#include "ring.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CM_MAGIC 0x31504950444d4443ull /* "CDMDPIP1" */
#define CM_VERSION 2u
#define CM_HDR_BYTES 4096u
#define CM_NAME_MAX 64u
/* Prefix of the POSIX shm object (/dev/shm/demi-catmem.<name>). */
#define CM_SHM_PREFIX "/demi-catmem."

/* One end of a pipe as the region shows it; each on its own cache line. Accessed atomically only. */
struct cm_end {
    uint32_t pid __attribute__((aligned(64))); /* owner process, 0 = the opener slot is free */
    uint32_t closed;                            /* the owner closed its end */
    uint32_t sleeping;                          /* the owner may sleep on bell: wake it after publishing */
    uint32_t bell;                              /* futex the owner sleeps on */
};

/*
 * The region: this header in the first CM_HDR_BYTES, then ring 0 (creator to
 * opener) and ring 1 (opener to creator), each catmem_ring_bytes(ring_cap) long.
 * end[0] is the creator's, end[1] the opener's.
 */
struct cm_hdr {
    uint64_t magic; /* written last by the creator: the region is ready */
    uint32_t version;
    uint32_t reserved;
    uint64_t ring_cap;
    uint64_t region_size;
    struct cm_end end[2];
};

static inline uint64_t cm_region_size(uint64_t cap) { return CM_HDR_BYTES + 2 * (uint64_t)catmem_ring_bytes(cap); }

#ifdef __cplusplus
}
#endif

#endif /* DEMI_CATMEM_CATMEM_H */
