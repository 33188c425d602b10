//! Gradual rollouts: a route moves its traffic from model `from` to model `to` in stages
//! (e.g. 10/30/70/100 % of requests, each stage lasting `stage_secs`), and rolls back on its
//! own when `to`'s error rate passes `max_error_rate` after at least `min_requests` calls.
//!
//! The stage is a pure function of the start time and the clock, and every state change is
//! written to the store, so a restart resumes where the rollout was, and every replica reads
//! the others' changes ([`RolloutBook::refresh`], about once a second): a rollout started,
//! aborted or rolled back on one is in force on all. The error counts of `to` live in memory,
//! per replica (a restart starts counting again).

use crate::error::{Error, Result};
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    Active,
    Completed,
    RolledBack,
    Aborted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub route: String,
    pub from: String,
    pub to: String,
    /// Percent of traffic to `to` in each stage, rising.
    pub stages: Vec<u8>,
    pub stage_secs: f64,
    pub max_error_rate: f64,
    pub min_requests: u32,
    pub started_at_ms: i64,
    pub state: RolloutState,
    pub ended_at_ms: Option<i64>,
    pub reason: Option<String>,
}

/// Where a rollout stands at some moment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Position {
    pub state: RolloutState,
    pub stage: usize,
    pub percent_to: u8,
}

impl Rollout {
    pub fn position(&self, now_ms: i64) -> Position {
        match self.state {
            RolloutState::RolledBack | RolloutState::Aborted => Position {
                state: self.state,
                stage: 0,
                percent_to: 0,
            },
            RolloutState::Completed => Position {
                state: self.state,
                stage: self.stages.len() - 1,
                percent_to: 100,
            },
            RolloutState::Active => {
                let elapsed = (now_ms - self.started_at_ms).max(0) as f64 / 1000.0;
                let stage = (elapsed / self.stage_secs).floor() as usize;
                if stage >= self.stages.len() {
                    Position {
                        state: RolloutState::Completed,
                        stage: self.stages.len() - 1,
                        percent_to: 100,
                    }
                } else {
                    Position {
                        state: RolloutState::Active,
                        stage,
                        percent_to: self.stages[stage],
                    }
                }
            }
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |param: &str, m: String| Err(Error::invalid(m, Some(param.to_owned())));
        if self.stages.is_empty() || self.stages.iter().any(|p| *p > 100) {
            return bad(
                "stages",
                "stages are percents from 0 to 100, at least one".into(),
            );
        }
        if self.stages.windows(2).any(|w| w[0] > w[1]) {
            return bad("stages", "stages must not decrease".into());
        }
        if !(self.stage_secs.is_finite() && self.stage_secs > 0.0) {
            return bad("stage_minutes", "must be a positive number".into());
        }
        if !(0.0..=1.0).contains(&self.max_error_rate) {
            return bad(
                "max_error_rate",
                format!("{} must be between 0 and 1", self.max_error_rate),
            );
        }
        if self.from == self.to {
            return bad("to", "`to` must differ from `from`".into());
        }
        Ok(())
    }
}

#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    ok: u64,
    failed: u64,
}

/// The rollouts of every route, in memory, written through to the store.
pub struct RolloutBook {
    store: Store,
    inner: Mutex<HashMap<String, (Rollout, Counts)>>,
    /// When a failed write was last logged (retried every second: logged once a minute).
    write_error_logged: Mutex<Option<std::time::Instant>>,
}

impl RolloutBook {
    pub async fn load(store: Store) -> Result<Self> {
        let book = RolloutBook {
            store,
            inner: Mutex::new(HashMap::new()),
            write_error_logged: Mutex::new(None),
        };
        book.refresh().await?;
        Ok(book)
    }

    /// Take in what other replicas wrote: a rollout started later than the one known here
    /// replaces it (its counts start again); one that ended (rolled back, aborted) ends here
    /// too. An end is never undone by an older row.
    pub async fn refresh(&self) -> Result<()> {
        let rows = self.store.load_rollouts().await?;
        let stored: Vec<Rollout> = rows
            .iter()
            .filter_map(|body| match serde_json::from_str::<Rollout>(body) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::error!(error = %e, "a stored rollout cannot be read; ignored");
                    None
                }
            })
            .collect();
        // Ends decided here whose write failed (the store still says active): written again.
        let mut unwritten = Vec::new();
        {
            let mut g = self.lock();
            for r in stored {
                match g.get_mut(&r.route) {
                    None => {
                        g.insert(r.route.clone(), (r, Counts::default()));
                    }
                    Some((mine, counts)) => {
                        if r.started_at_ms > mine.started_at_ms {
                            *mine = r;
                            *counts = Counts::default();
                        } else if r.started_at_ms == mine.started_at_ms {
                            let (here, there) = (mine.state, r.state);
                            if here == RolloutState::Active && there != RolloutState::Active {
                                *mine = r;
                            } else if here != RolloutState::Active && there == RolloutState::Active
                            {
                                unwritten.push(mine.clone());
                            }
                        }
                    }
                }
            }
        }
        for r in unwritten {
            self.persist(&r).await;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Rollout, Counts)>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, route: &str) -> Option<Rollout> {
        self.lock().get(route).map(|(r, _)| r.clone())
    }

    pub fn list(&self) -> Vec<Rollout> {
        let mut all: Vec<Rollout> = self.lock().values().map(|(r, _)| r.clone()).collect();
        all.sort_by(|a, b| a.route.cmp(&b.route));
        all
    }

    /// Start (or replace) the rollout of a route.
    pub async fn start(&self, rollout: Rollout) -> Result<Rollout> {
        rollout.validate()?;
        if let Some(current) = self.get(&rollout.route) {
            if current.position(crate::store::now_ms()).state == RolloutState::Active {
                return Err(Error::invalid(
                    format!(
                        "route `{}` already has an active rollout: abort it first",
                        rollout.route
                    ),
                    Some("route".into()),
                ));
            }
        }
        if !self.save(&rollout).await? {
            return Err(changed_elsewhere(&rollout.route));
        }
        self.lock()
            .insert(rollout.route.clone(), (rollout.clone(), Counts::default()));
        Ok(rollout)
    }

    /// Write `rollout` unless the store holds a later rollout of its route (`false`).
    async fn save(&self, rollout: &Rollout) -> Result<bool> {
        self.store
            .save_rollout(&rollout.route, rollout.started_at_ms, &to_json(rollout))
            .await
    }

    /// Abort: traffic goes back to `from` at once. Written to the store first: a failed write
    /// changes nothing here either (the admin can try again).
    pub async fn abort(&self, route: &str) -> Result<Rollout> {
        let mut updated = self
            .get(route)
            .ok_or_else(|| Error::NotFound(format!("no rollout for route `{route}`")))?;
        if updated.position(crate::store::now_ms()).state != RolloutState::Active {
            return Err(Error::invalid(
                format!("the rollout of `{route}` is not active"),
                Some("route".into()),
            ));
        }
        updated.state = RolloutState::Aborted;
        updated.ended_at_ms = Some(crate::store::now_ms());
        updated.reason = Some("aborted through the admin API".into());
        if !self.save(&updated).await? {
            return Err(changed_elsewhere(route));
        }
        self.ended(&updated);
        Ok(updated)
    }

    /// `ended` (aborted, rolled back) replaces the same rollout here, if it is still the one
    /// known.
    fn ended(&self, ended: &Rollout) {
        if let Some((mine, _)) = self.lock().get_mut(&ended.route) {
            if mine.started_at_ms == ended.started_at_ms {
                *mine = ended.clone();
            }
        }
    }

    /// Count an attempt's outcome on `model`; when it rolls a rollout back, returns the
    /// updated rollout, which the caller must persist (`persist`).
    pub fn observe(&self, route: &str, model: &str, success: bool) -> Option<Rollout> {
        let mut g = self.lock();
        let (r, counts) = g.get_mut(route)?;
        if r.to != model || r.position(crate::store::now_ms()).state != RolloutState::Active {
            return None;
        }
        if success {
            counts.ok += 1;
        } else {
            counts.failed += 1;
        }
        let total = counts.ok + counts.failed;
        let rate = counts.failed as f64 / total as f64;
        if total >= u64::from(r.min_requests) && rate > r.max_error_rate {
            r.state = RolloutState::RolledBack;
            r.ended_at_ms = Some(crate::store::now_ms());
            r.reason = Some(format!(
                "`{}` failed {} of {} calls ({:.0}% > {:.0}%)",
                r.to,
                counts.failed,
                total,
                rate * 100.0,
                r.max_error_rate * 100.0
            ));
            tracing::warn!(
                route,
                reason = r.reason.as_deref().unwrap_or(""),
                "rollout rolled back"
            );
            return Some(r.clone());
        }
        None
    }

    /// Write a rollout's end decided here (a rollback), unless the store already holds a
    /// later rollout of the route (started on another replica meanwhile). A failed write is
    /// tried again by the next [`RolloutBook::refresh`].
    pub async fn persist(&self, rollout: &Rollout) {
        // Not written when the store holds a later rollout (started on another replica).
        if let Err(e) = self.save(rollout).await {
            let mut last = self
                .write_error_logged
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60)) {
                *last = Some(std::time::Instant::now());
                tracing::error!(error = %e, route = %rollout.route,
                    "cannot save the rollout state; tried again every second");
            }
        }
    }
}

/// A write refused because another replica started a later rollout of `route` meanwhile.
fn changed_elsewhere(route: &str) -> Error {
    Error::invalid(
        format!(
            "the rollout of `{route}` was changed by another replica a moment ago: \
             look again (GET /admin/rollouts)"
        ),
        Some("route".into()),
    )
}

fn to_json(r: &Rollout) -> String {
    serde_json::to_string(r).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout() -> Rollout {
        Rollout {
            route: "auto".into(),
            from: "a".into(),
            to: "b".into(),
            stages: vec![10, 30, 70, 100],
            stage_secs: 60.0,
            max_error_rate: 0.2,
            min_requests: 5,
            started_at_ms: 1_000_000,
            state: RolloutState::Active,
            ended_at_ms: None,
            reason: None,
        }
    }

    #[test]
    fn stages_follow_the_clock() {
        let r = rollout();
        let at = |secs: i64| r.position(1_000_000 + secs * 1000);
        assert_eq!(at(0).percent_to, 10);
        assert_eq!(at(59).percent_to, 10);
        assert_eq!(at(60).percent_to, 30);
        assert_eq!((at(150).stage, at(150).percent_to), (2, 70));
        assert_eq!(at(190).percent_to, 100);
        assert_eq!(at(240).state, RolloutState::Completed);
        let mut back = r.clone();
        back.state = RolloutState::RolledBack;
        assert_eq!(back.position(1_000_000).percent_to, 0);
    }

    #[tokio::test]
    async fn rolls_back_past_the_error_rate_and_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/r.db", dir.path().display());
        let store = Store::connect(&url).await.expect("store");
        let book = RolloutBook::load(store.clone()).await.expect("book");
        let mut r = rollout();
        r.started_at_ms = crate::store::now_ms();
        book.start(r).await.expect("start");
        assert!(
            book.start(rollout()).await.is_err(),
            "one active rollout per route"
        );
        // 3 failures of 4 calls: above 20 % but under the minimum of 5 calls.
        for ok in [true, false, false, false] {
            assert!(book.observe("auto", "b", ok).is_none());
        }
        assert!(
            book.observe("auto", "a", false).is_none(),
            "only `to` counts"
        );
        let rolled = book.observe("auto", "b", false).expect("rolled back");
        assert_eq!(rolled.state, RolloutState::RolledBack);
        book.persist(&rolled).await;
        let reloaded = RolloutBook::load(store).await.expect("reload");
        assert_eq!(
            reloaded.get("auto").map(|r| r.state),
            Some(RolloutState::RolledBack)
        );
    }

    /// Two replicas' books on one store: the end of an older rollout, written late, never
    /// replaces a later one; an abort of the older one is refused, and each book takes in the
    /// later rollout on its next refresh.
    #[tokio::test]
    async fn an_older_rollout_never_replaces_a_later_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/r.db", dir.path().display());
        let store = Store::connect(&url).await.expect("store");
        let a = RolloutBook::load(store.clone()).await.expect("a");
        let b = RolloutBook::load(store.clone()).await.expect("b");
        let mut first = rollout();
        first.started_at_ms = crate::store::now_ms() - 10_000;
        a.start(first.clone()).await.expect("first");
        b.refresh().await.expect("b sees it");
        // A ends it and starts a later one; B has not looked yet.
        a.abort("auto").await.expect("abort");
        let mut later = rollout();
        later.started_at_ms = crate::store::now_ms();
        a.start(later.clone()).await.expect("later");
        let refused = b.abort("auto").await;
        assert!(
            refused.is_err(),
            "B's abort of the older rollout is refused"
        );
        let mut rolled_back = first.clone();
        rolled_back.state = RolloutState::RolledBack;
        b.persist(&rolled_back).await;
        let stored = RolloutBook::load(store.clone()).await.expect("stored");
        assert_eq!(stored.get("auto"), Some(later.clone()));
        b.refresh().await.expect("refresh");
        assert_eq!(b.get("auto"), Some(later));
    }
}
