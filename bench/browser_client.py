"""An independent client for `bench ttft`: Python's standard library only, nothing of the
app's or the bench's HTTP stack. It does what a browser does with the chat page: the htmx POST
of the composer (the fragment comes back), then the EventSource request the fragment names,
read until the first token. Beside it, the same request straight to the model server.

Prints one JSON object: the times of every round, in milliseconds.

    python3 bench/browser_client.py --app http://127.0.0.1:3000 --model http://127.0.0.1:8080/v1 \
        --rounds 20 [--new-connection] [--one-chat]
"""

import argparse
import http.client
import json
import re
import time
import urllib.parse


def connect(url):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.connect()
    # As browsers do: small writes (the request, then its body) are not held back.
    import socket

    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def read_events(response):
    """Yields (event, data) as the server-sent event stream delivers them."""
    event, data = "message", []
    while True:
        line = response.readline()
        if not line:
            return
        line = line.decode().rstrip("\r\n")
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))


def direct(model, messages):
    """Straight to the model server: the time to its first piece of text."""
    parts = urllib.parse.urlsplit(model)
    conn = connect(model)
    body = json.dumps({"model": "m", "stream": True, "max_tokens": 20, "messages": messages})
    started = time.perf_counter()
    conn.request(
        "POST",
        parts.path.rstrip("/") + "/chat/completions",
        body=body,
        headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
    )
    response = conn.getresponse()
    assert response.status == 200, response.status
    first = None
    for _, data in read_events(response):
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        choices = chunk.get("choices") or [{}]
        if first is None and (choices[0].get("delta") or {}).get("content"):
            first = time.perf_counter() - started
    conn.close()
    return first * 1000


class Browser:
    def __init__(self, app):
        self.app = app
        self.origin = app.rstrip("/")
        self.cookie = None
        self.conn = connect(app)

    def request(self, conn, method, path, body=None, headers=None):
        headers = dict(headers or {})
        headers["Origin"] = self.origin
        if self.cookie:
            headers["Cookie"] = self.cookie
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        cookie = response.getheader("Set-Cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        return response

    def new_chat(self):
        response = self.request(
            self.conn,
            "POST",
            "/chats",
            body="content=",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        response.read()
        assert response.status == 303, response.status
        return response.getheader("Location")

    def send_and_first_token(self, chat, text, new_connection):
        """The htmx POST, then the stream it names; (send ms, first token ms), both from the
        start of the POST."""
        started = time.perf_counter()
        response = self.request(
            self.conn,
            "POST",
            chat + "/messages",
            body=urllib.parse.urlencode({"content": text}),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "HX-Request": "true",
                "HX-Current-URL": self.origin + chat,
                "HX-Target": "messages",
            },
        )
        fragment = response.read().decode()
        sent = time.perf_counter() - started
        assert response.status == 200, (response.status, fragment)
        stream_path = re.search(r'sse-connect="([^"]+)"', fragment).group(1)
        conn = connect(self.app) if new_connection else self.conn
        response = self.request(
            conn,
            "GET",
            stream_path,
            headers={"Accept": "text/event-stream", "Cache-Control": "no-cache"},
        )
        assert response.status == 200, response.status
        first = None
        for event, _ in read_events(response):
            if event == "html" and first is None:
                first = time.perf_counter() - started
            if event in ("done", "error"):
                break
        if new_connection:
            conn.close()
        else:
            # The stream ended; the connection is reusable only after the body's end.
            response.read()
        return sent * 1000, first * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--app", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--new-connection", action="store_true")
    parser.add_argument(
        "--one-chat",
        action="store_true",
        help="send every round in one chat: the app's prompt then grows with the history, "
        "while the direct request stays one short message (the comparison is then unfair)",
    )
    parser.add_argument("--system-prompt", default="You are a helpful assistant.")
    parser.add_argument("--greeting", default="Hello! How can I help you today?")
    args = parser.parse_args()
    browser = Browser(args.app)
    chat = browser.new_chat()
    rounds = []
    for i in range(args.rounds):
        text = f"round {i}"
        if args.one_chat:
            messages = [{"role": "user", "content": text}]
        else:
            chat = browser.new_chat()
            # What the app sends for the first message of a new chat.
            messages = [
                {"role": "system", "content": args.system_prompt},
                {"role": "assistant", "content": args.greeting},
                {"role": "user", "content": text},
            ]
        direct_ms = direct(args.model, messages)
        sent_ms, first_ms = browser.send_and_first_token(chat, text, args.new_connection)
        rounds.append({"direct_ttft_ms": direct_ms, "send_ms": sent_ms, "app_ttft_ms": first_ms})
    print(json.dumps({"rounds": rounds}))


if __name__ == "__main__":
    main()
