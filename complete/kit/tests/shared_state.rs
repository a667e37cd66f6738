//! The kit's shared store (`kit::shared_state`) against a real
//! `redis-server` (Debian's package; `.ci/run` installs it), started on a
//! free loopback port and ended by its PID.

use std::time::{Duration, SystemTime};

use kit::shared_state::{Event, SharedApps, Unreachable};
use tokio::time::timeout;

// The harness's: its checks use more of it than these tests.
#[allow(dead_code)]
#[path = "../../../tests/harness/redis.rs"]
mod redis_server;

use redis_server::RedisServer;

#[tokio::test]
async fn the_lock_is_one_instances_and_only_its_holder_releases_it() {
    let redis = RedisServer::start().expect("a redis-server of the test's own");
    let (a, b) = (instance(&redis), instance(&redis));
    let lock = a.try_lock("hello", Duration::from_millis(300)).await;
    let lock = lock.expect("redis answers").expect("a takes the free lock");
    assert!(
        matches!(b.try_lock("hello", Duration::from_secs(5)).await, Ok(None)),
        "b took a lock that a holds"
    );
    // a's lock expires (a died while starting): b takes over, within 3 s.
    let taken = timeout(Duration::from_secs(3), async {
        loop {
            if let Ok(Some(taken)) = b.try_lock("hello", Duration::from_secs(5)).await {
                return taken;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("b takes the lock once a's has expired");
    // a, late, gives back what it no longer holds: b's stays.
    assert_eq!(a.release(lock).await, Ok(false));
    assert!(matches!(
        a.try_lock("hello", Duration::from_secs(5)).await,
        Ok(None)
    ));
    assert_eq!(b.release(taken).await, Ok(true));
    assert!(matches!(
        a.try_lock("hello", Duration::from_secs(5)).await,
        Ok(Some(_))
    ));
}

#[tokio::test]
async fn a_change_reaches_every_instance_and_stays_readable() {
    let redis = RedisServer::start().expect("a redis-server of the test's own");
    let (a, b) = (instance(&redis), instance(&redis));
    let mut changes = b.changes();
    let first = timeout(Duration::from_secs(5), changes.recv()).await;
    assert_eq!(
        first.expect("subscribed within 5 s"),
        Some(Event::Subscribed)
    );
    a.announce("hello", "awake", Some("http://127.0.0.1:9001"))
        .await
        .expect("redis answers");
    let change = timeout(Duration::from_secs(5), changes.recv()).await;
    match change.expect("the change within 5 s") {
        Some(Event::Changed(change)) => {
            assert_eq!(change.app, "hello");
            assert_eq!(change.state, "awake");
            assert_eq!(change.upstream.as_deref(), Some("http://127.0.0.1:9001"));
        }
        other => panic!("expected the change, got {other:?}"),
    }
    let status = b.status("hello").await.expect("redis answers");
    let status = status.expect("hello's state recorded");
    assert_eq!(status.state, "awake");
    assert_eq!(status.upstream.as_deref(), Some("http://127.0.0.1:9001"));
    assert_eq!(b.status("nobody").await, Ok(None));
}

#[tokio::test]
async fn the_last_request_seen_is_shared() {
    let redis = RedisServer::start().expect("a redis-server of the test's own");
    let (a, b) = (instance(&redis), instance(&redis));
    assert_eq!(b.last_seen("hello").await, Ok(None));
    let at = SystemTime::now();
    a.seen("hello", at).await.expect("redis answers");
    let seen = b.last_seen("hello").await.expect("redis answers");
    let seen = seen.expect("a's request is seen by b");
    let apart = at.duration_since(seen).unwrap_or_else(|err| err.duration());
    assert!(
        apart < Duration::from_millis(1),
        "recorded {seen:?} for {at:?}"
    );
}

#[tokio::test]
async fn redis_down_is_an_answer_not_a_wait() {
    let redis = RedisServer::start().expect("a redis-server of the test's own");
    let shared = instance(&redis);
    drop(redis);
    // Each operation is bounded (500 ms); 5 s here only keeps a broken
    // bound from hanging the test.
    let outcome = timeout(
        Duration::from_secs(5),
        shared.try_lock("hello", Duration::from_secs(5)),
    )
    .await;
    assert!(matches!(outcome, Ok(Err(Unreachable))), "got {outcome:?}");
    let again = timeout(Duration::from_secs(5), shared.status("hello")).await;
    assert!(matches!(again, Ok(Err(Unreachable))), "got {again:?}");
}

fn instance(redis: &RedisServer) -> SharedApps {
    SharedApps::new(&redis.url).expect("a valid redis URL")
}
