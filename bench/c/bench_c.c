/* bench_c: the C twin of the Rust bench plugin: counts events and sums the
 * FNV-1a hash of each payload; on stop writes {"count","checksum"} to the
 * config's result_path. */
#include "plughost.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t count;
    uint64_t checksum;
    char path[4096];
} bench;

static int32_t bench_create(const plughost_host *host, const char *config, size_t config_len, void **instance_out,
                            char *error, size_t error_capacity) {
    (void)host;
    bench *self = calloc(1, sizeof *self);
    const char *key = strstr(config, "\"result_path\":\"");
    if (self == NULL || key == NULL) {
        free(self);
        snprintf(error, error_capacity, "config needs result_path");
        return PLUGHOST_ERROR;
    }
    key += strlen("\"result_path\":\"");
    const char *end = memchr(key, '"', config_len - (size_t)(key - config));
    size_t n = end == NULL ? 0 : (size_t)(end - key);
    if (n == 0 || n >= sizeof self->path) {
        free(self);
        snprintf(error, error_capacity, "bad result_path");
        return PLUGHOST_ERROR;
    }
    memcpy(self->path, key, n);
    *instance_out = self;
    return PLUGHOST_OK;
}

static int32_t bench_on_event(void *instance, const plughost_event *event, char *error, size_t error_capacity) {
    (void)error;
    (void)error_capacity;
    bench *self = instance;
    uint64_t hash = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < event->payload_len; i++) {
        hash = (hash ^ event->payload[i]) * 0x100000001b3ULL;
    }
    self->count++;
    self->checksum += hash;
    return PLUGHOST_OK;
}

static int32_t bench_stop(void *instance, char *error, size_t error_capacity) {
    bench *self = instance;
    FILE *out = fopen(self->path, "w");
    if (out == NULL) {
        snprintf(error, error_capacity, "cannot write %s", self->path);
        return PLUGHOST_ERROR;
    }
    fprintf(out, "{\"count\":%llu,\"checksum\":%llu,\"latencies_ns\":[]}", (unsigned long long)self->count,
            (unsigned long long)self->checksum);
    fclose(out);
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
