//! Jobs as the queue stores them: [`NewJob`] going in, [`Job`] and its [`Lease`] coming out.

use std::fmt;
use std::num::NonZeroU32;
use std::time::{Duration, SystemTime};

/// A job's id: the `id` column of the jobs table, assigned at enqueue.
///
/// # Examples
///
/// ```
/// use fairshare_postgres::JobId;
/// let id = JobId::new(42);
/// assert_eq!(id.get(), 42);
/// assert_eq!(id.to_string(), "42");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(i64);

impl JobId {
    /// Wraps a raw id (as read from the jobs table).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare_postgres::JobId::new(3).get(), 3);
    /// ```
    pub const fn new(id: i64) -> Self {
        JobId(id)
    }

    /// The raw id.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare_postgres::JobId::new(3).get(), 3);
    /// ```
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a job is in its life: `queued` (waiting, possibly until `run_after`), `running`
/// (leased to a worker), `done`, or `dead` (failed on its last attempt, dead-lettered, or
/// undecodable). A running job whose lease expired is claimable again.
///
/// # Examples
///
/// ```
/// use fairshare_postgres::JobState;
/// assert_eq!(JobState::Dead.as_str(), "dead");
/// assert_eq!("running".parse::<JobState>(), Ok(JobState::Running));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobState {
    /// Waiting to be claimed.
    Queued,
    /// Leased to a worker.
    Running,
    /// Completed.
    Done,
    /// Failed for good; kept with its last error.
    Dead,
}

impl JobState {
    /// The value stored in the `state` column.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare_postgres::JobState::Queued.as_str(), "queued");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Dead => "dead",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "done" => JobState::Done,
            "dead" => JobState::Dead,
            _ => return Err(UnknownState),
        })
    }
}

/// A `state` value this crate does not know (a row written by something else).
///
/// # Examples
///
/// ```
/// assert!("paused".parse::<fairshare_postgres::JobState>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown job state")]
pub struct UnknownState;

/// A job to enqueue: an opaque payload (the host encodes it), a class, a cost estimate, an
/// attempt limit and an optional delay.
///
/// The cost is a `NonZeroU32`: a zero cost would give the job a zero stride, so a tenant could
/// queue any number of free jobs at one pass, ahead of everyone. Zero is ruled out by the type,
/// not clamped. The actual cost reported at completion may be zero.
///
/// # Examples
///
/// ```
/// use fairshare_postgres::NewJob;
/// use std::num::NonZeroU32;
/// use std::time::Duration;
///
/// let job = NewJob::new(b"{\"ticket\":17}".to_vec())
///     .with_class("bulk")
///     .with_cost(NonZeroU32::new(5).unwrap())
///     .with_max_attempts(NonZeroU32::new(3).unwrap())
///     .with_delay(Duration::from_secs(1));
/// assert_eq!(job.cost().get(), 5);
/// assert_eq!(job.class(), "bulk");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub(crate) payload: Vec<u8>,
    pub(crate) class: String,
    pub(crate) cost: NonZeroU32,
    pub(crate) max_attempts: Option<NonZeroU32>,
    pub(crate) delay: Duration,
}

impl NewJob {
    /// A job of cost 1 in class `default`, with the queue's attempt limit and no delay.
    ///
    /// # Examples
    ///
    /// ```
    /// let job = fairshare_postgres::NewJob::new(vec![1, 2, 3]);
    /// assert_eq!(job.payload(), &[1, 2, 3]);
    /// assert_eq!(job.cost().get(), 1);
    /// ```
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        NewJob {
            payload: payload.into(),
            class: "default".to_owned(),
            cost: NonZeroU32::MIN,
            max_attempts: None,
            delay: Duration::ZERO,
        }
    }

    /// Sets the class (a free-form label the host can filter dashboards by).
    ///
    /// # Examples
    ///
    /// ```
    /// let job = fairshare_postgres::NewJob::new(vec![]).with_class("signin");
    /// assert_eq!(job.class(), "signin");
    /// ```
    pub fn with_class(mut self, class: impl Into<String>) -> Self {
        self.class = class.into();
        self
    }

    /// Sets the estimated cost (default 1); the tenant's share is corrected at completion
    /// with the actual cost.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::num::NonZeroU32;
    /// let job = fairshare_postgres::NewJob::new(vec![]).with_cost(NonZeroU32::new(8).unwrap());
    /// assert_eq!(job.cost().get(), 8);
    /// ```
    pub fn with_cost(mut self, cost: NonZeroU32) -> Self {
        self.cost = cost;
        self
    }

    /// Sets how many times the job may be claimed before it is dead-lettered (default: the
    /// queue's [`QueueConfig::with_max_attempts`](crate::QueueConfig::with_max_attempts)).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::num::NonZeroU32;
    /// let job = fairshare_postgres::NewJob::new(vec![]).with_max_attempts(NonZeroU32::MIN);
    /// assert_eq!(job.max_attempts().map(NonZeroU32::get), Some(1));
    /// ```
    pub fn with_max_attempts(mut self, max_attempts: NonZeroU32) -> Self {
        self.max_attempts = Some(max_attempts);
        self
    }

    /// Makes the job claimable only `delay` after it is enqueued (database clock).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let job = fairshare_postgres::NewJob::new(vec![]).with_delay(Duration::from_secs(5));
    /// assert_eq!(job.delay(), Duration::from_secs(5));
    /// ```
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// The payload.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare_postgres::NewJob::new(vec![9]).payload(), &[9]);
    /// ```
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The class.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare_postgres::NewJob::new(vec![]).class(), "default");
    /// ```
    pub fn class(&self) -> &str {
        &self.class
    }

    /// The estimated cost.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare_postgres::NewJob::new(vec![]).cost().get(), 1);
    /// ```
    pub fn cost(&self) -> NonZeroU32 {
        self.cost
    }

    /// The attempt limit, if set on the job.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare_postgres::NewJob::new(vec![]).max_attempts(), None);
    /// ```
    pub fn max_attempts(&self) -> Option<NonZeroU32> {
        self.max_attempts
    }

    /// The delay before the job becomes claimable.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(fairshare_postgres::NewJob::new(vec![]).delay().is_zero());
    /// ```
    pub fn delay(&self) -> std::time::Duration {
        self.delay
    }
}

/// A worker's claim on one job: present it to complete, fail, dead-letter or extend the job.
/// The database refuses it once the lease has expired or another claim has taken the job.
///
/// # Examples
///
/// ```no_run
/// # async fn run(queue: fairshare_postgres::Queue, mut client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
/// let jobs = queue.claim(&client, "worker-1", 1).await?;
/// for job in jobs {
///     let lease = job.lease();
///     assert_eq!(lease.job(), job.id());
///     queue.complete(&mut client, lease, 1).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub(crate) job: JobId,
    pub(crate) token: i64,
    pub(crate) until: SystemTime,
    pub(crate) tenant: String,
    pub(crate) cost: u32,
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
}

impl Lease {
    /// The leased job.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(lease: &fairshare_postgres::Lease) {
    /// println!("working on job {}", lease.job());
    /// # }
    /// ```
    pub fn job(&self) -> JobId {
        self.job
    }

    /// The lease token: unique per claim, so a newer claim of the same job has another.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(a: &fairshare_postgres::Lease, b: &fairshare_postgres::Lease) {
    /// assert_ne!(a.token(), b.token()); // two claims, two tokens
    /// # }
    /// ```
    pub fn token(&self) -> i64 {
        self.token
    }

    /// When the lease expires (database clock). Extend it with
    /// [`Queue::extend_lease`](crate::Queue::extend_lease) for long jobs.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(lease: &fairshare_postgres::Lease) {
    /// let left = lease.until().duration_since(std::time::SystemTime::now());
    /// # }
    /// ```
    pub fn until(&self) -> SystemTime {
        self.until
    }

    /// The job's tenant.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(lease: &fairshare_postgres::Lease) {
    /// println!("tenant {}", lease.tenant());
    /// # }
    /// ```
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Which attempt this is (1 for the first claim).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(lease: &fairshare_postgres::Lease) {
    /// assert!(lease.attempt() >= 1 && lease.attempt() <= lease.max_attempts());
    /// # }
    /// ```
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The job's attempt limit.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(lease: &fairshare_postgres::Lease) {
    /// let last_try = lease.attempt() == lease.max_attempts();
    /// # }
    /// ```
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The cost declared at enqueue.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(lease: &fairshare_postgres::Lease) {
    /// assert!(lease.cost() >= 1);
    /// # }
    /// ```
    pub fn cost(&self) -> u32 {
        self.cost
    }
}

/// A claimed job: its stored fields and the [`Lease`] that lets the worker report on it.
///
/// # Examples
///
/// ```no_run
/// # async fn run(queue: fairshare_postgres::Queue, client: tokio_postgres::Client) -> Result<(), fairshare_postgres::Error> {
/// for job in queue.claim(&client, "worker-1", 10).await? {
///     println!("{} {} {} bytes", job.id(), job.tenant(), job.payload().len());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub(crate) class: String,
    pub(crate) pass: u64,
    pub(crate) payload: Vec<u8>,
    pub(crate) last_error: Option<String>,
    pub(crate) lease: Lease,
}

impl Job {
    /// The job's id.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(job: &fairshare_postgres::Job) {
    /// assert_eq!(job.id(), job.lease().job());
    /// # }
    /// ```
    pub fn id(&self) -> JobId {
        self.lease.job
    }

    /// The job's tenant.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(job: &fairshare_postgres::Job) {
    /// println!("{}", job.tenant());
    /// # }
    /// ```
    pub fn tenant(&self) -> &str {
        &self.lease.tenant
    }

    /// The job's class.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(job: &fairshare_postgres::Job) {
    /// println!("{}", job.class());
    /// # }
    /// ```
    pub fn class(&self) -> &str {
        &self.class
    }

    /// The pass (virtual finish time) assigned at enqueue; claims go in ascending pass order.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(a: &fairshare_postgres::Job, b: &fairshare_postgres::Job) {
    /// // `a` claimed before `b` by one worker from a queue with no delays and no retries:
    /// assert!(a.pass() <= b.pass());
    /// # }
    /// ```
    pub fn pass(&self) -> u64 {
        self.pass
    }

    /// The payload as enqueued.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(job: &fairshare_postgres::Job) {
    /// let text = String::from_utf8_lossy(job.payload());
    /// # }
    /// ```
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The error of the previous attempt, if this is a retry.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(job: &fairshare_postgres::Job) {
    /// if let Some(err) = job.last_error() {
    ///     println!("retrying after: {err}");
    /// }
    /// # }
    /// ```
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The lease to present when reporting on the job.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(job: &fairshare_postgres::Job) {
    /// println!("attempt {} of {}", job.lease().attempt(), job.lease().max_attempts());
    /// # }
    /// ```
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Splits the job into its payload and its lease.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(job: fairshare_postgres::Job) {
    /// let (payload, lease) = job.into_parts();
    /// # }
    /// ```
    pub fn into_parts(self) -> (Vec<u8>, Lease) {
        (self.payload, self.lease)
    }
}
