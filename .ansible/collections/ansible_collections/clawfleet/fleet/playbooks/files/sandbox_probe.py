"""One HTTP request from inside a running sandbox's network namespace (nsenter, as the sandbox's user), through
the gateway listening there. Prints {"status", "action" (the router's x-clawfleet-action), "body"} as JSON.
Used by playbooks/verify.yml: standard library only, passed with `python3 -c`."""

import json
import sys
import urllib.error
import urllib.request

method, url, port = sys.argv[1], sys.argv[2], sys.argv[3]
body = sys.argv[4].encode() if len(sys.argv) > 4 else None
if not url.startswith(("http://", "https://")):
    sys.exit(f"sandbox_probe: only http and https URLs, not {url!r}")
proxy = f"http://127.0.0.1:{port}"
opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
request = urllib.request.Request(url, data=body, method=method, headers={"content-type": "application/json"})  # noqa: S310 - scheme checked
try:
    with opener.open(request, timeout=60) as response:
        status, headers, text = response.status, response.headers, response.read(4000)
except urllib.error.HTTPError as exc:
    status, headers, text = exc.code, exc.headers, exc.read(4000)
except OSError as exc:
    print(json.dumps({"status": None, "action": None, "body": str(exc)}))
    sys.exit(0)
print(json.dumps({"status": status, "action": headers.get("x-clawfleet-action"),
                  "body": text.decode("utf-8", "replace")[:1000]}))  # fmt: skip
