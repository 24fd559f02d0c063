//! [`FairBody`]: the response body, holding the request's in-flight slot until its end.

use std::fmt;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::core_glue::{Clock, InFlight, Outcome, StdClock};

pin_project! {
    /// The body of a response that passed through [`FairService`](crate::FairService). The
    /// request's in-flight slot stays held until the body yields its last frame (then it is
    /// completed), fails (completed as failed) or is dropped unfinished (a client that went
    /// away: completed as dropped). Either way the slot is freed exactly once and handed to
    /// the next queued request.
    ///
    /// # Examples
    ///
    /// ```
    /// use tower::{Layer, ServiceExt};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let layer = fairshare_tower::FairLayer::new(
    ///     fairshare::SchedulerConfig::new().with_max_in_flight(Some(1)),
    ///     |_: &http::Request<()>| ("t".to_owned(), fairshare::ClassId::DEFAULT),
    /// );
    /// let svc = layer.layer(tower::service_fn(|_| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new("body".to_owned()))
    /// }));
    /// let resp = svc.oneshot(http::Request::new(())).await.unwrap();
    /// use http_body_util::BodyExt;
    /// assert_eq!(layer.in_flight(), 1); // the body holds the slot...
    /// let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    /// assert_eq!(bytes, "body");
    /// assert_eq!(layer.in_flight(), 0); // ...until its last frame
    /// # }
    /// ```
    pub struct FairBody<B, K, C = StdClock>
    where
        K: Hash,
        K: Eq,
        K: Clone,
        C: Clock,
    {
        #[pin]
        inner: B,
        flight: Option<InFlight<K, C>>,
    }
}

impl<B, K, C> FairBody<B, K, C>
where
    K: Hash + Eq + Clone,
    C: Clock,
{
    pub(crate) fn new(inner: B, flight: Option<InFlight<K, C>>) -> Self {
        FairBody { inner, flight }
    }

    /// Whether the body still holds its in-flight slot.
    ///
    /// # Examples
    ///
    /// ```
    /// use tower::{Layer, ServiceExt};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let layer = fairshare_tower::FairLayer::new(
    ///     fairshare::SchedulerConfig::new().with_max_in_flight(Some(1)),
    ///     |_: &http::Request<()>| ("t".to_owned(), fairshare::ClassId::DEFAULT),
    /// );
    /// let svc = layer.layer(tower::service_fn(|_| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new("body".to_owned()))
    /// }));
    /// let resp = svc.oneshot(http::Request::new(())).await.unwrap();
    /// assert!(resp.body().holds_slot()); // not read to its end yet
    /// drop(resp);
    /// assert_eq!(layer.in_flight(), 0);
    /// # }
    /// ```
    pub fn holds_slot(&self) -> bool {
        self.flight.is_some()
    }

    /// The wrapped body.
    ///
    /// # Examples
    ///
    /// ```
    /// use tower::{Layer, ServiceExt};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let layer = fairshare_tower::FairLayer::new(
    ///     fairshare::SchedulerConfig::new().with_max_in_flight(Some(1)),
    ///     |_: &http::Request<()>| ("t".to_owned(), fairshare::ClassId::DEFAULT),
    /// );
    /// let svc = layer.layer(tower::service_fn(|_| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new("body".to_owned()))
    /// }));
    /// let resp = svc.oneshot(http::Request::new(())).await.unwrap();
    /// assert_eq!(resp.body().get_ref(), "body");
    /// # }
    /// ```
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B, K, C> Body for FairBody<B, K, C>
where
    B: Body,
    K: Hash + Eq + Clone,
    C: Clock,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let out = std::task::ready!(this.inner.as_mut().poll_frame(cx));
        let done = match &out {
            None => Some(Outcome::Success),
            Some(Err(_)) => Some(Outcome::Failure),
            Some(Ok(_)) => None,
        };
        // The last frame can also be known from the hint: free the slot with it, not a poll
        // later (a client may never poll past the last data frame).
        let done = done.or_else(|| this.inner.is_end_stream().then_some(Outcome::Success));
        if let Some(outcome) = done {
            if let Some(mut flight) = this.flight.take() {
                flight.release(outcome);
            }
        }
        Poll::Ready(out)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B, K, C> fmt::Debug for FairBody<B, K, C>
where
    B: fmt::Debug,
    K: Hash + Eq + Clone,
    C: Clock,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FairBody")
            .field("inner", &self.inner)
            .field("holds_slot", &self.flight.is_some())
            .finish()
    }
}
