//! Operator actions (block, unblock, purge, weights, quotas, dead letters) and the
//! dashboard queries.

use std::num::NonZeroU32;
use std::time::{Duration, SystemTime};

use fairshare::config::Quota;
use tokio_postgres::GenericClient;
use tokio_postgres::types::Type;

use crate::error::Error;
use crate::gcra::Gcra;
use crate::job::{JobId, JobState};
use crate::queue::Queue;
use crate::sql::{decode_pass, micros};

/// A tenant's stored settings and fair-share state.
///
/// # Examples
///
/// ```no_run
/// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
/// if let Some(info) = queue.tenant(&client, "acme").await? {
///     println!("weight {} blocked {:?}", info.weight, info.blocked_reason);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantInfo {
    /// The tenant's pass: the virtual finish time of its last enqueued job.
    pub pass: u64,
    /// Cost debt (positive) or credit carried from completions whose actual cost differed
    /// from the declared one, in pass units.
    pub carry: i64,
    /// The tenant's weight.
    pub weight: NonZeroU32,
    /// Why the tenant is blocked, if it is.
    pub blocked_reason: Option<String>,
    /// The tenant's own rate quota (`None`: the queue's default applies), as
    /// `(nanoseconds per unit of cost, burst)`.
    pub quota: Option<(u64, u32)>,
}

/// One tenant's line of the backlog dashboard.
///
/// # Examples
///
/// ```no_run
/// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
/// for line in queue.backlog(&client).await? {
///     println!("{:<12} {:>8} queued {:>4} running", line.tenant, line.queued, line.running);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantBacklog {
    /// The tenant.
    pub tenant: String,
    /// Jobs queued (ready or delayed).
    pub queued: u64,
    /// Their total declared cost.
    pub queued_cost: u64,
    /// The smallest pass among its queued jobs (the next one it will have claimed).
    pub oldest_pass: Option<u64>,
    /// Jobs leased to workers now.
    pub running: u64,
    /// Its weight (`None` if its row was removed by hand).
    pub weight: Option<NonZeroU32>,
    /// Why it is blocked, if it is.
    pub blocked_reason: Option<String>,
}

/// One leased job, for the in-flight dashboard.
///
/// # Examples
///
/// ```no_run
/// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
/// let stuck = queue.in_flight(&client).await?.into_iter().filter(|l| l.expired).count();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InFlight {
    /// The job.
    pub job: JobId,
    /// Its tenant.
    pub tenant: String,
    /// The worker holding the lease.
    pub worker: Option<String>,
    /// Which attempt it is.
    pub attempt: u32,
    /// When the lease runs out (database clock).
    pub lease_until: SystemTime,
    /// Whether it already ran out (the next claim takes the job over).
    pub expired: bool,
}

/// How many jobs are in each state.
///
/// # Examples
///
/// ```no_run
/// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
/// let c = queue.counts(&client).await?;
/// println!("{} queued, {} running, {} done, {} dead", c.queued, c.running, c.done, c.dead);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateCounts {
    /// Queued jobs.
    pub queued: u64,
    /// Leased jobs.
    pub running: u64,
    /// Completed jobs not yet pruned.
    pub done: u64,
    /// Dead-lettered jobs.
    pub dead: u64,
}

/// A dead-lettered job with its last error and its payload.
///
/// # Examples
///
/// ```no_run
/// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
/// for dead in queue.dead_jobs(&client, 20).await? {
///     println!("{} ({}): {:?}", dead.job, dead.tenant, dead.last_error);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadJob {
    /// The job.
    pub job: JobId,
    /// Its tenant.
    pub tenant: String,
    /// Its class.
    pub class: String,
    /// Attempts made.
    pub attempts: u32,
    /// The error that killed it.
    pub last_error: Option<String>,
    /// Its payload, unchanged.
    pub payload: Vec<u8>,
}

/// The queued jobs a purge removed.
///
/// # Examples
///
/// ```no_run
/// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
/// let purged = queue.purge(&client, "acme").await?;
/// println!("removed {} jobs, first {:?}", purged.len(), purged.ids.first());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Purged {
    /// The removed jobs' ids, ascending.
    pub ids: Vec<JobId>,
}

impl Purged {
    /// How many jobs were removed.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare_postgres::Purged::default().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether nothing was removed.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(fairshare_postgres::Purged::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn weight(v: i64) -> NonZeroU32 {
    NonZeroU32::new(u32::try_from(v.max(1)).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN)
}

// ===== Operators =====

/// # Operators
impl Queue {
    /// Blocks `tenant`: its new enqueues are refused with [`Error::Blocked`] and `reason`
    /// until [`Queue::unblock`]. Jobs already queued stay claimable (purge them with
    /// [`Queue::purge`]); leased jobs run to completion.
    ///
    /// # Errors
    ///
    /// Database and connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
    /// queue.block(&client, "acme", "140,000 invalid bulk updates; contact support").await?;
    /// let purged = queue.purge(&client, "acme").await?;
    /// # Ok(()) }
    /// ```
    pub async fn block<C: GenericClient + Sync>(
        &self,
        client: &C,
        tenant: &str,
        reason: &str,
    ) -> Result<(), Error> {
        let w = i64::from(self.config().default_weight.get());
        client
            .execute_typed(
                &self.sql.block,
                &[
                    (&tenant, Type::TEXT),
                    (&w, Type::INT8),
                    (&reason, Type::TEXT),
                ],
            )
            .await?;
        Ok(())
    }

    /// Unblocks `tenant`; whether it was blocked.
    ///
    /// # Errors
    ///
    /// Database and connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
    /// let was_blocked = queue.unblock(&client, "acme").await?;
    /// # Ok(()) }
    /// ```
    pub async fn unblock<C: GenericClient + Sync>(
        &self,
        client: &C,
        tenant: &str,
    ) -> Result<bool, Error> {
        let n = client
            .execute_typed(&self.sql.unblock, &[(&tenant, Type::TEXT)])
            .await?;
        Ok(n == 1)
    }

    /// Deletes every queued job of `tenant` (ready or delayed) and returns their ids. Leased
    /// jobs are left to finish; done and dead jobs are kept.
    ///
    /// # Errors
    ///
    /// Database and connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
    /// let purged = queue.purge(&client, "acme").await?;
    /// println!("purged {}", purged.len());
    /// # Ok(()) }
    /// ```
    pub async fn purge<C: GenericClient + Sync>(
        &self,
        client: &C,
        tenant: &str,
    ) -> Result<Purged, Error> {
        let rows = client
            .query_typed(&self.sql.purge, &[(&tenant, Type::TEXT)])
            .await?;
        let mut ids: Vec<JobId> = rows.iter().map(|r| JobId::new(r.get(0))).collect();
        ids.sort_unstable();
        Ok(Purged { ids })
    }

    /// Sets `tenant`'s weight, for the passes of jobs it enqueues from now on (queued jobs
    /// keep the passes they were given). Takes effect fleet-wide at once.
    ///
    /// # Errors
    ///
    /// Database and connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
    /// use std::num::NonZeroU32;
    /// queue.set_weight(&client, "enterprise-co", NonZeroU32::new(4).unwrap()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_weight<C: GenericClient + Sync>(
        &self,
        client: &C,
        tenant: &str,
        weight: NonZeroU32,
    ) -> Result<(), Error> {
        let w = i64::from(weight.get());
        client
            .execute_typed(
                &self.sql.set_weight,
                &[(&tenant, Type::TEXT), (&w, Type::INT8)],
            )
            .await?;
        Ok(())
    }

    /// Sets `tenant`'s own rate quota (checked at every enqueue, fleet-wide), or with `None`
    /// returns it to the queue's default. The tenant's rate state is kept.
    ///
    /// # Errors
    ///
    /// Database and connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
    /// use fairshare::config::Quota;
    /// use std::num::NonZeroU32;
    /// let quota = Quota::per_second(NonZeroU32::new(50).unwrap()).allow_burst(NonZeroU32::new(1000).unwrap());
    /// queue.set_quota(&client, "acme", Some(quota)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_quota<C: GenericClient + Sync>(
        &self,
        client: &C,
        tenant: &str,
        quota: Option<Quota>,
    ) -> Result<(), Error> {
        let w = i64::from(self.config().default_weight.get());
        let g = quota.as_ref().map(Gcra::from_quota);
        let interval = g.map(|g| i64::try_from(g.interval_ns).unwrap_or(i64::MAX));
        let burst = g.map(|g| i64::from(g.burst));
        client
            .execute_typed(
                &self.sql.set_quota,
                &[
                    (&tenant, Type::TEXT),
                    (&w, Type::INT8),
                    (&interval, Type::INT8),
                    (&burst, Type::INT8),
                ],
            )
            .await?;
        Ok(())
    }

    /// Queues a dead job again (attempts reset, same pass, so it runs soon); whether it was
    /// dead.
    ///
    /// # Errors
    ///
    /// Database and connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
    /// for dead in queue.dead_jobs(&client, 100).await? {
    ///     queue.requeue_dead(&client, dead.job).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn requeue_dead<C: GenericClient + Sync>(
        &self,
        client: &C,
        job: JobId,
    ) -> Result<bool, Error> {
        let id = job.get();
        let n = client
            .execute_typed(&self.sql.requeue_dead, &[(&id, Type::INT8)])
            .await?;
        Ok(n == 1)
    }

    /// Deletes done jobs that finished more than `older_than` ago; how many.
    ///
    /// # Errors
    ///
    /// Database and connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
    /// let pruned = queue.prune_done(&client, std::time::Duration::from_secs(86_400)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn prune_done<C: GenericClient + Sync>(
        &self,
        client: &C,
        older_than: Duration,
    ) -> Result<u64, Error> {
        let us = micros(older_than);
        Ok(client
            .execute_typed(&self.sql.prune_done, &[(&us, Type::INT8)])
            .await?)
    }
}

// ===== Dashboards =====

/// # Dashboards
impl Queue {
    /// `tenant`'s settings and pass state, if it has a row (it gets one at its first enqueue
    /// or operator action).
    ///
    /// # Errors
    ///
    /// Database and connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
    /// let info = queue.tenant(&client, "acme").await?;
    /// # Ok(()) }
    /// ```
    pub async fn tenant<C: GenericClient + Sync>(
        &self,
        client: &C,
        tenant: &str,
    ) -> Result<Option<TenantInfo>, Error> {
        let row = client
            .query_typed_opt(&self.sql.tenant_info, &[(&tenant, Type::TEXT)])
            .await?;
        Ok(row.map(|row| TenantInfo {
            pass: decode_pass(row.get(0)),
            carry: row.get(1),
            weight: weight(row.get(2)),
            blocked_reason: row.get(3),
            quota: Gcra::from_columns(row.get(4), row.get(5)).map(|g| (g.interval_ns, g.burst)),
        }))
    }

    /// Queued and running jobs per tenant, largest backlog first.
    ///
    /// # Errors
    ///
    /// Database and connection errors.
    ///
    /// # Performance
    ///
    /// Reads every queued and running job (through the per-tenant index): meant for an
    /// operator's dashboard, not a hot path.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
    /// let top = queue.backlog(&client).await?.into_iter().next();
    /// # Ok(()) }
    /// ```
    pub async fn backlog<C: GenericClient + Sync>(
        &self,
        client: &C,
    ) -> Result<Vec<TenantBacklog>, Error> {
        let rows = client.query_typed(&self.sql.backlog, &[]).await?;
        Ok(rows
            .iter()
            .map(|row| TenantBacklog {
                tenant: row.get(0),
                queued: count(row.get(1)),
                queued_cost: count(row.get(2)),
                oldest_pass: row.get::<_, Option<i64>>(3).map(decode_pass),
                running: count(row.get(4)),
                weight: row.get::<_, Option<i64>>(5).map(weight),
                blocked_reason: row.get(6),
            })
            .collect())
    }

    /// The smallest pass among queued jobs: how far the queue's virtual time has come.
    ///
    /// # Errors
    ///
    /// Database and connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
    /// let vtime = queue.oldest_pass(&client).await?;
    /// # Ok(()) }
    /// ```
    pub async fn oldest_pass<C: GenericClient + Sync>(
        &self,
        client: &C,
    ) -> Result<Option<u64>, Error> {
        let row = client.query_typed_opt(&self.sql.oldest_pass, &[]).await?;
        Ok(row.map(|r| decode_pass(r.get(0))))
    }

    /// Every leased job, soonest lease end first.
    ///
    /// # Errors
    ///
    /// Database and connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
    /// for lease in queue.in_flight(&client).await? {
    ///     println!("{} on {:?}, attempt {}", lease.job, lease.worker, lease.attempt);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn in_flight<C: GenericClient + Sync>(
        &self,
        client: &C,
    ) -> Result<Vec<InFlight>, Error> {
        let rows = client.query_typed(&self.sql.in_flight, &[]).await?;
        Ok(rows
            .iter()
            .map(|row| InFlight {
                job: JobId::new(row.get(0)),
                tenant: row.get(1),
                worker: row.get(2),
                attempt: u32::try_from(row.get::<_, i32>(3)).unwrap_or(0),
                lease_until: row.get(4),
                expired: row.get(5),
            })
            .collect())
    }

    /// How many jobs are in each state.
    ///
    /// # Errors
    ///
    /// Database and connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
    /// assert_eq!(queue.counts(&client).await?.running, queue.in_flight(&client).await?.len() as u64);
    /// # Ok(()) }
    /// ```
    pub async fn counts<C: GenericClient + Sync>(&self, client: &C) -> Result<StateCounts, Error> {
        let rows = client.query_typed(&self.sql.counts, &[]).await?;
        let mut counts = StateCounts::default();
        for row in rows {
            let n = count(row.get(1));
            match row.get::<_, &str>(0).parse() {
                Ok(JobState::Queued) => counts.queued = n,
                Ok(JobState::Running) => counts.running = n,
                Ok(JobState::Done) => counts.done = n,
                _ => counts.dead += n,
            }
        }
        Ok(counts)
    }

    /// The `limit` most recently dead-lettered jobs, with their errors and payloads.
    ///
    /// # Errors
    ///
    /// Database and connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
    /// let dead = queue.dead_jobs(&client, 50).await?;
    /// # Ok(()) }
    /// ```
    pub async fn dead_jobs<C: GenericClient + Sync>(
        &self,
        client: &C,
        limit: u32,
    ) -> Result<Vec<DeadJob>, Error> {
        let limit = i64::from(limit);
        let rows = client
            .query_typed(&self.sql.dead_jobs, &[(&limit, Type::INT8)])
            .await?;
        Ok(rows
            .iter()
            .map(|row| DeadJob {
                job: JobId::new(row.get(0)),
                tenant: row.get(1),
                class: row.get(2),
                attempts: u32::try_from(row.get::<_, i32>(3)).unwrap_or(0),
                last_error: row.get(4),
                payload: row.get(5),
            })
            .collect())
    }
}
