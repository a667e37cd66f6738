//! Step 13 — apps on demand, part 2: sleeping. An app that nobody uses is
//! stopped, and its next request wakes it again (step 12). The question
//! is what "nobody uses it" means.
//!
//! Four ideas, in order:
//! - [`Activity`]: a request counts from its arrival to the end of its
//!   response body, a WebSocket until it closes; [`Sleeping`] wraps step
//!   12's request path to count them. An app with either is not idle,
//!   however long they last;
//! - [`put_apps_to_sleep`]: one tick, not a timer per app, stops the
//!   groups of linked apps whose every member is idle; a request that
//!   comes just as a stop begins is not lost: the kit's `stop_unless`
//!   looks at the activity under the lock that moves the app to
//!   `stopping`, so the request either is seen or waits for a new start;
//! - a child that ends on its own (a crash) is noticed at once: the app
//!   is asleep with the reason, and the next request starts it again;
//! - [`discover_apps`]: the list of apps comes from a command polled every
//!   so often, as Paastis polls its PaaS; a failure keeps the last list,
//!   and an app gone from it is served until it sleeps, then forgotten.
//!
//! Deliberate simplification: "idle" is this proxy's view; step 16's
//! proxies ask each other before stopping an app they share.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use kit::answer::Answer;
use kit::apps::{App, Apps, Found, State, Why};
use kit::apps_file;
use kit::children::run_shell;
use kit::patterns::host_of;
use tracing::{info, warn};
use workshop::body::{Body, RequestBody, holding};
use workshop::round_trip::HttpClient;
use workshop::websocket::keep_while_open;

use crate::wake::OnDemand;

/// How often idle apps are looked for.
const TICK: Duration = Duration::from_millis(250);

// ANCHOR: activity
/// A request (or a WebSocket) in progress: the app is not idle while one
/// lives. Made when the request arrives, dropped when its response body
/// has been sent (or its tunnel closed, or the client left).
pub struct Activity(Arc<App>);

impl Activity {
    pub fn begin(app: Arc<App>) -> Activity {
        app.activity_began();
        Activity(app)
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        // The idle time counts from the end of the last request.
        self.0.activity_ended();
    }
}
// ANCHOR_END: activity

// ANCHOR: sleeping
/// Step 12's request path, counting what apps do: the request path of
/// step 13.
pub struct Sleeping<T> {
    pub on_demand: OnDemand<T>,
}

impl<T: HttpClient, B: RequestBody> Answer<B> for Sleeping<T> {
    async fn answer(&self, mut request: Request<B>) -> Response<Body> {
        let app = match self.on_demand.apps.find(host_of(&request)) {
            Some(Found::App(app)) => app,
            other => return self.on_demand.answer_found(other, request).await,
        };
        // EXERCISE: the app is busy from now until the response has been sent to its last byte, or the client has gone; and if the request becomes a WebSocket, for as long as that stays open (step 10 keeps what a request asks it to keep). Trap: a response head sent is not the end of a request: a stream or a download may go on for an hour
        // ANCHOR: keep_busy
        let activity = Arc::new(Activity::begin(app.clone()));
        keep_while_open(&mut request, activity.clone());
        let response = self.on_demand.serve_app(app, request).await;
        response.map(|body| holding(body, activity))
        // ANCHOR_END: keep_busy
        // END EXERCISE
    }
}
// ANCHOR_END: sleeping

/// Steps 13 on run both for as long as the proxy does.
pub fn spawn_sleepers(apps: &Arc<Apps>) {
    tokio::spawn(put_apps_to_sleep(apps.clone()));
    tokio::spawn(discover_apps(apps.clone()));
}

// ANCHOR: has_been_idle
/// Whether an app whose last activity was at `last` has been idle for
/// `idle` at `now`: real durations, on a monotonic clock. (Paastis took
/// the minutes of the elapsed time modulo an hour: an app idle for 61
/// minutes looked idle for 1, and a limit of an hour was never reached.)
pub fn has_been_idle(last: Instant, now: Instant, idle: Duration) -> bool {
    now.saturating_duration_since(last) >= idle
}
// ANCHOR_END: has_been_idle

// ANCHOR: sleep
/// Forever: at every tick, and at once when a child ends on its own,
/// marks the crashed apps asleep and stops the idle groups.
// ANCHOR: tick
pub async fn put_apps_to_sleep(apps: Arc<Apps>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = apps.a_child_ended() => {}
        }
        let registry = apps.registry();
        for app in registry.apps.values() {
            // ANCHOR: crashed
            if let Some(why) = app.take_crash() {
                // `starting` too: it may die between "ready" and "awake".
                app.asleep_because(&[State::Starting, State::Awake], Some(why));
            }
            // ANCHOR_END: crashed
        }
        stop_idle_groups(&apps);
        apps.forget_retired();
    }
}
// ANCHOR_END: tick

/// Stops every group of linked apps that is awake and whose every member
/// is idle (nothing in flight, no activity for its idle time) or asleep:
/// a group's members decide together.
fn stop_idle_groups(apps: &Arc<Apps>) {
    let now = Instant::now();
    let registry = apps.registry();
    let mut seen = BTreeSet::new();
    for app in registry.apps.values() {
        let group = app.group();
        if !seen.insert(group.clone()) {
            continue;
        }
        let members: Vec<&Arc<App>> = group
            .iter()
            .filter_map(|name| registry.apps.get(name))
            .collect();
        // ANCHOR: idle_member
        let idle = |member: &&Arc<App>| {
            // EXERCISE: say whether this member lets its group sleep now: putting it to sleep would cut nobody off and undo nothing under way, and it has been idle for its own idle time. Trap: a long download or an open WebSocket began long ago, and has not ended
            match member.state() {
                State::Asleep => true,
                State::Awake => {
                    member.in_flight() == 0
                        && has_been_idle(member.last_activity(), now, member.spec().idle)
                }
                State::Starting | State::Stopping => false,
            }
            // END EXERCISE
        };
        let awake = members.iter().any(|member| member.state() == State::Awake);
        // ANCHOR_END: idle_member
        // ANCHOR: stop_group
        if awake && members.iter().all(idle) {
            let together: Arc<Vec<Arc<App>>> = Arc::new(members.into_iter().cloned().collect());
            for member in together.iter() {
                let (member, apps, together) = (member.clone(), apps.clone(), together.clone());
                // Busy after all if a request came since to any member: the
                // group stays whole, awake.
                let busy = move || together.iter().any(|linked| linked.in_flight() > 0);
                let stop = async move { apps.stop(&member, Why::Idle, busy).await };
                tokio::spawn(stop);
            }
        }
        // ANCHOR_END: stop_group
    }
}
// ANCHOR_END: sleep

// ANCHOR: discover
/// Runs a discovery command every so often and swaps in the list it
/// prints; a failure keeps the last list, and says why.
pub async fn discover_apps(apps: Arc<Apps>) {
    loop {
        let Some((discover, defaults)) = apps.discovery() else {
            // No command (yet): the file may get one on a reload.
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        // ANCHOR: discover_poll
        let patience = discover.every.max(Duration::from_secs(5));
        let found = run_shell(&discover.command, patience)
            .await
            .and_then(|json| apps_file::parse_discovered(&json, &defaults));
        match found {
            Ok(found) => {
                let changes = apps.use_discovered(found);
                if !changes.is_empty() {
                    info!("apps discovered: {}", changes.join(" "));
                }
            }
            Err(why) => warn!("discovery failed, the last list of apps stays: {why}"),
        }
        tokio::time::sleep(discover.every).await;
        // ANCHOR_END: discover_poll
    }
}
// ANCHOR_END: discover

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_is_counted_in_real_durations() {
        let now = Instant::now() + Duration::from_secs(7200);
        let minutes = |m: u64| Duration::from_secs(60 * m);
        // Paastis' bug: 61 minutes looked like 1 (minutes modulo 60).
        assert!(has_been_idle(now - minutes(61), now, minutes(15)));
        assert!(has_been_idle(now - minutes(15), now, minutes(15)));
        assert!(!has_been_idle(now - minutes(14), now, minutes(15)));
        // A last activity "in the future" (a request that just ended) is no idle time.
        assert!(!has_been_idle(now + minutes(1), now, minutes(15)));
    }
}
