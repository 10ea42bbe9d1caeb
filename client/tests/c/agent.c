/* A desktop agent on the C ABI, for client/tests/c_abi.rs: opens a client
 * from the configuration in argv[1], pushes a record of each kind (typed
 * and JSON) and 4 x 250 locations from four threads at once, checks the
 * error answers, flushes, prints the stats, closes. Exit 0 when all held. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "awp_client.h"

#define CHECK(cond, what)                                                              \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            const char *why = awp_last_error();                                        \
            fprintf(stderr, "FAILED: %s (%s)\n", what, why ? why : "no error text");  \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

static AwpClient *client;

static void *push_locations(void *arg) {
    long thread = (long)arg;
    for (long i = 0; i < 250; i++) {
        long n = 1000 + thread * 250 + i;
        CHECK(awp_client_push_location(client, 1700000000000 + n, 1, 2, n) == AWP_OK, "push_location");
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: agent CONFIG_JSON\n");
        return 2;
    }
    /* A bad configuration: NULL, and the error names the key. */
    CHECK(awp_client_open("{\"gateways\": [\"127.0.0.1:1\"]}") == NULL, "open without tenant fails");
    CHECK(strstr(awp_last_error(), "tenant") != NULL, "the error names tenant");
    CHECK(awp_client_open("{\"queue_dri\": 1}") == NULL, "a misspelt key fails");
    CHECK(strstr(awp_last_error(), "queue_dri") != NULL, "the error names queue_dri");
    CHECK(awp_client_open(NULL) == NULL, "open(NULL) fails");

    client = awp_client_open(argv[1]);
    CHECK(client != NULL, "open");

    /* One of each kind. */
    CHECK(awp_client_push_location(client, 1700000000001, 515000000, -1000000, 1) == AWP_OK, "location");
    CHECK(awp_client_push_app_usage(client, 1700000000002, "com.example.mail", "Inbox", 2) == AWP_OK, "app_usage");
    CHECK(awp_client_push_net_usage(client, 1700000000003, "com.example.mail", 1, 3, 30) == AWP_OK, "net_usage");
    CHECK(awp_client_push_message(client, 1700000000004, 1, 3, "+15550100", 4) == AWP_OK, "message");
    static const uint8_t blob[] = {0xde, 0xad};
    AwpAttr attrs[] = {
        {.key = "ok", .kind = 1, .int_value = 1},
        {.key = "n", .kind = 2, .int_value = -5},
        {.key = "x", .kind = 3, .float_value = 2.5},
        {.key = "s", .kind = 4, .data = (const uint8_t *)"hi", .len = 2},
        {.key = "b", .kind = 5, .data = blob, .len = 2},
        {.key = "z", .kind = 0},
    };
    CHECK(awp_client_push_event(client, 1700000000005, "c.event", attrs, 6) == AWP_OK, "event");
    static const uint8_t body[] = {1, 2, 3};
    CHECK(awp_client_push_unknown(client, 1700000000006, 42, body, 3) == AWP_OK, "unknown");
    CHECK(awp_client_push_json(client,
                               "{\"kind\": 1, \"time_ms\": 1700000000007,"
                               " \"location\": {\"lat_e7\": 1, \"lon_e7\": 2, \"accuracy_m\": 7}}") == AWP_OK,
          "push_json");

    /* Bad records: refused, named, not queued. */
    CHECK(awp_client_push_json(client, "{\"kind\": 1}") == AWP_ERR_INVALID, "json without time_ms");
    CHECK(strstr(awp_last_error(), "time_ms") != NULL, "the error names time_ms");
    CHECK(awp_client_push_app_usage(client, 1700000000008, "", "", 1) == AWP_ERR_INVALID, "empty app");
    CHECK(awp_client_push_message(client, 1700000000009, 7, 0, "", 1) == AWP_ERR_INVALID, "direction 7");
    CHECK(strstr(awp_last_error(), "direction") != NULL, "the error names direction");
    CHECK(awp_client_push_event(client, 1700000000010, "e", NULL, 2) == AWP_ERR_INVALID, "attrs NULL");
    CHECK(awp_client_push_location(NULL, 1, 1, 1, 1) == AWP_ERR_INVALID, "NULL client");
    CHECK(awp_client_set_token(client, "abc", 0) == AWP_ERR_INVALID, "a short token");

    /* Four threads at once. */
    pthread_t threads[4];
    for (long t = 0; t < 4; t++) pthread_create(&threads[t], NULL, push_locations, (void *)t);
    for (int t = 0; t < 4; t++) pthread_join(threads[t], NULL);

    CHECK(awp_client_flush(client, 30000) == AWP_OK, "flush");
    char *stats = awp_client_stats_json(client);
    CHECK(stats != NULL, "stats");
    printf("%s\n", stats);
    CHECK(strstr(stats, "\"records_acked\":1007") != NULL, "1007 records acked");
    awp_string_free(stats);
    awp_string_free(NULL);
    awp_client_close(client);
    awp_client_close(NULL);
    return 0;
}
