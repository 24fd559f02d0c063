//! [`Queue`]: enqueue with passes, claim in pass order under leases, complete and fail.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use std::time::{Duration, SystemTime};

use tokio_postgres::GenericClient;
use tokio_postgres::types::Type;

use crate::QueueConfig;
use crate::error::Error;
use crate::exec::{Exec, Prepared};
use crate::gcra::{Gcra, Refusal};
use crate::job::{Job, JobId, JobState, Lease, NewJob};
use crate::sql::{Sql, VERSION, decode_pass, encode_pass, micros};
use fairshare::fleet::{PassAssigner, TenantPass};

/// A fair, durable job queue in the host's PostgreSQL database, shared by any number of
/// worker processes on any number of nodes.
///
/// Each job gets a *pass* when it is enqueued: the tenant's virtual finish time, advanced by
/// the job's cost divided by the tenant's weight (the core's
/// [`fairshare`] pass arithmetic). Workers claim jobs in ascending pass order with
/// `FOR UPDATE SKIP LOCKED`, so a tenant that enqueues 140,000 jobs at once gets passes far
/// in the future for most of them, and a job another tenant enqueues afterwards is placed
/// right after the flood's next job, not behind all of it.
///
/// The `Queue` value holds only configuration and statement texts: every call takes the
/// host's own client or transaction ([`tokio_postgres::Client`], [`tokio_postgres::Transaction`],
/// or a pooled connection dereferenced to one), so enqueues can be part of the host's own
/// transactions and the host keeps its own pool.
///
/// # Fairness
///
/// A job's pass is `max(tenant pass, floor) + stride(cost, weight)` (carrying any debt from
/// under-declared costs), where the floor is the queue's virtual time: the smallest pass of a
/// ready queued job, or, when no job is ready, the largest pass any tenant
/// has reached. A tenant therefore cannot bank credit while idle, and between two tenants
/// that stay backlogged, claimed cost divided by weight stays within the core's stated bound
/// for its pass assigner (see `fairshare::fleet`). Claims run in pass order among ready jobs; jobs
/// whose lease expired are re-claimed first, and retried jobs keep their pass.
///
/// # Examples
///
/// ```no_run
/// use fairshare_postgres::{NewJob, Queue, QueueConfig};
///
/// # async fn run() -> Result<(), fairshare_postgres::Error> {
/// let mut client = fairshare_postgres::connect("host=/run/postgresql user=app").await?;
/// let queue = Queue::new(QueueConfig::new("jobs")?);
/// queue.migrate(&mut client).await?;
///
/// let jobs: Vec<NewJob> = (0..1000).map(|i| NewJob::new(format!("{i}"))).collect();
/// queue.enqueue_batch(&mut client, "acme", &jobs).await?;
///
/// for job in queue.claim(&client, "worker-1", 10).await? {
///     // ... run the job ...
///     queue.complete(&mut client, job.lease(), 1).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Queue {
    config: QueueConfig,
    pub(crate) sql: Arc<Sql>,
    assigner: PassAssigner,
    default_gcra: Option<Gcra>,
    reaper: Arc<ReapClock>,
}

/// When this process last looked for expired leases: claims do it at most once per reap
/// interval (shared by every clone of the `Queue`).
#[derive(Debug)]
struct ReapClock {
    origin: Instant,
    interval_ms: u64,
    next_ms: AtomicU64,
}

impl ReapClock {
    /// Whether the caller should reap now (true for one caller per interval).
    fn due(&self) -> bool {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Ordering::Relaxed);
        now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now.saturating_add(self.interval_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}

/// What [`Queue::reap_expired`] did with the jobs whose lease had expired.
///
/// # Examples
///
/// ```no_run
/// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
/// let reaped = queue.reap_expired(&client).await?;
/// println!("{} back in the queue, {} dead", reaped.requeued, reaped.dead);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reaped {
    /// Jobs queued again (keeping their pass, so they are claimed next).
    pub requeued: u64,
    /// Jobs dead-lettered because their lease expired on their last attempt.
    pub dead: u64,
}

/// What became of a failed job.
///
/// # Examples
///
/// ```no_run
/// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client, job: fairshare_postgres::Job) -> Result<(), fairshare_postgres::Error> {
/// use fairshare_postgres::FailOutcome;
/// match queue.fail(&client, job.lease(), "upstream timed out").await? {
///     FailOutcome::Retrying { after, .. } => println!("retry in {after:?}"),
///     FailOutcome::Dead => println!("dead-lettered"),
///     _ => {}
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a failed job may have been dead-lettered"]
#[non_exhaustive]
pub enum FailOutcome {
    /// Queued again, claimable from `at` (database clock), `after` the failure.
    Retrying {
        /// When the job becomes claimable again.
        at: SystemTime,
        /// The backoff applied.
        after: Duration,
    },
    /// That was the last attempt: the job is dead, with the error kept.
    Dead,
}

/// Jobs from [`Queue::claim_decoded`]: the decoded ones, and the ones whose payload did not
/// decode, which were dead-lettered with the decoder's error.
///
/// # Examples
///
/// ```no_run
/// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
/// let claimed = queue
///     .claim_decoded(&client, "w1", 10, |bytes| std::str::from_utf8(bytes).map(str::to_owned))
///     .await?;
/// for (text, job) in claimed.jobs { /* ... */ }
/// for (id, error) in claimed.undecodable { eprintln!("job {id} is dead: {error}"); }
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct Decoded<T> {
    /// The decoded payloads with their jobs (leased).
    pub jobs: Vec<(T, Job)>,
    /// Jobs dead-lettered because their payload did not decode, with the error stored.
    pub undecodable: Vec<(JobId, String)>,
}

fn param_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

fn weight_of(v: i64) -> NonZeroU32 {
    NonZeroU32::new(param_u32(v)).unwrap_or(NonZeroU32::MIN)
}

fn unix_ns(ns: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(ns)
}

// ===== impl Queue =====

impl Queue {
    /// A queue with `config`. Does no IO; call [`Queue::migrate`] once (from any node) to
    /// create its tables.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare_postgres::{Queue, QueueConfig};
    /// let queue = Queue::new(QueueConfig::new("jobs")?);
    /// assert_eq!(queue.config().schema(), "jobs");
    /// # Ok::<(), fairshare_postgres::Error>(())
    /// ```
    pub fn new(config: QueueConfig) -> Self {
        let assigner = match config.pass_scale {
            Some(scale) => PassAssigner::with_scale(scale),
            None => PassAssigner::new(),
        };
        let interval = config.reap_interval.unwrap_or_else(|| {
            (config.lease / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
        });
        // reason: the workspace bans clock reads for the IO-free core; this crate does IO, and
        // the reap timer is process-local pacing only (lease times come from the database).
        #[allow(clippy::disallowed_methods)]
        let origin = Instant::now();
        Queue {
            reaper: Arc::new(ReapClock {
                origin,
                interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
                next_ms: AtomicU64::new(0),
            }),
            sql: Arc::new(Sql::new(&config.schema)),
            default_gcra: config.default_quota.as_ref().map(Gcra::from_quota),
            assigner,
            config,
        }
    }

    /// The configuration.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare_postgres::{Queue, QueueConfig};
    /// let queue = Queue::new(QueueConfig::new("jobs")?);
    /// assert_eq!(queue.config().max_attempts().get(), 5);
    /// # Ok::<(), fairshare_postgres::Error>(())
    /// ```
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Creates the schema, its tables (`jobs`, `tenants`, `meta`) and their indexes, if they
    /// do not exist. Idempotent and safe to run from many nodes at once (an advisory lock serialises concurrent runs). Runs inside `client`'s
    /// transaction if it is one.
    ///
    /// # Errors
    ///
    /// [`Error::SchemaVersion`] if a newer version of this crate created the schema; database
    /// and connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(mut client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
    /// let queue = fairshare_postgres::Queue::new(fairshare_postgres::QueueConfig::new("jobs")?);
    /// queue.migrate(&mut client).await?;
    /// queue.migrate(&mut client).await?; // a second run changes nothing
    /// # Ok(()) }
    /// ```
    pub async fn migrate<C: GenericClient + Send + Sync>(
        &self,
        client: &mut C,
    ) -> Result<(), Error> {
        let tx = client.transaction().await?;
        let key = format!("fairshare-postgres:{}", self.config.schema);
        tx.execute_typed(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            &[(&key, Type::TEXT)],
        )
        .await?;
        tx.batch_execute(&self.sql.migrate).await?;
        let meta = format!("\"{}\".meta", self.config.schema);
        let found: Option<i32> = tx
            .query_typed_opt(
                &format!("SELECT value FROM {meta} WHERE key = 'version'"),
                &[],
            )
            .await?
            .map(|row| row.get(0));
        match found {
            Some(found) if found > VERSION => {
                return Err(Error::SchemaVersion {
                    schema: self.config.schema.clone(),
                    found,
                    expected: VERSION,
                });
            }
            Some(_) => {}
            None => {
                tx.execute_typed(
                    &format!("INSERT INTO {meta} (key, value) VALUES ('version', $1)"),
                    &[(&VERSION, Type::INT4)],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Enqueues one job for `tenant`; its id. See [`Queue::enqueue_batch`].
    ///
    /// # Errors
    ///
    /// As [`Queue::enqueue_batch`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, mut client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
    /// let id = queue.enqueue(&mut client, "acme", &fairshare_postgres::NewJob::new("hello")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue<C: GenericClient + Send + Sync>(
        &self,
        client: &mut C,
        tenant: &str,
        job: &NewJob,
    ) -> Result<JobId, Error> {
        let ids = self
            .enqueue_batch(client, tenant, std::slice::from_ref(job))
            .await?;
        Ok(ids[0])
    }

    /// Enqueues `jobs` for `tenant`, all or none; their ids, in the order of `jobs`.
    ///
    /// One transaction (a savepoint if `client` is already a transaction, so the jobs commit
    /// with the host's own work): the tenant's row is locked (`FOR UPDATE`), checked (blocked?
    /// over its rate quota?), given the passes for the whole batch and written once; then the
    /// jobs go in with one `INSERT ... SELECT FROM unnest(...)`. Concurrent enqueues for one
    /// tenant serialise on its row, so its passes are distinct and in enqueue order; enqueues
    /// for different tenants do not wait for each other. The jobs are borrowed: on any error
    /// the caller still has them and nothing was enqueued.
    ///
    /// # Errors
    ///
    /// [`Error::Blocked`] if an operator blocked the tenant; [`Error::RateLimited`] (with the
    /// retry time) if the batch's total cost is over the tenant's quota now;
    /// [`Error::TooLarge`] if it exceeds the quota's burst (split the batch); database and
    /// connection errors.
    ///
    /// # Performance
    ///
    /// A batch of any size costs one tenant-row lock and update and one bulk insert; jobs of
    /// one class, cost, attempt limit and delay send only their payloads and passes.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, mut client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
    /// use fairshare_postgres::NewJob;
    /// // Inside the host's own transaction: the jobs exist only if it commits.
    /// let mut tx = client.transaction().await?;
    /// tx.execute("UPDATE accounts SET exports = exports + 1 WHERE id = 7", &[]).await?;
    /// let jobs: Vec<_> = (0..100).map(|i| NewJob::new(format!("row {i}"))).collect();
    /// let ids = queue.enqueue_batch(&mut tx, "acme", &jobs).await?;
    /// assert_eq!(ids.len(), 100);
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_batch<C: GenericClient + Send + Sync>(
        &self,
        client: &mut C,
        tenant: &str,
        jobs: &[NewJob],
    ) -> Result<Vec<JobId>, Error> {
        self.enqueue_batch_with(client, None, tenant, jobs).await
    }

    pub(crate) async fn enqueue_batch_with<C: GenericClient + Send + Sync>(
        &self,
        client: &mut C,
        prep: Option<&Prepared>,
        tenant: &str,
        jobs: &[NewJob],
    ) -> Result<Vec<JobId>, Error> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let sql = &*self.sql;
        let tx = client.transaction().await?;
        let row = match tx
            .run_opt(
                prep.map(|p| &p.lock_tenant),
                &sql.lock_tenant,
                &[(&tenant, Type::TEXT)],
            )
            .await?
        {
            Some(row) => row,
            None => {
                let weight = i64::from(self.config.default_weight.get());
                tx.run_execute(
                    prep.map(|p| &p.insert_tenant),
                    &sql.insert_tenant,
                    &[(&tenant, Type::TEXT), (&weight, Type::INT8)],
                )
                .await?;
                tx.run_one(
                    prep.map(|p| &p.lock_tenant),
                    &sql.lock_tenant,
                    &[(&tenant, Type::TEXT)],
                )
                .await?
            }
        };
        let mut state = TenantPass {
            pass: decode_pass(row.get(0)),
            carry: row.get(1),
        };
        let weight = weight_of(row.get(2));
        if let Some(reason) = row.get::<_, Option<String>>(3) {
            return Err(Error::Blocked {
                tenant: tenant.to_owned(),
                reason,
            });
        }
        let mut tat: i64 = row.get(4);
        let quota = Gcra::from_columns(row.get(5), row.get(6)).or(self.default_gcra);
        // The queue's virtual time: the next ready job's pass (a newcomer ties with it and
        // is served right after it), or, with nothing ready, the largest pass any tenant
        // reached (everything assigned so far has had its turn).
        let next_pass = row.get::<_, Option<i64>>(7).map(decode_pass);
        let max_pass = row.get::<_, Option<i64>>(8).map(decode_pass);
        let floor = next_pass.or(max_pass).unwrap_or(0);
        let now_ns = u64::try_from(row.get::<_, i64>(9)).unwrap_or(0);
        if let Some(gcra) = quota {
            let cost: u64 = jobs.iter().map(|j| u64::from(j.cost.get())).sum();
            match gcra.check(u64::try_from(tat).unwrap_or(0), now_ns, cost) {
                Ok(next) => tat = i64::try_from(next).unwrap_or(i64::MAX),
                Err(Refusal::TooLarge { max }) => {
                    return Err(Error::TooLarge {
                        tenant: tenant.to_owned(),
                        cost,
                        max,
                    });
                }
                Err(Refusal::NotUntil(at)) => {
                    return Err(Error::RateLimited {
                        tenant: tenant.to_owned(),
                        retry_after: Duration::from_nanos(at.saturating_sub(now_ns)),
                        retry_at: unix_ns(at),
                    });
                }
            }
        }

        let first = &jobs[0];
        let uniform = u32::try_from(jobs.len()).ok().filter(|_| {
            jobs.iter().all(|j| {
                j.cost == first.cost
                    && j.class == first.class
                    && j.max_attempts == first.max_attempts
                    && j.delay == first.delay
            })
        });
        let (rows, passes) = if let Some(n) = uniform {
            let range = self
                .assigner
                .assign_batch(&mut state, weight, floor, first.cost.get(), n);
            let passes: Vec<i64> = range.iter().map(encode_pass).collect();
            let payloads: Vec<&[u8]> = jobs.iter().map(|j| j.payload.as_slice()).collect();
            let max_attempts = self.max_attempts(first);
            let cost = i64::from(first.cost.get());
            let delay = micros(first.delay);
            let pass_now = encode_pass(state.pass);
            let rows = tx
                .run_query(
                    prep.map(|p| &p.insert_jobs_uniform),
                    &sql.insert_jobs_uniform,
                    &[
                        (&tenant, Type::TEXT),
                        (&pass_now, Type::INT8),
                        (&state.carry, Type::INT8),
                        (&tat, Type::INT8),
                        (&first.class, Type::TEXT),
                        (&cost, Type::INT8),
                        (&max_attempts, Type::INT4),
                        (&delay, Type::INT8),
                        (&passes, Type::INT8_ARRAY),
                        (&payloads, Type::BYTEA_ARRAY),
                    ],
                )
                .await?;
            (rows, passes)
        } else {
            let passes: Vec<i64> = jobs
                .iter()
                .map(|j| {
                    encode_pass(
                        self.assigner
                            .assign(&mut state, weight, floor, j.cost.get()),
                    )
                })
                .collect();
            let classes: Vec<&str> = jobs.iter().map(|j| j.class.as_str()).collect();
            let costs: Vec<i64> = jobs.iter().map(|j| i64::from(j.cost.get())).collect();
            let payloads: Vec<&[u8]> = jobs.iter().map(|j| j.payload.as_slice()).collect();
            let attempts: Vec<i32> = jobs.iter().map(|j| self.max_attempts(j)).collect();
            let delays: Vec<i64> = jobs.iter().map(|j| micros(j.delay)).collect();
            let pass_now = encode_pass(state.pass);
            let rows = tx
                .run_query(
                    prep.map(|p| &p.insert_jobs),
                    &sql.insert_jobs,
                    &[
                        (&tenant, Type::TEXT),
                        (&pass_now, Type::INT8),
                        (&state.carry, Type::INT8),
                        (&tat, Type::INT8),
                        (&classes, Type::TEXT_ARRAY),
                        (&passes, Type::INT8_ARRAY),
                        (&costs, Type::INT8_ARRAY),
                        (&payloads, Type::BYTEA_ARRAY),
                        (&attempts, Type::INT4_ARRAY),
                        (&delays, Type::INT8_ARRAY),
                    ],
                )
                .await?;
            (rows, passes)
        };
        tx.commit().await?;
        // `INSERT ... SELECT FROM unnest(..)` inserts, and `RETURNING` returns, in array order:
        // the ids come back in the order of `jobs` (checked against the passes in tests).
        debug_assert!(
            rows.iter()
                .zip(&passes)
                .all(|(r, &p)| r.get::<_, i64>(1) == p),
            "rows came back out of array order"
        );
        Ok(rows.iter().map(|r| JobId::new(r.get(0))).collect())
    }

    fn max_attempts(&self, job: &NewJob) -> i32 {
        let n = job.max_attempts.unwrap_or(self.config.max_attempts).get();
        i32::try_from(n).unwrap_or(i32::MAX)
    }

    /// Claims up to `n` jobs for `worker` (a free-form name shown in dashboards), each under
    /// a lease of the configured length; fewer (or none) if fewer are ready.
    ///
    /// Ready queued jobs in ascending pass order (ties by id), in one statement with
    /// `FOR UPDATE SKIP LOCKED`: any number of workers can claim at once, and no two get the
    /// same job while its lease holds. At most once per reap interval the claim first runs
    /// [`Queue::reap_expired`], so jobs whose lease expired are claimable again (first, by
    /// their pass) shortly after; one on its last attempt is dead-lettered. If the connection
    /// breaks before the answer arrives, the claimed jobs simply stay leased until the lease
    /// expires, then they are claimable again: nothing is lost.
    ///
    /// # Errors
    ///
    /// Database and connection errors ([`Error::ConnectionLost`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
    /// let jobs = queue.claim(&client, "node-3/worker-1", 16).await?;
    /// assert!(jobs.len() <= 16);
    /// # Ok(()) }
    /// ```
    pub async fn claim<C: GenericClient + Sync>(
        &self,
        client: &C,
        worker: &str,
        n: u32,
    ) -> Result<Vec<Job>, Error> {
        self.claim_with(client, None, worker, n).await
    }

    pub(crate) async fn claim_with<C: GenericClient + Sync>(
        &self,
        client: &C,
        prep: Option<&Prepared>,
        worker: &str,
        n: u32,
    ) -> Result<Vec<Job>, Error> {
        if n == 0 {
            return Ok(Vec::new());
        }
        if self.reaper.due() {
            self.reap_expired_with(client, prep).await?;
        }
        let limit = i64::from(n);
        let lease = micros(self.config.lease);
        let rows = client
            .run_query(
                prep.map(|p| &p.claim),
                &self.sql.claim,
                &[
                    (&worker, Type::TEXT),
                    (&limit, Type::INT8),
                    (&lease, Type::INT8),
                ],
            )
            .await?;
        let mut jobs: Vec<Job> = rows
            .into_iter()
            .map(|row| Job {
                class: row.get(2),
                pass: decode_pass(row.get(3)),
                payload: row.get(5),
                last_error: row.get(10),
                lease: Lease {
                    job: JobId::new(row.get(0)),
                    tenant: row.get(1),
                    cost: param_u32(row.get(4)),
                    attempt: param_u32(i64::from(row.get::<_, i32>(6))),
                    max_attempts: param_u32(i64::from(row.get::<_, i32>(7))),
                    token: row.get(8),
                    until: row.get(9),
                },
            })
            .collect();
        jobs.sort_unstable_by_key(|j| (j.pass, j.id()));
        Ok(jobs)
    }

    /// Puts jobs whose lease has expired back in the queue (with their pass, so they are
    /// claimed next), or dead-letters those that were on their last attempt. Claims call this
    /// themselves at most once per reap interval
    /// ([`QueueConfig::with_reap_interval`]); hosts may also call it, from anywhere (it skips
    /// rows another reaper holds).
    ///
    /// # Errors
    ///
    /// Database and connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
    /// let reaped = queue.reap_expired(&client).await?;
    /// # Ok(()) }
    /// ```
    pub async fn reap_expired<C: GenericClient + Sync>(&self, client: &C) -> Result<Reaped, Error> {
        self.reap_expired_with(client, None).await
    }

    pub(crate) async fn reap_expired_with<C: GenericClient + Sync>(
        &self,
        client: &C,
        prep: Option<&Prepared>,
    ) -> Result<Reaped, Error> {
        // Enough for any backlog of dead workers; the rest goes on the next round.
        let limit: i64 = 10_000;
        let rows = client
            .run_query(
                prep.map(|p| &p.reap),
                &self.sql.reap,
                &[(&limit, Type::INT8)],
            )
            .await?;
        let dead = rows
            .iter()
            .filter(|r| r.get::<_, &str>(0) == "dead")
            .count() as u64;
        Ok(Reaped {
            requeued: rows.len() as u64 - dead,
            dead,
        })
    }

    /// [`Queue::claim`], then decodes each payload with `decode`. A payload that does not
    /// decode can never succeed, so its job is dead-lettered at once with the decoder's error
    /// (kept in `last_error`, the payload kept for inspection): it is neither lost nor
    /// retried.
    ///
    /// # Errors
    ///
    /// As [`Queue::claim`]; if dead-lettering fails, the error, and the jobs claimed so far
    /// come back when their leases expire.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
    /// let claimed = queue
    ///     .claim_decoded(&client, "w1", 8, |bytes| {
    ///         std::str::from_utf8(bytes).map_err(|e| e.to_string())?.parse::<u64>().map_err(|e| e.to_string())
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn claim_decoded<C, T, E, F>(
        &self,
        client: &C,
        worker: &str,
        n: u32,
        decode: F,
    ) -> Result<Decoded<T>, Error>
    where
        C: GenericClient + Sync,
        E: std::fmt::Display,
        F: FnMut(&[u8]) -> Result<T, E>,
    {
        self.claim_decoded_with(client, None, worker, n, decode)
            .await
    }

    pub(crate) async fn claim_decoded_with<C, T, E, F>(
        &self,
        client: &C,
        prep: Option<&Prepared>,
        worker: &str,
        n: u32,
        mut decode: F,
    ) -> Result<Decoded<T>, Error>
    where
        C: GenericClient + Sync,
        E: std::fmt::Display,
        F: FnMut(&[u8]) -> Result<T, E>,
    {
        let mut out = Decoded {
            jobs: Vec::new(),
            undecodable: Vec::new(),
        };
        for job in self.claim_with(client, prep, worker, n).await? {
            match decode(job.payload()) {
                Ok(value) => out.jobs.push((value, job)),
                Err(err) => {
                    let message = format!("payload could not be decoded: {err}");
                    self.dead_letter_with(client, prep, job.lease(), &message)
                        .await?;
                    out.undecodable.push((job.id(), message));
                }
            }
        }
        Ok(out)
    }

    /// Marks the leased job done. `actual_cost` is the cost the job really had: when it
    /// differs from the declared cost, the tenant's future passes are corrected (the core's
    /// `correct`: under-declared cost is owed and charged to the tenant's next jobs, never
    /// forgiven). An actual cost of zero is allowed.
    ///
    /// # Errors
    ///
    /// [`Error::LeaseExpired`] if the lease ran out, [`Error::LeaseTakenOver`] if another
    /// claim has the job, [`Error::AlreadyFinished`] if it was already reported under this
    /// lease, [`Error::JobNotFound`]; database and connection errors. A refused completion
    /// changes nothing.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, mut client: tokio_postgres::Client, job: fairshare_postgres::Job) -> Result<(), fairshare_postgres::Error> {
    /// match queue.complete(&mut client, job.lease(), 3).await {
    ///     Ok(()) => {}
    ///     Err(e) if e.is_lease_lost() => { /* another worker owns it now: drop the result */ }
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn complete<C: GenericClient + Send + Sync>(
        &self,
        client: &mut C,
        lease: &Lease,
        actual_cost: u32,
    ) -> Result<(), Error> {
        self.complete_with(client, None, lease, actual_cost).await
    }

    pub(crate) async fn complete_with<C: GenericClient + Send + Sync>(
        &self,
        client: &mut C,
        prep: Option<&Prepared>,
        lease: &Lease,
        actual_cost: u32,
    ) -> Result<(), Error> {
        let id = lease.job.get();
        let params: [(&(dyn tokio_postgres::types::ToSql + Sync), Type); 2] =
            [(&id, Type::INT8), (&lease.token, Type::INT8)];
        if actual_cost == lease.cost {
            if client
                .run_execute(prep.map(|p| &p.complete), &self.sql.complete, &params)
                .await?
                == 1
            {
                return Ok(());
            }
            return Err(self.diagnose(client, lease).await?);
        }
        let tx = client.transaction().await?;
        if tx
            .run_execute(prep.map(|p| &p.complete), &self.sql.complete, &params)
            .await?
            != 1
        {
            return Err(self.diagnose(&tx, lease).await?);
        }
        if let Some(row) = tx
            .run_opt(
                prep.map(|p| &p.tenant_for_update),
                &self.sql.tenant_for_update,
                &[(&lease.tenant, Type::TEXT)],
            )
            .await?
        {
            let mut state = TenantPass {
                pass: decode_pass(row.get(0)),
                carry: row.get(1),
            };
            let weight = weight_of(row.get(2));
            self.assigner
                .correct(&mut state, weight, lease.cost, actual_cost);
            let pass = encode_pass(state.pass);
            tx.run_execute(
                prep.map(|p| &p.update_tenant_pass),
                &self.sql.update_tenant_pass,
                &[
                    (&lease.tenant, Type::TEXT),
                    (&pass, Type::INT8),
                    (&state.carry, Type::INT8),
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Reports a failed attempt: the job is queued again after the configured backoff
    /// (`base · 2^(attempt-1)`, capped), keeping its pass, or dead-lettered if this was its
    /// last attempt. The error is kept in `last_error` either way.
    ///
    /// # Errors
    ///
    /// The lease errors of [`Queue::complete`]; database and connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client, job: fairshare_postgres::Job) -> Result<(), fairshare_postgres::Error> {
    /// let outcome = queue.fail(&client, job.lease(), "smtp: connection refused").await?;
    /// # Ok(()) }
    /// ```
    pub async fn fail<C: GenericClient + Sync>(
        &self,
        client: &C,
        lease: &Lease,
        error: &str,
    ) -> Result<FailOutcome, Error> {
        self.fail_with(client, None, lease, error).await
    }

    pub(crate) async fn fail_with<C: GenericClient + Sync>(
        &self,
        client: &C,
        prep: Option<&Prepared>,
        lease: &Lease,
        error: &str,
    ) -> Result<FailOutcome, Error> {
        if lease.attempt >= lease.max_attempts {
            self.finish_failed(client, prep, lease, error, JobState::Dead, Duration::ZERO)
                .await?;
            return Ok(FailOutcome::Dead);
        }
        let after = self.config.backoff(lease.attempt);
        let at = self
            .finish_failed(client, prep, lease, error, JobState::Queued, after)
            .await?;
        Ok(FailOutcome::Retrying { at, after })
    }

    /// Dead-letters the leased job at once, whatever its attempts (an error no retry can cure,
    /// such as a payload the host cannot decode). The job and its payload stay in the table
    /// with the error, for [`Queue::dead_jobs`] and [`Queue::requeue_dead`].
    ///
    /// # Errors
    ///
    /// The lease errors of [`Queue::complete`]; database and connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client, job: fairshare_postgres::Job) -> Result<(), fairshare_postgres::Error> {
    /// queue.dead_letter(&client, job.lease(), "unknown job type v9").await?;
    /// # Ok(()) }
    /// ```
    pub async fn dead_letter<C: GenericClient + Sync>(
        &self,
        client: &C,
        lease: &Lease,
        error: &str,
    ) -> Result<(), Error> {
        self.dead_letter_with(client, None, lease, error).await
    }

    pub(crate) async fn dead_letter_with<C: GenericClient + Sync>(
        &self,
        client: &C,
        prep: Option<&Prepared>,
        lease: &Lease,
        error: &str,
    ) -> Result<(), Error> {
        self.finish_failed(client, prep, lease, error, JobState::Dead, Duration::ZERO)
            .await
            .map(drop)
    }

    async fn finish_failed<C: GenericClient + Sync>(
        &self,
        client: &C,
        prep: Option<&Prepared>,
        lease: &Lease,
        error: &str,
        state: JobState,
        delay: Duration,
    ) -> Result<SystemTime, Error> {
        let id = lease.job.get();
        let state = state.as_str();
        let delay = micros(delay);
        let row = client
            .run_opt(
                prep.map(|p| &p.fail),
                &self.sql.fail,
                &[
                    (&id, Type::INT8),
                    (&lease.token, Type::INT8),
                    (&state, Type::TEXT),
                    (&delay, Type::INT8),
                    (&error, Type::TEXT),
                ],
            )
            .await?;
        match row {
            Some(row) => Ok(row.get(0)),
            None => Err(self.diagnose(client, lease).await?),
        }
    }

    /// Gives the leased job back unrun (a worker shutting down): it is queued again at once
    /// with its pass, and the attempt is not counted.
    ///
    /// # Errors
    ///
    /// The lease errors of [`Queue::complete`]; database and connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client, job: fairshare_postgres::Job) -> Result<(), fairshare_postgres::Error> {
    /// queue.release(&client, job.lease()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn release<C: GenericClient + Sync>(
        &self,
        client: &C,
        lease: &Lease,
    ) -> Result<(), Error> {
        self.release_with(client, None, lease).await
    }

    pub(crate) async fn release_with<C: GenericClient + Sync>(
        &self,
        client: &C,
        prep: Option<&Prepared>,
        lease: &Lease,
    ) -> Result<(), Error> {
        let id = lease.job.get();
        let n = client
            .run_execute(
                prep.map(|p| &p.release),
                &self.sql.release,
                &[(&id, Type::INT8), (&lease.token, Type::INT8)],
            )
            .await?;
        if n == 1 {
            Ok(())
        } else {
            Err(self.diagnose(client, lease).await?)
        }
    }

    /// Extends a lease that still holds to `by` from now (database clock), and updates
    /// `lease.until()`. Long jobs call this before their lease runs out.
    ///
    /// # Errors
    ///
    /// The lease errors of [`Queue::complete`] (an expired lease cannot be extended: another
    /// worker may be claiming the job); database and connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client, job: fairshare_postgres::Job) -> Result<(), fairshare_postgres::Error> {
    /// let (_payload, mut lease) = job.into_parts();
    /// queue.extend_lease(&client, &mut lease, std::time::Duration::from_secs(60)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend_lease<C: GenericClient + Sync>(
        &self,
        client: &C,
        lease: &mut Lease,
        by: Duration,
    ) -> Result<(), Error> {
        self.extend_lease_with(client, None, lease, by).await
    }

    pub(crate) async fn extend_lease_with<C: GenericClient + Sync>(
        &self,
        client: &C,
        prep: Option<&Prepared>,
        lease: &mut Lease,
        by: Duration,
    ) -> Result<(), Error> {
        let id = lease.job.get();
        let by = micros(by);
        let row = client
            .run_opt(
                prep.map(|p| &p.extend),
                &self.sql.extend,
                &[
                    (&id, Type::INT8),
                    (&lease.token, Type::INT8),
                    (&by, Type::INT8),
                ],
            )
            .await?;
        match row {
            Some(row) => {
                lease.until = row.get(0);
                Ok(())
            }
            None => Err(self.diagnose(client, lease).await?),
        }
    }

    /// Why a lease-guarded update matched no row.
    async fn diagnose<C: GenericClient + Sync>(
        &self,
        client: &C,
        lease: &Lease,
    ) -> Result<Error, Error> {
        let id = lease.job.get();
        let job = lease.job;
        let Some(row) = client
            .query_typed_opt(&self.sql.diagnose, &[(&id, Type::INT8)])
            .await?
        else {
            return Ok(Error::JobNotFound { job });
        };
        let state: JobState = row.get::<_, &str>(0).parse().unwrap_or(JobState::Dead);
        let token: Option<i64> = row.get(1);
        let expired: bool = row.get(2);
        Ok(if token != Some(lease.token) {
            Error::LeaseTakenOver { job }
        } else if expired || state == JobState::Running {
            Error::LeaseExpired { job }
        } else {
            Error::AlreadyFinished { job, state }
        })
    }
}

/// Connects to PostgreSQL without TLS (a unix socket or a trusted network) and drives the
/// connection on a tokio task.
///
/// `config` is a libpq-style string or URL, e.g. `host=/run/postgresql user=app` or
/// `postgresql://app@10.0.0.5/app`. Hosts that need TLS or a pool connect their own way and
/// pass those clients to [`Queue`].
///
/// # Errors
///
/// [`Error::Connect`] if the server cannot be reached or refuses the connection.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // Nothing listens on this socket: a clear error, not a hang.
/// let err = fairshare_postgres::connect("host=/nonexistent user=app connect_timeout=2")
///     .await
///     .unwrap_err();
/// assert!(matches!(err, fairshare_postgres::Error::Connect { .. }));
/// # }
/// ```
pub async fn connect(config: &str) -> Result<tokio_postgres::Client, Error> {
    let (client, connection) = tokio_postgres::connect(config, tokio_postgres::NoTls)
        .await
        .map_err(|source| Error::Connect { source })?;
    tokio::spawn(async move {
        // A broken connection surfaces on the client as `Error::ConnectionLost`.
        let _ = connection.await;
    });
    Ok(client)
}
