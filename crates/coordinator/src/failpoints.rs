//! Named failpoints at the step boundaries of the transfer machines, for the tests that
//! kill the coordinator at every step and check that each transfer still happens exactly
//! once. Compiled only with the `failpoints` feature (the `fail` crate); without it a
//! failpoint is nothing at all.
//!
//! `FAILPOINTS="deposit::signed=return"` makes the coordinator process stop dead (abort,
//! like `kill -9`: no clean-up, nothing flushed but what the store committed) the moment it
//! reaches that point; `…=return(exit)` the same with exit code 137.

/// A named failpoint: with the `failpoints` feature and the point configured to `return`,
/// the process stops dead there.
#[macro_export]
#[doc(hidden)]
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        {
            $crate::failpoints::point($name);
        }
    };
}

/// Evaluates the failpoint `name`.
#[cfg(feature = "failpoints")]
pub fn point(name: &str) {
    let hit = (|| {
        fail::fail_point!(name, |_| true);
        false
    })();
    if hit {
        eprintln!("failpoint {name}: stopping the process");
        std::process::abort();
    }
}

/// Reads the `FAILPOINTS` environment variable (call once at start-up).
#[cfg(feature = "failpoints")]
pub fn setup() {
    std::mem::forget(fail::FailScenario::setup());
}

/// Without the `failpoints` feature there is nothing to set up.
#[cfg(not(feature = "failpoints"))]
pub fn setup() {}
