/* Public data types of the queue API: tokens, scatter-gather arrays and completion results. */
#ifndef DEMI_TYPES_H_IS_INCLUDED
#define DEMI_TYPES_H_IS_INCLUDED

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Maximum number of segments in a scatter-gather array. */
#define DEMI_SGARRAY_MAXSIZE 1

/** Names one asynchronous operation until a wait consumes its result. */
typedef uint64_t demi_qtoken_t;

/** One contiguous piece of a scatter-gather array. */
typedef struct __attribute__((__packed__)) demi_sgaseg {
    void *sgaseg_buf;    /**< data */
    uint32_t sgaseg_len; /**< bytes */
} demi_sgaseg_t;

/** A scatter-gather array. */
typedef struct __attribute__((__packed__)) demi_sgarray {
    void *sga_buf;                                /**< reserved for the LibOS (owner handle) */
    uint32_t sga_numsegs;                         /**< number of segments in use */
    demi_sgaseg_t sga_segs[DEMI_SGARRAY_MAXSIZE]; /**< the segments */
    struct sockaddr_in sga_addr;                  /**< sender, for popped datagrams */
} demi_sgarray_t;

/** Kind of a completed operation. */
typedef enum demi_opcode {
    DEMI_OPC_INVALID = 0,
    DEMI_OPC_PUSH,
    DEMI_OPC_POP,
    DEMI_OPC_ACCEPT,
    DEMI_OPC_CONNECT,
    DEMI_OPC_CLOSE,
    DEMI_OPC_FAILED,
} demi_opcode_t;

/** Result of an accept. */
typedef struct __attribute__((__packed__)) demi_accept_result {
    int32_t qd;              /**< the new connection */
    struct sockaddr_in addr; /**< its remote address */
} demi_accept_result_t;

/** Result of a completed operation, as returned by the wait calls. */
typedef struct __attribute__((__packed__)) demi_qresult {
    enum demi_opcode qr_opcode; /**< what completed */
    int32_t qr_qd;              /**< queue it ran on */
    demi_qtoken_t qr_qt;        /**< its token */
    int64_t qr_ret;             /**< 0, or a positive errno when qr_opcode is DEMI_OPC_FAILED */
    union {
        demi_sgarray_t sga;        /**< pushed or popped data */
        demi_accept_result_t ares; /**< accepted connection */
    } qr_value;
} demi_qresult_t;

/** Log callback (component, level, value); reserved. */
typedef void (*demi_callback_t)(const char *, uint32_t, uint64_t);

/** Arguments of demi_init(). */
struct __attribute__((__packed__)) demi_args {
    int argc;
    char *const *argv;
    demi_callback_t callback;
};

#ifdef __cplusplus
}
#endif

#endif /* DEMI_TYPES_H_IS_INCLUDED */
