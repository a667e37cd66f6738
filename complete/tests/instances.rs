//! Step 16's one start among every proxy (`complete::instances::start_once`)
//! against a real `redis-server` (Debian's package; `.ci/run` installs it),
//! started on a free loopback port and ended by its PID.

use std::time::Duration;

use complete::instances::start_once;
use kit::shared_state::SharedApps;
use tokio::time::timeout;

// The harness's: its checks use more of it than these tests.
#[allow(dead_code)]
#[path = "../../tests/harness/redis.rs"]
mod redis_server;

use redis_server::RedisServer;

fn instance(redis: &RedisServer) -> SharedApps {
    SharedApps::new(&redis.url).expect("a valid redis URL")
}

#[tokio::test]
async fn fifty_first_requests_on_two_instances_start_the_app_once() {
    let redis = RedisServer::start().expect("a redis-server of the test's own");
    let (a, b) = (
        std::sync::Arc::new(instance(&redis)),
        std::sync::Arc::new(instance(&redis)),
    );
    let launches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut starts = tokio::task::JoinSet::new();
    for request in 0..50 {
        let shared = if request % 2 == 0 {
            a.clone()
        } else {
            b.clone()
        };
        let launches = launches.clone();
        starts.spawn(async move {
            start_once(&shared, "hello", Duration::from_secs(5), || async move {
                launches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // A start that takes a while: the others come meanwhile.
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok::<_, String>("http://127.0.0.1:9001".to_string())
            })
            .await
        });
    }
    let outcomes = timeout(Duration::from_secs(20), starts.join_all())
        .await
        .expect("every start within 20 s");
    assert!(
        outcomes
            .iter()
            .all(|outcome| outcome.as_deref() == Ok("http://127.0.0.1:9001")),
        "every request gets the one start's upstream: {outcomes:?}"
    );
    assert_eq!(
        launches.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "started more than once"
    );
}

#[tokio::test]
async fn a_failed_start_is_every_instances_answer() {
    let redis = RedisServer::start().expect("a redis-server of the test's own");
    let (a, b) = (instance(&redis), instance(&redis));
    let (began, begun) = tokio::sync::oneshot::channel();
    let failing = start_once(&a, "broken", Duration::from_secs(5), || async move {
        let _ = began.send(());
        // A start that takes a while, then fails.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Err::<String, _>("exit status 3".to_string())
    });
    let waiting = async {
        // b comes while a starts it.
        let _ = begun.await;
        start_once(&b, "broken", Duration::from_secs(5), || async {
            Ok::<_, String>("b must not start it".to_string())
        })
        .await
    };
    let (failed, waited) = timeout(Duration::from_secs(10), async {
        tokio::join!(failing, waiting)
    })
    .await
    .expect("both within 10 s");
    assert_eq!(failed, Err("exit status 3".to_string()));
    assert!(waited.is_err(), "b should get the failure, got {waited:?}");
}

#[tokio::test]
async fn redis_down_starts_alone() {
    let redis = RedisServer::start().expect("a redis-server of the test's own");
    let shared = instance(&redis);
    drop(redis);
    let started = timeout(
        Duration::from_secs(5),
        start_once(&shared, "hello", Duration::from_secs(5), || async {
            Ok::<_, String>("alone".to_string())
        }),
    )
    .await;
    assert_eq!(started, Ok(Ok("alone".to_string())));
}
