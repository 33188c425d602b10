//! Streamed calls: the attempt loop's first token, then the pump that forwards chunks as
//! [`StreamItem`]s until the upstream ends, fails or stalls, or the client leaves.

use super::outlet::Outlet;
use super::*;

impl Gateway {
    pub(super) async fn run_stream(
        &self,
        mut ctx: RequestContext,
        call: Call,
        valid: Result<()>,
        features: Features,
    ) -> Result<StreamAnswer> {
        let span = begin(&mut ctx, &call, true);
        self.run_stream_call(ctx, call, valid, features)
            .instrument(span)
            .await
    }

    async fn run_stream_call(
        &self,
        ctx: RequestContext,
        mut call: Call,
        valid: Result<()>,
        features: Features,
    ) -> Result<StreamAnswer> {
        let prepared = match self.prepare(&ctx, &mut call, valid, features).await? {
            Begin::Call(p) => *p,
            Begin::Hit(found) => {
                return Ok(self.stream_from_cache(ctx, call, Source::Entry(found)))
            }
            Begin::Follow(f) => {
                let names = self.model_of_flight(&call);
                return Ok(self.stream_from_cache(ctx, call, Source::Flight(f, names)));
            }
        };
        let (ready_tx, ready_rx) = oneshot::channel::<Result<StreamAnswer>>();
        let this = self.clone();
        self.inner.tracker.spawn(
            call_scope::scope(ctx.id.clone(), async move {
                this.execute_stream(ctx, call, prepared, ready_tx).await
            })
            .in_current_span(),
        );
        ready_rx
            .await
            .map_err(|_| Error::Internal("the stream task ended before starting".into()))?
    }

    /// Steps 3-4 of a streamed call: answer `ready` once a stream has started (or every
    /// attempt failed), then pump it to the client and finish.
    pub(super) async fn execute_stream(
        &self,
        ctx: RequestContext,
        call: Call,
        prepared: Prepared,
        mut ready: oneshot::Sender<Result<StreamAnswer>>,
    ) {
        let Prepared {
            mut plan,
            options,
            prompt_estimate,
            reservation,
            admission,
            ticket,
            guardrails,
            mut fill,
            cache_status,
        } = prepared;
        let mut finish = Finish::new(&ctx, &call, true);
        finish.reservation = reservation;
        finish.tickets.push(ticket);
        finish.plan_from(&plan);
        finish.cache_from(cache_status.as_ref());
        // A client that hangs up before the first token cancels the upstream call at once
        // (unless identical requests wait for it).
        let hung_up = cache::everyone_gone(fill.as_ref(), ready.closed());
        let attempted = self
            .attempt_until(&call, &mut plan, &admission, true, hung_up)
            .await;
        let success = match attempted {
            Ok(s) => s,
            Err(Failed {
                error, last_entry, ..
            }) => {
                if last_entry.is_none() && !matches!(error, Error::ClientClosed) {
                    // No model was called (every one skipped, shed or refused): nothing of
                    // the request's limits is used.
                    for ticket in finish.tickets.drain(..) {
                        self.cancel_ticket(ticket);
                    }
                }
                self.finish(finish.failed(last_entry.as_deref(), &error))
                    .await;
                let _ = ready.send(Err(error));
                return;
            }
        };
        let Success {
            entry,
            probe,
            started,
            flight,
            outcome,
            attempts,
            grant,
            span,
        } = success;
        finish.tickets.push(grant);
        let Outcome::Opened(chunks, held) = outcome else {
            let _ = ready.send(Err(Error::Internal(
                "an answer where a stream was expected".into(),
            )));
            return;
        };
        let (frames_tx, frames_rx) = mpsc::channel(STREAM_BUFFER);
        if options.explain {
            let json = serde_json::to_vec(&plan.decision).unwrap_or_default();
            let _ = frames_tx.try_send(StreamItem::Explain(json.into()));
        }
        let _ = ready.send(Ok(StreamAnswer {
            model: entry.spec.name.clone(),
            provider: entry.spec.provider.as_str(),
            frames: frames_rx,
            overhead: ctx
                .started
                .elapsed()
                .saturating_sub(attempts.upstream + started.elapsed()),
            route: route_header(&plan, &entry, &attempts),
            attempts: attempts.count(),
            upstream: call_scope::upstream(),
            cache: cache_status,
        }));
        // A flight's leader: its client's items are queued, so that a slow client of its own
        // does not pace the followers.
        let fanout = fill.as_ref().and_then(|f| f.lead.as_ref());
        let outlet = match fanout {
            Some(_) => Outlet::queued(frames_tx),
            None => Outlet::Direct(frames_tx),
        };
        let pumped = pump(Pump {
            held: held.into(),
            chunks,
            frames: &outlet,
            include_usage: call.include_usage(),
            ctx: &ctx,
            idle: entry.spec.idle_timeout,
            entry: &entry,
            stopping: &self.inner.stopping,
            guard: guardrails.and_then(crate::guardrails::stream::StreamGuard::new),
            fanout,
            record: fill.is_some(),
        })
        .await;
        drop(flight);
        let took = started.elapsed();
        let (usage, usage_estimated) = match pumped.usage {
            Some(u) => (u, false),
            None => (
                Usage {
                    prompt_tokens: prompt_estimate,
                    completion_tokens: pumped.output_chunks,
                    total_tokens: prompt_estimate + pumped.output_chunks,
                    ..Usage::default()
                },
                true,
            ),
        };
        if pumped.result.is_err_and(|(s, _)| s == CLIENT_CLOSED) {
            metrics::counter!(telemetry::CLIENT_DISCONNECTS).increment(1);
        }
        let failure = match (pumped.error_class, pumped.result) {
            (Some(class), Err((_, label))) => Some((class, label)),
            _ => None,
        };
        spans::usage(&span, &usage);
        if let Err((_, label)) = pumped.result {
            spans::failed(&span, label);
        }
        drop(span);
        let ttft = pumped
            .first_output_at
            .map(|t| t.saturating_duration_since(started));
        let sample = Sample {
            success: failure.is_none(),
            latency: Some(took),
            ttft,
            output_tokens: usage.completion_tokens,
        };
        self.observe(&plan, &entry, probe, sample, failure);
        finish.entry = Some(&entry);
        finish.result = pumped.result;
        finish.usage = usage;
        finish.usage_estimated = usage_estimated;
        finish.compute = pumped.compute;
        finish.ttft = pumped.ttft;
        finish.upstream = Some(attempts.upstream + took);
        let cost = self.finish(finish).await;
        if let Some(mut fill) = fill.take() {
            if pumped.completed {
                // Followers get the whole stream either way; an answer without upstream
                // usage is not kept (its saving would be a guess).
                fill.keep_only_if(!usage_estimated);
                let meta = cache::meta_of_answer(&ctx, &call, &entry, usage, cost);
                self.fill_cache(fill, meta, crate::cache::Body::Stream(pumped.recorded));
            } else if let Some(lead) = fill.lead {
                lead.failed(pumped.error_event);
            }
        }
    }
}

pub(super) struct Pump<'a> {
    /// Chunks already read, sent before the rest.
    pub(super) held: VecDeque<StreamChunk>,
    pub(super) chunks: ChunkStream,
    pub(super) frames: &'a Outlet,
    pub(super) include_usage: bool,
    pub(super) ctx: &'a RequestContext,
    pub(super) idle: Option<Duration>,
    pub(super) entry: &'a ModelEntry,
    pub(super) stopping: &'a CancellationToken,
    /// Output guardrails, when the route has them.
    pub(super) guard: Option<crate::guardrails::stream::StreamGuard>,
    /// Identical requests following this stream: it goes on for them after its own client
    /// leaves, and they get each chunk.
    pub(super) fanout: Option<&'a crate::cache::Lead>,
    /// Keep the chunks as sent (the answer will be cached).
    pub(super) record: bool,
}

pub(super) struct Pumped {
    pub(super) usage: Option<Usage>,
    pub(super) compute: Option<Duration>,
    pub(super) ttft: Option<Duration>,
    pub(super) output_chunks: u64,
    pub(super) result: std::result::Result<(), (u16, &'static str)>,
    pub(super) error_class: Option<FailureClass>,
    pub(super) first_output_at: Option<Instant>,
    /// The upstream finished the stream properly (whether or not the client stayed).
    pub(super) completed: bool,
    /// The chunks as sent, when recording.
    pub(super) recorded: Vec<crate::cache::Chunk>,
    /// The error the stream ended with, if any.
    pub(super) error_event: Option<AnswerError>,
}

/// Forward chunks as stream items until the upstream ends, fails, stalls past the idle
/// timeout, or the client leaves.
pub(super) async fn pump(p: Pump<'_>) -> Pumped {
    let Pump {
        mut held,
        mut chunks,
        frames,
        include_usage,
        ctx,
        idle,
        entry,
        stopping,
        mut guard,
        fanout,
        record,
    } = p;
    let mut out = Pumped {
        usage: None,
        ttft: None,
        output_chunks: 0,
        result: Ok(()),
        error_class: None,
        compute: None,
        first_output_at: None,
        completed: false,
        recorded: Vec::new(),
        error_event: None,
    };
    let client_gone = Err((CLIENT_CLOSED, "client_disconnected"));
    // The client left while followers still listen: the stream goes on for them.
    let mut client_left = false;
    let followers = || fanout.is_some_and(|l| l.followers() > 0);
    loop {
        let next = match held.pop_front() {
            Some(chunk) => Some(Ok(chunk)),
            None => {
                let wait = async {
                    match idle {
                        Some(d) => {
                            tokio::time::timeout(d, chunks.next())
                                .await
                                .unwrap_or_else(|_| {
                                    Some(Err(Error::UpstreamTimeout {
                                        model: entry.spec.name.to_string(),
                                        provider: entry.spec.provider.as_str(),
                                        after: d,
                                    }))
                                })
                        }
                        None => chunks.next().await,
                    }
                };
                tokio::select! {
                    next = wait => next,
                    () = stopping.cancelled() => {
                        // Not the upstream's fault: no failure for its stats, breaker or
                        // rollout — only the error event and the row.
                        let e = shutting_down();
                        out.result = Err((e.status_code(), e.label()));
                        let error = AnswerError::from(&e);
                        out.error_event = Some(error.clone());
                        let _ = frames.send(StreamItem::Error(error)).await;
                        return out;
                    }
                    // The client (and every follower) left while the upstream was quiet: stop now.
                    () = audience_gone(frames, fanout) => {
                        out.result = client_gone;
                        return out;
                    }
                }
            }
        };
        let frame = match next {
            None => {
                // What output guardrails still hold back goes out before the end.
                match guard.as_mut().map(|g| g.finish()) {
                    Some(Ok(Some(tail))) => {
                        if record {
                            let chunk = crate::cache::Chunk {
                                data: tail.clone(),
                                usage_only: false,
                            };
                            if let Some(lead) = fanout {
                                lead.push(chunk.clone());
                            }
                            out.recorded.push(chunk);
                        }
                        if frames.send(StreamItem::Chunk(tail)).await.is_err() && !followers() {
                            out.result = client_gone;
                            return out;
                        }
                    }
                    Some(Err(e)) => {
                        end_with_error(frames, &mut out, &e).await;
                        return out;
                    }
                    Some(Ok(None)) | None => {}
                }
                out.completed = true;
                if client_left || frames.send(StreamItem::Done).await.is_err() {
                    out.result = client_gone;
                }
                return out;
            }
            Some(Err(e)) => {
                tracing::warn!(request_id = %ctx.id, error = %e, "upstream stream failed");
                out.error_class = Some(classify(&e));
                end_with_error(frames, &mut out, &e).await;
                return out;
            }
            Some(Ok(chunk)) => {
                if chunk.usage.is_some() {
                    out.usage = chunk.usage;
                }
                if chunk.compute.is_some() {
                    out.compute = chunk.compute;
                }
                if chunk.has_output {
                    out.output_chunks += 1;
                    if out.ttft.is_none() {
                        out.ttft = Some(ctx.started.elapsed());
                        out.first_output_at = Some(Instant::now());
                    }
                }
                let data = match guard.as_mut().filter(|_| !chunk.usage_only) {
                    None => chunk.data,
                    Some(g) => match g.chunk(&chunk.data) {
                        Ok(data) => data,
                        Err(e) => {
                            // Nothing of the match was sent: the stream ends here.
                            end_with_error(frames, &mut out, &e).await;
                            return out;
                        }
                    },
                };
                if record {
                    let kept = crate::cache::Chunk {
                        data: data.clone(),
                        usage_only: chunk.usage_only,
                    };
                    if let Some(lead) = fanout {
                        lead.push(kept.clone());
                    }
                    out.recorded.push(kept);
                }
                if (chunk.usage_only && !include_usage) || client_left {
                    continue;
                }
                match chunk.usage {
                    // The usage chunk carries the cost as an extension field.
                    Some(u) => StreamItem::Chunk(with_cost(&data, entry, &u, out.compute).into()),
                    None => StreamItem::Chunk(data),
                }
            }
        };
        if frames.send(frame).await.is_err() {
            if !followers() {
                out.result = client_gone;
                return out;
            }
            client_left = true;
        }
    }
}

/// Resolves once the client has left and no follower listens.
async fn audience_gone(frames: &Outlet, fanout: Option<&crate::cache::Lead>) {
    frames.closed().await;
    if let Some(lead) = fanout {
        lead.all_gone().await;
    }
}

/// `data` (a JSON chunk) with `"llmrr": {"cost_usd": "…"}` (or `"unpriced": true`) added.
fn with_cost(data: &[u8], entry: &ModelEntry, usage: &Usage, compute: Option<Duration>) -> Vec<u8> {
    let Ok(serde_json::Value::Object(mut map)) = serde_json::from_slice(data) else {
        return data.to_vec();
    };
    let pricing = &entry.spec.pricing;
    let ext = if pricing.is_priced() {
        serde_json::json!({ "cost_usd": cost_of(pricing, usage, compute).normalize().to_string() })
    } else {
        serde_json::json!({ "cost_usd": null, "unpriced": true })
    };
    map.insert("llmrr".into(), ext);
    serde_json::to_vec(&map).unwrap_or_else(|_| data.to_vec())
}

/// End the stream with `e`'s error event; a client already gone is logged as such.
async fn end_with_error(frames: &Outlet, out: &mut Pumped, e: &Error) {
    out.result = Err((e.status_code(), e.label()));
    let error = AnswerError::from(e);
    out.error_event = Some(error.clone());
    if frames.send(StreamItem::Error(error)).await.is_err() {
        out.result = Err((CLIENT_CLOSED, "client_disconnected"));
    }
}
