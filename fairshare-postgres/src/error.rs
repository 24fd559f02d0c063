//! [`Error`]: every way a queue call can fail, as data the host can act on.

use std::time::{Duration, SystemTime};

use crate::job::{JobId, JobState};

/// Every way a call on a [`Queue`](crate::Queue) can fail.
///
/// Refusals that a retry can cure say when ([`Error::RateLimited`]); refusals that can never
/// succeed have their own variants ([`Error::TooLarge`], [`Error::Blocked`] until an operator
/// unblocks). Lease errors tell a worker that it no longer owns the job: it must not report
/// a result for it, because another worker may be running it.
///
/// # Examples
///
/// ```
/// use fairshare_postgres::{Error, JobId};
///
/// let err = Error::LeaseExpired { job: JobId::new(7) };
/// assert_eq!(err.to_string(), "the lease on job 7 expired; the job can be claimed again");
/// assert!(err.is_lease_lost());
/// assert!(!err.is_retryable());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database could not be reached or refused the connection (wrong address, server
    /// down, authentication failed).
    #[error("cannot connect to PostgreSQL: {source}")]
    Connect {
        /// The client's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The connection broke during a call. Nothing is lost: a claim that was not answered
    /// leaves its jobs leased until the lease expires, then they are claimable again; an
    /// enqueue that was not committed enqueued nothing.
    #[error("the connection to PostgreSQL was lost: {source}")]
    ConnectionLost {
        /// The client's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Any other error the database reported.
    #[error("database error: {source}")]
    Database {
        /// The client's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The tenant is blocked by an operator; new jobs are refused until it is unblocked.
    #[error("tenant {tenant:?} is blocked: {reason}")]
    Blocked {
        /// The tenant.
        tenant: String,
        /// The reason the operator gave.
        reason: String,
    },
    /// The tenant is over its rate quota; the same batch is admitted from `retry_at` on
    /// (if nothing else is admitted for the tenant before).
    #[error("tenant {tenant:?} is over its rate quota; retry in {retry_after:?}")]
    RateLimited {
        /// The tenant.
        tenant: String,
        /// How long to wait, measured from the database clock at the check.
        retry_after: Duration,
        /// The earliest time the batch passes, on the database clock.
        retry_at: SystemTime,
    },
    /// The batch costs more than the tenant's burst: it can never be admitted as one batch.
    #[error(
        "batch cost {cost} exceeds tenant {tenant:?}'s burst of {max}; it can never be admitted, split it into smaller batches"
    )]
    TooLarge {
        /// The tenant.
        tenant: String,
        /// The batch's total cost.
        cost: u64,
        /// The tenant's burst.
        max: u32,
    },
    /// The lease ran out before the call; the job can be (or has been) claimed again.
    #[error("the lease on job {job} expired; the job can be claimed again")]
    LeaseExpired {
        /// The job.
        job: JobId,
    },
    /// Another claim took the job over after this lease expired.
    #[error("the lease on job {job} was taken over by a newer claim")]
    LeaseTakenOver {
        /// The job.
        job: JobId,
    },
    /// The job was already completed, failed or dead-lettered under this lease.
    #[error("job {job} was already reported under this lease (it is now {state})")]
    AlreadyFinished {
        /// The job.
        job: JobId,
        /// Its state now.
        state: JobState,
    },
    /// No such job (purged, pruned or never enqueued).
    #[error("job {job} does not exist")]
    JobNotFound {
        /// The job.
        job: JobId,
    },
    /// The schema name is not a plain PostgreSQL identifier.
    #[error(
        "invalid schema name {name:?}: use 1 to 63 lowercase ASCII letters, digits or underscores, not starting with a digit"
    )]
    InvalidSchemaName {
        /// The name given.
        name: String,
    },
    /// The schema was created by a newer version of this crate.
    #[error(
        "schema {schema:?} is at version {found}, newer than this crate's {expected}; upgrade the crate"
    )]
    SchemaVersion {
        /// The schema.
        schema: String,
        /// The version found in it.
        found: i32,
        /// The version this crate writes.
        expected: i32,
    },
}

impl Error {
    /// Whether the same call can succeed later without any operator action (rate limit, lost
    /// connection).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare_postgres::Error;
    /// use std::time::{Duration, SystemTime};
    ///
    /// let err = Error::RateLimited {
    ///     tenant: "acme".into(),
    ///     retry_after: Duration::from_millis(10),
    ///     retry_at: SystemTime::UNIX_EPOCH,
    /// };
    /// assert!(err.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::RateLimited { .. } | Error::ConnectionLost { .. }
        )
    }

    /// Whether this is a lease error: the worker no longer owns the job and must drop its
    /// result.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare_postgres::{Error, JobId};
    /// assert!(Error::LeaseTakenOver { job: JobId::new(1) }.is_lease_lost());
    /// ```
    pub fn is_lease_lost(&self) -> bool {
        matches!(
            self,
            Error::LeaseExpired { .. } | Error::LeaseTakenOver { .. }
        )
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(source: tokio_postgres::Error) -> Self {
        if source.is_closed() {
            Error::ConnectionLost { source }
        } else {
            Error::Database { source }
        }
    }
}
