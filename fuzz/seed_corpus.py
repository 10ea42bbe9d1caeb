#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target from vectors.json.

decode_frame: a mode byte (0: CRCs as given, 1: CRCs fixed up by the target)
then the vector's bytes; the valid vectors are also sent as one stream.
decode_batch: the content (after the header and seq) of each uncompressed
BATCH vector.
session: scripts for the gateway's session harness (awp_gateway::fuzzing).
"""
import json
import os
import sys

vectors_path, corpus = sys.argv[1], sys.argv[2]
vectors = json.load(open(vectors_path))


def write(target, name, data):
    folder = os.path.join(corpus, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "seed-" + name), "wb") as f:
        f.write(data)


def skip_varint(b, i):
    while i < len(b) and b[i] & 0x80:
        i += 1
    return i + 1


stream = b"\x00"
for section in ("valid", "invalid"):
    for v in vectors[section]:
        raw = bytes.fromhex(v["hex"])
        write("decode_frame", v["name"], b"\x00" + raw)
        write("decode_frame", v["name"] + "-fixcrc", b"\x01" + raw)
        if section == "valid":
            stream += raw
        if raw[0] == 3 and raw[1] == 0 and len(raw) > 12:
            write("decode_batch", v["name"], raw[skip_varint(raw, 12):])
write("decode_frame", "all-valid-stream", stream)

# session: scripts for awp_gateway::fuzzing, pairs of (op % 12, argument):
# 2 HELLO, 3 a vector BATCH (the argument picks which), 5 cut the next read,
# 6 an outcome (the argument picks the batch, then a kind byte: 0 stored,
# 1 retry, 2 rejected), 8 tick (argument x 20 ms), 9 end of input / drain /
# replaced / evicted (argument % 4), 10 grant budget.
sessions = {
    "stored": [2, 0, 3, 0, 3, 1, 6, 0, 0, 6, 0, 0],
    "each-outcome": [2, 0, 3, 0, 3, 1, 3, 2, 6, 0, 0, 6, 0, 1, 6, 0, 2],
    "window-and-split-reads": [2, 0, 5, 3, 3, 0, 3, 1, 3, 2, 3, 3, 3, 4, 8, 50, 6, 0, 0, 10, 0],
    "drain": [2, 0, 3, 0, 9, 1, 3, 1, 6, 0, 0],
    "replaced": [2, 0, 3, 0, 9, 2, 6, 0, 0],
    "eof": [2, 0, 3, 0, 9, 0, 6, 0, 0],
    "budget": [2, 0] + sum(([3, i] for i in range(8)), []) + [10, 0, 6, 0, 0, 10, 0],
}
for name, script in sessions.items():
    write("session", name, bytes(script))

# client_session: scripts for awp_client::fuzzing: two bytes of setup
# (window - 1, compression bits), then ops (op % 5): 0 send, 1 advance the
# clock (3 bytes of ms), 2 a frame from bytes (length, bytes: the vectors'
# server frames), 3 an ACK (pick, status 0 ok / 1 retry + 8 bytes / 2
# rejected), 4 GOAWAY / PING / PONG / ERROR (kind, 8 bytes).
client = {
    "window-four-acked-in-reverse": [3, 3, 0, 0, 0, 0, 3, 6, 0, 3, 4, 0, 3, 2, 0, 3, 0, 0],
    "retry-then-resend": [0, 1, 0, 3, 0, 1] + [0] * 7 + [100, 1, 0, 0, 200, 0, 3, 0, 0],
    "rejected-and-goaway": [1, 2, 0, 0, 3, 0, 2, 4, 0] + [0] * 7 + [50, 0, 3, 0, 0],
    "ack-timeout": [0, 0, 0, 1, 1, 0, 0],
}
for name, script in client.items():
    write("client_session", name, bytes(script))
for v in vectors.get("valid", []):
    raw = bytes.fromhex(v["hex"])
    # Frames a gateway sends: WELCOME 2, ACK 4, PING 5, PONG 6, GOAWAY 7, ERROR 8.
    if raw and raw[0] in (2, 4, 5, 6, 7, 8) and len(raw) < 256:
        write("client_session", "frame-" + v["name"], bytes([0, 3, 0, 2, len(raw)]) + raw)
