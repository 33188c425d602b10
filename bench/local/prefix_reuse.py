"""Time to first token of turn 5 of a long chat on a local model, with and without prefix reuse.

Run a gateway with one local model named `m270` (parallel = 1, context_size = 4096), e.g. the
synthetic 270M model: `llmrr models synth --out m270.gguf --preset 270m`, a config with that
model and `[server] listen = "127.0.0.1:18181"`, `LLMRR_MASTER_KEY=sk-ttft-master-0123456789
llmrr serve`; then `python3 bench/local/prefix_reuse.py` (standard library only).

Each round asks, with max_tokens 1 (so the time is the prefill plus one token): the next turn
of the same conversation (its prefix is in the slot's KV: reused), then a different
conversation of the same length (nothing to reuse), then the first conversation again (to put
it back in the slot). Prints the medians and their ratio.
"""
import json, time, urllib.request
URL = "http://127.0.0.1:18181/v1/chat/completions"
def ask(messages):
    body = json.dumps({"model": "m270", "messages": messages, "max_tokens": 1, "temperature": 0}).encode()
    req = urllib.request.Request(URL, body, {"content-type": "application/json", "authorization": "Bearer sk-ttft-master-0123456789"})
    t = time.perf_counter()
    r = json.load(urllib.request.urlopen(req, timeout=600))
    return time.perf_counter() - t, r["usage"]
words = "the quick brown fox jumps over the lazy dog while the model reads a long history ".split()
def history(seed, n):
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": " ".join(words[(seed + i + j) % len(words)] for j in range(n))} for i in range(8)]
# calibrate to ~2000 prompt tokens
h = history(0, 90)
dt, u = ask(h + [{"role": "user", "content": "turn five?"}])
print("warm-up / turn 4 (cold):", round(dt, 3), "s", u)
res = {"reuse": [], "cold": []}
for k in range(3):
    # turn 5 continuing the same conversation: the prefix is in the slot's KV
    h2 = h + [{"role": "user", "content": "turn five?"}, {"role": "assistant", "content": "x"}, {"role": "user", "content": f"and turn {k}?"}]
    dt, u = ask(h2)
    res["reuse"].append((dt, u.get("prompt_tokens"), (u.get("prompt_tokens_details") or {}).get("cached_tokens")))
    h = h2[:-1] + [{"role": "user", "content": f"and turn {k}?"}]
    # a different conversation of the same length: nothing to reuse
    other = history(k + 1, 90) + [{"role": "user", "content": "turn five?"}]
    dt, u = ask(other)
    res["cold"].append((dt, u.get("prompt_tokens"), (u.get("prompt_tokens_details") or {}).get("cached_tokens")))
    h = h2  # the slot now holds `other`: rebuild by asking h once more
    dt, u = ask(h)
print(json.dumps(res, indent=1))
import statistics
r = statistics.median(x[0] for x in res["reuse"]); c = statistics.median(x[0] for x in res["cold"])
print("median reuse", round(r, 3), "s; cold", round(c, 3), "s; ratio", round(c / r, 1))
