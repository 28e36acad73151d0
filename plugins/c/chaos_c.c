/* chaos_c, for tests: misbehaves in the ways only native code can. Every event
 * first sleeps `sleep_ms`; one whose topic matches `abort_on`, `segfault_on`,
 * `spin_on` or `exit_on` then aborts the process, writes through NULL, spins
 * forever, or calls exit(`exit_code`) (default 0); one that matches
 * `error_on` returns PLUGHOST_ERROR with the message
 * `chaos_c: told to fail on <topic>` (the event counts as failed, the
 * instance goes on), as `chaos`'s `error_on` does. */
#define _POSIX_C_SOURCE 199309L
#include "plughost.h"
#include "plughost_util.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    char abort_on[256];
    char segfault_on[256];
    char spin_on[256];
    char exit_on[256];
    char error_on[256];
    long long sleep_ms;
    long long exit_code;
} chaos;

/* Read the optional topic pattern `key` into `out` (left empty when absent).
 * A wrong type is refused rather than ignored: a test that misspells its
 * trigger would otherwise pass without ever crashing. */
static int32_t pattern(const char *config, size_t config_len, const char *key, char *out, size_t out_size,
                       char *error, size_t error_capacity) {
    const char *value = ph_config_find(config, config_len, key);
    if (value == NULL) {
        return PLUGHOST_OK;
    }
    if (ph_config_string(config, config_len, key, out, out_size) <= 0) {
        return ph_fail(error, error_capacity, "invalid config: `%s` must be a topic pattern string of 1 to %zu bytes",
                       key, out_size - 1);
    }
    return PLUGHOST_OK;
}

/* Read the optional non-negative integer `key` (at most `max`) into `out`.
 * The config text is NUL-terminated, and compact: a number ends at , or }. */
static int32_t integer(const char *config, size_t config_len, const char *key, long long max, long long *out,
                       char *error, size_t error_capacity) {
    const char *value = ph_config_find(config, config_len, key);
    if (value == NULL) {
        return PLUGHOST_OK;
    }
    char *rest = NULL;
    errno = 0;
    long long n = *value >= '0' && *value <= '9' ? strtoll(value, &rest, 10) : -1;
    if (n < 0 || n > max || errno == ERANGE || (*rest != ',' && *rest != '}')) {
        if (max == LLONG_MAX) {
            return ph_fail(error, error_capacity, "invalid config: `%s` must be a non-negative integer", key);
        }
        return ph_fail(error, error_capacity, "invalid config: `%s` must be an integer from 0 to %lld", key, max);
    }
    *out = n;
    return PLUGHOST_OK;
}

static int32_t chaos_create(const plughost_host *host, const char *config, size_t config_len, void **instance_out,
                            char *error, size_t error_capacity) {
    (void)host;
    static const char *const known[] = {"abort_on", "segfault_on", "spin_on",  "exit_on",
                                        "error_on", "exit_code",   "sleep_ms", NULL};
    if (ph_config_check_keys(config, config_len, known, error, error_capacity) != PLUGHOST_OK) {
        return PLUGHOST_ERROR;
    }
    chaos *self = calloc(1, sizeof *self);
    if (self == NULL) {
        return ph_fail(error, error_capacity, "out of memory");
    }
    if (pattern(config, config_len, "abort_on", self->abort_on, sizeof self->abort_on, error, error_capacity) ||
        pattern(config, config_len, "segfault_on", self->segfault_on, sizeof self->segfault_on, error,
                error_capacity) ||
        pattern(config, config_len, "spin_on", self->spin_on, sizeof self->spin_on, error, error_capacity) ||
        pattern(config, config_len, "exit_on", self->exit_on, sizeof self->exit_on, error, error_capacity) ||
        pattern(config, config_len, "error_on", self->error_on, sizeof self->error_on, error, error_capacity) ||
        integer(config, config_len, "sleep_ms", LLONG_MAX, &self->sleep_ms, error, error_capacity) ||
        integer(config, config_len, "exit_code", 255, &self->exit_code, error, error_capacity)) {
        free(self);
        return PLUGHOST_ERROR;
    }
    *instance_out = self;
    return PLUGHOST_OK;
}

static int matches(const char *pattern, const plughost_event *event) {
    return pattern[0] != '\0' && ph_topic_matches(pattern, event->topic, event->topic_len);
}

static int32_t chaos_on_event(void *instance, const plughost_event *event, char *error, size_t error_capacity) {
    chaos *self = instance;
    if (self->sleep_ms > 0) {
        struct timespec pause = {(time_t)(self->sleep_ms / 1000), (long)(self->sleep_ms % 1000) * 1000000L};
        /* A signal (the host's SIGCHLD, say) must not cut the sleep short. */
        while (nanosleep(&pause, &pause) != 0 && errno == EINTR) {
        }
    }
    if (matches(self->abort_on, event)) {
        abort();
    }
    if (matches(self->segfault_on, event)) {
        /* volatile on both sides, so the optimiser can neither drop the store
         * nor treat the NULL dereference as unreachable and fold it away. */
        volatile int *volatile nowhere = NULL;
        *nowhere = 1;
        raise(SIGSEGV); /* where address 0 happens to be mapped */
    }
    if (matches(self->exit_on, event)) {
        exit((int)self->exit_code);
    }
    if (matches(self->error_on, event)) {
        return ph_fail(error, error_capacity, "chaos_c: told to fail on %.*s", (int)event->topic_len, event->topic);
    }
    if (matches(self->spin_on, event)) {
        /* The volatile access keeps C11's "loops may be assumed to terminate"
         * rule from applying: this really spins, as a hung plugin would. */
        volatile unsigned long spins = 0;
        for (;;) {
            spins++;
        }
    }
    return PLUGHOST_OK;
}

static void chaos_destroy(void *instance) { free(instance); }

static const plughost_plugin descriptor = {
    .abi_major = PLUGHOST_ABI_MAJOR,
    .abi_minor = PLUGHOST_ABI_MINOR,
    .size = sizeof(plughost_plugin),
    .name = "chaos_c",
    .version = "0.1.0",
    .create = chaos_create,
    .on_event = chaos_on_event,
    .stop = NULL,
    .destroy = chaos_destroy,
};

PH_EXPORT const plughost_plugin *plughost_plugin_entry(void) { return &descriptor; }
