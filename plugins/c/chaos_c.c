/* chaos_c, for tests: misbehaves in the ways only native code can. Config:
 * abort_on, segfault_on, spin_on (topic patterns) and sleep_ms. An event whose
 * topic matches aborts the process, writes through a NULL pointer, or spins
 * forever; every event first sleeps sleep_ms. */
#define _POSIX_C_SOURCE 199309L
#include "plughost.h"
#include "plughost_util.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    char abort_on[256];
    char segfault_on[256];
    char spin_on[256];
    long long sleep_ms;
} chaos;

static int32_t chaos_create(const plughost_host *host, const char *config, size_t config_len, void **instance_out,
                            char *error, size_t error_capacity) {
    (void)host;
    static const char *const known[] = {"abort_on", "segfault_on", "spin_on", "sleep_ms", NULL};
    if (ph_config_check_keys(config, config_len, known, error, error_capacity) != PLUGHOST_OK) {
        return PLUGHOST_ERROR;
    }
    chaos *self = calloc(1, sizeof *self);
    if (self == NULL) {
        return ph_fail(error, error_capacity, "out of memory");
    }
    ph_config_string(config, config_len, "abort_on", self->abort_on, sizeof self->abort_on);
    ph_config_string(config, config_len, "segfault_on", self->segfault_on, sizeof self->segfault_on);
    ph_config_string(config, config_len, "spin_on", self->spin_on, sizeof self->spin_on);
    self->sleep_ms = ph_config_int(config, config_len, "sleep_ms", 0);
    *instance_out = self;
    return PLUGHOST_OK;
}

static int matches(const char *pattern, const plughost_event *event) {
    return pattern[0] != '\0' && ph_topic_matches(pattern, event->topic, event->topic_len);
}

static int32_t chaos_on_event(void *instance, const plughost_event *event, char *error, size_t error_capacity) {
    (void)error;
    (void)error_capacity;
    chaos *self = instance;
    if (self->sleep_ms > 0) {
        struct timespec pause = {self->sleep_ms / 1000, (self->sleep_ms % 1000) * 1000000L};
        nanosleep(&pause, NULL);
    }
    if (matches(self->abort_on, event)) {
        abort();
    }
    if (matches(self->segfault_on, event)) {
        volatile int *volatile nowhere = NULL;
        *nowhere = 1;
        raise(SIGSEGV);
    }
    if (matches(self->spin_on, event)) {
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
