//! Abuse limits: how fast a session and a client address may send messages and create chats,
//! and how many reply streams one session may hold open.
use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    num::NonZeroU32,
    str::FromStr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    state::keyed::DefaultKeyedStateStore,
};

use crate::{error::AppError, store::Store};

/// A rate as written in the configuration: `30/min`, `5/s`, `200/h`. The whole amount may be
/// used at once; it then comes back evenly over the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("`{text}` is not a rate like 30/min, 5/s or 200/h");
        let (count, unit) = text.trim().split_once('/').ok_or_else(invalid)?;
        let count: NonZeroU32 = count.trim().parse().map_err(|_| invalid())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(invalid()),
        };
        Ok(Rate { count, per })
    }
}

impl Rate {
    /// How long one use takes to come back.
    fn per_use(self) -> Duration {
        self.per / self.count.get()
    }

    fn quota(self) -> Quota {
        Quota::with_period(self.per_use().max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(self.count))
            .allow_burst(self.count)
    }
}

/// What is being limited.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    /// A message sent, or a reply asked for again (each costs a model call).
    Send,
    /// A chat created.
    CreateChat,
    /// A shared link made (a copy of a chat is stored): counted with new chats.
    Share,
    /// A device link code made, looked at or used (so codes cannot be guessed): counted with
    /// new chats.
    Link,
}

type Limiter<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// One action's limits: per session and per address, counted here (SQLite: one process) or
/// in the database (PostgreSQL: every replica).
struct Pair {
    /// The allowances' names in the database (`send`, `chat`).
    name: &'static str,
    session: Rate,
    address: Rate,
    per_session: Limiter<String>,
    per_address: Limiter<IpAddr>,
}

impl Pair {
    fn new(name: &'static str, session: Rate, address: Rate) -> Self {
        Pair {
            name,
            session,
            address,
            per_session: RateLimiter::keyed(session.quota()),
            per_address: RateLimiter::keyed(address.quota()),
        }
    }

    /// The session's allowance, then the address's: how long to wait, if either is used up.
    /// The address is asked only when the session may go on, so a session over its limit does
    /// not use up the allowance of others at its address.
    async fn take(
        &self,
        shared: Option<&Store>,
        session: &str,
        address: IpAddr,
    ) -> Result<Option<Duration>, AppError> {
        let Some(store) = shared else {
            let refused = self
                .per_session
                .check_key(&session.to_owned())
                .and_then(|()| self.per_address.check_key(&address));
            return Ok(refused
                .err()
                .map(|not_until| not_until.wait_time_from(DefaultClock::default().now())));
        };
        let (name, session_rate, address_rate) = (self.name, self.session, self.address);
        let key = format!("{name}:session:{session}");
        if let Some(wait) = take_shared(store, &key, session_rate).await? {
            return Ok(Some(wait));
        }
        take_shared(store, &format!("{name}:address:{address}"), address_rate).await
    }
}

/// One address's allowance of what anyone may do without a session: opening shared links.
struct AddressOnly {
    name: &'static str,
    rate: Rate,
    limiter: Limiter<IpAddr>,
}

impl AddressOnly {
    fn new(name: &'static str, rate: Rate) -> Self {
        AddressOnly {
            name,
            rate,
            limiter: RateLimiter::keyed(rate.quota()),
        }
    }

    async fn take(
        &self,
        shared: Option<&Store>,
        address: IpAddr,
    ) -> Result<Option<Duration>, AppError> {
        match shared {
            Some(store) => {
                take_shared(
                    store,
                    &format!("{}:address:{address}", self.name),
                    self.rate,
                )
                .await
            }
            None => Ok(self
                .limiter
                .check_key(&address)
                .err()
                .map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))),
        }
    }
}

async fn take_shared(store: &Store, key: &str, rate: Rate) -> Result<Option<Duration>, AppError> {
    Ok(store.take_allowance(key, rate.per_use(), rate.per).await?)
}

pub struct RateLimitSettings {
    pub sends_per_session: Rate,
    pub sends_per_address: Rate,
    pub chats_per_session: Rate,
    pub chats_per_address: Rate,
    pub share_views_per_address: Rate,
}

/// Per-session and per-address rate limits; `None` when turned off.
///
/// With several replicas (PostgreSQL) the allowances are rows in the database
/// (`store/limits.rs`), so a session's limit holds whichever replica it reaches. nginx's
/// `limit_req` could not do this: it cannot read the encrypted session cookie, and each nginx
/// (an ingress runs several) counts alone. One statement per allowance, by the database's
/// clock.
#[derive(Clone)]
pub struct RateLimits {
    limits: Option<Arc<Limits>>,
}

struct Limits {
    sends: Pair,
    chats: Pair,
    share_views: AddressOnly,
    /// The database the allowances are kept in (PostgreSQL); `None`: in this process.
    shared: Option<Store>,
    token_guesses: TokenGuesses,
}

/// Wrong tokens per address: at most [`TOKEN_GUESSES`] in [`TOKEN_GUESS_WINDOW`], after which
/// the address may present no token at all (right or wrong) until the oldest of them is that old.
/// Refusing the right token too is the point: otherwise a guesser would still learn which guess
/// was right. Kept in each process, so with N replicas a guesser gets N times the allowance:
/// still nothing against a token of 16 characters or more.
#[derive(Default)]
struct TokenGuesses {
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

/// Wrong tokens an address may present in [`TOKEN_GUESS_WINDOW`].
pub const TOKEN_GUESSES: usize = 10;
pub const TOKEN_GUESS_WINDOW: Duration = Duration::from_secs(600);
/// Addresses remembered at most; past it the one whose last failure is oldest is forgotten.
const TOKEN_GUESS_ADDRESSES: usize = 10_000;

impl TokenGuesses {
    fn wait(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let times = failures.get_mut(&address)?;
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= TOKEN_GUESS_WINDOW)
        {
            times.pop_front();
        }
        let oldest = *times.front()?;
        (times.len() >= TOKEN_GUESSES)
            .then(|| TOKEN_GUESS_WINDOW.saturating_sub(now.duration_since(oldest)))
    }

    fn failed(&self, address: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= TOKEN_GUESS_ADDRESSES && !failures.contains_key(&address) {
            let stalest = failures
                .iter()
                .min_by_key(|(_, times)| times.back().copied())
                .map(|(a, _)| *a);
            if let Some(stalest) = stalest {
                failures.remove(&stalest);
            }
        }
        let times = failures.entry(address).or_default();
        times.push_back(now);
        // Only the last TOKEN_GUESSES matter.
        while times.len() > TOKEN_GUESSES {
            times.pop_front();
        }
    }

    fn forget_idle(&self, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.retain(|_, times| {
            times
                .back()
                .is_some_and(|t| now.duration_since(*t) < TOKEN_GUESS_WINDOW)
        });
    }
}

impl RateLimits {
    /// Limits kept in `shared` when given (PostgreSQL), else in this process.
    pub fn new(settings: Option<RateLimitSettings>, shared: Option<Store>) -> Self {
        RateLimits {
            limits: settings.map(|s| {
                Arc::new(Limits {
                    sends: Pair::new("send", s.sends_per_session, s.sends_per_address),
                    chats: Pair::new("chat", s.chats_per_session, s.chats_per_address),
                    share_views: AddressOnly::new("share_view", s.share_views_per_address),
                    shared,
                    token_guesses: TokenGuesses::default(),
                })
            }),
        }
    }

    /// Takes one `action` from the session's and the address's allowance, or says how long to
    /// wait. The address limit is looser: several people can share one address.
    pub async fn check(
        &self,
        action: Action,
        session: &str,
        address: IpAddr,
    ) -> Result<(), AppError> {
        let Some(limits) = &self.limits else {
            return Ok(());
        };
        let pair = match action {
            Action::Send => &limits.sends,
            Action::CreateChat | Action::Share | Action::Link => &limits.chats,
        };
        let Some(wait) = pair.take(limits.shared.as_ref(), session, address).await? else {
            return Ok(());
        };
        let what = match action {
            Action::Send => "messages",
            Action::CreateChat => "new chats",
            Action::Share => "new chats or links",
            Action::Link => "device links or link codes tried",
        };
        Err(refused(what, wait))
    }

    /// Takes one view of a shared link from the address's allowance (anyone may open a link;
    /// each view not in the page cache reads and renders a snapshot).
    pub async fn check_share_view(&self, address: IpAddr) -> Result<(), AppError> {
        let Some(limits) = &self.limits else {
            return Ok(());
        };
        match limits
            .share_views
            .take(limits.shared.as_ref(), address)
            .await?
        {
            None => Ok(()),
            Some(wait) => Err(refused("shared pages opened", wait)),
        }
    }

    /// Whether `address` has used up its wrong tokens (API tokens, `ADMIN_TOKEN`): then it may
    /// present none until the returned time has passed.
    pub fn check_token_guesses(&self, address: IpAddr) -> Result<(), AppError> {
        let Some(limits) = &self.limits else {
            return Ok(());
        };
        match limits.token_guesses.wait(address, Instant::now()) {
            None => Ok(()),
            Some(wait) => Err(refused("wrong tokens", wait)),
        }
    }

    /// Counts a wrong token presented from `address`.
    pub fn token_guess_failed(&self, address: IpAddr) {
        if let Some(limits) = &self.limits {
            limits.token_guesses.failed(address, Instant::now());
        }
    }

    /// Forgets allowances that are whole again, so memory (or the table) follows recent
    /// activity only.
    pub async fn forget_idle(&self) {
        let Some(limits) = &self.limits else { return };
        limits.token_guesses.forget_idle(Instant::now());
        if let Some(store) = &limits.shared {
            if let Err(e) = store.forget_full_allowances().await {
                tracing::warn!(error = %e, "forgetting whole rate-limit allowances");
            }
            return;
        }
        for pair in [&limits.sends, &limits.chats] {
            pair.per_session.retain_recent();
            pair.per_address.retain_recent();
        }
        limits.share_views.limiter.retain_recent();
    }
}

/// The refusal of `what` (plural) until `wait` has passed.
fn refused(what: &str, wait: Duration) -> AppError {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    AppError::RateLimited {
        message: format!(
            "Too many {what} in a short time. Please wait {seconds} s and try again; nothing you wrote was lost."
        ),
        retry_after: Duration::from_secs(seconds.max(1)),
    }
}

/// Open reply streams per session, bounded: each holds a connection and a task.
#[derive(Clone)]
pub struct StreamSlots {
    max: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open stream; the slot is given back when it is dropped (the stream ended or the browser
/// went away).
pub struct StreamSlot {
    session: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl StreamSlots {
    pub fn new(max: usize) -> Self {
        StreamSlots {
            max,
            open: Arc::default(),
        }
    }

    pub fn acquire(&self, session: &str) -> Result<StreamSlot, AppError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(session.to_owned()).or_insert(0);
        if *count >= self.max {
            return Err(AppError::RateLimited {
                message: format!(
                    "Too many reply streams are open for you ({}). Close some tabs and reload.",
                    self.max
                ),
                retry_after: Duration::from_secs(5),
            });
        }
        *count += 1;
        Ok(StreamSlot {
            session: session.to_owned(),
            open: self.open.clone(),
        })
    }

    #[cfg(test)]
    fn open_for(&self, session: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(session).copied().unwrap_or(0)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.session) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.session);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_bad_ones_say_why() {
        assert_eq!(
            "30/min".parse::<Rate>().unwrap(),
            Rate {
                count: NonZeroU32::new(30).unwrap(),
                per: Duration::from_secs(60)
            }
        );
        assert_eq!("5/s".parse::<Rate>().unwrap().per, Duration::from_secs(1));
        assert_eq!(
            "200/h".parse::<Rate>().unwrap().per,
            Duration::from_secs(3600)
        );
        for bad in ["", "30", "0/min", "x/min", "30/week", "-1/s"] {
            let error = bad.parse::<Rate>().unwrap_err();
            assert!(error.contains("is not a rate"), "{bad}: {error}");
        }
    }

    #[tokio::test]
    async fn a_session_gets_its_burst_then_waits_and_others_are_unaffected() {
        let limits = RateLimits::new(
            Some(RateLimitSettings {
                sends_per_session: "3/min".parse().unwrap(),
                sends_per_address: "100/min".parse().unwrap(),
                chats_per_session: "1/min".parse().unwrap(),
                chats_per_address: "100/min".parse().unwrap(),
                share_views_per_address: "2/min".parse().unwrap(),
            }),
            None,
        );
        let address: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            limits.check(Action::Send, "a", address).await.unwrap();
        }
        match limits.check(Action::Send, "a", address).await {
            Err(AppError::RateLimited {
                retry_after,
                message,
            }) => {
                assert!((1..=20).contains(&retry_after.as_secs()), "{retry_after:?}");
                assert!(message.contains("Too many messages"), "{message}");
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        // Another session, and another action of the same session, have their own allowance.
        limits.check(Action::Send, "b", address).await.unwrap();
        limits
            .check(Action::CreateChat, "a", address)
            .await
            .unwrap();
        assert!(
            limits
                .check(Action::CreateChat, "a", address)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn an_address_is_limited_across_sessions() {
        let limits = RateLimits::new(
            Some(RateLimitSettings {
                sends_per_session: "100/min".parse().unwrap(),
                sends_per_address: "2/min".parse().unwrap(),
                chats_per_session: "100/min".parse().unwrap(),
                chats_per_address: "100/min".parse().unwrap(),
                share_views_per_address: "2/min".parse().unwrap(),
            }),
            None,
        );
        let address: IpAddr = "192.0.2.7".parse().unwrap();
        limits.check(Action::Send, "a", address).await.unwrap();
        limits.check(Action::Send, "b", address).await.unwrap();
        assert!(limits.check(Action::Send, "c", address).await.is_err());
        limits
            .check(Action::Send, "c", "192.0.2.8".parse().unwrap())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn share_views_are_limited_per_address() {
        let limits = RateLimits::new(
            Some(RateLimitSettings {
                sends_per_session: "100/min".parse().unwrap(),
                sends_per_address: "100/min".parse().unwrap(),
                chats_per_session: "100/min".parse().unwrap(),
                chats_per_address: "100/min".parse().unwrap(),
                share_views_per_address: "2/min".parse().unwrap(),
            }),
            None,
        );
        let address: IpAddr = "192.0.2.9".parse().unwrap();
        limits.check_share_view(address).await.unwrap();
        limits.check_share_view(address).await.unwrap();
        match limits.check_share_view(address).await {
            Err(AppError::RateLimited { message, .. }) => {
                assert!(message.contains("shared pages"), "{message}")
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        let other: IpAddr = "192.0.2.10".parse().unwrap();
        limits.check_share_view(other).await.unwrap();
    }

    #[tokio::test]
    async fn turned_off_limits_never_refuse() {
        let limits = RateLimits::new(None, None);
        for _ in 0..1000 {
            limits
                .check(Action::Send, "a", "192.0.2.1".parse().unwrap())
                .await
                .unwrap();
        }
    }

    #[test]
    fn stream_slots_are_given_back_when_dropped() {
        let slots = StreamSlots::new(2);
        let first = slots.acquire("s").unwrap();
        let _second = slots.acquire("s").unwrap();
        assert!(matches!(
            slots.acquire("s"),
            Err(AppError::RateLimited { .. })
        ));
        let _other = slots.acquire("t").unwrap();
        drop(first);
        assert_eq!(slots.open_for("s"), 1);
        let _third = slots.acquire("s").unwrap();
    }

    #[test]
    fn wrong_tokens_close_an_address_for_the_window_then_it_reopens() {
        let guesses = TokenGuesses::default();
        let (here, elsewhere) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let start = Instant::now();
        for i in 0..TOKEN_GUESSES {
            assert_eq!(guesses.wait(here, start), None, "after {i} wrong tokens");
            guesses.failed(here, start + Duration::from_secs(i as u64));
        }
        let later = start + Duration::from_secs(60);
        let wait = guesses
            .wait(here, later)
            .expect("closed after the last allowed guess");
        assert_eq!(wait, TOKEN_GUESS_WINDOW - Duration::from_secs(60));
        assert_eq!(
            guesses.wait(elsewhere, later),
            None,
            "other addresses are open"
        );
        // Once the first failure is a window old, one more guess is allowed.
        let reopened = start + TOKEN_GUESS_WINDOW;
        assert_eq!(guesses.wait(here, reopened), None);
        guesses.failed(here, reopened);
        assert!(guesses.wait(here, reopened).is_some());
        guesses.forget_idle(reopened + TOKEN_GUESS_WINDOW);
        assert!(guesses.failures.lock().unwrap().is_empty());
    }

    #[test]
    fn wrong_tokens_remember_a_bounded_number_of_addresses() {
        let guesses = TokenGuesses::default();
        let start = Instant::now();
        for i in 0..(TOKEN_GUESS_ADDRESSES as u32 + 5) {
            guesses.failed(IpAddr::from(i.to_be_bytes()), start);
        }
        assert_eq!(
            guesses.failures.lock().unwrap().len(),
            TOKEN_GUESS_ADDRESSES
        );
    }
}
