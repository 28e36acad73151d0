/* Small helpers shared by the shipped C plugins: error messages, reading
 * flat keys from the config JSON, topic pattern matching. Not part of the
 * plughost ABI; copy what you need. */
#ifndef PLUGHOST_UTIL_H
#define PLUGHOST_UTIL_H

#include "plughost.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PH_EXPORT __attribute__((visibility("default")))

/* Write a formatted message into the host's error buffer; returns PLUGHOST_ERROR. */
static inline int32_t ph_fail(char *error, size_t capacity, const char *format, ...) {
    if (error != NULL && capacity > 0) {
        va_list args;
        va_start(args, format);
        vsnprintf(error, capacity, format, args);
        va_end(args);
    }
    return PLUGHOST_ERROR;
}

/* Find the value of top-level key `key` in the flat JSON object `json`
 * (as produced by the host: compact, no nesting needed for our configs).
 * Returns a pointer to the value's first byte, or NULL. */
static inline const char *ph_config_find(const char *json, size_t len, const char *key) {
    size_t key_len = strlen(key);
    const char *end = json + len;
    int depth = 0;
    for (const char *p = json; p < end; p++) {
        if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            depth--;
        } else if (*p == '"') {
            const char *start = ++p;
            while (p < end && *p != '"') {
                p += (*p == '\\') ? 2 : 1;
            }
            if (p >= end) {
                return NULL;
            }
            if (depth == 1 && (size_t)(p - start) == key_len && memcmp(start, key, key_len) == 0 &&
                p + 1 < end && p[1] == ':') {
                return p + 2;
            }
        }
    }
    return NULL;
}

/* Copy the string value of `key` (unescaping \" and \\ only) into `out`.
 * Returns its length, or -1 when absent, not a string, or too long. */
static inline int ph_config_string(const char *json, size_t len, const char *key, char *out, size_t out_size) {
    const char *v = ph_config_find(json, len, key);
    const char *end = json + len;
    if (v == NULL || v >= end || *v != '"') {
        return -1;
    }
    size_t n = 0;
    for (v++; v < end && *v != '"'; v++) {
        if (*v == '\\' && v + 1 < end) {
            v++;
        }
        if (n + 1 >= out_size) {
            return -1;
        }
        out[n++] = *v;
    }
    out[n] = '\0';
    return (int)n;
}

/* The integer value of `key`, or `fallback` when absent. */
static inline long long ph_config_int(const char *json, size_t len, const char *key, long long fallback) {
    const char *v = ph_config_find(json, len, key);
    return v == NULL ? fallback : strtoll(v, NULL, 10);
}

/* Whether `topic` (`topic_len` bytes, a valid topic) matches the NATS-style
 * `pattern`: `*` matches one token, a final `>` one or more. */
static inline int ph_topic_matches(const char *pattern, const char *topic, size_t topic_len) {
    const char *p = pattern;
    size_t t = 0;
    for (;;) {
        const char *p_end = strchr(p, '.');
        if (p_end == NULL) {
            p_end = p + strlen(p);
        }
        size_t p_len = (size_t)(p_end - p);
        size_t t_end = t;
        while (t_end < topic_len && topic[t_end] != '.') {
            t_end++;
        }
        if (p_len == 1 && *p == '>') {
            return 1; /* at least the current token remains */
        }
        int one = p_len == 1 && *p == '*';
        if (!one && (p_len != t_end - t || memcmp(p, topic + t, p_len) != 0)) {
            return 0;
        }
        int pattern_done = *p_end == '\0';
        int topic_done = t_end == topic_len;
        if (pattern_done || topic_done) {
            return pattern_done && topic_done;
        }
        p = p_end + 1;
        t = t_end + 1;
    }
}

/* Refuse any top-level key of the config object not in `known` (NULL-ended).
 * Returns PLUGHOST_OK, or PLUGHOST_ERROR with a message in `error`. */
static inline int32_t ph_config_check_keys(const char *json, size_t len, const char *const *known, char *error,
                                           size_t error_capacity) {
    const char *end = json + len;
    int depth = 0;
    for (const char *p = json; p < end; p++) {
        if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            depth--;
        } else if (*p == '"') {
            const char *start = ++p;
            while (p < end && *p != '"') {
                p += (*p == '\\') ? 2 : 1;
            }
            if (p >= end) {
                return ph_fail(error, error_capacity, "invalid config JSON");
            }
            if (depth == 1 && p + 1 < end && p[1] == ':') {
                size_t n = (size_t)(p - start);
                int found = 0;
                for (const char *const *k = known; *k != NULL; k++) {
                    found |= strlen(*k) == n && memcmp(*k, start, n) == 0;
                }
                if (!found) {
                    return ph_fail(error, error_capacity, "unknown config key `%.*s`", (int)n, start);
                }
            }
        }
    }
    return PLUGHOST_OK;
}

#endif
