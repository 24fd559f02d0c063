//! The one swap point for locks: parking_lot normally, loom's model-checked primitives under
//! `--cfg loom`. Everything in the crate that locks or waits imports from here.
//!
//! The wrappers give both the same small API (guards by value, `wait` returning the guard), so
//! the waiting logic in `crate::shared` is the same code in production and under loom.

#[cfg(not(loom))]
mod imp {
    use std::time::Instant;

    pub(crate) use std::sync::Arc;

    pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(parking_lot::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(parking_lot::Mutex::new(value))
        }

        #[inline]
        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock()
        }

        /// The guard if the lock is free right now.
        #[inline]
        pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            self.0.try_lock()
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct Condvar(parking_lot::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Self {
            Condvar(parking_lot::Condvar::new())
        }

        /// Waits for a notification or until `deadline` (`None`: no deadline); returns the
        /// guard and whether the deadline passed.
        pub(crate) fn wait_until<'a, T>(
            &self,
            mut guard: MutexGuard<'a, T>,
            deadline: Option<Instant>,
        ) -> (MutexGuard<'a, T>, bool) {
            match deadline {
                Some(deadline) => {
                    let timed_out = self.0.wait_until(&mut guard, deadline).timed_out();
                    (guard, timed_out)
                }
                None => {
                    self.0.wait(&mut guard);
                    (guard, false)
                }
            }
        }

        #[inline]
        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}

#[cfg(loom)]
mod imp {
    use std::time::Instant;

    pub(crate) use loom::sync::Arc;

    pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

    #[derive(Debug)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().expect("fairshare: loom mutex poisoned")
        }
    }

    #[derive(Debug)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Self {
            Condvar(loom::sync::Condvar::new())
        }

        /// loom does not model time: this waits for a notification only, so a model that
        /// relies on a timeout to make progress is reported as a deadlock.
        pub(crate) fn wait_until<'a, T>(
            &self,
            guard: MutexGuard<'a, T>,
            _deadline: Option<Instant>,
        ) -> (MutexGuard<'a, T>, bool) {
            let guard = self.0.wait(guard).expect("fairshare: loom mutex poisoned");
            (guard, false)
        }

        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}

pub(crate) use imp::{Arc, Condvar, Mutex, MutexGuard};
