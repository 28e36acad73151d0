/* Frozen-ABI fixture: a small C plugin, compiled against each header kept in
 * tests/compat/c/abi-1.N/ and run in today's host by tests/compat.rs. It uses
 * what its header offers and nothing more:
 *   - every ABI: on `compat.ping` it publishes `compat.pong` with the same
 *     payload; on `compat.fail` it returns an error; `stop` logs how many
 *     events it saw; `destroy` frees the instance.
 *   - ABI 1.1 and later: `health` answers degraded, naming the ABI.
 *   - ABI 1.2 and later: `tick` counts, and the host table's `call` is used
 *     on `compat.call` (checked against the table's size first).
 *   - with COMPAT_FUTURE (only against the copy of today's header to which
 *     tests/compat.rs appends a field): it sets that field, a capability
 *     today's host does not know.
 * Keep it compiling against every header here: it stands for plugins built
 * when each was current. */
#include "plughost.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STR_(x) #x
#define STR(x) STR_(x)
#define ABI STR(PLUGHOST_ABI_MAJOR) "." STR(PLUGHOST_ABI_MINOR)

struct compat {
    const plughost_host *host;
    unsigned long events;
    unsigned long ticks;
};

static void say(const plughost_host *host, int32_t level, const char *text) {
    host->log(host->ctx, level, text, strlen(text));
}

static int32_t create(const plughost_host *host, const char *config, size_t config_len, void **instance_out,
                      char *error, size_t error_capacity) {
    (void)config;
    (void)config_len;
    struct compat *compat = calloc(1, sizeof *compat);
    if (compat == NULL) {
        snprintf(error, error_capacity, "out of memory");
        return PLUGHOST_ERROR;
    }
    compat->host = host;
    *instance_out = compat;
    say(host, PLUGHOST_LOG_INFO, "compat C plugin (ABI " ABI ") created");
    return PLUGHOST_OK;
}

static int topic_is(const plughost_event *event, const char *topic) {
    return event->topic_len == strlen(topic) && memcmp(event->topic, topic, event->topic_len) == 0;
}

static int32_t on_event(void *instance, const plughost_event *event, char *error, size_t error_capacity) {
    struct compat *compat = instance;
    compat->events++;
    if (topic_is(event, "compat.fail")) {
        snprintf(error, error_capacity, "compat C plugin (ABI " ABI ") fails on request");
        return PLUGHOST_ERROR;
    }
    if (topic_is(event, "compat.ping")) {
        return compat->host->publish(compat->host->ctx, "compat.pong", 11, event->payload, event->payload_len);
    }
#if PLUGHOST_ABI_MINOR >= 2
    if (topic_is(event, "compat.call")) {
        const plughost_host *host = compat->host;
        /* A host older than 1.2 has no `call`: its table ends before it. */
        if (host->size < offsetof(plughost_host, call) + sizeof host->call || host->call == NULL) {
            return host->publish(host->ctx, "compat.called", 13, (const uint8_t *)"absent", 6);
        }
        char answer[4096];
        int32_t ok = host->call(host->ctx, "{\"cmd\":\"list\"}", 14, answer, sizeof answer);
        const char *said = ok == PLUGHOST_OK ? "ok" : "refused";
        return host->publish(host->ctx, "compat.called", 13, (const uint8_t *)said, strlen(said));
    }
#endif
    return PLUGHOST_OK;
}

static int32_t stop(void *instance, char *error, size_t error_capacity) {
    (void)error;
    (void)error_capacity;
    struct compat *compat = instance;
    char line[128];
    snprintf(line, sizeof line, "compat C plugin (ABI " ABI ") stopped after %lu events", compat->events);
    say(compat->host, PLUGHOST_LOG_INFO, line);
    return PLUGHOST_OK;
}

static void destroy(void *instance) { free(instance); }

#if PLUGHOST_ABI_MINOR >= 1
static int32_t health(void *instance, char *message, size_t message_capacity) {
    struct compat *compat = instance;
    snprintf(message, message_capacity, "C ABI " ABI ", %lu events", compat->events);
    return PLUGHOST_HEALTH_DEGRADED;
}
#endif

#if PLUGHOST_ABI_MINOR >= 2
static int32_t tick(void *instance, char *error, size_t error_capacity) {
    (void)error;
    (void)error_capacity;
    struct compat *compat = instance;
    compat->ticks++;
    return PLUGHOST_OK;
}
#endif

#ifdef COMPAT_FUTURE
static int32_t future(void *instance) {
    (void)instance;
    return PLUGHOST_OK;
}
#endif

static const plughost_plugin descriptor = {
    .abi_major = PLUGHOST_ABI_MAJOR,
    .abi_minor = PLUGHOST_ABI_MINOR,
    .size = sizeof(plughost_plugin),
    .name = "compat-c",
    .version = ABI,
    .create = create,
    .on_event = on_event,
    .stop = stop,
    .destroy = destroy,
#if PLUGHOST_ABI_MINOR >= 1
    .health = health,
#endif
#if PLUGHOST_ABI_MINOR >= 2
    .tick = tick,
#endif
#ifdef COMPAT_FUTURE
    .compat_future = future,
#endif
};

__attribute__((visibility("default"))) const plughost_plugin *plughost_plugin_entry(void) { return &descriptor; }
