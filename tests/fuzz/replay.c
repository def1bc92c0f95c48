/*
 * Corpus replay for builds without libFuzzer (gcc, the ASan tree): runs the
 * frame fuzzer's entry point once over every file named on the command line
 * or found in a directory named there, so each CI tree replays the corpus.
 * Chain: ctest fuzz_replay -> main -> LLVMFuzzerTestOneInput (fuzz_frames.c).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_frames.h"

static int run_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        perror(path);
        return -1;
    }
    static uint8_t data[1 << 20];
    size_t n = fread(data, 1, sizeof(data), fp);
    int err = ferror(fp);
    fclose(fp);
    if (err) {
        fprintf(stderr, "%s: read error\n", path);
        return -1;
    }
    LLVMFuzzerTestOneInput(data, n);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 2;
    }
    int files = 0, rc = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) < 0) {
            perror(argv[i]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            rc |= run_file(argv[i]);
            files++;
            continue;
        }
        /* Sorted, so a failure names the same file on every machine. */
        struct dirent **list;
        int n = scandir(argv[i], &list, NULL, alphasort);
        if (n < 0) {
            perror(argv[i]);
            return 1;
        }
        for (int j = 0; j < n; j++) {
            char path[4096];
            if (list[j]->d_name[0] != '.' &&
                snprintf(path, sizeof(path), "%s/%s", argv[i], list[j]->d_name) < (int)sizeof(path)) {
                printf("replay %s\n", list[j]->d_name);
                fflush(stdout);
                rc |= run_file(path);
                files++;
            }
            free(list[j]);
        }
        free(list);
    }
    printf("replayed %d input(s)\n", files);
    if (files == 0) {
        fprintf(stderr, "no inputs found\n");
        return 1;
    }
    return rc ? 1 : 0;
}
