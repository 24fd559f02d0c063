//! [`FairLayer`] and its [`Builder`]: one scheduler shared by every service the layer wraps.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use crate::core_glue::{
    ClassId, Classes, Clock, ConfigError, Core, PressureLevel, Scheduler, SchedulerConfig, Stats,
    StdClock,
};
use crate::error::{FairError, Refusal};
use crate::extract::{Admission, KeyExtractor};
use crate::service::FairService;
use crate::slot::Waiter;

/// Applies fair admission to a service: see the crate docs. Clones share one scheduler.
///
/// # Examples
///
/// ```
/// use fairshare::SchedulerConfig;
/// use fairshare_tower::FairLayer;
///
/// let layer = FairLayer::new(
///     SchedulerConfig::new().with_max_in_flight(Some(8)),
///     |req: &http::Request<()>| (req.uri().host().unwrap_or("").to_owned(), fairshare::ClassId::DEFAULT),
/// );
/// assert_eq!(layer.in_flight(), 0);
/// ```
pub struct FairLayer<K, X, C = StdClock>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    shared: Arc<Shared<K, X, C>>,
}

pub(crate) struct Shared<K, X, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    pub(crate) core: Core<K, C>,
    pub(crate) extractor: X,
    /// The pressure level from which each class (by index) is refused; `None`: never.
    shed_at: Vec<Option<PressureLevel>>,
    uses_pressure: bool,
    retry_after: Duration,
    #[cfg(feature = "metrics")]
    heavy: Option<crate::core_glue::Heavy<K>>,
}

/// Settings of a [`FairLayer`] beyond the scheduler's own.
///
/// # Examples
///
/// ```
/// use fairshare::{ClassSpec, Classes, SchedulerConfig};
/// use fairshare::pressure::PressureLevel;
/// use fairshare_tower::FairLayer;
/// use std::time::Duration;
///
/// let classes = Classes::new([
///     ClassSpec::new("api"),
///     ClassSpec::new("signin").with_reserved_percent(25),
///     ClassSpec::new("bulk"),
/// ]).unwrap();
/// let (signin, bulk) = (classes.id("signin").unwrap(), classes.id("bulk").unwrap());
/// let layer = FairLayer::builder(SchedulerConfig::new().with_max_in_flight(Some(8)))
///     .classes(classes)
///     .shed_at(bulk, Some(PressureLevel::Elevated)) // bulk goes first
///     .shed_at(signin, None)                        // sign-in is never shed by pressure
///     .retry_after(Duration::from_secs(2))
///     .build(|req: &http::Request<()>| (req.uri().path().to_owned(), fairshare::ClassId::DEFAULT))
///     .unwrap();
/// assert_eq!(layer.queued(), 0);
/// ```
pub struct Builder<K> {
    config: SchedulerConfig,
    classes: Option<Classes>,
    shed_at: Vec<(ClassId, Option<PressureLevel>)>,
    retry_after: Duration,
    #[cfg(feature = "metrics")]
    heavy: Option<(usize, crate::core_glue::Labeler<K>)>,
    _key: std::marker::PhantomData<fn(K)>,
}

impl<K> fmt::Debug for Builder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("classes", &self.classes)
            .field("shed_at", &self.shed_at)
            .field("retry_after", &self.retry_after)
            .finish_non_exhaustive()
    }
}

impl<K> Builder<K>
where
    K: Hash + Eq + Clone,
{
    /// Sets the classes (default: one class). A class's reserved share is held for it
    /// whenever it has requests waiting; see [`fairshare::ClassSpec`].
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ClassSpec, Classes, SchedulerConfig};
    /// let b = fairshare_tower::FairLayer::<String, ()>::builder(SchedulerConfig::new())
    ///     .classes(Classes::new([ClassSpec::new("api")]).unwrap());
    /// # let _ = b;
    /// ```
    #[must_use]
    pub fn classes(mut self, classes: Classes) -> Self {
        self.classes = Some(classes);
        self
    }

    /// Refuses new requests of `class` (503 with `Retry-After`) while the scheduler's
    /// pressure is at or above `level`; `None` never refuses the class for pressure. The
    /// default for every class is [`PressureLevel::Critical`]. Pressure needs a
    /// [`PressureConfig`](fairshare::pressure::PressureConfig) in the scheduler's configuration;
    /// without one the level stays normal.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{ClassId, SchedulerConfig};
    /// use fairshare::pressure::PressureLevel;
    /// let b = fairshare_tower::FairLayer::<String, ()>::builder(SchedulerConfig::new())
    ///     .shed_at(ClassId::DEFAULT, Some(PressureLevel::Shedding));
    /// # let _ = b;
    /// ```
    #[must_use]
    pub fn shed_at(mut self, class: ClassId, level: Option<PressureLevel>) -> Self {
        self.shed_at.push((class, level));
        self
    }

    /// The `Retry-After` sent with refusals whose limit cannot say when a retry will pass
    /// (capacity, eviction, queue delay, pressure). Default 1 s. Rate limits send their own.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = fairshare_tower::FairLayer::<String, ()>::builder(fairshare::SchedulerConfig::new())
    ///     .retry_after(Duration::from_secs(5));
    /// # let _ = b;
    /// ```
    #[must_use]
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Tracks the `k` heaviest tenants by offered cost (every request the layer sees,
    /// admitted or refused) and publishes them as
    /// `fairshare_heavy_tenant_cost{tenant = label(key)}` on
    /// [`FairLayer::publish_heavy_tenants`] (feature `metrics`). Only those tenants get a
    /// series; see [`fairshare::metrics::HeavyTenants`].
    ///
    /// # Examples
    ///
    /// ```
    /// let b = fairshare_tower::FairLayer::<String, ()>::builder(fairshare::SchedulerConfig::new())
    ///     .heavy_tenants(10, |k: &String| k.clone());
    /// # let _ = b;
    /// ```
    #[cfg(feature = "metrics")]
    #[must_use]
    pub fn heavy_tenants(
        mut self,
        k: usize,
        label: impl Fn(&K) -> String + Send + Sync + 'static,
    ) -> Self {
        self.heavy = Some((k, Box::new(label)));
        self
    }

    /// The layer, on the real clock.
    ///
    /// # Errors
    ///
    /// The classes do not fit the configuration (see
    /// [`Scheduler::set_classes`](fairshare::Scheduler::set_classes)).
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = fairshare_tower::FairLayer::builder(fairshare::SchedulerConfig::new())
    ///     .build(|_: &http::Request<()>| ("t".to_owned(), fairshare::ClassId::DEFAULT))
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn build<Req, X>(self, extractor: X) -> Result<FairLayer<K, X>, ConfigError>
    where
        X: KeyExtractor<Req, Key = K>,
    {
        self.build_with_clock(StdClock::new(), extractor)
    }

    /// The layer on `clock` (a [`ManualClock`](fairshare::ManualClock) in tests: rate limits
    /// and `Retry-After` then follow it).
    ///
    /// # Errors
    ///
    /// As for [`build`](Self::build).
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = fairshare_tower::FairLayer::builder(fairshare::SchedulerConfig::new())
    ///     .build_with_clock(fairshare::ManualClock::new(), |_: &http::Request<()>| {
    ///         ("t".to_owned(), fairshare::ClassId::DEFAULT)
    ///     })
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn build_with_clock<Req, X, C>(
        self,
        clock: C,
        extractor: X,
    ) -> Result<FairLayer<K, X, C>, ConfigError>
    where
        X: KeyExtractor<Req, Key = K>,
        C: Clock,
    {
        let core = Core::new(self.config, self.classes, clock)?;
        let classes = core.class_count();
        let mut shed_at = vec![Some(PressureLevel::Critical); classes];
        for (class, level) in self.shed_at {
            if let Some(slot) = shed_at.get_mut(class.index()) {
                *slot = level;
            }
        }
        let uses_pressure = core.has_pressure() && shed_at.iter().any(Option::is_some);
        Ok(FairLayer {
            shared: Arc::new(Shared {
                core,
                extractor,
                shed_at,
                uses_pressure,
                retry_after: self.retry_after,
                #[cfg(feature = "metrics")]
                heavy: self
                    .heavy
                    .map(|(k, label)| crate::core_glue::Heavy::new(k, label)),
            }),
        })
    }
}

// ===== impl FairLayer =====

impl<K, X> FairLayer<K, X>
where
    K: Hash + Eq + Clone,
{
    /// A layer with one class and the default settings, on the real clock.
    ///
    /// # Examples
    ///
    /// ```
    /// let layer = fairshare_tower::FairLayer::new(
    ///     fairshare::SchedulerConfig::new().with_max_in_flight(Some(4)),
    ///     |_: &http::Request<()>| ("t".to_owned(), fairshare::ClassId::DEFAULT),
    /// );
    /// assert_eq!(layer.queued(), 0);
    /// ```
    pub fn new<Req>(config: SchedulerConfig, extractor: X) -> Self
    where
        X: KeyExtractor<Req, Key = K>,
    {
        match FairLayer::builder(config).build(extractor) {
            Ok(layer) => layer,
            // One class always fits any configuration.
            Err(e) => unreachable!("fairshare-tower: one class refused: {e}"),
        }
    }
}

impl<K> FairLayer<K, ()>
where
    K: Hash + Eq + Clone,
{
    /// A builder for classes, shedding and `Retry-After` settings.
    ///
    /// # Examples
    ///
    /// ```
    /// let b = fairshare_tower::FairLayer::<u64, ()>::builder(fairshare::SchedulerConfig::new());
    /// # let _ = b;
    /// ```
    pub fn builder(config: SchedulerConfig) -> Builder<K> {
        Builder {
            config,
            classes: None,
            shed_at: Vec::new(),
            retry_after: Duration::from_secs(1),
            #[cfg(feature = "metrics")]
            heavy: None,
            _key: std::marker::PhantomData,
        }
    }
}

impl<K, X, C> FairLayer<K, X, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    /// Requests dispatched and not finished (their response bodies still streaming).
    ///
    /// # Examples
    ///
    /// ```
    /// # let layer = fairshare_tower::FairLayer::new(fairshare::SchedulerConfig::new(),
    /// #     |_: &http::Request<()>| ("t".to_owned(), fairshare::ClassId::DEFAULT));
    /// assert_eq!(layer.in_flight(), 0);
    /// ```
    pub fn in_flight(&self) -> u64 {
        self.shared.core.in_flight()
    }

    /// Requests waiting for a slot.
    ///
    /// # Examples
    ///
    /// ```
    /// # let layer = fairshare_tower::FairLayer::new(fairshare::SchedulerConfig::new(),
    /// #     |_: &http::Request<()>| ("t".to_owned(), fairshare::ClassId::DEFAULT));
    /// assert_eq!(layer.queued(), 0);
    /// ```
    pub fn queued(&self) -> usize {
        self.shared.core.queued()
    }

    /// The scheduler's pressure level.
    ///
    /// # Examples
    ///
    /// ```
    /// # let layer = fairshare_tower::FairLayer::new(fairshare::SchedulerConfig::new(),
    /// #     |_: &http::Request<()>| ("t".to_owned(), fairshare::ClassId::DEFAULT));
    /// assert_eq!(layer.pressure(), fairshare::pressure::PressureLevel::Normal);
    /// ```
    pub fn pressure(&self) -> PressureLevel {
        self.shared.core.pressure()
    }

    /// A stats snapshot of the scheduler (per tenant and class: queued, in flight, admitted,
    /// refused by reason, waits).
    ///
    /// # Examples
    ///
    /// ```
    /// # let layer = fairshare_tower::FairLayer::new(fairshare::SchedulerConfig::new(),
    /// #     |_: &http::Request<()>| ("t".to_owned(), fairshare::ClassId::DEFAULT));
    /// assert_eq!(layer.stats().admission.admitted, 0);
    /// ```
    pub fn stats(&self) -> Stats<K> {
        self.shared.core.stats()
    }

    /// Runs `f` on the scheduler (block a tenant, change its weight or limits, read counters),
    /// then lets through whatever the change allows. The queued items are the layer's own
    /// hand-off tokens: a request whose token `f` removes (`purge`, `retain`) is answered as
    /// refused (closed), never left waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::BlockReason;
    /// # let layer = fairshare_tower::FairLayer::new(fairshare::SchedulerConfig::new(),
    /// #     |_: &http::Request<()>| ("t".to_owned(), fairshare::ClassId::DEFAULT));
    /// layer.with_scheduler(|s| s.block("flood".to_owned(), BlockReason::Abuse));
    /// ```
    pub fn with_scheduler<R>(
        &self,
        f: impl FnOnce(&mut Scheduler<K, crate::Token<K, C>, C>) -> R,
    ) -> R {
        self.shared.core.with_scheduler(f)
    }

    /// Publishes the heaviest tenants' gauges (feature `metrics`; a no-op unless
    /// [`Builder::heavy_tenants`] was set). Call it when metrics are scraped.
    ///
    /// # Examples
    ///
    /// ```
    /// # let layer = fairshare_tower::FairLayer::new(fairshare::SchedulerConfig::new(),
    /// #     |_: &http::Request<()>| ("t".to_owned(), fairshare::ClassId::DEFAULT));
    /// layer.publish_heavy_tenants();
    /// ```
    #[cfg(feature = "metrics")]
    pub fn publish_heavy_tenants(&self) {
        if let Some(heavy) = &self.shared.heavy {
            heavy.publish();
        }
    }
}

impl<K, X, C> Shared<K, X, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    /// Admits a request: its class's pressure threshold, then the scheduler's checks.
    pub(crate) fn admit<E>(&self, admission: Admission<K>) -> Result<Waiter<K, C>, FairError<E>> {
        let (key, class, cost) = admission.into_parts();
        #[cfg(feature = "metrics")]
        if let Some(heavy) = &self.heavy {
            // Offered load, admitted or not: a flood refused at the door is still the
            // tenant an operator needs to see.
            heavy.observe(&key, cost);
        }
        if self.uses_pressure {
            if let Some(threshold) = self.shed_at.get(class.index()).copied().flatten() {
                let level = self.core.pressure();
                if level >= threshold {
                    #[cfg(feature = "metrics")]
                    crate::core_glue::count_pressure_refusal(&self.core, class);
                    return Err(FairError::Refused {
                        reason: Refusal::Pressure { level, class },
                        retry_after: Some(self.retry_after),
                    });
                }
            }
        }
        match self.core.admit(key, class, cost) {
            Ok(slot) => Ok(Waiter::new(slot)),
            Err(refused) => Err(self.refusal(Refusal::Admission(refused.reason), refused.retry_in)),
        }
    }

    /// The `Retry-After` of refusals whose limit does not know when a retry passes.
    pub(crate) fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// A refusal with its `Retry-After`: the limit's own where it knows, the configured one
    /// for other retryable refusals, none for a refusal no retry can lift.
    pub(crate) fn refusal<E>(&self, reason: Refusal, retry_in: Option<Duration>) -> FairError<E> {
        let retry_after = reason
            .is_retryable()
            .then(|| retry_in.unwrap_or(self.retry_after));
        FairError::Refused {
            reason,
            retry_after,
        }
    }
}

impl<K, X, C> Clone for FairLayer<K, X, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    fn clone(&self) -> Self {
        FairLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K, X, C> fmt::Debug for FairLayer<K, X, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FairLayer")
            .field("shed_at", &self.shared.shed_at)
            .field("retry_after", &self.shared.retry_after)
            .finish_non_exhaustive()
    }
}

impl<S, K, X, C> Layer<S> for FairLayer<K, X, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    type Service = FairService<S, K, X, C>;

    fn layer(&self, inner: S) -> Self::Service {
        FairService::new(inner, Arc::clone(&self.shared))
    }
}
