/* Waiting for the completion of asynchronous operations. */
#ifndef DEMI_WAIT_H_IS_INCLUDED
#define DEMI_WAIT_H_IS_INCLUDED

#include <time.h>
#include <demi/cc.h>
#include <demi/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Declared here too: strict C99 <time.h> (no POSIX feature macro) does not define it. */
struct timespec;

/* timeout NULL waits forever; {0,0} polls once; ETIMEDOUT leaves the operation pending. */

ATTR_NONNULL(1)
extern int demi_wait(_Out_ demi_qresult_t *qr_out, _In_ demi_qtoken_t qt, _In_opt_ const struct timespec *timeout);

ATTR_NONNULL(1, 2, 3)
extern int demi_wait_any(_Out_ demi_qresult_t *qr_out, _Out_ int *ready_offset,
                         _In_reads_(num_qts) const demi_qtoken_t qts[], _In_ int num_qts,
                         _In_opt_ const struct timespec *timeout);

ATTR_NONNULL(1, 3)
extern int demi_wait_next_n(_Out_writes_to_(num_qrs, *num_qrs_out) demi_qresult_t *qr_out, _In_ int num_qrs,
                            _Out_ int *num_qrs_out, _In_opt_ const struct timespec *timeout);

#ifdef __cplusplus
}
#endif

#endif /* DEMI_WAIT_H_IS_INCLUDED */
