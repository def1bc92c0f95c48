/*
 * demi-nsstat: print the network-stack counters of running catpowder/catnip
 * processes (name, value, description) from their /dev/shm/demi-netstack.<pid>
 * files. Files of dead processes, and of reused pids, are ignored.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nsstat_shm.h"

static uint64_t start_ticks(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return 0;
    int field = 2;
    for (char *t = strtok(p + 1, " "); t != NULL; t = strtok(NULL, " "))
        if (++field == 22)
            return strtoull(t, NULL, 10);
    return 0;
}

static bool alive(long pid) { return kill((pid_t)pid, 0) == 0 || errno == EPERM; }

/* Print one process's counters; 0 on success, 1 if its file is missing, stale or malformed. */
static int show(long pid, bool nonzero_only, bool quiet_missing)
{
    char path[96];
    snprintf(path, sizeof(path), "/dev/shm/%s%ld", NSSTAT_SHM_PREFIX, pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (!quiet_missing)
            fprintf(stderr, "demi-nsstat: no counters for pid %ld (%s: %s)\n", pid, path, strerror(errno));
        return 1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || (uint64_t)st.st_size < sizeof(struct nsstat_shm_hdr)) {
        close(fd);
        fprintf(stderr, "demi-nsstat: %s is not a counters file\n", path);
        return 1;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        fprintf(stderr, "demi-nsstat: %s: %s\n", path, strerror(errno));
        return 1;
    }
    struct nsstat_shm_hdr *h = m;
    int rc = 1;
    if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != NSSTAT_SHM_MAGIC || h->version != NSSTAT_SHM_VERSION ||
        nsstat_size(h->count) > (uint64_t)st.st_size || h->count > 100000) {
        fprintf(stderr, "demi-nsstat: %s: unknown format\n", path);
        goto out;
    }
    if (!alive(pid) || (h->start_ticks != 0 && start_ticks(pid) != h->start_ticks)) {
        if (!quiet_missing)
            fprintf(stderr, "demi-nsstat: pid %ld is gone (stale %s ignored)\n", pid, path);
        goto out;
    }
    uint32_t n = h->count;
    uint64_t *vals = malloc((size_t)n * sizeof(uint64_t) + 1);
    if (vals == NULL)
        goto out;
    /* Seqlock read: retry while the writer is in the middle of an update. */
    for (int tries = 0; tries < 1000; tries++) {
        uint64_t s1 = __atomic_load_n(&h->seq, __ATOMIC_ACQUIRE);
        if (s1 & 1)
            continue;
        /* Acquire loads keep the re-read of seq after every value read. */
        const uint64_t *src = nsstat_values(h);
        for (uint32_t i = 0; i < n; i++)
            vals[i] = __atomic_load_n(&src[i], __ATOMIC_ACQUIRE);
        if (__atomic_load_n(&h->seq, __ATOMIC_RELAXED) == s1)
            break;
    }
    char libos[sizeof(h->libos) + 1];
    memcpy(libos, h->libos, sizeof(h->libos));
    libos[sizeof(h->libos)] = '\0';
    printf("pid %ld (%s), %u counters\n", pid, libos, n);
    const struct nsstat_shm_desc *d = (const struct nsstat_shm_desc *)(h + 1);
    for (uint32_t i = 0; i < n; i++) {
        if (nonzero_only && vals[i] == 0)
            continue;
        printf("%-*.*s %20llu  %.*s\n", 28, NSSTAT_NAME_LEN, d[i].name, (unsigned long long)vals[i],
               NSSTAT_HELP_LEN, d[i].help);
    }
    free(vals);
    rc = 0;
out:
    munmap(m, (size_t)st.st_size);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: demi-nsstat [-n] [PID]\n"
               "Print the network-stack counters (name, value, description) of a process running a\n"
               "netstack LibOS (catpowder), or of every such process when no PID is given.\n"
               "  -n  only counters that are not zero\n");
}

int main(int argc, char **argv)
{
    bool nonzero = false;
    long pid = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0) {
            nonzero = true;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            char *end;
            pid = strtol(argv[i], &end, 10);
            if (*end != '\0' || pid <= 0) {
                usage(stderr);
                return 2;
            }
        }
    }
    if (pid > 0)
        return show(pid, nonzero, false);
    DIR *d = opendir("/dev/shm");
    if (d == NULL) {
        fprintf(stderr, "demi-nsstat: /dev/shm: %s\n", strerror(errno));
        return 1;
    }
    size_t plen = strlen(NSSTAT_SHM_PREFIX);
    int shown = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, NSSTAT_SHM_PREFIX, plen) != 0)
            continue;
        char *end;
        long p = strtol(e->d_name + plen, &end, 10);
        if (*end != '\0' || p <= 0)
            continue;
        if (show(p, nonzero, true) == 0) {
            shown++;
            printf("\n");
        }
    }
    closedir(d);
    if (shown == 0) {
        fprintf(stderr, "demi-nsstat: no running process has a network stack\n");
        return 1;
    }
    return 0;
}
