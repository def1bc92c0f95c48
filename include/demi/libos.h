/* Control and data calls of the queue API: sockets, pipes, push and pop. */
#ifndef DEMI_LIBOS_H_IS_INCLUDED
#define DEMI_LIBOS_H_IS_INCLUDED

#include <stddef.h>
#include <sys/socket.h>
#include <demi/cc.h>
#include <demi/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every call returns 0 on success or a positive errno; output arguments are untouched on failure. */

ATTR_NONNULL(1)
extern int demi_init(_In_ const struct demi_args *args);

ATTR_NONNULL(1, 2)
extern int demi_create_pipe(_Out_ int *memqd_out, _In_z_ const char *name);

ATTR_NONNULL(1, 2)
extern int demi_open_pipe(_Out_ int *memqd_out, _In_z_ const char *name);

ATTR_NONNULL(1)
extern int demi_socket(_Out_ int *sockqd_out, _In_ int domain, _In_ int type, _In_ int protocol);

extern int demi_listen(_In_ int sockqd, _In_ int backlog);

ATTR_NONNULL(2)
extern int demi_bind(_In_ int sockqd, _In_reads_bytes_(size) const struct sockaddr *addr, _In_ socklen_t size);

ATTR_NONNULL(1)
extern int demi_accept(_Out_ demi_qtoken_t *qt_out, _In_ int sockqd);

ATTR_NONNULL(1, 3)
extern int demi_connect(_Out_ demi_qtoken_t *qt_out, _In_ int sockqd,
                        _In_reads_bytes_(size) const struct sockaddr *addr, _In_ socklen_t size);

extern int demi_close(_In_ int qd);

ATTR_NONNULL(1, 3)
extern int demi_push(_Out_ demi_qtoken_t *qt_out, _In_ int qd, _In_ const demi_sgarray_t *sga);

ATTR_NONNULL(1, 3, 4)
extern int demi_pushto(_Out_ demi_qtoken_t *qt_out, _In_ int sockqd, _In_ const demi_sgarray_t *sga,
                       _In_reads_bytes_(size) const struct sockaddr *dest_addr, _In_ socklen_t size);

ATTR_NONNULL(1)
extern int demi_pop(_Out_ demi_qtoken_t *qt_out, _In_ int qd);

ATTR_NONNULL(4)
extern int demi_setsockopt(_In_ int qd, _In_ int level, _In_ int optname,
                           _In_reads_bytes_(optlen) const void *optval, _In_ socklen_t optlen);

ATTR_NONNULL(4, 5)
extern int demi_getsockopt(_In_ int qd, _In_ int level, _In_ int optname,
                           _Out_writes_to_(optlen, *optlen) void *optval, _In_ socklen_t *optlen);

ATTR_NONNULL(2, 3)
extern int demi_getpeername(_In_ int qd, _Out_writes_to_(addrlen, *addrlen) struct sockaddr *addr,
                            _In_ socklen_t *addrlen);

#ifdef __cplusplus
}
#endif

#endif /* DEMI_LIBOS_H_IS_INCLUDED */
