//! The engine as a provider: OpenAI requests in, OpenAI bodies and chunks out, exactly like a
//! remote provider, so the gateway (routing, retries, fallbacks, logging, cost) treats a local
//! model as one more candidate.

use crate::chat::parse::{Out, ToolSplitter};
use crate::embed::EmbedJob;
use crate::error::Error;
use crate::lifecycle::{Engine, Lease};
use crate::request::{self, Generation};
use crate::worker::{Event, Finished, GenerateJob, Job, LoadedModel};
use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use llmrr_core::config::{Capabilities, ModelSpec, ProviderKind};
use llmrr_core::provider::{ChunkStream, Completed, LocalBackend, Provider, StreamChunk};
use llmrr_types::openai::{ChatCompletionRequest, CompletionRequest, EmbeddingRequest, Usage};
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Makes the providers of `provider = "local"` models, all sharing one [`Engine`].
pub struct EngineBackend {
    engine: Engine,
}

impl EngineBackend {
    pub fn new(engine: Engine) -> Self {
        EngineBackend { engine }
    }
}

impl LocalBackend for EngineBackend {
    fn provider(&self, spec: &ModelSpec) -> llmrr_core::Result<Arc<dyn Provider>> {
        let local = spec.local.as_ref().ok_or_else(|| {
            llmrr_core::Error::config(format!("models.{}", spec.name), "not a local model")
        })?;
        let info = self.engine.register(&spec.name, local).map_err(|e| {
            llmrr_core::Error::config(format!("models.{}.path", spec.name), e.to_string())
        })?;
        Ok(Arc::new(LocalProvider {
            name: spec.name.clone(),
            engine: self.engine.clone(),
            context_size: local.context_size,
            tools: info
                .str(crate::chat::TOOL_TEMPLATE_KEY)
                .or(info.chat_template())
                .is_some_and(crate::chat::supports_tools),
        }))
    }
}

pub struct LocalProvider {
    name: Arc<str>,
    engine: Engine,
    context_size: u32,
    /// Whether the chat template renders tools in a call syntax read here.
    tools: bool,
}

/// A generation in progress: the events of its sequence, and the model kept loaded.
struct Run {
    _lease: Lease,
    events: mpsc::Receiver<Event>,
    prompt_tokens: u32,
    /// Tools offered: the text is split into content and calls.
    tools: Option<ToolSplitter>,
    /// Tool calls streamed so far (the next one's `index`).
    calls_sent: usize,
}

#[derive(Clone, Copy)]
enum Kind {
    Chat,
    Text,
}

impl Kind {
    /// A fresh answer id in OpenAI's style for this kind.
    fn new_id(self) -> String {
        let prefix = match self {
            Kind::Chat => "chatcmpl",
            Kind::Text => "cmpl",
        };
        format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn usage(prompt: u32, completion: u32) -> Usage {
    Usage {
        prompt_tokens: prompt.into(),
        completion_tokens: completion.into(),
        total_tokens: u64::from(prompt) + u64::from(completion),
        ..Default::default()
    }
}

/// Usage of a finished generation: its prompt tokens reused from an earlier request's KV are
/// `prompt_tokens_details.cached_tokens` (priced at the cached-input price where there is one).
fn finished_usage(prompt: u32, f: &Finished) -> Usage {
    let mut u = usage(prompt, f.completion_tokens);
    if f.cached_tokens > 0 {
        u.prompt_tokens_details = Some(llmrr_types::openai::PromptTokensDetails {
            cached_tokens: f.cached_tokens.into(),
        });
    }
    u
}

/// A finished answer: its text, and the tool calls split out of it (OpenAI's JSON).
struct Answer {
    text: String,
    calls: Vec<Value>,
}

/// A tool call as OpenAI writes it; `index` for a stream's delta.
fn call_json(c: &crate::chat::parse::ParsedCall, index: Option<usize>) -> Value {
    let mut v = json!({"id": c.id, "type": "function",
                       "function": {"name": c.name, "arguments": c.arguments}});
    if let Some(i) = index {
        v["index"] = i.into();
    }
    v
}

/// `tool_calls` when the answer ended after making calls, else the worker's reason.
fn finish_reason(f: &Finished, called: bool) -> &'static str {
    match f.reason {
        crate::worker::FinishReason::Stop if called => "tool_calls",
        r => r.as_str(),
    }
}

fn body(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

impl LocalProvider {
    fn err(&self, e: Error) -> llmrr_core::Error {
        e.into_core(&self.name)
    }

    /// Loads the model if needed, builds the job on the request's task (tokenizing here keeps
    /// the model thread for inference) and queues it.
    async fn start(
        &self,
        build: impl FnOnce(&LoadedModel) -> crate::error::Result<Generation>,
    ) -> llmrr_core::Result<Run> {
        let lease = self
            .engine
            .acquire(&self.name)
            .await
            .map_err(|e| self.err(e))?;
        let g = build(&lease.model).map_err(|e| self.err(e))?;
        let (tx, events) = mpsc::channel(GenerateJob::events_needed(
            g.max_tokens,
            lease.model.context_size,
        ));
        let prompt_tokens = g.prompt.len() as u32;
        let tools = g.tools.map(|t| ToolSplitter::new(t.syntax, t.names));
        lease
            .model
            .submit(
                &self.name,
                Job::Generate(GenerateJob {
                    render_special: tools.is_some(),
                    prompt: g.prompt,
                    params: g.params,
                    max_tokens: g.max_tokens,
                    stop: g.stop,
                    events: tx,
                }),
            )
            .map_err(|e| self.err(e))?;
        Ok(Run {
            _lease: lease,
            events,
            prompt_tokens,
            tools,
            calls_sent: 0,
        })
    }

    async fn collect(&self, mut run: Run) -> llmrr_core::Result<(Answer, Finished)> {
        let mut text = String::new();
        while let Some(ev) = run.events.recv().await {
            match ev {
                Event::Text(t) => text.push_str(&t),
                Event::Done(f) => {
                    let Some(mut splitter) = run.tools else {
                        return Ok((
                            Answer {
                                text,
                                calls: Vec::new(),
                            },
                            f,
                        ));
                    };
                    let mut answer = Answer {
                        text: String::new(),
                        calls: Vec::new(),
                    };
                    for out in splitter.push(&text).into_iter().chain(splitter.finish()) {
                        match out {
                            Out::Text(t) => answer.text.push_str(&t),
                            Out::Call(c) => answer.calls.push(call_json(&c, None)),
                        }
                    }
                    return Ok((answer, f));
                }
                Event::Failed(e) => return Err(self.err(e)),
            }
        }
        Err(self.err(Error::Inference {
            model: self.name.to_string(),
            message: "the model thread stopped mid-answer".into(),
        }))
    }

    fn complete(&self, kind: Kind, answer: Answer, f: &Finished, prompt: u32) -> Completed {
        let u = finished_usage(prompt, f);
        let Answer { text, calls } = answer;
        let (object, choice) = match kind {
            Kind::Chat if !calls.is_empty() => (
                "chat.completion",
                json!({"index": 0,
                       "message": {"role": "assistant",
                                   "content": if text.is_empty() { None } else { Some(text) },
                                   "tool_calls": calls},
                       "finish_reason": finish_reason(f, true), "logprobs": null}),
            ),
            Kind::Chat => (
                "chat.completion",
                json!({"index": 0, "message": {"role": "assistant", "content": text},
                       "finish_reason": f.reason.as_str(), "logprobs": null}),
            ),
            Kind::Text => (
                "text_completion",
                json!({"index": 0, "text": text, "finish_reason": f.reason.as_str(),
                       "logprobs": null}),
            ),
        };
        Completed {
            compute: Some(f.prefill + f.decode),
            body: body(&json!({
                "id": kind.new_id(), "object": object, "created": now_unix(), "model": &*self.name,
                "choices": [choice], "usage": &u, "system_fingerprint": "llmrr-local",
            })),
            usage: u,
        }
    }

    fn stream(&self, kind: Kind, run: Run) -> ChunkStream {
        let name = self.name.clone();
        let id = kind.new_id();
        let object = match kind {
            Kind::Chat => "chat.completion.chunk",
            Kind::Text => "text_completion",
        };
        let created = now_unix();
        let chunk = move |choices: Value, usage: Option<&Usage>| {
            body(
                &json!({"id": &id, "object": object, "created": created, "model": &*name,
                         "choices": choices, "usage": usage, "system_fingerprint": "llmrr-local"}),
            )
        };
        let choice = move |text: Option<&str>, role: bool, finish: Option<&str>| match kind {
            Kind::Chat => {
                let mut delta = serde_json::Map::new();
                if role {
                    delta.insert("role".into(), "assistant".into());
                }
                if let Some(t) = text {
                    delta.insert("content".into(), t.into());
                }
                json!([{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}])
            }
            Kind::Text => {
                json!([{"index": 0, "text": text.unwrap_or(""), "finish_reason": finish, "logprobs": null}])
            }
        };
        let model = self.name.clone();
        let prompt_tokens = run.prompt_tokens;
        let opening = matches!(kind, Kind::Chat).then(|| {
            Ok(StreamChunk {
                compute: None,
                data: chunk(choice(Some(""), true, None), None),
                usage: None,
                usage_only: false,
                has_output: false,
            })
        });
        let events = stream::unfold(Some(run), move |state| {
            let chunk = chunk.clone();
            let model = model.clone();
            async move {
                let mut run = state?;
                // Content as a text delta; a tool call whole, as one tool-call delta.
                let out_chunk = |out: Out, sent: &mut usize| {
                    let choices = match out {
                        Out::Text(t) => choice(Some(&t), false, None),
                        Out::Call(c) => {
                            *sent += 1;
                            json!([{"index": 0, "delta": {"tool_calls": [call_json(&c, Some(*sent - 1))]},
                                    "finish_reason": null, "logprobs": null}])
                        }
                    };
                    Ok(StreamChunk {
                        compute: None,
                        data: chunk(choices, None),
                        usage: None,
                        usage_only: false,
                        has_output: true,
                    })
                };
                let items: Vec<llmrr_core::Result<StreamChunk>> = match run.events.recv().await {
                    Some(Event::Text(t)) => {
                        let outs = match run.tools.as_mut() {
                            Some(splitter) => splitter.push(&t),
                            None => vec![Out::Text(t)],
                        };
                        outs.into_iter()
                            .filter(|o| !matches!(o, Out::Text(t) if t.is_empty()))
                            .map(|o| out_chunk(o, &mut run.calls_sent))
                            .collect()
                    }
                    Some(Event::Done(f)) => {
                        let u = finished_usage(prompt_tokens, &f);
                        let rest = run.tools.as_mut().map(ToolSplitter::finish).unwrap_or_default();
                        let mut items: Vec<_> = rest
                            .into_iter()
                            .map(|o| out_chunk(o, &mut run.calls_sent))
                            .collect();
                        let reason = finish_reason(&f, run.calls_sent > 0);
                        items.extend([
                            Ok(StreamChunk {
                                compute: None,
                                data: chunk(choice(None, false, Some(reason)), None),
                                usage: None,
                                usage_only: false,
                                has_output: false,
                            }),
                            Ok(StreamChunk {
                                compute: Some(f.prefill + f.decode),
                                data: chunk(json!([]), Some(&u)),
                                usage: Some(u),
                                usage_only: true,
                                has_output: false,
                            }),
                        ]);
                        return Some((items, None));
                    }
                    Some(Event::Failed(e)) => return Some((vec![Err(e.into_core(&model))], None)),
                    None => {
                        let e = Error::Inference {
                            model: model.to_string(),
                            message: "the model thread stopped mid-answer".into(),
                        };
                        return Some((vec![Err(e.into_core(&model))], None));
                    }
                };
                Some((items, Some(run)))
            }
        })
        .flat_map(stream::iter);
        stream::iter(opening).chain(events).boxed()
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Local
    }

    async fn chat(&self, req: &ChatCompletionRequest) -> llmrr_core::Result<Completed> {
        let (name, ctx) = (self.name.clone(), self.context_size);
        let run = self.start(|m| request::chat(&name, m, req, ctx)).await?;
        let prompt = run.prompt_tokens;
        let (answer, f) = self.collect(run).await?;
        Ok(self.complete(Kind::Chat, answer, &f, prompt))
    }

    async fn chat_stream(&self, req: &ChatCompletionRequest) -> llmrr_core::Result<ChunkStream> {
        let (name, ctx) = (self.name.clone(), self.context_size);
        let run = self.start(|m| request::chat(&name, m, req, ctx)).await?;
        Ok(self.stream(Kind::Chat, run))
    }

    async fn completion(&self, req: &CompletionRequest) -> llmrr_core::Result<Completed> {
        let (name, ctx) = (self.name.clone(), self.context_size);
        let run = self
            .start(|m| request::completion(&name, &m.model, req, ctx))
            .await?;
        let prompt = run.prompt_tokens;
        let (answer, f) = self.collect(run).await?;
        Ok(self.complete(Kind::Text, answer, &f, prompt))
    }

    async fn completion_stream(&self, req: &CompletionRequest) -> llmrr_core::Result<ChunkStream> {
        let (name, ctx) = (self.name.clone(), self.context_size);
        let run = self
            .start(|m| request::completion(&name, &m.model, req, ctx))
            .await?;
        Ok(self.stream(Kind::Text, run))
    }

    async fn embeddings(&self, req: &EmbeddingRequest) -> llmrr_core::Result<Completed> {
        // The vector's size is the model's; truncating is only sound for models trained for it
        // (Matryoshka), which nothing here can tell: refused rather than ignored.
        if req.extra.get("dimensions").is_some_and(|v| !v.is_null()) {
            return Err(self.err(Error::Unsupported {
                model: self.name.to_string(),
                what: "`dimensions`".into(),
            }));
        }
        let base64 = match req.extra.get("encoding_format").and_then(Value::as_str) {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => {
                return Err(self.err(Error::InvalidRequest(format!(
                    "`encoding_format` `{other}` is not float or base64"
                ))))
            }
        };
        let lease = self
            .engine
            .acquire(&self.name)
            .await
            .map_err(|e| self.err(e))?;
        let inputs = request::embedding_inputs(
            &self.name,
            &lease.model.model,
            &req.input,
            self.context_size,
        )
        .map_err(|e| self.err(e))?;
        let prompt_tokens: u32 = inputs.iter().map(|i| i.len() as u32).sum();
        let (reply, rx) = oneshot::channel();
        lease
            .model
            .submit(&self.name, Job::Embed(EmbedJob { inputs, reply }))
            .map_err(|e| self.err(e))?;
        let vectors = rx
            .await
            .map_err(|_| {
                self.err(Error::Inference {
                    model: self.name.to_string(),
                    message: "the model thread stopped".into(),
                })
            })?
            .map_err(|e| self.err(e))?;
        let data: Vec<Value> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let embedding = if base64 {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    json!(v)
                };
                json!({"object": "embedding", "index": i, "embedding": embedding})
            })
            .collect();
        let u = usage(prompt_tokens, 0);
        Ok(Completed {
            compute: None,
            body: body(
                &json!({"object": "list", "data": data, "model": &*self.name,
                               "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}),
            ),
            usage: u,
        })
    }

    fn capabilities(&self) -> Option<Capabilities> {
        // JSON mode through a grammar; no images.
        Some(Capabilities {
            tools: self.tools,
            vision: false,
            json: true,
            declared: false,
        })
    }

    async fn probe(&self) -> llmrr_core::Result<()> {
        // A local model is up if it is registered; loading it to probe would defeat idle unload.
        self.engine.status(&self.name).map(|_| ()).ok_or_else(|| {
            self.err(Error::Load {
                model: self.name.to_string(),
                message: "not registered".into(),
            })
        })
    }

    fn status(&self) -> Option<Value> {
        self.engine
            .status(&self.name)
            .and_then(|s| serde_json::to_value(s).ok())
    }

    async fn keep_alive(
        &self,
        keep: Option<std::time::Duration>,
        load: bool,
    ) -> llmrr_core::Result<bool> {
        self.engine
            .keep_alive(&self.name, keep, load)
            .await
            .map_err(|e| self.err(e))?;
        Ok(true)
    }
}
