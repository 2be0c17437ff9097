#!/usr/bin/env python3
"""Search, export and import at scale, through the JSON API of a running app.

Imports 10 chats of 10,000 messages each (about 2.5 MB per export), then times (median of 5):
a search for a word in one message of the 100,000, a search for a word in most messages (the
first 50 hits), and the JSON and Markdown exports of one chat.

    RATE_LIMITS=off MAX_IMPORT_BYTES=67108864 BIND_ADDR=127.0.0.1:13077 app &
    python3 bench/scripts/features.py http://127.0.0.1:13077
"""
import json
import random
import sys
import time
import urllib.request

base = sys.argv[1].rstrip("/") + "/api/v1"
token = json.load(urllib.request.urlopen(urllib.request.Request(base + "/tokens", method="POST")))["token"]
headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
words = "the quick brown fox jumps over lazy dog tea coffee rust python stream token model reply".split()
random.seed(1)

elapsed = 0.0
for c in range(10):
    messages = [
        {
            "role": "user" if i % 2 == 0 else "assistant",
            "content": " ".join(random.choice(words) for _ in range(40)) + (" zanzibar" if (c, i) == (3, 4321) else ""),
        }
        for i in range(10000)
    ]
    document = json.dumps({"format": "chat-export", "version": 1, "title": f"Big chat {c}", "messages": messages}).encode()
    started = time.time()
    response = urllib.request.urlopen(urllib.request.Request(base + "/chats/import", data=document, headers=headers, method="POST"))
    elapsed += time.time() - started
    last = json.load(response)["id"]
print(f"import of 10,000 messages ({len(document) / 1e6:.1f} MB): {elapsed / 10 * 1000:.0f} ms")


def median_ms(path):
    times = []
    for _ in range(5):
        started = time.time()
        body = urllib.request.urlopen(urllib.request.Request(base + path, headers=headers)).read()
        times.append(time.time() - started)
    times.sort()
    return times[2] * 1000, len(body)


print("search, a word in 1 of 100,000 messages: %.0f ms (%d bytes)" % median_ms("/search?q=zanzibar"))
print("search, a word in most messages (first 50): %.0f ms (%d bytes)" % median_ms("/search?q=coffee"))
print("export JSON, 10,000 messages: %.0f ms (%d bytes)" % median_ms(f"/chats/{last}/export?format=json"))
print("export Markdown, 10,000 messages: %.0f ms (%d bytes)" % median_ms(f"/chats/{last}/export?format=md"))
