"""Read a uorch timeline store with plain Python + numpy (no uorch code), to
show the format is readable elsewhere. Prints JSON with counts and user 0's
first interactions as (raw user, raw item, title, timestamp, rating text).

    .uorch/venv/bin/python tests/store_read.py STORE
"""
import json
import struct
import sys

import numpy as np

DTYPES = {"I32": np.int32, "I64": np.int64, "F32": np.float32, "U8": np.uint8}


def load_safetensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[base + a:base + b], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def main():
    store = sys.argv[1]
    manifest = json.load(open(f"{store}/manifest.json"))
    vocab = json.load(open(f"{store}/vocab.json"))
    items = [json.loads(line) for line in open(f"{store}/items.jsonl", encoding="utf-8")]
    t = load_safetensors(f"{store}/timelines.safetensors")
    offsets = t["user_offsets"]
    first = []
    for k in range(offsets[0], min(offsets[1], offsets[0] + 3)):
        item = int(t["item"][k])
        first.append([vocab["user"][0], vocab["item"][item], items[item]["title"], int(t["timestamp"][k]),
                      vocab["rating"][int(t["rating"][k])]])
    print(json.dumps({
        "format": manifest["format"],
        "users": len(offsets) - 1,
        "items": len(items),
        "interactions": int(offsets[-1]),
        "arrays": sorted(t.keys()),
        "first": first,
    }))


main()
