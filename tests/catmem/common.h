/* Helpers shared by the catmem test files: unique pipe names, one-message push and pop, and direct access to a pipe's region. */
#ifndef DEMI_TESTS_CATMEM_COMMON_H
#define DEMI_TESTS_CATMEM_COMMON_H

#include "system/syshelp.h"

#include <atomic>
#include <string>

#include <sys/stat.h>

#include "../../libos/catmem/catmem.h"

namespace cmtest {

using namespace syshelp;

/* A pipe name no other test (or earlier run) uses. */
inline std::string unique_name(const char *tag)
{
    static std::atomic<unsigned> n{0};
    return std::string("t-") + tag + "-" + std::to_string(getpid()) + "-" + std::to_string(now_ns() % 1000000) + "-" +
           std::to_string(n++);
}

inline std::string shm_path(const std::string &name) { return std::string("/dev/shm") + CM_SHM_PREFIX + name; }

/* Push one message of len bytes from buf; returns the completion (PUSH or FAILED). */
inline demi_qresult_t push_msg(int qd, const void *buf, size_t len)
{
    demi_sgarray_t sga = demi_sgaalloc(len);
    CHECK(sga.sga_numsegs == 1, "demi_sgaalloc(%zu) failed", len);
    memcpy(sga.sga_segs[0].sgaseg_buf, buf, len);
    sga.sga_segs[0].sgaseg_len = (uint32_t)len;
    demi_qtoken_t qt;
    CHECK_DEMI(demi_push(&qt, qd, &sga));
    demi_qresult_t qr;
    struct timespec to = secs(kOpTimeoutS);
    int rc = demi_wait(&qr, qt, &to);
    CHECK(rc == 0, "demi_wait(push) returned %d (%s)", rc, strerror(rc));
    CHECK_DEMI(demi_sgafree(&sga));
    return qr;
}

/* Wait for one pop; returns the completion (the caller frees a popped sga). */
inline demi_qresult_t pop_msg(int qd, int timeout_s = kOpTimeoutS)
{
    demi_qtoken_t qt;
    CHECK_DEMI(demi_pop(&qt, qd));
    demi_qresult_t qr;
    struct timespec to = secs(timeout_s);
    int rc = demi_wait(&qr, qt, &to);
    CHECK(rc == 0, "demi_wait(pop) returned %d (%s)", rc, strerror(rc));
    return qr;
}

/* Map a pipe's region directly, as a misbehaving peer of the same user could. */
inline struct cm_hdr *map_region(const std::string &name, size_t *size_out)
{
    std::string path = std::string(CM_SHM_PREFIX) + name;
    int fd = shm_open(path.c_str(), O_RDWR, 0);
    CHECK(fd >= 0, "shm_open(%s): %s", path.c_str(), strerror(errno));
    struct stat st;
    CHECK(fstat(fd, &st) == 0, "fstat: %s", strerror(errno));
    void *p = mmap(nullptr, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
    *size_out = (size_t)st.st_size;
    return (struct cm_hdr *)p;
}

/* The control block of ring i (0: creator to opener, 1: opener to creator) in a mapped region. */
inline struct catmem_ring_ctl *ring_ctl(struct cm_hdr *h, int i)
{
    return (struct catmem_ring_ctl *)((uint8_t *)h + CM_HDR_BYTES + (size_t)i * catmem_ring_bytes(h->ring_cap));
}

} // namespace cmtest

#endif
