//! Apps' state shared between several proxy instances, in Redis (or
//! Valkey, the same protocol): an existing, trusted store rather than a
//! protocol of our own between instances, as Paastis and Sablier do.
//!
//! What lives there, per app (`NAME` below), under a prefix:
//! - `app:NAME`, a hash: `state` (`asleep`, `starting`, `awake`,
//!   `stopping`), `since` (Unix milliseconds), `upstream` while awake;
//! - `seen:NAME`: the last time any instance saw a request for it (each
//!   instance writes at most once a second, never per request);
//! - `lock:NAME`: who may start or stop it now: `SET key token NX PX ttl`,
//!   released only by its holder (the token is checked by a script); a
//!   lease of 3 s ([`LEASE`]) that its holder renews while it works, so a
//!   holder that dies lets it expire, and another instance takes over;
//! - the channel `changes`: `NAME STATE [UPSTREAM]`, published with every
//!   change, so that a request held on one instance is released when
//!   another instance's start completes.
//!
//! Redis down or unreachable is an answer too ([`Unreachable`]): every
//! operation is bounded in time, and the caller then decides locally. A
//! connection that failed is opened again at most once a second; the
//! first failure and the recovery are logged, not each request.
//!
//! Kit of step 16 (whose lesson is how proxies agree on an app: who
//! starts it, when it may stop); steps 12 and 13 keep their apps' state in
//! their own memory.

use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// How long one Redis operation may take before the caller decides alone.
const PATIENCE: Duration = Duration::from_millis(500);

/// How often a lost connection is tried again, at most.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// How long a lock lives unless its holder renews it (every third of it,
/// while it starts or stops the app): a holder that dies lets another
/// instance take over this long after, however long starts may take.
pub const LEASE: Duration = Duration::from_secs(3);

/// Redis did not answer in time, or at all: decide locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreachable;

/// An app's state as the instances agree on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedStatus {
    pub state: String,
    pub since: SystemTime,
    pub upstream: Option<String>,
}

/// What the subscription to changes brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Subscribed (again): changes published before are not coming, so
    /// read the states afresh ([`SharedApps::status`]).
    Subscribed,
    Changed(Change),
}

/// A change another instance (or this one) published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub app: String,
    pub state: String,
    pub upstream: Option<String>,
}

/// The right to start or stop one app, until it is released or its time
/// runs out.
#[derive(Debug)]
pub struct Lock {
    key: String,
    token: String,
}

/// The instances' shared store.
pub struct SharedApps {
    client: redis::Client,
    /// Keys and channel start with it: several proxies may share a Redis.
    prefix: String,
    /// Who holds a lock: this instance, with a random part (two instances
    /// on one machine, or a restart, never share one).
    instance: String,
    connection: Mutex<Connection>,
    /// Whether the last operation reached Redis: the change is logged.
    reachable: AtomicBool,
}

/// The open connection, or when the last attempt failed.
enum Connection {
    Open(MultiplexedConnection),
    Closed { tried: Option<Instant> },
}

impl SharedApps {
    /// `url` is `redis://HOST:PORT/DB` (checked here, connected later: a
    /// proxy starts even with Redis down).
    pub fn new(url: &str) -> Result<SharedApps, String> {
        let client = redis::Client::open(url).map_err(|err| format!("redis {url:?}: {err}"))?;
        let random: u64 = std::collections::hash_map::RandomState::new()
            .hash_one(SystemTime::now())
            .wrapping_add(u64::from(std::process::id()));
        Ok(SharedApps {
            client,
            prefix: "reverse-proxy-workshop:".into(),
            instance: format!("{}-{random:016x}", std::process::id()),
            connection: Mutex::new(Connection::Closed { tried: None }),
            reachable: AtomicBool::new(true),
        })
    }

    // ANCHOR: lock
    /// Takes the app's lock for `ttl` if no instance holds it: `None` if
    /// one does.
    pub async fn try_lock(&self, app: &str, ttl: Duration) -> Result<Option<Lock>, Unreachable> {
        let lock = Lock {
            key: format!("{}lock:{app}", self.prefix),
            token: self.instance.clone(),
        };
        let mut set = redis::cmd("SET");
        set.arg(&lock.key)
            .arg(&lock.token)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        let taken: Option<String> = self.run(&set).await?;
        Ok(taken.map(|_| lock))
    }
    // ANCHOR_END: lock

    // ANCHOR: release

    /// Gives the lock back, if it is still ours (it may have expired and
    /// been taken by another instance meanwhile: theirs stays).
    pub async fn release(&self, lock: Lock) -> Result<bool, Unreachable> {
        let script = redis::Script::new(
            r"if redis.call('GET', KEYS[1]) == ARGV[1] then
                  return redis.call('DEL', KEYS[1])
              end
              return 0",
        );
        let mut invocation = script.key(&lock.key);
        invocation.arg(&lock.token);
        let deleted: i64 = self
            .bounded(|mut redis| async move { invocation.invoke_async(&mut redis).await })
            .await?;
        Ok(deleted == 1)
    }
    // ANCHOR_END: release

    // ANCHOR: while_holding
    /// Runs `work`, renewing `lock` every third of its lease meanwhile: a
    /// start may take longer than the lease, its holder's death may not.
    pub async fn while_holding<T>(&self, lock: &Lock, work: impl Future<Output = T>) -> T {
        let renewing = async {
            let mut every = tokio::time::interval(LEASE / 3);
            every.tick().await;
            // Until `work` ends (the select drops this).
            loop {
                every.tick().await;
                // Lost (expired and taken) or Redis down: nothing to do but
                // finish; the outcome is announced all the same.
                let _ = self.renew(lock).await;
            }
        };
        tokio::select! {
            done = work => done,
            never = renewing => never,
        }
    }
    // ANCHOR_END: while_holding

    /// Extends `lock` by a lease, if it is still ours.
    async fn renew(&self, lock: &Lock) -> Result<bool, Unreachable> {
        let script = redis::Script::new(
            r"if redis.call('GET', KEYS[1]) == ARGV[1] then
                  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
              end
              return 0",
        );
        let mut invocation = script.key(&lock.key);
        invocation.arg(&lock.token).arg(LEASE.as_millis() as u64);
        let renewed: i64 = self
            .bounded(|mut redis| async move { invocation.invoke_async(&mut redis).await })
            .await?;
        Ok(renewed == 1)
    }

    /// Records the app's new state and tells every instance.
    pub async fn announce(
        &self,
        app: &str,
        state: &str,
        upstream: Option<&str>,
    ) -> Result<(), Unreachable> {
        let key = format!("{}app:{app}", self.prefix);
        let since = unix_millis(SystemTime::now());
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(&key)
            .arg("state")
            .arg(state)
            .arg("since")
            .arg(since)
            .ignore();
        match upstream {
            Some(upstream) => pipe.cmd("HSET").arg(&key).arg("upstream").arg(upstream),
            None => pipe.cmd("HDEL").arg(&key).arg("upstream"),
        }
        .ignore();
        let message = match upstream {
            Some(upstream) => format!("{app} {state} {upstream}"),
            None => format!("{app} {state}"),
        };
        pipe.cmd("PUBLISH")
            .arg(self.channel())
            .arg(message)
            .ignore();
        self.run_pipe(&pipe).await
    }

    /// The app's state as the instances last agreed on it (`None`: never
    /// recorded).
    pub async fn status(&self, app: &str) -> Result<Option<SharedStatus>, Unreachable> {
        let mut get = redis::cmd("HGETALL");
        get.arg(format!("{}app:{app}", self.prefix));
        let fields: std::collections::HashMap<String, String> = self.run(&get).await?;
        let Some(state) = fields.get("state") else {
            return Ok(None);
        };
        let since = fields
            .get("since")
            .and_then(|millis| millis.parse().ok())
            .map_or(UNIX_EPOCH, |millis| {
                UNIX_EPOCH + Duration::from_millis(millis)
            });
        Ok(Some(SharedStatus {
            state: state.clone(),
            since,
            upstream: fields.get("upstream").cloned(),
        }))
    }

    /// A request for the app was seen at `at` (the caller writes at most
    /// once a second).
    pub async fn seen(&self, app: &str, at: SystemTime) -> Result<(), Unreachable> {
        let mut set = redis::cmd("SET");
        set.arg(format!("{}seen:{app}", self.prefix))
            .arg(unix_millis(at));
        self.run(&set).await
    }

    /// When any instance last saw a request for the app.
    pub async fn last_seen(&self, app: &str) -> Result<Option<SystemTime>, Unreachable> {
        let mut get = redis::cmd("GET");
        get.arg(format!("{}seen:{app}", self.prefix));
        let millis: Option<u64> = self.run(&get).await?;
        Ok(millis.map(|millis| UNIX_EPOCH + Duration::from_millis(millis)))
    }

    /// Every change published from now on, by any instance, this one
    /// included, each subscription first. A lost subscription is made
    /// again (once a second at most); the task ends when the receiver is
    /// dropped.
    pub fn changes(&self) -> mpsc::Receiver<Event> {
        let (send, receive) = mpsc::channel(256);
        let (client, channel) = (self.client.clone(), self.channel());
        tokio::spawn(async move {
            let mut said = false;
            // Bounded by the receiver: once it is dropped, this ends.
            while !send.is_closed() {
                // Said once per outage, not every second.
                if let Err(err) = forward_changes(&client, &channel, &send, &mut said).await
                    && !std::mem::replace(&mut said, true)
                {
                    warn!("redis: no news of the other instances: {err}");
                }
                tokio::time::sleep(RECONNECT_EVERY).await;
            }
        });
        receive
    }

    fn channel(&self) -> String {
        format!("{}changes", self.prefix)
    }

    async fn run<T: redis::FromRedisValue + Send + 'static>(
        &self,
        command: &redis::Cmd,
    ) -> Result<T, Unreachable> {
        let command = command.clone();
        self.bounded(|mut redis| async move { command.query_async(&mut redis).await })
            .await
    }

    async fn run_pipe(&self, pipe: &redis::Pipeline) -> Result<(), Unreachable> {
        let pipe = pipe.clone();
        self.bounded(|mut redis| async move { pipe.query_async(&mut redis).await })
            .await
    }

    /// Runs one operation on the connection (opened if need be), within
    /// `PATIENCE`; notes whether Redis answered.
    async fn bounded<T, F, Fut>(&self, operation: F) -> Result<T, Unreachable>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let attempt = async {
            let redis = self.connected().await?;
            let done = operation(redis).await;
            // The connection broke (Redis restarted, say): the next
            // operation opens another at once.
            if done.is_err() {
                *self.locked() = Connection::Closed { tried: None };
            }
            done.map_err(|err| err.to_string())
        };
        let outcome = match tokio::time::timeout(PATIENCE, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => {
                *self.locked() = Connection::Closed {
                    tried: Some(Instant::now()),
                };
                Err(format!("no answer within {} ms", PATIENCE.as_millis()))
            }
        };
        match outcome {
            Ok(value) => {
                if !self.reachable.swap(true, Ordering::Relaxed) {
                    info!("redis: reachable again, the apps' state is shared again");
                }
                Ok(value)
            }
            Err(why) => {
                if self.reachable.swap(false, Ordering::Relaxed) {
                    warn!("redis: {why}: each instance decides alone until it is back");
                }
                Err(Unreachable)
            }
        }
    }

    /// The open connection, or a new one (not more than once a second).
    async fn connected(&self) -> Result<MultiplexedConnection, String> {
        match &*self.locked() {
            Connection::Open(redis) => return Ok(redis.clone()),
            Connection::Closed { tried: Some(at) } if at.elapsed() < RECONNECT_EVERY => {
                return Err("not reachable a moment ago".into());
            }
            Connection::Closed { .. } => {}
        }
        match self.client.get_multiplexed_async_connection().await {
            Ok(redis) => {
                *self.locked() = Connection::Open(redis.clone());
                Ok(redis)
            }
            Err(err) => {
                *self.locked() = Connection::Closed {
                    tried: Some(Instant::now()),
                };
                Err(err.to_string())
            }
        }
    }

    /// The connection's slot, even if a thread panicked while holding it.
    fn locked(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Subscribes to `channel` and forwards its messages, until the
/// connection breaks or nobody listens.
async fn forward_changes(
    client: &redis::Client,
    channel: &str,
    send: &mpsc::Sender<Event>,
    said: &mut bool,
) -> redis::RedisResult<()> {
    let mut subscription = client.get_async_pubsub().await?;
    subscription.subscribe(channel).await?;
    // The next outage is news again.
    *said = false;
    if send.send(Event::Subscribed).await.is_err() {
        return Ok(());
    }
    let mut messages = subscription.on_message();
    loop {
        // The receiver gone (a start that ended): the subscription, and
        // its connection to Redis, end now, not at the next message.
        let message = tokio::select! {
            message = messages.next() => message,
            () = send.closed() => return Ok(()),
        };
        let Some(message) = message else {
            return Ok(());
        };
        let Ok(text) = message.get_payload::<String>() else {
            continue;
        };
        if let Some(change) = parse_change(&text)
            && send.send(Event::Changed(change)).await.is_err()
        {
            return Ok(());
        }
    }
}

/// `NAME STATE [UPSTREAM]`; anything else is not ours and is skipped.
fn parse_change(text: &str) -> Option<Change> {
    let mut words = text.split(' ');
    let app = words.next().filter(|app| !app.is_empty())?.to_string();
    let state = words.next()?.to_string();
    let upstream = words.next().map(str::to_string);
    Some(Change {
        app,
        state,
        upstream,
    })
}

fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_read_back() {
        assert_eq!(
            parse_change("hello awake http://127.0.0.1:9001"),
            Some(Change {
                app: "hello".into(),
                state: "awake".into(),
                upstream: Some("http://127.0.0.1:9001".into()),
            })
        );
        assert_eq!(
            parse_change("hello asleep").map(|change| change.upstream),
            Some(None)
        );
        assert_eq!(parse_change(""), None);
        assert_eq!(parse_change("lonely"), None);
    }

    #[test]
    fn a_bad_url_is_said_at_once() {
        assert!(SharedApps::new("not a url").is_err());
        assert!(SharedApps::new("redis://127.0.0.1:6379/0").is_ok());
    }
}
