/* Helpers shared by the example programs: argument parsing, error handling, waiting, data patterns, statistics. */
#ifndef EXAMPLES_COMMON_H
#define EXAMPLES_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

#include <demi/libos.h>
#include <demi/sga.h>
#include <demi/wait.h>

/* Seconds a client (or a server with an open connection) waits for one operation before giving up. */
#define OP_TIMEOUT_S 10

/* ---- command line --------------------------------------------------------- */

enum mode { MODE_SERVER, MODE_CLIENT };

struct cmdline {
    enum mode mode;
    int npos;            /* positional arguments after --server/--client */
    const char *pos[8];
};

/* Name of the program, for messages (set by parse_cmdline). */
extern const char *progname;

/*
 * Parse "--server|--client ARG...", accepting min_pos..max_pos positional
 * arguments. Any other "--word" is left to the LibOS (demi_init sees the same
 * argv, e.g. --catnap). Prints usage and exits 2 on a bad command line.
 */
void parse_cmdline(int argc, char *argv[], const char *usage, int min_pos, int max_pos, struct cmdline *cl);

/* Print the usage given to parse_cmdline and exit 2. */
_Noreturn void usage_exit(void);

/* Parse a decimal number in [min, max]; exits 2 naming `what` if it is not one. */
uint32_t parse_u32(const char *s, const char *what, uint32_t min, uint32_t max);

/* Build an IPv4 address from "a.b.c.d" and a port number; exits 2 if either is bad. */
struct sockaddr_in parse_addr(const char *ip, const char *port);

/* "a.b.c.d:port" into buf (at least 22 bytes); returns buf. */
const char *addr_str(const struct sockaddr_in *addr, char *buf, size_t len);

/* ---- errors --------------------------------------------------------------- */

/* Print "progname: message" and exit 1. */
_Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print "progname: message" and carry on. */
void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Every demi_* call returns 0 or a positive errno. DEMI_CHECK(demi_xxx(...))
 * exits with "progname: demi_xxx: <strerror>" when the call fails.
 */
#define DEMI_CHECK(call) check_rc((call), #call)
void check_rc(int rc, const char *call);

/* ---- LibOS set-up and common operations ------------------------------------ */

/* demi_init with the program's own argc/argv; exits on failure. */
void init_libos(int argc, char *argv[]);

/*
 * Wait for qt for at most timeout_s seconds (0: forever). Exits if the wait
 * fails or times out, if the operation failed (DEMI_OPC_FAILED, naming
 * `what`), or if it is not a `want` operation.
 */
void wait_ok(demi_qresult_t *qr, demi_qtoken_t qt, demi_opcode_t want, const char *what, int timeout_s);

/*
 * The same, for at most timeout_ms milliseconds (0: forever), except that a
 * timeout returns false instead of exiting; the operation then stays pending
 * and qt can be waited on again.
 */
bool wait_for(demi_qresult_t *qr, demi_qtoken_t qt, demi_opcode_t want, const char *what, int timeout_ms);

/* A connected TCP queue to addr (socket + connect + wait); exits on failure. */
int tcp_connect(const struct sockaddr_in *addr);

/* A listening TCP queue bound to addr; exits on failure. */
int tcp_listen(const struct sockaddr_in *addr, int backlog);

/* Accept one connection on a listening queue, waiting forever; returns its qd. */
int tcp_accept(int listen_qd, struct sockaddr_in *peer);

/* A UDP queue bound to addr; exits on failure. */
int udp_bind(const struct sockaddr_in *addr);

/*
 * Pop from a TCP queue until exactly len bytes have arrived in dst (a stream
 * delivers data in pieces of any size). Exits on end of stream, on a failed
 * pop, or if the peer sends more than len bytes in one piece.
 */
void recv_exact(int qd, uint8_t *dst, size_t len);

/* Warn, once per program run, when a datagram comes from somewhere other than the expected peer. */
void note_sender(const struct sockaddr_in *from, const struct sockaddr_in *expected, bool *warned);

/* An sga with one segment of size bytes; exits if the LibOS cannot allocate it. */
demi_sgarray_t alloc_sga(size_t size);

/* Release an sga (from alloc_sga or a pop); exits on failure. */
void free_sga(demi_sgarray_t *sga);

/* Total bytes in an sga. */
size_t sga_len(const demi_sgarray_t *sga);

/* Copy an sga's bytes to dst (room for sga_len(sga) bytes); returns how many. */
size_t sga_copy(uint8_t *dst, const demi_sgarray_t *sga);

/* First byte of an sga's (single) segment. */
static inline uint8_t *sga_data(const demi_sgarray_t *sga)
{
    return (uint8_t *)sga->sga_segs[0].sgaseg_buf;
}

/* ---- test data --------------------------------------------------------------- */

/* The byte at position `offset` of the test stream. */
static inline uint8_t pattern_byte(uint64_t offset)
{
    return (uint8_t)((offset * 7 + 3) & 0xff);
}

/* Fill buf with the stream bytes starting at offset. */
void fill_pattern(uint8_t *buf, size_t len, uint64_t offset);

/* Index of the first byte of buf that differs from the stream at offset, or -1. */
long check_pattern(const uint8_t *buf, size_t len, uint64_t offset);

/*
 * Datagram `seq` of `size` bytes (size >= 4): the sequence number in the first
 * four bytes (network order), then the stream bytes at seq*size + 4.
 */
void fill_datagram(uint8_t *buf, size_t size, uint32_t seq);

/* Check a received datagram; returns NULL and sets *seq if it is good, or says what is wrong. */
const char *check_datagram(const uint8_t *buf, size_t len, size_t size, uint32_t *seq);

/* ---- time and statistics --------------------------------------------------- */

/* Monotonic clock in nanoseconds. */
uint64_t now_ns(void);

/* Sort samples (ns) and print "label: n=..., p50 ... us, p99 ... us, ...". */
void print_latency(const char *label, uint64_t *samples_ns, size_t n);

/* Print "label: N bytes in T ms, X MB/s (Y Gbit/s)". */
void print_throughput(const char *label, uint64_t bytes, uint64_t elapsed_ns);

#endif /* EXAMPLES_COMMON_H */
