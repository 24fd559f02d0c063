//! The replay's setup: the fairshare config (the core crate's JSON file form, unchanged), the
//! number of workers, and the one place tenants are put in groups.

use std::path::Path;

use fairshare::config::{Config, ValidConfig};
use fairshare::{ManualClock, Scheduler};

/// Why the setup could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The config file could not be read.
    #[error("reading the config {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The config is not valid JSON of the config file form (an unknown field, say).
    #[error("the config is not a fairshare config: {0}")]
    Parse(#[from] serde_json::Error),
    /// A config value can never work.
    #[error("the config is invalid: {0}")]
    Invalid(#[from] fairshare::ConfigError),
    /// The number of workers is neither given nor in the config.
    #[error(
        "how many workers serve the queue? pass --workers N, or set max_in_flight in the config"
    )]
    NoWorkers,
}

/// The config and the worker pool a replay runs with.
///
/// The config file is the core crate's file form ([`fairshare::config::Config`], JSON). The
/// worker count is `workers` if given, else the config's `max_in_flight`; when both are set
/// they may differ (a pool larger than the in-flight limit leaves workers idle under
/// fairshare, as it would in production).
///
/// # Examples
///
/// ```
/// let setup = fairshare_replay::Setup::from_json(r#"{ "max_in_flight": 4 }"#, None).unwrap();
/// assert_eq!(setup.workers(), 4);
/// let setup = fairshare_replay::Setup::from_json("{}", Some(2)).unwrap();
/// assert_eq!(setup.workers(), 2);
/// assert!(fairshare_replay::Setup::from_json("{}", None).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct Setup {
    config: Config,
    valid: ValidConfig,
    workers: usize,
}

impl Setup {
    /// The setup from a config document and an optional worker count.
    ///
    /// # Errors
    ///
    /// [`SetupError::Parse`] or [`SetupError::Invalid`] for a bad config (naming the field);
    /// [`SetupError::NoWorkers`] when neither `workers` nor `max_in_flight` says how many
    /// workers there are (or `workers` is 0).
    pub fn from_json(json: &str, workers: Option<usize>) -> Result<Setup, SetupError> {
        let config: Config = serde_json::from_str(json)?;
        let valid = config.validate()?;
        let workers = workers
            .or(config.max_in_flight.map(|m| m as usize))
            .filter(|&w| w > 0)
            .ok_or(SetupError::NoWorkers)?;
        Ok(Setup {
            config,
            valid,
            workers,
        })
    }

    /// [`from_json`](Self::from_json) on the contents of a file.
    ///
    /// # Errors
    ///
    /// [`SetupError::Io`] if the file cannot be read, else as [`from_json`](Self::from_json).
    pub fn from_path(path: &Path, workers: Option<usize>) -> Result<Setup, SetupError> {
        let json = std::fs::read_to_string(path).map_err(|source| SetupError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Setup::from_json(&json, workers)
    }

    /// The config as read.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The validated config.
    pub fn valid(&self) -> &ValidConfig {
        &self.valid
    }

    /// Workers in the simulated pool.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// A new scheduler with this config on `clock`.
    pub(crate) fn scheduler<T>(&self, clock: ManualClock) -> Scheduler<String, T, ManualClock> {
        self.valid.build(clock)
    }
}

/// Puts `tenant` in `group` for the replay's scheduler (capacity is shared among groups
/// first, then among each group's tenants): the one place the trace's tenant-to-group
/// membership reaches fairshare, called once per tenant before the first push.
///
/// # Examples
///
/// ```
/// use fairshare::{ManualClock, Scheduler, SchedulerConfig};
/// let mut s: Scheduler<String, usize, ManualClock> =
///     Scheduler::with_clock(SchedulerConfig::new(), ManualClock::new());
/// fairshare_replay::assign_group(&mut s, "acme-eu", "acme");
/// assert_eq!(s.queue().group(&"acme-eu".to_string()).map(String::as_str), Some("acme"));
/// ```
pub fn assign_group(
    scheduler: &mut Scheduler<String, usize, ManualClock>,
    tenant: &str,
    group: &str,
) {
    scheduler.set_group(tenant.to_string(), group.to_string());
}
