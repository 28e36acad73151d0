/* bench_c: the C twin of the Rust bench plugin (bench/plugin/src/lib.rs).
 * Counts events and sums a checksum of each payload: FNV-1a-64 over the
 * payload's 8-byte little-endian words, then over its tail bytes one by one
 * (the same function as the Rust plugin's `checksum`). On stop it writes
 * {"count": n, "checksum": c} to the config's `result_path`. */
#include "plughost.h"
#include "plughost_util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

typedef struct {
    uint64_t count;
    uint64_t checksum;
    char path[4096];
} bench;

/* Little-endian on every host, so both plugins hash the same words. */
static uint64_t load_le64(const uint8_t *p) {
    uint64_t word = 0;
    for (int i = 7; i >= 0; i--) {
        word = (word << 8) | p[i];
    }
    return word;
}

static uint64_t checksum(const uint8_t *bytes, size_t len) {
    uint64_t hash = FNV_OFFSET;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        hash = (hash ^ load_le64(bytes + i)) * FNV_PRIME;
    }
    for (; i < len; i++) {
        hash = (hash ^ bytes[i]) * FNV_PRIME;
    }
    return hash;
}

static int32_t bench_create(const plughost_host *host, const char *config, size_t config_len, void **instance_out,
                            char *error, size_t error_capacity) {
    (void)host;
    static const char *const known[] = {"result_path", NULL};
    if (ph_config_check_keys(config, config_len, known, error, error_capacity) != PLUGHOST_OK) {
        return PLUGHOST_ERROR;
    }
    bench *self = calloc(1, sizeof *self);
    if (self == NULL) {
        return ph_fail(error, error_capacity, "out of memory");
    }
    if (ph_config_string(config, config_len, "result_path", self->path, sizeof self->path) <= 0) {
        free(self);
        return ph_fail(error, error_capacity, "invalid config: `result_path` must be a path string of 1 to %zu bytes",
                       sizeof self->path - 1);
    }
    *instance_out = self;
    return PLUGHOST_OK;
}

static int32_t bench_on_event(void *instance, const plughost_event *event, char *error, size_t error_capacity) {
    (void)error;
    (void)error_capacity;
    bench *self = instance;
    self->count++;
    self->checksum += checksum(event->payload, event->payload_len);
    return PLUGHOST_OK;
}

static int32_t bench_stop(void *instance, char *error, size_t error_capacity) {
    bench *self = instance;
    FILE *out = fopen(self->path, "w");
    if (out == NULL) {
        return ph_fail(error, error_capacity, "cannot write %s", self->path);
    }
    int written = fprintf(out, "{\"count\":%llu,\"checksum\":%llu}", (unsigned long long)self->count,
                          (unsigned long long)self->checksum);
    if (fclose(out) != 0 || written < 0) {
        return ph_fail(error, error_capacity, "cannot write %s", self->path);
    }
    return PLUGHOST_OK;
}

static void bench_destroy(void *instance) { free(instance); }

static const plughost_plugin descriptor = {
    .abi_major = PLUGHOST_ABI_MAJOR,
    .abi_minor = PLUGHOST_ABI_MINOR,
    .size = sizeof(plughost_plugin),
    .name = "bench_c",
    .version = "0.1.0",
    .create = bench_create,
    .on_event = bench_on_event,
    .stop = bench_stop,
    .destroy = bench_destroy,
};

__attribute__((visibility("default"))) const plughost_plugin *plughost_plugin_entry(void) { return &descriptor; }
