"""Self-check of the canary tests' peers, without the exporter: starts each one and drives it
directly over HTTP (urllib), checking that it answers as tests/canaries.rs assumes. When a
pinned SDK changes its behaviour, this says which peer and how, before the Rust tests fail on
the exporter's side.

  check_canary_peers.py PEERS_PYTHON A2A03_PYTHON LITELLM_PYTHON

Prints one PASS line per check and "N passed, 0 failed"; exits 1 on the first failure."""
import json
import pathlib
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
passed = 0


def check(what, condition, detail):
    global passed
    if not condition:
        print(f"FAIL: {what}: {detail}", flush=True)
        print(f"{passed} passed, 1 failed")
        sys.exit(1)
    passed += 1
    print(f"PASS: {what}", flush=True)


class Peer:
    def __init__(self, python, script, *args):
        self.process = subprocess.Popen([python, "-u", str(HERE / script), *args],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("ready "):
            sys.exit(f"{script} {' '.join(args)} did not start: {line!r}")
        self.base = f"http://127.0.0.1:{int(line.split()[1])}"

    def stop(self):
        self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def post(url, body, headers=None, timeout=10):
    """Status, content type and body (text) of a POST of JSON."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.headers.get("Content-Type", ""), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode()


def a2a(python, script, version):
    question = "What is 2+2? Answer with the digit only."
    if version == "1.0":
        method, headers = "SendMessage", {"A2A-Version": "1.0"}
        message = {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": question}]}
    else:
        method, headers = "message/send", {}
        message = {"messageId": "m1", "kind": "message", "role": "user",
                   "parts": [{"kind": "text", "text": question}]}
    expected = {"answer": ("completed", "4"), "fail": ("failed", "model backend unavailable"),
                "reject": ("rejected", "does not do arithmetic"),
                "input": ("input", "Which number system"), "auth": ("auth", "Sign in")}
    for behaviour, (state, text) in expected.items():
        peer = Peer(python, script, "--behaviour", behaviour)
        try:
            status, _, body = post(peer.base + "/", {"jsonrpc": "2.0", "id": 1, "method": method,
                                                     "params": {"message": message}}, headers)
            result = json.loads(body).get("result", {})
            task = result.get("task", result)
            got = task.get("status", {}).get("state", "").lower()
            check(f"a2a {version} {behaviour}: task state {state}, text {text!r}",
                  status == 200 and state in got and text in body, body[:400])
        finally:
            peer.stop()


def mcp(python):
    peer = Peer(python, "mcp_canary_server.py")
    headers = {"Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2025-06-18"}
    try:
        status, _, body = post(peer.base + "/mcp", {
            "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "self-check", "version": "1"}}}, headers)
        check("mcp initialize", status == 200 and "peer-canary-tools" in body, body[:300])
    finally:
        peer.stop()
    peer = Peer(python, "mcp_canary_server.py", "--json", "--stateless")
    try:
        calls = [("echo", {"text": "canary"}, '"isError":false', '"text":"canary"'),
                 ("forecast", {"city": "Oslo"}, '"isError":false', '"celsius":21'),
                 ("fail", {}, '"isError":true', "search backend unavailable"),
                 ("sleep", {"seconds": 0.2}, '"isError":false', "awake")]
        for tool, arguments, flag, text in calls:
            status, _, body = post(peer.base + "/mcp", {
                "jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": tool, "arguments": arguments}}, headers)
            check(f"mcp tools/call {tool}: {flag}, {text!r}",
                  status == 200 and flag in body and text in body, body[:300])
        started = time.monotonic()
        try:
            post(peer.base + "/mcp", {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                      "params": {"name": "sleep", "arguments": {"seconds": 30}}},
                 headers, timeout=1)
            slept = False
        except TimeoutError:
            slept = True
        except urllib.error.URLError as error:
            slept = isinstance(error.reason, TimeoutError)
        check("mcp tools/call sleep 30: no answer within 1s", slept,
              f"answered after {time.monotonic() - started:.1f}s")
    finally:
        peer.stop()


def litellm(python, relay_python):
    started = time.monotonic()
    peer = Peer(python, "litellm_server.py")
    print(f"  LiteLLM's proxy served after {time.monotonic() - started:.1f}s", flush=True)
    key = {"Authorization": "Bearer sk-canary-peer"}
    chat = lambda model, **more: {"model": model, "max_tokens": 8,  # noqa: E731
                                   "messages": [{"role": "user", "content": "Say pong."}], **more}
    relays = []
    try:
        url = peer.base + "/v1/chat/completions"
        status, _, body = post(url, chat("small"), key)
        answer = json.loads(body)
        check("openai small: pong with finish_reason stop and usage 10/20",
              status == 200 and answer["choices"][0]["message"]["content"] == "pong"
              and answer["choices"][0]["finish_reason"] == "stop"
              and answer["usage"]["prompt_tokens"] == 10
              and answer["usage"]["completion_tokens"] == 20, body[:300])
        status, kind, body = post(url, chat("small", stream=True,
                                            stream_options={"include_usage": True}), key)
        check("openai small streamed: SSE chunks, finish_reason, usage, [DONE]",
              status == 200 and kind.startswith("text/event-stream") and '"pon"' in body
              and '"finish_reason":"stop"' in body and '"prompt_tokens":10' in body
              and "data: [DONE]" in body, body[:600])
        for model, content in [("slashes", "////////////"), ("blank", "   \n  ")]:
            status, _, body = post(url, chat(model), key)
            got = json.loads(body)["choices"][0]["message"]["content"]
            check(f"openai {model}: answers {content!r}", status == 200 and got == content, body)
        status, _, body = post(url, chat("weather"), key)
        got = json.loads(json.loads(body)["choices"][0]["message"]["content"])
        check("openai weather: a JSON answer", got.get("sky") == "clear", body)
        status, _, body = post(url, chat("small"), {"Authorization": "Bearer sk-not-the-key"})
        check("openai with a wrong key: refused (not 2xx)", not 200 <= status < 300,
              f"{status} {body[:200]}")
        port = peer.base.rsplit(":", 1)[1]
        for mode in ["stall", "truncate", "reset"]:
            relay = Peer(relay_python, "stall_relay.py", "--upstream", port, "--mode", mode)
            relays.append(relay)
            with urllib.request.urlopen(relay.base + "/health/liveliness", timeout=5) as health:
                check(f"relay {mode}: the health endpoint passes through", health.status == 200,
                      health.status)
            request = urllib.request.Request(
                relay.base + "/v1/chat/completions", method="POST",
                data=json.dumps(chat("small", stream=True)).encode(),
                headers={"Content-Type": "application/json", **key})
            try:
                with urllib.request.urlopen(request, timeout=2) as answer:
                    status = answer.status
                    body = answer.read().decode()
                    outcome = "ended"
            except TimeoutError:
                outcome, body = "timeout", ""
            except (urllib.error.URLError, ConnectionError) as error:
                outcome, body = f"error {error}", ""
            except Exception as error:  # http.client.IncompleteRead and its kin
                outcome, body = f"cut {type(error).__name__}", ""
            expected = {"stall": "timeout", "truncate": "ended", "reset": "cut"}[mode]
            check(f"relay {mode}: 200 headers, then {expected}",
                  status == 200 and outcome.startswith(expected)
                  and (mode != "truncate" or ('"pon"' in body and "finish_reason" not in body)),
                  f"{outcome} {body[:300]}")
    finally:
        for relay in relays:
            relay.stop()
        peer.stop()


def main():
    peers_python, a2a03_python, litellm_python = sys.argv[1:4]
    a2a(peers_python, "a2a_canary_server.py", "1.0")
    a2a(a2a03_python, "a2a03_canary_server.py", "0.3")
    mcp(peers_python)
    litellm(litellm_python, peers_python)
    print(f"{passed} passed, 0 failed")


if __name__ == "__main__":
    main()
