#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target from vectors.json.

decode_frame: a mode byte (0: CRCs as given, 1: CRCs fixed up by the target)
then the vector's bytes; the valid vectors are also sent as one stream.
decode_batch: the content (after the header and seq) of each uncompressed
BATCH vector.
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
