"""A mixed workload on a local model, with and without prompt-prefix reuse, side by side.

Run `llmrr serve` with three local models on the same GGUF file, all with `parallel = 4` and
`context_size = 4096`: `reuse` (the defaults: kept prompts in the slots and copied to memory
when a slot is taken), `slots` (`prompt_cache_mb = 0`: kept in the slots only) and `fresh`
(`prefix_cache_share = 0`, `prompt_cache_mb = 0`: every prompt prefilled in full) —
`bench/local/mixed.toml` is such a config for the synthetic 270M model (`llmrr models synth --out /tmp/m270.gguf --preset 270m`).
Then `python3 bench/local/mixed.py` (standard library only).

The workload, per model: CHATS clients each hold a conversation of TURNS turns (a system prompt
of HISTORY/1.3 words of its own, about 2,200 tokens here, then each turn adds the answer and a new question), while
ONESHOTS clients send short unrelated prompts, all at once — more conversations than slots
part of the time, so a slot's kept prefix is sometimes replaced by another request. Every
request streams up to MAX_TOKENS tokens. Measured: the wall time of the whole workload, the
completion tokens per second, the time to the first token of the chats' later turns (median),
and the prompt tokens reused. Rounds alternate the models' order; medians of the rounds.
"""
import json, os, statistics, threading, time, urllib.request

URL = os.environ.get("LLMRR_URL", "http://127.0.0.1:18181") + "/v1/chat/completions"
KEY = os.environ.get("LLMRR_KEY", "sk-mixed-master-0123456789")
CHATS, TURNS, HISTORY = 4, 4, 700
ONESHOTS, ONESHOT_REQUESTS = 2, 4
MAX_TOKENS = 16
ROUNDS = int(os.environ.get("ROUNDS", "2"))

WORDS = ("the quick brown fox jumps over the lazy dog while a model reads its long history "
         "and answers questions about rivers mountains cities numbers colours").split()


def text(seed, n_words):
    return " ".join(WORDS[(seed * 7 + i * (seed % 5 + 1)) % len(WORDS)] for i in range(n_words))


def ask(model, messages):
    """Streams one answer; returns (seconds to the first token, answer text, usage)."""
    body = json.dumps({"model": model, "messages": messages, "max_tokens": MAX_TOKENS,
                       "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True}}).encode()
    req = urllib.request.Request(URL, body, {"content-type": "application/json",
                                             "authorization": f"Bearer {KEY}"})
    start = time.perf_counter()
    first, answer, usage = None, "", {}
    with urllib.request.urlopen(req, timeout=900) as resp:
        for line in resp:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for c in chunk.get("choices", []):
                piece = c.get("delta", {}).get("content")
                if piece:
                    if first is None:
                        first = time.perf_counter() - start
                    answer += piece
    return first if first is not None else time.perf_counter() - start, answer, usage


def run(model, round_):
    stats = {"completion": 0, "prompt": 0, "cached": 0, "later_ttft": [], "first_ttft": []}
    lock = threading.Lock()

    def record(ttft, usage, later):
        with lock:
            stats["completion"] += usage.get("completion_tokens", 0)
            stats["prompt"] += usage.get("prompt_tokens", 0)
            stats["cached"] += (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
            stats["later_ttft" if later else "first_ttft"].append(ttft)

    def chat(c):
        # HISTORY / 1.3 words (about 4 tokens a word in the synthetic vocabulary).
        # Texts of their own per round: every round starts from empty caches.
        seed = c + 1000 * round_
        messages = [{"role": "system",
                     "content": f"session {round_}.{c}: " + text(seed, int(HISTORY / 1.3))}]
        for t in range(TURNS):
            messages.append({"role": "user", "content": f"question {t}: " + text(seed + t, 12)})
            ttft, answer, usage = ask(model, messages)
            record(ttft, usage, t > 0)
            messages.append({"role": "assistant", "content": answer})

    def oneshot(o):
        for r in range(ONESHOT_REQUESTS):
            ttft, _, usage = ask(model, [{"role": "user", "content": f"one-shot {round_}.{o}.{r}: "
                                          + text(100 + o * 10 + r, 40)}])
            record(ttft, usage, False)

    threads = [threading.Thread(target=chat, args=(c,)) for c in range(CHATS)]
    threads += [threading.Thread(target=oneshot, args=(o,)) for o in range(ONESHOTS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats["wall"] = time.perf_counter() - start
    return stats


MODELS = os.environ.get("MODELS", "reuse,slots,fresh").split(",")
results = {m: [] for m in MODELS}
for r in range(ROUNDS):
    for model in (MODELS if r % 2 == 0 else MODELS[::-1]):
        s = run(model, r)
        results[model].append(s)
        print(f"round {r} {model}: wall {s['wall']:.1f} s, {s['completion'] / s['wall']:.1f} "
              f"completion tok/s, prompt {s['prompt']} (cached {s['cached']}), later-turn TTFT "
              f"median {statistics.median(s['later_ttft']):.2f} s", flush=True)

print()
print("| model | wall s | completion tok/s | requests/min | later turns' TTFT p50 s | prompt tokens reused |")
print("|---|---:|---:|---:|---:|---:|")
requests = CHATS * TURNS + ONESHOTS * ONESHOT_REQUESTS
for model, runs in results.items():
    wall = statistics.median(s["wall"] for s in runs)
    tps = statistics.median(s["completion"] / s["wall"] for s in runs)
    ttft = statistics.median(statistics.median(s["later_ttft"]) for s in runs)
    reused = statistics.median(s["cached"] / max(s["prompt"], 1) for s in runs)
    print(f"| {model} | {wall:.1f} | {tps:.1f} | {requests / wall * 60:.1f} | {ttft:.2f} | {reused:.0%} |")
