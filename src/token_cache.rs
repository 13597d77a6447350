//! The verified-token cache: a token that verified once is answered from memory until it
//! expires, instead of being parsed and its signature checked again.
//!
//! Backend services send the same access token with every request until it expires, so
//! most requests carry a token this process has already verified. The cache is keyed by
//! the whole token string (never a prefix, a hash alone or a claim), so a hit can only
//! return the claims of that exact token.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use quick_cache::{Lifecycle, Weighter};

use crate::claims::SmartClaims;
use crate::clock::{from_unix_seconds, unix_seconds};
use crate::error::ConfigError;
use crate::metrics::CacheEntries;

/// How the verified-token cache of a [`TokenVerifier`](crate::TokenVerifier) behaves.
///
/// The cache is on by default. A token that passed every check is remembered with its
/// claims, so later requests with the same token skip parsing and the signature check
/// (such a hit takes no lock and allocates nothing). It is stored the second time it
/// verifies: the first time only a hash of it is noted, so that a token used once (or a
/// flood of distinct tokens) costs no memory and no cache upkeep. A remembered token is
/// used only while all of this holds, measured with the configured
/// [`Clock`](crate::Clock):
///
/// - the token is within its `exp` (and `nbf`/`iat`), with exactly the leeway of a fresh
///   check: a cached token past its `exp` is verified afresh, and so refused as
///   `Expired`;
/// - it was verified less than [`max_age`](Self::max_age) ago (default 5 min);
/// - the issuer's key set is the one it was verified with, and no refresh of that set is
///   due yet (neither its TTL nor half of `max_stale`, less any time a cache in between
///   served the copy stale, has passed since it was fetched). After a refetch that changes the keys, and while a
///   refresh is due or failing, tokens are verified afresh.
///
/// Only valid tokens are stored, at most [`max_entries`](Self::max_entries) of them
/// (default 10,000; the least useful are evicted first), so memory stays bounded. A token
/// of more than 4 KiB counts as one entry per started 4 KiB, and so does one whose claims
/// take more once read than a usual token's (more than 32 scopes, 16 granular filter pairs
/// or 4 audiences or launch contexts, a launch context's `identifier`, a payload of many
/// small objects), for what those take (each scope is parsed and listed: some 350 bytes),
/// so that issuers of large tokens (many scopes, a large `fhirContext`) cannot make the
/// cache hold more than about `max_entries` × 4 KiB of them. Each
/// layer or verifier has its own cache: a token accepted by one layer is never served
/// from the cache of a layer configured otherwise.
///
/// **Trade-off.** The signature of a cached token is not checked again while its entry is
/// used. A key the issuer removes from its JWK Set therefore stays trusted for tokens
/// already in the cache until the layer refetches the key set (after the key TTL, default
/// 10 min), the entry's `max_age` passes or the token expires, whichever comes first. That
/// never goes beyond what the key cache alone allows: until that refetch, a layer without
/// the token cache still holds the removed key too and accepts any token signed with it.
/// Turn the cache off with [`TokenCachePolicy::disabled`] (or
/// [`SmartAuthBuilder::no_token_cache`](crate::SmartAuthBuilder::no_token_cache)) to check
/// every signature on every request.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use smart_auth::{SmartAuthLayer, TokenCachePolicy};
///
/// let policy = TokenCachePolicy::default()
///     .max_entries(50_000)
///     .max_age(Duration::from_secs(60));
/// assert!(policy.is_enabled());
/// let layer = SmartAuthLayer::builder("https://auth.example.org")
///     .audience("https://fhir.example.org/r4")
///     .token_cache(policy)
///     .build()?;
///
/// // Or verify every signature on every request:
/// assert!(!TokenCachePolicy::disabled().is_enabled());
/// # Ok::<(), smart_auth::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCachePolicy {
    enabled: bool,
    max_entries: u64,
    max_age: Duration,
}

impl Default for TokenCachePolicy {
    /// On, 10,000 entries, 5 min.
    fn default() -> Self {
        Self {
            enabled: true,
            max_entries: 10_000,
            max_age: Duration::from_secs(300),
        }
    }
}

impl TokenCachePolicy {
    /// No cache: every request's token is parsed and its signature checked.
    ///
    /// ```
    /// use smart_auth::TokenCachePolicy;
    /// assert!(!TokenCachePolicy::disabled().is_enabled());
    /// ```
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// The most tokens remembered at once (default 10,000; at least 1, at most 1,000,000,
    /// else `build` fails with [`ConfigError::InvalidLimit`]); a token of more
    /// than 4 KiB counts once per started 4 KiB. The cache is split in shards, each with
    /// its share of the bound: a token that weighs more than one shard's share is not
    /// cached at all (with `max_entries(1)`, no token over 4 KiB is).
    ///
    /// ```
    /// use smart_auth::TokenCachePolicy;
    /// assert_eq!(TokenCachePolicy::default().max_entries(500).get_max_entries(), 500);
    /// ```
    pub fn max_entries(mut self, entries: u64) -> Self {
        self.max_entries = entries;
        self
    }

    /// How long a verified token is served from the cache before it is verified afresh
    /// (default 5 min; more than zero, at most 24 h). An entry never outlives the token's
    /// `exp` either.
    ///
    /// ```
    /// use std::time::Duration;
    /// use smart_auth::TokenCachePolicy;
    /// let policy = TokenCachePolicy::default().max_age(Duration::from_secs(30));
    /// assert_eq!(policy.get_max_age(), Duration::from_secs(30));
    /// ```
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Whether the cache is on.
    ///
    /// ```
    /// assert!(smart_auth::TokenCachePolicy::default().is_enabled());
    /// ```
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The configured capacity. Memory use is about this many times the size of one
    /// token plus its claims: about 1 KiB for a compact SMART token, 2.9 KiB for one with
    /// twenty scopes and launch context (BENCHMARKS.md, `bench/memory.sh`).
    ///
    /// ```
    /// assert_eq!(smart_auth::TokenCachePolicy::default().get_max_entries(), 10_000);
    /// ```
    pub fn get_max_entries(&self) -> u64 {
        self.max_entries
    }

    /// The configured longest time in the cache.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(
    ///     smart_auth::TokenCachePolicy::default().get_max_age(),
    ///     Duration::from_secs(300)
    /// );
    /// ```
    pub fn get_max_age(&self) -> Duration {
        self.max_age
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let max_age_ok = !self.max_age.is_zero() && self.max_age <= MAX_MAX_AGE;
        let entries_ok = (1..=MAX_ENTRIES).contains(&self.max_entries);
        if self.enabled && (!entries_ok || !max_age_ok) {
            return Err(ConfigError::InvalidLimit {
                field: "token_cache",
            });
        }
        Ok(())
    }
}

/// The most entries accepted: a million tokens of about 1 KiB each (4 KiB at most) is more
/// than any one server verifies in a token's lifetime, and a larger bound (`u64::MAX`,
/// a number meant in bytes) would let the cache grow without limit.
const MAX_ENTRIES: u64 = 1_000_000;

/// The longest `max_age` accepted: access tokens live minutes, not days.
const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// What is remembered about one verified token.
#[derive(Clone)]
pub(crate) struct CachedToken {
    /// The whole token; the same allocation is the entry's key in the store.
    token: Arc<[u8]>,
    pub(crate) claims: SmartClaims,
    /// The generation of the key set the signature was checked with: the entry is used
    /// only while that set is the current one.
    pub(crate) key_generation: u64,
    /// Its share of the store's bound ([`SizeWeighter`]), worked out once when stored.
    weight: u64,
    /// By the configured clock: the entry is not used from this time on (its max age
    /// passed, its key set is due for a refresh, or its `exp` passed). Kept as a
    /// `SystemTime`, like the clock's answer, so that a hit compares times without
    /// converting the clock's reading.
    use_until: SystemTime,
    /// By the configured clock: when the entry was stored, after `nbf` and `iat` (minus
    /// the leeway). The entry is not used before it: a clock set back would otherwise
    /// stretch `use_until` by the step, past the max age and past the key set's
    /// freshness (which runs on the monotonic clock). A fresh verification decides.
    stored_at: SystemTime,
}

impl CachedToken {
    /// Whether the entry answers for the token at `now`, given the current key set
    /// generation: the claims' times, with the leeway, still allow it, its max age has
    /// not passed, it was verified with the current, still fresh, key set, and the clock
    /// has not been set back to before it was stored. A fresh verification would then
    /// accept the token.
    pub(crate) fn usable(&self, now: SystemTime, key_generation: u64) -> bool {
        now < self.use_until && now >= self.stored_at && key_generation == self.key_generation
    }
}

/// When a verified token's claims allow it, the leeway included, as exact times: the
/// same bounds as the verifier's checks of `exp`, `nbf` and `iat` in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClaimWindow {
    /// The latest of `nbf` and `iat`, minus the leeway; `None` when neither is present.
    pub(crate) from: Option<SystemTime>,
    /// `exp` plus the leeway; `None` when too far away to represent.
    pub(crate) until: Option<SystemTime>,
}

impl ClaimWindow {
    /// The window of these claims, with this leeway.
    pub(crate) fn of(claims: &SmartClaims, leeway_secs: i64) -> Self {
        let from = claims.nbf().max(claims.iat());
        Self {
            from: from.and_then(|at| from_unix_seconds(at.saturating_sub(leeway_secs))),
            until: from_unix_seconds(claims.exp().saturating_add(leeway_secs)),
        }
    }
}

/// The key set a token was verified with, as the token cache needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeySetStamp {
    /// The set's generation (see `KeyStore::current_generation`).
    pub(crate) generation: u64,
    /// When the set stops being usable without a refresh (see `KeyStore::fresh_until`).
    pub(crate) fresh_until: SystemTime,
}

/// The cache itself: valid tokens only, bounded in size and in time. Keys are the token's
/// bytes, so a request's credential can be looked up before it is checked as text.
///
/// Two structures hold the entries:
///
/// - `store`, a `quick_cache` cache: the bounded set of remembered tokens, with its
///   eviction policy (S3-FIFO-like: scan resistant, a token in use stays). It has no
///   per-entry expiry: entries that can no longer be used are swept out when a token is
///   stored and the last sweep is [`SWEEP_INTERVAL`] or more ago (by the configured
///   clock; on Tokio's blocking pool when there is a runtime), so they hold memory for a
///   limited time, and never beyond the bound;
/// - `recent`, a fixed array of slots, each pointing at one stored entry that was used
///   recently (the slot is chosen by the token's hash). Reading a slot is one atomic load
///   and a byte comparison, with no bookkeeping: a client that reuses its token is
///   answered from here. When the store drops an entry (evicted, expired, replaced or
///   removed), the slot that points at it is cleared, so the slots add no memory beyond
///   the store's bound (a lookup racing with the drop can put the entry back in its
///   slot: at most one entry per slot, until the slot is next written). Hits in
///   `recent` are not reported to the store, so its eviction policy may drop a token in
///   constant use; that costs one fresh verification, never a wrong answer.
///
/// A token is stored the second time it verifies, not the first: the first time only its
/// hash is noted in `seen`. Storing costs far more than looking up (allocations, and once
/// the cache is full the eviction of an older entry whose memory is no longer in the CPU
/// caches), so a token used once, the common case in a flood of distinct tokens, would
/// pay that cost for nothing. A token a client reuses is stored on its second request.
pub(crate) struct TokenCache {
    store: Arc<Store>,
    recent: Arc<RecentSlots>,
    max_age: Duration,
    /// When the next sweep of unusable entries is due, in Unix seconds by the configured
    /// clock.
    next_sweep: AtomicU64,
    /// Hashes of tokens verified once, one per slot, overwritten freely. A false match
    /// only stores a token one verification early; it never changes an answer.
    seen: Box<[AtomicU64]>,
    /// This cache's share of the `metrics` feature's entries gauge (nothing without it).
    entries: Arc<CacheEntries>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.store.len())
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

/// How often, at most, entries that can no longer be used are swept out of the store.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// The index in `0..len` that `hash` picks: the high half of `hash × len`, which spreads
/// a well-mixed hash as evenly as a remainder would, without a division on every lookup.
#[inline]
fn index_of(hash: u64, len: usize) -> usize {
    // Lossless: `len` is a slice length, and the result is below it.
    ((u128::from(hash) * len as u128) >> 64) as usize
}

/// How many trailing bytes of a token go into its hash.
const HASHED_TAIL: usize = 32;

/// The most slots in [`RecentSlots`]: 8 KiB of pointers, far more than the number of
/// tokens a server's clients use at one time.
const MAX_RECENT_SLOTS: u64 = 1024;

/// Hashes a token by its length and its last [`HASHED_TAIL`] bytes, instead of all of
/// its bytes (hundreds to thousands of them), keyed with per-cache random keys.
///
/// Lookups still compare the whole token, so two tokens that share a tail share a bucket
/// but never an entry. The tail of a signed token is signature, which the holder of a
/// token cannot choose, and only tokens that verified are ever stored; a request with a
/// made-up token costs one more comparison at most. That is also why the mixing can be
/// a few multiplications (the folded multiply of foldhash and wyhash) rather than
/// SipHash: nobody can fill the tables with chosen keys, so there is no collision flood
/// to resist, only hashing work on every request to save.
#[derive(Clone)]
struct TailHash {
    keys: [u64; 5],
}

impl Default for TailHash {
    fn default() -> Self {
        let random = RandomState::new();
        Self {
            keys: std::array::from_fn(|i| random.hash_one(i)),
        }
    }
}

impl BuildHasher for TailHash {
    type Hasher = TailHasher;

    fn build_hasher(&self) -> TailHasher {
        TailHasher {
            keys: self.keys,
            state: self.keys[4],
        }
    }
}

struct TailHasher {
    keys: [u64; 5],
    state: u64,
}

/// The 128-bit product of `a` and `b`, its two halves xor-ed together.
fn folded_multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    // Truncations on purpose: the low and the high half.
    (product as u64) ^ ((product >> 64) as u64)
}

impl Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        // The tail as four little-endian words, zero-padded when the input is shorter
        // (tokens never are: the copy is for the general `Hasher` contract only).
        let mut padded = [0u8; HASHED_TAIL];
        let tail = match bytes.last_chunk::<HASHED_TAIL>() {
            Some(tail) => tail,
            None => {
                padded[..bytes.len()].copy_from_slice(bytes);
                &padded
            }
        };
        let word = |i: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&tail[i * 8..i * 8 + 8]);
            u64::from_le_bytes(bytes)
        };
        let keys = &self.keys;
        let length = bytes.len() as u64;
        let low = folded_multiply(word(0) ^ keys[0], word(1) ^ keys[1]);
        let high = folded_multiply(word(2) ^ keys[2], word(3) ^ keys[3] ^ length);
        self.state = folded_multiply(self.state ^ low, high ^ keys[4]);
    }

    fn finish(&self) -> u64 {
        self.state
    }
}

/// Recently used entries of the store, one per slot, read without locks.
struct RecentSlots {
    slots: Box<[ArcSwapOption<CachedToken>]>,
    hasher: TailHash,
}

impl RecentSlots {
    fn new(slots: u64) -> Self {
        Self {
            slots: (0..slots).map(|_| ArcSwapOption::empty()).collect(),
            hasher: TailHash::default(),
        }
    }

    /// The token's hash, which also picks its slot in `seen`. Only the bytes are
    /// written: `write` mixes their length in already, so the length prefix that
    /// `Hash for [u8]` adds (and the store's own hashing keeps) would be work for nothing.
    fn hash(&self, token: &[u8]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(token);
        hasher.finish()
    }

    fn slot(&self, hash: u64) -> &ArcSwapOption<CachedToken> {
        // Lossless: the remainder is below the slot count, a `usize`.
        &self.slots[index_of(hash, self.slots.len())]
    }

    /// Clears the slot of `entry` if it still points at exactly that entry.
    fn forget(&self, entry: &Arc<CachedToken>) {
        let slot = self.slot(self.hash(&entry.token));
        let current = slot.load();
        if current
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, entry))
        {
            slot.compare_and_swap(&current, None);
        }
    }

    /// Clears the token's slot if it holds this token.
    fn forget_token(&self, token: &[u8]) {
        let slot = self.slot(self.hash(token));
        let current = slot.load_full();
        if current.as_ref().is_some_and(|entry| *entry.token == *token) {
            slot.compare_and_swap(&current, None);
        }
    }
}

/// Keeps `recent` in step with the store: an entry the store evicts to make room leaves
/// its slot too. (Entries replaced, removed or swept out are taken care of where that
/// happens: `insert` overwrites the slot, `remove` and the sweep clear it.)
#[derive(Clone)]
struct Evicted {
    recent: Arc<RecentSlots>,
}

impl Lifecycle<Arc<[u8]>, Arc<CachedToken>> for Evicted {
    type RequestState = ();

    fn begin_request(&self) {}

    fn on_evict(&self, (): &mut (), _token: Arc<[u8]>, entry: Arc<CachedToken>) {
        self.recent.forget(&entry);
    }
}

/// The store for at most `max_entries` tokens. The store splits its bound evenly over its
/// shards (each shard holds `bound / shards`, rounded up), so the bound given to it is
/// `max_entries` rounded down to a multiple of the shard count: never more than
/// `max_entries` entries in all. Shards: four per CPU as a power of two (the store's own
/// default), fewer when that would leave a shard under 32 entries. The store allocates as
/// entries come, not up front.
fn new_store(max_entries: u64, evicted: Evicted) -> Store {
    let parallelism = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut shards = u64::try_from(parallelism.saturating_mul(4))
        .unwrap_or(u64::MAX)
        .next_power_of_two();
    while shards > 1 && max_entries / shards < 32 {
        shards /= 2;
    }
    let bound = (max_entries / shards * shards).max(1);
    let options = quick_cache::OptionsBuilder::new()
        // Lossless: at most 2^63 after `next_power_of_two`, and a `usize` to start with.
        .shards(usize::try_from(shards).unwrap_or(usize::MAX))
        // Sizes the store's memory of recently evicted tokens (its "ghosts").
        .estimated_items_capacity(usize::try_from(bound).unwrap_or(usize::MAX))
        // A usual token weighs 1, so the weight capacity is the entry bound.
        .weight_capacity(bound)
        .build()
        .expect("every option is set");
    quick_cache::sync::Cache::with_options(options, SizeWeighter, TailHash::default(), evicted)
}

/// The size an entry's weight is counted in: tokens up to it weigh 1.
const WEIGHT_UNIT: u64 = 4096;

/// Weighs an entry by its token's size, one per started [`WEIGHT_UNIT`], and by what its
/// claims may take beyond a usual token's once read (thousands of scopes parsed, a long
/// list of audiences: [`SmartClaims::size_beyond_the_usual`](crate::SmartClaims)): the
/// usual tokens weigh 1, so `max_entries` bounds their count, while large ones count for
/// their size, and the store's memory stays near `max_entries` × 4 KiB whatever the
/// tokens hold.
#[derive(Debug, Clone, Copy)]
struct SizeWeighter;

impl SizeWeighter {
    /// The weight of an entry for `token` with `claims` (the store asks for it at every
    /// move of the entry, so it is worked out once and kept in the entry).
    fn weigh(token: &[u8], claims: &SmartClaims) -> u64 {
        let size = token.len().saturating_add(claims.size_beyond_the_usual());
        u64::try_from(size)
            .unwrap_or(u64::MAX)
            .div_ceil(WEIGHT_UNIT)
            .max(1)
    }
}

impl Weighter<Arc<[u8]>, Arc<CachedToken>> for SizeWeighter {
    fn weight(&self, _token: &Arc<[u8]>, entry: &Arc<CachedToken>) -> u64 {
        entry.weight
    }
}

type Store = quick_cache::sync::Cache<Arc<[u8]>, Arc<CachedToken>, SizeWeighter, TailHash, Evicted>;

impl TokenCache {
    /// A cache for an enabled, validated policy; `None` when the policy turns it off.
    pub(crate) fn new(policy: &TokenCachePolicy) -> Option<Self> {
        policy.enabled.then(|| {
            let recent = Arc::new(RecentSlots::new(
                policy.max_entries.clamp(1, MAX_RECENT_SLOTS),
            ));
            // About one slot per entry, within 1 Ki..64 Ki slots (8 to 512 KiB).
            let seen = usize::try_from(policy.max_entries)
                .unwrap_or(usize::MAX)
                .clamp(1 << 10, 1 << 16);
            Self {
                store: Arc::new(new_store(
                    policy.max_entries,
                    Evicted {
                        recent: Arc::clone(&recent),
                    },
                )),
                recent,
                max_age: policy.max_age,
                next_sweep: AtomicU64::new(0),
                seen: (0..seen).map(|_| AtomicU64::new(0)).collect(),
                entries: Arc::new(CacheEntries::new()),
            }
        })
    }

    /// Whether the token with this hash verified before (as far as `seen` remembers);
    /// notes it if not.
    fn seen_before(&self, hash: u64) -> bool {
        let slot = &self.seen[index_of(hash, self.seen.len())];
        if slot.load(Ordering::Relaxed) == hash {
            return true;
        }
        slot.store(hash, Ordering::Relaxed);
        false
    }

    /// Calls `read` with the entry for exactly this token, if there is one; `read`
    /// decides whether it may still be used. The entry is borrowed, not cloned: a hit in
    /// `recent` costs one atomic load and the byte comparison.
    pub(crate) fn with_entry<R>(
        &self,
        token: &[u8],
        read: impl FnOnce(&CachedToken) -> R,
    ) -> Option<R> {
        let hash = self.recent.hash(token);
        let slot = self.recent.slot(hash);
        let current = slot.load();
        if let Some(entry) = &*current
            && *entry.token == *token
        {
            return Some(read(entry));
        }
        let entry = self.store.get(token)?;
        let answer = read(&entry);
        slot.store(Some(entry));
        Some(answer)
    }

    /// A copy of the entry for exactly this token, if there is one.
    #[cfg(test)]
    fn get(&self, token: &[u8]) -> Option<CachedToken> {
        self.with_entry(token, CachedToken::clone)
    }

    /// Remembers a token that passed every check at `now`, if it verified before (or
    /// `reused` says it was cached before). `claimed` is when its claims allow it.
    pub(crate) fn insert(
        &self,
        token: Arc<[u8]>,
        reused: bool,
        claims: SmartClaims,
        keys: KeySetStamp,
        now: SystemTime,
        claimed: ClaimWindow,
    ) {
        // A clock (a custom one) within a day of `SystemTime`'s end must not panic here.
        let aged_out = now.checked_add(self.max_age).unwrap_or(now);
        let use_until = claimed
            .until
            .map_or(aged_out, |until| until.min(aged_out))
            .min(keys.fresh_until);
        // An entry that could not be used now (the token expires now, or it was verified
        // with a key set already due for a refresh) is not worth storing.
        if use_until <= now || claimed.from.is_some_and(|from| now < from) {
            return;
        }
        let hash = self.recent.hash(&token);
        if !(reused || self.seen_before(hash)) {
            return;
        }
        let entry = Arc::new(CachedToken {
            weight: SizeWeighter::weigh(&token, &claims),
            token: Arc::clone(&token),
            claims,
            key_generation: keys.generation,
            use_until,
            stored_at: now,
        });
        // On a runtime the sweep goes on by itself.
        let _sweeping = self.sweep_if_due(now);
        self.store.insert(Arc::clone(&token), Arc::clone(&entry));
        // A token stored now is about to be used again; one the store refused (heavier
        // than a shard's share) is not kept in a slot either, where neither the bound nor
        // the sweep would see it.
        if self.store.contains_key(&token[..]) {
            self.recent.slot(hash).store(Some(entry));
        }
        self.entries.held(|| self.len());
    }

    /// Drops the entries that can no longer be used at `now` (their token or max age ran
    /// out, or their key set is due for a refresh), at most once per [`SWEEP_INTERVAL`].
    /// Their memory would otherwise stay until the store evicts them to make room. On a
    /// Tokio runtime the sweep runs on the blocking pool; its handle is returned.
    fn sweep_if_due(&self, now: SystemTime) -> Option<tokio::task::JoinHandle<()>> {
        // Never negative: 0 before the epoch.
        let now_secs = unix_seconds(now).unsigned_abs();
        let due = self.next_sweep.load(Ordering::Relaxed);
        if now_secs < due
            || self
                .next_sweep
                .compare_exchange(
                    due,
                    now_secs.saturating_add(SWEEP_INTERVAL.as_secs()),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            // Not due, or another thread sweeps now.
            return None;
        }
        let (store, recent, entries) = (
            Arc::clone(&self.store),
            Arc::clone(&self.recent),
            Arc::clone(&self.entries),
        );
        let sweep = move || {
            store.retain(|_token, entry| {
                let keep = now < entry.use_until;
                if !keep {
                    recent.forget(entry);
                }
                keep
            });
            entries.held(|| store.len() as u64);
        };
        // A large store takes a while to sweep (about half a second for a million
        // entries, shard by shard under the shard's lock): on a Tokio runtime that work
        // goes to the blocking pool instead of delaying the request that stores a token.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            return Some(runtime.spawn_blocking(sweep));
        }
        sweep();
        None
    }

    /// Forgets a token whose entry can no longer be used.
    pub(crate) fn remove(&self, token: &[u8]) {
        self.recent.forget_token(token);
        self.store.remove(token);
        self.entries.held(|| self.len());
    }

    /// How many tokens are remembered.
    pub(crate) fn len(&self) -> u64 {
        self.store.len() as u64
    }

    /// How many slots of `recent` point at an entry.
    #[cfg(test)]
    fn recent_len(&self) -> usize {
        self.recent
            .slots
            .iter()
            .filter(|slot| slot.load().is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::ClaimNames;
    use std::time::UNIX_EPOCH;

    /// A token's bytes as the cache keeps them.
    fn key(token: &str) -> Arc<[u8]> {
        Arc::from(token.as_bytes())
    }

    /// A key set of this generation, fresh for a day.
    fn stamp(generation: u64) -> KeySetStamp {
        KeySetStamp {
            generation,
            fresh_until: SystemTime::now() + Duration::from_secs(24 * 3600),
        }
    }

    /// Claims that allow the token until `time`.
    fn until(time: SystemTime) -> ClaimWindow {
        ClaimWindow {
            from: None,
            until: Some(time),
        }
    }

    fn claims(n: u64) -> SmartClaims {
        claims_from(
            serde_json::json!({"iss": "https://as.example", "exp": 4_000_000_000u64, "jti": n.to_string()}),
        )
    }

    fn claims_from(payload: serde_json::Value) -> SmartClaims {
        let serde_json::Value::Object(map) = payload else {
            unreachable!()
        };
        let names = ClaimNames {
            scope: vec!["scope".into()],
            client_id: vec!["client_id".into()],
            ..ClaimNames::default()
        };
        SmartClaims::from_payload(map, &names).expect("valid synthetic claims")
    }

    #[test]
    fn policy_limits() {
        assert!(TokenCachePolicy::default().validate().is_ok());
        assert!(
            TokenCachePolicy::disabled()
                .max_entries(0)
                .validate()
                .is_ok()
        );
        assert!(
            TokenCachePolicy::default()
                .max_entries(1_000_000)
                .validate()
                .is_ok()
        );
        for bad in [
            TokenCachePolicy::default().max_entries(0),
            TokenCachePolicy::default().max_entries(1_000_001),
            TokenCachePolicy::default().max_entries(u64::MAX),
            TokenCachePolicy::default().max_age(Duration::ZERO),
            TokenCachePolicy::default().max_age(Duration::from_secs(24 * 3600 + 1)),
            TokenCachePolicy::default().max_age(Duration::MAX),
        ] {
            assert_eq!(
                bad.validate(),
                Err(ConfigError::InvalidLimit {
                    field: "token_cache"
                })
            );
        }
        assert!(TokenCache::new(&TokenCachePolicy::disabled()).is_none());
    }

    #[test]
    fn only_the_exact_token_hits() {
        let cache = TokenCache::new(&TokenCachePolicy::default()).expect("enabled");
        let now = SystemTime::now();
        cache.insert(
            key("aaa.bbb.ccc"),
            false,
            claims(1),
            stamp(7),
            now,
            until(now + Duration::from_secs(60)),
        );
        assert!(cache.get(b"aaa.bbb.ccc").is_none(), "noted, not stored");
        cache.insert(
            key("aaa.bbb.ccc"),
            false,
            claims(1),
            stamp(7),
            now,
            until(now + Duration::from_secs(60)),
        );
        let hit = cache.get(b"aaa.bbb.ccc").expect("hit");
        assert_eq!(hit.claims.jti(), Some("1"));
        assert_eq!(hit.key_generation, 7);
        assert_eq!(
            hit.use_until,
            now + Duration::from_secs(60),
            "the token's exp"
        );
        for other in ["aaa.bbb.cc", "aaa.bbb.cccc", "aaa.bbb.ccd", "", "aaa.bbb"] {
            assert!(cache.get(other.as_bytes()).is_none(), "{other:?}");
        }
        cache.remove(b"aaa.bbb.ccc");
        assert!(cache.get(b"aaa.bbb.ccc").is_none());
    }

    /// Large tokens count for their size (one entry per started 4 KiB): the cache holds
    /// a quarter as many 16 KiB tokens as it holds small ones, so its memory stays near
    /// `max_entries` × 4 KiB.
    #[test]
    fn large_tokens_weigh_their_size() {
        let policy = TokenCachePolicy::default().max_entries(64);
        let now = SystemTime::now();
        let fill = |length: usize| {
            let cache = TokenCache::new(&policy).expect("enabled");
            for n in 0..64u64 {
                let mut token = format!("{n:04}.").into_bytes();
                token.resize(length, b'a');
                let window = until(now + Duration::from_secs(60));
                cache.insert(Arc::from(token), true, claims(n), stamp(1), now, window);
            }
            cache.len()
        };
        assert!(fill(4096 * 4) <= 16, "16 KiB tokens weigh 4");
        assert!(fill(4096 * 4 - 4096 + 1) <= 16, "a started 4 KiB counts");
        assert!(fill(4096) > 16, "tokens up to 4 KiB weigh 1");
    }

    /// Claims that list far more than a usual token (thousands of scopes, filter pairs,
    /// audiences or launch contexts, each of which takes an allocation or two once read,
    /// or a context's identifier of many small objects) weigh what they may take, however
    /// short their token; up to 32 scopes, 16 filter pairs and 4 audiences and contexts
    /// weigh nothing more. An entry heavier than a shard's share is kept nowhere: not in
    /// the store, and not in the slots of recently used tokens either.
    #[test]
    fn claims_listing_thousands_weigh_their_size() {
        let policy = TokenCachePolicy::default().max_entries(64);
        let now = SystemTime::now();
        let fill = |payload: &dyn Fn(u64) -> serde_json::Value| {
            let cache = TokenCache::new(&policy).expect("enabled");
            for n in 0..64u64 {
                let window = until(now + Duration::from_secs(60));
                let token: Arc<[u8]> = Arc::from(format!("{n:04}.token").into_bytes());
                cache.insert(token, true, claims_from(payload(n)), stamp(1), now, window);
            }
            assert!(
                u64::try_from(cache.recent_len()).unwrap() <= cache.len(),
                "only stored entries in slots"
            );
            cache.len()
        };
        let with = |name: &'static str, value: serde_json::Value| {
            move |n: u64| {
                let mut payload = serde_json::json!({"iss": "https://as.example", "exp": 4_000_000_000u64, "jti": n.to_string()});
                payload[name] = value.clone();
                payload
            }
        };
        let scopes = |count: usize| vec!["a"; count].join(" ");
        // 1,500 scopes: some 520 KiB once read, 128 units.
        assert!(
            fill(&with("scope", scopes(1500).into())) <= 1,
            "1,500 scopes"
        );
        assert!(
            fill(&with("scope", scopes(32).into())) > 32,
            "32 scopes weigh 1"
        );
        let audiences = serde_json::Value::from(vec!["a"; 1000]);
        assert!(fill(&with("aud", audiences)) <= 8, "1,000 audiences");
        let contexts = serde_json::Value::from(vec!["Patient/1"; 1000]);
        assert!(
            fill(&with("fhirContext", contexts)) <= 2,
            "1,000 launch contexts"
        );
        let pairs = format!("user/Observation.rs?{}", vec!["a=b"; 750].join("&"));
        assert!(fill(&with("scope", pairs.into())) <= 1, "750 filter pairs");
        let few_pairs = format!("user/Observation.rs?{}", vec!["a=b"; 16].join("&"));
        assert!(
            fill(&with("scope", few_pairs.into())) > 32,
            "16 filter pairs weigh 1"
        );
        let small_objects = vec![serde_json::json!({"": 0}); 500];
        let identifier =
            serde_json::json!([{"identifier": {"v": small_objects}, "type": "Patient"}]);
        assert!(
            fill(&with("fhirContext", identifier)) <= 1,
            "an identifier of 500 objects"
        );
    }

    /// A payload that takes far more parsed than as text (for `claim()` and the like,
    /// kept with the claims once asked for) weighs that bound beyond a usual payload's:
    /// 1,700 one-member objects in 12 KiB take about a megabyte.
    #[test]
    fn payloads_weigh_what_they_take_parsed() {
        use base64::Engine as _;
        let policy = TokenCachePolicy::default().max_entries(64);
        let now = SystemTime::now();
        let fill = |extra: serde_json::Value| {
            let cache = TokenCache::new(&policy).expect("enabled");
            for n in 0..64u64 {
                let payload = serde_json::json!({
                    "iss": "https://as.example", "exp": 4_000_000_000u64,
                    "jti": n.to_string(), "x": extra.clone(),
                });
                let encoded =
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.to_string());
                // The signature segment differs per token, so do their tails (the hash's input).
                let token: Arc<[u8]> = Arc::from(format!("e30.{encoded}.c2ln{n:04}").into_bytes());
                let names = ClaimNames::default();
                let text = payload.to_string();
                let selected =
                    crate::json::selected_members(text.as_bytes(), |name| names.is_read(name))
                        .expect("valid JSON");
                let claims = SmartClaims::read_jwt_payload(&selected, &names)
                    .expect("valid claims")
                    .with_token(Arc::clone(&token));
                let window = until(now + Duration::from_secs(60));
                cache.insert(token, true, claims, stamp(1), now, window);
            }
            cache.len()
        };
        let objects = serde_json::Value::from(vec![serde_json::json!({"": 0}); 1700]);
        assert!(fill(objects) <= 1, "1,700 objects");
        let usual = serde_json::json!({"a": [1, 2, 3], "b": {"c": "d"}});
        assert!(fill(usual) > 32, "a usual payload weighs 1");
    }

    /// Tokens that differ only near their end, or only in length, spread evenly over
    /// the slots: the cheap hash is not degenerate on token-like input.
    #[test]
    fn tail_hash_spreads_tokens() {
        let hasher = TailHash::default();
        let mut hashes = std::collections::HashSet::new();
        // Slots are picked from the high bits (`index_of`); the store's tables use the
        // low bits: both must spread.
        let mut buckets = [0u32; 1024];
        let mut low_buckets = [0u32; 1024];
        for n in 0..100_000u64 {
            let token = if n % 2 == 0 {
                format!("eyJ.eyJ.{n:040}")
            } else {
                format!("eyJ.eyJ.{n:0width$}", width = 20 + (n % 23) as usize)
            };
            let hash = hasher.hash_one(token.as_bytes());
            assert!(hashes.insert(hash), "two tokens with one hash");
            buckets[index_of(hash, 1024)] += 1;
            low_buckets[(hash % 1024) as usize] += 1;
        }
        // About 98 per bucket; a fair hash stays well within 150.
        for buckets in [buckets, low_buckets] {
            let fullest = buckets.iter().max().copied().unwrap_or(0);
            assert!(fullest < 150, "{fullest} tokens in one slot");
        }
    }

    /// An entry is not used past its token's `exp` (with the leeway), its max age, or the
    /// time its key set is due for a refresh, whichever comes first.
    #[test]
    fn use_until_is_the_earliest_of_exp_max_age_and_key_freshness() {
        let cache = TokenCache::new(&TokenCachePolicy::default()).expect("enabled");
        let now = SystemTime::now();
        let hour = until(now + Duration::from_secs(3600));
        let soon = KeySetStamp {
            generation: 3,
            fresh_until: now + Duration::from_secs(10),
        };
        let cases = [
            ("a.b.c", soon, hour, 10),
            ("d.e.f", stamp(3), hour, 300),
            ("g.h.i", stamp(3), until(now + Duration::from_secs(42)), 42),
            (
                "j.k.l",
                stamp(3),
                ClaimWindow {
                    from: None,
                    until: None,
                },
                300,
            ),
        ];
        for (token, keys, claimed, seconds) in cases {
            cache.insert(key(token), true, claims(1), keys, now, claimed);
            let entry = cache.get(token.as_bytes()).expect("hit");
            assert_eq!(
                entry.use_until,
                now + Duration::from_secs(seconds),
                "{token}"
            );
            assert_eq!(entry.key_generation, 3);
        }
        // Verified with a key set already due for a refresh: not stored at all.
        let due = KeySetStamp {
            generation: 4,
            fresh_until: now,
        };
        for _ in 0..2 {
            cache.insert(key("m.n.o"), true, claims(3), due, now, hour);
        }
        assert!(cache.get(b"m.n.o").is_none());
    }

    /// `usable` holds exactly from when the entry was stored up to, not including,
    /// `use_until`, and only with the key set generation it was verified with: a clock
    /// set back to before the entry was stored, even within the claims' window, makes
    /// the token verified afresh.
    #[test]
    fn usable_exactly_within_its_bounds() {
        let cache = TokenCache::new(&TokenCachePolicy::default()).expect("enabled");
        let now = SystemTime::now();
        let (from, to) = (now - Duration::from_secs(5), now + Duration::from_secs(60));
        let claimed = ClaimWindow {
            from: Some(from),
            until: Some(to),
        };
        cache.insert(key("a.b.c"), true, claims(1), stamp(2), now, claimed);
        let entry = cache.get(b"a.b.c").expect("hit");
        let tick = Duration::from_nanos(1);
        assert!(entry.usable(now, 2) && entry.usable(to - tick, 2));
        assert!(!entry.usable(now - tick, 2), "set back, within nbf/iat");
        assert!(!entry.usable(from - tick, 2), "before nbf/iat");
        assert!(!entry.usable(to, 2), "at exp");
        assert!(!entry.usable(now, 3), "another key set");
    }

    /// The window matches the verifier's whole-second checks: `exp + leeway` is the
    /// first second refused, `max(nbf, iat) - leeway` the first one allowed.
    #[test]
    fn claim_window_of_the_claims() {
        let with = |times: serde_json::Value| {
            let mut payload =
                serde_json::json!({"iss": "https://as.example", "exp": 2_000_000_000u64});
            payload
                .as_object_mut()
                .unwrap()
                .extend(times.as_object().unwrap().clone());
            claims_from(payload)
        };
        let at = |secs: u64| Some(UNIX_EPOCH + Duration::from_secs(secs));
        let window = ClaimWindow::of(&with(serde_json::json!({})), 30);
        assert_eq!(window.until, at(2_000_000_030));
        assert_eq!(window.from, None);
        let both = serde_json::json!({"nbf": 1_700_000_100u64, "iat": 1_700_000_000u64});
        assert_eq!(ClaimWindow::of(&with(both), 30).from, at(1_700_000_070));
        let iat_later = serde_json::json!({"nbf": 1_700_000_000u64, "iat": 1_700_000_200u64});
        assert_eq!(ClaimWindow::of(&with(iat_later), 0).from, at(1_700_000_200));
    }

    #[test]
    fn tokens_sharing_a_tail_are_told_apart() {
        let cache = TokenCache::new(&TokenCachePolicy::default()).expect("enabled");
        let now = SystemTime::now();
        let tail = "x".repeat(HASHED_TAIL);
        let (one, two) = (format!("a.b.{tail}"), format!("c.d.{tail}"));
        let hasher = TailHash::default();
        assert_eq!(
            hasher.hash_one(one.as_bytes()),
            hasher.hash_one(two.as_bytes())
        );
        cache.insert(
            key(&one),
            true,
            claims(1),
            stamp(1),
            now,
            until(now + Duration::from_secs(60)),
        );
        cache.insert(
            key(&two),
            true,
            claims(2),
            stamp(1),
            now,
            until(now + Duration::from_secs(60)),
        );
        assert_eq!(
            cache.get(one.as_bytes()).expect("one").claims.jti(),
            Some("1")
        );
        assert_eq!(
            cache.get(two.as_bytes()).expect("two").claims.jti(),
            Some("2")
        );
        assert!(cache.get(format!("e.f.{tail}").as_bytes()).is_none());
    }

    #[test]
    fn tokens_verified_once_are_only_noted() {
        let cache = TokenCache::new(&TokenCachePolicy::default()).expect("enabled");
        let now = SystemTime::now();
        for n in 0..5_000 {
            let token = format!("h.p.{n:040}");
            cache.insert(
                key(&token),
                false,
                claims(n),
                stamp(1),
                now,
                until(now + Duration::from_secs(60)),
            );
        }
        assert_eq!(cache.len(), 0, "a flood of distinct tokens stores nothing");
        let token = format!("h.p.{:040}", 4_999);
        cache.insert(
            key(&token),
            false,
            claims(1),
            stamp(1),
            now,
            until(now + Duration::from_secs(60)),
        );
        assert!(
            cache.get(token.as_bytes()).is_some(),
            "stored when seen again"
        );
    }

    #[test]
    fn an_already_expired_token_is_not_stored() {
        let cache = TokenCache::new(&TokenCachePolicy::default()).expect("enabled");
        let now = SystemTime::now();
        for _ in 0..2 {
            cache.insert(key("a.b.c"), true, claims(1), stamp(1), now, until(now));
        }
        assert!(cache.get(b"a.b.c").is_none());
    }

    /// Stores the `n`th of a run of distinct tokens, all with `claims`, usable for a
    /// minute from `now`.
    fn store_distinct(cache: &TokenCache, n: u64, claims: &SmartClaims, now: SystemTime) {
        let token = format!("header.payload-{n}.signature");
        cache.insert(
            key(&token),
            true,
            claims.clone(),
            stamp(1),
            now,
            until(now + Duration::from_secs(60)),
        );
    }

    /// The bound is `max_entries` exactly, also when it does not divide by the number of
    /// shards: the store never holds more, and holds most of it once full.
    #[test]
    fn never_more_than_max_entries() {
        let shared = claims(0);
        let now = SystemTime::now();
        for capacity in [1u64, 2, 31, 33, 63, 100, 257, 1_001, 4_099] {
            let cache = TokenCache::new(&TokenCachePolicy::default().max_entries(capacity))
                .expect("enabled");
            for n in 0..capacity * 4 {
                store_distinct(&cache, n, &shared, now);
                assert!(cache.len() <= capacity, "{} > {capacity}", cache.len());
            }
            assert!(
                cache.len() * 10 >= capacity * 7,
                "{} of {capacity}",
                cache.len()
            );
        }
    }

    /// 100k distinct tokens into a cache of 1,000: once the pending maintenance has run
    /// (`len` runs it), never more than the capacity is held.
    #[test]
    fn capacity_holds_under_100k_distinct_tokens() {
        let capacity = 1_000;
        let cache =
            TokenCache::new(&TokenCachePolicy::default().max_entries(capacity)).expect("enabled");
        let shared = claims(0);
        let now = SystemTime::now();
        for n in 0..100_000u64 {
            store_distinct(&cache, n, &shared, now);
            if n % 10_000 == 9_999 {
                assert!(cache.len() <= capacity, "{} entries after {n}", cache.len());
            }
        }
        let held = cache.len();
        assert!(held <= capacity, "{held} entries");
        assert!(held > 0);
        // Most of these tokens were turned away or evicted by the store; their slots went
        // with them.
        for slot in cache.recent.slots.iter() {
            if let Some(entry) = &*slot.load() {
                assert!(
                    cache.store.contains_key(&entry.token[..]),
                    "a slot points at an entry the store dropped"
                );
            }
        }
    }

    /// A slot of `recent` answers only for its own token, and leaves with the entry:
    /// removed, replaced, or dropped by the store.
    #[test]
    fn recent_slots_follow_the_store() {
        let cache = TokenCache::new(&TokenCachePolicy::default()).expect("enabled");
        let now = SystemTime::now();
        let minute = Duration::from_secs(60);
        cache.insert(
            key("a.b.c"),
            true,
            claims(1),
            stamp(1),
            now,
            until(now + minute),
        );
        assert_eq!(
            cache.recent_len(),
            1,
            "a stored token takes its slot at once"
        );
        let first = cache.get(b"a.b.c").expect("hit");
        assert_eq!(first.claims.jti(), Some("1"));

        // Replaced: the slot points at the new entry, never the old one.
        cache.insert(
            key("a.b.c"),
            true,
            claims(2),
            stamp(2),
            now,
            until(now + minute),
        );
        cache.len();
        let second = cache.get(b"a.b.c").expect("hit");
        assert_eq!(second.claims.jti(), Some("2"));
        assert_eq!(second.key_generation, 2);

        cache.remove(b"a.b.c");
        assert_eq!(cache.recent_len(), 0);
        assert!(cache.get(b"a.b.c").is_none());

        // Swept out once unusable, without going through `remove`: its slot goes too.
        cache.insert(
            key("d.e.f"),
            true,
            claims(3),
            stamp(1),
            now,
            until(now + minute),
        );
        assert_eq!(cache.recent_len(), 1);
        let later = now + 2 * minute;
        cache.insert(
            key("g.h.i"),
            true,
            claims(4),
            stamp(1),
            later,
            until(later + minute),
        );
        assert_eq!(cache.len(), 1, "the expired entry was swept out");
        assert!(!cache.store.contains_key(&b"d.e.f"[..]));
        assert!(cache.get(b"d.e.f").is_none());
        assert_eq!(cache.recent_len(), 1, "only the new entry's slot is taken");
        assert!(cache.get(b"g.h.i").is_some());
    }

    /// Unusable entries are swept out at most once per `SWEEP_INTERVAL`, when a token is
    /// stored; usable ones stay.
    #[test]
    fn unusable_entries_are_swept_once_per_interval() {
        let cache = TokenCache::new(&TokenCachePolicy::default()).expect("enabled");
        let now = SystemTime::now();
        let second = Duration::from_secs(1);
        let store = |name: &str, at: SystemTime, lifetime: Duration| {
            cache.insert(
                key(name),
                true,
                claims(1),
                stamp(1),
                at,
                until(at + lifetime),
            );
        };
        store("short.lived.a", now, second);
        store("long.lived.b", now, SWEEP_INTERVAL * 10);
        // Due only SWEEP_INTERVAL after the first sweep: the expired entry stays for now.
        store("short.lived.c", now + 2 * second, second);
        assert_eq!(cache.len(), 3);
        let due = now + SWEEP_INTERVAL;
        store("long.lived.d", due, SWEEP_INTERVAL * 10);
        assert_eq!(cache.len(), 2, "both short-lived entries swept out");
        for kept in ["long.lived.b", "long.lived.d"] {
            assert!(cache.store.contains_key(kept.as_bytes()), "{kept}");
        }
        // A key set due for a refresh makes entries unusable too: they go with the sweep.
        cache.insert(
            key("stale.keys.e"),
            true,
            claims(1),
            KeySetStamp {
                generation: 1,
                fresh_until: due + second,
            },
            due,
            until(due + SWEEP_INTERVAL * 10),
        );
        assert_eq!(cache.len(), 3);
        store("long.lived.f", due + SWEEP_INTERVAL, SWEEP_INTERVAL * 10);
        assert!(!cache.store.contains_key(&b"stale.keys.e"[..]));
        assert_eq!(cache.len(), 3);
    }

    /// On a Tokio runtime the sweep runs on the blocking pool, not in the request that
    /// stores a token, and removes the same entries.
    #[tokio::test]
    async fn on_a_runtime_the_sweep_runs_on_the_blocking_pool() {
        let cache = TokenCache::new(&TokenCachePolicy::default()).expect("enabled");
        let now = SystemTime::now();
        let minute = Duration::from_secs(60);
        for (n, lifetime) in [(1, minute), (2, minute * 10), (3, minute)] {
            let token = format!("a.b.{n}");
            cache.insert(
                key(&token),
                true,
                claims(n),
                stamp(1),
                now,
                until(now + lifetime),
            );
        }
        assert_eq!(cache.len(), 3);
        let later = now + SWEEP_INTERVAL * 2;
        let sweep = cache
            .sweep_if_due(later)
            .expect("swept on the blocking pool");
        sweep.await.expect("the sweep ran");
        assert_eq!(cache.len(), 1);
        assert!(cache.store.contains_key(&b"a.b.2"[..]));
        assert!(cache.sweep_if_due(later).is_none(), "not due again yet");
    }

    /// Threads storing, removing and looking up tokens that share slots at the same
    /// time: every answer is the entry of exactly the token asked for.
    #[test]
    fn concurrent_use_never_mixes_tokens() {
        // 16 slots for 200 tokens: slots are shared and overwritten all the time.
        let cache = TokenCache::new(&TokenCachePolicy::default().max_entries(16)).expect("enabled");
        let tokens: Vec<String> = (0..200).map(|n| format!("h.p.{n:040}")).collect();
        let now = SystemTime::now();
        std::thread::scope(|scope| {
            for thread in 0..4u64 {
                let (cache, tokens) = (&cache, &tokens);
                scope.spawn(move || {
                    let mut hits = 0u32;
                    for step in 0..20_000u64 {
                        // Each group of five steps stores one token and looks it up
                        // twice; in between it looks up and removes other tokens, which
                        // the other threads are storing.
                        let group = step / 5;
                        let own = (group * 7 + thread * 13) % tokens.len() as u64;
                        let other = (own + 1 + step % 3) % tokens.len() as u64;
                        let look_up = |n: u64| {
                            let token = &tokens[n as usize];
                            let entry = cache.get(token.as_bytes())?;
                            assert_eq!(entry.claims.jti(), Some(n.to_string().as_str()));
                            assert_eq!(&*entry.token, token.as_bytes());
                            Some(())
                        };
                        match step % 5 {
                            0 => cache.insert(
                                key(&tokens[own as usize]),
                                true,
                                claims(own),
                                stamp(1),
                                now,
                                until(now + Duration::from_secs(60)),
                            ),
                            1 | 4 => hits += u32::from(look_up(own).is_some()),
                            2 => hits += u32::from(look_up(other).is_some()),
                            _ => cache.remove(tokens[other as usize].as_bytes()),
                        }
                    }
                    assert!(hits > 0, "no lookup ever found its token");
                });
            }
        });
        assert!(cache.len() <= 16);
    }

    /// A token found in the store but not in its slot (the slot was taken by another
    /// token) is put back into its slot by the lookup.
    #[test]
    fn a_store_hit_takes_the_slot_back() {
        let cache = TokenCache::new(&TokenCachePolicy::default().max_entries(1)).expect("enabled");
        assert_eq!(
            cache.recent.slots.len(),
            1,
            "one slot for a one-entry cache"
        );
        let now = SystemTime::now();
        cache.insert(
            key("a.b.c"),
            true,
            claims(1),
            stamp(1),
            now,
            until(now + Duration::from_secs(60)),
        );
        cache.recent.forget_token(b"a.b.c");
        assert_eq!(cache.recent_len(), 0);
        assert!(cache.get(b"x.y.z").is_none(), "another token misses");
        assert_eq!(cache.get(b"a.b.c").expect("hit").claims.jti(), Some("1"));
        assert_eq!(cache.recent_len(), 1);
    }
}
