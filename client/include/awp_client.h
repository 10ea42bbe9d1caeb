/* awp_client.h: the C ABI of awp-client (the agent side of AWP/1).
 * Made by cbindgen from client/src/ffi/c.rs; do not edit by hand.
 * docs/client.md says how to embed it. */

#ifndef AWP_CLIENT_H
#define AWP_CLIENT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

// Done.
#define AWP_OK 0

// An argument is wrong: a NULL pointer, text not UTF-8, a record that
// breaks AWP/1 (the record is not queued; sending it again cannot help).
#define AWP_ERR_INVALID -1

// The disk is full: the record is not queued; what was queued is intact.
#define AWP_ERR_DISK_FULL -2

// The queue failed otherwise (an IO error): the record is not queued.
#define AWP_ERR_QUEUE -3

// The client stopped for good (AUTH_FAILED, UNSUPPORTED_VERSION).
#define AWP_ERR_STOPPED -4

// `awp_client_flush` ran out of time; the records stay queued.
#define AWP_ERR_TIMEOUT -5

// A bug in the library (a caught panic).
#define AWP_ERR_PANIC -6

// An open client (opaque).
typedef struct AwpClient AwpClient;

// An EVENT attribute: `kind` says which value field counts.
typedef struct AwpAttr {
  // The key (UTF-8, NUL-terminated, 1–128 bytes).
  const char *key;
  // 0 null, 1 bool (`int_value` 0 or 1), 2 int, 3 float, 4 string
  // (`data`/`len`, UTF-8), 5 bytes (`data`/`len`).
  uint8_t kind;
  // The value of an int or a bool.
  int64_t int_value;
  // The value of a float.
  double float_value;
  // The bytes of a string or bytes value (may be NULL when `len` is 0).
  const uint8_t *data;
  // Their length.
  size_t len;
} AwpAttr;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// Why the last call on this thread failed (NUL-terminated UTF-8), or NULL.
// Valid until the next failing call on the same thread.
const char *awp_last_error(void);

// Opens a client from its configuration (a JSON object; docs/client.md
// lists the keys): opens the queue and starts the engine's thread. NULL on
// error, with `awp_last_error` saying why (naming the key).
//
// # Safety
// `config_json` is NULL or a NUL-terminated string.
struct AwpClient *awp_client_open(const char *config_json);

// Queues a record given as JSON: the test vectors' record shape with
// `time_ms` (unix ms) in place of `time_offset_ms`. 0 once it is in the
// queue (written to the OS).
//
// # Safety
// `client` is from `awp_client_open`; `record_json` a NUL-terminated string.
int32_t awp_client_push_json(const struct AwpClient *client, const char *record_json);

// Queues a LOCATION: latitude and longitude in 1e-7 degrees, accuracy in
// metres.
//
// # Safety
// `client` is from `awp_client_open`.
int32_t awp_client_push_location(const struct AwpClient *client,
                                 uint64_t time_ms,
                                 int32_t lat_e7,
                                 int32_t lon_e7,
                                 uint64_t accuracy_m);

// Queues an APP_USAGE: the app, its window title ("" for none), its time
// in the foreground.
//
// # Safety
// `client` is from `awp_client_open`; `app` and `title` NUL-terminated.
int32_t awp_client_push_app_usage(const struct AwpClient *client,
                                  uint64_t time_ms,
                                  const char *app,
                                  const char *title,
                                  uint64_t foreground_ms);

// Queues a NET_USAGE: the app ("" for the device), the network (0 unknown,
// 1 wifi, 2 cellular, 3 ethernet, 4 other), bytes sent and received.
//
// # Safety
// `client` is from `awp_client_open`; `app` NUL-terminated.
int32_t awp_client_push_net_usage(const struct AwpClient *client,
                                  uint64_t time_ms,
                                  const char *app,
                                  uint8_t network,
                                  uint64_t bytes_tx,
                                  uint64_t bytes_rx);

// Queues a MESSAGE: direction (0 in, 1 out), channel (0 sms, 1 call,
// 2 email, 3 chat, 4 other), the peer, the size (bytes; seconds for calls).
//
// # Safety
// `client` is from `awp_client_open`; `peer` NUL-terminated.
int32_t awp_client_push_message(const struct AwpClient *client,
                                uint64_t time_ms,
                                uint8_t direction,
                                uint8_t channel,
                                const char *peer,
                                uint64_t size);

// Queues an EVENT: a name and `attr_count` attributes (`attrs` may be NULL
// when there are none).
//
// # Safety
// `client` is from `awp_client_open`; `name` NUL-terminated; `attrs`
// points to `attr_count` attributes whose pointers are valid.
int32_t awp_client_push_event(const struct AwpClient *client,
                              uint64_t time_ms,
                              const char *name,
                              const struct AwpAttr *attrs,
                              size_t attr_count);

// Queues a record of a kind this version of AWP/1 does not know (≥ 6),
// as its body bytes.
//
// # Safety
// `client` is from `awp_client_open`; `body` points to `len` bytes (or is
// NULL with `len` 0).
int32_t awp_client_push_unknown(const struct AwpClient *client,
                                uint64_t time_ms,
                                uint64_t kind,
                                const uint8_t *body,
                                size_t len);

// Seals what is queued and waits until every record was answered by the
// gateway (stored, or rejected and counted), at most `timeout_ms`. 0 then;
// `AWP_ERR_TIMEOUT` if time ran out (nothing is lost: the records stay
// queued). Blocks: never call it on a UI thread.
//
// # Safety
// `client` is from `awp_client_open`.
int32_t awp_client_flush(const struct AwpClient *client, uint32_t timeout_ms);

// Hands over a new token (64 hex digits) and its expiry (unix seconds,
// 0 never), said in the next HELLO.
//
// # Safety
// `client` is from `awp_client_open`; `token_hex` NUL-terminated.
int32_t awp_client_set_token(const struct AwpClient *client,
                             const char *token_hex,
                             uint64_t expiry);

// The client's counters as a JSON object (docs/client.md), to be freed with
// `awp_string_free`; NULL on error.
//
// # Safety
// `client` is from `awp_client_open`.
char *awp_client_stats_json(const struct AwpClient *client);

// Frees a string this library returned (NULL is fine).
//
// # Safety
// `text` is NULL or from this library, freed once.
void awp_string_free(char *text);

// Closes the client: says BYE, syncs the queue and stops the engine's
// thread (within a few seconds). What was not acknowledged stays in a disk
// queue for the next open. NULL is fine.
//
// # Safety
// `client` is NULL or from `awp_client_open`, and no other call on it runs
// or follows.
void awp_client_close(struct AwpClient *client);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* AWP_CLIENT_H */
