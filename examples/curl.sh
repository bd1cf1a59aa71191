#!/usr/bin/env bash
# cURL against the endpoint. BASE is the server root (no /v1): e.g. https://<app>.modal.run
# or http://127.0.0.1:8000 for the local demo. The key comes from OPENAI_API_KEY. With Modal's
# proxy auth on, MODAL_KEY and MODAL_SECRET (a proxy auth token) go along on every request.
set -euo pipefail
BASE="${BASE:-${OPENAI_BASE_URL%/v1}}"
KEY="${OPENAI_API_KEY:-none}"
MODEL="${MODEL_NAME:-glm-5.1}"
PROXY_AUTH=()
if [[ -n "${MODAL_KEY:-}" && -n "${MODAL_SECRET:-}" ]]; then
  PROXY_AUTH=(-H "Modal-Key: $MODAL_KEY" -H "Modal-Secret: $MODAL_SECRET")
fi
curl() { command curl ${PROXY_AUTH[@]+"${PROXY_AUTH[@]}"} "$@"; }

echo "== chat"
curl -sS "$BASE/v1/chat/completions" \
  -H "Authorization: Bearer $KEY" \
  -H "Content-Type: application/json" \
  -d "{\"model\": \"$MODEL\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello!\"}]}"
echo
echo "== streaming (server-sent events)"
curl -sS -N "$BASE/v1/chat/completions" \
  -H "Authorization: Bearer $KEY" \
  -H "Content-Type: application/json" \
  -d "{\"model\": \"$MODEL\", \"stream\": true, \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}" \
  | grep '^data:' | sed -n '1,3p;$p'  # the first chunks (role, then content) and the end
echo "== models"
curl -sS "$BASE/v1/models" -H "Authorization: Bearer $KEY"
echo
echo "== health (no key needed)"
curl -sS -o /dev/null -w "%{http_code}\n" "$BASE/health"
echo "== without the key"
curl -sS -o /dev/null -w "%{http_code}\n" "$BASE/v1/models"
