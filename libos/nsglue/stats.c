/*
 * The counters file: /dev/shm/demi-netstack.<pid> (0600) mirrors the stack's,
 * the binding's and the device's counters for demi-nsstat. Call chain:
 * nsglue_poll -> stats_publish -> nsglue_shm_publish (a seqlock around one
 * copy, only when something changed). Removed at exit; files of dead
 * processes are removed by the next process that starts a stack.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "nsglue.h"
#include "nsstat_shm.h"

static struct {
    struct nsstat_shm_hdr *h;
    uint64_t size;
    pid_t owner;
    char path[64];
} sh;

/* Field 22 of /proc/<pid>/stat (start time in clock ticks), 0 if unreadable. */
static uint64_t start_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: count fields after the last ')'. */
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return 0;
    int field = 2;
    for (char *t = strtok(p + 1, " "); t != NULL; t = strtok(NULL, " ")) {
        if (++field == 22)
            return strtoull(t, NULL, 10);
    }
    return 0;
}

static void remove_stale(void)
{
    DIR *d = opendir("/dev/shm");
    if (d == NULL)
        return;
    struct dirent *e;
    size_t plen = strlen(NSSTAT_SHM_PREFIX);
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, NSSTAT_SHM_PREFIX, plen) != 0)
            continue;
        char *end;
        long pid = strtol(e->d_name + plen, &end, 10);
        if (*end != '\0' || pid <= 0)
            continue;
        if (kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
            char path[300];
            snprintf(path, sizeof(path), "/dev/shm/%s", e->d_name);
            unlink(path);
        }
    }
    closedir(d);
}

int nsglue_shm_open(const char *libos, const struct nsglue_stat_src *src, unsigned n)
{
    remove_stale();
    pid_t pid = getpid();
    snprintf(sh.path, sizeof(sh.path), "/dev/shm/%s%d", NSSTAT_SHM_PREFIX, (int)pid);
    /* A leftover of an earlier process with our pid is replaced; nobody else writes our pid's file. */
    int fd = open(sh.path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    uint64_t size = nsstat_size(n);
    if (ftruncate(fd, (off_t)size) < 0) {
        int e = errno;
        close(fd);
        unlink(sh.path);
        return -e;
    }
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        int e = errno;
        unlink(sh.path);
        return -e;
    }
    struct nsstat_shm_hdr *h = m;
    h->version = NSSTAT_SHM_VERSION;
    h->count = n;
    h->pid = (uint32_t)pid;
    h->start_ticks = start_ticks(pid);
    snprintf(h->libos, sizeof(h->libos), "%s", libos);
    struct nsstat_shm_desc *desc = (struct nsstat_shm_desc *)(h + 1);
    for (unsigned i = 0; i < n; i++) {
        snprintf(desc[i].name, sizeof(desc[i].name), "%s", src[i].name ? src[i].name : "?");
        snprintf(desc[i].help, sizeof(desc[i].help), "%s", src[i].help ? src[i].help : "");
    }
    /* The magic last: a reader that sees it sees a complete header. */
    __atomic_store_n(&h->magic, NSSTAT_SHM_MAGIC, __ATOMIC_RELEASE);
    sh.h = h;
    sh.size = size;
    sh.owner = pid;
    return 0;
}

void nsglue_shm_publish(const uint64_t *values, unsigned n)
{
    struct nsstat_shm_hdr *h = sh.h;
    if (h == NULL || n != h->count)
        return;
    /* An acquire RMW (not a fence, which ThreadSanitizer cannot model) keeps the value stores
     * after the odd sequence number. */
    uint64_t s = __atomic_fetch_add(&h->seq, 1, __ATOMIC_ACQ_REL);
    uint64_t *dst = nsstat_values(h);
    for (unsigned i = 0; i < n; i++)
        __atomic_store_n(&dst[i], values[i], __ATOMIC_RELAXED);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    h->updated_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    __atomic_store_n(&h->seq, s + 2, __ATOMIC_RELEASE);
}

void nsglue_shm_close(void)
{
    if (sh.h == NULL)
        return;
    if (sh.owner == getpid())
        unlink(sh.path);
    munmap(sh.h, sh.size);
    sh.h = NULL;
}

void nsglue_shm_forget(void)
{
    if (sh.h != NULL)
        munmap(sh.h, sh.size);
    sh.h = NULL;
}
