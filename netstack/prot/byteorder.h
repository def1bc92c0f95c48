/*
 * Wire byte-order types and conversions for every netstack/prot header; pure
 * helpers used on both the input (eth -> ip -> l4) and output paths.
 */
#ifndef NS_PROT_BYTEORDER_H
#define NS_PROT_BYTEORDER_H

#include <stdint.h>

/* Values in network byte order. A plain typedef (not a wrapper struct) so
 * packed headers stay trivially copyable; the name is the documentation, and
 * every read or write of such a field goes through ns_ntoh / ns_hton. */
/* Headers are also read by the C++ tests. */
#ifdef __cplusplus
#define NS_STATIC_ASSERT(c, m) static_assert(c, m)
#else
#define NS_STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif

typedef uint16_t be16_t;
typedef uint32_t be32_t;

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
static inline be16_t ns_hton16(uint16_t v) { return __builtin_bswap16(v); }
static inline be32_t ns_hton32(uint32_t v) { return __builtin_bswap32(v); }
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
static inline be16_t ns_hton16(uint16_t v) { return v; }
static inline be32_t ns_hton32(uint32_t v) { return v; }
#else
#error "unknown byte order"
#endif
static inline uint16_t ns_ntoh16(be16_t v) { return ns_hton16(v); }
static inline uint32_t ns_ntoh32(be32_t v) { return ns_hton32(v); }

/* a.b.c.d as a wire-order IPv4 address. */
#define NS_IP4(a, b, c, d)                                                                          \
    ns_hton32(((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (uint32_t)(d))

#endif /* NS_PROT_BYTEORDER_H */
