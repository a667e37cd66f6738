//! Step 16: several proxies share the apps started by commands through
//! Redis (`--redis URL`; the config file's `[state] redis` from step 17
//! on). Each check starts its own redis-server and two proxies.

use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;

use super::on_demand::{ask_app, count_answers, echo, websocket_to, written_requests};
use crate::ensure;
use crate::harness::client::{admin_request, excerpt, fetch};
use crate::harness::folder::FileIn;
use crate::harness::logs::logged;
use crate::harness::redis::RedisServer;
use crate::harness::{Ctx, Failure, OrFail, Outcome, Proxy, fail, within};

/// The status API's token in these checks.
const TOKEN: &str = "s3cret-token";

/// Two proxies with the same apps file and one redis-server of the check's
/// own.
struct Instances {
    redis: RedisServer,
    a: Proxy,
    b: Proxy,
    apps: FileIn,
}

impl Instances {
    /// A file of the apps' folder (`{dir}` in the apps file).
    fn file(&self, name: &str) -> PathBuf {
        self.apps.folder().file(name)
    }
}

/// Two proxies with `flags`, `--redis` naming a redis-server of the
/// check's own, and `apps` (`{dir}`: a folder of the check's own,
/// `{origin}`: the demo origin) as their apps file.
async fn two_instances(ctx: &Ctx, flags: &[&str], apps: &str) -> Result<Instances, Failure> {
    let sharing = Sharing::new(ctx, flags, apps)?;
    let a = sharing.instance(ctx).await?;
    let b = sharing.instance(ctx).await?;
    // Each proxy follows the others' news through a subscription it makes
    // once started: what was published before is not its to hear (it
    // adopts such an app at its next request for it). These checks start
    // from two proxies that hear each other.
    within(10, "both proxies to subscribe to the news", async {
        // Bounded by `within`: a look every 20 ms.
        while sharing.subscribers()? < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    })
    .await?;
    Ok(Instances {
        redis: sharing.redis,
        a,
        b,
        apps: sharing.apps,
    })
}

/// A redis-server and an apps file, and the flags of a proxy that shares
/// them: proxies can be started one at a time.
struct Sharing {
    redis: RedisServer,
    apps: FileIn,
    args: Vec<String>,
}

impl Sharing {
    fn new(ctx: &Ctx, flags: &[&str], apps: &str) -> Result<Sharing, Failure> {
        let redis = RedisServer::start().map_err(fail)?;
        let file = FileIn::new("shared", "apps.toml", "")?;
        let text = apps
            .replace("{dir}", &file.folder().path().display().to_string())
            .replace("{origin}", &ctx.origin.to_string());
        file.rewrite(&text)?;
        let mut args = vec![
            "--redis".to_string(),
            redis.url.clone(),
            "--apps".to_string(),
            file.arg(),
            "--upstream".to_string(),
            format!("http://{}", ctx.origin),
        ];
        args.extend(flags.iter().map(|flag| flag.to_string()));
        Ok(Sharing {
            redis,
            apps: file,
            args,
        })
    }

    async fn instance(&self, ctx: &Ctx) -> Result<Proxy, Failure> {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        ctx.spawn_ready(&args, "apps:", "--redis URL --apps FILE")
            .await
    }

    /// How many subscribers the proxies' channel of news has.
    fn subscribers(&self) -> Result<u64, Failure> {
        let answer = self
            .redis
            .ask("PUBSUB NUMSUB reverse-proxy-workshop:changes")
            .map_err(fail)?;
        // `*2 $N channel :COUNT`: the count is the last line.
        answer
            .trim_end()
            .rsplit_once(':')
            .and_then(|(_, count)| count.parse().ok())
            .ok_or_else(|| fail(format!("PUBSUB NUMSUB answered {answer:?}")))
    }
}

/// Waits until `proxy`'s status API says `name` is awake.
async fn awake_on(proxy: &Proxy, name: &str) -> Outcome {
    within(5, &format!("the status API to show {name} awake"), async {
        // Bounded by `within`: a look every 50 ms.
        loop {
            let request = admin_request(proxy.addr, "GET", "/_proxy/apps", Some(TOKEN));
            let listed = fetch(proxy.addr, request).await?;
            let awake = listed.json().ok().is_some_and(|json| {
                json["apps"].as_array().is_some_and(|apps| {
                    apps.iter()
                        .any(|app| app["name"] == name && app["state"] == "awake")
                })
            });
            if awake {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// Until a file the apps write has a line (`seconds` at most).
async fn until_written(path: &PathBuf, what: &str, seconds: u64) -> Outcome {
    within(seconds, what, async {
        // Bounded by `within`: a look every 50 ms.
        while lines(path) == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    })
    .await
}

/// The lines of a file the apps write (none if it is not there yet).
fn lines(path: &PathBuf) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .count()
}

/// `--redis`: two instances with the same apps file (an app started by
/// commands, its upstream the demo origin) share the app's state: 50 first
/// requests, one of two to each, are all answered, and the start command
/// ran once.
pub async fn apps_shared_start_once(ctx: Ctx) -> Outcome {
    // Half a second to start: requests come to both instances meanwhile.
    let apps = r#"[[apps]]
name = "hello"
start = "echo started >> {dir}/hello.starts; sleep 0.5"
stop = "true"
upstream = "http://{origin}"
"#;
    // Every field bound: what `..` leaves out is dropped at once (Redis too).
    let shared = two_instances(&ctx, &[], apps).await?;
    let (a, b, starts) = (&shared.a, &shared.b, shared.file("hello.starts"));
    let mut connections = Vec::new();
    for _ in 0..25 {
        connections.extend(written_requests(a.addr, "hello", 1).await?);
        connections.extend(written_requests(b.addr, "hello", 1).await?);
    }
    let answered = count_answers(connections, "HTTP/1.1 200").await?;
    ensure!(
        answered == 50,
        "50 first requests split across two instances sharing --redis should all be \
         answered 200, {answered} were"
    );
    let ran = lines(&starts);
    ensure!(
        ran == 1,
        "two instances sharing --redis should start the app once for 50 first requests \
         split across them; its start command ran {ran} time(s)"
    );
    Ok(())
}

/// `--redis`: requests on one instance keep the app awake for both
/// (the other does not stop it after its own idle time); then, idle
/// everywhere, it is stopped once, and both know it.
pub async fn apps_shared_idle_stop_once(ctx: Ctx) -> Outcome {
    let apps = r#"[[apps]]
name = "hello"
start = "true"
stop = "echo stopped >> {dir}/hello.stops"
upstream = "http://{origin}"
idle = "2s"
"#;
    let shared = two_instances(&ctx, &["--admin-token", TOKEN], apps).await?;
    let (a, b, stops) = (&shared.a, &shared.b, shared.file("hello.stops"));
    // Woken through a: b's status API says so too.
    let reply = ask_app(a.addr, "hello", "/echo", 20).await?;
    ensure!(
        reply.status == StatusCode::OK,
        "hello should answer 200, got {}",
        reply.status
    );
    awake_on(b, "hello").await?;
    // Served by b too: b's idle time starts now.
    let reply = ask_app(b.addr, "hello", "/echo", 20).await?;
    ensure!(
        reply.status == StatusCode::OK,
        "hello should answer 200, got {}",
        reply.status
    );
    // Requests on a only, for twice the idle time (paced, 300 ms apart).
    for _ in 0..14 {
        let reply = ask_app(a.addr, "hello", "/echo", 20).await?;
        ensure!(
            reply.status == StatusCode::OK,
            "with requests on one instance, hello should keep answering 200, got {}",
            reply.status
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    ensure!(
        lines(&stops) == 0,
        "requests on one instance should keep the app awake; it was stopped after 4 s \
         (the other instance stopped it after its own idle time of 2 s)"
    );
    // No request anywhere: stopped, by one, and both say it is asleep.
    for proxy in [a, b] {
        logged(proxy, "hello: awake → ", 15).await?;
    }
    for proxy in [a, b] {
        logged(proxy, " → asleep", 15).await?;
    }
    let stopped = lines(&stops);
    ensure!(
        stopped == 1,
        "idle on both instances, the app should be stopped once; its stop command ran {} time(s)",
        stopped
    );
    Ok(())
}

/// `--redis`: Redis killed while the app is awake: both instances
/// keep serving it; Redis back (empty): the instances tell it the app is
/// awake, and the idle stop is again one for both.
pub async fn apps_shared_redis_down(ctx: Ctx) -> Outcome {
    let apps = r#"[[apps]]
name = "hello"
start = "true"
stop = "echo stopped >> {dir}/hello.stops"
upstream = "http://{origin}"
idle = "3s"
"#;
    let mut shared = two_instances(&ctx, &[], apps).await?;
    let stops = shared.file("hello.stops");
    let (a, b, redis) = (&shared.a, &shared.b, &mut shared.redis);
    let answered = |proxy: &Proxy, when: &'static str| {
        let addr = proxy.addr;
        async move {
            let reply = ask_app(addr, "hello", "/echo", 20).await?;
            ensure!(
                reply.status == StatusCode::OK,
                "{when}, an awake app should be served (200), got {}",
                reply.status
            );
            Ok(())
        }
    };
    for proxy in [a, b] {
        answered(proxy, "with Redis up").await?;
    }
    redis.kill();
    for _ in 0..3 {
        for proxy in [a, b] {
            answered(proxy, "with Redis down").await?;
        }
    }
    redis.restart().map_err(fail)?;
    // Back and empty: the instances say what they have awake.
    within(
        10,
        "the instances to tell the new Redis that hello is awake",
        async {
            // Bounded by `within`: a look every 100 ms.
            loop {
                let state = redis
                    .ask("HGET reverse-proxy-workshop:app:hello state")
                    .map_err(fail)?;
                if state.contains("awake") {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    )
    .await?;
    for proxy in [a, b] {
        logged(proxy, " → asleep", 20).await?;
    }
    let stopped = lines(&stops);
    ensure!(
        stopped == 1,
        "with Redis back, the idle app should be stopped once for both instances; its stop \
         command ran {} time(s)",
        stopped
    );
    Ok(())
}

/// `--redis`: an instance killed while it starts the app (holding
/// the lock): a request on the other is answered once the lock has expired
/// (3 s unrenewed), by a start of its own.
pub async fn apps_shared_lock_holder_dies(ctx: Ctx) -> Outcome {
    // The first start hangs (until the check ends, 30 s at most); the next
    // one is quick.
    let apps = r#"[[apps]]
name = "hello"
start = "echo started >> {dir}/hello.starts; if [ $(wc -l < {dir}/hello.starts) -eq 1 ]; then i=0; while [ ! -e {dir}/release ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; fi"
stop = "true"
upstream = "http://{origin}"
start_timeout = "10s"
"#;
    let mut shared = two_instances(&ctx, &[], apps).await?;
    let (starts, release) = (shared.file("hello.starts"), shared.file("release"));
    let (a, b) = (&mut shared.a, &shared.b);
    let outcome = async {
        // a starts it, and hangs there holding the lock.
        let held = tokio::spawn(ask_app(a.addr, "hello", "/echo", 20));
        until_written(&starts, "a's start to begin", 10).await?;
        a.kill(10).await?;
        held.abort();
        let reply = ask_app(b.addr, "hello", "/echo", 20).await?;
        ensure!(
            reply.status == StatusCode::OK,
            "an instance killed while starting the app holds its lock only until it expires; a \
             request on the other should then be answered 200 by a start of its own, got {} {}",
            reply.status,
            excerpt(&reply.text())
        );
        let ran = lines(&starts);
        ensure!(
            ran == 2,
            "the start command should have run twice (the dead instance's, then the other's), \
             it ran {ran} time(s)"
        );
        Ok(())
    }
    .await;
    // The dead instance's start command ends too.
    let _ = std::fs::write(&release, "");
    outcome
}

/// `--redis`: a WebSocket open on one proxy for longer than the idle time
/// keeps its app awake for both; the other does not stop it. Timed against
/// a control app woken later on the other proxy: once it has been stopped
/// for idleness, the app under test has been idle there at least as long.
pub async fn apps_shared_websocket_keeps_awake(ctx: Ctx) -> Outcome {
    let apps = r#"idle = "2s"

[[apps]]
name = "hello"
start = "true"
stop = "echo stopped >> {dir}/hello.stops"
upstream = "http://{origin}"

[[apps]]
name = "quiet"
start = "true"
stop = "echo stopped >> {dir}/quiet.stops"
upstream = "http://{origin}"
"#;
    let shared = two_instances(&ctx, &["--admin-token", TOKEN], apps).await?;
    let (a, b) = (&shared.a, &shared.b);
    let (hello_stops, quiet_stops) = (shared.file("hello.stops"), shared.file("quiet.stops"));
    let mut socket = websocket_to(a.addr, "hello").await?;
    echo(&mut socket, "open").await?;
    awake_on(b, "hello").await?;
    let reply = ask_app(b.addr, "quiet", "/echo", 20).await?;
    ensure!(
        reply.status == StatusCode::OK,
        "quiet should answer 200, got {}",
        reply.status
    );
    until_written(
        &quiet_stops,
        "the control app to be stopped for idleness",
        15,
    )
    .await?;
    ensure!(
        lines(&hello_stops) == 0,
        "a WebSocket open on one proxy should keep its app awake for every proxy; the other \
         proxy stopped it after its own idle time (2 s)"
    );
    echo(&mut socket, "still open").await?;
    let _ = futures_util::SinkExt::close(&mut socket).await;
    drop(socket);
    for proxy in [a, b] {
        let asleep = |log: &str| {
            log.contains("hello: stopping → asleep") || log.contains("hello: awake → asleep")
        };
        proxy
            .stderr_until("hello asleep, once the WebSocket closed", asleep, 15)
            .await?;
    }
    ensure!(
        lines(&hello_stops) == 1,
        "closed, the WebSocket's app should be stopped once; its stop command ran {} time(s)",
        lines(&hello_stops)
    );
    Ok(())
}

/// `--redis`: a request on one proxy while another stops the app (its
/// stop command still running) waits for the stop to end, then is
/// answered by a new start: the stopping proxy's `asleep` is the end of
/// a stop, not a failed start.
pub async fn apps_shared_stop_is_no_failed_start(ctx: Ctx) -> Outcome {
    // The stop runs until the check says `release` (10 s at most).
    let apps = r#"idle = "1s"

[[apps]]
name = "hello"
start = "echo started >> {dir}/hello.starts"
stop = "echo stopping >> {dir}/hello.stops; i=0; while [ ! -e {dir}/release ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done"
upstream = "http://{origin}"
"#;
    let sharing = Sharing::new(&ctx, &[], apps)?;
    let (starts, stops) = (
        sharing.apps.folder().file("hello.starts"),
        sharing.apps.folder().file("hello.stops"),
    );
    let release = sharing.apps.folder().file("release");
    let a = sharing.instance(&ctx).await?;
    let reply = ask_app(a.addr, "hello", "/echo", 20).await?;
    ensure!(
        reply.status == StatusCode::OK,
        "hello should answer 200, got {}",
        reply.status
    );
    // Started after the app woke, b knows it only as asleep.
    let b = sharing.instance(&ctx).await?;
    until_written(&stops, "a's idle stop to begin", 15).await?;
    // b is asked while a's stop runs: it looks, cannot take the lock, and
    // waits for news. Its start subscribes to the news before it looks:
    // once it has, the stop may end.
    let before = sharing.subscribers()?;
    let asked = tokio::spawn(ask_app(b.addr, "hello", "/echo", 20));
    let subscribed = within(5, "b's start to subscribe to the news", async {
        // Bounded by `within`: a look every 20 ms.
        while sharing.subscribers()? <= before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    })
    .await;
    let _ = std::fs::write(&release, "");
    let reply = within(20, "b's answer", async {
        asked.await.or_fail("the request's task")?
    })
    .await?;
    subscribed?;
    ensure!(
        reply.status == StatusCode::OK,
        "a request on one proxy while another stopped the app should wait for the stop, then \
         be answered 200 by a new start; got {} {}: the stopping proxy's `asleep` is the end of \
         its stop, not a failed start",
        reply.status,
        excerpt(&reply.text())
    );
    ensure!(
        lines(&starts) == 2,
        "the start command should have run twice (a's, then after the stop), it ran {} time(s)",
        lines(&starts)
    );
    Ok(())
}
