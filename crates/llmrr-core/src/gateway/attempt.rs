//! Step 3: trying the plan's models in turn (retries, fallbacks by error class), and
//! feeding each outcome to the live stats, the breaker and the rollout.

use super::*;
use crate::limits::Refusal;

/// An attempt gets at least 1/MAX_SHARERS of the time left.
const MAX_SHARERS: u32 = 3;

/// How the attempts of a plan went.
pub(super) struct Attempts {
    pub(super) failures: Vec<AttemptFailure>,
    pub(super) last_error: Option<Error>,
    /// Distinct models that failed.
    pub(super) failed_models: Vec<Arc<str>>,
    pub(super) upstream: Duration,
    pub(super) retry_after: Option<Duration>,
    /// Models skipped without a call, and why (for the error when nothing was called).
    pub(super) skipped: Vec<String>,
    /// One of them was skipped for an open breaker (else all for rate limits).
    pub(super) skipped_open: bool,
    /// The error of the last model whose admission queue refused the request.
    pub(super) shed: Option<Error>,
}

impl Attempts {
    pub(super) fn new() -> Self {
        Attempts {
            skipped: Vec::new(),
            skipped_open: false,
            shed: None,
            failures: Vec::new(),
            last_error: None,
            failed_models: Vec::new(),
            upstream: Duration::ZERO,
            retry_after: None,
        }
    }

    pub(super) fn count(&self) -> u32 {
        self.failures.len() as u32 + 1
    }

    pub(super) fn fail(&mut self, entry: &ModelEntry, e: Error) {
        if !self.failed_models.contains(&entry.spec.name) {
            self.failed_models.push(entry.spec.name.clone());
        }
        self.failures.push(AttemptFailure {
            model: entry.spec.name.to_string(),
            status: e.status_code(),
            error: e.label(),
            message: e.client_message(),
        });
        if let Some(detail) = e.log_detail() {
            tracing::warn!(model = %entry.spec.name, error = %e, detail, "attempt failed");
        }
        if let Some(ra) = e.retry_after() {
            self.retry_after = Some(self.retry_after.map_or(ra, |r| r.min(ra)));
        }
        self.last_error = Some(e);
    }

    /// The error the client gets: the upstream's own when one model was tried, else the list.
    pub(super) fn into_error(self, requested: &str) -> Error {
        if self.failed_models.is_empty() {
            // Nothing called: a model queue's refusal says what happened best.
            if let Some(shed) = self.shed {
                return shed;
            }
        }
        match (self.failed_models.len(), self.last_error) {
            (1, Some(e)) => e,
            (0, _) => {
                // As at planning: 429 when only rate limits stood in the way, else 503; the
                // wait capped the same way.
                let (status, cap) = if self.skipped_open || self.skipped.is_empty() {
                    (503, crate::routing::BREAKER_RETRY_AFTER_CAP)
                } else {
                    (429, crate::routing::RATE_LIMIT_RETRY_AFTER_CAP)
                };
                Error::NoCandidate {
                    requested: requested.to_owned(),
                    reasons: if self.skipped.is_empty() {
                        vec!["every candidate was skipped".into()]
                    } else {
                        self.skipped
                    },
                    status,
                    retry_after: self
                        .retry_after
                        .map(|d| d.clamp(Duration::from_secs(1), cap)),
                    cause: crate::error::NoCandidateCause::Unavailable,
                }
            }
            _ => Error::AllFailed {
                attempts: self.failures,
                retry_after: self.retry_after,
            },
        }
    }
}

/// What one attempt produced.
pub(super) enum Outcome {
    Completed(Completed),
    /// A stream, and its chunks up to the first one with output (held back until then).
    Opened(ChunkStream, Vec<StreamChunk>),
}

/// The attempt that succeeded, and what came before it.
pub(super) struct Success {
    pub(super) entry: Arc<ModelEntry>,
    pub(super) probe: bool,
    pub(super) started: Instant,
    pub(super) flight: Flight,
    pub(super) outcome: Outcome,
    pub(super) attempts: Attempts,
    /// What the answering model's own account limits took (settled at the end).
    pub(super) grant: Ticket,
    /// The attempt's trace span: a stream's stays open until the stream ends.
    pub(super) span: tracing::Span,
}

/// Every attempt failed.
pub(super) struct Failed {
    /// Upstream time of the attempts made.
    pub(super) upstream: Duration,
    pub(super) error: Error,
    pub(super) last_entry: Option<Arc<ModelEntry>>,
}

fn queue_reason(r: Refusal) -> String {
    match r {
        Refusal::Full => "its queue is full".into(),
        Refusal::Evicted => "a higher-priority request took its place in the queue".into(),
        Refusal::Deadline { wait } => format!(
            "cannot start before the deadline (estimated wait {:.1}s)",
            wait.as_secs_f64()
        ),
        Refusal::TooSlow { wait } => format!(
            "its queue wait ({:.1}s) is above the latency constraint",
            wait.as_secs_f64()
        ),
    }
}

/// What the client gets when a model's queue refused it and nothing else was tried.
fn shed_error(model: &str, r: Refusal) -> Error {
    let message = format!("`{model}` is overloaded: {}", queue_reason(r));
    match r {
        Refusal::Full | Refusal::Evicted => Error::Overloaded {
            message,
            status: 429,
            code: "queue_full",
            retry_after: Some(Duration::from_secs(1)),
        },
        Refusal::Deadline { wait } | Refusal::TooSlow { wait } => Error::Overloaded {
            message,
            status: 503,
            code: "deadline_unreachable",
            retry_after: Some(wait.max(Duration::from_secs(1))),
        },
    }
}

impl Gateway {
    /// Feed one attempt's outcome to the stats, the breaker, the rollout and the attempt
    /// error counter.
    pub(super) fn observe(
        &self,
        plan: &Plan,
        entry: &ModelEntry,
        probe: bool,
        sample: Sample,
        failure: Option<(FailureClass, &'static str)>,
    ) {
        entry.stats.record(sample);
        if let Some((_, label)) = failure {
            telemetry::attempt_failed(&entry.spec.name, entry.spec.provider.as_str(), label);
        }
        let counts = failure.is_some_and(|(class, _)| class.counts_for_health());
        if let Some(cooldown) = entry.breaker.record(sample.success, counts, probe) {
            if let Some(sync) = &self.inner.breakers {
                sync.publish(&entry.spec.name, cooldown);
            }
        }
        if let Some(route) = &plan.route {
            if let Some(rolled_back) =
                self.inner
                    .router
                    .rollouts
                    .observe(route, &entry.spec.name, sample.success)
            {
                let this = self.clone();
                // Persist off the request path; the in-memory state has already changed.
                self.inner
                    .tracker
                    .spawn(async move { this.inner.router.rollouts.persist(&rolled_back).await });
            }
        }
    }

    /// One attempt on one model, until `deadline`: a complete answer, or a stream and its
    /// first chunk.
    pub(super) async fn try_once(
        &self,
        call: &Call,
        entry: &ModelEntry,
        stream: bool,
        deadline: Instant,
    ) -> Result<Outcome> {
        call_scope::reset();
        let started = Instant::now();
        let timeout = |limit: Instant| Error::UpstreamTimeout {
            model: entry.spec.name.to_string(),
            provider: entry.spec.provider.as_str(),
            after: limit.saturating_duration_since(started),
        };
        if !stream {
            return tokio::time::timeout_at(deadline, call.complete(&*entry.provider))
                .await
                .unwrap_or_else(|_| Err(timeout(deadline)))
                .map(Outcome::Completed);
        }
        // A stream has started once its first token is here: the chunks before it are held
        // back, so until then failing over is invisible to the client.
        let limit = entry
            .spec
            .ttft_timeout
            .map_or(deadline, |t| (started + t).min(deadline));
        let open = async {
            let mut chunks = call.open(&*entry.provider).await?.fuse().boxed();
            let mut held = Vec::new();
            loop {
                match chunks.next().await {
                    Some(Ok(chunk)) => {
                        let output = chunk.has_output;
                        held.push(chunk);
                        if output {
                            break;
                        }
                    }
                    Some(Err(e)) => return Err(e),
                    // A complete stream without output (an empty answer) is still an answer.
                    None => break,
                }
            }
            Ok(Outcome::Opened(chunks, held))
        };
        tokio::time::timeout_at(limit, open)
            .await
            .unwrap_or_else(|_| Err(timeout(limit)))
    }

    /// Step 3: try the plan's models in order until one succeeds. Each attempt gets at most
    /// the model's `timeout` and its share of the time left (the time left over the models
    /// left), so a stalled first model leaves time for the fallbacks; a timed-out attempt
    /// moves to the next model at once. Other retryable failures are retried on the same
    /// model with backoff; a 429 skips the model until its Retry-After;
    /// a context-length failure skips to a model with a larger window; a content-policy
    /// refusal goes to the route's content fallback; anything else moves to the next model.
    pub(super) async fn attempt_plan(
        &self,
        call: &Call,
        plan: &mut Plan,
        admission: &Admitted,
        stream: bool,
    ) -> std::result::Result<Success, Failed> {
        let policy = self.inner.router.config.retry;
        // A cascade's later passes share the first pass's deadline.
        let deadline = *plan
            .attempts_deadline
            .get_or_insert_with(|| Instant::now() + policy.max_total);
        let latency_limit = admission.latency_limit.or_else(|| {
            plan.route
                .as_deref()
                .and_then(|r| self.inner.router.route(r))
                .and_then(|r| r.constraints.max_latency)
        });
        let mut queue: VecDeque<Arc<ModelEntry>> = std::mem::take(&mut plan.attempts).into();
        let mut attempts = Attempts::new();
        let mut min_window: Option<u32> = None;
        let mut last_entry: Option<Arc<ModelEntry>> = None;
        'models: while let Some(entry) = queue.pop_front() {
            if min_window.is_some_and(|w| entry.spec.context_window.is_none_or(|cw| cw <= w)) {
                continue;
            }
            let mut tries = 0u32;
            while Instant::now() < deadline {
                if let Some(left) = entry.rate_limited() {
                    attempts.retry_after = Some(attempts.retry_after.map_or(left, |r| r.min(left)));
                    attempts.skipped.push(format!(
                        "{}: rate limited for {:.1}s more",
                        entry.spec.name,
                        left.as_secs_f64()
                    ));
                    continue 'models;
                }
                // Its admission queue first: wait for a slot (in class, deadline, arrival
                // order), or fall back when the wait is too long for the request. (A waiter
                // takes nothing of the model's account limits until it has a slot.)
                let slot = match self.inner.limits.gate(&entry.spec.name) {
                    None => None,
                    Some(gate) => {
                        let until = admission.deadline.min(deadline);
                        let limit = latency_limit.filter(|_| !queue.is_empty());
                        let waiting = spans::step("llmrr.queue");
                        waiting.record("llmrr.model", &*entry.spec.name);
                        match gate
                            .acquire(admission.class, until, limit)
                            .instrument(waiting)
                            .await
                        {
                            Ok(slot) => Some(slot),
                            Err(refusal) => {
                                attempts.skipped.push(format!(
                                    "{}: {}",
                                    entry.spec.name,
                                    queue_reason(refusal)
                                ));
                                attempts.shed = Some(shed_error(&entry.spec.name, refusal));
                                continue 'models;
                            }
                        }
                    }
                };
                // The model's own account limits: at them, skip it like a 429 would (the
                // slot, dropped, goes to the next waiter).
                let upstream = self.inner.limits.upstream(
                    &admission.key,
                    call.model(),
                    &entry,
                    admission.tokens,
                );
                let grant = match upstream.await {
                    Ok(grant) => grant,
                    Err(refusal) => {
                        let wait = refusal.wait.unwrap_or(DEFAULT_RATE_LIMIT_PAUSE);
                        if refusal.whole_model {
                            entry.rate_limit_for(wait);
                        }
                        metrics::counter!(telemetry::UPSTREAM_LIMIT_SKIPS,
                            "model" => entry.spec.name.to_string())
                        .increment(1);
                        attempts.retry_after =
                            Some(attempts.retry_after.map_or(wait, |r| r.min(wait)));
                        attempts.skipped.push(refusal.reason);
                        continue 'models;
                    }
                };
                let probe = match entry.breaker.admit() {
                    Admission::Allowed { probe } => probe,
                    Admission::Refused { .. } => {
                        self.cancel_ticket(grant);
                        attempts.skipped_open = true;
                        attempts
                            .skipped
                            .push(format!("{}: circuit open", entry.spec.name));
                        continue 'models;
                    }
                };
                tries += 1;
                last_entry = Some(entry.clone());
                let started = Instant::now();
                let flight = Flight::start(&entry).holding(slot);
                let now = Instant::now();
                // Time is shared with at most two models after this one: a long route does
                // not cut every attempt short.
                let models_left = (queue.len() as u32 + 1).min(MAX_SHARERS);
                let share = deadline.saturating_duration_since(now) / models_left;
                let attempt_deadline = now + share.min(entry.spec.timeout);
                let abandoned = entry.breaker.abandon_guard(probe);
                let span = spans::attempt(&entry.spec, call.endpoint(), attempts.count(), || {
                    call.sampling()
                });
                let tried = self
                    .try_once(call, &entry, stream, attempt_deadline)
                    .instrument(span.clone())
                    .await;
                abandoned.disarm();
                let e = match tried {
                    Ok(outcome) => {
                        // What is left of the plan (a cascade may go on to it).
                        plan.attempts = queue.into();
                        return Ok(Success {
                            entry,
                            probe,
                            started,
                            flight,
                            outcome,
                            attempts,
                            grant,
                            span,
                        });
                    }
                    Err(e) => {
                        spans::failed(&span, e.label());
                        e
                    }
                };
                drop(flight);
                self.settle_ticket(grant, 0);
                let took = started.elapsed();
                attempts.upstream += took;
                let class = classify(&e);
                // Waiting again on a model that just used its whole share would only spend
                // the fallbacks' time.
                let timed_out = matches!(e, Error::UpstreamTimeout { .. });
                if matches!(e, Error::Unsupported { .. } | Error::InvalidRequest { .. }) {
                    // Refused here (a translation), no upstream called: nothing about the
                    // model's health, latency or rollout; only a probe's place is given back.
                    entry.breaker.record(false, false, probe);
                } else {
                    self.observe(
                        plan,
                        &entry,
                        probe,
                        Sample {
                            success: false,
                            latency: Some(took),
                            ..Default::default()
                        },
                        Some((class, e.label())),
                    );
                }
                attempts.fail(&entry, e);
                match class {
                    FailureClass::Retryable if tries < policy.max_attempts && !timed_out => {
                        let delay = retry::backoff(&policy, tries - 1, &mut rand::thread_rng());
                        if Instant::now() + delay >= deadline {
                            continue 'models;
                        }
                        metrics::counter!(telemetry::RETRIES, "model" => entry.spec.name.to_string()).increment(1);
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    FailureClass::Retryable | FailureClass::Final => {}
                    FailureClass::RateLimited(after) => {
                        entry.rate_limit_for(after.unwrap_or(DEFAULT_RATE_LIMIT_PAUSE))
                    }
                    FailureClass::ContextLength => {
                        min_window = Some(
                            entry
                                .spec
                                .context_window
                                .unwrap_or(0)
                                .max(min_window.unwrap_or(0)),
                        );
                    }
                    FailureClass::ContentPolicy => {
                        queue.clear();
                        match plan.content_fallback.take() {
                            Some(fallback) if fallback.spec.name != entry.spec.name => {
                                queue.push_back(fallback)
                            }
                            _ => break 'models,
                        }
                    }
                }
                if !queue.is_empty() {
                    metrics::counter!(telemetry::FALLBACKS, "from" => entry.spec.name.to_string())
                        .increment(1);
                }
                continue 'models;
            }
            break;
        }
        Err(Failed {
            upstream: attempts.upstream,
            error: attempts.into_error(call.model()),
            last_entry,
        })
    }
}
