"""Health and Prometheus metrics: no API key needed for either (SGLang exempts them).

/health runs a real one-token generation on SGLang (about a second); do not poll it hard.
"""

import httpx
from _common import server_root

root = server_root()
health = httpx.get(f"{root}/health", timeout=60)
print(f"/health: {health.status_code} ({'healthy' if health.status_code == 200 else 'not ready'})")

metrics = httpx.get(f"{root}/metrics", timeout=30)
wanted = (
    "sglang:num_running_reqs",
    "sglang:num_queue_reqs",
    "sglang:gen_throughput",
    "sglang:num_requests_total",
)
for line in metrics.text.splitlines():
    if line.startswith(wanted):
        print(line)
