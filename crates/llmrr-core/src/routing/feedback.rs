//! Learning from users' own outcomes: the prompts logged for routes with `log_prompts = true`
//! that got feedback (`POST /v1/feedback`) become labelled rows for the difficulty scorer.
//!
//! A row's label comes from the model that answered and the feedback's score `s` in [0, 1]:
//! - answered by a model weaker than the route's strongest: `weak = s`, `strong = 1` (a bad
//!   answer says the strongest was needed; a good one says it was not);
//! - answered by the strongest with a bad score (`s < 0.5`): `weak = strong = s` (neither
//!   helps: the prompt is not one to escalate);
//! - answered by the strongest with a good score: left out (it says nothing about what the
//!   weaker models would have done).

use super::difficulty::dataset::Labelled;
use super::difficulty::ChatText;
use crate::config::Config;
use crate::error::Error;
use crate::error::Result;
use crate::store::Store;
use serde::Deserialize;

/// `POST /v1/feedback`: the outcome of one request, from the key that made it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feedback {
    /// The request's id (its `x-llmrr-request-id` answer header).
    pub request_id: String,
    /// How good the answer was, in [0, 1]; or `thumbs`.
    pub score: Option<f64>,
    /// `"up"` (1) or `"down"` (0).
    pub thumbs: Option<String>,
    pub comment: Option<String>,
}

/// Longest comment kept, in bytes.
pub const MAX_COMMENT_BYTES: usize = 2000;

impl Feedback {
    /// The outcome in ten-thousandths, checked.
    pub fn score_bp(&self) -> Result<i64> {
        let invalid = |message: &str, param: &str| Error::invalid(message, Some(param.into()));
        if self.request_id.is_empty() || self.request_id.len() > 200 {
            return Err(invalid("`request_id` must be a request's id", "request_id"));
        }
        if self
            .comment
            .as_ref()
            .is_some_and(|c| c.len() > MAX_COMMENT_BYTES)
        {
            return Err(invalid("`comment` is longer than 2000 bytes", "comment"));
        }
        let score = match (self.score, self.thumbs.as_deref()) {
            (Some(s), None) if (0.0..=1.0).contains(&s) => s,
            (Some(_), None) => return Err(invalid("`score` must be between 0 and 1", "score")),
            (None, Some("up")) => 1.0,
            (None, Some("down")) => 0.0,
            (None, Some(_)) => return Err(invalid("`thumbs` is \"up\" or \"down\"", "thumbs")),
            (None, None) => return Err(invalid("give `score` (0 to 1) or `thumbs`", "score")),
            (Some(_), Some(_)) => {
                return Err(invalid("give `score` or `thumbs`, not both", "thumbs"))
            }
        };
        Ok((score * 10_000.0).round() as i64)
    }
}

/// Labelled rows from the request log's prompts with feedback (of one route when given).
/// `strongest` names the strongest model of a route or model the log names (`None`: no
/// longer configured, the row is skipped); rows whose prompt does not read are skipped too.
pub async fn labelled_from_log(
    store: &Store,
    route: Option<&str>,
    strongest: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Labelled>> {
    let mut out = Vec::new();
    for row in store.prompts_with_feedback(route).await? {
        let Ok(text) = serde_json::from_str::<ChatText>(&row.prompt) else {
            continue;
        };
        let Some(strongest) = strongest(&row.requested_model) else {
            continue;
        };
        let score = (row.score as f32 / 10_000.0).clamp(0.0, 1.0);
        let by_strongest = row.model.as_deref() == Some(strongest.as_str());
        let (weak, strong) = match (by_strongest, score < 0.5) {
            (false, _) => (score, 1.0),
            (true, true) => (score, score),
            (true, false) => continue,
        };
        out.push(Labelled {
            text,
            subject: None,
            weak,
            strong,
        });
    }
    Ok(out)
}

/// The highest-quality model of a route (the model itself when `name` is a model).
pub fn strongest_model<'a>(config: &'a Config, name: &'a str) -> Option<&'a str> {
    match config.routes.iter().find(|r| *r.name == *name) {
        Some(route) => route
            .models
            .iter()
            .filter_map(|m| config.models.iter().find(|s| s.name == *m))
            .max_by(|a, b| a.quality.total_cmp(&b.quality))
            .map(|s| &*s.name),
        None => config
            .models
            .iter()
            .find(|s| *s.name == *name)
            .map(|s| &*s.name),
    }
}
