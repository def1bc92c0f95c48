/* Leveled logging to stderr, set by DEMI_LOG=error|warn|info|debug|trace. */
#ifndef DEMI_CORE_LOG_H
#define DEMI_CORE_LOG_H

enum core_log_level {
    CORE_LOG_OFF = 0,
    CORE_LOG_ERROR,
    CORE_LOG_WARN,
    CORE_LOG_INFO,
    CORE_LOG_DEBUG,
    CORE_LOG_TRACE,
};

extern int core_log_level;

/* Read DEMI_LOG; returns -EINVAL (and keeps the default, warn) on an unknown value. */
int core_log_init(void);
/* Parse a level name; -EINVAL if unknown. */
int core_log_parse(const char *name);

void core_log_write(enum core_log_level lvl, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define CORE_LOG(lvl, ...)                                                   \
    do {                                                                     \
        if ((int)(lvl) <= core_log_level)                                    \
            core_log_write((lvl), __FILE__, __LINE__, __VA_ARGS__);          \
    } while (0)
#define LOG_ERROR(...) CORE_LOG(CORE_LOG_ERROR, __VA_ARGS__)
#define LOG_WARN(...) CORE_LOG(CORE_LOG_WARN, __VA_ARGS__)
#define LOG_INFO(...) CORE_LOG(CORE_LOG_INFO, __VA_ARGS__)
#define LOG_DEBUG(...) CORE_LOG(CORE_LOG_DEBUG, __VA_ARGS__)
#define LOG_TRACE(...) CORE_LOG(CORE_LOG_TRACE, __VA_ARGS__)

#endif /* DEMI_CORE_LOG_H */
