//! [`QueueConfig`]: where the queue lives in the host's database and how it treats jobs.

use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use fairshare::config::Quota;

use crate::error::Error;

/// Where the queue's tables live (a schema of the host's database) and the policies every
/// node of the fleet must agree on: lease length, attempt limit, retry backoff, default weight,
/// default rate quota and the pass scale.
///
/// All nodes that share a schema should use the same configuration: passes assigned with
/// different scales or weights are still ordered, but no longer fair to each other.
///
/// # Examples
///
/// ```
/// use fairshare::config::Quota;
/// use fairshare_postgres::QueueConfig;
/// use std::num::NonZeroU32;
/// use std::time::Duration;
///
/// let config = QueueConfig::new("jobs")?
///     .with_lease(Duration::from_secs(60))
///     .with_max_attempts(NonZeroU32::new(3).unwrap())
///     .with_backoff(Duration::from_secs(2), Duration::from_secs(600))
///     .with_default_quota(Some(Quota::per_second(NonZeroU32::new(500).unwrap())));
/// assert_eq!(config.schema(), "jobs");
/// assert!(QueueConfig::new("Robert'); DROP TABLE students;--").is_err());
/// # Ok::<(), fairshare_postgres::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    pub(crate) schema: String,
    pub(crate) lease: Duration,
    pub(crate) max_attempts: NonZeroU32,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) default_weight: NonZeroU32,
    pub(crate) default_quota: Option<Quota>,
    pub(crate) pass_scale: Option<NonZeroU64>,
    pub(crate) reap_interval: Option<Duration>,
}

impl QueueConfig {
    /// A queue in schema `schema` with a 30 s lease, 5 attempts, backoff from 1 s doubling up
    /// to 1 h, default weight 1 and no rate quota.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSchemaName`] unless `schema` is 1 to 63 characters of `a-z`, `0-9`
    /// and `_`, not starting with a digit (so it never needs escaping).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare_postgres::QueueConfig;
    /// assert!(QueueConfig::new("fairshare").is_ok());
    /// assert!(QueueConfig::new("9lives").is_err());
    /// ```
    pub fn new(schema: &str) -> Result<Self, Error> {
        let valid = !schema.is_empty()
            && schema.len() <= 63
            && !schema.as_bytes()[0].is_ascii_digit()
            && schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(Error::InvalidSchemaName {
                name: schema.to_owned(),
            });
        }
        Ok(QueueConfig {
            schema: schema.to_owned(),
            lease: Duration::from_secs(30),
            max_attempts: NonZeroU32::new(5).expect("5 is not zero"),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(3600),
            default_weight: NonZeroU32::MIN,
            default_quota: None,
            pass_scale: None,
            reap_interval: None,
        })
    }

    /// How long a claim holds a job before another worker may take it over. A worker that
    /// needs longer extends its lease ([`Queue::extend_lease`](crate::Queue::extend_lease)).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let c = fairshare_postgres::QueueConfig::new("q")?.with_lease(Duration::from_secs(5));
    /// assert_eq!(c.lease(), Duration::from_secs(5));
    /// # Ok::<(), fairshare_postgres::Error>(())
    /// ```
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How many claims a job gets before it is dead-lettered, unless the job sets its own.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::num::NonZeroU32;
    /// let c = fairshare_postgres::QueueConfig::new("q")?.with_max_attempts(NonZeroU32::MIN);
    /// assert_eq!(c.max_attempts().get(), 1);
    /// # Ok::<(), fairshare_postgres::Error>(())
    /// ```
    pub fn with_max_attempts(mut self, max_attempts: NonZeroU32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Retry backoff: after failed attempt `k` (1-based) the job waits `base · 2^(k-1)`,
    /// at most `max`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let c = fairshare_postgres::QueueConfig::new("q")?
    ///     .with_backoff(Duration::from_millis(100), Duration::from_secs(1));
    /// assert_eq!(c.backoff(1), Duration::from_millis(100));
    /// assert_eq!(c.backoff(3), Duration::from_millis(400));
    /// assert_eq!(c.backoff(60), Duration::from_secs(1));
    /// # Ok::<(), fairshare_postgres::Error>(())
    /// ```
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }

    /// The weight of a tenant nobody has set a weight for.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::num::NonZeroU32;
    /// let c = fairshare_postgres::QueueConfig::new("q")?
    ///     .with_default_weight(NonZeroU32::new(10).unwrap());
    /// # Ok::<(), fairshare_postgres::Error>(())
    /// ```
    pub fn with_default_weight(mut self, weight: NonZeroU32) -> Self {
        self.default_weight = weight;
        self
    }

    /// The rate quota of a tenant without its own
    /// ([`Queue::set_quota`](crate::Queue::set_quota)); `None` (the default) means no limit.
    /// The quota is fleet-wide: its state lives on the tenant's row.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::num::NonZeroU32;
    /// use fairshare::config::Quota;
    /// let c = fairshare_postgres::QueueConfig::new("q")?
    ///     .with_default_quota(Some(Quota::per_minute(NonZeroU32::new(600).unwrap())));
    /// # Ok::<(), fairshare_postgres::Error>(())
    /// ```
    pub fn with_default_quota(mut self, quota: Option<Quota>) -> Self {
        self.default_quota = quota;
        self
    }

    /// The pass scale handed to the core's pass assigner (virtual-time units per unit of cost
    /// at weight 1); the core's default if unset. Larger scales keep strides distinct for
    /// heavier weights.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::num::NonZeroU64;
    /// let c = fairshare_postgres::QueueConfig::new("q")?
    ///     .with_pass_scale(NonZeroU64::new(1 << 20).unwrap());
    /// # Ok::<(), fairshare_postgres::Error>(())
    /// ```
    pub fn with_pass_scale(mut self, scale: NonZeroU64) -> Self {
        self.pass_scale = Some(scale);
        self
    }

    /// How often (at most) a process's claims first look for expired leases; default a
    /// quarter of the lease, between 10 ms and 1 s. A job whose worker died is claimable
    /// again at most this long after its lease ends (given claims keep coming).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let c = fairshare_postgres::QueueConfig::new("q")?
    ///     .with_reap_interval(Duration::from_millis(250));
    /// # Ok::<(), fairshare_postgres::Error>(())
    /// ```
    pub fn with_reap_interval(mut self, interval: Duration) -> Self {
        self.reap_interval = Some(interval);
        self
    }

    /// The schema name.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare_postgres::QueueConfig::new("q")?.schema(), "q");
    /// # Ok::<(), fairshare_postgres::Error>(())
    /// ```
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The lease length.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// assert_eq!(fairshare_postgres::QueueConfig::new("q")?.lease(), Duration::from_secs(30));
    /// # Ok::<(), fairshare_postgres::Error>(())
    /// ```
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The default attempt limit.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare_postgres::QueueConfig::new("q")?.max_attempts().get(), 5);
    /// # Ok::<(), fairshare_postgres::Error>(())
    /// ```
    pub fn max_attempts(&self) -> NonZeroU32 {
        self.max_attempts
    }

    /// The delay before retrying after failed attempt `attempt` (1-based): `base ·
    /// 2^(attempt-1)`, at most the configured maximum; saturates, never overflows.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let c = fairshare_postgres::QueueConfig::new("q")?;
    /// assert_eq!(c.backoff(1), Duration::from_secs(1));
    /// assert_eq!(c.backoff(2), Duration::from_secs(2));
    /// assert_eq!(c.backoff(u32::MAX), Duration::from_secs(3600));
    /// // Exact up to the maximum, whatever the attempt: 1 ms · 2^32 is about 50 days.
    /// let long = c.with_backoff(Duration::from_millis(1), Duration::from_secs(365 * 86_400));
    /// assert_eq!(long.backoff(33), Duration::from_millis(1 << 32));
    /// # Ok::<(), fairshare_postgres::Error>(())
    /// ```
    pub fn backoff(&self, attempt: u32) -> Duration {
        // `base · 2^(attempt-1)` exactly, in 128 bits: only a product above the maximum (or
        // beyond 128 bits) is capped. A zero base stays zero for every attempt.
        let base = self.backoff_base.as_nanos();
        let max = self.backoff_max.as_nanos();
        let delay = 2u128
            .checked_pow(attempt.saturating_sub(1))
            .and_then(|factor| base.checked_mul(factor));
        match delay {
            Some(n) if n < max => Duration::new(
                // Below `max`, so it fits a `Duration`.
                (n / 1_000_000_000) as u64,
                (n % 1_000_000_000) as u32,
            ),
            _ if base == 0 => Duration::ZERO,
            _ => self.backoff_max,
        }
    }
}
