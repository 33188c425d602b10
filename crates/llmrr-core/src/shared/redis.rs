//! Shared state in Redis: every check-and-update is one Lua script (atomic across replicas).
//!
//! Keys, all under the configured prefix: `{p}:intact` (the data is complete: set by a
//! rebuild), and per counter `{p}:c:{key}` (a hash: `spent`, `held`), `{p}:c:{key}:h`
//! (reservation id -> amount) and `{p}:c:{key}:e` (reservation id by expiry, so that holds of a
//! replica that died are freed). Amounts are integers; Lua compares them as doubles, exact
//! below 2^53 (counters of money are in nano-USD: $9 million).
//!
//! Rate limits: `{p}:r:{key}` holds a GCRA TAT in microseconds of Redis's own clock (`TIME`),
//! so replicas whose clocks differ still share one limit.

use super::{gcra, Hold, Rate, RateCheck, Reserve, Usage};
use crate::error::{Error, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use std::sync::Arc;
use std::time::Duration;

/// Per counter: 3 keys (counter, holds, expiries) and 3 args (limit or -1, amount, ttl ms or 0).
const RESERVE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
local now = tonumber(ARGV[1])
local id = ARGV[2]
local expiry = ARGV[3]
local n = (#KEYS - 1) / 3
for i = 0, n - 1 do
  local c, h, e = KEYS[2 + 3 * i], KEYS[3 + 3 * i], KEYS[4 + 3 * i]
  local gone = redis.call('ZRANGEBYSCORE', e, '-inf', now)
  for _, rid in ipairs(gone) do
    local amount = redis.call('HGET', h, rid)
    if amount then
      redis.call('HINCRBY', c, 'held', -tonumber(amount))
      redis.call('HDEL', h, rid)
    end
    redis.call('ZREM', e, rid)
  end
  local limit = tonumber(ARGV[4 + 3 * i])
  local amount = tonumber(ARGV[5 + 3 * i])
  local used = tonumber(redis.call('HGET', c, 'spent') or '0')
    + tonumber(redis.call('HGET', c, 'held') or '0')
  if limit >= 0 and used + amount > limit then return {i + 1, used} end
end
for i = 0, n - 1 do
  local c, h, e = KEYS[2 + 3 * i], KEYS[3 + 3 * i], KEYS[4 + 3 * i]
  local amount = ARGV[5 + 3 * i]
  local old = redis.call('HGET', h, id)
  if old then redis.call('HINCRBY', c, 'held', -tonumber(old)) end
  redis.call('HINCRBY', c, 'held', amount)
  redis.call('HSET', h, id, amount)
  redis.call('ZADD', e, expiry, id)
  local ttl = tonumber(ARGV[6 + 3 * i])
  if ttl > 0 then
    redis.call('PEXPIRE', c, ttl)
    redis.call('PEXPIRE', h, ttl)
    redis.call('PEXPIRE', e, ttl)
  end
end
return {0, 0}
";

/// Per counter: 3 keys and 2 args (actual amount, ttl ms or 0). Returns spent, held pairs.
const SETTLE: &str = r"
local id = ARGV[1]
local out = {}
local n = #KEYS / 3
for i = 0, n - 1 do
  local c, h, e = KEYS[1 + 3 * i], KEYS[2 + 3 * i], KEYS[3 + 3 * i]
  local old = redis.call('HGET', h, id)
  if old then
    redis.call('HINCRBY', c, 'held', -tonumber(old))
    redis.call('HDEL', h, id)
    redis.call('ZREM', e, id)
  end
  local amount = tonumber(ARGV[2 + 2 * i])
  if amount == 0 and redis.call('EXISTS', c) == 0 then
    -- A release on a counter that is gone: nothing to create.
    out[#out + 1] = 0
    out[#out + 1] = 0
  else
    local spent = redis.call('HINCRBY', c, 'spent', amount)
    local ttl = tonumber(ARGV[3 + 2 * i])
    if ttl > 0 then redis.call('PEXPIRE', c, ttl) end
    out[#out + 1] = spent
    out[#out + 1] = tonumber(redis.call('HGET', c, 'held') or '0')
  end
end
return out
";

/// ARGV[1]: overwrite (1) or only set missing counters (0); per counter: 1 key and 2 args
/// (spent, ttl ms or 0). An overwrite (a full rebuild) then marks the data complete.
const REBUILD: &str = r"
local n = #KEYS - 1
local overwrite = ARGV[1] == '1'
for i = 1, n do
  if overwrite then
    redis.call('HSET', KEYS[i + 1], 'spent', ARGV[2 * i])
  else
    redis.call('HSETNX', KEYS[i + 1], 'spent', ARGV[2 * i])
  end
  local ttl = tonumber(ARGV[2 * i + 1])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[i + 1], ttl) end
end
-- Only a full rebuild marks the data complete: a partial one must not hide a loss.
if overwrite then redis.call('SET', KEYS[1], '1') end
return 1
";

/// GCRA over several limits, all or none (the same arithmetic as `gcra::check`). Per limit:
/// 1 key and 3 args (limit, period µs, cost). Returns the refusing index (0: none), its retry
/// (µs, -1: never), then per limit its remaining, reset µs, allowed (1/0) and new TAT.
const RATE: &str = r"
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local refused, retry = 0, -1
local out = {}
local tats = {}
for i = 1, #KEYS do
  local limit = tonumber(ARGV[3 * i - 2])
  local period = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i])
  local interval = period / math.max(limit, 1)
  local base = tonumber(redis.call('GET', KEYS[i]) or now)
  if base < now then base = now end
  local new = base + math.ceil(cost * interval)
  local ok = cost <= limit and new - period <= now
  if not ok and refused == 0 then
    refused = i
    if cost <= limit then retry = new - period - now end
  end
  local tat = ok and new or base
  tats[i] = new
  local left = math.floor((now + period - tat) / interval)
  if left < 0 then left = 0 end
  if left > limit then left = limit end
  out[#out + 1] = left
  out[#out + 1] = tat - now
  out[#out + 1] = ok and 1 or 0
  out[#out + 1] = 0
end
if refused == 0 then
  for i = 1, #KEYS do
    local ttl = math.max(1, math.ceil((tats[i] - now) / 1000))
    redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', ttl)
  end
end
table.insert(out, 1, retry)
table.insert(out, 1, refused)
return out
";

/// One limit moved by a cost (negative: given back). 1 key; args limit, period µs, delta.
const RATE_ADJUST: &str = r"
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local old = redis.call('GET', KEYS[1])
if not old then return 0 end
local base = tonumber(old)
if base < now then base = now end
local interval = tonumber(ARGV[2]) / math.max(tonumber(ARGV[1]), 1)
local new = base + math.floor(tonumber(ARGV[3]) * interval + 0.5)
if new <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.max(1, math.ceil((new - now) / 1000)))
end
return 1
";

#[derive(Clone)]
pub struct RedisState {
    client: redis::Client,
    /// Made on first use, so that a replica starts while Redis is down (its outage policy
    /// then applies) and connects once Redis answers.
    conn: Arc<tokio::sync::OnceCell<ConnectionManager>>,
    /// When the last failed connection attempt was (ms since the Unix epoch): attempts are
    /// at most one every `RECONNECT_EVERY`, and fail fast between them.
    last_attempt_ms: Arc<std::sync::atomic::AtomicI64>,
    prefix: Arc<str>,
    scripts: Arc<Scripts>,
}

struct Scripts {
    reserve: Script,
    settle: Script,
    rebuild: Script,
    rate: Script,
    rate_adjust: Script,
}

/// Connection attempts while Redis has never answered: at most one this often.
const RECONNECT_EVERY: Duration = Duration::from_secs(2);

fn shared(e: redis::RedisError) -> Error {
    Error::Shared(format!("redis: {e}"))
}

fn ms(d: Option<Duration>) -> i64 {
    d.map_or(0, |d| d.as_millis().clamp(1, i64::MAX as u128) as i64)
}

impl RedisState {
    /// A malformed URL is an error here; an unreachable server is not (see `conn`): the first
    /// operation reports it, and the caller's outage policy applies.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        let client = redis::Client::open(url).map_err(shared)?;
        let state = RedisState {
            client,
            conn: Arc::new(tokio::sync::OnceCell::new()),
            last_attempt_ms: Arc::new(std::sync::atomic::AtomicI64::new(0)),
            prefix: prefix.into(),
            scripts: Arc::new(Scripts {
                reserve: Script::new(RESERVE),
                settle: Script::new(SETTLE),
                rebuild: Script::new(REBUILD),
                rate: Script::new(RATE),
                rate_adjust: Script::new(RATE_ADJUST),
            }),
        };
        if let Err(e) = state.conn().await {
            tracing::error!(error = %e, "shared state: Redis does not answer yet");
        }
        Ok(state)
    }

    pub fn scoped(&self, name: &str) -> Self {
        RedisState {
            prefix: format!("{}:{name}", self.prefix).into(),
            ..self.clone()
        }
    }

    /// The connection manager (it reconnects by itself once made).
    async fn conn(&self) -> Result<ConnectionManager> {
        use std::sync::atomic::Ordering;
        if let Some(c) = self.conn.get() {
            return Ok(c.clone());
        }
        let now = crate::store::now_ms();
        let last = self.last_attempt_ms.load(Ordering::Relaxed);
        if now - last < RECONNECT_EVERY.as_millis() as i64 {
            return Err(Error::Shared("redis: not connected".into()));
        }
        self.last_attempt_ms.store(now, Ordering::Relaxed);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(2);
        let init = self
            .conn
            .get_or_try_init(|| self.client.get_connection_manager_with_config(config));
        match tokio::time::timeout(RECONNECT_EVERY, init).await {
            Ok(Ok(c)) => Ok(c.clone()),
            Ok(Err(e)) => Err(shared(e)),
            Err(_) => Err(Error::Shared("redis: connecting timed out".into())),
        }
    }

    fn counter(&self, key: &str) -> [String; 3] {
        let c = format!("{}:c:{key}", self.prefix);
        [format!("{c}:h"), format!("{c}:e"), c]
    }

    pub async fn reserve(&self, id: &str, holds: &[Hold], hold: Duration) -> Result<Reserve> {
        let now = crate::store::now_ms();
        let mut inv = self.scripts.reserve.prepare_invoke();
        inv.key(format!("{}:intact", self.prefix));
        inv.arg(now).arg(id).arg(now + hold.as_millis() as i64);
        for h in holds {
            let [holds_key, exp_key, c] = self.counter(&h.key);
            inv.key(c).key(holds_key).key(exp_key);
            inv.arg(h.limit.unwrap_or(-1)).arg(h.amount).arg(ms(h.ttl));
        }
        let (code, used): (i64, i64) = inv
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(shared)?;
        Ok(match code {
            0 => Reserve::Held,
            -1 => Reserve::Lost,
            i => Reserve::Full {
                index: (i - 1) as usize,
                used,
            },
        })
    }

    pub async fn settle(&self, id: &str, actual: &[Hold]) -> Result<Vec<Usage>> {
        let mut inv = self.scripts.settle.prepare_invoke();
        inv.arg(id);
        for h in actual {
            let [holds_key, exp_key, c] = self.counter(&h.key);
            inv.key(c).key(holds_key).key(exp_key);
            inv.arg(h.amount).arg(ms(h.ttl));
        }
        let flat: Vec<i64> = inv
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(shared)?;
        Ok(flat
            .chunks(2)
            .map(|p| Usage {
                spent: p[0],
                held: p.get(1).copied().unwrap_or(0),
            })
            .collect())
    }

    pub async fn read(&self, keys: &[String]) -> Result<Vec<Usage>> {
        let mut pipe = redis::pipe();
        for k in keys {
            let [_, _, c] = self.counter(k);
            pipe.cmd("HMGET").arg(c).arg("spent").arg("held");
        }
        let rows: Vec<(Option<i64>, Option<i64>)> = pipe
            .query_async(&mut self.conn().await?)
            .await
            .map_err(shared)?;
        Ok(rows
            .into_iter()
            .map(|(spent, held)| Usage {
                spent: spent.unwrap_or(0),
                held: held.unwrap_or(0),
            })
            .collect())
    }

    pub async fn rebuild(&self, spent: &[Hold], overwrite: bool) -> Result<()> {
        let mut inv = self.scripts.rebuild.prepare_invoke();
        inv.key(format!("{}:intact", self.prefix));
        inv.arg(if overwrite { "1" } else { "0" });
        for h in spent {
            let [_, _, c] = self.counter(&h.key);
            inv.key(c);
            inv.arg(h.amount).arg(ms(h.ttl));
        }
        let _: i64 = inv
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(shared)?;
        Ok(())
    }

    pub async fn rate(&self, rates: &[Rate]) -> Result<RateCheck> {
        let mut inv = self.scripts.rate.prepare_invoke();
        for r in rates {
            inv.key(format!("{}:r:{}", self.prefix, r.key));
            inv.arg(r.limit)
                .arg(r.period.as_micros().min(i64::MAX as u128) as i64)
                .arg(r.cost.max(0));
        }
        let flat: Vec<i64> = inv
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(shared)?;
        let refused = flat.first().copied().unwrap_or(0);
        let retry = flat.get(1).copied().unwrap_or(-1);
        let verdicts: Vec<gcra::Verdict> = flat
            .get(2..)
            .unwrap_or_default()
            .chunks(4)
            .map(|c| gcra::Verdict {
                allowed: c.get(2) == Some(&1),
                new_tat: 0,
                remaining: c[0].max(0) as u64,
                reset_us: c.get(1).copied().unwrap_or(0),
                retry_us: None,
            })
            .collect();
        let refused = (refused > 0).then(|| (refused - 1) as usize);
        let mut check = super::memory::check_of(refused, &verdicts);
        check.retry_after =
            (refused.is_some() && retry >= 0).then(|| Duration::from_micros(retry as u64));
        Ok(check)
    }

    pub async fn rate_adjust(&self, rate: &Rate) -> Result<()> {
        let _: i64 = self
            .scripts
            .rate_adjust
            .key(format!("{}:r:{}", self.prefix, rate.key))
            .arg(rate.limit)
            .arg(rate.period.as_micros().min(i64::MAX as u128) as i64)
            .arg(rate.cost)
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(shared)?;
        Ok(())
    }

    pub async fn claim_once(&self, key: &str, ttl: Duration) -> Result<bool> {
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("{}:once:{key}", self.prefix))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ms(Some(ttl)))
            .query_async(&mut self.conn().await?)
            .await
            .map_err(shared)?;
        Ok(set.is_some())
    }

    /// Values live under `{prefix}:v:`.
    fn value_key(&self, key: &str) -> String {
        format!("{}:v:{key}", self.prefix)
    }

    pub async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>> {
        let v: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.value_key(key))
            .query_async(&mut self.conn().await?)
            .await
            .map_err(shared)?;
        Ok(v.map(bytes::Bytes::from))
    }

    pub async fn set(&self, key: &str, value: bytes::Bytes, ttl: Duration) -> Result<()> {
        let () = redis::cmd("SET")
            .arg(self.value_key(key))
            .arg(value.as_ref())
            .arg("PX")
            .arg(ms(Some(ttl)))
            .query_async(&mut self.conn().await?)
            .await
            .map_err(shared)?;
        Ok(())
    }

    pub async fn head(&self, key: &str, len: usize) -> Result<Option<bytes::Bytes>> {
        let v: Vec<u8> = redis::cmd("GETRANGE")
            .arg(self.value_key(key))
            .arg(0)
            .arg(len.saturating_sub(1))
            .query_async(&mut self.conn().await?)
            .await
            .map_err(shared)?;
        Ok((!v.is_empty()).then(|| bytes::Bytes::from(v)))
    }

    /// SCAN (never KEYS: it would block Redis on a large key space).
    pub async fn keys_matching(&self, pattern: &str) -> Result<Vec<String>> {
        let mut conn = self.conn().await?;
        // The prefix is matched literally (it may hold glob characters); `pattern`'s own `*`
        // are the only wildcards.
        let literal: String = self
            .value_key("")
            .chars()
            .flat_map(|c| match c {
                '*' | '?' | '[' | ']' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let full = format!("{literal}{pattern}");
        let strip = self.value_key("").len();
        let mut cursor: u64 = 0;
        let mut out = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&full)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(shared)?;
            out.extend(keys.into_iter().map(|k| k[strip..].to_owned()));
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    pub async fn delete(&self, keys: &[String]) -> Result<u64> {
        let mut conn = self.conn().await?;
        let mut deleted = 0;
        for batch in keys.chunks(500) {
            let n: u64 = redis::cmd("UNLINK")
                .arg(batch.iter().map(|k| self.value_key(k)).collect::<Vec<_>>())
                .query_async(&mut conn)
                .await
                .map_err(shared)?;
            deleted += n;
        }
        Ok(deleted)
    }
}
