#!/usr/bin/env python3
"""Clicks an action on the console page in a running headless Chromium, over the DevTools
protocol (standard library only: a minimal WebSocket client), for scripts/console-check.sh.

Usage: console_action.py DEVTOOLS_PORT PAGE_URL TOKEN SCREENSHOT

Opens PAGE_URL (a transaction's detail, /console#xid=...), stores TOKEN as the page does
when asked, clicks the first enabled "Give up" button, types a reason into the confirmation
dialog, confirms, waits for the page's own notice of the outcome, prints it, and saves a
screenshot. Exits non-zero when any step does not happen.
"""

import base64
import json
import os
import socket
import struct
import sys
import time
import urllib.request


class WebSocket:
    """Just enough of RFC 6455 for the DevTools protocol: text frames, client masking."""

    def __init__(self, url):
        assert url.startswith("ws://"), url
        host_port, path = url[len("ws://"):].split("/", 1)
        host, port = host_port.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise RuntimeError("DevTools closed the connection during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"DevTools refused the WebSocket: {head!r}")

    def send(self, text):
        data = text.encode()
        header = bytes([0x81])
        n = len(data)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(header + mask + masked)

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise RuntimeError("DevTools closed the connection")
            buf += chunk
        return buf

    def recv(self):
        message = b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            payload = self._exact(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise RuntimeError("DevTools closed the WebSocket")
            if opcode in (0x9, 0xA):  # ping/pong: not used by DevTools
                continue
            message += payload
            if b0 & 0x80:
                return message.decode()


class Page:
    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def evaluate(self, expression):
        r = self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in r:
            raise RuntimeError(f"page script failed: {r['exceptionDetails']}")
        return r.get("result", {}).get("value")


CLICK = r"""
(async () => {
  const wait = (f, ms = 10000) => new Promise((resolve, reject) => {
    const t0 = Date.now();
    const timer = setInterval(() => {
      const v = f();
      if (v) { clearInterval(timer); resolve(v); }
      else if (Date.now() - t0 > ms) { clearInterval(timer); reject(new Error("timed out waiting for " + f)); }
    }, 50);
  });
  sessionStorage.setItem("seata-admin-token", TOKEN);
  const button = await wait(() => [...document.querySelectorAll("#detail button")]
    .find((b) => b.textContent === "Give up" && !b.disabled));
  button.click();
  await wait(() => document.querySelector("#confirm-dialog").open);
  document.querySelector("#reason-input").value = "restored by hand (console-check)";
  document.querySelector("#confirm-ok").click();
  const n = document.querySelector("#notice");
  try {
    return await wait(() => !n.classList.contains("hidden") && /give-up/.test(n.textContent)
      && n.className + ": " + n.textContent);
  } catch (e) {
    return "no notice of the give-up; the page shows: " + n.className + ": " + n.textContent;
  }
})()
"""


def main():
    port, url, token, shot = sys.argv[1:5]
    req = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT")
    target = json.load(urllib.request.urlopen(req, timeout=30))
    page = Page(WebSocket(target["webSocketDebuggerUrl"]))
    page.call("Emulation.setDeviceMetricsOverride", width=1400, height=900,
              deviceScaleFactor=1, mobile=False)
    page.call("Page.enable")
    page.call("Page.navigate", url=url)
    deadline = time.time() + 20
    while page.evaluate("document.body && document.body.dataset.loaded") != "1":
        if time.time() > deadline:
            raise RuntimeError("the console did not load the API")
        time.sleep(0.1)
    outcome = page.evaluate(CLICK.replace("TOKEN", json.dumps(token)))
    print(outcome)
    if not outcome or not outcome.startswith("notice ok"):
        raise RuntimeError(f"the action did not succeed: {outcome}")
    time.sleep(0.3)
    png = page.call("Page.captureScreenshot", format="png")["data"]
    with open(shot, "wb") as f:
        f.write(base64.b64decode(png))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # a failed check, said in one line for the calling script
        print(f"console_action: {e}", file=sys.stderr)
        sys.exit(1)
