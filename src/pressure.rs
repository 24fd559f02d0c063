//! Graded backpressure: [`PressureLevel`]s with hysteresis, computed from how full the
//! scheduler is and how long items wait.
//!
//! A host maps levels to its own responses, for example: `Normal` serve everything;
//! `Elevated` warn clients, stop optional work; `Shedding` answer 429 with `Retry-After` to
//! low-priority traffic; `Critical` answer 503 or switch to a read-only mode. Hysteresis (a
//! level is entered at one threshold and left only below a lower one) keeps the level from
//! flapping at a boundary, so overload degrades in explainable steps.

use crate::clock::Nanos;

/// How loaded the scheduler is, in four grades.
///
/// # Examples
///
/// ```
/// use fairshare::pressure::PressureLevel;
/// assert!(PressureLevel::Critical > PressureLevel::Shedding);
/// assert_eq!(PressureLevel::Elevated.to_string(), "elevated");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum PressureLevel {
    /// Below every threshold.
    #[default]
    Normal,
    /// Filling up: a good time to warn and to stop optional work.
    Elevated,
    /// Near capacity: refuse low-priority work (429 with Retry-After).
    Shedding,
    /// At capacity: refuse what can be refused (503), degrade to read-only.
    Critical,
}

impl std::fmt::Display for PressureLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PressureLevel::Normal => "normal",
            PressureLevel::Elevated => "elevated",
            PressureLevel::Shedding => "shedding",
            PressureLevel::Critical => "critical",
        })
    }
}

/// An enter/exit pair, in per-mille of the reference (1000 = at the reference).
///
/// # Examples
///
/// ```
/// let b = fairshare::pressure::Band::new(800, 700);
/// assert_eq!((b.enter(), b.exit()), (800, 700));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Band {
    enter: u32,
    exit: u32,
}

impl Band {
    /// Entered at `enter`‰, left below `exit`‰; `exit` is clamped to at most `enter`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::pressure::Band::new(500, 900).exit(), 500);
    /// ```
    pub const fn new(enter: u32, exit: u32) -> Self {
        Band {
            enter,
            exit: if exit < enter { exit } else { enter },
        }
    }

    /// The entry threshold, in per-mille.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::pressure::Band::new(5, 4).enter(), 5);
    /// ```
    pub const fn enter(&self) -> u32 {
        self.enter
    }

    /// The exit threshold, in per-mille.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::pressure::Band::new(5, 4).exit(), 4);
    /// ```
    pub const fn exit(&self) -> u32 {
        // Never above `enter`, even for a deserialised value that skipped `new`.
        if self.exit < self.enter {
            self.exit
        } else {
            self.enter
        }
    }
}

/// What pressure is measured against, and the bands of the three raised levels.
///
/// The load is the largest of `queued items / max_items`, `queued cost / max_cost` and
/// `queueing delay / target_delay` (each only if its reference is set), in per-mille.
/// Defaults: elevated 500‰/400‰, shedding 800‰/700‰, critical 950‰/850‰.
///
/// # Examples
///
/// ```
/// use fairshare::Nanos;
/// use fairshare::pressure::PressureConfig;
/// let cfg = PressureConfig::new().with_max_items(1_000).with_target_delay(Nanos::from_millis(50));
/// assert_eq!(cfg.max_items(), Some(1_000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PressureConfig {
    max_items: Option<u64>,
    max_cost: Option<u64>,
    target_delay: Option<Nanos>,
    elevated: Band,
    shedding: Band,
    critical: Band,
}

impl PressureConfig {
    /// No references (always `Normal`) and the default bands.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::pressure::PressureConfig::new().max_cost(), None);
    /// ```
    pub const fn new() -> Self {
        PressureConfig {
            max_items: None,
            max_cost: None,
            target_delay: None,
            elevated: Band::new(500, 400),
            shedding: Band::new(800, 700),
            critical: Band::new(950, 850),
        }
    }

    /// Measures queued items against `max`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::pressure::PressureConfig::new().with_max_items(9).max_items(), Some(9));
    /// ```
    pub const fn with_max_items(mut self, max: u64) -> Self {
        self.max_items = Some(max);
        self
    }

    /// Measures queued cost against `max`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::pressure::PressureConfig::new().with_max_cost(9).max_cost(), Some(9));
    /// ```
    pub const fn with_max_cost(mut self, max: u64) -> Self {
        self.max_cost = Some(max);
        self
    }

    /// Measures queueing delay against `target`.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::Nanos;
    /// use fairshare::pressure::PressureConfig;
    /// let c = PressureConfig::new().with_target_delay(Nanos::from_millis(5));
    /// assert_eq!(c.target_delay(), Some(Nanos::from_millis(5)));
    /// ```
    pub const fn with_target_delay(mut self, target: Nanos) -> Self {
        self.target_delay = Some(target);
        self
    }

    /// Sets the three bands.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::pressure::{Band, PressureConfig};
    /// let c = PressureConfig::new().with_bands(Band::new(300, 200), Band::new(600, 500), Band::new(900, 800));
    /// assert_eq!(c.bands()[2].enter(), 900);
    /// ```
    pub const fn with_bands(mut self, elevated: Band, shedding: Band, critical: Band) -> Self {
        self.elevated = elevated;
        self.shedding = shedding;
        self.critical = critical;
        self
    }

    /// The item reference.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::pressure::PressureConfig::new().max_items(), None);
    /// ```
    pub const fn max_items(&self) -> Option<u64> {
        self.max_items
    }

    /// The cost reference.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::pressure::PressureConfig::new().max_cost(), None);
    /// ```
    pub const fn max_cost(&self) -> Option<u64> {
        self.max_cost
    }

    /// The delay reference.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::pressure::PressureConfig::new().target_delay(), None);
    /// ```
    pub const fn target_delay(&self) -> Option<Nanos> {
        self.target_delay
    }

    /// The bands of `Elevated`, `Shedding` and `Critical`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(fairshare::pressure::PressureConfig::new().bands()[0].enter(), 500);
    /// ```
    pub const fn bands(&self) -> [Band; 3] {
        [self.elevated, self.shedding, self.critical]
    }

    /// The load in per-mille for a snapshot (saturating at `u32::MAX`).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::Nanos;
    /// use fairshare::pressure::PressureConfig;
    /// let c = PressureConfig::new().with_max_items(100).with_target_delay(Nanos::from_millis(10));
    /// assert_eq!(c.load_permille(50, 0, Nanos::from_millis(2)), 500);
    /// assert_eq!(c.load_permille(10, 0, Nanos::from_millis(20)), 2000);
    /// ```
    pub fn load_permille(&self, items: u64, cost: u64, delay: Nanos) -> u32 {
        fn ratio(x: u64, of: u64) -> u64 {
            if of == 0 {
                if x == 0 { 0 } else { u64::MAX }
            } else {
                ((u128::from(x) * 1000) / u128::from(of)).min(u128::from(u64::MAX)) as u64
            }
        }
        let a = self.max_items.map_or(0, |m| ratio(items, m));
        let b = self.max_cost.map_or(0, |m| ratio(cost, m));
        let c = self
            .target_delay
            .map_or(0, |t| ratio(delay.as_u64(), t.as_u64()));
        a.max(b).max(c).min(u64::from(u32::MAX)) as u32
    }
}

impl Default for PressureConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// The hysteresis state machine: feed it loads, read the level.
///
/// The level rises at once to the highest level whose `enter` threshold the load reaches, and
/// falls only while the load is below the current level's `exit` threshold (possibly several
/// steps at once). Pure and deterministic: no clock, no IO.
///
/// # Examples
///
/// ```
/// use fairshare::pressure::{PressureConfig, PressureGauge, PressureLevel};
/// let mut g = PressureGauge::new(PressureConfig::new());
/// assert_eq!(g.update(820), PressureLevel::Shedding);
/// assert_eq!(g.update(750), PressureLevel::Shedding); // above shedding's exit (700)
/// assert_eq!(g.update(650), PressureLevel::Elevated);
/// assert_eq!(g.update(100), PressureLevel::Normal);
/// ```
#[derive(Debug, Clone)]
pub struct PressureGauge {
    config: PressureConfig,
    level: PressureLevel,
}

impl PressureGauge {
    /// A gauge at `Normal`.
    ///
    /// # Examples
    ///
    /// ```
    /// let g = fairshare::pressure::PressureGauge::new(fairshare::pressure::PressureConfig::new());
    /// assert_eq!(g.level(), fairshare::pressure::PressureLevel::Normal);
    /// ```
    pub const fn new(config: PressureConfig) -> Self {
        PressureGauge {
            config,
            level: PressureLevel::Normal,
        }
    }

    /// The configuration.
    ///
    /// # Examples
    ///
    /// ```
    /// let g = fairshare::pressure::PressureGauge::new(fairshare::pressure::PressureConfig::new());
    /// assert_eq!(g.config().max_items(), None);
    /// ```
    pub const fn config(&self) -> &PressureConfig {
        &self.config
    }

    /// The current level.
    ///
    /// # Examples
    ///
    /// ```
    /// let g = fairshare::pressure::PressureGauge::new(fairshare::pressure::PressureConfig::new());
    /// assert_eq!(g.level(), fairshare::pressure::PressureLevel::Normal);
    /// ```
    pub const fn level(&self) -> PressureLevel {
        self.level
    }

    /// Feeds a load (per-mille) and returns the new level.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::pressure::{PressureConfig, PressureGauge, PressureLevel};
    /// let mut g = PressureGauge::new(PressureConfig::new());
    /// assert_eq!(g.update(2000), PressureLevel::Critical);
    /// assert_eq!(g.update(900), PressureLevel::Critical); // critical's exit is 850
    /// assert_eq!(g.update(0), PressureLevel::Normal);
    /// ```
    pub fn update(&mut self, load_permille: u32) -> PressureLevel {
        self.level = self.peek(load_permille);
        self.level
    }

    /// The level [`update`](Self::update) would move to, without moving.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::pressure::{PressureConfig, PressureGauge, PressureLevel};
    /// let g = PressureGauge::new(PressureConfig::new());
    /// assert_eq!(g.peek(2000), PressureLevel::Critical);
    /// assert_eq!(g.level(), PressureLevel::Normal);
    /// ```
    pub fn peek(&self, load_permille: u32) -> PressureLevel {
        use PressureLevel::*;
        let [e, s, c] = self.config.bands();
        let entered = if load_permille >= c.enter() {
            Critical
        } else if load_permille >= s.enter() {
            Shedding
        } else if load_permille >= e.enter() {
            Elevated
        } else {
            Normal
        };
        if entered >= self.level {
            return entered;
        }
        // Falling: step down while below the current level's exit threshold.
        let mut level = self.level;
        loop {
            let exit = match level {
                Normal => break,
                Elevated => e.exit(),
                Shedding => s.exit(),
                Critical => c.exit(),
            };
            if load_permille >= exit || level <= entered {
                break;
            }
            level = match level {
                Critical => Shedding,
                Shedding => Elevated,
                _ => Normal,
            };
        }
        level
    }
}
