"""Health and Prometheus metrics: no API key needed for either (SGLang exempts them).

So without Modal's proxy auth, anyone who knows the URL can read both (and wake a container).
/health runs a real one-token generation on SGLang (about a second); do not poll it hard.
"""

import httpx
from _common import proxy_auth_headers, server_root

root = server_root()
client = httpx.Client(headers=proxy_auth_headers())
health = client.get(f"{root}/health", timeout=60)
print(f"/health: {health.status_code} ({'healthy' if health.status_code == 200 else 'not ready'})")

metrics = client.get(f"{root}/metrics", timeout=30)
wanted = (
    "sglang:num_running_reqs",
    "sglang:num_queue_reqs",
    "sglang:gen_throughput",
    "sglang:num_requests_total",
)
for line in metrics.text.splitlines():
    if line.startswith(wanted):
        print(line)
