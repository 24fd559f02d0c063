//! # Implementation details
//!
//! Every statement the queue runs, with the schema name spliced in once (it is validated to
//! be a plain identifier, and quoted anyway).
//!
//! Passes are `u64` in the core and `bigint` in PostgreSQL: a pass is stored with its top bit
//! flipped ([`encode_pass`]), which maps `0..=u64::MAX` onto `i64::MIN..=i64::MAX` in the same
//! order, so `ORDER BY pass` on the column is ascending pass order.
//!
//! Times that leases, delays and the rate limit compare are all read from the database clock
//! (`now()`, `clock_timestamp()`), never from a node's, so nodes with skewed clocks agree.

/// The schema version this crate creates and understands.
pub(crate) const VERSION: i32 = 1;

pub(crate) const fn encode_pass(pass: u64) -> i64 {
    (pass ^ (1 << 63)) as i64
}

pub(crate) const fn decode_pass(stored: i64) -> u64 {
    (stored as u64) ^ (1 << 63)
}

/// The longest duration sent to the database, in microseconds: 1,000 years. PostgreSQL's
/// `bigint * interval` goes through `float8` and refuses products near `i64::MAX`
/// microseconds ("interval out of range"), and timestamps end in 294276 AD and begin in 4713
/// BC, so a duration of `i64::MAX` microseconds added to (or, for `prune_done`, taken from)
/// the present fails the statement. A thousand years either way already means "never".
pub(crate) const MAX_MICROS: i64 = 1_000 * 365 * 86_400 * 1_000_000;

/// Duration in whole microseconds (the unit of `interval`), capped at [`MAX_MICROS`].
pub(crate) fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).map_or(MAX_MICROS, |us| us.min(MAX_MICROS))
}

#[derive(Debug, Clone)]
pub(crate) struct Sql {
    pub(crate) migrate: String,
    pub(crate) lock_tenant: String,
    pub(crate) insert_tenant: String,
    pub(crate) insert_jobs: String,
    pub(crate) insert_jobs_uniform: String,
    pub(crate) claim: String,
    pub(crate) reap: String,
    pub(crate) complete: String,
    pub(crate) tenant_for_update: String,
    pub(crate) update_tenant_pass: String,
    pub(crate) fail: String,
    pub(crate) release: String,
    pub(crate) extend: String,
    pub(crate) diagnose: String,
    pub(crate) block: String,
    pub(crate) unblock: String,
    pub(crate) set_weight: String,
    pub(crate) set_quota: String,
    pub(crate) purge: String,
    pub(crate) tenant_info: String,
    pub(crate) backlog: String,
    pub(crate) oldest_pass: String,
    pub(crate) in_flight: String,
    pub(crate) counts: String,
    pub(crate) dead_jobs: String,
    pub(crate) requeue_dead: String,
    pub(crate) prune_done: String,
}

impl Sql {
    pub(crate) fn new(schema: &str) -> Self {
        let s = format!("\"{schema}\"");
        let now_ns = "(extract(epoch FROM clock_timestamp()) * 1000000000)::int8";
        Sql {
            migrate: format!(
                "CREATE SCHEMA IF NOT EXISTS {s};
                 CREATE TABLE IF NOT EXISTS {s}.meta (
                     key text PRIMARY KEY,
                     value int4 NOT NULL);
                 CREATE TABLE IF NOT EXISTS {s}.tenants (
                     tenant text PRIMARY KEY,
                     pass int8 NOT NULL DEFAULT {zero},
                     carry int8 NOT NULL DEFAULT 0,
                     weight int8 NOT NULL CHECK (weight BETWEEN 1 AND 4294967295),
                     blocked_reason text,
                     tat_ns int8 NOT NULL DEFAULT 0,
                     quota_interval_ns int8 CHECK (quota_interval_ns > 0),
                     quota_burst int8 CHECK (quota_burst BETWEEN 1 AND 4294967295),
                     updated_at timestamptz NOT NULL DEFAULT now());
                 CREATE INDEX IF NOT EXISTS tenants_pass ON {s}.tenants (pass);
                 CREATE TABLE IF NOT EXISTS {s}.jobs (
                     id int8 GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                     tenant text NOT NULL,
                     class text NOT NULL,
                     pass int8 NOT NULL,
                     cost int8 NOT NULL CHECK (cost BETWEEN 1 AND 4294967295),
                     payload bytea NOT NULL,
                     state text NOT NULL DEFAULT 'queued'
                         CHECK (state IN ('queued', 'running', 'done', 'dead')),
                     attempts int4 NOT NULL DEFAULT 0,
                     max_attempts int4 NOT NULL CHECK (max_attempts >= 1),
                     run_after timestamptz NOT NULL DEFAULT now(),
                     lease_until timestamptz,
                     lease_token int8,
                     worker text,
                     last_error text,
                     created_at timestamptz NOT NULL DEFAULT now(),
                     claimed_at timestamptz,
                     finished_at timestamptz)
                     -- A queue table churns: analyse and vacuum it often, so the claim keeps
                     -- its ordered index scan and dead index entries are cleared promptly.
                     WITH (autovacuum_vacuum_scale_factor = 0.02,
                           autovacuum_analyze_scale_factor = 0.02);
                 CREATE INDEX IF NOT EXISTS jobs_claim ON {s}.jobs (pass, id)
                     WHERE state = 'queued';
                 CREATE INDEX IF NOT EXISTS jobs_leases ON {s}.jobs (lease_until)
                     WHERE state = 'running';",
                zero = encode_pass(0),
            ),
            lock_tenant: format!(
                "SELECT t.pass, t.carry, t.weight, t.blocked_reason, t.tat_ns,
                        t.quota_interval_ns, t.quota_burst,
                        (SELECT j.pass FROM {s}.jobs j
                          WHERE j.state = 'queued' AND j.run_after <= now()
                          ORDER BY j.pass, j.id LIMIT 1) AS next_pass,
                        (SELECT max(m.pass) FROM {s}.tenants m) AS max_pass,
                        {now_ns} AS now_ns
                   FROM {s}.tenants t WHERE t.tenant = $1 FOR UPDATE OF t"
            ),
            insert_tenant: format!(
                "INSERT INTO {s}.tenants (tenant, weight) VALUES ($1, $2)
                 ON CONFLICT (tenant) DO NOTHING"
            ),
            insert_jobs: format!(
                "WITH t AS (
                     UPDATE {s}.tenants SET pass = $2, carry = $3, tat_ns = $4, updated_at = now()
                      WHERE tenant = $1)
                 INSERT INTO {s}.jobs (tenant, class, pass, cost, payload, max_attempts, run_after)
                 SELECT $1, u.class, u.pass, u.cost, u.payload, u.max_attempts,
                        now() + u.delay_us * interval '1 microsecond'
                   FROM unnest($5::text[], $6::int8[], $7::int8[], $8::bytea[], $9::int4[],
                               $10::int8[])
                        AS u(class, pass, cost, payload, max_attempts, delay_us)
                 RETURNING id, pass"
            ),
            insert_jobs_uniform: format!(
                "WITH t AS (
                     UPDATE {s}.tenants SET pass = $2, carry = $3, tat_ns = $4, updated_at = now()
                      WHERE tenant = $1)
                 INSERT INTO {s}.jobs (tenant, class, pass, cost, payload, max_attempts, run_after)
                 SELECT $1, $5, u.pass, $6, u.payload, $7, now() + $8 * interval '1 microsecond'
                   FROM unnest($9::int8[], $10::bytea[]) AS u(pass, payload)
                 RETURNING id, pass"
            ),
            // Ready jobs in pass order, one index scan that locks lazily (the LIMIT pulls only
            // what it needs). Expired leases are handled apart, by `reap`, so this statement
            // stays as lean as a plain FIFO claim.
            claim: format!(
                "WITH ready AS (
                     SELECT id FROM {s}.jobs
                      WHERE state = 'queued' AND run_after <= now()
                      ORDER BY pass, id LIMIT $2 FOR UPDATE SKIP LOCKED)
                 UPDATE {s}.jobs j SET
                     state = 'running', attempts = j.attempts + 1,
                     -- The claiming transaction's 64-bit id: never repeats, and two claims of
                     -- one job are always two transactions. Cheaper than a sequence.
                     lease_token = txid_current(),
                     lease_until = now() + $3 * interval '1 microsecond',
                     worker = $1, claimed_at = now()
                   FROM ready WHERE j.id = ready.id
                 RETURNING j.id, j.tenant, j.class, j.pass, j.cost, j.payload,
                           j.attempts, j.max_attempts, j.lease_token, j.lease_until, j.last_error"
            ),
            // Jobs whose lease expired go back to the queue with their pass (so they are
            // claimed next), or, if that was their last attempt, to the dead letters: a job
            // that kills its worker every time must not loop forever. The lease token and
            // end are kept, so the old holder's reports are refused as expired.
            reap: format!(
                "WITH expired AS (
                     SELECT id FROM {s}.jobs
                      WHERE state = 'running' AND lease_until <= now()
                      ORDER BY lease_until LIMIT $1 FOR UPDATE SKIP LOCKED)
                 UPDATE {s}.jobs j SET
                     state = CASE WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'queued' END,
                     finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END,
                     last_error = 'lease of worker ' || COALESCE(j.worker, '?')
                                  || ' expired on attempt ' || j.attempts || ' of '
                                  || j.max_attempts,
                     worker = NULL
                   FROM expired WHERE j.id = expired.id
                 RETURNING j.state"
            ),
            complete: format!(
                "UPDATE {s}.jobs SET state = 'done', finished_at = now(), lease_until = NULL
                  WHERE id = $1 AND lease_token = $2 AND state = 'running'
                    AND lease_until > clock_timestamp()"
            ),
            tenant_for_update: format!(
                "SELECT pass, carry, weight FROM {s}.tenants WHERE tenant = $1 FOR UPDATE"
            ),
            update_tenant_pass: format!(
                "UPDATE {s}.tenants SET pass = $2, carry = $3, updated_at = now()
                  WHERE tenant = $1"
            ),
            fail: format!(
                "UPDATE {s}.jobs SET
                     state = $3,
                     run_after = CASE WHEN $3 = 'queued'
                                      THEN clock_timestamp() + $4 * interval '1 microsecond'
                                      ELSE run_after END,
                     last_error = $5, lease_until = NULL, worker = NULL,
                     finished_at = CASE WHEN $3 = 'dead' THEN now() END
                  WHERE id = $1 AND lease_token = $2 AND state = 'running'
                    AND lease_until > clock_timestamp()
                 RETURNING run_after"
            ),
            release: format!(
                "UPDATE {s}.jobs SET state = 'queued', attempts = attempts - 1,
                        lease_until = NULL, worker = NULL
                  WHERE id = $1 AND lease_token = $2 AND state = 'running'
                    AND lease_until > clock_timestamp()"
            ),
            extend: format!(
                "UPDATE {s}.jobs SET lease_until = clock_timestamp() + $3 * interval '1 microsecond'
                  WHERE id = $1 AND lease_token = $2 AND state = 'running'
                    AND lease_until > clock_timestamp()
                 RETURNING lease_until"
            ),
            diagnose: format!(
                "SELECT state, lease_token,
                        lease_until IS NOT NULL AND lease_until <= clock_timestamp()
                   FROM {s}.jobs WHERE id = $1"
            ),
            block: format!(
                "INSERT INTO {s}.tenants (tenant, weight, blocked_reason) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant) DO UPDATE
                    SET blocked_reason = EXCLUDED.blocked_reason, updated_at = now()"
            ),
            unblock: format!(
                "UPDATE {s}.tenants SET blocked_reason = NULL, updated_at = now()
                  WHERE tenant = $1 AND blocked_reason IS NOT NULL"
            ),
            set_weight: format!(
                "INSERT INTO {s}.tenants (tenant, weight) VALUES ($1, $2)
                 ON CONFLICT (tenant) DO UPDATE SET weight = EXCLUDED.weight, updated_at = now()"
            ),
            set_quota: format!(
                "INSERT INTO {s}.tenants (tenant, weight, quota_interval_ns, quota_burst)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant) DO UPDATE
                    SET quota_interval_ns = EXCLUDED.quota_interval_ns,
                        quota_burst = EXCLUDED.quota_burst, updated_at = now()"
            ),
            purge: format!(
                "DELETE FROM {s}.jobs WHERE tenant = $1 AND state = 'queued' RETURNING id"
            ),
            tenant_info: format!(
                "SELECT pass, carry, weight, blocked_reason, quota_interval_ns, quota_burst
                   FROM {s}.tenants WHERE tenant = $1"
            ),
            backlog: format!(
                "SELECT j.tenant,
                        count(*) FILTER (WHERE j.state = 'queued'),
                        COALESCE(sum(j.cost) FILTER (WHERE j.state = 'queued'), 0)::int8,
                        min(j.pass) FILTER (WHERE j.state = 'queued'),
                        count(*) FILTER (WHERE j.state = 'running'),
                        t.weight, t.blocked_reason
                   FROM {s}.jobs j LEFT JOIN {s}.tenants t ON t.tenant = j.tenant
                  WHERE j.state IN ('queued', 'running')
                  GROUP BY j.tenant, t.weight, t.blocked_reason
                  ORDER BY 2 DESC, 1"
            ),
            oldest_pass: format!(
                "SELECT pass FROM {s}.jobs WHERE state = 'queued' ORDER BY pass, id LIMIT 1"
            ),
            in_flight: format!(
                "SELECT id, tenant, worker, attempts, lease_until,
                        lease_until <= clock_timestamp()
                   FROM {s}.jobs WHERE state = 'running' ORDER BY lease_until, id"
            ),
            counts: format!("SELECT state, count(*) FROM {s}.jobs GROUP BY state"),
            dead_jobs: format!(
                "SELECT id, tenant, class, attempts, last_error, payload FROM {s}.jobs
                  WHERE state = 'dead' ORDER BY finished_at DESC, id DESC LIMIT $1"
            ),
            requeue_dead: format!(
                "UPDATE {s}.jobs SET state = 'queued', attempts = 0, run_after = now(),
                        finished_at = NULL, lease_until = NULL
                  WHERE id = $1 AND state = 'dead'"
            ),
            prune_done: format!(
                "DELETE FROM {s}.jobs WHERE state = 'done'
                    AND finished_at < now() - $1 * interval '1 microsecond'"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_encoding_keeps_order() {
        let passes = [
            0,
            1,
            2,
            1 << 62,
            (1 << 63) - 1,
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
        ];
        for w in passes.windows(2) {
            assert!(encode_pass(w[0]) < encode_pass(w[1]), "{w:?}");
        }
        for p in passes {
            assert_eq!(decode_pass(encode_pass(p)), p);
        }
        assert_eq!(encode_pass(0), i64::MIN);
        assert_eq!(encode_pass(u64::MAX), i64::MAX);
    }
}
