//! The layer's error: [`FairError`] and [`Refusal`], and how they map to HTTP.

use std::fmt;
use std::time::Duration;

use http::StatusCode;

use crate::core_glue::{ClassId, PressureLevel, RejectReason};

/// Why the layer refused a request.
///
/// # Examples
///
/// ```
/// use fairshare::{Nanos, RejectReason};
/// use fairshare_tower::Refusal;
/// let r = Refusal::Admission(RejectReason::RateLimited { retry_at: Nanos::from_secs(1) });
/// assert_eq!(r.status(), http::StatusCode::TOO_MANY_REQUESTS);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The scheduler refused it at the door (a rate limit, a cap, the capacity, a block), or
    /// handed it back while it waited (evicted for a tenant further below its share, shed by
    /// the queue-delay target).
    Admission(RejectReason),
    /// Its class sheds at this pressure level.
    Pressure {
        /// The scheduler's pressure level when the request came.
        level: PressureLevel,
        /// The request's class.
        class: ClassId,
    },
}

impl Refusal {
    /// The HTTP status that answers this refusal: 429 for the tenant's own limits (its rate
    /// quota, its queue caps), 403 for a blocked tenant, 413 for a request no limit can ever
    /// admit, 500 for a host error (zero cost, an unknown class), and 503 for everything the
    /// service's load decided (capacity, eviction, queue delay, pressure, closed).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::ClassId;
    /// use fairshare::pressure::PressureLevel;
    /// use fairshare_tower::Refusal;
    /// let r = Refusal::Pressure { level: PressureLevel::Critical, class: ClassId::DEFAULT };
    /// assert_eq!(r.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Pressure { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Admission(reason) => match reason {
                RejectReason::RateLimited { .. }
                | RejectReason::ClassRateLimited { .. }
                | RejectReason::TenantFull { .. } => StatusCode::TOO_MANY_REQUESTS,
                RejectReason::Blocked { .. } => StatusCode::FORBIDDEN,
                RejectReason::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                RejectReason::ZeroCost
                | RejectReason::UnknownClass { .. }
                | RejectReason::StaleHandle => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            },
        }
    }

    /// Whether the same request can succeed later (so a `Retry-After` is worth sending).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{BlockReason, RejectReason};
    /// use fairshare_tower::Refusal;
    /// assert!(!Refusal::Admission(RejectReason::Blocked { reason: BlockReason::Abuse }).is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        match self {
            Refusal::Pressure { .. } => true,
            Refusal::Admission(reason) => reason.is_retryable(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Admission(reason) => reason.fmt(f),
            Refusal::Pressure { level, class } => {
                write!(f, "{class} is shed at {level} pressure")
            }
        }
    }
}

/// The error of [`FairService`](crate::FairService): the inner service's own error, or a
/// refusal that the host answers (see [`status`](Self::status) and
/// [`retry_after`](Self::retry_after); with the `axum` feature, `IntoResponse` does it).
///
/// # Examples
///
/// ```
/// use fairshare::{Nanos, RejectReason};
/// use fairshare_tower::{FairError, Refusal};
/// use std::time::Duration;
/// let e: FairError<std::io::Error> = FairError::Refused {
///     reason: Refusal::Admission(RejectReason::RateLimited { retry_at: Nanos::from_secs(3) }),
///     retry_after: Some(Duration::from_millis(2_100)),
/// };
/// match &e {
///     FairError::Refused { reason, .. } => assert_eq!(reason.status().as_u16(), 429),
///     FairError::Inner(_) | _ => unreachable!(),
/// }
/// assert_eq!(e.retry_after_secs(), Some(3)); // rounded up
/// ```
#[non_exhaustive]
pub enum FairError<E> {
    /// The inner service failed.
    Inner(E),
    /// The layer refused the request; it never reached the inner service.
    Refused {
        /// Why.
        reason: Refusal,
        /// When a retry can succeed: from the rate limit's own state where it knows, the
        /// layer's configured back-off for load refusals, `None` where no retry can.
        retry_after: Option<Duration>,
    },
}

impl<E> FairError<E> {
    /// The status that answers a refusal (`None` for an inner error).
    ///
    /// # Examples
    ///
    /// ```
    /// let e: fairshare_tower::FairError<()> = fairshare_tower::FairError::Inner(());
    /// assert_eq!(e.status(), None);
    /// ```
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            FairError::Inner(_) => None,
            FairError::Refused { reason, .. } => Some(reason.status()),
        }
    }

    /// When a retry can succeed, if known.
    ///
    /// # Examples
    ///
    /// ```
    /// let e: fairshare_tower::FairError<()> = fairshare_tower::FairError::Inner(());
    /// assert_eq!(e.retry_after(), None);
    /// ```
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FairError::Inner(_) => None,
            FairError::Refused { retry_after, .. } => *retry_after,
        }
    }

    /// The `Retry-After` value in whole seconds, rounded up and at least 1 (a refusal means
    /// "not now", so 0 would invite an immediate retry that fails the same way).
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::ClassId;
    /// use fairshare::pressure::PressureLevel;
    /// use fairshare_tower::{FairError, Refusal};
    /// use std::time::Duration;
    /// let e: FairError<()> = FairError::Refused {
    ///     reason: Refusal::Pressure { level: PressureLevel::Shedding, class: ClassId::DEFAULT },
    ///     retry_after: Some(Duration::from_millis(10)),
    /// };
    /// assert_eq!(e.retry_after_secs(), Some(1));
    /// ```
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after().map(retry_after_secs)
    }

    /// The inner error, if that is what this is.
    ///
    /// # Examples
    ///
    /// ```
    /// let e: fairshare_tower::FairError<u8> = fairshare_tower::FairError::Inner(7);
    /// assert_eq!(e.into_inner(), Some(7));
    /// ```
    pub fn into_inner(self) -> Option<E> {
        match self {
            FairError::Inner(e) => Some(e),
            FairError::Refused { .. } => None,
        }
    }

    /// The HTTP response for a refusal: its status, `Retry-After` when a retry can succeed,
    /// and a plain-text body `body(reason)`. `None` for an inner error.
    ///
    /// # Examples
    ///
    /// ```
    /// use fairshare::{Nanos, RejectReason};
    /// use fairshare_tower::{FairError, Refusal};
    /// use std::time::Duration;
    /// let e: FairError<()> = FairError::Refused {
    ///     reason: Refusal::Admission(RejectReason::RateLimited { retry_at: Nanos::from_secs(2) }),
    ///     retry_after: Some(Duration::from_millis(1_500)),
    /// };
    /// let resp = e.refusal_response(|text| text).unwrap();
    /// assert_eq!(resp.status(), 429);
    /// assert_eq!(resp.headers()["retry-after"], "2");
    /// ```
    pub fn refusal_response<B>(&self, body: impl FnOnce(String) -> B) -> Option<http::Response<B>> {
        let FairError::Refused { reason, .. } = self else {
            return None;
        };
        let mut resp = http::Response::new(body(reason.to_string()));
        *resp.status_mut() = reason.status();
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(secs) = self.retry_after_secs() {
            resp.headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        Some(resp)
    }
}

pub(crate) fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

impl<E: fmt::Debug> fmt::Debug for FairError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FairError::Inner(e) => f.debug_tuple("Inner").field(e).finish(),
            FairError::Refused {
                reason,
                retry_after,
            } => f
                .debug_struct("Refused")
                .field("reason", reason)
                .field("retry_after", retry_after)
                .finish(),
        }
    }
}

impl<E: fmt::Display> fmt::Display for FairError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FairError::Inner(e) => e.fmt(f),
            FairError::Refused { reason, .. } => write!(f, "request refused: {reason}"),
        }
    }
}

impl<E> std::error::Error for FairError<E>
where
    E: std::error::Error + 'static,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FairError::Inner(e) => Some(e),
            FairError::Refused { .. } => None,
        }
    }
}

#[cfg(feature = "axum")]
mod axum_impl {
    use axum_core::response::{IntoResponse, Response};

    use super::FairError;

    /// A refusal becomes its status, `Retry-After` and a plain-text reason; an inner error
    /// its own response.
    impl<E: IntoResponse> IntoResponse for FairError<E> {
        fn into_response(self) -> Response {
            match self {
                FairError::Inner(e) => e.into_response(),
                refused => match refused.refusal_response(axum_core::body::Body::from) {
                    Some(resp) => resp,
                    None => http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::retry_after_secs;
    use std::time::Duration;

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_nanos(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(30)), 30);
    }
}
