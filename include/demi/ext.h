/* Extensions to the Demikernel API: calls a POSIX layer or an event loop needs beyond the contract. */
#ifndef DEMI_EXT_H_IS_INCLUDED
#define DEMI_EXT_H_IS_INCLUDED

#include <sys/socket.h>
#include <demi/cc.h>
#include <demi/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A kernel fd that becomes readable when the LibOS may have progress to make
 * (completions to collect). Put it in an epoll/poll set, and call a demi_wait*
 * with a zero timeout when it fires. ENOTSUP when the LibOS has none (it busy-polls).
 */
ATTR_NONNULL(1)
extern int demi_wait_fd(_Out_ int *fd_out);

/* The local address of a socket queue (as getsockname(2)). */
ATTR_NONNULL(2, 3)
extern int demi_getsockname(_In_ int qd, _Out_ struct sockaddr *addr, _Inout_ socklen_t *addrlen);

/* Shut down one or both directions of a connected socket queue (SHUT_RD, SHUT_WR, SHUT_RDWR). */
extern int demi_shutdown(_In_ int qd, _In_ int how);

/*
 * Push a datagram of zero bytes on a UDP queue (which demi_pushto cannot, as its
 * sga must not be empty), to dest_addr, or to the connected peer when dest_addr
 * is NULL. Completes like a push. EINVAL: not a UDP queue or a bad address;
 * EDESTADDRREQ: no address and not connected.
 */
ATTR_NONNULL(1)
extern int demi_pushto_empty(_Out_ demi_qtoken_t *qt_out, _In_ int sockqd, _In_opt_ const struct sockaddr *dest_addr,
                             _In_ socklen_t size);

/*
 * Counter `index` (0, 1, 2 ...) of the active LibOS's user-space network stack
 * (catpowder, catnip): its name, a one-line description (both static strings;
 * either pointer may be NULL) and its current value. ENOENT past the last
 * counter, ENOTSUP on a LibOS without a stack (catnap ...), EINVAL before
 * demi_init or when value_out is NULL. Outputs are untouched on error.
 */
ATTR_NONNULL(4)
extern int demi_netstack_stats(_In_ unsigned index, _Out_ const char **name_out, _Out_ const char **help_out,
                               _Out_ uint64_t *value_out);

/* Name of the active LibOS, or NULL before demi_init. */
extern const char *demi_libos_name(void);

#ifdef __cplusplus
}
#endif

#endif /* DEMI_EXT_H_IS_INCLUDED */
