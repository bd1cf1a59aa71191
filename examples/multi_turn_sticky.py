"""Multi-turn conversations, each pinned (best effort) to one replica with `Modal-Session-ID`.

Every turn resends the whole conversation. SGLang's radix cache keeps the prefix it has already
computed, so a turn that lands on the replica that served the previous turns skips most of its
prefill. Modal Servers route by a hash of the `Modal-Session-ID` header, so one stable ID per
conversation (a UUID is fine) keeps a conversation on one replica while the set of replicas stays
the same. It is a hint, not a guarantee: a scale-up, scale-down or recycle moves some
conversations, which then pay one full prefill and carry on. Never rely on it for correctness.
"""

import uuid

from _common import MODEL, make_client

client = make_client()
QUESTIONS = {
    "sorting": ["Explain quicksort.", "And its worst case?", "How does introsort avoid it?"],
    "gpus": ["What is HBM?", "Why does decode depend on it?"],
}

for topic, questions in QUESTIONS.items():
    session_id = str(uuid.uuid4())  # one per conversation, reused for every turn
    chat = client.with_options(default_headers={"Modal-Session-ID": session_id})
    messages = [{"role": "system", "content": "You are a concise tutor."}]
    for turn, question in enumerate(questions, 1):
        messages.append({"role": "user", "content": question})
        reply = chat.chat.completions.create(model=MODEL, messages=messages)
        answer = reply.choices[0].message.content or ""
        messages.append({"role": "assistant", "content": answer})
        print(f"[{topic} session={session_id} turn={turn} messages={len(messages)}] {answer[:60]}")
