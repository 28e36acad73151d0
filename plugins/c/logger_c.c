/* logger_c: the C twin of the Rust `logger`. Appends every event it receives
 * to `path`, one JSON object per line: id, topic, source, timestamp, and the
 * payload verbatim when it is valid JSON, else payload_base64. For the same
 * events the two loggers write the same bytes. Flushes on stop. */
#define _POSIX_C_SOURCE 200809L
#include "plughost.h"
#include "plughost_util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    FILE *out;
    char path[4096];
} logger;

/* ---- JSON validation (RFC 8259, as serde_json accepts it) ---- */

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} cursor;

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) {
        c->p++;
    }
}

static int literal(cursor *c, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) {
        return 0;
    }
    c->p += n;
    return 1;
}

static int digits(cursor *c) {
    const uint8_t *start = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        c->p++;
    }
    return c->p > start;
}

static int number(cursor *c) {
    if (c->p < c->end && *c->p == '-') {
        c->p++;
    }
    if (c->p < c->end && *c->p == '0') {
        c->p++;
    } else if (!digits(c)) {
        return 0;
    }
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (!digits(c)) {
            return 0;
        }
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) {
            c->p++;
        }
        if (!digits(c)) {
            return 0;
        }
    }
    return 1;
}

/* One UTF-8 sequence starting at c->p (not ASCII); advances past it. */
static int utf8(cursor *c) {
    uint8_t b = *c->p;
    size_t n = b >= 0xf0 && b <= 0xf4 ? 4 : b >= 0xe0 ? 3 : b >= 0xc2 && b <= 0xdf ? 2 : 0;
    if (n == 0 || (size_t)(c->end - c->p) < n) {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((c->p[i] & 0xc0) != 0x80) {
            return 0;
        }
    }
    if ((b == 0xe0 && c->p[1] < 0xa0) || (b == 0xed && c->p[1] > 0x9f) || (b == 0xf0 && c->p[1] < 0x90) ||
        (b == 0xf4 && c->p[1] > 0x8f)) {
        return 0; /* overlong, surrogate, or beyond U+10FFFF */
    }
    c->p += n;
    return 1;
}

static int string(cursor *c) {
    c->p++; /* the opening quote */
    while (c->p < c->end) {
        uint8_t b = *c->p;
        if (b == '"') {
            c->p++;
            return 1;
        }
        if (b < 0x20) {
            return 0;
        }
        if (b == '\\') {
            c->p++;
            if (c->p >= c->end) {
                return 0;
            }
            uint8_t e = *c->p++;
            if (e == 'u') {
                for (int i = 0; i < 4; i++, c->p++) {
                    if (c->p >= c->end || !((*c->p >= '0' && *c->p <= '9') || ((*c->p | 0x20) >= 'a' && (*c->p | 0x20) <= 'f'))) {
                        return 0;
                    }
                }
            } else if (!strchr("\"\\/bfnrt", e) || e == 0) {
                return 0;
            }
        } else if (b < 0x80) {
            c->p++;
        } else if (!utf8(c)) {
            return 0;
        }
    }
    return 0;
}

/* A scalar: string, number, true, false or null. */
static int scalar(cursor *c) {
    if (c->p >= c->end) {
        return 0;
    }
    switch (*c->p) {
    case '"':
        return string(c);
    case 't':
        return literal(c, "true");
    case 'f':
        return literal(c, "false");
    case 'n':
        return literal(c, "null");
    default:
        return number(c);
    }
}

/* An object key and its colon. */
static int key(cursor *c) {
    if (c->p >= c->end || *c->p != '"' || !string(c)) {
        return 0;
    }
    skip_ws(c);
    if (c->p >= c->end || *c->p != ':') {
        return 0;
    }
    c->p++;
    return 1;
}

/* One JSON value at c->p. Iterative, with the open containers on a heap
 * stack: like serde_json's RawValue, any nesting depth is fine, and deep
 * input cannot overflow the plugin thread's stack. */
static int value(cursor *c) {
    size_t depth = 0;
    size_t capacity = 64;
    uint8_t *open = malloc(capacity);
    int ok = 0;
    if (open == NULL) {
        return 0;
    }
    for (;;) {
        /* Expect a value. */
        skip_ws(c);
        if (c->p < c->end && (*c->p == '{' || *c->p == '[')) {
            if (depth == capacity) {
                uint8_t *grown = realloc(open, capacity * 2);
                if (grown == NULL) {
                    break;
                }
                open = grown;
                capacity *= 2;
            }
            uint8_t kind = *c->p++;
            open[depth++] = kind;
            skip_ws(c);
            if (c->p < c->end && *c->p == (kind == '{' ? '}' : ']')) {
                c->p++;
                depth--;
            } else if (kind == '{' && !key(c)) {
                break;
            } else {
                continue;
            }
        } else if (!scalar(c)) {
            break;
        }
        /* After a value: close containers, or go on after a comma. */
        int next = 0;
        while (!next) {
            if (depth == 0) {
                ok = 1;
                break;
            }
            skip_ws(c);
            uint8_t close = open[depth - 1] == '{' ? '}' : ']';
            if (c->p < c->end && *c->p == close) {
                c->p++;
                depth--;
            } else if (c->p < c->end && *c->p == ',') {
                c->p++;
                skip_ws(c);
                if (open[depth - 1] == '{' && !key(c)) {
                    break;
                }
                next = 1;
            } else {
                break;
            }
        }
        if (!next) {
            break;
        }
    }
    free(open);
    return ok;
}

/* If `bytes` is one JSON value with optional surrounding whitespace, set
 * [*start, *end) to the value without that whitespace and return 1. */
static int json_value(const uint8_t *bytes, size_t len, const uint8_t **start, const uint8_t **end) {
    cursor c = {bytes, bytes + len};
    skip_ws(&c);
    *start = c.p;
    if (!value(&c)) {
        return 0;
    }
    *end = c.p;
    skip_ws(&c);
    return c.p == c.end;
}

/* ---- Output ---- */

/* A JSON string, escaped as serde_json escapes it. */
static void put_string(FILE *out, const char *text, size_t len) {
    static const char hex[] = "0123456789abcdef";
    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)text[i];
        switch (ch) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\b': fputs("\\b", out); break;
        case '\f': fputs("\\f", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (ch < 0x20) {
                fprintf(out, "\\u00%c%c", hex[ch >> 4], hex[ch & 15]);
            } else {
                fputc(ch, out);
            }
        }
    }
    fputc('"', out);
}

static void put_base64(FILE *out, const uint8_t *bytes, size_t len) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    fputc('"', out);
    for (size_t i = 0; i < len; i += 3) {
        uint32_t chunk = (uint32_t)bytes[i] << 16;
        if (i + 1 < len) chunk |= (uint32_t)bytes[i + 1] << 8;
        if (i + 2 < len) chunk |= bytes[i + 2];
        fputc(alphabet[(chunk >> 18) & 63], out);
        fputc(alphabet[(chunk >> 12) & 63], out);
        fputc(i + 1 < len ? alphabet[(chunk >> 6) & 63] : '=', out);
        fputc(i + 2 < len ? alphabet[chunk & 63] : '=', out);
    }
    fputc('"', out);
}

static int32_t logger_create(const plughost_host *host, const char *config, size_t config_len, void **instance_out,
                             char *error, size_t error_capacity) {
    (void)host;
    static const char *const known[] = {"path", NULL};
    if (ph_config_check_keys(config, config_len, known, error, error_capacity) != PLUGHOST_OK) {
        return PLUGHOST_ERROR;
    }
    logger *self = calloc(1, sizeof *self);
    if (self == NULL) {
        return ph_fail(error, error_capacity, "out of memory");
    }
    if (ph_config_string(config, config_len, "path", self->path, sizeof self->path) <= 0) {
        free(self);
        return ph_fail(error, error_capacity, "invalid config: missing field `path`");
    }
    self->out = fopen(self->path, "a");
    if (self->out == NULL) {
        int32_t status = ph_fail(error, error_capacity, "cannot open %s", self->path);
        free(self);
        return status;
    }
    setvbuf(self->out, NULL, _IOFBF, 64 * 1024);
    *instance_out = self;
    return PLUGHOST_OK;
}

static int32_t logger_on_event(void *instance, const plughost_event *event, char *error, size_t error_capacity) {
    logger *self = instance;
    FILE *out = self->out;
    fprintf(out, "{\"id\":%llu,\"topic\":", (unsigned long long)event->id);
    put_string(out, event->topic, event->topic_len);
    fputs(",\"source\":", out);
    put_string(out, event->source, event->source_len);
    fprintf(out, ",\"timestamp\":%llu,", (unsigned long long)event->timestamp_ms);
    const uint8_t *start = NULL;
    const uint8_t *end = NULL;
    if (event->payload_len > 0 && json_value(event->payload, event->payload_len, &start, &end)) {
        fputs("\"payload\":", out);
        fwrite(start, 1, (size_t)(end - start), out);
    } else {
        fputs("\"payload_base64\":", out);
        put_base64(out, event->payload, event->payload_len);
    }
    fputs("}\n", out);
    if (ferror(out)) {
        return ph_fail(error, error_capacity, "cannot write to %s", self->path);
    }
    return PLUGHOST_OK;
}

static int32_t logger_stop(void *instance, char *error, size_t error_capacity) {
    logger *self = instance;
    if (fflush(self->out) != 0 || fdatasync(fileno(self->out)) != 0) {
        return ph_fail(error, error_capacity, "cannot flush %s", self->path);
    }
    return PLUGHOST_OK;
}

static void logger_destroy(void *instance) {
    logger *self = instance;
    fclose(self->out);
    free(self);
}

static const plughost_plugin descriptor = {
    .abi_major = PLUGHOST_ABI_MAJOR,
    .abi_minor = PLUGHOST_ABI_MINOR,
    .size = sizeof(plughost_plugin),
    .name = "logger_c",
    .version = "0.1.0",
    .create = logger_create,
    .on_event = logger_on_event,
    .stop = logger_stop,
    .destroy = logger_destroy,
};

PH_EXPORT const plughost_plugin *plughost_plugin_entry(void) { return &descriptor; }
