"""A scripted shim for tests/test_shim.py: its behaviour is the first word of the request's 'body'."""

import json
import sys
import time

action = sys.argv[1]
request = json.loads(sys.stdin.readline())
mode = request.get("body", "")


def say(**event):
    print(json.dumps(event), flush=True)


if action == "capabilities":
    say(event="capabilities", actions=["login", "send-message"])
elif mode == "done":
    say(event="connected")
    say(event="sent", kind="message", to=request["to"])
elif mode == "refuse":
    say(event="connected")
    say(event="failed", reason="certificate verify failed")
    sys.exit(1)
elif mode == "unsupported":
    sys.exit(89)
elif mode == "hang":
    say(event="connected")
    time.sleep(60)
elif mode == "flood":
    for i in range(30_000):
        say(event="received", kind="message", body=str(i))
elif mode == "garbage":
    print("not json at all", flush=True)
    print("[1, 2]", flush=True)
    print("x" * 100_000, flush=True)
    say(event="closed", by="server")
    print("error details", file=sys.stderr)
elif mode == "crash":
    raise SystemExit(3)
