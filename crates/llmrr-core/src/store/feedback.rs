//! Feedback on requests (`POST /v1/feedback`), and the logged prompts that have it (what
//! `llmrr router train --from-log` learns from).

use super::{now_ms, Store};
use crate::error::Result;
use sqlx::Row;

/// A logged prompt with its outcome.
#[derive(Debug, Clone)]
pub struct FeedbackRow {
    pub request_id: String,
    /// The route (or model) the request named.
    pub requested_model: String,
    /// The model that answered.
    pub model: Option<String>,
    /// What the scorer read (JSON).
    pub prompt: String,
    /// The outcome in ten-thousandths (0: bad, 10000: good).
    pub score: i64,
}

impl Store {
    /// Whether a logged request with this id exists and, when `whose` is given, was made by
    /// that key (`Some(None)`: without a key — the open gateway).
    pub async fn request_visible(
        &self,
        request_id: &str,
        whose: Option<Option<&str>>,
    ) -> Result<bool> {
        let query = match whose {
            None => sqlx::query("SELECT 1 FROM request_log WHERE id = $1").bind(request_id),
            Some(None) => sqlx::query("SELECT 1 FROM request_log WHERE id = $1 AND key_id IS NULL")
                .bind(request_id),
            Some(Some(key)) => {
                sqlx::query("SELECT 1 FROM request_log WHERE id = $1 AND key_id = $2")
                    .bind(request_id)
                    .bind(key)
            }
        };
        Ok(query.fetch_optional(&self.pool).await?.is_some())
    }

    /// Stores (or replaces) the outcome of a request.
    pub async fn record_feedback(
        &self,
        request_id: &str,
        key_id: Option<&str>,
        score: i64,
        comment: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO feedback (request_id, key_id, score, comment, created_at_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (request_id) DO UPDATE SET key_id = excluded.key_id,
               score = excluded.score, comment = excluded.comment,
               created_at_ms = excluded.created_at_ms",
        )
        .bind(request_id)
        .bind(key_id)
        .bind(score)
        .bind(comment)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Logged prompts with feedback, oldest first; of one route (or model) when given.
    pub async fn prompts_with_feedback(&self, route: Option<&str>) -> Result<Vec<FeedbackRow>> {
        let of_route = if route.is_some() {
            "AND r.requested_model = $1"
        } else {
            ""
        };
        let sql = format!(
            "SELECT r.id, r.requested_model, r.model, r.prompt, f.score
             FROM request_log r JOIN feedback f ON f.request_id = r.id
             WHERE r.prompt IS NOT NULL {of_route}
             ORDER BY r.created_at_ms, r.id"
        );
        let mut query = sqlx::query(&sql);
        if let Some(route) = route {
            query = query.bind(route);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(FeedbackRow {
                    request_id: r.try_get("id")?,
                    requested_model: r.try_get("requested_model")?,
                    model: r.try_get("model")?,
                    prompt: r.try_get("prompt")?,
                    score: r.try_get("score")?,
                })
            })
            .collect()
    }
}
