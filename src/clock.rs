//! The wall-clock time source for token times: `exp`, `nbf` and `iat` checks.
//!
//! Production code uses [`SystemClock`]. Tests inject a [`ManualClock`] and move time with
//! [`ManualClock::advance`] (or back with [`ManualClock::rewind`]) instead of sleeping.
//!
//! Durations the crate measures itself (key-set age and TTL, the unknown-`kid` refetch
//! cooldown, failure cooldowns, introspection cache lifetimes) never use this clock: they
//! run on tokio's monotonic clock ([`tokio::time::Instant`]), so a wall clock that is set
//! back cannot stretch a cooldown or keep a cached answer alive, and one set forward
//! cannot end them early. Tests drive that clock with tokio's `pause`/`advance`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current wall-clock time, for token times (`exp`, `nbf`, `iat`).
///
/// Cooldowns and cache ages do not use it: they run on tokio's monotonic clock
/// ([`tokio::time::Instant`]), which setting the wall clock does not move.
///
/// ```
/// use smart_auth::{Clock, SystemClock};
/// let now = SystemClock.now();
/// assert!(now > std::time::UNIX_EPOCH);
/// ```
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The operating system's clock.
///
/// ```
/// use smart_auth::{Clock, SystemClock};
/// let _ = SystemClock.now();
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to. Clones share the same time. For tests only: in
/// a server it would keep every token that was valid when it started valid forever (its
/// `exp` never comes) and refuse newer ones whose `iat` or `nbf` lies after it.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use smart_auth::{Clock, ManualClock};
///
/// let clock = ManualClock::at_unix(1_700_000_000);
/// let shared = clock.clone();
/// clock.advance(Duration::from_secs(30));
/// assert_eq!(shared.now(), UNIX_EPOCH + Duration::from_secs(1_700_000_030));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    millis_since_epoch: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock stopped at the current system time.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use smart_auth::{Clock, ManualClock};
    ///
    /// let clock = ManualClock::new();
    /// let start = clock.now();
    /// assert!(start <= SystemTime::now());
    /// clock.advance(Duration::from_secs(60));
    /// assert_eq!(clock.now(), start + Duration::from_secs(60)); // moved only when told
    /// ```
    pub fn new() -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            millis_since_epoch: Arc::new(AtomicU64::new(millis)),
        }
    }

    /// A clock stopped at `seconds` after the Unix epoch.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use smart_auth::{Clock, ManualClock};
    ///
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    /// ```
    pub fn at_unix(seconds: u64) -> Self {
        Self {
            millis_since_epoch: Arc::new(AtomicU64::new(seconds.saturating_mul(1000))),
        }
    }

    /// Moves the clock forward, to the end of the year 9999 at most (a time every platform's
    /// `SystemTime` holds), never round to the past.
    ///
    /// ```
    /// use std::time::Duration;
    /// use smart_auth::{Clock, ManualClock};
    ///
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// clock.advance(Duration::MAX);
    /// clock.advance(Duration::from_secs(1));
    /// assert!(clock.now() > std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    /// ```
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        let _ =
            self.millis_since_epoch
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |millis| {
                    Some(millis.saturating_add(by).min(LATEST_MILLIS))
                });
    }

    /// Moves the clock backward (not before the Unix epoch), as when a host's wall clock
    /// is set back.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use smart_auth::{Clock, ManualClock};
    ///
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// clock.rewind(Duration::from_secs(3600));
    /// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(1_699_996_400));
    /// ```
    pub fn rewind(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        let _ =
            self.millis_since_epoch
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |millis| {
                    Some(millis.saturating_sub(by))
                });
    }
}

/// 9999-12-31T23:59:59.999Z in milliseconds since the Unix epoch.
const LATEST_MILLIS: u64 = 253_402_300_799_999;

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.millis_since_epoch.load(Ordering::SeqCst))
    }
}

/// Whole seconds since the Unix epoch (0 before it).
pub(crate) fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The time `seconds` after the Unix epoch (before it when negative); `None` when the
/// platform cannot represent it.
pub(crate) fn from_unix_seconds(seconds: i64) -> Option<SystemTime> {
    let offset = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    }
}
