//! A parsed request of any endpoint, owned by the task that serves it.

use super::*;

/// The least `max_output_tokens` OpenAI's Responses API takes.
const MIN_RESPONSES_OUTPUT: u32 = 16;

/// A parsed request of any endpoint, owned by the task that serves it.
pub(super) enum Call {
    Chat(Box<ChatCompletionRequest>),
    Completion(CompletionRequest),
    Embeddings(EmbeddingRequest),
}

/// What planning reads of a request: its model or route, its `llmrr` options, its prompt.
pub(super) trait Plannable {
    fn model(&self) -> &str;
    fn llmrr(&self) -> Option<&serde_json::Value>;
    fn chat(&self) -> Option<&ChatCompletionRequest>;
}

impl Plannable for &Call {
    fn model(&self) -> &str {
        Call::model(self)
    }
    fn llmrr(&self) -> Option<&serde_json::Value> {
        Call::llmrr(self)
    }
    fn chat(&self) -> Option<&ChatCompletionRequest> {
        Call::chat(self)
    }
}

impl Plannable for &ChatCompletionRequest {
    fn model(&self) -> &str {
        &self.model
    }
    fn llmrr(&self) -> Option<&serde_json::Value> {
        self.llmrr.as_ref()
    }
    fn chat(&self) -> Option<&ChatCompletionRequest> {
        Some(self)
    }
}

impl Call {
    pub(super) fn endpoint(&self) -> Endpoint {
        match self {
            Call::Chat(_) => Endpoint::Chat,
            Call::Completion(_) => Endpoint::Completions,
            Call::Embeddings(_) => Endpoint::Embeddings,
        }
    }

    /// What the request asks of sampling, for traces.
    pub(super) fn sampling(&self) -> crate::spans::Sampling {
        match self {
            Call::Chat(r) => crate::spans::Sampling {
                temperature: r.temperature,
                top_p: r.top_p,
                max_tokens: r.max_output_tokens(),
            },
            Call::Completion(r) => crate::spans::Sampling {
                temperature: r.extra.get("temperature").and_then(|v| v.as_f64()),
                top_p: r.extra.get("top_p").and_then(|v| v.as_f64()),
                max_tokens: r.max_tokens,
            },
            Call::Embeddings(_) => Default::default(),
        }
    }

    pub(super) fn model(&self) -> &str {
        match self {
            Call::Chat(r) => &r.model,
            Call::Completion(r) => &r.model,
            Call::Embeddings(r) => &r.model,
        }
    }

    pub(super) async fn complete(&self, p: &dyn Provider) -> Result<Completed> {
        match self {
            Call::Chat(r) => p.chat(r).await,
            Call::Completion(r) => p.completion(r).await,
            Call::Embeddings(r) => p.embeddings(r).await,
        }
    }

    pub(super) async fn open(&self, p: &dyn Provider) -> Result<ChunkStream> {
        match self {
            Call::Chat(r) => p.chat_stream(r).await,
            Call::Completion(r) => p.completion_stream(r).await,
            Call::Embeddings(_) => Err(Error::invalid(
                "embeddings cannot be streamed",
                Some("stream".into()),
            )),
        }
    }

    /// The chat request, for what routing reads of the prompt.
    pub(super) fn chat(&self) -> Option<&ChatCompletionRequest> {
        match self {
            Call::Chat(r) => Some(r),
            _ => None,
        }
    }

    /// The request's own routing options (`"llmrr": {...}`).
    pub(super) fn llmrr(&self) -> Option<&serde_json::Value> {
        match self {
            Call::Chat(r) => r.llmrr.as_ref(),
            Call::Completion(r) => r.llmrr.as_ref(),
            Call::Embeddings(r) => r.llmrr.as_ref(),
        }
    }

    pub(super) fn include_usage(&self) -> bool {
        let opts = match self {
            Call::Chat(r) => r.stream_options.as_ref(),
            Call::Completion(r) => r.stream_options.as_ref(),
            Call::Embeddings(_) => None,
        };
        opts.and_then(|o| o.include_usage) == Some(true)
    }
}

/// A request that passed validation and has its plan (and its budget reservation).
pub(super) struct Prepared {
    pub(super) plan: Plan,
    pub(super) options: RequestOptions,
    pub(super) prompt_estimate: u64,
    pub(super) reservation: Option<Reservation>,
    pub(super) admission: Admitted,
    /// What the request took from its rate limits, quotas and concurrency.
    pub(super) ticket: Ticket,
    pub(super) guardrails: Option<Arc<Guardrails>>,
    /// A cacheable request: where its answer goes.
    pub(super) fill: Option<cache::Fill>,
    /// What the cache did, for the answer's headers.
    pub(super) cache_status: Option<crate::cache::CacheStatus>,
}

/// What the attempt loop needs from admission.
pub(super) struct Admitted {
    /// Who asked (the per-model rules of each attempted model).
    pub(super) key: Arc<KeyContext>,
    pub(super) class: Priority,
    /// A call must start before this (a model's queue refuses at once when it cannot).
    pub(super) deadline: Instant,
    /// The request's token estimate (upstream tokens-per-minute limits).
    pub(super) tokens: u64,
    /// Queue waits above this fall back to the next model (the latency constraint).
    pub(super) latency_limit: Option<Duration>,
}

impl Call {
    /// What budgets need to know: a bound on the prompt, the output cap, the number of
    /// outputs.
    pub(super) fn money_need(&self) -> Need {
        match self {
            Call::Chat(r) => {
                let parts = || {
                    r.messages
                        .iter()
                        .filter_map(|m| match &m.content {
                            Some(llmrr_types::openai::MessageContent::Parts(p)) => Some(p),
                            _ => None,
                        })
                        .flatten()
                };
                let images = parts()
                    .filter(|p| matches!(p, llmrr_types::openai::ContentPart::ImageUrl { .. }))
                    .count() as u64;
                let opaque_parts = parts()
                    .filter(|p| {
                        matches!(
                            p,
                            llmrr_types::openai::ContentPart::File { .. }
                                | llmrr_types::openai::ContentPart::InputAudio { .. }
                        )
                    })
                    .count() as u64;
                Need {
                    prompt_bytes: json_len(&**r),
                    images,
                    opaque_parts,
                    max_output: r.max_output_tokens().map(u64::from),
                    // Anthropic adds the thinking budget of `reasoning_effort` to max_tokens.
                    reasoning_extra: if r.extra.contains_key("reasoning_effort") {
                        16_384
                    } else {
                        0
                    },
                    choices: u64::from(r.n.unwrap_or(1).max(1)),
                }
            }
            Call::Completion(r) => {
                let count = |k: &str| r.extra.get(k).and_then(serde_json::Value::as_u64);
                let prompts = match &r.prompt {
                    serde_json::Value::Array(a) if a.iter().all(|p| !p.is_number()) => {
                        a.len().max(1) as u64
                    }
                    _ => 1,
                };
                let per_prompt = count("n").unwrap_or(1).max(count("best_of").unwrap_or(1));
                Need {
                    // The whole request: `suffix` and the like count too.
                    prompt_bytes: json_len(r),
                    images: 0,
                    opaque_parts: 0,
                    max_output: r.max_tokens.map(u64::from),
                    reasoning_extra: 0,
                    choices: prompts.saturating_mul(per_prompt.max(1)),
                }
            }
            Call::Embeddings(r) => Need {
                prompt_bytes: json_len(&r.input),
                images: 0,
                opaque_parts: 0,
                max_output: Some(0),
                reasoning_extra: 0,
                choices: 1,
            },
        }
    }

    /// The input guardrails: deny, or redact the request's text in place.
    pub(super) fn guard_input(&mut self, g: &Guardrails) -> Result<()> {
        match self {
            Call::Chat(r) => crate::guardrails::redact_chat(g, r),
            Call::Completion(r) => crate::guardrails::redact_prompt(g, &mut r.prompt),
            Call::Embeddings(r) => crate::guardrails::redact_prompt(g, &mut r.input),
        }
    }

    /// A budget caps a request that set no output limit (`max_completion_tokens`: the field
    /// every OpenAI model takes, reasoning models included; Anthropic reads it too). True when
    /// it changed the request.
    pub(super) fn cap_output(&mut self, cap: u32) -> bool {
        use llmrr_types::openai::NativeBody;
        match self {
            Call::Chat(r) if r.max_tokens.is_none() && r.max_completion_tokens.is_none() => {
                r.max_completion_tokens = Some(cap);
                match &mut r.native {
                    // A Responses body takes the cap too, where the Responses API takes it
                    // (16 at least); below that, the translation is sent.
                    Some(NativeBody::Responses(body)) if cap >= MIN_RESPONSES_OUTPUT => {
                        if let Some(map) = std::sync::Arc::make_mut(body).as_object_mut() {
                            map.insert("max_output_tokens".into(), cap.into());
                        }
                    }
                    // The client's own Anthropic body always has its `max_tokens` (required),
                    // so it never comes here; if it did, it would not be sent uncapped.
                    Some(_) => r.native = None,
                    None => {}
                }
                true
            }
            Call::Completion(r) if r.max_tokens.is_none() => {
                r.max_tokens = Some(cap);
                true
            }
            _ => false,
        }
    }

    /// What the request is about, as spend reports group it (from the start of the last user
    /// message, or of the prompt).
    pub(super) fn category(&self) -> Option<&'static str> {
        self.whole_topic()
            .map(|t| crate::money::category::categorize(&t))
    }

    /// The last user turn's text (chat), or the prompt (completions); `None` past
    /// `HEAD_CHARS` (only its head would be read: two long prompts that differ at their end
    /// must not match).
    pub(super) fn last_user_text(&self) -> Option<String> {
        let short = |t: &str| {
            t.chars()
                .nth(crate::money::category::HEAD_CHARS - 1)
                .is_none()
        };
        self.whole_topic()
            .filter(|t| !t.trim().is_empty() && short(t))
            .map(std::borrow::Cow::into_owned)
    }

    /// The text of the last user turn (its text parts joined), or the prompt: borrowed where
    /// it can be (this runs for every request, cache hits included).
    fn whole_topic(&self) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        match self {
            Call::Chat(r) => r
                .messages
                .iter()
                .rev()
                .find(|m| m.role == llmrr_types::openai::Role::User)
                .and_then(|m| m.content.as_ref())
                .map(|c| match c {
                    llmrr_types::openai::MessageContent::Text(t) => Cow::Borrowed(t.as_str()),
                    llmrr_types::openai::MessageContent::Parts(parts) => Cow::Owned(
                        parts
                            .iter()
                            .filter_map(|p| match p {
                                llmrr_types::openai::ContentPart::Text { text } => {
                                    Some(text.as_str())
                                }
                                _ => None,
                            })
                            .collect::<Vec<_>>()
                            .join(" "),
                    ),
                }),
            Call::Completion(r) => Some(match &r.prompt {
                serde_json::Value::String(s) => Cow::Borrowed(s.as_str()),
                other => Cow::Owned(other.to_string()),
            }),
            Call::Embeddings(_) => None,
        }
    }

    /// blake3 of what the request asks (model and messages or prompt): repeated prompts share
    /// it.
    pub(super) fn prompt_hash(&self) -> Option<String> {
        let mut h = blake3::Hasher::new();
        h.update(self.model().as_bytes());
        h.update(b"\0");
        let ok = match self {
            Call::Chat(r) => serde_json::to_writer(&mut h, &r.messages).is_ok(),
            Call::Completion(r) => serde_json::to_writer(&mut h, &r.prompt).is_ok(),
            Call::Embeddings(_) => false,
        };
        ok.then(|| h.finalize().to_hex()[..32].to_owned())
    }
}

/// The length of a value serialized as JSON, without keeping the bytes.
fn json_len<T: serde::Serialize + ?Sized>(v: &T) -> u64 {
    struct Counter(u64);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    let _ = serde_json::to_writer(&mut counter, v);
    counter.0
}
