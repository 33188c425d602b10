//! Recommendations computed from the ledger, each with its estimated monthly saving: a
//! cheaper model of the same route with similar quality for short simple prompts; repeated
//! identical prompts with no cache; a budget on track to run out before its period ends; a
//! model without a price.

use super::budget::Scope;
use super::cost::{estimate, picos};
use super::report::usd;
use super::Money;
use crate::config::Pricing;
use crate::error::Result;
use crate::store::SpendQuery;
use serde::Serialize;

/// Quality within this of the current model's counts as "similar".
pub const SIMILAR_QUALITY: f64 = 0.05;
/// Prompts up to this many tokens count as short.
pub const SHORT_PROMPT_TOKENS: i64 = 1000;
const MONTH_DAYS: f64 = 30.0;

/// A model a route may use, as the recommender sees it.
#[derive(Debug, Clone)]
pub struct RouteModel {
    pub model: String,
    pub quality: f64,
    pub pricing: Pricing,
}

#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub route: String,
    pub models: Vec<RouteModel>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    pub kind: &'static str,
    pub message: String,
    pub estimated_monthly_saving_usd: String,
    pub detail: serde_json::Value,
}

impl Money {
    /// Recommendations from the last `days` of the ledger.
    pub async fn recommend(
        &self,
        routes: &[RouteInfo],
        unpriced: &[String],
        days: i64,
    ) -> Result<Vec<Recommendation>> {
        let days = days.max(1);
        let now = self.now().as_millisecond();
        let q = SpendQuery {
            from_ms: now - days * 86_400_000,
            to_ms: now + 1,
            scope: Scope::Global,
            group_by: None,
            tz_offset_ms: 0,
            limit: 100,
        };
        let monthly = |pico: i64| usd((pico as f64 * MONTH_DAYS / days as f64).round() as i64);
        let mut out = Vec::new();
        for (route, model, n, prompt, completion, cost) in
            self.store().simple_traffic(&q, SHORT_PROMPT_TOKENS).await?
        {
            let Some(info) = routes.iter().find(|r| r.route == route) else {
                continue;
            };
            let Some(current) = info.models.iter().find(|m| m.model == model) else {
                continue;
            };
            let cheaper = info
                .models
                .iter()
                .filter(|m| m.model != model && m.pricing.is_priced())
                .filter(|m| m.quality >= current.quality - SIMILAR_QUALITY)
                .map(|m| {
                    (
                        m,
                        picos(estimate(&m.pricing, prompt as u64, completion as u64)),
                    )
                })
                .filter(|(_, c)| *c < cost)
                .min_by_key(|(_, c)| *c);
            if let Some((m, would)) = cheaper {
                out.push(Recommendation {
                    kind: "cheaper_model",
                    message: format!(
                        "route `{route}`: {n} short simple prompts went to `{model}`; `{}` \
                         (quality {:.2} vs {:.2}) would have cost ${} instead of ${}",
                        m.model,
                        m.quality,
                        current.quality,
                        usd(would),
                        usd(cost)
                    ),
                    estimated_monthly_saving_usd: monthly(cost - would),
                    detail: serde_json::json!({"route": route, "from": model, "to": m.model,
                        "requests": n}),
                });
            }
        }
        let repeated = self.store().repeated_prompts(&q).await?;
        if !repeated.is_empty() {
            // Every send after the first of each prompt could have been a cache hit.
            let avoidable: i64 = repeated
                .iter()
                .map(|(_, n, cost)| cost - cost / n.max(&1))
                .sum();
            let sends: i64 = repeated.iter().map(|(_, n, _)| n).sum();
            out.push(Recommendation {
                kind: "enable_cache",
                message: format!(
                    "{} prompts were sent {sends} times in all without a cache hit; caching \
                     them would have avoided ${}",
                    repeated.len(),
                    usd(avoidable)
                ),
                estimated_monthly_saving_usd: monthly(avoidable),
                detail: serde_json::json!({"distinct_prompts": repeated.len(), "sends": sends}),
            });
        }
        for s in self.status().await? {
            let Some(at) = &s.projected_exhaustion else {
                continue;
            };
            if s.exceeded {
                continue;
            }
            out.push(Recommendation {
                kind: "budget_runs_out",
                message: format!(
                    "budget {} ({}) is on track to reach its ${} limit at {at}, before it \
                     resets{}",
                    s.budget.scope,
                    s.budget.period.as_str(),
                    s.budget.limit_usd.unwrap_or_default().normalize(),
                    s.resets_at
                        .as_ref()
                        .map(|r| format!(" at {r}"))
                        .unwrap_or_default()
                ),
                estimated_monthly_saving_usd: "0".into(),
                detail: serde_json::json!({"budget_id": s.budget.id,
                    "spent_usd": s.spent_usd.to_string()}),
            });
        }
        for model in unpriced {
            out.push(Recommendation {
                kind: "unpriced_model",
                message: format!(
                    "model `{model}` has no price (not configured, not in the catalog): its \
                     requests are recorded at $0 and flagged `unpriced`; set \
                     input_cost_per_mtok and output_cost_per_mtok"
                ),
                estimated_monthly_saving_usd: "0".into(),
                detail: serde_json::json!({"model": model}),
            });
        }
        out.sort_by(|a, b| {
            let v =
                |r: &Recommendation| r.estimated_monthly_saving_usd.parse::<f64>().unwrap_or(0.0);
            v(b).total_cmp(&v(a))
        });
        Ok(out)
    }
}
