//! Rate-limit allowances shared by the replicas (PostgreSQL; `limits.rs` says when): GCRA in
//! one statement, by the database's clock.
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

use super::Store;

/// Takes one from the allowance, or says how long until one is back. `$2`: the time one use
/// takes to come back (µs); `$3`: the whole allowance's (µs). A row's `full_at` is when the
/// allowance is whole again; a use moves it on by `$2`, unless that puts it more than `$3`
/// ahead of now. The `SELECT` sees the row as it was before the `INSERT` (one snapshot).
const TAKE: &str = "
WITH taken AS (
    INSERT INTO rate_limits AS r (key, full_at)
    VALUES ($1, CURRENT_TIMESTAMP + $2 * interval '1 microsecond')
    ON CONFLICT (key) DO UPDATE
        SET full_at = GREATEST(r.full_at, CURRENT_TIMESTAMP) + $2 * interval '1 microsecond'
        WHERE GREATEST(r.full_at, CURRENT_TIMESTAMP) + $2 * interval '1 microsecond'
            <= CURRENT_TIMESTAMP + $3 * interval '1 microsecond'
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM taken) AS taken,
    (SELECT CAST(EXTRACT(EPOCH FROM (full_at - CURRENT_TIMESTAMP)) * 1000000 AS BIGINT) + $2 - $3
        FROM rate_limits WHERE key = $1) AS wait_us";

impl Store {
    /// Takes one use from the allowance `key` (`per_use`: how long one takes to come back;
    /// `whole`: how long the whole allowance takes). `None`: taken; else how long until one is
    /// back. PostgreSQL only.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn take_allowance(
        &self,
        key: &str,
        per_use: Duration,
        whole: Duration,
    ) -> Result<Option<Duration>, DbErr> {
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        let row = self
            .db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                TAKE,
                [key.into(), micros(per_use).into(), micros(whole).into()],
            ))
            .await?
            .ok_or(DbErr::RecordNotFound("rate limit".into()))?;
        if row.try_get::<bool>("", "taken")? {
            return Ok(None);
        }
        let wait = row.try_get::<Option<i64>>("", "wait_us")?.unwrap_or(0);
        Ok(Some(Duration::from_micros(wait.max(1) as u64)))
    }

    /// Deletes allowances that are whole again (a missing row means the same).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn forget_full_allowances(&self) -> Result<u64, DbErr> {
        let done = self
            .db
            .execute_unprepared("DELETE FROM rate_limits WHERE full_at < CURRENT_TIMESTAMP")
            .await?;
        Ok(done.rows_affected())
    }
}
