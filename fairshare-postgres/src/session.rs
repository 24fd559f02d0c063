//! [`Session`]: one connection with the queue's hot statements prepared, for worker loops and
//! producers that own their connection.

use std::time::Duration;

use tokio_postgres::Client;

use crate::error::Error;
use crate::exec::Prepared;
use crate::job::{Job, JobId, Lease, NewJob};
use crate::queue::{Decoded, FailOutcome, Queue, Reaped};

/// A [`Queue`] bound to one connection that it owns, with the statements of enqueue, claim,
/// complete, fail, release and extend prepared once.
///
/// The plain [`Queue`] methods take any client or transaction, so they send each statement's
/// text, which the server parses and plans every time; for the claim statement that planning
/// costs more than running it. A worker loop (or a producer) that owns its connection should
/// use a `Session`: same calls, same semantics, the plans cached by the server. The
/// statements are prepared on this connection only, so a `Session` never mixes them up with
/// another connection's.
///
/// To enqueue inside the host's own transaction, use [`Queue::enqueue_batch`] with that
/// transaction.
///
/// # Examples
///
/// ```no_run
/// use fairshare_postgres::{Queue, QueueConfig, Session};
///
/// # async fn run() -> Result<(), fairshare_postgres::Error> {
/// let queue = Queue::new(QueueConfig::new("jobs")?);
/// let client = fairshare_postgres::connect("host=/run/postgresql user=app").await?;
/// let mut worker = Session::new(queue, client, "node-3/worker-1").await?;
/// loop {
///     let jobs = worker.claim(8).await?;
///     if jobs.is_empty() {
///         tokio::time::sleep(std::time::Duration::from_millis(50)).await;
///         continue;
///     }
///     for job in jobs {
///         // ... run it ...
///         worker.complete(job.lease(), 1).await?;
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Session {
    queue: Queue,
    client: Client,
    prepared: Prepared,
    worker: String,
}

impl Session {
    /// Prepares the queue's statements on `client` (one round trip each) and names the
    /// worker (shown in [`Queue::in_flight`]).
    ///
    /// # Errors
    ///
    /// Database and connection errors; a missing schema ([`Queue::migrate`] not run) is a
    /// database error here.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
    /// let session = fairshare_postgres::Session::new(queue, client, "worker-1").await?;
    /// assert_eq!(session.worker(), "worker-1");
    /// # Ok(()) }
    /// ```
    pub async fn new(
        queue: Queue,
        client: Client,
        worker: impl Into<String>,
    ) -> Result<Self, Error> {
        let prepared = Prepared::new(&client, &queue.sql).await?;
        Ok(Session {
            queue,
            client,
            prepared,
            worker: worker.into(),
        })
    }

    /// The queue.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(session: &fairshare_postgres::Session) {
    /// println!("{}", session.queue().config().schema());
    /// # }
    /// ```
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The worker name claims are made under.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(session: &fairshare_postgres::Session) {
    /// println!("{}", session.worker());
    /// # }
    /// ```
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// The connection, for the host's own queries and the [`Queue`] operator and dashboard
    /// calls.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(session: fairshare_postgres::Session) -> Result<(), fairshare_postgres::Error> {
    /// let backlog = session.queue().backlog(session.client()).await?;
    /// # Ok(()) }
    /// ```
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Gives the connection back.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(session: fairshare_postgres::Session) {
    /// let client: tokio_postgres::Client = session.into_client();
    /// # }
    /// ```
    pub fn into_client(self) -> Client {
        self.client
    }

    /// [`Queue::enqueue`] on this connection.
    ///
    /// # Errors
    ///
    /// As [`Queue::enqueue_batch`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(mut s: fairshare_postgres::Session) -> Result<(), fairshare_postgres::Error> {
    /// let id = s.enqueue("acme", &fairshare_postgres::NewJob::new("hello")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue(&mut self, tenant: &str, job: &NewJob) -> Result<JobId, Error> {
        let ids = self
            .enqueue_batch(tenant, std::slice::from_ref(job))
            .await?;
        Ok(ids[0])
    }

    /// [`Queue::enqueue_batch`] on this connection, in its own transaction.
    ///
    /// # Errors
    ///
    /// As [`Queue::enqueue_batch`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(mut s: fairshare_postgres::Session) -> Result<(), fairshare_postgres::Error> {
    /// let jobs: Vec<_> = (0..1000).map(|i| fairshare_postgres::NewJob::new(format!("{i}"))).collect();
    /// let ids = s.enqueue_batch("acme", &jobs).await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_batch(
        &mut self,
        tenant: &str,
        jobs: &[NewJob],
    ) -> Result<Vec<JobId>, Error> {
        self.queue
            .enqueue_batch_with(&mut self.client, Some(&self.prepared), tenant, jobs)
            .await
    }

    /// [`Queue::claim`] under this session's worker name.
    ///
    /// # Errors
    ///
    /// As [`Queue::claim`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(s: fairshare_postgres::Session) -> Result<(), fairshare_postgres::Error> {
    /// let jobs = s.claim(16).await?;
    /// # Ok(()) }
    /// ```
    pub async fn claim(&self, n: u32) -> Result<Vec<Job>, Error> {
        self.queue
            .claim_with(&self.client, Some(&self.prepared), &self.worker, n)
            .await
    }

    /// [`Queue::reap_expired`] on this connection.
    ///
    /// # Errors
    ///
    /// As [`Queue::reap_expired`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(s: fairshare_postgres::Session) -> Result<(), fairshare_postgres::Error> {
    /// let reaped = s.reap_expired().await?;
    /// # Ok(()) }
    /// ```
    pub async fn reap_expired(&self) -> Result<Reaped, Error> {
        self.queue
            .reap_expired_with(&self.client, Some(&self.prepared))
            .await
    }

    /// [`Queue::claim_decoded`] under this session's worker name.
    ///
    /// # Errors
    ///
    /// As [`Queue::claim_decoded`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(s: fairshare_postgres::Session) -> Result<(), fairshare_postgres::Error> {
    /// let claimed = s.claim_decoded(8, |b| std::str::from_utf8(b).map(str::to_owned)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn claim_decoded<T, E, F>(&self, n: u32, decode: F) -> Result<Decoded<T>, Error>
    where
        E: std::fmt::Display,
        F: FnMut(&[u8]) -> Result<T, E>,
    {
        self.queue
            .claim_decoded_with(&self.client, Some(&self.prepared), &self.worker, n, decode)
            .await
    }

    /// [`Queue::complete`] on this connection.
    ///
    /// # Errors
    ///
    /// As [`Queue::complete`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(mut s: fairshare_postgres::Session, job: fairshare_postgres::Job) -> Result<(), fairshare_postgres::Error> {
    /// s.complete(job.lease(), 1).await?;
    /// # Ok(()) }
    /// ```
    pub async fn complete(&mut self, lease: &Lease, actual_cost: u32) -> Result<(), Error> {
        self.queue
            .complete_with(&mut self.client, Some(&self.prepared), lease, actual_cost)
            .await
    }

    /// [`Queue::fail`] on this connection.
    ///
    /// # Errors
    ///
    /// As [`Queue::fail`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(s: fairshare_postgres::Session, job: fairshare_postgres::Job) -> Result<(), fairshare_postgres::Error> {
    /// let outcome = s.fail(job.lease(), "timeout").await?;
    /// # Ok(()) }
    /// ```
    pub async fn fail(&self, lease: &Lease, error: &str) -> Result<FailOutcome, Error> {
        self.queue
            .fail_with(&self.client, Some(&self.prepared), lease, error)
            .await
    }

    /// [`Queue::dead_letter`] on this connection.
    ///
    /// # Errors
    ///
    /// As [`Queue::dead_letter`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(s: fairshare_postgres::Session, job: fairshare_postgres::Job) -> Result<(), fairshare_postgres::Error> {
    /// s.dead_letter(job.lease(), "unknown job type").await?;
    /// # Ok(()) }
    /// ```
    pub async fn dead_letter(&self, lease: &Lease, error: &str) -> Result<(), Error> {
        self.queue
            .dead_letter_with(&self.client, Some(&self.prepared), lease, error)
            .await
    }

    /// [`Queue::release`] on this connection.
    ///
    /// # Errors
    ///
    /// As [`Queue::release`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(s: fairshare_postgres::Session, job: fairshare_postgres::Job) -> Result<(), fairshare_postgres::Error> {
    /// s.release(job.lease()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn release(&self, lease: &Lease) -> Result<(), Error> {
        self.queue
            .release_with(&self.client, Some(&self.prepared), lease)
            .await
    }

    /// [`Queue::extend_lease`] on this connection.
    ///
    /// # Errors
    ///
    /// As [`Queue::extend_lease`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(s: fairshare_postgres::Session, job: fairshare_postgres::Job) -> Result<(), fairshare_postgres::Error> {
    /// let (_, mut lease) = job.into_parts();
    /// s.extend_lease(&mut lease, std::time::Duration::from_secs(60)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend_lease(&self, lease: &mut Lease, by: Duration) -> Result<(), Error> {
        self.queue
            .extend_lease_with(&self.client, Some(&self.prepared), lease, by)
            .await
    }
}
