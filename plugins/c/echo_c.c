/* echo_c: for every event it receives, publishes the same payload on
 * "echo.<topic>" (or "<prefix><topic>" with config {"prefix": "..."}).
 * Any other config key is refused. */
#include "plughost.h"
#include "plughost_util.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const plughost_host *host;
    char prefix[64];
} echo;

static int32_t echo_create(const plughost_host *host, const char *config, size_t config_len,
                           void **instance_out, char *error, size_t error_capacity) {
    /* Like logger_c and chaos_c: a misspelt key must not silently fall back
     * to the default prefix. */
    static const char *const known[] = {"prefix", NULL};
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
    if (self->host->publish(self->host->ctx, topic, prefix_len + event->topic_len, event->payload,
                            event->payload_len) != PLUGHOST_OK) {
        return ph_fail(error, error_capacity, "publish refused");
    }
    return PLUGHOST_OK;
}

static void echo_destroy(void *instance) { free(instance); }

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
