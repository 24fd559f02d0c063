//! Rate limiting: a [`Quota`] (so many units per period, with a burst) and the GCRA that
//! enforces it, as pure functions of `(state, now)`. A leaf: it knows nothing of queues or
//! admission, which both build on it.

pub(crate) mod gcra;
mod quota;

pub use quota::Quota;
