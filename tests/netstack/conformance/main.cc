// netstack_conf: runs conformance scripts (each its own ctest) and prints the first mismatch.
// Usage: netstack_conf [-v] SCRIPT...   exit 0 when all pass, 1 when one fails, 2 on usage errors.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "runner.h"
#include "script.h"

int main(int argc, char **argv)
{
    bool verbose = false;
    int first = 1;
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        verbose = true;
        first = 2;
    }
    if (first >= argc) {
        fprintf(stderr, "usage: %s [-v] SCRIPT...\n", argv[0]);
        return 2;
    }
    int failed = 0;
    for (int i = first; i < argc; i++) {
        std::ifstream in(argv[i]);
        if (!in) {
            fprintf(stderr, "%s: cannot open\n", argv[i]);
            return 2;
        }
        std::stringstream text;
        text << in.rdbuf();
        conf::Script sc;
        std::string err;
        if (!conf::parse_script(text.str(), &sc, &err)) {
            fprintf(stderr, "%s: %s\n", argv[i], err.c_str());
            return 2;
        }
        std::string log;
        if (conf::run_script(sc, argv[i], verbose, &log)) {
            printf("PASS %s\n", argv[i]);
        } else {
            printf("FAIL %s\n%s", argv[i], log.c_str());
            failed++;
        }
    }
    return failed ? 1 : 0;
}
