/*
 * JSON stream framing: turns an arbitrary sequence of byte chunks (as read
 * from a socket) into complete top-level JSON values.
 *
 * The QMP monitor reads whatever the kernel hands it: half a message, or
 * several messages at once.  The streamer finds where each top-level value
 * ends by tracking only bracket depth, strings and escapes (not the full
 * grammar), then has jansson parse exactly that text.  It also enforces the
 * contract's limits (1 MiB per value, 128 levels of nesting) without
 * buffering the rest of an offending value, so a hostile client cannot make
 * the daemon hold more than one value's worth of memory.
 *
 * Framing rules:
 *   - objects and arrays end when their bracket depth returns to zero;
 *   - a top-level string ends at its closing quote;
 *   - other top-level tokens (numbers, literals, garbage) end at whitespace
 *     or a structural character ({ } [ ] " , :), so "42" on its own is only
 *     delivered once something follows it;
 *   - a stray closing bracket at top level is a value of its own (jansson
 *     then reports it as a parse error);
 *   - a 0xFF byte silently discards any partial value.
 *
 * Threads: a JsonStreamer belongs to its creator; no locking.
 */
#ifndef UTIL_JSON_STREAMER_H
#define UTIL_JSON_STREAMER_H

#include <jansson.h>
#include <stddef.h>

#include "util/error.h"

/* Limits from the QMP contract. */
#define JSON_STREAMER_MAX_SIZE (1024 * 1024)
#define JSON_STREAMER_MAX_DEPTH 128

typedef struct JsonStreamer JsonStreamer;

/*
 * Called once per top-level value, in input order.  Exactly one of value
 * and err is non-NULL; the callee takes ownership of it (json_decref /
 * error_free).  Errors are GenericError with the contract's texts:
 * "JSON parse error, <jansson message>", "JSON message exceeds the size
 * limit of 1048576 bytes", "JSON nesting exceeds the limit of 128 levels".
 * The callback must not free the streamer.
 */
typedef void JsonStreamerEmit(void *opaque, json_t *value, Error *err);

/* Creates a streamer that reports to emit(opaque, ...). */
JsonStreamer *json_streamer_new(JsonStreamerEmit *emit, void *opaque);

/* Same, with other limits (for tests); max_size in bytes, max_depth in
 * levels of arrays/objects. */
JsonStreamer *json_streamer_new_limits(JsonStreamerEmit *emit, void *opaque,
                                       size_t max_size, unsigned max_depth);

/* Consumes len bytes; emits every value completed by them. */
void json_streamer_feed(JsonStreamer *s, const char *buf, size_t len);

/* Discards any partial value (as a 0xFF byte would). */
void json_streamer_reset(JsonStreamer *s);

void json_streamer_free(JsonStreamer *s);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(JsonStreamer, json_streamer_free)

#endif
