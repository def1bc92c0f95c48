/* Allocation and release of scatter-gather arrays from the active LibOS's buffer pool. */
#ifndef DEMI_SGA_H_IS_INCLUDED
#define DEMI_SGA_H_IS_INCLUDED

#include <stddef.h>
#include <demi/cc.h>
#include <demi/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* sga_numsegs == 0 (and sga_buf == NULL) means the allocation failed. */
extern demi_sgarray_t demi_sgaalloc(_In_ size_t size);

ATTR_NONNULL(1)
extern int demi_sgafree(_In_ demi_sgarray_t *sga);

#ifdef __cplusplus
}
#endif

#endif /* DEMI_SGA_H_IS_INCLUDED */
