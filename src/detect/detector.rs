//! [`Detector`]: the three recorded streams, the share query, and the noisy set with its
//! hysteresis.

use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU32;

use super::config::{Basis, DetectorConfig};
use super::events::{Action, DetectorStats, NoisyEvent, NoisyTenant, ShareEstimate};
use super::response::{Prior, Response};
use super::window::{Merge, Window};
use crate::clock::Nanos;
use crate::error::ConfigError;
use crate::queue::DefaultHashBuilder;

/// Where a watched tenant is in the hysteresis.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Above the enter share at every poll since `since`.
    Candidate { since: Nanos },
    /// Noisy since `since`; below the exit share at every poll since `below` (if it is).
    Noisy {
        since: Nanos,
        below: Option<Nanos>,
        restore: Option<Action>,
    },
}

/// A tenant above the enter share or in the noisy set.
#[derive(Debug, Clone)]
struct Watch<K> {
    key: K,
    hash: u64,
    share: f64,
    state: State,
}

/// A bounded-memory noisy-tenant detector: which tenants use more than a share of the
/// window's admitted (or served, or refused) cost, with hysteresis, and what to do about it.
/// See the [module docs](super) for the algorithm and its bounds.
///
/// # Performance
///
/// `record_*` is O(1) on its fast path (a compare and a subtraction for an unsampled unit)
/// and O(log k) when a unit is sampled (one hash, a lookup in a table of `k` keys, a heap
/// step), and never allocates. [`shares_above`](Self::shares_above) and
/// [`poll`](Self::poll) are O(N · k), allocating only the `Vec` they return (none when it is
/// empty).
///
/// # Examples
///
/// ```
/// use fairshare::Nanos;
/// use fairshare::detect::{Detector, DetectorConfig, NoisyEvent};
///
/// let mut d: Detector<u32> = Detector::new(DetectorConfig::new()).unwrap();
/// let mut now = Nanos::ZERO;
/// for i in 0..10_000u32 {
///     now = Nanos::from_micros(u64::from(i)); // 10k items in 10 ms
///     d.record_admitted(&(i % 100), 1, now); // 100 tenants at 1% each...
///     if i % 2 == 0 {
///         d.record_admitted(&999, 1, now); // ...and one at a third of the traffic
///     }
/// }
/// let events = d.poll(now);
/// assert!(matches!(&events[..], [NoisyEvent::Became { key: 999, .. }]));
/// assert!(d.is_noisy(&999));
/// ```
#[derive(Debug, Clone)]
pub struct Detector<K, S = DefaultHashBuilder> {
    config: DetectorConfig,
    hasher: S,
    /// Admitted, served, refused ([`Basis::index`]).
    streams: [Window<K>; 3],
    merge: Merge,
    /// At most `k` entries (allocated once).
    watch: Vec<Watch<K>>,
    response: Option<Response>,
}

// ===== impl Detector: construction and recording =====

impl<K, S> Detector<K, S> {
    /// A detector with `config`, which must pass [`DetectorConfig::validate`]. Free of bounds
    /// on `K`, so that a scheduler's constructor (which has none) can build one.
    pub(crate) fn from_valid(config: DetectorConfig, hasher: S) -> Self {
        debug_assert!(config.validate().is_ok());
        let k = config.capacity().get() as usize;
        let n = config.sub_windows().get() as usize;
        let target = config.sampling().map(|t| u64::from(t.get()));
        let seed = config.seed();
        let window = |i: u64| Window::new(k, n, config.sub_window(), target, seed.wrapping_add(i));
        Detector {
            config,
            hasher,
            streams: [window(0), window(1), window(2)],
            merge: Merge::new(k, n),
            watch: Vec::with_capacity(k),
            response: config.response(),
        }
    }
}

impl<K: Hash + Eq + Clone> Detector<K> {
    /// A detector with `config`, hashing with the crate's default (per-process seeded) hasher.
    ///
    /// # Errors
    ///
    /// As [`DetectorConfig::validate`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::detect::{Detector, DetectorConfig};
    /// assert!(Detector::<u64>::new(DetectorConfig::new()).is_ok());
    /// assert!(Detector::<u64>::new(DetectorConfig::new().with_shares(0.0, 0.0)).is_err());
    /// ```
    pub fn new(config: DetectorConfig) -> Result<Self, ConfigError> {
        Self::with_hasher(config, DefaultHashBuilder::default())
    }
}

impl<K: Hash + Eq + Clone, S: BuildHasher> Detector<K, S> {
    /// A detector with `config` and a hasher of the host's choice. It starts with the
    /// config's [`response`](DetectorConfig::response).
    ///
    /// # Errors
    ///
    /// As [`DetectorConfig::validate`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::detect::{Detector, DetectorConfig};
    /// let d: Detector<u64, std::hash::RandomState> =
    ///     Detector::with_hasher(DetectorConfig::new(), Default::default()).unwrap();
    /// assert_eq!(d.config().capacity().get(), 64);
    /// ```
    pub fn with_hasher(config: DetectorConfig, hasher: S) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::from_valid(config, hasher))
    }

    /// Sets (or with `None` removes) the automatic response carried by the events of tenants
    /// that become noisy from now on. Tenants already noisy keep what they will restore.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::detect::{Detector, DetectorConfig, Response};
    /// use std::num::NonZeroU32;
    /// let mut d: Detector<u64> = Detector::new(DetectorConfig::new()).unwrap();
    /// d.set_response(Some(Response::DivideWeight { divisor: NonZeroU32::new(4).unwrap() }));
    /// assert!(d.response().is_some());
    /// ```
    pub fn set_response(&mut self, response: Option<Response>) {
        self.response = response;
    }

    /// The automatic response, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// let d: fairshare::detect::Detector<u64> =
    ///     fairshare::detect::Detector::new(Default::default()).unwrap();
    /// assert!(d.response().is_none());
    /// ```
    pub fn response(&self) -> Option<Response> {
        self.response
    }

    /// The settings.
    ///
    /// # Examples
    ///
    /// ```
    /// let d: fairshare::detect::Detector<u64> =
    ///     fairshare::detect::Detector::new(Default::default()).unwrap();
    /// assert_eq!(d.config().sub_windows().get(), 8);
    /// ```
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Records `cost` admitted for `key` at `now` (call it where an admission commits).
    ///
    /// # Performance
    ///
    /// O(1) unless the unit is sampled, then O(log k); never allocates.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::Nanos;
    /// let mut d: fairshare::detect::Detector<&str> =
    ///     fairshare::detect::Detector::new(Default::default()).unwrap();
    /// d.record_admitted(&"acme", 5, Nanos::ZERO);
    /// assert_eq!(d.stats(Nanos::ZERO).admitted, 5);
    /// ```
    #[inline]
    pub fn record_admitted(&mut self, key: &K, cost: u32, now: Nanos) {
        self.streams[0].record(&self.hasher, key, u64::from(cost), now);
    }

    /// Records `cost` served (dispatched, or completed with its actual cost) for `key`.
    ///
    /// # Performance
    ///
    /// As [`record_admitted`](Self::record_admitted).
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::Nanos;
    /// let mut d: fairshare::detect::Detector<&str> =
    ///     fairshare::detect::Detector::new(Default::default()).unwrap();
    /// d.record_served(&"acme", 2, Nanos::ZERO);
    /// assert_eq!(d.stats(Nanos::ZERO).served, 2);
    /// ```
    #[inline]
    pub fn record_served(&mut self, key: &K, cost: u32, now: Nanos) {
        self.streams[1].record(&self.hasher, key, u64::from(cost), now);
    }

    /// Records a refusal of `key`: pass the refused item's cost, or 1 to count refusals.
    ///
    /// # Performance
    ///
    /// As [`record_admitted`](Self::record_admitted).
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::Nanos;
    /// let mut d: fairshare::detect::Detector<&str> =
    ///     fairshare::detect::Detector::new(Default::default()).unwrap();
    /// d.record_refused(&"acme", 1, Nanos::ZERO);
    /// assert_eq!(d.stats(Nanos::ZERO).refused, 1);
    /// ```
    #[inline]
    pub fn record_refused(&mut self, key: &K, cost: u32, now: Nanos) {
        self.streams[2].record(&self.hasher, key, u64::from(cost), now);
    }
}

// ===== impl Detector: queries =====

impl<K: Hash + Eq + Clone, S: BuildHasher> Detector<K, S> {
    fn advance(&mut self, now: Nanos) {
        for w in &mut self.streams {
            w.advance(now);
        }
    }

    /// The share of `w`'s total that the merged row (or, without one, an untracked key) has.
    fn share_of(merge: &Merge, upper: Option<u64>, total: u64) -> f64 {
        if total == 0 {
            return 0.0;
        }
        upper.unwrap_or(merge.floors) as f64 / total as f64
    }

    /// The tenants whose estimated share of `basis`'s window total is at least `threshold`
    /// at `now`, largest first, each with its error bound.
    ///
    /// With exact recording, every tenant whose true share is at least `threshold` is
    /// listed, provided `threshold` is above `1/k`, and none whose true share is below
    /// `threshold - 1/k`. An empty window lists none.
    ///
    /// # Performance
    ///
    /// O(N · k); allocates only the result.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::Nanos;
    /// use fairshare::detect::{Basis, Detector, DetectorConfig};
    /// let mut d: Detector<u32> = Detector::new(DetectorConfig::new().with_sampling(None)).unwrap();
    /// for t in 0..10 { d.record_served(&t, 1, Nanos::ZERO); }
    /// d.record_served(&0, 10, Nanos::ZERO);
    /// let top = d.shares_above(Basis::Served, 0.25, Nanos::ZERO);
    /// assert_eq!(top.len(), 1);
    /// assert_eq!((top[0].key, top[0].cost, top[0].share), (0, 11, 0.55));
    /// ```
    pub fn shares_above(
        &mut self,
        basis: Basis,
        threshold: f64,
        now: Nanos,
    ) -> Vec<ShareEstimate<K>> {
        self.advance(now);
        let window = &self.streams[basis.index()];
        let total = window.total();
        if total == 0 {
            return Vec::new();
        }
        self.merge.run(window);
        let floors = self.merge.floors;
        let mut out: Vec<ShareEstimate<K>> = self
            .merge
            .rows
            .iter()
            .filter_map(|row| {
                let upper = row.upper(floors);
                let share = upper as f64 / total as f64;
                (share >= threshold).then(|| ShareEstimate {
                    key: window.subs[row.sub as usize].slots[row.slot as usize]
                        .key
                        .clone(),
                    share,
                    error: (upper - row.lower.min(upper)) as f64 / total as f64,
                    cost: upper,
                })
            })
            .collect();
        out.sort_by(|a, b| b.share.total_cmp(&a.share));
        out
    }

    /// Judges the tenants at `now` and returns the changes to the noisy set, taking every
    /// tenant's [`Prior`] as weight 1 with no overrides. Use [`poll_with`](Self::poll_with)
    /// when a [`Response`] is set, so that the actions start from the tenant's real settings.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::Nanos;
    /// use fairshare::detect::{Detector, DetectorConfig, NoisyEvent};
    /// let config = DetectorConfig::new().with_exit_after(Nanos::from_secs(1));
    /// let mut d: Detector<u32> = Detector::new(config).unwrap();
    /// d.record_admitted(&0, 100, Nanos::ZERO);
    /// assert!(matches!(d.poll(Nanos::ZERO)[..], [NoisyEvent::Became { key: 0, .. }]));
    /// assert!(d.poll(Nanos::ZERO).is_empty()); // no change, no event
    /// // A thousand others arrive; tenant 0's share falls below the exit share...
    /// for t in 1..=1000 { d.record_admitted(&t, 1, Nanos::from_millis(10)); }
    /// assert!(d.poll(Nanos::from_millis(10)).is_empty()); // ...for less than exit_after
    /// assert!(matches!(d.poll(Nanos::from_millis(1010))[..], [NoisyEvent::Cleared { key: 0, .. }]));
    /// ```
    pub fn poll(&mut self, now: Nanos) -> Vec<NoisyEvent<K>> {
        self.poll_with(now, |_| Prior::new(NonZeroU32::MIN))
    }

    /// As [`poll`](Self::poll), asking `prior` for the settings of each tenant that becomes
    /// noisy (only then, and only with a [`Response`] set): its action starts from them and
    /// its clearing restores them.
    ///
    /// A tenant becomes noisy when its estimated share (which never understates the truth
    /// with exact recording) is at least the enter share at every poll for `enter_after`, and
    /// is cleared when its share is below the exit share at every poll for `exit_after`.
    /// Nothing changes while the window's total is below `min_total`. At most `k` tenants are
    /// watched (candidates and noisy) at once; a newcomer waits for a free place.
    ///
    /// # Performance
    ///
    /// O(N · k); allocates only the result (nothing when nothing changed).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::Nanos;
    /// use fairshare::detect::{Action, Detector, DetectorConfig, Prior, Response};
    /// use std::num::NonZeroU32;
    /// let mut d: Detector<&str> = Detector::new(DetectorConfig::new()).unwrap();
    /// d.set_response(Some(Response::DivideWeight { divisor: NonZeroU32::new(4).unwrap() }));
    /// d.record_admitted(&"acme", 100, Nanos::ZERO);
    /// let ev = d.poll_with(Nanos::ZERO, |_| Prior::new(NonZeroU32::new(8).unwrap()));
    /// assert_eq!(ev[0].action(), Some(Action::SetWeight { weight: NonZeroU32::new(2).unwrap() }));
    /// ```
    pub fn poll_with(
        &mut self,
        now: Nanos,
        mut prior: impl FnMut(&K) -> Prior,
    ) -> Vec<NoisyEvent<K>> {
        self.advance(now);
        let b = self.config.basis().index();
        let total = self.streams[b].total();
        if total < self.config.min_total() {
            return Vec::new();
        }
        let window = &self.streams[b];
        self.merge.run(window);
        let (merge, watch) = (&self.merge, &mut self.watch);
        let enter = self.config.enter_share();
        // Newcomers above the enter share become candidates.
        for row in &merge.rows {
            if watch.len() == watch.capacity() {
                break;
            }
            let share = Self::share_of(merge, Some(row.upper(merge.floors)), total);
            if share < enter {
                continue;
            }
            let key = &window.subs[row.sub as usize].slots[row.slot as usize].key;
            if !watch.iter().any(|w| w.hash == row.hash && w.key == *key) {
                watch.push(Watch {
                    key: key.clone(),
                    hash: row.hash,
                    share,
                    state: State::Candidate { since: now },
                });
            }
        }
        let mut events = Vec::new();
        let mut i = 0;
        while i < self.watch.len() {
            let w = &self.watch[i];
            let upper = self
                .merge
                .find(&self.streams[b], w.hash, &w.key)
                .map(|row| row.upper(self.merge.floors));
            let share = Self::share_of(&self.merge, upper, total);
            let (keep, event) = self.judge(i, share, now, &mut prior);
            if let Some(e) = event {
                events.push(e);
            }
            if keep {
                self.watch[i].share = share;
                i += 1;
            } else {
                self.watch.swap_remove(i);
            }
        }
        self.watch.sort_by(|a, b| b.share.total_cmp(&a.share));
        events
    }

    /// One watched tenant's step through the hysteresis: whether it stays watched, and the
    /// event it produces.
    fn judge(
        &mut self,
        i: usize,
        share: f64,
        now: Nanos,
        prior: &mut impl FnMut(&K) -> Prior,
    ) -> (bool, Option<NoisyEvent<K>>) {
        let c = self.config;
        let response = self.response;
        let w = &mut self.watch[i];
        match &mut w.state {
            State::Candidate { since } => {
                if share < c.enter_share() {
                    return (false, None);
                }
                if now.saturating_since(*since) < c.enter_after() {
                    return (true, None);
                }
                let (action, restore) = match response {
                    Some(r) => {
                        let (a, b) = actions(r, prior(&w.key));
                        (Some(a), Some(b))
                    }
                    None => (None, None),
                };
                w.state = State::Noisy {
                    since: now,
                    below: None,
                    restore,
                };
                let event = NoisyEvent::Became {
                    key: w.key.clone(),
                    share,
                    at: now,
                    action,
                };
                (true, Some(event))
            }
            State::Noisy { below, restore, .. } => {
                if share >= c.exit_share() {
                    *below = None;
                    return (true, None);
                }
                let start = *below.get_or_insert(now);
                if now.saturating_since(start) < c.exit_after() {
                    return (true, None);
                }
                let event = NoisyEvent::Cleared {
                    key: w.key.clone(),
                    share,
                    at: now,
                    action: *restore,
                };
                (false, Some(event))
            }
        }
    }

    /// Whether `key` is in the noisy set (as of the last poll).
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::Nanos;
    /// let mut d: fairshare::detect::Detector<&str> =
    ///     fairshare::detect::Detector::new(Default::default()).unwrap();
    /// d.record_admitted(&"acme", 1, Nanos::ZERO);
    /// assert!(!d.is_noisy(&"acme"));
    /// d.poll(Nanos::ZERO);
    /// assert!(d.is_noisy(&"acme"));
    /// ```
    pub fn is_noisy(&self, key: &K) -> bool {
        self.watch
            .iter()
            .any(|w| matches!(w.state, State::Noisy { .. }) && w.key == *key)
    }

    /// A snapshot: the noisy set as of the last poll, and the window's totals at `now`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::Nanos;
    /// let d: fairshare::detect::Detector<&str> =
    ///     fairshare::detect::Detector::new(Default::default()).unwrap();
    /// let s = d.stats(Nanos::ZERO);
    /// assert_eq!((s.capacity, s.tracked, s.admitted), (64, 0, 0));
    /// ```
    pub fn stats(&self, now: Nanos) -> DetectorStats<K> {
        let noisy = self
            .watch
            .iter()
            .filter_map(|w| match w.state {
                State::Noisy { since, .. } => Some(NoisyTenant {
                    key: w.key.clone(),
                    share: w.share,
                    since,
                }),
                State::Candidate { .. } => None,
            })
            .collect();
        let candidates = self
            .watch
            .iter()
            .filter(|w| matches!(w.state, State::Candidate { .. }))
            .count();
        let [a, s, r] = &self.streams;
        DetectorStats {
            noisy,
            candidates,
            tracked: self.streams.iter().map(|w| w.tracked_at(now)).sum(),
            capacity: self.config.capacity().get() as usize,
            admitted: a.total_at(now),
            served: s.total_at(now),
            refused: r.total_at(now),
            window: self.config.window(),
            strides: [a.stride(), s.stride(), r.stride()],
        }
    }

    /// Bytes the detector holds on the heap, fixed at construction: `O(k · N)`, whatever
    /// the number of tenants recorded (keys that own heap memory, such as `String`, add
    /// theirs, for at most `3 · N · k + k` keys).
    ///
    /// # Examples
    ///
    /// ```
    /// # use fairshare::Nanos;
    /// let mut d: fairshare::detect::Detector<u64> =
    ///     fairshare::detect::Detector::new(Default::default()).unwrap();
    /// let before = d.heap_bytes();
    /// for t in 0..100_000 { d.record_admitted(&t, 1, Nanos::ZERO); }
    /// assert_eq!(d.heap_bytes(), before);
    /// ```
    pub fn heap_bytes(&self) -> usize {
        self.streams.iter().map(Window::heap_bytes).sum::<usize>()
            + self.merge.heap_bytes()
            + self.watch.capacity() * std::mem::size_of::<Watch<K>>()
    }
}

/// The action a response applies to a tenant with `prior` settings, and the one that
/// restores them.
fn actions(response: Response, prior: Prior) -> (Action, Action) {
    match response {
        Response::DivideWeight { divisor } => {
            let lowered =
                NonZeroU32::new(prior.weight().get() / divisor.get()).unwrap_or(NonZeroU32::MIN);
            let restore = if prior.weight_override() {
                Action::SetWeight {
                    weight: prior.weight(),
                }
            } else {
                Action::ClearWeight
            };
            (Action::SetWeight { weight: lowered }, restore)
        }
        Response::ClampLimits { limits } => {
            let restore = match prior.limits_override() {
                Some(limits) => Action::SetLimits { limits },
                None => Action::ClearLimits,
            };
            (Action::SetLimits { limits }, restore)
        }
    }
}
