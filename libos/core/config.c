/* Run-time configuration: built-in defaults, then a Demikernel-style YAML file, then DEMI_* environment overrides, all validated. */
#include "config.h"
#include "log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

/* ---- defaults (doc/config.md lists them; keep the two in step) ---- */

#define DEF_WAIT_SPIN_US 50u
#define DEF_SGA_POOL_MAX_BYTES (1ull << 30)
#define DEF_MTU 1500u
#define DEF_MSS 1460u
#define DEF_ARP_CACHE_TTL_S 15u
#define DEF_ARP_REQUEST_TIMEOUT_MS 20u
#define DEF_ARP_REQUEST_RETRIES 5u
#define DEF_CATNAP_POP_SIZE 65536u
#define DEF_CATMEM_RING_SIZE (1u << 20)

#define IFNAME_MAX 15 /* IFNAMSIZ - 1 */
#define KEYPATH_MAX 256
#define SHOWN_VALUE_MAX 48

void core_config_defaults(struct core_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->wait_spin_us = DEF_WAIT_SPIN_US;
    cfg->sga_pool_max_bytes = DEF_SGA_POOL_MAX_BYTES;
    cfg->nodelay = false; /* as the kernel: POSIX programs under the shim expect Nagle on */
    cfg->connect_timeout_ms = 0;
    cfg->mtu = DEF_MTU;
    cfg->mss = DEF_MSS;
    cfg->arp_cache_ttl_s = DEF_ARP_CACHE_TTL_S;
    cfg->arp_request_timeout_ms = DEF_ARP_REQUEST_TIMEOUT_MS;
    cfg->arp_request_retries = DEF_ARP_REQUEST_RETRIES;
    cfg->catnap_pop_size = DEF_CATNAP_POP_SIZE;
    cfg->catmem_ring_size = DEF_CATMEM_RING_SIZE;
}

void core_config_free(struct core_config *cfg)
{
    if (cfg == NULL)
        return;
    int n = cfg->n_eal;
    if (n < 0 || n > CORE_CONFIG_MAX_EAL)
        n = CORE_CONFIG_MAX_EAL;
    for (int i = 0; i < n; i++) {
        free(cfg->eal_init[i]);
        cfg->eal_init[i] = NULL;
    }
    cfg->n_eal = 0;
}

/* ---- the schema: one table per section, so file and environment share names, ranges and messages ---- */

enum ftype {
    F_U32,     /* decimal integer in [min, max], stored as uint32_t */
    F_U64,     /* decimal integer in [min, max], stored as uint64_t */
    F_POW2,    /* power of two in [min, max], stored as uint32_t */
    F_BOOL,    /* true/false/yes/no/on/off/1/0 */
    F_IPV4,    /* dotted quad */
    F_NETMASK, /* dotted quad with contiguous ones */
    F_MAC,     /* six hex pairs separated by ':' or '-' */
    F_LIBOS,   /* [a-z0-9_]{1,63} */
    F_IFNAME,  /* a Linux interface name */
    F_EAL,     /* sequence of strings (file) or space-separated words (environment) */
    F_ARP,     /* mapping MAC -> IPv4 */
    F_MAP,     /* nested mapping described by sub */
    F_IGNORE,  /* a Demikernel key this build accepts and does not use */
};

#define NO_HAS ((size_t)-1)

struct field {
    const char *key;
    enum ftype type;
    size_t off;     /* offset of the value in struct core_config */
    size_t has_off; /* offset of its bool has_* flag, or NO_HAS */
    uint64_t min, max;
    const struct field *sub; /* F_MAP: NULL-key-terminated */
};

#define OFF(m) offsetof(struct core_config, m)
#define U32(k, m, lo, hi) { .key = (k), .type = F_U32, .off = OFF(m), .has_off = NO_HAS, .min = (lo), .max = (hi) }
#define U64(k, m, lo, hi) { .key = (k), .type = F_U64, .off = OFF(m), .has_off = NO_HAS, .min = (lo), .max = (hi) }
#define BOOL(k, m) { .key = (k), .type = F_BOOL, .off = OFF(m), .has_off = NO_HAS }
#define OPT(k, t, m, h) { .key = (k), .type = (t), .off = OFF(m), .has_off = OFF(h) }
#define PLAIN(k, t, m) { .key = (k), .type = (t), .off = OFF(m), .has_off = NO_HAS }
#define IGNORED(k) { .key = (k), .type = F_IGNORE }
#define END { .key = NULL }

static const struct field demikernel_fields[] = {
    OPT("local_ipv4_addr", F_IPV4, local_ipv4, has_local_ipv4),
    OPT("local_link_addr", F_MAC, local_mac, has_local_mac),
    PLAIN("libos", F_LIBOS, libos),
    U32("wait_spin_us", wait_spin_us, 0, 10000000),
    U64("sga_pool_max_bytes", sga_pool_max_bytes, 4096, 1ull << 48),
    END,
};

static const struct field raw_socket_fields[] = {
    PLAIN("linux_interface_name", F_IFNAME, linux_interface_name),
    U32("xdp_interface_index", xdp_interface_index, 0, INT32_MAX),
    /* Demikernel's AF_XDP knobs: accepted so its config files load unchanged. */
    IGNORED("xdp_cohost_mode"),
    IGNORED("xdp_always_poke_tx"),
    IGNORED("xdp_always_send_on_vf"),
    IGNORED("xdp_tcp_ports"),
    IGNORED("xdp_udp_ports"),
    IGNORED("xdp_reserved_port_count"),
    IGNORED("xdp_reserved_port_protocol"),
    IGNORED("xdp_vf_interface_index"),
    IGNORED("tx_buffer_count"),
    IGNORED("rx_buffer_count"),
    IGNORED("tx_ring_size"),
    IGNORED("rx_ring_size"),
    END,
};

static const struct field dpdk_fields[] = {
    PLAIN("eal_init", F_EAL, eal_init),
    END,
};

static const struct field keepalive_fields[] = {
    BOOL("enabled", keepalive_enabled),
    U32("time_millis", keepalive_time_ms, 0, INT32_MAX),
    U32("interval", keepalive_interval_ms, 0, INT32_MAX),
    END,
};

static const struct field linger_fields[] = {
    BOOL("enabled", linger_enabled),
    U32("time_seconds", linger_time_s, 0, 65535),
    END,
};

static const struct field tcp_fields[] = {
    { .key = "keepalive", .type = F_MAP, .sub = keepalive_fields },
    { .key = "linger", .type = F_MAP, .sub = linger_fields },
    BOOL("nodelay", nodelay),
    U32("connect_timeout_ms", connect_timeout_ms, 0, INT32_MAX),
    END,
};

static const struct field inetstack_fields[] = {
    U32("mtu", mtu, 68, 9216),
    U32("mss", mss, 536, 9216),
    BOOL("enable_jumbo_frames", enable_jumbo_frames),
    BOOL("udp_checksum_offload", udp_checksum_offload),
    BOOL("tcp_checksum_offload", tcp_checksum_offload),
    PLAIN("arp_table", F_ARP, arp_table),
    U32("arp_cache_ttl", arp_cache_ttl_s, 1, 86400),
    U32("arp_request_timeout", arp_request_timeout_ms, 1, 60000),
    U32("arp_request_retries", arp_request_retries, 0, 100),
    OPT("ipv4_netmask", F_NETMASK, ipv4_netmask, has_ipv4_netmask),
    OPT("ipv4_gateway", F_IPV4, ipv4_gateway, has_ipv4_gateway),
    END,
};

static const struct field catnap_fields[] = {
    U32("pop_size", catnap_pop_size, 1, 1u << 26),
    END,
};

static const struct field catmem_fields[] = {
    { .key = "ring_size", .type = F_POW2, .off = OFF(catmem_ring_size), .has_off = NO_HAS, .min = 4096,
      .max = 1u << 28 },
    END,
};

struct section {
    const char *name;
    const struct field *fields;
};

static const struct section sections[] = {
    { "demikernel", demikernel_fields },
    { "raw_socket", raw_socket_fields },
    { "dpdk", dpdk_fields },
    { "tcp_socket_options", tcp_fields },
    { "inetstack_config", inetstack_fields },
    { "catnap", catnap_fields },
    { "catmem", catmem_fields },
};

/* Sections Demikernel's own files carry that this build does not read. Anything else is a typo. */
static const char *const ignored_sections[] = {
    "client", "server", "catnip", "catpowder", "catloop", "catcollar", "catmint", "lwip", "spdk",
};

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- error reporting ---- */

struct ctx {
    struct core_config *cfg;
    yaml_document_t *doc;
    const char *src; /* file name, for messages */
    char *err;
    size_t errlen;
};

/* Formats `fmt` into err; with a YAML mark, appends where in the file it was. Returns rc. */
__attribute__((format(printf, 4, 5)))
static int fail(struct ctx *c, int rc, const yaml_mark_t *mark, const char *fmt, ...)
{
    if (c->err == NULL || c->errlen == 0)
        return rc;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < c->errlen && mark != NULL && c->src != NULL)
        snprintf(c->err + n, c->errlen - (size_t)n, " (%s line %zu, column %zu)", c->src,
                 mark->line + 1, mark->column + 1);
    return rc;
}

/* Copies a value into out for a message, bounded and with control characters escaped. */
static const char *shown(const char *v, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; v[i] != '\0'; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (i >= SHOWN_VALUE_MAX || o + 8 >= outlen) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", ch);
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = '\0';
    return out;
}

/* What a field accepts, for "is not ..." and "expected ..." messages. */
static void describe(const struct field *f, char *out, size_t outlen)
{
    switch (f->type) {
    case F_U32:
    case F_U64:
        snprintf(out, outlen, "an integer in %llu..%llu", (unsigned long long)f->min,
                 (unsigned long long)f->max);
        break;
    case F_POW2:
        snprintf(out, outlen, "a power of two in %llu..%llu", (unsigned long long)f->min,
                 (unsigned long long)f->max);
        break;
    case F_BOOL:
        snprintf(out, outlen, "a boolean (true/false, yes/no, on/off, 1/0)");
        break;
    case F_IPV4:
        snprintf(out, outlen, "an IPv4 address like 10.0.0.1");
        break;
    case F_NETMASK:
        snprintf(out, outlen, "an IPv4 netmask like 255.255.255.0");
        break;
    case F_MAC:
        snprintf(out, outlen, "a MAC address like 02:00:00:00:00:01");
        break;
    case F_LIBOS:
        snprintf(out, outlen, "a LibOS name (1..%d characters from a-z, 0-9, _)", CORE_CONFIG_NAME_MAX - 1);
        break;
    case F_IFNAME:
        snprintf(out, outlen, "an interface name (1..%d characters, no '/', ':' or white space)", IFNAME_MAX);
        break;
    case F_EAL:
        snprintf(out, outlen, "a sequence of at most %d strings", CORE_CONFIG_MAX_EAL);
        break;
    case F_ARP:
        snprintf(out, outlen, "a mapping of MAC address to IPv4 address");
        break;
    case F_MAP:
        snprintf(out, outlen, "a mapping");
        break;
    case F_IGNORE:
        snprintf(out, outlen, "anything");
        break;
    }
}

static const char *node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE:
        return "a scalar";
    case YAML_SEQUENCE_NODE:
        return "a sequence";
    case YAML_MAPPING_NODE:
        return "a mapping";
    default:
        return "nothing";
    }
}

/* ---- value parsers: 0 or -EINVAL, output untouched on failure ---- */

static int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (s[0] == '\0')
        return -EINVAL;
    uint64_t v = 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    if (v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = { "true", "yes", "on", "1" };
    static const char *const no[] = { "false", "no", "off", "0" };
    for (size_t i = 0; i < NELEMS(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

static int parse_ipv4(const char *s, struct in_addr *out)
{
    struct in_addr a;
    if (inet_pton(AF_INET, s, &a) != 1)
        return -EINVAL;
    *out = a;
    return 0;
}

static int parse_netmask(const char *s, struct in_addr *out)
{
    struct in_addr a;
    if (inet_pton(AF_INET, s, &a) != 1)
        return -EINVAL;
    uint32_t m = ntohl(a.s_addr);
    /* Contiguous ones: the inverted mask plus one is a power of two (or zero for /0). */
    uint32_t inv = ~m;
    if ((inv & (inv + 1u)) != 0)
        return -EINVAL;
    *out = a;
    return 0;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static int parse_mac(const char *s, uint8_t out[6])
{
    if (strlen(s) != 17)
        return -EINVAL;
    char sep = s[2];
    if (sep != ':' && sep != '-')
        return -EINVAL;
    uint8_t mac[6];
    for (int i = 0; i < 6; i++) {
        const char *p = s + 3 * i;
        int hi = hexval(p[0]), lo = hexval(p[1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        if (i < 5 && p[2] != sep)
            return -EINVAL;
        mac[i] = (uint8_t)(hi << 4 | lo);
    }
    memcpy(out, mac, 6);
    return 0;
}

static bool valid_libos(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CORE_CONFIG_NAME_MAX - 1)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_'))
            return false;
    }
    return true;
}

/* The kernel's own rule (dev_valid_name): not "." or "..", no '/', ':' or white space. */
static bool valid_ifname(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > IFNAME_MAX || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '/' || ch == ':' || isspace(ch) || ch < 0x20 || ch == 0x7f)
            return false;
    }
    return true;
}

/* Stores one scalar into the field it names; `name` is the key path or variable for messages. */
static int set_scalar(struct ctx *c, const struct field *f, const char *name, const char *v,
                      const yaml_mark_t *mark)
{
    char *base = (char *)c->cfg;
    int rc = -EINVAL;
    switch (f->type) {
    case F_POW2:
    case F_U32:
    case F_U64: {
        uint64_t x;
        rc = parse_uint(v, f->min, f->max, &x);
        if (rc == 0 && f->type == F_POW2 && (x & (x - 1)) != 0)
            rc = -EINVAL;
        if (rc == 0) {
            if (f->type != F_U64)
                *(uint32_t *)(base + f->off) = (uint32_t)x;
            else
                *(uint64_t *)(base + f->off) = x;
        }
        break;
    }
    case F_BOOL:
        rc = parse_bool(v, (bool *)(base + f->off));
        break;
    case F_IPV4:
        rc = parse_ipv4(v, (struct in_addr *)(base + f->off));
        break;
    case F_NETMASK:
        rc = parse_netmask(v, (struct in_addr *)(base + f->off));
        break;
    case F_MAC:
        rc = parse_mac(v, (uint8_t *)(base + f->off));
        break;
    case F_LIBOS:
    case F_IFNAME:
        if (f->type == F_LIBOS ? valid_libos(v) : valid_ifname(v)) {
            snprintf(base + f->off, CORE_CONFIG_NAME_MAX, "%s", v);
            rc = 0;
        }
        break;
    default:
        break;
    }
    if (rc == 0) {
        if (f->has_off != NO_HAS)
            *(bool *)(base + f->has_off) = true;
        return 0;
    }
    char what[128], sv[SHOWN_VALUE_MAX * 4 + 8];
    describe(f, what, sizeof(what));
    return fail(c, -EINVAL, mark, "%s: \"%s\" is not %s", name, shown(v, sv, sizeof(sv)), what);
}

/* Replaces the EAL list with n copies of words; nothing changes on failure. */
static int set_eal(struct ctx *c, const char *name, const char *const *words, int n)
{
    char *copy[CORE_CONFIG_MAX_EAL];
    for (int i = 0; i < n; i++) {
        copy[i] = strdup(words[i]);
        if (copy[i] == NULL) {
            while (i-- > 0)
                free(copy[i]);
            return fail(c, -ENOMEM, NULL, "%s: out of memory", name);
        }
    }
    core_config_free(c->cfg);
    for (int i = 0; i < n; i++)
        c->cfg->eal_init[i] = copy[i];
    c->cfg->n_eal = n;
    return 0;
}

/* ---- YAML walking ---- */

static const char *scalar(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* "1500\0junk" would read as 1500 through C strings; such a scalar is never valid. */
static bool has_nul(const yaml_node_t *n)
{
    return strlen(scalar(n)) != n->data.scalar.length;
}

/* Key path "a.b.c" for messages; truncated rather than overflowed. */
static void join(char *out, size_t outlen, const char *prefix, const char *key)
{
    if (prefix[0] == '\0')
        snprintf(out, outlen, "%s", key);
    else
        snprintf(out, outlen, "%s.%s", prefix, key);
}

/* Checks a mapping's keys are scalars and unique; reports the first offender. */
static int check_keys(struct ctx *c, const yaml_node_t *map, const char *path)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        if (k == NULL || k->type != YAML_SCALAR_NODE)
            return fail(c, -EINVAL, k ? &k->start_mark : NULL, "%s: keys must be plain names, got %s",
                        path[0] ? path : "top level", k ? node_kind(k) : "nothing");
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *k2 = yaml_document_get_node(c->doc, q->key);
            if (strcmp(scalar(k), scalar(k2)) == 0) {
                char full[KEYPATH_MAX];
                join(full, sizeof(full), path, scalar(k));
                return fail(c, -EINVAL, &k->start_mark, "%s: duplicate key", full);
            }
        }
    }
    return 0;
}

/* A missing value (`key:` with nothing after it) reads as an empty mapping. */
static bool is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = scalar(n);
    return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

static void list_keys(const struct field *fields, char *out, size_t outlen)
{
    size_t o = 0;
    out[0] = '\0';
    for (const struct field *f = fields; f->key != NULL && o < outlen; f++) {
        if (f->type == F_IGNORE)
            continue;
        int n = snprintf(out + o, outlen - o, "%s%s", o ? ", " : "", f->key);
        if (n < 0)
            break;
        o += (size_t)n;
    }
}

static int load_mapping(struct ctx *c, const yaml_node_t *map, const struct field *fields, const char *path);

static int load_eal(struct ctx *c, const yaml_node_t *v, const char *path)
{
    if (is_null(v))
        return set_eal(c, path, NULL, 0);
    if (v->type != YAML_SEQUENCE_NODE)
        return fail(c, -EINVAL, &v->start_mark, "%s: expected a sequence of strings like [\"\", \"--no-pci\"], got %s",
                    path, node_kind(v));
    yaml_node_item_t *items = v->data.sequence.items.start;
    long n = v->data.sequence.items.top - items;
    if (n > CORE_CONFIG_MAX_EAL)
        return fail(c, -EINVAL, &v->start_mark, "%s: %ld arguments, at most %d allowed", path, n,
                    CORE_CONFIG_MAX_EAL);
    const char *words[CORE_CONFIG_MAX_EAL];
    for (long i = 0; i < n; i++) {
        yaml_node_t *it = yaml_document_get_node(c->doc, items[i]);
        if (it == NULL || it->type != YAML_SCALAR_NODE)
            return fail(c, -EINVAL, it ? &it->start_mark : &v->start_mark, "%s[%ld]: expected a string, got %s",
                        path, i, it ? node_kind(it) : "nothing");
        if (has_nul(it))
            return fail(c, -EINVAL, &it->start_mark, "%s[%ld]: contains a NUL byte", path, i);
        words[i] = scalar(it);
    }
    return set_eal(c, path, words, (int)n);
}

static int load_arp(struct ctx *c, const yaml_node_t *v, const char *path)
{
    if (is_null(v)) {
        c->cfg->n_arp = 0;
        return 0;
    }
    if (v->type != YAML_MAPPING_NODE)
        return fail(c, -EINVAL, &v->start_mark, "%s: expected a mapping of MAC address to IPv4 address, got %s",
                    path, node_kind(v));
    /* Demikernel keys this table by MAC, so one MAC may legitimately appear more than once. */
    c->cfg->n_arp = 0;
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *val = yaml_document_get_node(c->doc, p->value);
        char sv[SHOWN_VALUE_MAX * 4 + 8];
        if (k == NULL || k->type != YAML_SCALAR_NODE)
            return fail(c, -EINVAL, k ? &k->start_mark : &v->start_mark, "%s: keys must be MAC addresses, got %s",
                        path, k ? node_kind(k) : "nothing");
        if (has_nul(k) || (val != NULL && val->type == YAML_SCALAR_NODE && has_nul(val)))
            return fail(c, -EINVAL, &k->start_mark, "%s: contains a NUL byte", path);
        if (c->cfg->n_arp == CORE_CONFIG_MAX_ARP)
            return fail(c, -EINVAL, &k->start_mark, "%s: more than %d entries", path, CORE_CONFIG_MAX_ARP);
        struct core_arp_entry *e = &c->cfg->arp_table[c->cfg->n_arp];
        if (parse_mac(scalar(k), e->mac) != 0)
            return fail(c, -EINVAL, &k->start_mark, "%s: \"%s\" is not a MAC address like 02:00:00:00:00:01", path,
                        shown(scalar(k), sv, sizeof(sv)));
        if (val == NULL || val->type != YAML_SCALAR_NODE)
            return fail(c, -EINVAL, val ? &val->start_mark : &k->start_mark,
                        "%s.\"%s\": expected an IPv4 address like 10.0.0.1, got %s", path,
                        shown(scalar(k), sv, sizeof(sv)), val ? node_kind(val) : "nothing");
        if (parse_ipv4(scalar(val), &e->ip) != 0) {
            char sk[SHOWN_VALUE_MAX * 4 + 8];
            return fail(c, -EINVAL, &val->start_mark, "%s.\"%s\": \"%s\" is not an IPv4 address like 10.0.0.1",
                        path, shown(scalar(k), sk, sizeof(sk)), shown(scalar(val), sv, sizeof(sv)));
        }
        for (int i = 0; i < c->cfg->n_arp; i++) {
            if (c->cfg->arp_table[i].ip.s_addr == e->ip.s_addr)
                return fail(c, -EINVAL, &val->start_mark, "%s: IPv4 address %s appears twice", path,
                            shown(scalar(val), sv, sizeof(sv)));
        }
        c->cfg->n_arp++;
    }
    return 0;
}

static int load_value(struct ctx *c, const struct field *f, const yaml_node_t *v, const char *path)
{
    switch (f->type) {
    case F_IGNORE:
        LOG_DEBUG("config: %s is a Demikernel key this build does not use; ignored", path);
        return 0;
    case F_EAL:
        return load_eal(c, v, path);
    case F_ARP:
        return load_arp(c, v, path);
    case F_MAP:
        if (is_null(v))
            return 0;
        if (v->type != YAML_MAPPING_NODE)
            return fail(c, -EINVAL, &v->start_mark, "%s: expected a mapping, got %s", path, node_kind(v));
        return load_mapping(c, v, f->sub, path);
    default:
        if (v->type != YAML_SCALAR_NODE) {
            char what[128];
            describe(f, what, sizeof(what));
            return fail(c, -EINVAL, &v->start_mark, "%s: expected %s, got %s", path, what, node_kind(v));
        }
        if (has_nul(v))
            return fail(c, -EINVAL, &v->start_mark, "%s: contains a NUL byte", path);
        return set_scalar(c, f, path, scalar(v), &v->start_mark);
    }
}

static int load_mapping(struct ctx *c, const yaml_node_t *map, const struct field *fields, const char *path)
{
    int rc = check_keys(c, map, path);
    if (rc < 0)
        return rc;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        char full[KEYPATH_MAX];
        join(full, sizeof(full), path, scalar(k));
        const struct field *f = fields;
        while (f->key != NULL && strcmp(f->key, scalar(k)) != 0)
            f++;
        if (f->key == NULL) {
            char allowed[512];
            list_keys(fields, allowed, sizeof(allowed));
            return fail(c, -EINVAL, &k->start_mark, "%s: unknown key (allowed: %s)", full, allowed);
        }
        if (v == NULL)
            return fail(c, -EINVAL, &k->start_mark, "%s: missing value", full);
        rc = load_value(c, f, v, full);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int load_root(struct ctx *c, const yaml_node_t *root)
{
    if (is_null(root))
        return 0;
    if (root->type != YAML_MAPPING_NODE)
        return fail(c, -EINVAL, &root->start_mark, "top level: expected a mapping of sections, got %s",
                    node_kind(root));
    int rc = check_keys(c, root, "");
    if (rc < 0)
        return rc;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        const char *name = scalar(k);
        const struct section *s = NULL;
        for (size_t i = 0; i < NELEMS(sections); i++) {
            if (strcmp(sections[i].name, name) == 0)
                s = &sections[i];
        }
        if (s == NULL) {
            bool ignored = false;
            for (size_t i = 0; i < NELEMS(ignored_sections); i++)
                ignored = ignored || strcmp(ignored_sections[i], name) == 0;
            if (ignored) {
                LOG_DEBUG("config: section %s is not used by this build; ignored", name);
                continue;
            }
            char allowed[512];
            size_t o = 0;
            allowed[0] = '\0';
            for (size_t i = 0; i < NELEMS(sections); i++)
                o += (size_t)snprintf(allowed + o, sizeof(allowed) - o, "%s%s", i ? ", " : "", sections[i].name);
            char sv[SHOWN_VALUE_MAX * 4 + 8];
            return fail(c, -EINVAL, &k->start_mark, "%s: unknown section (allowed: %s; Demikernel's client, server, "
                        "catnip, ... are ignored)", shown(name, sv, sizeof(sv)), allowed);
        }
        if (v == NULL || is_null(v))
            continue;
        if (v->type != YAML_MAPPING_NODE)
            return fail(c, -EINVAL, &v->start_mark, "%s: expected a mapping, got %s", name, node_kind(v));
        rc = load_mapping(c, v, s->fields, name);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int yaml_fail(struct ctx *c, const yaml_parser_t *parser)
{
    if (parser->error == YAML_MEMORY_ERROR)
        return fail(c, -ENOMEM, NULL, "%s: out of memory while reading YAML", c->src);
    const char *problem = parser->problem ? parser->problem : "malformed YAML";
    if (parser->error == YAML_READER_ERROR)
        return fail(c, -EINVAL, NULL, "%s: YAML syntax error at byte %zu: %s", c->src, parser->problem_offset,
                    problem);
    if (parser->context != NULL)
        return fail(c, -EINVAL, NULL, "%s: YAML syntax error at line %zu, column %zu: %s %s started at line %zu", c->src,
                    parser->problem_mark.line + 1, parser->problem_mark.column + 1, problem, parser->context,
                    parser->context_mark.line + 1);
    return fail(c, -EINVAL, NULL, "%s: YAML syntax error at line %zu, column %zu: %s", c->src,
                parser->problem_mark.line + 1, parser->problem_mark.column + 1, problem);
}

static int load_file(struct ctx *c, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        char buf[128];
        return fail(c, -e, NULL, "config file %s: %s", path, strerror_r(e, buf, sizeof(buf)));
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        return fail(c, -EISDIR, NULL, "config file %s: is a directory", path);
    }
    FILE *fp = fdopen(fd, "rb");
    if (fp == NULL) {
        int e = errno;
        close(fd);
        return fail(c, -e, NULL, "config file %s: cannot read", path);
    }

    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        fclose(fp);
        return fail(c, -ENOMEM, NULL, "%s: out of memory while reading YAML", path);
    }
    yaml_parser_set_input_file(&parser, fp);
    c->src = path;

    yaml_document_t doc;
    int rc;
    if (!yaml_parser_load(&parser, &doc)) {
        rc = yaml_fail(c, &parser);
    } else {
        c->doc = &doc;
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        rc = root ? load_root(c, root) : 0;
        c->doc = NULL;
        yaml_document_delete(&doc);
        if (rc == 0 && root != NULL) {
            /* A second document would be silently ignored; say so instead. */
            yaml_document_t next;
            if (!yaml_parser_load(&parser, &next)) {
                rc = yaml_fail(c, &parser);
            } else {
                yaml_node_t *r2 = yaml_document_get_root_node(&next);
                if (r2 != NULL)
                    rc = fail(c, -EINVAL, &r2->start_mark, "more than one YAML document; put everything in one");
                yaml_document_delete(&next);
            }
        }
    }
    yaml_parser_delete(&parser);
    fclose(fp);
    return rc;
}

/* ---- environment ---- */

struct env_override {
    const char *var;
    const char *fallback; /* read when var is unset (Demikernel's own name) */
    const char *section;
    const char *key;      /* a key directly inside section */
};

static const struct env_override env_overrides[] = {
    { "DEMI_LIBOS", "LIBOS", "demikernel", "libos" },
    { "DEMI_LOCAL_IPV4", NULL, "demikernel", "local_ipv4_addr" },
    { "DEMI_LOCAL_MAC", NULL, "demikernel", "local_link_addr" },
    { "DEMI_WAIT_SPIN_US", NULL, "demikernel", "wait_spin_us" },
    { "DEMI_SGA_POOL_MAX_BYTES", NULL, "demikernel", "sga_pool_max_bytes" },
    { "DEMI_MTU", NULL, "inetstack_config", "mtu" },
    { "DEMI_MSS", NULL, "inetstack_config", "mss" },
    { "DEMI_TCP_NODELAY", NULL, "tcp_socket_options", "nodelay" },
    { "DEMI_CONNECT_TIMEOUT_MS", NULL, "tcp_socket_options", "connect_timeout_ms" },
    { "DEMI_CATNAP_POP_SIZE", NULL, "catnap", "pop_size" },
    { "DEMI_CATMEM_RING_SIZE", NULL, "catmem", "ring_size" },
    { "DEMI_IFNAME", NULL, "raw_socket", "linux_interface_name" },
    { "DEMI_EAL_ARGS", NULL, "dpdk", "eal_init" },
};

static const struct field *find_field(const char *section, const char *key)
{
    for (size_t i = 0; i < NELEMS(sections); i++) {
        if (strcmp(sections[i].name, section) != 0)
            continue;
        for (const struct field *f = sections[i].fields; f->key != NULL; f++) {
            if (strcmp(f->key, key) == 0)
                return f;
        }
    }
    return NULL;
}

/* Splits on white space into at most CORE_CONFIG_MAX_EAL words; no quoting. */
static int env_eal(struct ctx *c, const char *var, const char *v)
{
    char buf[4096];
    if (strlen(v) >= sizeof(buf))
        return fail(c, -EINVAL, NULL, "%s: longer than %zu bytes", var, sizeof(buf) - 1);
    memcpy(buf, v, strlen(v) + 1);
    const char *words[CORE_CONFIG_MAX_EAL];
    int n = 0;
    char *save = NULL;
    for (char *w = strtok_r(buf, " \t\n", &save); w != NULL; w = strtok_r(NULL, " \t\n", &save)) {
        if (n == CORE_CONFIG_MAX_EAL)
            return fail(c, -EINVAL, NULL, "%s: more than %d arguments", var, CORE_CONFIG_MAX_EAL);
        words[n++] = w;
    }
    return set_eal(c, var, words, n);
}

static int load_env(struct ctx *c)
{
    c->src = NULL;
    for (size_t i = 0; i < NELEMS(env_overrides); i++) {
        const struct env_override *e = &env_overrides[i];
        const char *var = e->var;
        const char *v = getenv(var);
        if ((v == NULL || v[0] == '\0') && e->fallback != NULL) {
            var = e->fallback;
            v = getenv(var);
        }
        /* Set-but-empty counts as unset, so `DEMI_MTU= prog` means "no override". */
        if (v == NULL || v[0] == '\0')
            continue;
        const struct field *f = find_field(e->section, e->key);
        if (f == NULL)
            return fail(c, -EINVAL, NULL, "%s: internal error: no key %s.%s", var, e->section, e->key);
        int rc = (f->type == F_EAL) ? env_eal(c, var, v) : set_scalar(c, f, var, v, NULL);
        if (rc < 0)
            return rc;
        LOG_DEBUG("config: %s overrides %s.%s", var, e->section, e->key);
    }
    return 0;
}

int core_config_load(struct core_config *cfg, const char *path, char *err, size_t errlen)
{
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    struct ctx c = { .cfg = cfg, .err = err, .errlen = errlen };
    if (cfg == NULL)
        return fail(&c, -EINVAL, NULL, "no configuration to fill");
    core_config_defaults(cfg);

    if (path == NULL || path[0] == '\0') {
        path = getenv("DEMI_CONFIG");
        if (path != NULL && path[0] == '\0')
            path = NULL;
    }
    int rc = 0;
    if (path != NULL) {
        rc = load_file(&c, path);
        if (rc == 0)
            LOG_DEBUG("config: loaded %s", path);
    }
    if (rc == 0)
        rc = load_env(&c);
    if (rc < 0) {
        /* Nothing half-applied survives a failure. */
        core_config_free(cfg);
        core_config_defaults(cfg);
    }
    return rc;
}
