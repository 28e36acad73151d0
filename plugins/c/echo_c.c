/* echo_c: for every event it receives, publishes the same payload on
 * "echo.<topic>" (or "<prefix><topic>" with config {"prefix": "..."}).
 *
 * With {"threads": N, "thread_topic": "...", "thread_count": M} it also
 * starts N pthreads of its own in `create`, each publishing M events
 * {"thread": t, "n": n} on `thread_topic` through the host table's
 * `publish` (callable from any thread between `create` and the return of
 * `destroy`, C ABI 1.3); `destroy` joins them first.
 * Any other config key is refused. */
#define _POSIX_C_SOURCE 200809L
#include "plughost.h"
#include "plughost_util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ECHO_MAX_THREADS 16

typedef struct echo echo;

typedef struct {
    echo *owner;
    long long index;
    pthread_t thread;
} publisher;

struct echo {
    const plughost_host *host;
    char prefix[64];
    char thread_topic[128];
    long long thread_count;
    long long threads;
    publisher publishers[ECHO_MAX_THREADS];
};

static void *echo_publish_from_thread(void *arg) {
    publisher *me = arg;
    echo *self = me->owner;
    for (long long n = 0; n < self->thread_count; n++) {
        char payload[64];
        int len = snprintf(payload, sizeof payload, "{\"thread\":%lld,\"n\":%lld}", me->index, n);
        /* JSON, said so where the host knows content types (C ABI 1.3). */
        int32_t status =
            PLUGHOST_HOST_HAS(self->host, publish_typed)
                ? self->host->publish_typed(self->host->ctx, self->thread_topic, strlen(self->thread_topic),
                                            (const uint8_t *)payload, (size_t)len, PLUGHOST_CONTENT_JSON)
                : self->host->publish(self->host->ctx, self->thread_topic, strlen(self->thread_topic),
                                      (const uint8_t *)payload, (size_t)len);
        if (status != PLUGHOST_OK) {
            self->host->log(self->host->ctx, PLUGHOST_LOG_WARN, "thread publish refused", 22);
            break;
        }
    }
    return NULL;
}

static int32_t echo_create(const plughost_host *host, const char *config, size_t config_len,
                           void **instance_out, char *error, size_t error_capacity) {
    /* Like logger_c and chaos_c: a misspelt key must not silently fall back
     * to the default prefix. */
    static const char *const known[] = {"prefix", "threads", "thread_topic", "thread_count", NULL};
    if (ph_config_check_keys(config, config_len, known, error, error_capacity) != PLUGHOST_OK) {
        return PLUGHOST_ERROR;
    }
    echo *self = calloc(1, sizeof *self);
    if (self == NULL) {
        return ph_fail(error, error_capacity, "out of memory");
    }
    self->host = host;
    if (ph_config_find(config, config_len, "prefix") == NULL) {
        strcpy(self->prefix, "echo.");
    } else if (ph_config_string(config, config_len, "prefix", self->prefix, sizeof self->prefix) < 0) {
        free(self);
        return ph_fail(error, error_capacity,
                       "invalid config: `prefix` must be a string of at most %zu bytes, such as \"echo.\"",
                       sizeof self->prefix - 1);
    }
    self->threads = ph_config_int(config, config_len, "threads", 0);
    self->thread_count = ph_config_int(config, config_len, "thread_count", 0);
    if (self->threads < 0 || self->threads > ECHO_MAX_THREADS) {
        free(self);
        return ph_fail(error, error_capacity, "invalid config: `threads` must be 0 to %d", ECHO_MAX_THREADS);
    }
    if (self->threads > 0 &&
        ph_config_string(config, config_len, "thread_topic", self->thread_topic, sizeof self->thread_topic) < 0) {
        free(self);
        return ph_fail(error, error_capacity, "invalid config: `threads` needs `thread_topic`, a string");
    }
    for (long long t = 0; t < self->threads; t++) {
        publisher *p = &self->publishers[t];
        p->owner = self;
        p->index = t;
        if (pthread_create(&p->thread, NULL, echo_publish_from_thread, p) != 0) {
            for (long long started = 0; started < t; started++) {
                pthread_join(self->publishers[started].thread, NULL);
            }
            free(self);
            return ph_fail(error, error_capacity, "cannot start a thread");
        }
    }
    *instance_out = self;
    return PLUGHOST_OK;
}

static int32_t echo_on_event(void *instance, const plughost_event *event, char *error, size_t error_capacity) {
    echo *self = instance;
    char topic[512];
    size_t prefix_len = strlen(self->prefix);
    if (prefix_len + event->topic_len >= sizeof topic) {
        return ph_fail(error, error_capacity, "topic too long to echo");
    }
    memcpy(topic, self->prefix, prefix_len);
    memcpy(topic + prefix_len, event->topic, event->topic_len);
    /* The echo keeps the event's content type where the host has both
     * (C ABI 1.3); an older host has neither, and publishes bytes. */
    int32_t status;
    if (PLUGHOST_HOST_HAS(self->host, publish_typed) && PLUGHOST_EVENT_HAS(self->host, content_type)) {
        status = self->host->publish_typed(self->host->ctx, topic, prefix_len + event->topic_len, event->payload,
                                           event->payload_len, event->content_type);
    } else {
        status = self->host->publish(self->host->ctx, topic, prefix_len + event->topic_len, event->payload,
                                     event->payload_len);
    }
    if (status != PLUGHOST_OK) {
        return ph_fail(error, error_capacity, "publish refused");
    }
    return PLUGHOST_OK;
}

static void echo_destroy(void *instance) {
    echo *self = instance;
    /* The host table may be used until destroy returns: join first. */
    for (long long t = 0; t < self->threads; t++) {
        pthread_join(self->publishers[t].thread, NULL);
    }
    free(self);
}

static const plughost_plugin descriptor = {
    .abi_major = PLUGHOST_ABI_MAJOR,
    .abi_minor = PLUGHOST_ABI_MINOR,
    .size = sizeof(plughost_plugin),
    .name = "echo_c",
    .version = "0.1.0",
    .create = echo_create,
    .on_event = echo_on_event,
    .stop = NULL,
    .destroy = echo_destroy,
};

PH_EXPORT const plughost_plugin *plughost_plugin_entry(void) { return &descriptor; }
