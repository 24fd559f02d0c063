//! [`FairService`] and its [`ResponseFuture`].

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::body::FairBody;
use crate::core_glue::{Clock, InFlight, Outcome, RejectReason, StdClock};
use crate::error::{FairError, Refusal};
use crate::extract::KeyExtractor;
use crate::layer::Shared;
use crate::slot::Waiter;

/// The service [`FairLayer`](crate::FairLayer) wraps around an inner service.
///
/// `poll_ready` only forwards to the inner service (routers are always ready, so waiting
/// there would hold nothing back). [`call`](Service::call) admits the request through the
/// scheduler; the returned future then waits, in fair order, for an in-flight slot, calls
/// the inner service and wraps the response body, which holds the slot until it ends. A
/// request refused at the door never reaches the inner service.
///
/// # Fairness
///
/// Requests are served in the scheduler's order: tenants by weighted deficit round robin
/// inside each class, classes by reserved share, priority and weight. A quiet tenant's
/// request waits for at most one turn of each other backlogged tenant of its class (plus
/// the slots already busy), whatever the size of a flooding tenant's backlog; see
/// [`fairshare::FairQueue`] for the exact bound.
///
/// # Cancellation
///
/// Dropping the response future while it waits gives its place up (a slot the scheduler
/// hands it later is freed on the spot); dropping it while the inner future runs, or
/// dropping the body unfinished, frees its slot. No slot is ever held for a request that is
/// gone.
///
/// # Examples
///
/// ```
/// use fairshare::{ClassId, SchedulerConfig};
/// use fairshare_tower::FairLayer;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let layer = FairLayer::new(SchedulerConfig::new().with_max_in_flight(Some(2)), |req: &http::Request<String>| {
///     (req.headers()["x-tenant"].to_str().unwrap().to_owned(), ClassId::DEFAULT)
/// });
/// let mut svc = ServiceBuilder::new().layer(layer.clone()).service_fn(|req: http::Request<String>| async move {
///     Ok::<_, std::convert::Infallible>(http::Response::new(req.into_body()))
/// });
/// let req = http::Request::builder().header("x-tenant", "acme").body("hi".to_owned()).unwrap();
/// let resp = svc.ready().await.unwrap().call(req).await.unwrap();
/// assert_eq!(layer.in_flight(), 1); // the body holds the slot...
/// drop(resp);
/// assert_eq!(layer.in_flight(), 0); // ...until it is done or dropped
/// # }
/// ```
pub struct FairService<S, K, X, C = StdClock>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    inner: S,
    shared: Arc<Shared<K, X, C>>,
}

impl<S, K, X, C> FairService<S, K, X, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    pub(crate) fn new(inner: S, shared: Arc<Shared<K, X, C>>) -> Self {
        FairService { inner, shared }
    }

    /// The inner service.
    ///
    /// # Examples
    ///
    /// ```
    /// # let layer = fairshare_tower::FairLayer::new(fairshare::SchedulerConfig::new(),
    /// #     |_: &http::Request<()>| ("t".to_owned(), fairshare::ClassId::DEFAULT));
    /// let svc = tower_layer::Layer::layer(&layer, 5u8);
    /// assert_eq!(*svc.get_ref(), 5);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    ///
    /// # Examples
    ///
    /// ```
    /// # let layer = fairshare_tower::FairLayer::new(fairshare::SchedulerConfig::new(),
    /// #     |_: &http::Request<()>| ("t".to_owned(), fairshare::ClassId::DEFAULT));
    /// let mut svc = tower_layer::Layer::layer(&layer, 5u8);
    /// *svc.get_mut() = 6;
    /// assert_eq!(svc.into_inner(), 6);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    ///
    /// # Examples
    ///
    /// ```
    /// # let layer = fairshare_tower::FairLayer::new(fairshare::SchedulerConfig::new(),
    /// #     |_: &http::Request<()>| ("t".to_owned(), fairshare::ClassId::DEFAULT));
    /// assert_eq!(tower_layer::Layer::layer(&layer, 5u8).into_inner(), 5);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, K, X, C> Clone for FairService<S, K, X, C>
where
    S: Clone,
    K: Hash + Eq + Clone,
    C: Clock,
{
    fn clone(&self) -> Self {
        FairService {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, K, X, C> fmt::Debug for FairService<S, K, X, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FairService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, K, X, C, Req, B> Service<Req> for FairService<S, K, X, C>
where
    S: Service<Req, Response = http::Response<B>> + Clone,
    X: KeyExtractor<Req, Key = K>,
    B: Body,
    K: Hash + Eq + Clone,
    C: Clock,
{
    type Response = http::Response<FairBody<B, K, C>>;
    type Error = FairError<S::Error>;
    type Future = ResponseFuture<S, Req, K, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(FairError::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let admission = self.shared.extractor.extract(&req);
        let mut waiter = match self.shared.admit(admission) {
            Ok(waiter) => waiter,
            Err(refused) => return ResponseFuture::refused(refused),
        };
        match waiter.try_take() {
            // A free slot: run now, on the service `poll_ready` readied.
            Some(Ok(flight)) => ResponseFuture::running(self.inner.call(req), flight),
            Some(Err(reason)) => {
                ResponseFuture::refused(self.shared.refusal(Refusal::Admission(reason), None))
            }
            None => {
                // Wait for a slot inside the future: it takes the readied service along and
                // leaves a clone here, to be readied before the next call (tower's idiom for
                // services that call their inner service later).
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::waiting(waiter, ready, req, self.shared.retry_after())
            }
        }
    }
}

pin_project! {
    /// The future of [`FairService::call`]: waits for a slot, then runs the inner service.
    ///
    /// # Examples
    ///
    /// ```
    /// use tower::{Layer, Service};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let layer = fairshare_tower::FairLayer::new(
    ///     fairshare::SchedulerConfig::new(),
    ///     |_: &http::Request<()>| ("t".to_owned(), fairshare::ClassId::DEFAULT),
    /// );
    /// let mut svc = layer.layer(tower::service_fn(|_| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// }));
    /// let fut: fairshare_tower::ResponseFuture<_, _, String> = svc.call(http::Request::new(()));
    /// assert_eq!(fut.await.unwrap().status(), 200);
    /// # }
    /// ```
    pub struct ResponseFuture<S, Req, K, C = StdClock>
    where
        S: Service<Req>,
        K: Hash,
        K: Eq,
        K: Clone,
        C: Clock,
    {
        #[pin]
        state: State<S, Req, K, C>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, K, C>
    where
        S: Service<Req>,
        K: Hash,
        K: Eq,
        K: Clone,
        C: Clock,
    {
        Refused { error: Option<FairError<S::Error>> },
        Waiting { waiter: Waiter<K, C>, service: Option<S>, req: Option<Req>, retry_after: Duration },
        Running { #[pin] fut: S::Future, flight: Option<InFlight<K, C>> },
    }
}

impl<S, Req, K, C> ResponseFuture<S, Req, K, C>
where
    S: Service<Req>,
    K: Hash + Eq + Clone,
    C: Clock,
{
    fn refused(error: FairError<S::Error>) -> Self {
        ResponseFuture {
            state: State::Refused { error: Some(error) },
        }
    }

    fn waiting(waiter: Waiter<K, C>, service: S, req: Req, retry_after: Duration) -> Self {
        ResponseFuture {
            state: State::Waiting {
                waiter,
                service: Some(service),
                req: Some(req),
                retry_after,
            },
        }
    }

    fn running(fut: S::Future, flight: InFlight<K, C>) -> Self {
        ResponseFuture {
            state: State::Running {
                fut,
                flight: Some(flight),
            },
        }
    }
}

impl<S, Req, K, C, B> Future for ResponseFuture<S, Req, K, C>
where
    S: Service<Req, Response = http::Response<B>>,
    B: Body,
    K: Hash + Eq + Clone,
    C: Clock,
{
    type Output = Result<http::Response<FairBody<B, K, C>>, FairError<S::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Refused { error } => {
                    let error = error.take().unwrap_or_else(closed);
                    return Poll::Ready(Err(error));
                }
                StateProj::Waiting {
                    waiter,
                    service,
                    req,
                    retry_after,
                } => {
                    let taken = std::task::ready!(waiter.poll_take(cx));
                    let (Some(mut service), Some(req)) = (service.take(), req.take()) else {
                        // Polled again after completing: a caller bug; answer, don't panic.
                        return Poll::Ready(Err(closed()));
                    };
                    match taken {
                        Ok(flight) => {
                            let fut = service.call(req);
                            state.set(State::Running {
                                fut,
                                flight: Some(flight),
                            });
                        }
                        Err(reason) => {
                            let reason = Refusal::Admission(reason);
                            let error = FairError::Refused {
                                retry_after: reason.is_retryable().then_some(*retry_after),
                                reason,
                            };
                            state.set(State::Refused { error: Some(error) });
                        }
                    }
                }
                StateProj::Running { fut, flight } => {
                    let out = std::task::ready!(fut.poll(cx));
                    let mut flight = flight.take();
                    return Poll::Ready(match out {
                        Ok(resp) => {
                            let (parts, body) = resp.into_parts();
                            if body.is_end_stream() {
                                if let Some(f) = flight.as_mut() {
                                    f.release(Outcome::Success);
                                }
                                flight = None;
                            }
                            Ok(http::Response::from_parts(
                                parts,
                                FairBody::new(body, flight),
                            ))
                        }
                        Err(e) => {
                            if let Some(f) = flight.as_mut() {
                                f.release(Outcome::Failure);
                            }
                            Err(FairError::Inner(e))
                        }
                    });
                }
            }
        }
    }
}

fn closed<E>() -> FairError<E> {
    FairError::Refused {
        reason: Refusal::Admission(RejectReason::Closed),
        retry_after: None,
    }
}

impl<S, Req, K, C> fmt::Debug for ResponseFuture<S, Req, K, C>
where
    S: Service<Req>,
    K: Hash + Eq + Clone,
    C: Clock,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Refused { .. } => "refused",
            State::Waiting { .. } => "waiting",
            State::Running { .. } => "running",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
