//! Users and teams: who keys belong to, and what budgets and spend reports are about.

use super::{now_ms, Store};
use crate::error::{Error, Result};
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TeamRow {
    pub id: String,
    pub name: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UserRow {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    pub team_id: Option<String>,
    pub created_at_ms: i64,
}

/// An id chosen by the operator: short, printable, no separators used by budget scopes.
pub fn check_id(what: &str, id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("`{id}` is not a valid {what} id: 1-64 of A-Z a-z 0-9 - _ . @"),
            Some("id".into()),
        ))
    }
}

impl Store {
    pub async fn upsert_team(&self, id: &str, name: &str) -> Result<TeamRow> {
        check_id("team", id)?;
        sqlx::query(
            "INSERT INTO teams (id, name, created_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name",
        )
        .bind(id)
        .bind(name)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        self.team(id)
            .await?
            .ok_or_else(|| Error::Internal("a team vanished after its write".into()))
    }

    pub async fn team(&self, id: &str) -> Result<Option<TeamRow>> {
        let row = sqlx::query("SELECT id, name, created_at_ms FROM teams WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(TeamRow {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                created_at_ms: r.try_get("created_at_ms")?,
            })
        })
        .transpose()
    }

    pub async fn list_teams(&self) -> Result<Vec<TeamRow>> {
        let rows = sqlx::query("SELECT id, name, created_at_ms FROM teams ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(TeamRow {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    created_at_ms: r.try_get("created_at_ms")?,
                })
            })
            .collect()
    }

    /// Delete a team that no user belongs to; returns whether it existed.
    pub async fn delete_team(&self, id: &str) -> Result<bool> {
        let members: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE team_id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        if members > 0 {
            return Err(Error::invalid(
                format!("team `{id}` still has {members} user(s): move or delete them first"),
                Some("id".into()),
            ));
        }
        let done = sqlx::query("DELETE FROM teams WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn upsert_user(
        &self,
        id: &str,
        name: &str,
        email: Option<&str>,
        team: Option<&str>,
    ) -> Result<UserRow> {
        check_id("user", id)?;
        if let Some(t) = team {
            if self.team(t).await?.is_none() {
                return Err(Error::NotFound(format!("no team `{t}`")));
            }
        }
        sqlx::query(
            "INSERT INTO users (id, name, email, team_id, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET \
             name = excluded.name, email = excluded.email, team_id = excluded.team_id",
        )
        .bind(id)
        .bind(name)
        .bind(email)
        .bind(team)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        self.user(id)
            .await?
            .ok_or_else(|| Error::Internal("a user vanished after its write".into()))
    }

    pub async fn user(&self, id: &str) -> Result<Option<UserRow>> {
        let row =
            sqlx::query("SELECT id, name, email, team_id, created_at_ms FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(user_row).transpose()
    }

    pub async fn list_users(&self) -> Result<Vec<UserRow>> {
        let rows =
            sqlx::query("SELECT id, name, email, team_id, created_at_ms FROM users ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(user_row).collect()
    }

    pub async fn delete_user(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

fn user_row(r: &sqlx::any::AnyRow) -> Result<UserRow> {
    Ok(UserRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        email: r.try_get("email")?,
        team_id: r.try_get("team_id")?,
        created_at_ms: r.try_get("created_at_ms")?,
    })
}
