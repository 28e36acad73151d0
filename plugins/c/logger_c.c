/* logger_c: the C twin of the Rust `logger`, writing the same bytes for the same
 * events. Appends one JSON line per event to `path`: id, topic, source, timestamp,
 * and the payload by its content type (C ABI 1.3): `payload` verbatim for json,
 * `payload_text` for text, `payload_base64` for bytes (and for every event
 * from a host older than 1.3, which does not say).
 *
 * An event counts as processed only once its line is in the file: each line
 * goes out with one write() on a file opened with O_APPEND, before on_event
 * returns, whole or not at all. A crash of this process (or of the host) loses
 * no line it counted and never leaves half a line. With `fsync = true` each
 * line is also on disk (fdatasync) before on_event returns. Syncs on stop, and
 * again in destroy if lines came after stop (at the host's shutdown, what other
 * instances publish in their own stop). */
#define _POSIX_C_SOURCE 200809L
#include "plughost.h"
#include "plughost_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A growable byte buffer. `failed` records an allocation failure, checked once
 * per line instead of after every append. */
typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
    int failed;
} bytes;

/* Not stdio: a FILE buffers lines the plugin would have counted as written. */
typedef struct {
    int fd;
    int fsync; /* fdatasync after every line */
    int unsynced; /* lines written since the last fdatasync */
    bytes line; /* the line being formatted */
    const plughost_host *host; /* valid until destroy returns */
    char path[4096];
} logger;

/* What one huge event may leave allocated for the next ones. */
#define LOGGER_BUFFER (64 * 1024)

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

/* One UTF-8 sequence starting at c->p (not ASCII); advances past it. serde_json
 * checks the raw value with str::from_utf8, so this is exactly Rust's UTF-8. */
static int utf8(cursor *c) {
    uint8_t b = *c->p;
    size_t n = b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
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

static int is_hex(uint8_t b) {
    return (b >= '0' && b <= '9') || (b >= 'a' && b <= 'f') || (b >= 'A' && b <= 'F');
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
                /* Any four hex digits: serde_json does not pair surrogates
                 * when it only skips a value, so a lone \ud800 is accepted. */
                for (int i = 0; i < 4; i++, c->p++) {
                    if (c->p >= c->end || !is_hex(*c->p)) {
                        return 0;
                    }
                }
            } else if (e == 0 || strchr("\"\\/bfnrt", e) == NULL) {
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
    uint8_t *stack = malloc(capacity);
    int ok = 0;
    if (stack == NULL) {
        return 0;
    }
    for (;;) {
        /* Expect a value. */
        skip_ws(c);
        if (c->p < c->end && (*c->p == '{' || *c->p == '[')) {
            if (depth == capacity) {
                uint8_t *grown = realloc(stack, capacity * 2);
                if (grown == NULL) {
                    break;
                }
                stack = grown;
                capacity *= 2;
            }
            uint8_t kind = *c->p++;
            stack[depth++] = kind;
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
            uint8_t closer = stack[depth - 1] == '{' ? '}' : ']';
            if (c->p < c->end && *c->p == closer) {
                c->p++;
                depth--;
            } else if (c->p < c->end && *c->p == ',') {
                c->p++;
                skip_ws(c);
                if (stack[depth - 1] == '{' && !key(c)) {
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
    free(stack);
    return ok;
}

/* Whether `data` is valid UTF-8 (Rust's str::from_utf8). */
static int utf8_text(const uint8_t *data, size_t len) {
    cursor c = {data, data + len};
    while (c.p < c.end) {
        if (*c.p < 0x80) {
            c.p++;
        } else if (!utf8(&c)) {
            return 0;
        }
    }
    return 1;
}

/* If `data` is one JSON value with optional surrounding whitespace, set
 * [*start, *end) to the value without that whitespace and return 1. */
static int json_value(const uint8_t *data, size_t len, const uint8_t **start, const uint8_t **end) {
    cursor c = {data, data + len};
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

static int reserve(bytes *b, size_t more) {
    if (b->failed) {
        return 0;
    }
    if (b->cap - b->len >= more) {
        return 1;
    }
    size_t cap = b->cap == 0 ? 256 : b->cap;
    while (cap - b->len < more) {
        if (cap > SIZE_MAX / 2) {
            b->failed = 1;
            return 0;
        }
        cap *= 2;
    }
    uint8_t *grown = realloc(b->data, cap);
    if (grown == NULL) {
        b->failed = 1;
        return 0;
    }
    b->data = grown;
    b->cap = cap;
    return 1;
}

static void put(bytes *b, const void *data, size_t len) {
    if (len > 0 && reserve(b, len)) {
        memcpy(b->data + b->len, data, len);
        b->len += len;
    }
}

static void put_text(bytes *b, const char *text) { put(b, text, strlen(text)); }

static void put_u64(bytes *b, uint64_t n) {
    char digits[24];
    size_t i = sizeof digits;
    do {
        digits[--i] = (char)('0' + n % 10);
        n /= 10;
    } while (n > 0);
    put(b, digits + i, sizeof digits - i);
}

/* A JSON string, escaped as serde_json escapes it: the two-character escapes
 * where JSON has one, lowercase \u00XX for other control characters, and
 * everything else (DEL and non-ASCII included) as is. */
static void put_string(bytes *b, const char *text, size_t len) {
    static const char hex[] = "0123456789abcdef";
    put_text(b, "\"");
    char unicode[7] = "\\u00";
    size_t plain = 0; /* start of the run of bytes that need no escape */
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)text[i];
        const char *escape = NULL;
        switch (ch) {
        case '"': escape = "\\\""; break;
        case '\\': escape = "\\\\"; break;
        case '\b': escape = "\\b"; break;
        case '\f': escape = "\\f"; break;
        case '\n': escape = "\\n"; break;
        case '\r': escape = "\\r"; break;
        case '\t': escape = "\\t"; break;
        default:
            if (ch < 0x20) {
                unicode[4] = hex[ch >> 4];
                unicode[5] = hex[ch & 15];
                unicode[6] = '\0';
                escape = unicode;
            }
        }
        if (escape != NULL) {
            put(b, text + plain, i - plain);
            put_text(b, escape);
            plain = i + 1;
        }
    }
    put(b, text + plain, len - plain);
    put_text(b, "\"");
}

/* Standard base64 with padding, as base64's STANDARD engine writes it. */
static void put_base64(bytes *b, const uint8_t *data, size_t len) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    put_text(b, "\"");
    if (!reserve(b, (len + 2) / 3 * 4)) {
        return;
    }
    for (size_t i = 0; i < len; i += 3) {
        uint32_t chunk = (uint32_t)data[i] << 16;
        if (i + 1 < len) {
            chunk |= (uint32_t)data[i + 1] << 8;
        }
        if (i + 2 < len) {
            chunk |= data[i + 2];
        }
        uint8_t *out = b->data + b->len;
        out[0] = (uint8_t)alphabet[(chunk >> 18) & 63];
        out[1] = (uint8_t)alphabet[(chunk >> 12) & 63];
        out[2] = (uint8_t)(i + 1 < len ? alphabet[(chunk >> 6) & 63] : '=');
        out[3] = (uint8_t)(i + 2 < len ? alphabet[chunk & 63] : '=');
        b->len += 4;
    }
    put_text(b, "\"");
}

/* Append `data` with one write() (O_APPEND: the kernel puts it at the end,
 * never inside another writer's line). A short write (a full disk, a file size
 * limit) is finished by more; when that fails, the part already written is cut
 * off again, so the file never keeps half a line (this assumes the file is this
 * instance's). Returns 0 or the errno. */
static int append(int fd, const uint8_t *data, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        int status = n < 0 ? errno : EIO;
        if (done > 0) {
            off_t end = lseek(fd, 0, SEEK_END);
            if (end >= (off_t)done) {
                (void)!ftruncate(fd, end - (off_t)done);
            }
        }
        return status;
    }
    return 0;
}

/* Give back what one huge event made a buffer grow to. */
static void trim(bytes *b) {
    if (b->cap > LOGGER_BUFFER && b->len <= LOGGER_BUFFER) {
        uint8_t *smaller = realloc(b->data, LOGGER_BUFFER);
        if (smaller != NULL) {
            b->data = smaller;
            b->cap = LOGGER_BUFFER;
        }
    }
}

static void logger_free(logger *self) {
    free(self->line.data);
    free(self);
}

static int32_t logger_create(const plughost_host *host, const char *config, size_t config_len, void **instance_out,
                             char *error, size_t error_capacity) {
    /* The Rust logger's Config has deny_unknown_fields: a misspelt key must not
     * silently log to nowhere. */
    static const char *const known[] = {"path", "fsync", NULL};
    if (ph_config_check_keys(config, config_len, known, error, error_capacity) != PLUGHOST_OK) {
        return PLUGHOST_ERROR;
    }
    const char *value = ph_config_find(config, config_len, "path");
    if (value == NULL) {
        return ph_fail(error, error_capacity, "invalid config: missing field `path`");
    }
    if (*value != '"') {
        return ph_fail(error, error_capacity, "invalid config: `path` must be a string");
    }
    const char *fsync = ph_config_find(config, config_len, "fsync");
    int fsync_on = 0;
    if (fsync != NULL) {
        size_t left = config_len - (size_t)(fsync - config);
        if (left >= 4 && memcmp(fsync, "true", 4) == 0) {
            fsync_on = 1;
        } else if (!(left >= 5 && memcmp(fsync, "false", 5) == 0)) {
            return ph_fail(error, error_capacity, "invalid config: `fsync` must be true or false");
        }
    }
    logger *self = calloc(1, sizeof *self);
    if (self == NULL) {
        return ph_fail(error, error_capacity, "out of memory");
    }
    self->fsync = fsync_on;
    self->host = host;
    if (ph_config_string(config, config_len, "path", self->path, sizeof self->path) < 0) {
        logger_free(self);
        return ph_fail(error, error_capacity, "invalid config: `path` is longer than %zu bytes", sizeof self->path - 1);
    }
    /* What Rust's OpenOptions create+append does, close-on-exec included, so
     * that plugin processes the host spawns do not inherit the file. */
    self->fd = open(self->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (self->fd < 0) {
        int32_t status = ph_fail(error, error_capacity, "cannot open %s: %s", self->path, strerror(errno));
        logger_free(self);
        return status;
    }
    *instance_out = self;
    return PLUGHOST_OK;
}

static int32_t logger_on_event(void *instance, const plughost_event *event, char *error, size_t error_capacity) {
    logger *self = instance;
    bytes *line = &self->line;
    line->len = 0;
    put_text(line, "{\"id\":");
    put_u64(line, event->id);
    put_text(line, ",\"topic\":");
    put_string(line, event->topic, event->topic_len);
    put_text(line, ",\"source\":");
    put_string(line, event->source, event->source_len);
    put_text(line, ",\"timestamp\":");
    put_u64(line, event->timestamp_ms);
    const uint8_t *start = NULL;
    const uint8_t *end = NULL;
    int32_t content = PLUGHOST_EVENT_HAS(self->host, content_type) ? event->content_type : PLUGHOST_CONTENT_BYTES;
    /* The host checked a json or text payload; one that does not pass is
     * written as bytes, as the Rust logger does. */
    if (content == PLUGHOST_CONTENT_JSON && json_value(event->payload, event->payload_len, &start, &end)) {
        put_text(line, ",\"payload\":");
        put(line, start, (size_t)(end - start));
    } else if (content == PLUGHOST_CONTENT_TEXT && utf8_text(event->payload, event->payload_len)) {
        put_text(line, ",\"payload_text\":");
        put_string(line, (const char *)event->payload, event->payload_len);
    } else {
        put_text(line, ",\"payload_base64\":");
        put_base64(line, event->payload, event->payload_len);
    }
    put_text(line, "}\n");
    if (line->failed) {
        line->failed = 0;
        return ph_fail(error, error_capacity, "out of memory formatting event %llu", (unsigned long long)event->id);
    }
    int status = append(self->fd, line->data, line->len);
    line->len = 0;
    trim(line);
    if (status != 0) {
        return ph_fail(error, error_capacity, "cannot write to %s: %s", self->path, strerror(status));
    }
    if (!self->fsync) {
        self->unsynced = 1;
    } else if (fdatasync(self->fd) != 0) {
        return ph_fail(error, error_capacity, "cannot sync %s: %s", self->path, strerror(errno));
    }
    return PLUGHOST_OK;
}

static int32_t logger_stop(void *instance, char *error, size_t error_capacity) {
    logger *self = instance;
    if (fdatasync(self->fd) != 0) {
        return ph_fail(error, error_capacity, "cannot sync %s: %s", self->path, strerror(errno));
    }
    self->unsynced = 0;
    return PLUGHOST_OK;
}

static void logger_destroy(void *instance) {
    logger *self = instance;
    /* Lines written after stop are made as durable as those before it. */
    if (self->unsynced) {
        (void)fdatasync(self->fd);
    }
    close(self->fd);
    logger_free(self);
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
