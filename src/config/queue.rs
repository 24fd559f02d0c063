//! [`QueueConfig`]: the fair queue's knobs.

use std::num::NonZeroU32;

use crate::error::ConfigError;

const ONE: NonZeroU32 = NonZeroU32::MIN;

/// Settings of a [`FairQueue`](crate::FairQueue). Built with `const` builders; every value is
/// valid by construction.
///
/// - `quantum` (default 1): the cost a tenant of weight 1 may be served per round. Set it to
///   about the typical item cost: a round gives tenant `i` `quantum × weight_i` of service, and
///   items far costlier than that make a tenant wait several rounds (see the `# Performance`
///   section of [`FairQueue::pop`](crate::FairQueue::pop)).
/// - `default_weight` (default 1): the weight of every tenant without an override.
/// - `max_credit_rounds` (default 128): how much credit a tenant gets back per round, in
///   quanta of its own. Post-hoc cost correction ([`FairQueue::complete`](crate::FairQueue::complete))
///   is never forgiven: a tenant whose estimates were too low repays the difference from
///   its later rounds, at most its whole quantum per round, and one whose estimates were too
///   high gets the difference back in later rounds, at most `max_credit_rounds` quanta per
///   round (so its turn is at most `1 + max_credit_rounds` quanta long). A tenant that
///   over-declares by a factor above `1 + max_credit_rounds` gets that fraction of its share.
///
/// # Examples
///
/// ```
/// use fairshare::config::QueueConfig;
/// use std::num::NonZeroU32;
///
/// const CFG: QueueConfig = QueueConfig::new()
///     .with_quantum(NonZeroU32::new(100).unwrap())
///     .with_default_weight(NonZeroU32::new(2).unwrap());
/// assert_eq!(CFG.quantum().get(), 100);
/// assert_eq!(CFG.default_weight().get(), 2);
/// assert_eq!(CFG.max_credit_rounds(), 128);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    quantum: NonZeroU32,
    default_weight: NonZeroU32,
    max_credit_rounds: u32,
}

impl QueueConfig {
    /// The defaults: quantum 1, default weight 1, credit back at 128 quanta a round.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::config::QueueConfig::new(), fairshare::config::QueueConfig::default());
    /// ```
    pub const fn new() -> Self {
        QueueConfig {
            quantum: ONE,
            default_weight: ONE,
            max_credit_rounds: 128,
        }
    }

    /// Sets the quantum (cost per round per unit of weight).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::num::NonZeroU32;
    /// let c = fairshare::config::QueueConfig::new().with_quantum(NonZeroU32::new(8).unwrap());
    /// assert_eq!(c.quantum().get(), 8);
    /// ```
    pub const fn with_quantum(mut self, quantum: NonZeroU32) -> Self {
        self.quantum = quantum;
        self
    }

    /// Sets the weight of tenants without an override.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::num::NonZeroU32;
    /// let c = fairshare::config::QueueConfig::new().with_default_weight(NonZeroU32::new(3).unwrap());
    /// assert_eq!(c.default_weight().get(), 3);
    /// ```
    pub const fn with_default_weight(mut self, weight: NonZeroU32) -> Self {
        self.default_weight = weight;
        self
    }

    /// Sets how many quanta of credit a tenant gets back per round (0: credit is kept but
    /// never spent, so over-estimates are not refunded).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = fairshare::config::QueueConfig::new().with_max_credit_rounds(8);
    /// assert_eq!(c.max_credit_rounds(), 8);
    /// ```
    pub const fn with_max_credit_rounds(mut self, rounds: u32) -> Self {
        self.max_credit_rounds = rounds;
        self
    }

    /// Builds a config from raw numbers, naming the field that is out of range.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] if `quantum` or `default_weight` is zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::ConfigError;
    /// use fairshare::config::QueueConfig;
    /// assert!(QueueConfig::try_from_raw(10, 1, 128).is_ok());
    /// let err = QueueConfig::try_from_raw(10, 0, 128).unwrap_err();
    /// assert!(matches!(err, ConfigError::Invalid { field: "default_weight", .. }));
    /// ```
    pub const fn try_from_raw(
        quantum: u32,
        default_weight: u32,
        max_credit_rounds: u32,
    ) -> Result<Self, ConfigError> {
        let Some(quantum) = NonZeroU32::new(quantum) else {
            return Err(ConfigError::Invalid {
                field: "quantum",
                problem: "must be at least 1 (about the typical item cost)",
            });
        };
        let Some(default_weight) = NonZeroU32::new(default_weight) else {
            return Err(ConfigError::Invalid {
                field: "default_weight",
                problem: "must be at least 1; block a tenant instead of giving it weight 0",
            });
        };
        Ok(QueueConfig {
            quantum,
            default_weight,
            max_credit_rounds,
        })
    }

    /// The quantum.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::config::QueueConfig::new().quantum().get(), 1);
    /// ```
    pub const fn quantum(&self) -> NonZeroU32 {
        self.quantum
    }

    /// The default weight.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::config::QueueConfig::new().default_weight().get(), 1);
    /// ```
    pub const fn default_weight(&self) -> NonZeroU32 {
        self.default_weight
    }

    /// How many quanta of credit a tenant gets back per round.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::config::QueueConfig::new().max_credit_rounds(), 128);
    /// ```
    pub const fn max_credit_rounds(&self) -> u32 {
        self.max_credit_rounds
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self::new()
    }
}
